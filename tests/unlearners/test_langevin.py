"""Langevin unlearning (Chien et al. 2024): the kernel, the accounting it uses, the certificate."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun import _validate
from certun.accounting import langevin as A
from certun.data import synthetic_logistic
from certun.models import glm
from certun.primitives.curvature import per_example_grads
from certun.primitives.noise import gaussian_like, release_key
from certun.primitives.spectral import spectral_norm_upper_bound
from certun.unlearners import langevin_unlearning
from certun.unlearners.langevin import noisy_gd


@pytest.fixture(scope="module")
def small():
    return synthetic_logistic(60, 5, seed=3)


def _per_example(W, X, Y, lam):
    def loss(w, x, y):
        return glm.LOGISTIC.value(x @ w, y)[0] + 0.5 * lam * jnp.sum(w * w)
    return per_example_grads(loss, W, X, Y)  # (n, d, 1)


@pytest.mark.parametrize("clip", [None, 0.3])
def test_one_step_matches_per_example_reference(small, clip):
    X = jnp.asarray(small.X_train)
    Y = jnp.asarray(small.y_train)[:, None]
    W = jax.random.normal(jax.random.key(1), (X.shape[1], 1)) * 2.0
    mask = jnp.ones(X.shape[0]).at[jnp.array([0, 7])].set(0.0)
    lam, eta = 0.2, 0.7
    G = np.asarray(_per_example(W, X, Y, lam))[np.asarray(mask) > 0]
    norms = np.linalg.norm(G.reshape(G.shape[0], -1), axis=1)
    if clip is not None:
        G = G * np.minimum(1.0, clip / norms)[:, None, None]
    ref = np.asarray(W) - eta * G.mean(0)
    run = noisy_gd(glm.LOGISTIC, lam, eta, 0.0, clip)
    W1, mx, nc = run(W, X, Y, mask, jax.random.key(0), 1)
    np.testing.assert_allclose(np.asarray(W1), ref, rtol=1e-12, atol=1e-14)
    assert float(mx) == pytest.approx(norms.max(), rel=1e-12)
    assert int(nc) == (0 if clip is None else int(np.any(norms > clip)))
    if clip is None:  # unclipped drift is exactly certun's mean-scale gradient
        g = glm.gradient_mean(glm.LOGISTIC, W, X, Y, lam, None, mask)
        np.testing.assert_allclose(np.asarray(W1), np.asarray(W - eta * g), rtol=1e-12)
    with jax.disable_jit():
        W1n, mxn, _ = run(W, X, Y, mask, jax.random.key(0), 1)
    np.testing.assert_allclose(np.asarray(W1n), np.asarray(W1), rtol=1e-12)
    assert float(mxn) == pytest.approx(float(mx), rel=1e-12)


def test_noise_is_folded_per_step_and_projection_applies(small):
    X = jnp.asarray(small.X_train)
    Y = jnp.asarray(small.y_train)[:, None]
    W0 = jnp.zeros((X.shape[1], 1))
    key = jax.random.key(5)
    run = noisy_gd(glm.LOGISTIC, 0.1, 0.5, 0.3, None, radius=0.05)
    W2, _, _ = run(W0, X, Y, jnp.ones(X.shape[0]), key, 2)
    # reference: two explicit steps with the documented keys (release t + 1)
    W = W0
    for t in range(2):
        W = W - 0.5 * glm.gradient_mean(glm.LOGISTIC, W, X, Y, 0.1)
        W = W + gaussian_like(key, W, 0.3, release=t + 1)
        W = W * min(1.0, 0.05 / float(jnp.linalg.norm(W)))
    np.testing.assert_allclose(np.asarray(W2), np.asarray(W), rtol=1e-12)
    assert float(jnp.linalg.norm(W2)) <= 0.05 * (1 + 1e-12)


def test_tiny_noise_converges_to_the_optimum(small):
    """With negligible noise the chain is gradient descent: it reaches certun's optimum."""
    lam = 0.1
    unl = langevin_unlearning(lam=lam, sigma=1e-9, epsilon=1.0, delta=1e-5, burn_in=400)
    st = unl.init(small.X_train, small.y_train, jax.random.key(0))
    opt = glm.fit("logistic", small.X_train, small.y_train, lam, tol=1e-12).params
    assert float(jnp.linalg.norm(st.W - opt)) < 1e-6


