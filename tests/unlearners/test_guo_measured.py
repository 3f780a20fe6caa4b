"""``measure_every``: every cached request's residual measured, the gradient cancelled next."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from certun import ValidationError
from certun.data import normalize_rows
from certun.unlearners import _guo_steps as gs
from certun.unlearners import certified_removal
from certun.unlearners.guo import _ops

# the NumPy references of the remeasure tests (pytest puts this directory on sys.path)
from test_guo_remeasure import allowance_np, gradient_np  # noqa: E402  (isort: skip)

LAM = 1e-2


def _gradient_np(st, lam):
    """The NumPy gradient of the rows present and its rounding allowance."""
    g, mag, margin, n = gradient_np(st, lam)
    return g, float(allowance_np(mag, margin, n, st.X.shape[1]))


@pytest.fixture(scope="module")
def wide():
    """``n <= 2 d``: the default measures every request."""
    rng = np.random.default_rng(5)
    n, d = 90, 60
    X = normalize_rows(rng.standard_normal((n, d)) * (np.arange(1, d + 1) ** -0.5))
    y = np.where(X @ rng.standard_normal(d) + 0.3 * rng.standard_normal(n) > 0, 1, -1)
    return X, y


def test_default_measures_every_request_exactly_when_n_is_at_most_2d(wide, digits38):
    X, y = wide
    unl = certified_removal(lam=LAM, sigma=1.0, epsilon=1.0, delta=1e-4)
    assert bool(unl.init(X, y, jax.random.key(0)).measure_every)
    # digits: n = 357 > 2 d = 128, the charged bounds with a measurement when they run out
    assert unl.init(digits38.X_train, digits38.y_train, jax.random.key(0)).measure_every is None
    forced = certified_removal(lam=LAM, sigma=1.0, epsilon=1.0, delta=1e-4, measure_every=True)
    assert bool(forced.init(digits38.X_train, digits38.y_train, jax.random.key(0)).measure_every)
    off = certified_removal(lam=LAM, sigma=1.0, epsilon=1.0, delta=1e-4, measure_every=False)
    st_off = off.init(X, y, jax.random.key(0))
    assert st_off.measure_every is None
    # an explicit setting refuses a state made the other way (auto serves either)
    st_on = unl.init(X, y, jax.random.key(0))
    with pytest.raises(ValidationError, match="measures every request's residual; this one "
                                              "has measure_every=False"):
        off.unlearn(st_on, [0])
    with pytest.raises(ValidationError, match="bounds every request's residual; this one "
                                              "has measure_every=True"):
        forced.unlearn(st_off, [0])
    assert unl.unlearn(st_off, [0]).diagnostics["solver"]["path"] == "cached_factor"


@pytest.mark.parametrize("kw, match", [
    (dict(update="pcg", measure_every=True), "measure_every=True measures on the cached path"),
    (dict(remeasure=False, measure_every=True), "measure_every=True measures on the cached"),
    (dict(measure_every="yes"), "measure_every must be True or False"),
    (dict(loss="squared", measure_every=True), "cached path of the logistic loss"),
])
def test_measure_every_rejects_what_it_cannot_serve(kw, match):
    with pytest.raises(ValidationError, match=match):
        certified_removal(lam=LAM, sigma=1.0, epsilon=1.0, delta=1e-4, **kw)


def test_every_certificate_is_the_measured_residual_and_the_step_cancels_it(wide):
    X, y = wide
    # enough Neumann terms that the cached solve matches a dense one to ~1e-10
    unl = certified_removal(lam=LAM, sigma=1.0, epsilon=1.0, delta=1e-4, diagnose=True,
                            neumann_terms=12, max_rank=16)
    st = unl.init(X, y, jax.random.key(1))
    d = X.shape[1]
    for i in range(40):  # past two folds of the 16-row buffer
        res = unl.unlearn(st, [i])
        assert res.outcome == "unlearned" and res.certificate.valid
        dg, new = res.diagnostics, res.state
        assert dg["bound_charged"] == "measured" and dg["solver"]["path"] == "measured_factor"
        assert "step_remainder_bound" not in dg
        assert {"measured_residual"} <= {a.name for a in res.certificate.assumptions}
        # the certificate is ||grad L_b|| (NumPy) plus its rounding allowance
        g, allowance = _gradient_np(new, LAM)
        used = res.certificate.budget.used
        assert used == pytest.approx(np.linalg.norm(g) + allowance, rel=1e-9)
        assert dg["true_residual"] <= used == float(new.residual_bound)
        # the published model comes out of the request's dispatch: the state's, exactly
        np.testing.assert_array_equal(np.asarray(res.params), np.asarray(unl.params(new)))
        assert res.params.shape == (X.shape[1],)
        np.testing.assert_allclose(np.asarray(new.grad_known)[:, 0], g, rtol=1e-9,
                                   atol=1e-12 * np.linalg.norm(g))
        assert float(new.grad_known_err) == pytest.approx(allowance, rel=1e-9, abs=0)
        if i > 0:
            assert dg["residual_carried"] == float(st.grad_known_err)
        if dg.get("refreshed") is None:
            # the step: the dense Newton step on Delta - g at the factorisation point
            Xn, Yn = np.asarray(st.X), np.asarray(st.Y)[:, 0]
            keep = np.asarray(new.mask) > 0
            wf, w = np.asarray(st.W_factor)[:, 0], np.asarray(st.W)[:, 0]
            p = 1 / (1 + np.exp(-(Xn[keep] @ wf)))
            T = (Xn[keep].T * (p * (1 - p))) @ Xn[keep] + LAM * keep.sum() * np.eye(d)
            Delta = Xn[i] * (-Yn[i] / (1 + np.exp(Yn[i] * (Xn[i] @ w)))) + LAM * w
            gk = np.asarray(st.grad_known)[:, 0]
            step = np.linalg.solve(T, Delta - gk)
            # to 1e-6 of the step (the Neumann tail at the folds' drift), far below the
            # cancelled gradient's own share T^-1 g
            err = np.linalg.norm(np.asarray(new.W)[:, 0] - w - step)
            assert err <= 1e-6 * np.linalg.norm(step)
            assert err <= 1e-2 * np.linalg.norm(np.linalg.solve(T, gk)) or i == 0
        st = new
    # cancelling keeps the residual at one step's error, not a sum: here after 40 of 90 rows
    assert res.certificate.budget.used < 0.25 * res.certificate.budget.total
    # grad_measure's vector [||g||, M, margin, n] against NumPy: training sums the row norms;
    # a request bounds the row sums by Cauchy-Schwarz from the stored fro2, which must cover
    # the exact sums (the allowance stays a bound) without a pass for the norms
    c = _ops(unl).ctx.cfg
    exact = gradient_np(st, LAM, fro2_bound=False)
    bound = gradient_np(st, LAM, fro2_bound=True)
    args = (st.W, st.X, st.Y, st.b, st.mask)
    for fro2, ref in ((None, exact), (st.fro2, bound)):
        for f in (gs.grad_measure, jax.jit(gs.grad_measure, static_argnums=0)):
            g, v = f(c, *args, fro2)
            np.testing.assert_allclose(np.asarray(g)[:, 0], ref[0], rtol=1e-9,
                                       atol=1e-12 * np.linalg.norm(ref[0]))
            np.testing.assert_allclose(np.asarray(v)[1:], ref[1:], rtol=1e-12, atol=0)
    assert exact[1] < bound[1] and exact[2] < bound[2]  # a bound, and a strict one here


def test_measured_sequence_equals_one_at_a_time(wide):
    X, y = wide
    unl = certified_removal(lam=LAM, sigma=1.0, epsilon=1.0, delta=1e-4, max_rank=8)
    st0 = unl.init(X, y, jax.random.key(2))
    reqs = [[i] for i in range(20)] + [[20, 21]] + [[i] for i in range(22, 30)]
    st, ref = st0, []
    for r in reqs:
        # what_if charges the bounded step: an upper estimate of the measured certificate
        est = unl.unlearn.what_if(st, r).used_after[0] if len(r) == 1 else np.inf
        res = unl.unlearn(st, r)
        assert res.certificate.budget.used <= est
        ref.append(res)
        st = res.state
    seq = unl.unlearn_sequence(st0, reqs)
    assert seq.outcomes == [r.outcome for r in ref] == ["unlearned"] * len(reqs)
    np.testing.assert_allclose([c.budget.used for c in seq.certificates],
                               [r.certificate.budget.used for r in ref], rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.asarray(seq.state.W), np.asarray(st.W), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(seq.state.grad_known), np.asarray(st.grad_known),
                               rtol=0, atol=1e-12)
    assert seq.dispatches >= 3  # the 8-row buffer folds between scans


def test_a_measured_residual_above_the_budget_is_refused(wide):
    X, y = wide
    kw = dict(lam=LAM, epsilon=1.0, delta=1e-4)
    st = certified_removal(sigma=1.0, **kw).init(X, y, jax.random.key(3))
    tiny = certified_removal(sigma=1e-9, **kw)  # a budget below any measured residual
    res = tiny.unlearn(st, [0])
    assert res.outcome == "retrain_required" and not res.certificate.valid
    assert res.state is st  # nothing changed
    assert res.diagnostics["residual_remeasured"] > res.certificate.budget.total

