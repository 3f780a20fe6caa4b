"""Reductions over the rows of a large design matrix, on the device, block by block.

For ``X`` too large to copy (a million rows of ``d = 1024`` float64 is 7.6 GiB), these
accumulate ``X^T diag(w) X`` (the Gram matrix, the logistic curvature), ``||X||_F^2`` and the
largest row norm over row blocks of ``block`` rows: the only temporaries are one block
(``block x d``) and the ``d x d`` accumulator, never ``diag(w) X`` or ``X ** 2`` in full, and
nothing is copied to the host. With the rows sharded over a mesh (:mod:`certun.sharding`) each
device reduces its own rows and the partial sums are added (``psum``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["weighted_gram", "row_stats", "BLOCK"]

#: Rows per block (``8192 x 1024`` float64 = 64 MiB).
BLOCK = 8192


def _blocks(n: int, block: int) -> tuple[int, int]:
    b = min(block, n)
    return n // b, b


def _local_gram(X: jax.Array, w: jax.Array | None, block: int) -> jax.Array:
    n, d = X.shape
    K = 1 if w is None else w.shape[1]
    nb, b = _blocks(n, block)

    def add(G, Xb, wb):
        if wb is None:
            return G + (Xb.T @ Xb)[None]
        return G + jnp.einsum("ik,ij,il->kjl", wb, Xb, Xb)

    def body(i, G):
        Xb = lax.dynamic_slice_in_dim(X, i * b, b, 0)
        wb = None if w is None else lax.dynamic_slice_in_dim(w, i * b, b, 0)
        return add(G, Xb, wb)

    G = lax.fori_loop(0, nb, body, jnp.zeros((K, d, d), X.dtype))
    if nb * b < n:  # the remainder rows
        G = add(G, X[nb * b:], None if w is None else w[nb * b:])
    return G


def _local_stats(X: jax.Array, block: int) -> jax.Array:
    n, _ = X.shape
    nb, b = _blocks(n, block)

    def stats(Xb):
        r2 = jnp.sum(Xb * Xb, axis=1)
        return jnp.stack([jnp.sum(r2), jnp.max(jnp.sqrt(r2)),
                          jnp.sum(~jnp.isfinite(Xb)).astype(X.dtype)])

    def body(i, acc):
        s = stats(lax.dynamic_slice_in_dim(X, i * b, b, 0))
        return jnp.stack([acc[0] + s[0], jnp.maximum(acc[1], s[1]), acc[2] + s[2]])

    acc = lax.fori_loop(0, nb, body, jnp.zeros(3, X.dtype))
    if nb * b < n:
        s = stats(X[nb * b:])
        acc = jnp.stack([acc[0] + s[0], jnp.maximum(acc[1], s[1]), acc[2] + s[2]])
    return acc


def _mesh_axis(X: jax.Array):
    sh = getattr(X, "sharding", None)
    if isinstance(sh, jax.sharding.NamedSharding) and len(sh.device_set) > 1:
        return sh.mesh, sh.spec[0]
    return None, None


def weighted_gram(X: jax.Array, w: jax.Array | None = None, *, block: int = BLOCK) -> jax.Array:
    """``X^T diag(w_k) X`` per column ``k`` of ``w`` (``(K, d, d)``; ``w=None``: ``X^T X``).

    Accumulated over row blocks (``block`` static); with the rows sharded over a mesh, per
    device and then summed. Every summation order keeps the classic ``gamma_n`` bound on the
    formation error.
    """
    mesh, axis = _mesh_axis(X)
    if mesh is None:
        return _local_gram(X, w, block)
    from jax.sharding import PartitionSpec as P

    def local(Xl, wl):
        return lax.psum(_local_gram(Xl, wl, block), axis)

    if w is None:
        gram_fn = jax.shard_map(lambda Xl: local(Xl, None), mesh=mesh, in_specs=P(axis, None),
                                out_specs=P(), check_vma=False)
        return gram_fn(X)
    wgram_fn = jax.shard_map(local, mesh=mesh, in_specs=(P(axis, None), P(axis, None)),
                             out_specs=P(), check_vma=False)
    return wgram_fn(X, w)


def row_stats(X: jax.Array, *, block: int = BLOCK) -> jax.Array:
    """``[||X||_F^2, max_i ||x_i||, number of non-finite entries]``, over row blocks."""
    mesh, axis = _mesh_axis(X)
    if mesh is None:
        return _local_stats(X, block)
    from jax.sharding import PartitionSpec as P

    def local(Xl):
        s = _local_stats(Xl, block)
        return jnp.stack([lax.psum(s[0], axis), lax.pmax(s[1], axis), lax.psum(s[2], axis)])

    fn = jax.shard_map(local, mesh=mesh, in_specs=P(axis, None), out_specs=P(), check_vma=False)
    return fn(X)
