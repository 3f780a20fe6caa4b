"""Cached-factor updates of Guo et al.'s certified removal: exactness, staleness bound, policy."""

import jax
import numpy as np
import pytest

from certun.bounds import guo as guo_bounds
from certun.data import load_diabetes, load_digits, load_digits_3v8, synthetic_logistic
from certun.unlearners import certified_removal
from certun.unlearners.guo import GuoUnlearner, cached_factor_solve


def _sig(a):
    return 1 / (1 + np.exp(-a))


def _curv_weights(loss, a):
    return np.ones_like(a) if loss == "squared" else _sig(a) * _sig(-a)


def _dense_hessian(st, lam, W, loss="logistic", mask=None):
    """Sum-scale Hessian blocks of the rows present at ``W`` (NumPy, float64)."""
    X = np.asarray(st.X, np.float64)
    keep = (np.asarray(st.mask) if mask is None else mask) > 0
    Xr = X[keep]
    out = []
    for k in range(W.shape[1]):
        D = _curv_weights(loss, Xr @ W[:, k])
        out.append((Xr * D[:, None]).T @ Xr + lam * keep.sum() * np.eye(X.shape[1]))
    return out


def _removed_grad(st, idx, lam, W, loss="logistic"):
    X, Y = np.asarray(st.X), np.asarray(st.Y)
    out = []
    for k in range(W.shape[1]):
        a = X[idx] @ W[:, k]
        d1 = a - Y[idx, k] if loss == "squared" else -Y[idx, k] * _sig(-Y[idx, k] * a)
        out.append(X[idx].T @ d1 + len(idx) * lam * W[:, k])
    return out


LAM = 1e-2


# the default factorisation (eigh) in the default tier; every cached-path check also runs for
# factor="cholesky" under `pytest -m slow` (its own fold, Neumann and Woodbury tests below run
# in the default tier)
@pytest.fixture(scope="module", params=["eigh", pytest.param("cholesky", marks=pytest.mark.slow)])
def cached(digits38, request):
    """A cached-factor unlearner per factorisation (compiled once for the module), its state.

    ``factor="cholesky"`` runs its Neumann series far enough (12 terms: ratio <= 16/267) to
    compare with exact solves at 1e-10; the default's truncation is tested on its own.
    """
    extra = dict(factor="cholesky", neumann_terms=12) if request.param == "cholesky" else {}
    unl = certified_removal(lam=LAM, sigma=10.0, epsilon=8.0, delta=1e-4, update="cached",
                            max_rank=16, refresh_cost_ratio=None, **extra)
    return unl, unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))


def test_auto_picks_cached_wherever_it_serves_and_pcg_for_the_worst_case(digits38):
    ds = load_diabetes()
    ridge = certified_removal(lam=1e-2, sigma=0.1, epsilon=1.0, delta=1e-4, loss="squared")
    st = ridge.init(ds.X_train, ds.y_train, jax.random.key(0))
    assert isinstance(ridge, GuoUnlearner) and st.proj_buf is not None
    assert ridge.unlearn(st, [3]).diagnostics["solver"]["path"] == "cached_factor"
    logi = certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4,
                             update="pcg")
    st = logi.init(digits38.X_train[:100], digits38.y_train[:100], jax.random.key(0))
    assert st.proj_buf is None
    worst = certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4, bound="worst_case")
    assert worst.init(digits38.X_train[:100], digits38.y_train[:100],
                      jax.random.key(0)).proj_buf is None
    auto = certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4)
    assert auto.unlearn.ctx.cached and auto.unlearn.ctx.acc.remeasure
    st = auto.init(digits38.X_train[:100], digits38.y_train[:100], jax.random.key(0))
    assert st.proj_buf is not None and st.inv is not None  # the Cholesky factor by default
    # n = 100 <= 2 d = 128: every request measured on the cached factor (measure_every)
    assert auto.unlearn(st, [3]).diagnostics["solver"]["path"] == "measured_factor"
    bounded = certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4,
                                measure_every=False)
    st = bounded.init(digits38.X_train[:100], digits38.y_train[:100], jax.random.key(0))
    assert bounded.unlearn(st, [3]).diagnostics["solver"]["path"] == "cached_factor"
    explicit = certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4, update="cached")
    assert not explicit.unlearn.ctx.acc.remeasure  # remeasure only by default with "auto"


