"""Small pytree helpers used across certun (vdot, norms, axpy, flattening)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

__all__ = [
    "tree_vdot",
    "tree_norm",
    "tree_add",
    "tree_sub",
    "tree_scale",
    "tree_axpy",
    "tree_zeros_like",
    "tree_size",
    "ravel",
    "all_finite",
]


def tree_vdot(a: Any, b: Any) -> jax.Array:
    """Sum over leaves of ``vdot(a_leaf, b_leaf)`` (real inner product)."""
    leaves = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.vdot(x, y), a, b))
    return jnp.asarray(sum(leaves[1:], leaves[0])) if leaves else jnp.zeros(())


def tree_norm(a: Any) -> jax.Array:
    """Euclidean norm of all leaves concatenated."""
    return jnp.sqrt(tree_vdot(a, a))


def tree_add(a: Any, b: Any) -> Any:
    """Leafwise ``a + b``."""
    return jax.tree.map(jnp.add, a, b)


def tree_sub(a: Any, b: Any) -> Any:
    """Leafwise ``a - b``."""
    return jax.tree.map(jnp.subtract, a, b)


def tree_scale(s: Any, a: Any) -> Any:
    """Leafwise ``s * a`` for a scalar ``s``."""
    return jax.tree.map(lambda x: s * x, a)


def tree_axpy(alpha: Any, x: Any, y: Any) -> Any:
    """Leafwise ``alpha * x + y``."""
    return jax.tree.map(lambda xi, yi: alpha * xi + yi, x, y)


def tree_zeros_like(a: Any) -> Any:
    """Zeros with the structure, shapes and dtypes of ``a``."""
    return jax.tree.map(jnp.zeros_like, a)


def tree_size(a: Any) -> int:
    """Total number of scalars in the pytree."""
    return sum(int(jnp.size(x)) for x in jax.tree.leaves(a))


def ravel(a: Any) -> tuple[jax.Array, Any]:
    """Flatten a pytree to a 1-D vector; returns ``(vector, unravel_fn)``."""
    return ravel_pytree(a)


def all_finite(a: Any) -> jax.Array:
    """Scalar boolean: every leaf is finite."""
    leaves = jax.tree.leaves(jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)), a))
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
