"""Curvature of a small flax MLP (610 parameters, float64) against dense references.

HVP and Gauss-Newton products against the dense Hessian / an independently assembled GGN;
CG and full-batch LiSSA against a direct solve of (H + lam I) x = g; minibatch LiSSA's
error over s1 repeats (1/sqrt(s1)); truncated LiSSA's spectral filter on known eigenvalues.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun._tree import ravel
from certun.data import load_digits
from certun.nn import minibatch_objective, mlp, num_params, objective
from certun.nn.objective import gauss_newton_parts
from certun.primitives import (
    LinearOperator,
    dense_hessian,
    dense_matrix,
    ggn_operator,
    hessian_operator,
    hvp,
    lissa_solver,
    pcg,
)
from certun.results import RESULTS

WD = 1e-3


@pytest.fixture(scope="module")
def problem():
    ds = load_digits()
    X = jnp.asarray(ds.X_train[:60])
    y = jnp.asarray(ds.y_train[:60])
    net = mlp(64, (8,), 10, "tanh", input_scale=8.0)
    params = net.init(jax.random.key(3), jnp.float64)
    assert num_params(params) == 610 < 2000
    mask = jnp.asarray((np.arange(60) % 7 != 0).astype(np.float64))  # 9 rows "forgotten"
    F = objective(net, WD)
    H = np.asarray(jax.jit(dense_hessian, static_argnums=0)(F, params, X, y, mask))
    g = jax.grad(F)(params, X, y, mask)
    return net, params, X, y, mask, F, H, g


def test_hvp_equals_dense_hessian(problem):
    net, params, X, y, mask, F, H, _ = problem
    assert np.allclose(H, H.T, atol=1e-12)
    v = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), p.shape, p.dtype), params)
    ref = H @ np.asarray(ravel(v)[0])
    jitted = jax.jit(lambda p, v: hvp(F, p, v, X, y, mask))(params, v)
    with jax.disable_jit():
        eager = hvp(F, params, v, X, y, mask)
    for out in (jitted, eager):
        assert np.allclose(np.asarray(ravel(out)[0]), ref, rtol=1e-10, atol=1e-12)
    # the linearised operator agrees too
    op = hessian_operator(F, params, X, y, mask, damping=0.5)
    assert np.allclose(np.asarray(ravel(op.mv(v))[0]), ref + 0.5 * np.asarray(ravel(v)[0]),
                       rtol=1e-10, atol=1e-12)


def _dense_ggn(net, params, X, y, mask):
    """Sum_i (w_i / sum w) J_i^T (diag p_i - p_i p_i^T) J_i, assembled independently."""
    flat, unravel = ravel(params)
    J = np.asarray(jax.jacfwd(lambda z: net.apply(unravel(z), X))(flat))  # (n, K, d)
    P = np.asarray(jax.nn.softmax(net.apply(params, X), axis=-1))
    w = np.asarray(mask) / np.sum(np.asarray(mask))
    G = np.zeros((flat.size, flat.size))
    for i in range(X.shape[0]):
        Hout = np.diag(P[i]) - np.outer(P[i], P[i])
        G += w[i] * J[i].T @ Hout @ J[i]
    return G


def test_ggn_equals_dense_gauss_newton(problem):
    net, params, X, y, mask, *_ = problem
    model_fn, loss_fn = gauss_newton_parts(net, mask)
    op = ggn_operator(model_fn, loss_fn, params, X, y)
    G = np.asarray(dense_matrix(op))
    ref = _dense_ggn(net, params, X, y, mask)
    assert np.allclose(G, ref, rtol=1e-9, atol=1e-12)
    assert np.linalg.eigvalsh(0.5 * (G + G.T))[0] > -1e-12  # PSD
    with jax.disable_jit():
        v = jax.tree.map(jnp.ones_like, params)
        eager = np.asarray(ravel(op.mv(v))[0])
    assert np.allclose(eager, ref @ np.ones(ref.shape[0]), rtol=1e-9, atol=1e-12)


def _damping(H):
    lam_min = np.linalg.eigvalsh(H)[0]
    return max(0.2, -lam_min + 0.2)


def test_cg_and_full_batch_lissa_solve_the_damped_system(problem):
    net, params, X, y, mask, F, H, g = problem
    lam = _damping(H)
    A = H + lam * np.eye(H.shape[0])
    gf = np.asarray(ravel(g)[0])
    x_ref = np.linalg.solve(A, gf)
    op = hessian_operator(F, params, X, y, mask, damping=lam)
    sol = jax.jit(lambda g: pcg(op.mv, g, rtol=1e-12, max_steps=2000))(g)
    assert int(sol.result) == RESULTS.successful
    err = np.linalg.norm(np.asarray(ravel(sol.value)[0]) - x_ref) / np.linalg.norm(x_ref)
    assert err < 1e-6
    # full-batch LiSSA (exact mv: the operator has no sample_mv) run to convergence
    ev = np.linalg.eigvalsh(A)
    s = 1.05 * ev[-1]
    depth = int(math.ceil(s / ev[0] * math.log(1e9)))
    lis = lissa_solver(scale=s, depth=depth, repeats=1, rtol=1e-7)
    lsol = lis.solve(lis.init(op), g)
    assert int(lsol.result) == RESULTS.successful
    err = np.linalg.norm(np.asarray(ravel(lsol.value)[0]) - x_ref) / np.linalg.norm(x_ref)
    assert err < 1e-6
    # CG on the undamped, indefinite Hessian reports it instead of returning garbage
    if np.linalg.eigvalsh(H)[0] < 0:
        bad = pcg(hessian_operator(F, params, X, y, mask).mv, g, rtol=1e-12, max_steps=2000)
        assert int(bad.result) in (RESULTS.not_positive_definite, RESULTS.max_steps_reached)


@pytest.mark.slow  # a rate over sample sizes; the LiSSA error bounds stay in the default tier
def test_minibatch_lissa_error_shrinks_like_inverse_sqrt_s1(problem):
    """RMS error of the mean of s1 chains vs the exact solve: slope -1/2 on a log-log plot."""
    net, params, X, y, mask, F, H, g = problem
    lam = max(1.0, 1.0 - np.linalg.eigvalsh(H)[0])
    A = H + lam * np.eye(H.shape[0])
    x_ref = np.linalg.solve(A, np.asarray(ravel(g)[0]))
    sample_f = minibatch_objective(net, WD, X, y, mask, 8)
    op = hessian_operator(F, params, X, y, mask, sample_f=sample_f, damping=lam)
    # minibatch Hessians are larger than their mean: a generous scale keeps every chain stable
    ev = np.linalg.eigvalsh(A)
    s = 4.0 * ev[-1]
    depth = int(math.ceil(s / ev[0] * math.log(1e12)))
    lis = lissa_solver(scale=s, depth=depth, repeats=1)
    st = lis.init(op)
    keys = jax.random.split(jax.random.key(7), 256)
    chains = jax.jit(jax.vmap(lambda k: ravel(lis.solve(st, g, k).value)[0]))(keys)
    chains = np.asarray(chains)  # 256 independent single-chain estimates
    assert np.all(np.isfinite(chains))
    s1s = np.array([1, 2, 4, 8, 16, 32])
    rms = []
    for s1 in s1s:
        means = chains.reshape(-1, s1, chains.shape[1]).mean(axis=1)
        rms.append(np.sqrt(np.mean(np.sum((means - x_ref) ** 2, axis=1))))
    rms = np.array(rms)
    slope = np.polyfit(np.log(s1s), np.log(rms), 1)[0]
    assert -0.62 < slope < -0.38, (slope, rms)
    # the bias (truncation) is negligible against the s1 = 32 error: the mean of all 256 chains
    all_mean = np.linalg.norm(chains.mean(axis=0) - x_ref)
    assert all_mean < 0.5 * rms[-1]


def test_truncated_lissa_is_the_documented_spectral_filter(rng):
    """Along eigenvalue h, t steps give (1 - (1 - h/s)^(t+1)) / h (REFERENCES §4.3 quirk 2)."""
    h = np.array([0.01, 0.1, 0.5, 1.0, 3.0])
    Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    A = jnp.asarray((Q * h) @ Q.T)
    op = LinearOperator(lambda v: A @ v, jax.ShapeDtypeStruct((5,), jnp.float64))
    v = rng.normal(size=5)
    for s, t in ((4.0, 30), (1000.0, 1000)):  # the second is the paper's scale and depth
        lis = lissa_solver(scale=s, depth=t, repeats=1)
        x = np.asarray(lis.solve(lis.init(op), jnp.asarray(v)).value)
        gain = (1.0 - (1.0 - h / s) ** (t + 1)) / h
        assert np.allclose(Q.T @ x, gain * (Q.T @ v), rtol=1e-11, atol=1e-13)
    # the paper's defaults: gain ~1 along h = 0.01 where the inverse is 100, ~0.63 along h = 1
    g_paper = (1.0 - (1.0 - h / 1000.0) ** 1001) / h
    assert g_paper[0] == pytest.approx(0.996, abs=1e-3) and 1 / h[0] == 100.0
    assert g_paper[3] == pytest.approx(0.632, abs=1e-3)
