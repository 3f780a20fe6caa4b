"""Sekhari et al. Newton unlearning: releases, noise, capacity, ridge constants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from certun.accounting import analytic_sigma, compose_gaussian
from certun.bounds import sekhari as sb
from certun.data import load_diabetes
from certun.unlearners import newton_unlearning


def test_releases_carry_fresh_calibrated_noise(digits38):
    unl = newton_unlearning(lam=0.1, epsilon=1.0, delta=1e-5, max_removals=10)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    # release 0: the original model is published with noise too
    n = digits38.X_train.shape[0]
    noise0 = np.asarray(st.published - st.W_hat).ravel()
    assert np.all(noise0 != 0)
    r1 = unl.unlearn(st, [5])
    r2 = unl.unlearn(r1.state, [6])
    n1 = np.asarray(r1.state.published - r1.state.W_bar).ravel()
    n2 = np.asarray(r2.state.published - r2.state.W_bar).ravel()
    for a, b in ((noise0 / st.sigmas[0], n1 / r1.state.sigmas[1]),
                 (n1 / r1.state.sigmas[1], n2 / r2.state.sigmas[2])):
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.35  # fresh noise per release (d = 64)
    # sigma belongs to the algorithm: the analytic calibration of the sensitivity at the
    # capacity (max_removals = 10), identical for every release including release 0
    sens = sb.sensitivity(glm_gamma(), 2.0 + 1e-10, 0.1, n, 10, 1e-10, 1e-9)
    for cert in (r1.certificate, r2.certificate):
        assert cert.sensitivity == pytest.approx(sens, rel=1e-12)
        assert cert.sigma == pytest.approx(analytic_sigma(1.0, 1e-5, sens), rel=1e-12)
        assert cert.calibration == "analytic_gaussian"
    assert st.sigmas[0] == pytest.approx(r1.certificate.sigma, rel=1e-15)
    assert r1.certificate.bounds["sensitivity_for_current_m"] < sens
    # composition over the three releases (original + 2)
    z = [s / t for s, t in zip(r2.state.sigmas, r2.state.sensitivities, strict=True)]
    assert r2.certificate.epsilon_composed == pytest.approx(compose_gaussian(z, 1e-5).epsilon)
    assert r2.certificate.epsilon_composed > 1.0
    assert r2.certificate.releases == 3


def glm_gamma():
    from certun.models import glm

    return glm.LOGISTIC.gamma


def test_release_noise_has_the_claimed_std(digits38):
    unl = newton_unlearning(lam=0.1, epsilon=0.5, delta=1e-5, max_removals=10)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    z = []
    for i in range(30):
        st_i = st._replace(key=jax.random.key(100 + i))
        r = unl.unlearn(st_i, [3])
        z.append(np.asarray(r.state.published - r.state.W_bar).ravel() / r.certificate.sigma)
    z = np.concatenate(z)
    assert stats.kstest(z, "norm").pvalue > 0.01
    assert stats.kstest(z / 1.5, "norm").pvalue < 1e-6


def test_capacity_exceeded_requires_retraining(digits38):
    unl = newton_unlearning(lam=0.1, epsilon=1.0, delta=1e-5, max_removals=3)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    st = unl.unlearn(st, [1, 2]).state
    res = unl.unlearn(st, [3, 4])
    assert res.outcome == "retrain_required" and res.params is None
    assert "capacity" in res.certificate.reason


def test_one_vs_rest_sensitivity_scales_with_heads():
    from certun.data import load_digits

    ds = load_digits()
    unl = newton_unlearning(lam=0.1, epsilon=1.0, delta=1e-5, max_removals=5)
    st = unl.init(ds.X_train, ds.y_train, jax.random.key(0), num_classes=10)
    res = unl.unlearn(st, [2])
    n = ds.X_train.shape[0]
    one = sb.sensitivity(glm_gamma(), 2.0 + 1e-10, 0.1, n, 5, 1e-10, 1e-9)
    newton_part = one - (1e-10 + 1e-9) / 0.1
    assert res.certificate.sensitivity == pytest.approx(
        np.sqrt(10) * newton_part + (1e-10 + 1e-9) / 0.1)
    ret = unl.retrain(res.state).params
    assert ret.shape == res.params.shape == res.state.W_bar.shape  # (d, K): K = 10 heads
    assert float(jnp.linalg.norm(res.state.W_bar - ret)) <= res.certificate.sensitivity


def test_ridge_constants_and_exact_step():
    ds = load_diabetes()
    with pytest.raises(ValueError, match="label_bound"):
        newton_unlearning(lam=0.01, epsilon=1.0, delta=1e-5, loss="squared")
    unl = newton_unlearning(lam=0.01, epsilon=1.0, delta=1e-5, loss="squared", label_bound=1.0)
    with pytest.raises(ValueError, match="label_bound"):
        unl.init(ds.X_train, ds.y_train * 2, jax.random.key(0))
    st = unl.init(ds.X_train, ds.y_train, jax.random.key(0))
    res = unl.unlearn(st, [0, 9, 20])
    ret = unl.retrain(res.state).params
    # M = 0: the Newton step is exact
    assert float(jnp.linalg.norm(res.state.W_bar[:, 0] - ret)) < 1e-9
    L = sb.lipschitz_ridge(0.01, 1.0, 1e-10)
    lip = [a for a in res.certificate.assumptions if a.name == "lipschitz"][0]
    assert lip.value == pytest.approx(L)
    assert res.certificate.sensitivity == pytest.approx((1e-10 + 1e-9) / 0.01, rel=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="classic"):
        newton_unlearning(lam=0.1, epsilon=1.0, delta=1e-5, calibration="classic")
    with pytest.raises(ValueError, match="hessian_lipschitz"):
        newton_unlearning(lam=0.1, epsilon=0.5, delta=1e-5, hessian_lipschitz=0.01)
    with pytest.raises(ValueError, match="max_removals"):
        newton_unlearning(lam=0.1, epsilon=0.5, delta=1e-5, max_removals=0)
    with pytest.raises(ValueError, match="delta"):
        newton_unlearning(lam=0.1, epsilon=0.5, delta=2.0)
