r"""Extreme eigenvalues of network Hessians: Lanczos *estimates* and a dense *bound*.

Zhang et al.'s bound :math:`2C(MC+\lambda)/(\lambda+\lambda_{\min})` needs
:math:`\lambda_{\min}`, the smallest eigenvalue of the retained objective's Hessian at the
point where the Newton step is taken (docs/bibliography.md erratum 4). Two kinds of number:

* :func:`lanczos_extreme_eigenvalues` -- ``k`` steps of Lanczos with full
  reorthogonalisation. Ritz values lie **inside** the spectrum (Cauchy interlacing), so the
  smallest Ritz value **over-estimates** :math:`\lambda_{\min}` and the largest
  under-estimates :math:`\lambda_{\max}`. A certificate resting on it is ``conditional``
  (the estimate is an *assumed* constant).
* :func:`exact_min_eigenvalue` -- the dense float64 Hessian (``jax.hessian``) and LAPACK's
  ``eigvalsh`` with the backward-error allowance of
  :func:`certun.primitives.spectral.symmetric_eig_bounds`, plus an equal allowance for the
  error of forming the Hessian by automatic differentiation in float64 (a heuristic
  constant: AD error is not bounded rigorously; it is ~1e-13 relative here, far below
  the allowance). Only for small models (``max_params``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from certun import _validate
from certun._tree import ravel
from certun.primitives.curvature import dense_hessian
from certun.primitives.spectral import UNIT_ROUNDOFF, SpectralBound, symmetric_eig_bounds

__all__ = ["RitzValues", "lanczos_extreme_eigenvalues", "exact_min_eigenvalue"]

PyTree = Any


class RitzValues(NamedTuple):
    """Lanczos output: estimates, not bounds.

    Attributes:
      smallest: smallest Ritz value (``>= lambda_min``: an over-estimate).
      largest: largest Ritz value (``<= lambda_max``: an under-estimate).
      values: all Ritz values (ascending).
      num_steps: Lanczos steps taken.
    """

    smallest: jax.Array
    largest: jax.Array
    values: jax.Array
    num_steps: int


def lanczos_extreme_eigenvalues(mv: Callable[[PyTree], PyTree], structure: PyTree, key: jax.Array,
                                num_steps: int = 64) -> RitzValues:
    """Estimate the extreme eigenvalues of a symmetric operator by Lanczos.

    Runs ``k = min(num_steps, dim)`` steps from a Gaussian start vector with full
    reorthogonalisation (twice, classical Gram-Schmidt against all previous vectors) in a
    ``lax.fori_loop``; on breakdown (an invariant subspace) it restarts with a fresh random
    vector orthogonal to the basis, so the tridiagonal matrix stays exact. Memory is
    ``(k + 1) x dim``.

    Args:
      mv: ``v -> A v`` over pytrees (e.g. ``hessian_operator(...).mv``).
      structure: pytree of arrays or ``ShapeDtypeStruct`` giving the vector space.
      key: PRNG key for the start (and restart) vectors.
      num_steps: Lanczos steps.

    Returns:
      :class:`RitzValues` (jit-compatible; all estimates).
    """
    zeros = jax.tree.map(lambda s: jnp.zeros(jnp.shape(s), jnp.result_type(s.dtype)), structure)
    flat0, unravel = ravel(zeros)
    d = flat0.size
    k = int(min(num_steps, d))
    if k < 1:
        raise _validate.ValidationError(f"num_steps must be >= 1, got {num_steps}")
    dtype = flat0.dtype

    def mvf(x: jax.Array) -> jax.Array:
        return ravel(mv(unravel(x)))[0]

    def unit_random(kk: jax.Array, V: jax.Array) -> jax.Array:
        z = jax.random.normal(kk, (d,), dtype)
        z = z - V.T @ (V @ z)
        z = z - V.T @ (V @ z)
        return z / jnp.linalg.norm(z)

    V = jnp.zeros((k + 1, d), dtype)
    V = V.at[0].set(unit_random(jax.random.fold_in(key, 0), V))

    def body(j, carry):
        V, alpha, beta = carry
        vj = V[j]
        w = mvf(vj)
        a = jnp.vdot(vj, w)
        w = w - V.T @ (V @ w)
        w = w - V.T @ (V @ w)
        b = jnp.linalg.norm(w)
        scale = jnp.sqrt(jnp.abs(a)) + jnp.linalg.norm(vj)
        broke = b <= 1e3 * jnp.finfo(dtype).eps * scale
        fresh = unit_random(jax.random.fold_in(key, j + 1), V)
        nxt = jnp.where(broke, fresh, w / jnp.where(broke, 1.0, b))
        V = V.at[j + 1].set(nxt)
        return V, alpha.at[j].set(a), beta.at[j].set(jnp.where(broke, 0.0, b))

    _, alpha, beta = lax.fori_loop(0, k, body, (V, jnp.zeros(k, dtype), jnp.zeros(k, dtype)))
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    ritz = jnp.linalg.eigvalsh(T)
    return RitzValues(ritz[0], ritz[-1], ritz, k)


def exact_min_eigenvalue(f: Callable[..., jax.Array], params: PyTree, *args: Any,
                         max_params: int = 4096) -> SpectralBound:
    """A guaranteed lower bound on ``lambda_min`` of the Hessian of ``f(params, *args)``.

    The Hessian is formed densely in float64 (parameters and floating arguments are cast),
    symmetrised, and bounded below by :func:`certun.primitives.spectral.symmetric_eig_bounds`
    (``eigvalsh`` minus ``10 d u ||H||_F``); a second ``10 d u ||H||_F`` covers the error of
    forming ``H`` by automatic differentiation (heuristic constant, see module docstring).

    Args:
      f: scalar objective ``f(params, *args)``.
      params: the point (any float dtype; the Hessian is computed in float64).
      *args: data forwarded to ``f`` (floating arrays are cast to float64).
      max_params: refuse larger models (the dense Hessian costs ``d`` HVPs and ``d^2`` memory).

    Returns:
      A :class:`~certun.primitives.spectral.SpectralBound` whose ``value`` is the lower bound.

    Raises:
      ValueError: if the model has more than ``max_params`` parameters or float64 is off.
    """
    if not jax.config.read("jax_enable_x64"):
        raise _validate.ValidationError(
            "exact_min_eigenvalue needs float64: call certun.enable_x64() first")
    flat, _ = ravel(params)
    if flat.size > max_params:
        raise _validate.ValidationError(
            f"the model has {flat.size} parameters > max_params={max_params}: the dense Hessian "
            "is too large; use a Lanczos estimate (lam_min='lanczos') instead")

    def cast(x: Any) -> Any:
        if isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(x, jnp.float64)
        return x

    p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
    H = np.asarray(jax.jit(dense_hessian, static_argnums=0)(f, p64, *[cast(a) for a in args]),
                   np.float64)
    low, _ = symmetric_eig_bounds(H)
    formation = 10.0 * H.shape[0] * UNIT_ROUNDOFF * float(np.linalg.norm(0.5 * (H + H.T), "fro"))
    value = low.value - formation
    return SpectralBound(value, low.computed, low.allowance + formation,
                         "eigvalsh-float64 of the AD Hessian (+ formation allowance)")