def test_init_draw_and_step_size(small):
    unl = langevin_unlearning(lam=0.05, sigma=0.2, epsilon=1.0, delta=1e-5, burn_in=0)
    key = jax.random.key(11)
    st = unl.init(small.X_train, small.y_train, key)
    std = math.sqrt(2 * 0.2**2 / 0.05)
    w0 = gaussian_like(release_key(key, 0), jnp.zeros((5, 1)), std, release=0)
    np.testing.assert_allclose(np.asarray(st.W), np.asarray(w0), rtol=1e-14)
    assert st.eta == pytest.approx(1 / (0.25 + 0.05))  # loose L = 1/4 + lam


def test_certificate_of_a_removal(digits38):
    eps, dlt, lam, sig = 1.0, 1e-5, 0.1, 0.05
    unl = langevin_unlearning(lam=lam, sigma=sig, epsilon=eps, delta=dlt, burn_in=300)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    n = digits38.n_train
    res = unl.unlearn(st, [4, 9])
    c = res.certificate
    assert res.outcome == "unlearned" and c.status == "holds" and c.valid
    assert c.threat == "indistinguishable_from_retraining" and c.adjacency == "removal"
    assert c.scale == "mean" and c.conversion == "mironov_simple"
    K = A.steps_needed(eps, sigma=sig, m=lam, eta=1 / (0.25 + lam), n=n, delta=dlt, changed=2)
    assert res.diagnostics["K"] == K == c.bounds["K"]
    e = A.langevin_epsilon([A.Request(K, 2, n)], sigma=sig, m=lam, eta=1 / (0.25 + lam),
                           delta=dlt)
    assert c.epsilon == pytest.approx(e.epsilon, rel=1e-12) and c.epsilon <= eps
    assert c.bounds["epsilon_tight"] <= c.epsilon
    assert c.sensitivity == pytest.approx(2 * 2 * 1.0 / n)
    assert res.state.steps_total == 300 + K
    assert int(jnp.sum(res.state.mask)) == n - 2 and c.removed == 2
    np.testing.assert_array_equal(np.asarray(res.params), np.asarray(res.state.W[:, 0]))
    pub = c.public()
    assert "bounds" not in pub and "private" not in pub
    assert any("retraining from scratch" in s for s in pub["notes"])
    # the reference distribution: same chain from scratch for the same number of steps
    rt = unl.retrain(res.state, jax.random.key(3))
    assert rt.steps == res.state.steps_total
    # sequential: the next request's K comes from the weak triangle recursion
    res2 = unl.unlearn(res.state, [20])
    K2 = A.steps_needed(eps, sigma=sig, m=lam, eta=1 / (0.25 + lam), n=n - 2, delta=dlt,
                        changed=1, previous=(A.Request(K, 2, n),))
    assert res2.diagnostics["K"] == K2 and res2.certificate.releases == 3
    with pytest.raises(_validate.ValidationError, match="already removed"):
        unl.unlearn(res2.state, [9])


def test_active_clip_fails_the_certificate(digits38):
    """The authors' clip at M = 1 includes the regulariser; from N(0, 2 sigma^2/m) it is active."""
    unl = langevin_unlearning(lam=0.1, sigma=0.15, epsilon=1.0, delta=1e-5, burn_in=200,
                              clip_norm=1.0)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    assert st.clipped_steps > 0 and st.max_grad_norm > 1.0
    res = unl.unlearn(st, [3])
    assert res.outcome == "retrain_required" and res.params is None and res.state is st
    assert res.certificate.status == "fails" and "clip_inactive" in res.certificate.reason
    # a clip that never binds leaves the algorithm unchanged: the certificate holds
    unl2 = langevin_unlearning(lam=0.1, sigma=0.15, epsilon=1.0, delta=1e-5, burn_in=200,
                               clip_norm=100.0)
    st2 = unl2.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    res2 = unl2.unlearn(st2, [3])
    assert res2.certificate.status == "holds" and st2.clipped_steps == 0
    np.testing.assert_allclose(np.asarray(st2.W), np.asarray(
        langevin_unlearning(lam=0.1, sigma=0.15, epsilon=1.0, delta=1e-5, burn_in=200)
        .init(digits38.X_train, digits38.y_train, jax.random.key(0)).W), rtol=1e-12)


