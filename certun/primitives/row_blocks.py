"""Reductions over the rows of a large design matrix, on the device, block by block.

For ``X`` too large to copy (a million rows of ``d = 1024`` float64 is 7.6 GiB), these
accumulate ``X^T diag(w) X`` (the Gram matrix, the logistic curvature), ``||X||_F^2`` and the
largest row norm over row blocks of ``block`` rows: the only temporaries are one block
(``block x d``) and the ``d x d`` accumulator, never ``diag(w) X`` or ``X ** 2`` in full, and
nothing is copied to the host. With the rows sharded over the devices (:mod:`certun.sharding`)
the loop runs over each device's own rows and the partitioner adds the partial sums: no
device ever gathers ``X``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["weighted_gram", "row_stats", "BLOCK"]

#: Rows per block (``8192 x 1024`` float64 = 64 MiB).
BLOCK = 8192


def _parts(n: int) -> int:
    """Row groups the reductions keep apart: the device count when it divides ``n``.

    ``X`` is viewed as ``(P, n / P, d)``; with its rows sharded over ``P`` devices that view
    keeps every device's rows on the leading axis, so the block loop (over the second axis)
    never slices the sharded one and the partitioner adds the ``P`` partial sums; on one
    device it is just a reshape.
    """
    p = jax.device_count()
    return p if n % p == 0 else 1


def _split(n: int, block: int) -> tuple[int, int, int, int]:
    P = _parts(n)
    per = n // P
    b = min(max(block // P, 1), per)  # a block of block rows in all, block / P per group
    return P, per, b, per // b


@functools.partial(jax.jit, static_argnames=("block",))
def _gram(X: jax.Array, w: jax.Array | None, block: int) -> jax.Array:
    n, d = X.shape
    K = 1 if w is None else w.shape[1]
    P, per, b, nb = _split(n, block)
    Xr = X.reshape(P, per, d)
    wr = None if w is None else w.reshape(P, per, K)

    def add(G, Xb, wb):
        if wb is None:
            return G + jnp.einsum("pij,pil->jl", Xb, Xb)[None]
        return G + jnp.einsum("pik,pij,pil->kjl", wb, Xb, Xb)

    def body(i, G):
        Xb = lax.dynamic_slice_in_dim(Xr, i * b, b, 1)
        wb = None if wr is None else lax.dynamic_slice_in_dim(wr, i * b, b, 1)
        return add(G, Xb, wb)

    G = lax.fori_loop(0, nb, body, jnp.zeros((K, d, d), X.dtype))
    if nb * b < per:  # the remainder rows of every group
        G = add(G, Xr[:, nb * b:], None if wr is None else wr[:, nb * b:])
    return G


@functools.partial(jax.jit, static_argnames=("block",))
def _stats(X: jax.Array, block: int) -> jax.Array:
    n, d = X.shape
    P, per, b, nb = _split(n, block)
    Xr = X.reshape(P, per, d)

    def stats(Xb):
        r2 = jnp.sum(Xb * Xb, axis=-1)
        return jnp.stack([jnp.sum(r2), jnp.max(jnp.sqrt(r2)),
                          jnp.sum(~jnp.isfinite(Xb)).astype(X.dtype)])

    def merge(acc, s):
        return jnp.stack([acc[0] + s[0], jnp.maximum(acc[1], s[1]), acc[2] + s[2]])

    def body(i, acc):
        return merge(acc, stats(lax.dynamic_slice_in_dim(Xr, i * b, b, 1)))

    acc = lax.fori_loop(0, nb, body, jnp.zeros(3, X.dtype))
    if nb * b < per:
        acc = merge(acc, stats(Xr[:, nb * b:]))
    return acc


def weighted_gram(X: jax.Array, w: jax.Array | None = None, *, block: int = BLOCK) -> jax.Array:
    """``X^T diag(w_k) X`` per column ``k`` of ``w`` (``(K, d, d)``; ``w=None``: ``X^T X``).

    Accumulated over row blocks (``block`` static) of each device's rows (see
    :func:`_parts`); jit-able. Every summation order keeps the classic ``gamma_n`` bound on
    the formation error.
    """
    return _gram(X, w, block)


def row_stats(X: jax.Array, *, block: int = BLOCK) -> jax.Array:
    """``[||X||_F^2, max_i ||x_i||, number of non-finite entries]``, over row blocks."""
    return _stats(X, block)
