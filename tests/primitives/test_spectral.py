"""Eigenvalue estimates vs guaranteed spectral bounds."""

import jax
import jax.numpy as jnp
import numpy as np

from certun.primitives import spectral as sp


def test_power_iteration_underestimates_but_approaches_lambda_max(rng):
    Q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    w = np.linspace(0.1, 5.0, 30)
    A = jnp.asarray((Q * w) @ Q.T)
    space = jax.ShapeDtypeStruct((30,), A.dtype)
    few = sp.power_iteration(lambda v: A @ v, space, jax.random.key(0), 3)
    many = sp.power_iteration(lambda v: A @ v, space, jax.random.key(0), 500)
    assert float(few.eigenvalue) <= 5.0 + 1e-12  # a Rayleigh quotient never exceeds lambda_max
    assert float(many.eigenvalue) <= 5.0 + 1e-12
    assert float(many.eigenvalue) > 4.99
    assert float(few.eigenvalue) < float(many.eigenvalue)


def test_spectral_norm_upper_bound_is_an_upper_bound_and_tight(rng):
    for n, d in ((50, 10), (400, 64), (30, 80)):
        X = rng.normal(size=(n, d))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        exact = np.linalg.norm(X, 2)
        b = sp.spectral_norm_upper_bound(X)
        assert b.value >= exact
        assert b.value <= exact * (1 + 1e-9)
        assert b.value <= np.sqrt(n) * (1 + 1e-12)  # never above the Frobenius norm
        # the bound for the full matrix also bounds every row subset
        assert b.value >= np.linalg.norm(X[: n // 2], 2)


def test_symmetric_eig_bounds_bracket_the_spectrum(rng):
    A = rng.normal(size=(20, 20))
    A = A + A.T
    lo, hi = sp.symmetric_eig_bounds(A)
    w = np.linalg.eigvalsh(A)
    assert lo.value <= w[0] and hi.value >= w[-1]
    assert hi.allowance > 0 and hi.allowance < 1e-10 * np.abs(w).max()
