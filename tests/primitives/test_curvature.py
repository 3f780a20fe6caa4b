"""HVP, GGN-vector products, operators and per-example gradients against dense references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from certun.primitives import curvature as cv

REL = 1e-10  # acceptance: HVP and GNVP equal the dense products to 1e-10 relative


def _mlp(params, x):
    h = jnp.tanh(x @ params["W1"] + params["b1"])
    return h @ params["W2"] + params["b2"]


def _xent(out, y):
    return jnp.mean(jax.nn.logsumexp(out, axis=1) - jnp.take_along_axis(out, y[:, None], 1)[:, 0])


@pytest.fixture
def problem(rng):
    d, h, k, n = 6, 5, 3, 40
    params = {
        "W1": jnp.asarray(rng.normal(size=(d, h)) * 0.5),
        "b1": jnp.asarray(rng.normal(size=h) * 0.1),
        "W2": jnp.asarray(rng.normal(size=(h, k)) * 0.5),
        "b2": jnp.asarray(rng.normal(size=k) * 0.1),
    }
    x = jnp.asarray(rng.normal(size=(n, d)))
    y = jnp.asarray(rng.integers(0, k, size=n))
    v = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params)
    return params, x, y, v


def _loss(params, x, y):
    return _xent(_mlp(params, x), y) + 1e-3 * sum(jnp.sum(p**2) for p in jax.tree.leaves(params))


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def test_hvp_matches_dense_hessian(problem):
    params, x, y, v = problem
    H = cv.dense_hessian(_loss, params, x, y)
    vf = ravel_pytree(v)[0]
    hv = ravel_pytree(cv.hvp(_loss, params, v, x, y))[0]
    assert _rel(hv, H @ vf) < REL
    # jitted path agrees with the unjitted one
    hv_jit = ravel_pytree(jax.jit(lambda p, v_: cv.hvp(_loss, p, v_, x, y))(params, v))[0]
    assert _rel(hv_jit, hv) < 1e-13


def test_hessian_operator_materialises_to_dense_hessian(problem):
    params, x, y, _ = problem
    op = cv.hessian_operator(_loss, params, x, y)
    H = cv.dense_hessian(_loss, params, x, y)
    np.testing.assert_allclose(cv.dense_matrix(op), H, rtol=0, atol=1e-12 * float(jnp.abs(H).max()))
    damped = cv.damped(op, 0.7)
    np.testing.assert_allclose(cv.dense_matrix(damped), H + 0.7 * np.eye(H.shape[0]), atol=1e-12)


def test_ggn_vp_matches_dense_gauss_newton(problem):
    params, x, y, v = problem
    flat, unravel = ravel_pytree(params)
    J = jax.jacfwd(lambda z: _mlp(unravel(z), x).reshape(-1))(flat)  # (n*k, p)
    out = _mlp(params, x)
    Hout = jax.hessian(lambda o: _xent(o.reshape(out.shape), y))(out.reshape(-1))
    G = J.T @ Hout @ J
    vf = ravel_pytree(v)[0]
    gv = ravel_pytree(cv.ggn_vp(_mlp, _xent, params, v, x, y))[0]
    assert _rel(gv, G @ vf) < REL
    op = cv.ggn_operator(_mlp, _xent, params, x, y)
    assert _rel(ravel_pytree(op.mv(v))[0], G @ vf) < REL
    # the GGN of a convex loss is PSD while this network's Hessian is not guaranteed to be
    assert np.linalg.eigvalsh(np.asarray(G)).min() > -1e-12


def test_ggn_equals_hessian_for_linear_model(rng):
    # For a linear model the model's second derivative vanishes: GGN == Hessian.
    X = jnp.asarray(rng.normal(size=(30, 4)))
    y = jnp.asarray(rng.integers(0, 3, size=30))
    W = jnp.asarray(rng.normal(size=(4, 3)))
    model = lambda w, x: x @ w  # noqa: E731
    G = cv.dense_matrix(cv.ggn_operator(model, _xent, W, X, y))
    H = cv.dense_hessian(lambda w: _xent(model(w, X), y), W)
    np.testing.assert_allclose(G, H, atol=1e-13)


def test_per_example_grads_match_loop(problem):
    params, x, y, _ = problem

    def single(p, xi, yi):
        return _xent(_mlp(p, xi[None]), yi[None])

    pe = cv.per_example_grads(single, params, x, y)
    for i in (0, 7, 39):
        gi = jax.grad(single)(params, x[i], y[i])
        for a, b in zip(jax.tree.leaves(pe), jax.tree.leaves(gi), strict=True):
            np.testing.assert_allclose(a[i], b, atol=1e-14)
    # their mean is the batch gradient
    mean = jax.tree.map(lambda a: a.mean(0), pe)
    full = jax.grad(lambda p: _xent(_mlp(p, x), y))(params)
    for a, b in zip(jax.tree.leaves(mean), jax.tree.leaves(full), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-14)


def test_sample_mv_is_unbiased_minibatch_hvp(problem):
    params, x, y, v = problem
    n = x.shape[0]

    def sample_f(key, p):
        idx = jax.random.randint(key, (n,), 0, n)  # with replacement, full size
        return _loss(p, x[idx], y[idx])

    op = cv.hessian_operator(_loss, params, x, y, sample_f=sample_f)
    keys = jax.random.split(jax.random.key(3), 400)
    est = jax.vmap(lambda k: ravel_pytree(op.sample_mv(k, v))[0])(keys).mean(0)
    exact = ravel_pytree(op.mv(v))[0]
    assert _rel(est, exact) < 0.1  # Monte-Carlo estimate over 400 resamples