def test_maintained_factor_solves_retained_hessian_at_factor_point(cached):
    """Acceptance: after k updates the factor solves H(w_f; D_k) x = v to 1e-10 (float64)."""
    lam = LAM
    unl, st = cached
    rng = np.random.default_rng(0)
    order = rng.permutation(st.X.shape[0])
    pos, k = 0, 0
    folded = False
    for m in (1, 3, 1, 3, 2, 1, 3, 1, 3, 1, 2):  # 21 rows: one fold (capacity 16) on the way
        res = unl.unlearn(st, order[pos:pos + m])
        assert res.outcome == "unlearned"
        folded |= res.diagnostics["refreshed"] == "capacity"
        st, pos, k = res.state, pos + m, k + 1
        H = _dense_hessian(st, lam, np.asarray(st.W_factor))[0]
        v = rng.standard_normal((st.W.shape[0], 1))
        x = np.asarray(cached_factor_solve(st, v, lam))[:, 0]
        ref = np.linalg.solve(H, v[:, 0])
        assert np.linalg.norm(x - ref) / np.linalg.norm(ref) < 1e-10
        assert np.linalg.norm(H @ x - v[:, 0]) / np.linalg.norm(v) < 1e-10
    assert folded and k == 11
    with jax.disable_jit():
        x2 = np.asarray(cached_factor_solve(st, v, lam))[:, 0]
    np.testing.assert_allclose(x2, x, rtol=1e-10)


def test_cached_step_is_the_stale_newton_step_and_batch_is_one_summed_step(cached):
    lam = LAM
    unl, st = cached
    for idx in ([4], [10, 11, 12], [30]):
        W, Wf = np.asarray(st.W), np.asarray(st.W_factor)
        mask = np.asarray(st.mask).copy()
        mask[idx] = 0
        H = _dense_hessian(st, lam, Wf, mask=mask)[0]
        Delta = _removed_grad(st, idx, lam, W)[0]  # summed over the batch
        ref = W[:, 0] + np.linalg.solve(H, Delta)
        res = unl.unlearn(st, idx)
        assert res.diagnostics["solver"]["path"] == "cached_factor"
        np.testing.assert_allclose(np.asarray(res.params), ref, rtol=1e-10, atol=1e-14)
        st = res.state


def test_ridge_cached_is_exact_over_folds():
    ds = load_diabetes()
    unl = certified_removal(lam=1e-2, sigma=0.1, epsilon=1.0, delta=1e-4, loss="squared",
                            diagnose=True, max_rank=8)
    st = unl.init(ds.X_train, ds.y_train, jax.random.key(0))
    order = np.random.default_rng(1).permutation(st.X.shape[0])
    folds = 0
    for j in range(0, 40, 2):
        res = unl.unlearn(st, order[j:j + 2])
        folds += res.diagnostics["refreshed"] == "capacity"
        st = res.state
        assert res.certificate.valid
        assert res.diagnostics["true_residual"] < 1e-8
        assert res.diagnostics["step_staleness_bound"] == 0.0
    assert folds >= 4
    gap = np.asarray(unl.params(st)) - np.asarray(unl.retrain(st).params)
    assert gap.shape == (st.W.shape[0],) and float(np.linalg.norm(gap)) < 1e-8


