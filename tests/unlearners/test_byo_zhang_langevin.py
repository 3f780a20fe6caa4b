"""Bring your own model: zhang_unlearning and langevin_unlearning on a user's network.

Zhang: a flax linen MLP and a hand-written function, trained by a plain optax loop outside
certun; the noiseless unlearned model must equal an independent dense damped Newton step
(``jax.hessian`` of the flattened objective, ``numpy.linalg.solve``, projection), jitted and
under ``jax.disable_jit()``. Langevin: the user's frozen linen extractor; the chain must equal
the Langevin unlearner run on features the test extracts and row-normalises itself.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from certun import ValidationError
from certun.nn import TrainConfig
from certun.unlearners import langevin_unlearning, zhang_unlearning

N, D, K = 30, 4, 3
FORGET = np.array([0, 5, 11, 17])
KAPPA, LAM, RADIUS = 1e-2, 1.0, 5.0


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x, features: bool = False):
        h = jnp.tanh(nn.Dense(3, param_dtype=jnp.float64)(x))
        return h if features else nn.Dense(K, param_dtype=jnp.float64)(h)


def _hand(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]


@pytest.fixture(scope="module")
def data():
    r = np.random.default_rng(0)
    X = r.normal(size=(N, D))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, r.integers(0, K, N)


def _user_train(apply, params, X, y, steps=60):
    """The user's own optax loop (Adam, full batch), outside certun."""
    opt = optax.adam(5e-2)
    s = opt.init(params)

    @jax.jit
    def step(p, s):
        g = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(
            apply(q, X), y).mean())(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    for _ in range(steps):
        params, s = step(params, s)
    return params


@pytest.fixture(scope="module")
def models(data):
    X, y = data
    lin = _MLP()
    lp = lin.init(jax.random.key(0), jnp.zeros((1, D)))["params"]
    lp = _user_train(lambda p, x: lin.apply({"params": p}, x), lp, X, y)
    r = np.random.default_rng(1)
    hp = {"w1": jnp.asarray(r.normal(size=(D, 3))), "b1": jnp.zeros(3),
          "w2": jnp.asarray(r.normal(size=(3, K)) / 2)}
    hp = _user_train(_hand, hp, X, y)
    return {"linen": (lin, lp, lambda p, x: lin.apply({"params": p}, x)),
            "function": (_hand, hp, _hand)}


def _dense_newton(apply, params, X, y):
    """The dense step w - (H_r + LAM I)^{-1} (g_r - (n/n_r) g), projected on the ball."""
    flat, unravel = ravel_pytree(params)
    keep = np.setdiff1d(np.arange(N), FORGET)

    def F(v, rows):
        p = unravel(v)
        ce = optax.softmax_cross_entropy_with_integer_labels(apply(p, X[rows]), y[rows]).mean()
        return ce + 0.5 * KAPPA * jnp.sum(v * v)

    H = np.asarray(jax.hessian(F)(flat, keep))
    rhs = np.asarray(jax.grad(F)(flat, keep)) - N / keep.size * np.asarray(
        jax.grad(F)(flat, np.arange(N)))
    w = np.asarray(flat) - np.linalg.solve(H + LAM * np.eye(flat.size), rhs)
    return w * min(1.0, RADIUS / np.linalg.norm(w))


@pytest.mark.parametrize("which,jitted", [
    pytest.param("function", False, marks=pytest.mark.slow),  # 5-30 s: slow tier
    pytest.param("function", True, marks=pytest.mark.slow),
    pytest.param("linen", True, marks=pytest.mark.slow),
    pytest.param("linen", False, marks=pytest.mark.slow)])
def test_zhang_on_a_user_model_matches_a_dense_newton_step(models, data, which, jitted):
    X, y = data
    model, params, apply = models[which]
    cfg = TrainConfig(epochs=1, radius=RADIUS, weight_decay=KAPPA, dtype="float64")
    unl = zhang_unlearning(model, cfg, lam=LAM, sigma=0.5, lam_min="none", cg_rtol=1e-12)
    st = unl.init(X, y, jax.random.key(0), params=params)
    if jitted:
        res = unl.unlearn(st, FORGET)
    else:
        with jax.disable_jit():
            res = unl.unlearn(st, FORGET)
    assert res.outcome == "unlearned" and res.certificate.status == "holds"
    got = np.asarray(ravel_pytree(res.diagnostics["params_noiseless"])[0])
    np.testing.assert_allclose(got, _dense_newton(apply, params, X, y), rtol=1e-7, atol=1e-9)
    # the release is the noiseless model plus noise of the certified sigma
    noise = np.asarray(ravel_pytree(res.params)[0]) - got
    assert 0.2 < noise.std() < 1.0
    ref = [a for a in res.certificate.assumptions if a.name == "retrained_in_ball"][0]
    assert "any learning algorithm" in ref.statement and ref.state == "verified"


@pytest.mark.slow
def test_zhang_user_model_arguments(models, data):
    X, y = data
    model, params, _ = models["linen"]
    cfg = TrainConfig(epochs=2, batch_size=None, radius=RADIUS, weight_decay=KAPPA,
                      dtype="float64")
    unl = zhang_unlearning(model, cfg, lam=LAM, sigma=0.5, lam_min="none")
    with pytest.raises(ValidationError, match="params="):
        unl.init(X, y, jax.random.key(0))
    st = unl.init(X, y, jax.random.key(0), params=params)
    with pytest.raises(ValidationError, match="init_fn"):
        unl.retrain(st)
    unl2 = zhang_unlearning(model, cfg, lam=LAM, sigma=0.5, lam_min="none",
                            init_fn=lambda k: model.init(k, jnp.zeros((1, D)))["params"])
    st2 = unl2.init(X, y, jax.random.key(0), params=params)
    tr = unl2.retrain(st2)  # certun.nn.train from the user's fresh initialisation
    assert np.all(np.isfinite(np.asarray(ravel_pytree(tr.params)[0])))


@pytest.mark.parametrize("jitted", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_langevin_on_a_user_extractor_matches_features_computed_here(models, data, jitted):
    X, y = data
    model, params, _ = models["linen"]

    def extract(p, x):
        return model.apply({"params": p}, x, features=True)

    F = np.asarray(extract(params, jnp.asarray(X)))
    F = F / np.linalg.norm(F, axis=1, keepdims=True) * (1 - 1e-13)  # unit rows, just below 1
    kw = dict(lam=0.1, sigma=0.05, epsilon=1.0, delta=1e-5, burn_in=30)
    ref = langevin_unlearning(**kw)
    rs = ref.init(F, y, jax.random.key(3), num_classes=K)
    rr = ref.unlearn(rs, FORGET)
    byo = langevin_unlearning(**kw, extract=extract, extractor_params=params)
    if jitted:
        bs = byo.init(X, y, jax.random.key(3), num_classes=K)
        br = byo.unlearn(bs, FORGET)
    else:
        with jax.disable_jit():
            bs = byo.init(X, y, jax.random.key(3), num_classes=K)
            br = byo.unlearn(bs, FORGET)
    np.testing.assert_allclose(np.asarray(br.params), np.asarray(rr.params), rtol=1e-9,
                               atol=1e-12)
    c = br.certificate
    assert c.status == rr.certificate.status == "holds"
    assert c.epsilon == rr.certificate.epsilon
    assert c.mechanism.startswith("frozen_public_extractor+")
    assert c.public_inputs["extractor"] == "public"
    with pytest.raises(ValidationError, match="extractor_params"):
        langevin_unlearning(**kw, extract=extract)
