"""Descent-to-Delete (Neel et al. 2021): contraction bounds against exact optima, releases."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun import _validate
from certun.accounting import analytic_epsilon, calibrate
from certun.bounds import descent_to_delete as d2d
from certun.data import synthetic_logistic
from certun.models import glm
from certun.unlearners import descent_to_delete
from certun.unlearners.langevin import noisy_gd


@jax.jit
def _fit(X, y, lam, mask):
    return glm.fit("logistic", X, y, lam, mask=mask, tol=1e-13).params


def _opt(X, y, lam, mask=None):
    mask = np.ones(X.shape[0]) if mask is None else mask
    return np.asarray(_fit(jnp.asarray(X), jnp.asarray(y), lam, jnp.asarray(mask)))


@pytest.mark.parametrize("seed, n, d, lam", [(0, 80, 5, 0.05), (1, 150, 12, 0.2),
                                             (2, 60, 3, 0.01)])
def test_contraction_bound_vs_distance_to_the_retrained_optimum(seed, n, d, lam):
    """Acceptance: every request's bound >= measured ||w_internal - w*_retrained||."""
    ds = synthetic_logistic(n, d, seed=seed)
    X, y = ds.X_train, ds.y_train
    rng = np.random.default_rng(seed)
    for steps in (1, 3):
        unl = descent_to_delete(lam=lam, epsilon=1.0, delta=1e-5, steps=steps)
        st = unl.init(X, y, jax.random.key(seed))
        w_star = _opt(X, y, lam)
        assert np.linalg.norm(np.asarray(st.W) - w_star) <= st.error
        order = rng.permutation(n)
        pos, ratios = 0, []
        for S in (1, 2, 1, 3, 1):
            idx = order[pos:pos + S]
            pos += S
            res = unl.unlearn(st, idx)
            assert res.outcome == "unlearned", res.certificate.reason
            st = res.state
            w_star = _opt(X, y, lam, st.mask)
            dist = np.linalg.norm(np.asarray(st.W) - w_star)
            assert dist <= res.diagnostics["error_bound"] * (1 + 1e-9) + 1e-12
            ratios.append(dist / res.diagnostics["error_bound"])
            # the reference (retraining from scratch with T steps) is within e_ref too
            ref = np.asarray(unl.retrain(st).params)
            assert ref.shape == unl.params(st).shape == w_star[:, 0].shape
            assert np.linalg.norm(ref - w_star[:, 0]) <= st.reference_error * (1 + 1e-9) + 1e-12
        assert max(ratios) > 1e-4  # the bound is not vacuous by orders of magnitude


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_step_contraction_and_optimum_shift(seed):
    ds = synthetic_logistic(70, 6, seed=seed)
    X, y = ds.X_train, ds.y_train
    lam = 0.05
    L, m = 0.25 + lam, lam
    eta, gamma = d2d.step_size(L, m), d2d.contraction(L, m)
    w_star = _opt(X, y, lam)
    R0 = d2d.optimum_norm_bound(m)
    assert np.linalg.norm(w_star) <= R0
    step = noisy_gd(glm.LOGISTIC, lam, eta, 0.0, None, radius=R0)
    rng = np.random.default_rng(seed)
    Xj, Yj = jnp.asarray(X), jnp.asarray(y)[:, None]
    for _ in range(10):
        w = rng.normal(size=(6, 1)) * rng.uniform(0.1, 10)
        w1, _, _ = step(jnp.asarray(w), Xj, Yj, jnp.ones(70), jax.random.key(0), 1)
        assert (np.linalg.norm(np.asarray(w1) - w_star)
                <= gamma * np.linalg.norm(w - w_star) * (1 + 1e-12))
    for S in (1, 4):
        mask = np.ones(70)
        mask[rng.choice(70, S, replace=False)] = 0
        shift = np.linalg.norm(_opt(X, y, lam, mask) - w_star)
        assert shift <= d2d.optimum_shift(m, 70, S)


def test_paper_noise_formula_reproduces_the_transcribed_values():
    """MNIST 3-vs-8 settings give sigma = 2.58, 1.23, 0.43 at I = 1, 2, 5.

    Source: docs/bibliography.md §5.
    """
    n = 11982
    m = 1e-6 * n
    for n_steps, sig in ((1, 2.58), (2, 1.23), (5, 0.43)):
        sigma = d2d.sigma_paper(0.25 + m, m, n, n_steps, 1.0, 1 / n)
        assert sigma == pytest.approx(sig, abs=0.006)
    assert d2d.contraction(0.25 + m, m) == pytest.approx(0.9125, abs=1e-4)