def test_staleness_chain_bounds_the_true_extra_residual():
    """Every inequality of the three routes on random stale points (proofs/cached_factors.md §3).

    Spectral: eps <= s1 <= s2 <= stale + q3 <= stale + DD; l1: eps <= sum|e_i| ||x_i|| <=
    l1_rows <= l1 <= stale + q3; self-concordant: sum|e_i| ||x_i|| <= sc_rows <= sc. Drifts
    from tiny to ||w - w_f|| ~ 5 (kappa ~ 30), margins up to ~15 (l'' ~ 3e-7), both gammas.
    """
    rng = np.random.default_rng(0)
    d1 = lambda a, y: -y * _sig(-y * a)  # noqa: E731
    d2 = lambda a, y: _sig(a) * _sig(-a)  # noqa: E731
    gstar = 1 / (6 * np.sqrt(3))
    worst = {"l1": 0.0, "sc": 0.0, "spectral": 0.0}
    for trial in range(400):
        n, d = int(rng.integers(20, 300)), int(rng.integers(2, 16))
        X = rng.standard_normal((n, d))
        X /= np.linalg.norm(X, axis=1, keepdims=True) * rng.uniform(1, 2, (n, 1))
        y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        scale = [0.1, 1.0, 5.0, 15.0][trial % 4]
        w = rng.standard_normal(d) * scale / np.sqrt(d)
        w_f = w + rng.standard_normal(d) * rng.choice([1e-4, 1e-2, 0.3, 2.0]) / np.sqrt(d)
        delta = rng.standard_normal(d) * rng.choice([1e-5, 1e-3, 0.1, 1.0]) / np.sqrt(d)
        gamma = (gstar, 0.25)[trial % 2]
        c = guo_bounds.stale_remainder_chain(d1, d2, gamma, X, y, w, w_f, delta)
        tol = 1e-12 * (1 + c.s2 + c.l1_rows)
        assert c.eps <= c.s1 + tol
        assert c.s1 <= c.s2 + tol
        assert c.s2 <= c.stale + c.q3 + tol
        assert c.q3 <= c.data_dependent
        assert c.eps <= c.e_l1 + tol
        assert c.e_l1 <= c.l1_rows + tol
        assert c.l1_rows <= c.l1 * (1 + 1e-12) + tol
        assert c.l1 <= (c.stale + c.q3) * (1 + 1e-12) + tol  # never worse than S + Q3
        assert c.e_l1 <= c.sc_rows * (1 + 1e-12) + tol
        assert c.sc_rows <= c.sc * (1 + 1e-12) + tol
        charged = min(c.stale + c.data_dependent, c.l1, c.sc)
        assert c.eps <= charged + tol
        for name, b in (("l1", c.l1), ("sc", c.sc), ("spectral", c.stale + c.data_dependent)):
            if b > 0:
                worst[name] = max(worst[name], c.eps / b)
    assert guo_bounds.staleness_bound(0.25, 2.0, 0.0, 0.0, 1.0, 1.0) == 0.0
    assert all(0 < v <= 1 for v in worst.values()), worst
    # the least of the three, from upper bounds on its inputs, is monotone in each input
    base = guo_bounds.cached_remainder_bound(0.25, 3.0, 0.2, 0.5, 0.01, 0.05, 0.1, 0.02, 1.0)
    assert base.charged == min(base.spectral, base.l1, base.self_concordant)
    for i in range(1, 8):  # every input but gamma
        args = [0.25, 3.0, 0.2, 0.5, 0.01, 0.05, 0.1, 0.02]
        args[i] *= 1.5
        assert guo_bounds.cached_remainder_bound(*args, 1.0).charged >= base.charged * (1 - 1e-15)
    assert guo_bounds.cached_remainder_bound(0.0, 3.0, 0.2, 0.5, 0.01, 0.05).charged == 0.0


