"""``unlearn_sequence`` against ``unlearn`` called one request at a time."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from certun.data import synthetic_logistic
from certun.unlearners import certified_removal


@pytest.fixture(scope="module")
def ds():
    return synthetic_logistic(300, 8, seed=11)


def _requests():
    reqs = [[i] for i in range(14)] + [[14, 15], [16, 17]] + [[i] for i in range(18, 30)]
    return reqs + [list(range(30, 40))] + [[40], [41]]  # 10 rows > max_rank: served alone


@pytest.mark.parametrize("kw", [
    dict(),  # the default: cached factor, remeasure
    pytest.param(dict(update="cached", refresh_cost_ratio=0.05), marks=pytest.mark.slow),
    pytest.param(dict(update="cached", sigma=0.05, auto_retrain=True),  # refusals -> retrains
                 marks=pytest.mark.slow),
    pytest.param(dict(update="cached", sigma=0.05), marks=pytest.mark.slow),  # refusals stay
    pytest.param(dict(update="pcg"), marks=pytest.mark.slow),  # one at a time by rule
], ids=["default", "policy", "retrain", "refuse", "pcg"])
def test_sequence_equals_one_at_a_time(ds, kw):
    args = dict(lam=1e-2, sigma=0.5, epsilon=1.0, delta=1e-4, max_rank=8)
    args.update(kw)
    unl = certified_removal(**args)
    st0 = unl.init(ds.X_train, ds.y_train, jax.random.key(3))
    reqs = _requests()
    st, ref = st0, []
    for r in reqs:
        res = unl.unlearn(st, r)
        ref.append(res)
        st = res.state
    seq = unl.unlearn_sequence(st0, reqs)
    assert seq.outcomes == [r.outcome for r in ref]
    assert [c.status for c in seq.certificates] == [r.certificate.status for r in ref]
    assert [c.valid for c in seq.certificates] == [r.certificate.valid for r in ref]
    used = np.array([c.budget.used for c in seq.certificates])
    np.testing.assert_allclose(used, [r.certificate.budget.used for r in ref], rtol=1e-12,
                               atol=0)
    for a, b in zip(seq.diagnostics, (r.diagnostics for r in ref), strict=True):
        for k in ("step_remainder_bound", "step_solver_residual", "residual_bound_after"):
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-300), k
    np.testing.assert_allclose(np.asarray(seq.state.W), np.asarray(st.W), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(seq.state.mask), np.asarray(st.mask))
    assert float(seq.state.residual_bound) == pytest.approx(float(st.residual_bound), rel=1e-12)
    if args.get("update") != "pcg":
        assert seq.dispatches >= 3  # the buffer (8 rows) folds: several scans


def test_sequence_validates_every_request_first(ds):
    unl = certified_removal(lam=1e-2, sigma=0.5, epsilon=1.0, delta=1e-4, max_rank=8)
    st = unl.init(ds.X_train, ds.y_train, jax.random.key(3))
    with pytest.raises(ValueError, match="requests name row 3 twice"):
        unl.unlearn_sequence(st, [[1], [3], [2, 3]])
    with pytest.raises(ValueError, match=r"requests\[1\]"):
        unl.unlearn_sequence(st, [[1], [10_000]])
    st = unl.unlearn(st, [5]).state
    with pytest.raises(ValueError, match="already removed"):
        unl.unlearn_sequence(st, [[1], [5]])