def test_steps_for_is_minimal():
    g = 0.7
    for e, s, t in ((0.1, 0.5, 0.01), (0.0, 1.0, 0.9), (2.0, 0.0, 1e-6)):
        n_steps = d2d.steps_for(g, e, s, t)  # the paper's I
        assert g ** n_steps * (e + s) <= t
        assert n_steps == 0 or g ** (n_steps - 1) * (e + s) > t
    assert d2d.steady_state(g, 3, 0.2) == pytest.approx(
        d2d.error_after(g, 3, d2d.steady_state(g, 3, 0.2), 0.2))


def test_releases_carry_fresh_calibrated_noise(digits38):
    eps, dlt, lam = 1.0, 1e-5, 0.1
    unl = descent_to_delete(lam=lam, epsilon=eps, delta=dlt, steps=4)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    r1 = unl.unlearn(st, [5])
    r2 = unl.unlearn(r1.state, [6, 7])
    z = calibrate(eps, dlt, 1.0).sigma
    for r in (r1, r2):
        c = r.certificate
        assert c.status == "holds" and c.threat == "indistinguishable_from_retraining"
        assert c.scale == "mean" and c.adjacency == "removal"
        assert c.sigma == pytest.approx(z * c.sensitivity, rel=1e-12)
        assert c.sensitivity == pytest.approx(r.diagnostics["error_bound"]
                                              + r.state.reference_error, rel=1e-12)
        assert "bounds" not in c.public()
    n1 = np.asarray(r1.state.published - r1.state.W).ravel() / r1.state.sigmas[-1]
    n2 = np.asarray(r2.state.published - r2.state.W).ravel() / r2.state.sigmas[-1]
    assert abs(np.corrcoef(n1, n2)[0, 1]) < 0.35  # fresh noise per release (d = 64)
    assert 0.6 < np.std(n2) < 1.4
    # the error recursion with the public request sizes
    g = d2d.contraction(0.25 + lam, lam)
    n = digits38.n_train
    e1 = g ** 4 * (st.error + d2d.optimum_shift(lam, n, 1))
    e2 = g ** 4 * (e1 + d2d.optimum_shift(lam, n - 1, 2))
    assert r2.diagnostics["error_bound"] == pytest.approx(e2, rel=1e-12)
    z_eq = ((r1.certificate.sensitivity / r1.certificate.sigma) ** 2
            + (r2.certificate.sensitivity / r2.certificate.sigma) ** 2) ** -0.5
    assert r2.certificate.epsilon_composed == pytest.approx(analytic_epsilon(z_eq, dlt), rel=1e-9)


def test_sigma_mode_computes_the_steps(digits38):
    unl = descent_to_delete(lam=0.1, epsilon=1.0, delta=1e-5, sigma=0.02)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    z = calibrate(1.0, 1e-5, 1.0).sigma
    res = unl.unlearn(st, [0, 1, 2])
    c = res.certificate
    assert c.sigma == 0.02 and c.sensitivity <= 0.02 / z * (1 + 1e-12)
    g = d2d.contraction(0.35, 0.1)
    n_steps = res.diagnostics["I"]
    shift = d2d.optimum_shift(0.1, digits38.n_train, 3)
    assert n_steps == d2d.steps_for(g, st.error, shift, 0.02 / z - st.reference_error)
    with jax.disable_jit():  # unjitted path gives the same internal model
        res_nj = unl.unlearn(st, [0, 1, 2])
    np.testing.assert_allclose(np.asarray(res_nj.state.W), np.asarray(res.state.W), rtol=1e-10)


def test_replacement_adjacency_and_bad_arguments(digits38):
    unl = descent_to_delete(lam=0.1, epsilon=1.0, delta=1e-5, steps=3, adjacency="replacement")
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    xr = np.ones((1, 64)) / 8.0
    res = unl.unlearn(st, [3], replacement=(xr, np.array([1.0])))
    assert res.certificate.adjacency == "replacement" and res.certificate.status == "holds"
    assert res.certificate.bounds["sigma_paper"] > 0
    with pytest.raises(_validate.ValidationError, match="exactly one"):
        descent_to_delete(lam=0.1, epsilon=1.0, delta=1e-5)
    with pytest.raises(_validate.ValidationError, match="exactly one"):
        descent_to_delete(lam=0.1, epsilon=1.0, delta=1e-5, steps=2, sigma=1.0)
    with pytest.raises(_validate.ValidationError, match="classic"):
        descent_to_delete(lam=0.1, epsilon=2.0, delta=1e-5, steps=2, calibration="classic")
    with pytest.raises(_validate.ValidationError, match="train_steps"):
        descent_to_delete(lam=0.1, epsilon=1.0, delta=1e-5, sigma=1e-3, train_steps=1).init(
            digits38.X_train, digits38.y_train, jax.random.key(0))
    assert math.isfinite(res.certificate.epsilon_composed)