@pytest.mark.slow
def test_charged_remainder_covers_the_exact_remainder_over_long_runs():
    """Per step, the exact remainder (R') of the stale step <= the charged remainder bound.

    Binary and one-vs-rest, hundreds of sequential cached removals with folds, policy
    refreshes and retrains; the exact remainder is recomputed from scratch in NumPy.
    """
    d1 = lambda a, y: -y * _sig(-y * a)  # noqa: E731
    d2 = lambda a, y: _sig(a) * _sig(-a)  # noqa: E731
    checked = stale_steps = 0
    ratios = []
    cases = [(synthetic_logistic(300, 10, seed=3), None, 1e-2, 20.0, 0.25, 180),
             (synthetic_logistic(300, 10, seed=4), None, 1e-3, 50.0, None, 120),
             (load_digits(), 10, 1e-2, 50.0, 0.5, 40)]
    for seed, (ds, K, lam, sigma, ratio, steps) in enumerate(cases):
        X_tr, y_tr = ds.X_train, ds.y_train
        if K is not None:
            X_tr, y_tr = X_tr[:400], y_tr[:400]
        unl = certified_removal(lam=lam, sigma=sigma, epsilon=8.0, delta=1e-4, update="cached",
                                max_rank=16, refresh_cost_ratio=ratio, auto_retrain=True)
        st = unl.init(X_tr, y_tr, jax.random.key(seed), num_classes=K)
        X, Y = np.asarray(st.X), np.asarray(st.Y)
        order = np.random.default_rng(seed).permutation(X.shape[0])
        for i in order[:steps]:
            res = unl.unlearn(st, [int(i)])
            if res.outcome == "unlearned":
                keep = np.asarray(res.state.mask) > 0
                W, Wf = np.asarray(st.W), np.asarray(st.W_factor)
                if res.diagnostics["refreshed"] in ("budget", "solver"):
                    Wf = W  # served after a refresh at the current model
                dl = np.asarray(res.state.W) - W
                eps = sum(guo_bounds.stale_remainder_chain(
                    d1, d2, 0.25, X[keep], Y[keep, k], W[:, k], Wf[:, k], dl[:, k]).eps
                    for k in range(W.shape[1]))
                bound = res.diagnostics["step_remainder_bound"]
                assert eps <= bound, (eps, bound)
                ratios.append(eps / bound)
                stale_steps += res.diagnostics["step_staleness_bound"] > 0
                checked += 1
            st = res.state
    assert checked >= 300 and stale_steps >= 200, (checked, stale_steps)
    assert max(ratios) <= 1.0
    print(f"exact / charged remainder: median {np.median(ratios):.3g}, max {max(ratios):.3g}")


def test_cached_bound_covers_true_residual_over_many_removals():
    """True residual (with b) <= charged bound <= budget over 150+ sequential cached removals."""
    served = stale_seen = 0
    for seed, (lam, sigma, ratio) in enumerate([(1e-2, 20.0, 0.25), (1e-1, 2.0, 0.05)]):
        ds = synthetic_logistic(300, 10, seed=seed)
        unl = certified_removal(lam=lam, sigma=sigma, epsilon=8.0, delta=1e-4, diagnose=True,
                                update="cached", max_rank=16, refresh_cost_ratio=ratio,
                                auto_retrain=True)
        st = unl.init(ds.X_train, ds.y_train, jax.random.key(seed))
        order = np.random.default_rng(seed).permutation(ds.X_train.shape[0])
        for i in order[:85]:
            res = unl.unlearn(st, [int(i)])
            dg = res.diagnostics
            budget = res.certificate.budget
            assert res.certificate.valid and budget.used <= budget.total
            st = res.state
            if res.outcome == "retrained":  # budget spent: fresh b, new budget
                assert res.certificate.budget.used == pytest.approx(float(st.train_grad_norm))
                continue
            assert dg["true_residual"] <= dg["residual_bound_after"]
            stale_seen += dg["step_staleness_bound"] > 0
            served += 1
    assert served >= 150 and stale_seen >= 50, (served, stale_seen)


