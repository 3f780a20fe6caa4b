"""Eigenvalue estimates and *guaranteed* spectral bounds.

Two different kinds of number live here and must not be confused:

* **Estimates** (:func:`power_iteration`): a Rayleigh quotient after ``k`` steps
  lies *inside* the spectrum, so it under-estimates ``lambda_max``. Good for
  choosing a LiSSA scale (with a safety factor), never for a certificate.
* **Guaranteed bounds** (:func:`symmetric_eig_bounds`,
  :func:`spectral_norm_upper_bound`): computed on the host in float64 from an
  exact symmetric eigensolver (not an iteration that stops early), widened by a
  rounding allowance derived from backward stability — guaranteed under the standard
  backward-error model with a generous constant (``10 d u ||A||_F``), not by interval
  arithmetic; the Frobenius fallback needs no such model — (the computed eigenvalues are
  exact for ``A + E`` with ``||E||_2 <= p(d) u ||A||_2``; Weyl's inequality moves each
  eigenvalue by at most ``||E||_2``) and from the error of forming ``X^T X`` in floating point
  (``|fl(X^T X) - X^T X| <= gamma_n |X|^T |X|`` entrywise, so its 2-norm is at most
  ``gamma_n ||X||_F^2``, ``gamma_n = n u / (1 - n u)``). ``proofs/spectral_bounds.md``
  derives the allowances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from certun._tree import tree_norm, tree_scale, tree_vdot

__all__ = [
    "EigenEstimate",
    "SpectralBound",
    "power_iteration",
    "symmetric_eig_bounds",
    "spectral_norm_upper_bound",
    "UNIT_ROUNDOFF",
]

#: Unit roundoff u = 2^-53 of float64, used in every rounding allowance.
UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2.0  # u = 2^-53 for float64


class EigenEstimate(NamedTuple):
    """An eigenvalue *estimate* (not a bound): value, vector and iterations."""

    eigenvalue: jax.Array
    vector: Any
    num_steps: int


class SpectralBound(NamedTuple):
    """A guaranteed bound with the information needed to audit it.

    Attributes:
      value: the bound.
      computed: the raw computed quantity before the rounding allowance.
      allowance: the rounding allowance added (or subtracted).
      method: how the bound was obtained.
    """

    value: float
    computed: float
    allowance: float
    method: str


def power_iteration(mv: Callable[[Any], Any], structure: Any, key: jax.Array,
                    num_steps: int = 100) -> EigenEstimate:
    """Estimate the eigenvalue of largest magnitude of a symmetric operator.

    Runs ``num_steps`` normalised power steps from a Gaussian start in a
    ``lax.fori_loop`` and returns the Rayleigh quotient ``v^T A v``. This is an
    **estimate** that under-estimates ``|lambda|_max``; use it only where an
    estimate suffices (e.g. a LiSSA scale with a safety factor).

    Args:
      mv: ``v -> A v`` over pytrees.
      structure: pytree of ``jax.ShapeDtypeStruct`` (or arrays) giving the vector space.
      key: PRNG key for the starting vector.
      num_steps: number of power steps.

    Returns:
      An :class:`EigenEstimate`.
    """
    leaves, treedef = jax.tree.flatten(structure)
    keys = jax.random.split(key, len(leaves))
    v0 = jax.tree.unflatten(treedef, [
        jax.random.normal(k, jnp.shape(s), jnp.result_type(s.dtype))
        for k, s in zip(keys, leaves, strict=True)
    ])
    v0 = tree_scale(1.0 / tree_norm(v0), v0)

    def body(_: int, v: Any) -> Any:
        w = mv(v)
        nrm = tree_norm(w)
        return tree_scale(1.0 / jnp.where(nrm > 0, nrm, 1.0), w)

    v = lax.fori_loop(0, num_steps, body, v0)
    return EigenEstimate(tree_vdot(v, mv(v)), v, num_steps)


def symmetric_eig_bounds(A: Any) -> tuple[SpectralBound, SpectralBound]:
    """Guaranteed lower and upper bounds on the extreme eigenvalues of a symmetric matrix.

    Computed in float64 on the host with LAPACK's symmetric eigensolver; the
    allowance ``10 d u ||A||_F`` covers its backward error (a generous multiple
    of the ``O(d u ||A||_2)`` bound of a backward-stable Householder
    tridiagonalisation plus QR/divide-and-conquer).

    Args:
      A: a symmetric ``d x d`` matrix (symmetrised as ``(A + A^T)/2``).

    Returns:
      ``(lower bound on lambda_min, upper bound on lambda_max)``.
    """
    A = np.asarray(A, dtype=np.float64)
    A = 0.5 * (A + A.T)
    d = A.shape[0]
    w = np.linalg.eigvalsh(A)
    allowance = 10.0 * d * UNIT_ROUNDOFF * float(np.linalg.norm(A, "fro"))
    return (SpectralBound(float(w[0]) - allowance, float(w[0]), allowance, "eigvalsh-float64"),
            SpectralBound(float(w[-1]) + allowance, float(w[-1]), allowance, "eigvalsh-float64"))


def spectral_norm_upper_bound(X: Any, gram: Any | None = None) -> SpectralBound:
    """A guaranteed upper bound on ``||X||_2`` (the largest singular value).

    ``||X||_2^2 = lambda_max(X^T X)``. The Gram matrix is formed in float64 (or
    taken from ``gram``, which must equal ``X^T X`` formed in float64), its top
    eigenvalue computed exactly up to the allowance of
    :func:`symmetric_eig_bounds`, plus the formation error ``gamma_n ||X||_F^2``.
    The result is also capped by the Frobenius norm ``||X||_F`` (always an upper
    bound; widened by its own rounding ``n d u``).

    Args:
      X: an ``n x d`` matrix.
      gram: optional precomputed float64 ``X^T X``.

    Returns:
      A :class:`SpectralBound` on ``||X||_2``.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    G = X.T @ X if gram is None else np.asarray(gram, dtype=np.float64)
    return spectral_bound_from_gram(G, float(np.sum(X * X)), n, d)


def spectral_bound_from_gram(G: Any, fro2: float, n: int, d: int) -> SpectralBound:
    """:func:`spectral_norm_upper_bound` from ``G = X^T X`` (float64) and ``||X||_F^2`` alone.

    For ``X`` too large to read twice (the Gram matrix and ``||X||_F^2`` accumulated on the
    device over row blocks, :mod:`certun.primitives.row_blocks`); ``n x d`` is ``X``'s shape.
    """
    G = np.asarray(G, dtype=np.float64)
    fro2 = float(fro2)
    gamma_n = n * UNIT_ROUNDOFF / (1.0 - n * UNIT_ROUNDOFF)
    _, up = symmetric_eig_bounds(G)
    lam_bound = max(up.value, 0.0) + gamma_n * fro2
    # round the final square roots upward so the returned float is >= the real number
    via_eig = float(np.nextafter(np.sqrt(lam_bound), np.inf))
    via_fro = float(np.nextafter(np.sqrt(fro2) * (1.0 + (n * d + 2) * UNIT_ROUNDOFF), np.inf))
    computed = float(np.sqrt(max(up.computed, 0.0)))
    if via_eig <= via_fro:
        return SpectralBound(via_eig, computed, via_eig - computed,
                             "sqrt(eigvalsh(X^T X)) + rounding")
    return SpectralBound(via_fro, computed, via_fro - computed, "Frobenius norm")

