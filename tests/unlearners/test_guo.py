"""Guo et al. certified removal: exactness of the step, certificates, budget, inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun import Certificate
from certun.data import load_diabetes, load_digits, synthetic_logistic
from certun.models import glm
from certun.unlearners import certified_removal


def _unl(**kw):
    base = dict(lam=1e-2, sigma=1.5, epsilon=1.0, delta=1e-4, update="pcg")
    base.update(kw)
    return certified_removal(**base)


def _dense_step(state, idx, lam):
    """Fresh NumPy solve of the Newton removal on the remaining rows at the current model."""
    X, Y, W = (np.asarray(a, np.float64) for a in (state.X, state.Y, state.W))
    mask = np.asarray(state.mask).copy()
    mask[idx] = 0
    keep = mask > 0
    out = np.zeros_like(W)
    for k in range(W.shape[1]):
        w, y = W[:, k], Y[:, k]
        s = 1 / (1 + np.exp(-y[idx] * (X[idx] @ w)))
        Delta = X[idx].T @ (-y[idx] * (1 - s)) + len(idx) * lam * w
        a = X[keep] @ w
        D = 1 / (1 + np.exp(-a)) / (1 + np.exp(a))
        H = (X[keep] * D[:, None]).T @ X[keep] + lam * keep.sum() * np.eye(X.shape[1])
        out[:, k] = w + np.linalg.solve(H, Delta)
    return out


def test_factorised_removal_equals_fresh_solve(digits38):
    unl = _unl()
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    for idx in ([5], [1, 2, 3, 40, 100]):
        ref = _dense_step(st, idx, 1e-2)
        res = unl.unlearn(st, idx)
        assert res.diagnostics["solver"]["path"] == "eigh_woodbury"
        rel = np.linalg.norm(np.asarray(res.state.W) - ref) / np.linalg.norm(ref)
        assert rel < 1e-10


def test_sequential_removals_solve_the_current_hessian(digits38):
    unl = _unl()
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    st = unl.unlearn(st, [7]).state
    for idx in ([8], [9, 10]):
        ref = _dense_step(st, idx, 1e-2)
        res = unl.unlearn(st, idx)
        assert res.diagnostics["solver"]["path"] == "pcg"
        rel = np.linalg.norm(np.asarray(res.state.W) - ref) / np.linalg.norm(ref)
        assert rel < 1e-10
        st = res.state


def test_refactor_every_restores_exact_path(digits38):
    unl = _unl(refactor_every=1)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    for i in (3, 4, 5):
        res = unl.unlearn(st, [i])
        assert res.diagnostics["solver"]["path"] == "eigh_woodbury"
        np.testing.assert_allclose(np.asarray(res.state.W), _dense_step(st, [i], 1e-2), rtol=1e-10)
        st = res.state


@pytest.mark.slow  # the PCG path; the default (cached) path's jit/unjit agreement stays in
# the default tier (test_guo_cached.py::test_jitted_and_unjitted_cached_paths_agree)
def test_jitted_and_unjitted_paths_agree(digits38):
    unl = _unl()
    st = unl.init(digits38.X_train[:120], digits38.y_train[:120], jax.random.key(1))
    a1 = unl.unlearn(st, [3])
    a2 = unl.unlearn(a1.state, [4])
    with jax.disable_jit():
        b1 = unl.unlearn(st, [3])
        b2 = unl.unlearn(b1.state, [4])
    np.testing.assert_allclose(np.asarray(a1.params), np.asarray(b1.params), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(a2.params), np.asarray(b2.params), rtol=1e-10)
    assert a2.certificate.budget.used == pytest.approx(b2.certificate.budget.used, rel=1e-8)


@pytest.mark.slow  # the default suite's time budget
def test_residual_bound_covers_true_residual_over_many_removals():
    """Over 200+ sequential removals: true residual (with b) <= charged bound <= budget."""
    served = 0
    for seed, (lam, sigma) in enumerate([(1e-2, 5.0), (3e-2, 2.0), (1e-1, 1.0)]):
        ds = synthetic_logistic(400, 10, seed=seed)
        unl = certified_removal(lam=lam, sigma=sigma, epsilon=1.0, delta=1e-4, diagnose=True,
                                update="pcg")
        st = unl.init(ds.X_train, ds.y_train, jax.random.key(seed))
        order = np.random.default_rng(seed).permutation(ds.X_train.shape[0])
        for i in order[:80]:
            res = unl.unlearn(st, [int(i)])
            d = res.diagnostics
            assert d["true_residual"] <= d["residual_bound_after"]
            assert d["step_data_dependent_bound"] <= d["step_worst_case_bound"]
            if res.outcome != "unlearned":
                assert res.params is None and res.certificate.status == "fails"
                break
            assert res.certificate.valid
            assert res.certificate.budget.used <= res.certificate.budget.total
            st = res.state
            served += 1
    assert served >= 200


def test_one_vs_rest_budget_is_one_budget_summed_over_heads():
    ds = load_digits()
    unl = certified_removal(lam=1e-2, sigma=5.0, epsilon=1.0, delta=1e-4,
                            update="pcg")
    st = unl.init(ds.X_train, ds.y_train, jax.random.key(0), num_classes=10)
    assert st.W.shape == (64, 10)
    res = unl.unlearn(st, [11])
    cert = res.certificate
    # one budget sigma * epsilon / c, not multiplied by the number of heads
    assert cert.budget.total == pytest.approx(5.0 / np.sqrt(2 * np.log(1.5 / 1e-4)), rel=1e-12)
    # the charged bound is the sum of the per-head data-dependent bounds
    W0, W1 = np.asarray(st.W), np.asarray(res.state.W)
    X = np.asarray(st.X)
    keep = np.ones(X.shape[0], bool)
    keep[11] = False
    Xr = X[keep]
    xs = min(float(st.x_spectral), np.sqrt(keep.sum()))
    per_head = [0.25 * xs * np.linalg.norm(W1[:, k] - W0[:, k])
                * np.linalg.norm(Xr @ (W1[:, k] - W0[:, k])) for k in range(10)]
    assert res.diagnostics["step_data_dependent_bound"] == pytest.approx(sum(per_head), rel=1e-6)
    assert res.diagnostics["step_data_dependent_bound"] > max(per_head)
    # and each head moved exactly as a fresh solve says
    np.testing.assert_allclose(W1, _dense_step(st, [11], 1e-2), rtol=1e-10)


def test_ridge_removal_is_exact():
    ds = load_diabetes()
    unl = certified_removal(lam=1e-2, sigma=0.1, epsilon=1.0, delta=1e-4, loss="squared",
                            diagnose=True)
    st = unl.init(ds.X_train, ds.y_train, jax.random.key(0))
    for idx in ([3], [10, 11, 12]):
        res = unl.unlearn(st, idx)
        st = res.state
        assert res.diagnostics["true_residual"] < 1e-8
        assert res.diagnostics["step_data_dependent_bound"] == 0.0  # gamma = 0 for squared loss
        rt = unl.retrain(st).params
        assert rt.shape == unl.params(st).shape == (st.W.shape[0],)
        assert float(jnp.linalg.norm(unl.params(st) - rt)) < 1e-8
        assert res.certificate.valid


def test_budget_exhaustion_refuses_and_auto_retrain(digits38):
    unl = _unl(sigma=0.05)  # tiny budget
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    res = unl.unlearn(st, [0, 1, 2, 3, 4, 5])
    assert res.outcome == "retrain_required"
    assert res.params is None
    assert res.state is st
    assert res.certificate.status == "fails" and not res.certificate.valid
    assert "retrain required" in res.certificate.reason
    # the reason is public: no residual bound or budget amount printed in it
    assert not any(ch.isdigit() for ch in res.certificate.reason), res.certificate.reason
    auto = _unl(sigma=0.05, auto_retrain=True)
    st2 = auto.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    out = auto.unlearn(st2, [0, 1, 2, 3, 4, 5])
    assert out.outcome == "retrained"
    assert out.certificate.valid
    assert int(out.state.retrains) == 1
    assert not np.allclose(np.asarray(out.state.b), np.asarray(st2.b))  # fresh b, new key fold
    mask = np.asarray(out.state.mask)
    assert mask[:6].sum() == 0 and mask[6:].all()
    ref = glm.fit("logistic", out.state.X, out.state.Y, 1e-2, out.state.b, out.state.mask,
                  tol=1e-10)
    np.testing.assert_allclose(np.asarray(out.state.W), np.asarray(ref.params), atol=1e-8)


def test_keys_are_never_reused(digits38):
    unl = _unl()
    a = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    b = unl.init(digits38.X_train, digits38.y_train, jax.random.key(1))
    c = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(a.b), np.asarray(c.b))  # reproducible
    assert not np.allclose(np.asarray(a.b), np.asarray(b.b))
    ds = load_digits()
    ovr = certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4,
                            update="pcg")
    s = ovr.init(ds.X_train, ds.y_train, jax.random.key(0), num_classes=10)
    B = np.asarray(s.b)
    corr = np.corrcoef(B.T)
    assert np.abs(corr[np.triu_indices(10, 1)]).max() < 0.5  # heads get distinct noise


def test_certificate_contents_and_json_roundtrip(digits38):
    unl = _unl(diagnose=True)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    cert = unl.unlearn(st, [4]).certificate
    assert cert.mechanism == "guo2020_certified_removal"
    assert cert.status == "holds" and cert.valid
    assert cert.threat == "indistinguishable_from_retraining"
    assert cert.adjacency == "removal" and cert.scale == "sum" and cert.calibration == "guo_c"
    names = {a.name for a in cert.assumptions}
    assert {"unit_rows", "strong_convexity", "curvature_lipschitz", "training_gradient",
            "spectral_norm_bound", "float64", "solver"} <= names
    assert all(a.state == "verified" for a in cert.assumptions)
    back = Certificate.from_json(cert.to_json())
    assert back.to_dict() == cert.to_dict()
    assert back.valid and back.budget.used == cert.budget.used
    pub = cert.public()
    assert "bounds" not in pub and "private" not in pub and "solver" not in pub
    assert "b_norm" not in cert.to_json(private=False)
    assert "b_norm" in cert.to_json()
    # the budget's total is public; the amount used (a residual bound) and left are private
    assert pub["budget"] == {"total": cert.budget.total, "unit": cert.budget.unit}
    assert repr(cert.budget.used) not in cert.to_json(private=False)


def test_float32_is_refused_with_a_clear_error(digits38):
    unl = _unl()
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="float64"):
            unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epsilon=0.0), "epsilon"),
        (dict(epsilon=-1.0), "epsilon"),
        (dict(epsilon=20.0), "epsilon"),
        (dict(delta=0.0), "delta"),
        (dict(delta=1.0), "delta"),
        (dict(lam=0.0), "lam"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(gamma=0.01), "gamma"),
        (dict(bound="loose"), "bound"),
        (dict(loss="hinge"), "loss"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _unl(**kwargs)


def test_bad_data_and_requests_raise(digits38):
    unl = _unl()
    X, y = digits38.X_train, digits38.y_train
    Xnan = X.copy()
    Xnan[3, 2] = np.nan
    with pytest.raises(ValueError, match="X contains"):
        unl.init(Xnan, y, jax.random.key(0))
    with pytest.raises(ValueError, match="norm"):
        unl.init(X * 2, y, jax.random.key(0))
    with pytest.raises(ValueError, match="mismatched shapes"):
        unl.init(X, y[:-1], jax.random.key(0))
    st = unl.init(X, y, jax.random.key(0))
    with pytest.raises(ValueError, match="out-of-range"):
        unl.unlearn(st, [X.shape[0]])
    with pytest.raises(ValueError, match="out-of-range"):
        unl.unlearn(st, [-1])
    with pytest.raises(ValueError, match="repeats"):
        unl.unlearn(st, [3, 3])
    with pytest.raises(ValueError, match="empty"):
        unl.unlearn(st, [])
    st2 = unl.unlearn(st, [3]).state
    with pytest.raises(ValueError, match="already removed"):
        unl.unlearn(st2, [3])