def test_charged_remainder_equals_the_bound_with_exact_norms(cached):
    """The charge is the least of the three routes, evaluated with (nearly) exact norms."""
    unl, st = cached
    st = unl.unlearn(st, [1, 2]).state
    res = unl.unlearn(st, [7])
    X = np.asarray(st.X)
    keep = np.asarray(res.state.mask) > 0
    u = np.asarray(st.W)[:, 0] - np.asarray(st.W_factor)[:, 0]
    dl = np.asarray(res.state.W)[:, 0] - np.asarray(st.W)[:, 0]
    xs = min(float(st.x_spectral), np.sqrt(keep.sum()))
    h = _curv_weights("logistic", X[keep] @ np.asarray(st.W_factor)[:, 0])
    Xu, Xd = X[keep] @ u, X[keep] @ dl
    ref = guo_bounds.cached_remainder_bound(
        0.25, xs, np.linalg.norm(u), np.linalg.norm(Xu), np.linalg.norm(dl), np.linalg.norm(Xd),
        np.sqrt(np.sum(h * Xu * Xu)), np.sqrt(np.sum(h * Xd * Xd)), 1.0)
    assert ref.staleness > 0 and ref.charged < ref.spectral
    dg = res.diagnostics
    assert dg["step_remainder_bound"] == pytest.approx(ref.charged, rel=1e-6)
    assert dg["step_staleness_bound"] == pytest.approx(ref.staleness, rel=1e-6)
    assert dg["step_l1_bound"] == pytest.approx(ref.l1, rel=1e-6)
    assert dg["step_self_concordant_bound"] == pytest.approx(ref.self_concordant, rel=1e-6)
    assert dg["step_spectral_bound"] == pytest.approx(
        guo_bounds.staleness_bound(0.25, xs, np.linalg.norm(u), np.linalg.norm(Xu),
                                   np.linalg.norm(dl), np.linalg.norm(Xd))
        + dg["step_data_dependent_bound"], rel=1e-6)
    assert dg["step_remainder_routes"] == [ref.route]
    names = {a.name for a in res.certificate.assumptions}
    assert "stale_curvature" in names and res.certificate.valid


def test_refresh_policy_rule_and_budget_refresh(digits38, cached):
    kappa = 0.05
    unl = certified_removal(lam=1e-2, sigma=10.0, epsilon=8.0, delta=1e-4, update="cached",
                            refresh_cost_ratio=kappa)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(2))
    budget = 80.0 / np.sqrt(2 * np.log(1.5 / 1e-4))
    t, S, D, policy = 0, 0.0, 0.0, 0
    for i in range(40):
        res = unl.unlearn(st, [i])
        assert res.outcome == "unlearned"
        dg = res.diagnostics
        s_t, D_t = dg["step_staleness_bound"], dg["step_drift_norm"]
        t, S, D = t + 1, S + s_t, D + D_t
        s_hat = S * D_t / D if D > 0 else s_t  # staleness per unit drift so far x current drift
        assert dg["refresh_policy_estimate"] == pytest.approx(s_hat, rel=1e-12)
        fire = s_t > 0 and t * s_hat - S >= kappa * budget
        assert (dg["refreshed_after"] == "policy") == fire
        if fire:
            policy += 1
            assert int(res.state.steps_since_factor) == 0
            np.testing.assert_array_equal(np.asarray(res.state.W_factor), np.asarray(res.state.W))
            t, S, D = 0, 0.0, 0.0
        else:
            assert float(res.state.stale_sum) == pytest.approx(S, rel=1e-12)
            assert float(res.state.drift_sum) == pytest.approx(D, rel=1e-12)
        st = res.state
    assert policy >= 1
    # a request that only a stale step pushes over the budget is served after a refresh
    tight, st = cached
    for i in range(8):
        st = tight.unlearn(st, [i]).state
    R = float(st.residual_bound)
    stale = tight.unlearn(st, [31])
    fresh = tight.unlearn(tight.refresh(st), [31])
    assert fresh.diagnostics["step_staleness_bound"] == 0.0
    charge_stale = stale.diagnostics["residual_bound_after"] - R
    assert stale.diagnostics["refreshed"] is None and charge_stale > 0
    # shrink the budget so that the stale charge exceeds it but the fresh one fits
    used_fresh = fresh.certificate.budget.used
    used_stale = R + charge_stale
    assert used_fresh < used_stale
    sigma = (used_fresh + used_stale) / 2 * np.sqrt(2 * np.log(1.5 / 1e-4)) / 8.0
    same = dict(factor="cholesky", neumann_terms=12) if st.inv is not None else {}
    mid = certified_removal(lam=1e-2, sigma=sigma, epsilon=8.0, delta=1e-4, update="cached",
                            max_rank=16, refresh_cost_ratio=None, **same)
    out = mid.unlearn(st, [31])
    assert out.outcome == "unlearned" and out.diagnostics["refreshed"] == "budget"
    np.testing.assert_allclose(np.asarray(out.params), np.asarray(fresh.params), rtol=1e-12)