def test_replacement_adjacency(small):
    unl = langevin_unlearning(lam=0.1, sigma=0.3, epsilon=1.0, delta=1e-5, burn_in=50,
                              adjacency="replacement")
    st = unl.init(small.X_train, small.y_train, jax.random.key(0))
    with pytest.raises(_validate.ValidationError, match="replacement"):
        unl.unlearn(st, [1])
    xr = np.ones((1, 5)) / math.sqrt(5)
    res = unl.unlearn(st, [1], replacement=(xr, np.array([-1.0])))
    c = res.certificate
    assert c.adjacency == "replacement" and c.status == "holds"
    assert int(jnp.sum(res.state.mask)) == 60
    np.testing.assert_allclose(np.asarray(res.state.X[1]), xr[0])
    K = A.steps_needed(1.0, sigma=0.3, m=0.1, eta=1 / 0.35, n=60, delta=1e-5,
                       adjacency="replacement")
    assert res.diagnostics["K"] == K


def test_data_dependent_smoothness_is_conditional(digits38):
    unl = langevin_unlearning(lam=0.1, sigma=0.1, epsilon=2.0, delta=1e-5, burn_in=100,
                              smoothness="data", max_removals=20)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    X = digits38.X_train
    n = X.shape[0]
    # eta = 1/L with L an upper bound on the true smoothness at the capacity
    lmax = np.linalg.eigvalsh(X.T @ X).max()
    assert lmax / (4 * (n - 20)) + 0.1 <= st.L < 0.35
    assert st.L == pytest.approx(spectral_norm_upper_bound(X).value ** 2 / (4 * (n - 20)) + 0.1)
    res = unl.unlearn(st, [0])
    assert res.certificate.status == "conditional"
    assert "public_step_size" in res.certificate.reason


def test_steps_limit_refuses(small):
    unl = langevin_unlearning(lam=0.1, sigma=1e-3, epsilon=0.5, delta=1e-6, burn_in=10,
                              max_steps=5)
    st = unl.init(small.X_train, small.y_train, jax.random.key(0))
    res = unl.unlearn(st, [0])
    assert res.outcome == "retrain_required" and res.params is None
    assert "retrain required" in res.certificate.reason


def test_bad_arguments(small):
    with pytest.raises(_validate.ValidationError, match="lam"):
        langevin_unlearning(lam=0.0, sigma=1.0, epsilon=1.0, delta=1e-5)
    with pytest.raises(_validate.ValidationError, match="adjacency"):
        langevin_unlearning(lam=0.1, sigma=1.0, epsilon=1.0, delta=1e-5, adjacency="add")
    unl = langevin_unlearning(lam=0.1, sigma=1.0, epsilon=1.0, delta=1e-5, lipschitz=0.5)
    with pytest.raises(_validate.ValidationError, match="lipschitz"):
        unl.init(small.X_train, small.y_train, jax.random.key(0))
    unl = langevin_unlearning(lam=0.1, sigma=1.0, epsilon=1.0, delta=1e-5, burn_in=5)
    with pytest.raises(_validate.ValidationError, match="norm"):
        unl.init(small.X_train * 3, small.y_train, jax.random.key(0))
    st = unl.init(small.X_train, small.y_train, jax.random.key(0))
    for bad in ([], [60], [1, 1]):
        with pytest.raises(_validate.ValidationError):
            unl.unlearn(st, bad)
