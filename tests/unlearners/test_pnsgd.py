"""Minibatch noisy SGD unlearning (Chien et al. 2024b): the accounting and the W_inf shift.

The Renyi slope is checked against a direct numerical optimisation of the shift allocation
(scipy SLSQP over the per-step shifts), its conversion against a bounded scalar minimisation
over the order, and the W_inf bound against the synchronously coupled chains themselves.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from certun import ValidationError
from certun.accounting import pnsgd as A
from certun.data import synthetic_logistic
from certun.unlearners.pnsgd import _epochs, gradient_bound, pnsgd_unlearning


def test_mu_matches_a_numerical_shift_allocation():
    Z, T, eta, sigma, m, L = 0.7, 6, 0.8, 0.3, 0.2, 1.25
    c = 1 - eta * m
    s2 = 2 * eta * sigma**2
    w = np.array([c ** (T - 1 - t) for t in range(T)])

    def cost(a):
        return np.sum(a * a) / (2 * s2)

    res = optimize.minimize(cost, np.full(T, c**T * Z / w.sum()), method="SLSQP",
                            constraints=[{"type": "eq", "fun": lambda a: w @ a - c**T * Z}],
                            bounds=[(0, None)] * T, options={"ftol": 1e-16, "maxiter": 500})
    mu = A.pnsgd_mu(shift=Z, steps=T, eta=eta, sigma=sigma, m=m, L=L)
    assert mu == pytest.approx(res.fun, rel=1e-6)
    # the epsilon: D_alpha <= alpha mu converted order by order (CKS 2020, Prop. 12)
    kw = dict(n=12, batch_size=4, changed=2, eta=eta, sigma=sigma, m=m, L=L, grad_bound=1.0,
              delta=1e-5)
    g = A.pnsgd_epsilon(epochs=2, **kw)
    z = eta * 2 / (4 * (1 - c**3))
    assert g.shift == pytest.approx(z, rel=1e-12) and g.steps == 6
    mu2 = A.pnsgd_mu(shift=z, steps=6, eta=eta, sigma=sigma, m=m, L=L)

    def conv(a):
        return a * mu2 + math.log1p(-1 / a) - (math.log(1e-5) + math.log(a)) / (a - 1)

    r = optimize.minimize_scalar(conv, bounds=(1 + 1e-9, 1e6), method="bounded",
                                 options={"xatol": 1e-12})
    assert g.epsilon == pytest.approx(r.fun, rel=1e-6)
    # the fewest epochs reaching a target
    K = A.pnsgd_epochs(epsilon=0.5, **kw)
    assert A.pnsgd_epsilon(epochs=K, **kw).epsilon <= 0.5
    assert K == 1 or A.pnsgd_epsilon(epochs=K - 1, **kw).epsilon > 0.5
    with pytest.raises(ValidationError, match="1/L"):
        A.pnsgd_epsilon(epochs=1, **{**kw, "eta": 1.0})


@pytest.fixture(scope="module")
def data():
    ds = synthetic_logistic(40, 4, seed=5)
    return ds.X_train, ds.y_train


def test_coupled_chains_stay_within_the_shift_and_unlearning_certifies(data):
    X, y = data
    unl = pnsgd_unlearning(lam=0.3, sigma=0.05, epsilon=1.0, delta=1e-5, batch_size=8,
                           epochs=6, radius=5.0)
    st = unl.init(X, y, jax.random.key(0))
    forget = np.array([1, 9, 20])
    # the chain on D' (rows masked) with the same partition and noise: the W_inf coupling
    mask = st.mask.at[jnp.asarray(forget)].set(0.0)
    eta = 1 / (0.25 + 0.3)
    W_ref = _epochs(jnp.zeros_like(st.W), st.X, st.Y, mask, st.order, st.key, jnp.asarray(0),
                    jnp.asarray(6), jnp.asarray(0.3), jnp.asarray(eta),
                    jnp.asarray(math.sqrt(2 * eta) * 0.05), jnp.asarray(5.0), b=8)
    # M = sigmoid(R) with the projection radius R = 5 (proofs/pnsgd_unlearning.md (1.1))
    Z = A.pnsgd_shift(n=40, batch_size=8, changed=3, eta=eta, m=0.3, L=0.55,
                      grad_bound=1.0 / (1.0 + math.exp(-5.0)), radius=5.0)
    dist = float(jnp.linalg.norm(st.W - W_ref))
    assert 0 < dist <= Z
    res = unl.unlearn(st, forget)
    c = res.certificate
    assert res.outcome == "unlearned" and c.status == "holds" and c.epsilon <= 1.0
    K = res.diagnostics["K"]
    assert c.bounds["shift"] == pytest.approx(Z, rel=1e-12)
    # the reference (retrain) runs 6 + K epochs on D' from 0 with the same noise stream;
    # with identical noise the coupled distance contracts below Z
    ref = unl.retrain(res.state).params
    assert ref.shape == unl.params(res.state).shape
    assert float(jnp.linalg.norm(res.params - ref)) <= Z * (1 - eta * 0.3) ** (5 * K) + 1e-12
    with pytest.raises(ValidationError, match="one request"):
        unl.unlearn(res.state, [2])


def test_gradient_bound_on_the_ball():
    """(1.1): ||grad l_i(W)||_F <= sqrt(K) sigmoid(R) on the ball; attained for K = 1."""
    from certun.models import glm

    rng = np.random.default_rng(0)
    R, d = 0.7, 5
    for K in (1, 3):
        W = rng.standard_normal((400, d, K))
        W *= R * rng.random((400, 1, 1)) ** 0.2 / np.linalg.norm(W, axis=(1, 2), keepdims=True)
        x = rng.standard_normal((400, d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        Y = rng.choice([-1.0, 1.0], (400, K))
        z = np.einsum("nd,ndk->nk", x, W)
        # the code's derivative (glm.LOGISTIC.d1) against the numpy sigmoid(-y z) (-y)
        d1 = np.asarray(glm.LOGISTIC.d1(jnp.asarray(z), jnp.asarray(Y)))
        np.testing.assert_allclose(d1, -Y / (1 + np.exp(Y * z)), rtol=1e-12)
        norms = np.linalg.norm(x[:, :, None] * d1[:, None, :], axis=(1, 2))
        M = gradient_bound(K, R)
        assert M == pytest.approx(math.sqrt(K) / (1 + math.exp(-R)), rel=1e-15)
        assert norms.max() <= M and norms.max() > 0.9 * M / math.sqrt(K)
    # K = 1: the maximiser w = -R y x
    x1 = np.eye(d)[0]
    g = abs(float(glm.LOGISTIC.d1(jnp.asarray(-R), jnp.asarray(1.0))))
    assert g == pytest.approx(gradient_bound(1, R), rel=1e-14)
    assert gradient_bound(4, None) == 2.0 and np.linalg.norm(x1) == 1.0
    with pytest.raises(ValidationError, match="radius"):
        gradient_bound(1, -1.0)
    # float64 iterates: the rounding allowance (dim) only widens it, by ~(d K + d) u R
    for K, R, d in ((1, 0.7, 5), (10, 3.0, 784)):
        exact, rounded = gradient_bound(K, R), gradient_bound(K, R, dim=d)
        u = 2.0**-53
        assert exact < rounded <= exact * (1 + R * (d * K + d + 8) * u * 1.01 + 4 * u)
    assert gradient_bound(2, None, dim=5) == math.sqrt(2)