@pytest.mark.parametrize("update", ["cached", pytest.param("pcg", marks=pytest.mark.slow)])
def test_what_if_is_vmapped_and_matches_each_request(digits38, cached, update):
    if update == "cached":
        unl, st = cached
    else:
        unl = certified_removal(lam=LAM, sigma=10.0, epsilon=8.0, delta=1e-4, update=update)
        st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    for first in (True, False):
        cands = [40, 7, 99, 250, 3]
        wi = unl.what_if(st, cands)
        np.testing.assert_array_equal(wi.indices, cands)
        for j, c in enumerate(cands):
            res = unl.unlearn(st, [c])
            assert res.certificate.budget.used == pytest.approx(wi.used_after[j], rel=1e-8)
            assert wi.exceeds[j] == (wi.used_after[j] > wi.budget_total)
        assert wi.budget_used == pytest.approx(float(st.residual_bound))
        if first:
            st = unl.unlearn(st, [200]).state
    with pytest.raises(ValueError, match="candidates"):
        unl.what_if(st, [200])  # already removed
    with pytest.raises(ValueError, match="candidates"):
        unl.what_if(st, [3, 3])


@pytest.mark.slow  # 10 s; one-vs-rest heads on the uncached path stay in the default tier
def test_one_vs_rest_cached_heads():
    ds = load_digits()
    lam = 1e-2
    unl = certified_removal(lam=lam, sigma=10.0, epsilon=8.0, delta=1e-4, update="cached",
                            refresh_cost_ratio=None, max_rank=8)
    st = unl.init(ds.X_train, ds.y_train, jax.random.key(0), num_classes=10)
    for idx in ([3], [5, 6], [8], [9], [11, 12, 13]):  # 8 rows: buffer folded at the last
        st = unl.unlearn(st, idx).state
    Hs = _dense_hessian(st, lam, np.asarray(st.W_factor))
    V = np.random.default_rng(0).standard_normal((64, 10))
    x = np.asarray(cached_factor_solve(st, V, lam))
    for k in range(10):
        np.testing.assert_allclose(x[:, k], np.linalg.solve(Hs[k], V[:, k]), rtol=1e-10)


def test_jitted_and_unjitted_cached_paths_agree(cached):
    unl, st = cached
    a = unl.unlearn(unl.unlearn(st, [3]).state, [4, 5])
    with jax.disable_jit():
        b = unl.unlearn(unl.unlearn(st, [3]).state, [4, 5])
    np.testing.assert_allclose(np.asarray(a.params), np.asarray(b.params), rtol=1e-10)
    assert a.certificate.budget.used == pytest.approx(b.certificate.budget.used, rel=1e-8)


def test_oversized_request_is_one_exact_step(cached):
    lam = LAM
    unl, st = cached
    st = unl.unlearn(st, [0, 1]).state
    idx = list(range(10, 30))  # 20 rows > max_rank = 16
    W = np.asarray(st.W)
    mask = np.asarray(st.mask).copy()
    mask[idx] = 0
    ref = W[:, 0] + np.linalg.solve(_dense_hessian(st, lam, W, mask=mask)[0],
                                    _removed_grad(st, idx, lam, W)[0])
    res = unl.unlearn(st, idx)
    assert res.diagnostics["solver"]["path"] == "fresh_factor" and res.certificate.valid
    np.testing.assert_allclose(np.asarray(res.params), ref, rtol=1e-10)
    nxt = unl.unlearn(res.state, [30])  # the factor is consistent afterwards
    H = _dense_hessian(nxt.state, lam, np.asarray(nxt.state.W_factor))[0]
    v = np.ones((64, 1))
    np.testing.assert_allclose(np.asarray(cached_factor_solve(nxt.state, v, lam))[:, 0],
                               np.linalg.solve(H, v[:, 0]), rtol=1e-10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(update="lazy"), "update"),
    (dict(update="cached", bound="worst_case"), "data-dependent"),
    (dict(max_rank=0), "max_rank"),
    (dict(refresh_cost_ratio=-1.0), "refresh_cost_ratio"),
])
def test_bad_cached_options_raise(kwargs, match):
    base = dict(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        certified_removal(**base)
    with pytest.raises(ValueError, match="update='cached'"):
        cached_factor_solve(certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4,
                                              update="pcg").init(
            load_digits_3v8().X_train[:50], load_digits_3v8().y_train[:50], jax.random.key(0)),
            np.ones((64, 1)), 1e-2)


