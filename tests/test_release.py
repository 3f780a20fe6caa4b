"""Private release mode.

Sensitivity bounds hold, noise is fresh and calibrated, certificates compose.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun.accounting import analytic_sigma, compose_gaussian
from certun.audits.baselines import newton_shortcut
from certun.data import load_digits_3v8, synthetic_regression
from certun.models import glm
from certun.primitives.noise import gaussian_like
from certun.release import private_release, release_sensitivity
from certun.unlearners import certified_removal, exact_retraining, newton_unlearning


def test_sensitivity_constants():
    s = release_sensitivity("logistic", 0.1, 200, tol=1e-8)
    G = 1 + min(1.0, math.sqrt(2 * 0.1 * math.log(2)))
    assert s.gradient_bound == pytest.approx(G)
    assert s.value == pytest.approx(G / (0.1 * 200) + 2e-8 / 0.1)
    assert release_sensitivity("logistic", 4.0, 10).gradient_bound == pytest.approx(2.0)
    assert release_sensitivity("logistic", 0.1, 200, heads=4).gradient_bound == pytest.approx(2 * G)
    r = release_sensitivity("squared", 0.25, 100, label_bound=2.0)
    assert r.weight_bound == pytest.approx(4.0) and r.gradient_bound == pytest.approx(4 + 2 + 1)
    with pytest.raises(ValueError, match="label_bound"):
        release_sensitivity("squared", 0.25, 100)


def _worst_pairs(X, Y, lam, loss, rng, k=25):
    """Distances ||w*(D) - w*(D + {z})|| for adversarial-ish unit-norm z."""
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    fit = jax.jit(lambda A, B: glm.fit(loss, A, B, lam, tol=1e-12).params)
    W = fit(Xj, Yj)
    out = []
    for _ in range(k):
        z = rng.normal(size=X.shape[1])
        z /= np.linalg.norm(z)
        yz = -np.sign(np.asarray(W)[:, 0] @ z) if loss == "logistic" else rng.choice([-1.0, 1.0])
        yz = np.full((1, Y.shape[1]), yz)
        W2 = fit(jnp.vstack([Xj, z[None]]), jnp.vstack([Yj, yz]))
        out.append(float(jnp.linalg.norm(W2 - W)))
        if loss == "squared":
            assert float(jnp.linalg.norm(W2)) <= release_sensitivity(
                loss, lam, 2, label_bound=1.0).weight_bound
    return np.array(out), W


@pytest.mark.parametrize("loss, lam", [("logistic", 0.05), ("logistic", 2.0), ("squared", 0.05)])
def test_sensitivity_bounds_the_change_of_the_minimiser(rng, loss, lam):
    n, d = 30, 5
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = np.sign(rng.normal(size=(n, 1))) if loss == "logistic" else np.clip(
        rng.normal(size=(n, 1)), -1, 1)
    dist, W = _worst_pairs(X, Y, lam, loss, rng)
    s = release_sensitivity(loss, lam, n, label_bound=1.0 if loss == "squared" else None)
    assert dist.max() <= s.value
    assert dist.max() >= 0.05 * s.value  # the bound is not vacuous on these pairs
    assert np.linalg.norm(np.asarray(W), axis=0).max() <= s.weight_bound


@pytest.fixture(scope="module")
def digits():
    return load_digits_3v8()


def test_release_certificate_and_fresh_noise(digits):
    ds, lam = digits, 0.1
    pr = private_release(exact_retraining(lam=lam), lam=lam, epsilon=1.0, delta=1e-5)
    nk = jax.random.key(7)
    st = pr.init(ds.X_train, ds.y_train, jax.random.key(0), noise_key=nk)
    n = ds.n_train
    sens0 = release_sensitivity("logistic", lam, n, tol=1e-8).value
    sig0 = analytic_sigma(1.0, 1e-5, sens0)
    assert st.sigmas[0] == pytest.approx(sig0, rel=1e-9)
    np.testing.assert_allclose(np.asarray(st.published - st.noiseless),
                               np.asarray(gaussian_like(nk, st.noiseless, st.sigmas[0])),
                               atol=1e-12)
    ref = glm.fit("logistic", ds.X_train, ds.y_train, lam, tol=1e-12).params
    assert float(jnp.linalg.norm(st.noiseless - ref)) <= 1e-8 / lam
    r1 = pr.unlearn(st, [3])
    r2 = pr.unlearn(r1.state, [10, 11])
    c = r2.certificate
    assert c.valid and c.threat == "private_release" and c.adjacency == "removal"
    assert c.releases == 3 and c.epsilon == 1.0 and c.delta == 1e-5
    assert c.sensitivity == pytest.approx(release_sensitivity("logistic", lam, n - 3,
                                                             tol=1e-8).value)
    z = st.sigmas[0] / st.sensitivities[0]
    assert c.epsilon_composed == pytest.approx(compose_gaussian([z] * 3, 1e-5).epsilon, rel=1e-6)
    assert c.epsilon_composed > 1.0
    # release t uses fold t: independent of release 0's noise
    e2 = np.asarray(r2.state.published - r2.state.noiseless)
    np.testing.assert_allclose(e2, np.asarray(gaussian_like(nk, st.noiseless, c.sigma, release=2)),
                               atol=1e-12)
    keep = np.setdiff1d(np.arange(n), [3, 10, 11])
    ref2 = glm.fit("logistic", ds.X_train[keep], ds.y_train[keep], lam, tol=1e-12).params
    assert float(jnp.linalg.norm(r2.state.noiseless - ref2)) <= 1e-8 / lam
    assert pr.certificate(r2.state).epsilon_composed == pytest.approx(c.epsilon_composed)
    pub = c.public()
    assert "private" not in pub and pub["threat"] == "private_release"


def test_release_wraps_any_unlearner(digits):
    ds, lam = digits, 0.1
    X, y = ds.X_train[:150], ds.y_train[:150]
    keep = np.setdiff1d(np.arange(150), [5])
    ref = glm.fit("logistic", X[keep], y[keep], lam, tol=1e-12).params
    inners = {
        "guo": (certified_removal(lam=lam, sigma=1.0, epsilon=1.0, delta=1e-4), None),
        "sekhari": (newton_unlearning(lam=lam, epsilon=1.0, delta=1e-4, max_removals=2),
                    lambda s: s.W_bar),
        "newton_shortcut": (newton_shortcut(lam=lam), None),
    }
    for name, (inner, nl) in inners.items():
        pr = private_release(inner, lam=lam, epsilon=1.0, delta=1e-5, noiseless=nl)
        res = pr.unlearn(pr.init(X, y, jax.random.key(1)), [5])
        assert res.certificate.valid, name
        # Guo's b is removed by the check: the released noiseless model is the exact one
        assert float(jnp.linalg.norm(res.state.noiseless - ref)) <= 1e-8 / lam, name
    # Guo's published W is far from the unperturbed optimum: the check had to refine it
    assert res.diagnostics["polish_steps"] <= 2


def test_release_refuses_what_it_cannot_certify(digits):
    ds, lam = digits, 0.1

    class Garbage:
        def init(self, X, y, key, num_classes=None):
            return 0

        def params(self, s):
            return jnp.full(ds.dim, 50.0)

        def unlearn(self, s, idx, key=None):
            from certun.unlearners.base import UnlearnResult
            return UnlearnResult(jnp.full(ds.dim, 50.0), s, None, "unlearned", {})

        def retrain(self, s, key=None):
            return None

    with pytest.raises(RuntimeError, match="within tol"):
        private_release(Garbage(), lam=lam, epsilon=1.0, delta=1e-5, max_polish_steps=0).init(
            ds.X_train, ds.y_train, jax.random.key(0))
    pr = private_release(Garbage(), lam=lam, epsilon=1.0, delta=1e-5)
    st = pr.init(ds.X_train, ds.y_train, jax.random.key(0))  # refined by Newton steps
    assert st.noiseless.shape == (ds.dim, 1)
    # an inner refusal passes through: no model, failing certificate with the reason
    guo = certified_removal(lam=1e-4, sigma=1e-3, epsilon=1.0, delta=1e-4)
    pr = private_release(guo, lam=1e-4, epsilon=1.0, delta=1e-5)
    res = pr.unlearn(pr.init(ds.X_train, ds.y_train, jax.random.key(0)), [0])
    assert res.params is None and res.outcome == "retrain_required"
    assert res.certificate.status == "fails" and "refused" in res.certificate.reason
    with pytest.raises(ValueError, match="label_bound"):
        private_release(exact_retraining(lam=lam, loss="squared"), lam=lam, epsilon=1.0,
                        delta=1e-5, loss="squared")


def test_ridge_release_clips_labels_and_parameters():
    ds = synthetic_regression(n=80, d=4, seed=0)
    X, y = ds.X_train, 3.0 * ds.y_train  # labels beyond B = 1 get clipped
    lam = 0.2
    pr = private_release(exact_retraining(lam=lam, loss="squared"), lam=lam, epsilon=1.0,
                         delta=1e-5, loss="squared", label_bound=1.0)
    st = pr.init(X, y, jax.random.key(0))
    assert st.labels_clipped == int(np.sum(np.abs(y) > 1.0)) > 0
    assert float(jnp.max(jnp.abs(st.Y))) <= 1.0
    s = release_sensitivity("squared", lam, X.shape[0], label_bound=1.0, tol=1e-8)
    assert float(jnp.linalg.norm(st.noiseless)) <= s.clip_radius
    ref = glm.fit("squared", X, np.clip(y, -1, 1), lam, tol=1e-12).params
    assert float(jnp.linalg.norm(st.noiseless - ref)) <= 1e-8 / lam
    res = pr.unlearn(st, [0])
    assert res.certificate.valid
    names = [a.name for a in res.certificate.assumptions]
    assert "label_bound" in names and "projection" in names


def test_jit_and_eager_agree(digits):
    ds, lam = digits, 0.1
    X, y = ds.X_train[:40], ds.y_train[:40]
    pr = private_release(exact_retraining(lam=lam), lam=lam, epsilon=1.0, delta=1e-5)
    a = pr.init(X, y, jax.random.key(2))
    with jax.disable_jit():
        b = pr.init(X, y, jax.random.key(2))
    np.testing.assert_allclose(np.asarray(a.published), np.asarray(b.published), atol=1e-9)
