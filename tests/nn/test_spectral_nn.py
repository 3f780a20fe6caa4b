"""Lanczos estimates lie inside the spectrum; the dense bound lies below lambda_min."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun.data import load_digits
from certun.nn import exact_min_eigenvalue, lanczos_extreme_eigenvalues, mlp, objective
from certun.primitives import LinearOperator, dense_hessian, hessian_operator


def _op(A):
    A = jnp.asarray(A)
    return LinearOperator(lambda v: A @ v, jax.ShapeDtypeStruct((A.shape[0],), A.dtype))


def test_lanczos_full_dimension_recovers_the_spectrum(rng):
    d = 30
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    w = np.linspace(-2.0, 5.0, d)
    op = _op((Q * w) @ Q.T)
    r = lanczos_extreme_eigenvalues(op.mv, op.structure, jax.random.key(0), num_steps=d)
    assert np.allclose(np.sort(np.asarray(r.values)), w, atol=1e-8)
    # fewer steps: Ritz values inside the spectrum (smallest over-estimates lambda_min)
    r = lanczos_extreme_eigenvalues(op.mv, op.structure, jax.random.key(0), num_steps=8)
    assert w[0] - 1e-10 <= float(r.smallest) and float(r.largest) <= w[-1] + 1e-10
    assert float(r.smallest) > w[0] + 1e-3  # an over-estimate after 8 steps


def test_lanczos_survives_an_invariant_subspace():
    """A matrix with 3 distinct eigenvalues: breakdown after 3 steps, restart keeps T exact."""
    w = np.repeat([1.0, 2.0, 7.0], 4)
    A = np.diag(w)
    op = _op(A)
    r = lanczos_extreme_eigenvalues(op.mv, op.structure, jax.random.key(1), num_steps=12)
    assert np.all(np.isfinite(np.asarray(r.values)))
    assert np.allclose(np.sort(np.asarray(r.values)), np.sort(w), atol=1e-8)


@pytest.fixture(scope="module")
def net_hessian():
    ds = load_digits()
    X, y = jnp.asarray(ds.X_train[:40]), jnp.asarray(ds.y_train[:40])
    net = mlp(64, (6,), 10, "tanh", input_scale=8.0)
    p = net.init(jax.random.key(5), jnp.float64)
    F = objective(net, 1e-3)
    H = np.asarray(jax.jit(dense_hessian, static_argnums=0)(F, p, X, y))
    return F, p, X, y, H


def test_lanczos_on_a_network_hessian_over_estimates_lambda_min(net_hessian):
    F, p, X, y, H = net_hessian
    ev = np.linalg.eigvalsh(H)
    op = hessian_operator(F, p, X, y)
    r = jax.jit(lambda k: lanczos_extreme_eigenvalues(op.mv, op.structure, k, 40))(
        jax.random.key(2))
    assert ev[0] - 1e-9 <= float(r.smallest) <= ev[-1]
    assert ev[0] <= float(r.largest) <= ev[-1] + 1e-9
    assert ev[0] < 0  # the network is nonconvex here


def test_exact_min_eigenvalue_is_a_lower_bound(net_hessian):
    F, p, X, y, H = net_hessian
    b = exact_min_eigenvalue(F, p, X, y)
    lam_min = np.linalg.eigvalsh(H)[0]
    assert b.value <= lam_min
    assert lam_min - b.value == pytest.approx(b.allowance, rel=1e-6)
    assert b.allowance < 1e-9  # tiny next to any useful damping
    with pytest.raises(ValueError, match="max_params"):
        exact_min_eigenvalue(F, p, X, y, max_params=10)