def test_warmup_compiles_every_step_single_row_requests_take():
    """After ``warmup`` no single-row request compiles: every buffer width, the fold."""
    ds = synthetic_logistic(300, 10, seed=5)
    unl = certified_removal(lam=0.1, sigma=10.0, epsilon=8.0, delta=1e-4, update="cached",
                            max_rank=64, refresh_cost_ratio=None)
    st = unl.init(ds.X_train, ds.y_train, jax.random.key(0))
    assert unl.warmup(st) > 0
    steps = unl.unlearn.ctx.steps  # the unlearner's own jitted steps
    step, fold = steps.request["cached_factor"], steps.fold["cached_factor"]
    sizes = step._cache_size(), fold._cache_size()
    assert sizes[0] == 2  # widths 32 and 64
    folds = 0
    for i in range(70):  # crosses both widths and folds once
        res = unl.unlearn(st, [i])
        assert res.outcome == "unlearned"
        folds += res.diagnostics["refreshed"] == "capacity"
        st = res.state
    assert folds == 1
    assert (step._cache_size(), fold._cache_size()) == sizes


def test_host_mirror_never_serves_stale_scalars(cached):
    """A swapped field or an older state is never served the host mirror's scalars.

    Requests read the previous state's scalars from a host mirror; a state whose fields were
    swapped, or an older state, reads them from the device and gets the same answer.
    """
    unl, st = cached
    a = unl.unlearn(st, [40]).state  # mirrored
    ref = unl.unlearn(a, [41])
    again = unl.unlearn(a, [41])  # branching from the same state: same answer
    assert again.certificate.budget.used == ref.certificate.budget.used
    old = unl.unlearn(st, [41])  # st is not mirrored any more: read from the device
    assert old.certificate.budget.used < ref.certificate.budget.used
    bumped = a._replace(residual_bound=jax.numpy.asarray(float(a.residual_bound) + 0.5))
    res = unl.unlearn(bumped, [41])
    assert res.certificate.budget.used == pytest.approx(ref.certificate.budget.used + 0.5,
                                                        rel=1e-12)
    with pytest.raises(ValueError, match="already removed"):
        unl.unlearn(ref.state, [40])
    moved = a._replace(mask=a.mask.at[41].set(0.0))  # row 41 removed behind the mirror's back
    with pytest.raises(ValueError, match="already removed"):
        unl.unlearn(moved, [41])


@pytest.mark.parametrize("terms", [pytest.param(t, marks=pytest.mark.slow) for t in (0, 1)] + [2])
def test_cholesky_neumann_error_within_its_tail_bound(digits38, terms):
    """``factor="cholesky"``: the step's error is within the Neumann tail bound.

    Against the exact stale step the relative error is at most ``q^(J+1) / (1 - q)``,
    ``q = mu / lambda_min(T_0)``, and the residual is the one measured and charged
    (proofs/cached_factors.md §5).
    """
    lam = LAM
    unl = certified_removal(lam=lam, sigma=10.0, epsilon=8.0, delta=1e-4, update="cached",
                            max_rank=16, refresh_cost_ratio=None, factor="cholesky",
                            neumann_terms=terms)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    worst = 0.0
    for idx in ([4], [10, 11, 12], [30], [31], [40, 41]):
        W, Wf = np.asarray(st.W), np.asarray(st.W_factor)
        mask = np.asarray(st.mask).copy()
        mask[idx] = 0
        t = int(st.inv_rows) - int(mask.sum())  # rows removed since the inverse was formed
        H = _dense_hessian(st, lam, Wf, mask=mask)[0]  # T = T_0 - mu I
        mu = lam * t
        q = mu / np.linalg.eigvalsh(H + mu * np.eye(H.shape[0]))[0]
        Delta = _removed_grad(st, idx, lam, W)[0]
        exact = np.linalg.solve(H, Delta)
        res = unl.unlearn(st, idx)
        assert res.outcome == "unlearned" and res.certificate.valid
        delta = np.asarray(res.params) - W[:, 0]
        err = np.linalg.norm(delta - exact) / np.linalg.norm(exact)
        assert err <= q ** (terms + 1) / (1 - q) * (1 + 1e-6) + 1e-13
        worst = max(worst, err)
        resid = np.linalg.norm(H @ delta - Delta)
        assert res.diagnostics["step_solver_residual"] == pytest.approx(resid, rel=1e-6, abs=1e-13)
        st = res.state
    assert worst > (1e-12 if terms < 2 else 0.0)  # the truncation is real, and bounded


@pytest.mark.parametrize("kwargs, match", [
    (dict(update="cached", factor="qr"), "factor"),
    (dict(update="pcg", factor="cholesky"), "update='cached'"),
    (dict(update="cached", factor="cholesky", neumann_terms=-1), "neumann_terms"),
])
def test_bad_factor_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4, **kwargs)


def test_a_state_is_served_only_by_an_unlearner_of_its_kind(digits38):
    X, y = digits38.X_train[:120], digits38.y_train[:120]
    kw = dict(lam=LAM, sigma=10.0, epsilon=8.0, delta=1e-4)
    eigh = certified_removal(**kw, update="cached", max_rank=16)
    st = eigh.init(X, y, jax.random.key(0))
    for other, match in ((certified_removal(**kw, update="cached", max_rank=16,
                                            factor="cholesky"), "factor='eigh'"),
                         (certified_removal(**kw, update="pcg"), "update='cached'"),
                         (certified_removal(**kw, update="cached", max_rank=32), "max_rank=32")):
        with pytest.raises(ValueError, match=match):
            other.unlearn(st, [3])


@pytest.mark.slow  # the default suite's time budget
def test_cholesky_folds_by_woodbury_then_reinverts_and_stays_exact():
    """Folds update the inverse by Woodbury at its shift while ``q`` allows, then re-invert.

    With 12 Neumann terms the steps equal the ``eigh`` factor's to 1e-9 and the maintained
    factor solves ``H(w_f; D_k)`` to 1e-10 throughout (proofs/cached_factors.md §5).
    """
    from certun.unlearners.guo import _REINVERT_RATIO

    ds = synthetic_logistic(2000, 20, seed=3)
    kw = dict(lam=1e-2, sigma=10.0, epsilon=8.0, delta=1e-4, update="cached", max_rank=16,
              refresh_cost_ratio=None)
    eig = certified_removal(**kw)
    cho = certified_removal(**kw, factor="cholesky", neumann_terms=12)
    se = eig.init(ds.X_train, ds.y_train, jax.random.key(1))
    sc = cho.init(ds.X_train, ds.y_train, jax.random.key(1))
    rng = np.random.default_rng(2)
    order = rng.permutation(ds.X_train.shape[0])
    woodbury = reinverted = 0
    for i in range(120):
        before = int(sc.inv_rows)
        re_, rc = eig.unlearn(se, [int(order[i])]), cho.unlearn(sc, [int(order[i])])
        assert re_.outcome == rc.outcome == "unlearned" and rc.certificate.valid
        np.testing.assert_allclose(np.asarray(rc.params), np.asarray(re_.params), rtol=1e-9)
        if rc.diagnostics["refreshed"] == "capacity":
            if int(rc.state.inv_rows) == before:
                woodbury += 1
            else:
                reinverted += 1
                assert before - int(rc.state.inv_rows) > _REINVERT_RATIO * before - 16
        se, sc = re_.state, rc.state
        if i % 20 == 19:
            H = _dense_hessian(sc, LAM, np.asarray(sc.W_factor))[0]
            v = rng.standard_normal((20, 1))
            x = np.asarray(cached_factor_solve(sc, v, LAM))[:, 0]
            assert np.linalg.norm(H @ x - v[:, 0]) / np.linalg.norm(v) < 1e-10
    assert woodbury >= 3 and reinverted >= 1
