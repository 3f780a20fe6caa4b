r"""Gaussian noise over pytrees with a strict key discipline.

Every noisy release in certun (output perturbation of a published model,
Guo et al.'s objective perturbation ``b``, Langevin steps) draws its noise here,
so that one rule holds everywhere:

**Key discipline.** A release never reuses a key, and neither does a leaf:

* release ``r`` uses ``release_key(key, r) = jax.random.fold_in(key, r)``;
* leaf ``i`` of the flattened tree (``jax.tree.leaves`` order) uses
  ``jax.random.fold_in(release_key(key, r), i)``.

So noise of different leaves and of different releases is independent, and
the noise of a leaf does not depend on what other leaves the tree holds.

Each leaf gets ``sigma * N(0, 1)`` drawn directly in the leaf's floating dtype
(float16/bfloat16/float32/float64 are preserved). ``sigma`` may be a traced
value: all functions are jit-able. Host-side checks (``sigma`` finite and
``>= 0``, floating leaves, a non-negative integer ``release``) run only on
concrete values, so under ``jax.jit`` a traced ``sigma`` is not checked.

Objective perturbation (Guo et al. 2020): training minimises
``L(w; D) + b^T w / n`` (mean scale; ``b^T w`` on the sum scale) with
``b ~ N(0, sigma^2 I)``; :func:`objective_perturbation` draws that ``b``.

References:
  C. Guo, T. Goldstein, A. Hannun and L. van der Maaten, "Certified data removal
  from machine learning models", ICML 2020, https://arxiv.org/abs/1911.03030.
  B. Balle and Y.-X. Wang, ICML 2018, https://arxiv.org/abs/1805.06530 (the
  Gaussian mechanism calibrated by :mod:`certun.accounting`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import core as jax_core

from certun import _validate

__all__ = [
    "release_key",
    "leaf_keys",
    "gaussian_like",
    "perturb",
    "objective_perturbation",
]

PyTree = Any


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax_core.Tracer)


def _check_sigma(sigma: Any) -> None:
    if not _is_concrete(sigma):
        return
    if np.ndim(sigma) != 0:
        raise _validate.ValidationError(
            f"sigma must be a scalar standard deviation, got shape {np.shape(sigma)}"
        )
    _validate.non_negative(sigma=np.asarray(sigma).item())


def _check_release(release: Any) -> None:
    if not _is_concrete(release):
        return
    if isinstance(release, (jax.Array, np.ndarray)) and release.ndim == 0:
        if not jnp.issubdtype(release.dtype, jnp.integer):
            raise _validate.ValidationError(
                f"release must be an integer release counter, got dtype {release.dtype}"
            )
        release = int(release)
    _validate.integer(release=release, minimum=0, maximum=2**32 - 1)


def _check_key(key: Any) -> None:
    if not _is_concrete(key):
        return
    try:
        dtype = key.dtype
    except AttributeError:
        raise _validate.ValidationError(
            f"key must be a JAX PRNG key (jax.random.key(seed)), got {type(key).__name__}"
        ) from None
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if key.ndim != 0:
            raise _validate.ValidationError(
                f"key must be a single PRNG key, got a batch of shape {key.shape}"
            )
    elif not (dtype == jnp.uint32 and key.ndim == 1):
        raise _validate.ValidationError(
            f"key must be a JAX PRNG key (jax.random.key(seed)), got dtype {dtype} and "
            f"shape {getattr(key, 'shape', None)}"
        )


def _leaf_spec(leaf: Any, where: str, name: str) -> tuple[tuple[int, ...], Any]:
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        shape, dtype = tuple(leaf.shape), leaf.dtype
    else:
        arr = jnp.asarray(leaf)
        shape, dtype = tuple(arr.shape), arr.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise _validate.ValidationError(
            f"{name}{where} has dtype {dtype}; Gaussian noise needs floating-point leaves "
            "(cast integer leaves with .astype(jnp.float32) or exclude them)"
        )
    return shape, dtype


def release_key(key: jax.Array, release: int | jax.Array) -> jax.Array:
    """The key of release number ``release``: ``jax.random.fold_in(key, release)``.

    Args:
      key: a JAX PRNG key.
      release: the release counter (a non-negative integer, may be traced).

    Returns:
      The folded key.
    """
    return jax.random.fold_in(key, release)


def leaf_keys(key: jax.Array, num_leaves: int, *, release: int | jax.Array = 0) -> list[jax.Array]:
    """Per-leaf keys of one release: ``fold_in(release_key(key, release), i)``.

    Args:
      key: a JAX PRNG key.
      num_leaves: number of leaves of the flattened tree.
      release: the release counter.

    Returns:
      A list of ``num_leaves`` keys.
    """
    rk = release_key(key, release)
    return [jax.random.fold_in(rk, i) for i in range(num_leaves)]


def _draw(key: jax.Array, specs: tuple, sigma: Any, release: Any) -> list[jax.Array]:
    keys = leaf_keys(key, len(specs), release=release)
    out = []
    for k, (shape, dtype) in zip(keys, specs, strict=True):
        z = jax.random.normal(k, shape, dtype)
        out.append(z * jnp.asarray(sigma, dtype=dtype))
    return out


# The cores are jitted so that an eager call runs the same compiled computation
# as a call inside the user's ``jax.jit``: XLA may otherwise fuse the sampling,
# the scaling by sigma and the addition differently (1-ulp differences).
@functools.partial(jax.jit, static_argnames=("specs",))
def _noise_core(key: jax.Array, sigma: Any, release: Any, specs: tuple) -> list[jax.Array]:
    return _draw(key, specs, sigma, release)


@jax.jit
def _perturb_core(key: jax.Array, leaves: list, sigma: Any, release: Any) -> list[jax.Array]:
    specs = tuple((tuple(x.shape), x.dtype) for x in leaves)
    noise = _draw(key, specs, sigma, release)
    return [(x + e).astype(e.dtype) for x, e in zip(leaves, noise, strict=True)]


def _noise_from_specs(key: jax.Array, specs: list, sigma: Any, release: Any) -> list[jax.Array]:
    specs_t = tuple((tuple(int(d) for d in shape), jnp.dtype(dtype)) for shape, dtype in specs)
    return _noise_core(key, sigma, release, specs_t)


def _specs_of_tree(tree: PyTree, name: str) -> tuple[list, Any]:
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    if not flat:
        raise _validate.ValidationError(f"{name} is an empty pytree; nothing to add noise to")
    specs = [_leaf_spec(leaf, jax.tree_util.keystr(path), name) for path, leaf in flat]
    return specs, treedef


def gaussian_like(
    key: jax.Array, tree: PyTree, sigma: float | jax.Array, *, release: int | jax.Array = 0
) -> PyTree:
    r"""Isotropic Gaussian noise ``N(0, sigma^2 I)`` shaped like ``tree``.

    Leaf ``i`` (in ``jax.tree.leaves`` order) is
    ``sigma * jax.random.normal(fold_in(fold_in(key, release), i), leaf.shape, leaf.dtype)``.

    Args:
      key: a JAX PRNG key (``jax.random.key(seed)``; legacy uint32 keys work too).
      tree: a pytree of floating arrays (or ``jax.ShapeDtypeStruct``); only the
        structure, shapes and dtypes are used.
      sigma: the standard deviation, a scalar ``>= 0`` (may be traced).
      release: the release counter; distinct releases must use distinct values.

    Returns:
      A pytree with the structure, shapes and dtypes of ``tree``. ``sigma = 0``
      gives exact zeros.

    Raises:
      ValueError: (host side, concrete values only) if ``sigma`` is negative or
        not finite, ``release`` is not a non-negative integer, ``tree`` is empty
        or has a non-floating leaf.
    """
    _check_key(key)
    _check_sigma(sigma)
    _check_release(release)
    specs, treedef = _specs_of_tree(tree, "tree")
    return jax.tree_util.tree_unflatten(treedef, _noise_from_specs(key, specs, sigma, release))


def perturb(
    key: jax.Array, tree: PyTree, sigma: float | jax.Array, *, release: int | jax.Array = 0
) -> PyTree:
    r"""Output perturbation: ``tree + N(0, sigma^2 I)`` (the Gaussian mechanism).

    With ``sigma`` from :func:`certun.accounting.calibrate` for the L2
    sensitivity of ``tree``, the result is ``(epsilon, delta)``-indistinguishable
    from the same computation on a neighbouring data set.

    Args:
      key: a JAX PRNG key.
      tree: a pytree of floating arrays.
      sigma: the standard deviation, a scalar ``>= 0`` (may be traced).
      release: the release counter; distinct releases must use distinct values.

    Returns:
      ``tree + gaussian_like(key, tree, sigma, release=release)`` leafwise, in
      each leaf's dtype.

    Raises:
      ValueError: as :func:`gaussian_like`.

    References:
      B. Balle and Y.-X. Wang, ICML 2018, https://arxiv.org/abs/1805.06530.
    """
    _check_key(key)
    _check_sigma(sigma)
    _check_release(release)
    _specs_of_tree(tree, "tree")  # validates: non-empty, floating leaves
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves = [jnp.asarray(x) for x in leaves]
    return jax.tree_util.tree_unflatten(treedef, _perturb_core(key, leaves, sigma, release))


def objective_perturbation(
    key: jax.Array,
    shape_or_tree: int | tuple[int, ...] | PyTree,
    sigma: float | jax.Array,
    dtype: Any = None,
    *,
    release: int | jax.Array = 0,
) -> PyTree:
    r"""Guo et al.'s linear objective perturbation ``b ~ N(0, sigma^2 I)``.

    Training then minimises ``sum_i loss_i(w) + (lambda n / 2)||w||^2 + b^T w``
    (Guo et al. 2020, sum scale). The same ``key`` always reproduces the same
    ``b``; draw it with a key used for nothing else. Uses the per-leaf folding of
    :func:`gaussian_like`.

    Args:
      key: a JAX PRNG key.
      shape_or_tree: an ``int`` or tuple of ``int`` (the shape of ``b``), or a
        pytree of floating arrays / ``jax.ShapeDtypeStruct`` (``b`` gets its
        structure).
      sigma: the standard deviation, a scalar ``>= 0`` (may be traced); e.g.
        :func:`certun.accounting.guo_sigma`.
      dtype: floating dtype of ``b``. For a shape, defaults to JAX's default
        float (float64 with x64 enabled, else float32); for a tree, overrides
        every leaf's dtype when given.
      release: the release counter (default 0).

    Returns:
      ``b``: an array of the given shape, or a pytree like ``shape_or_tree``.

    Raises:
      ValueError: as :func:`gaussian_like`, or for a non-floating ``dtype``.

    References:
      C. Guo et al., ICML 2020, https://arxiv.org/abs/1911.03030, Section 3.
    """
    _check_key(key)
    _check_sigma(sigma)
    _check_release(release)
    if dtype is not None:
        dtype = jnp.dtype(dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise _validate.ValidationError(
                f"dtype must be a floating dtype (e.g. jnp.float32), got {dtype}"
            )
    shape = _as_shape(shape_or_tree)
    if shape is not None:
        dt = dtype if dtype is not None else jnp.zeros((), dtype=float).dtype
        return _noise_from_specs(key, [(shape, dt)], sigma, release)[0]
    specs, treedef = _specs_of_tree(shape_or_tree, "shape_or_tree")
    if dtype is not None:
        specs = [(s, dtype) for s, _ in specs]
    return jax.tree_util.tree_unflatten(treedef, _noise_from_specs(key, specs, sigma, release))


def _as_shape(x: Any) -> tuple[int, ...] | None:
    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if is_int(x):
        shape: tuple[int, ...] = (int(x),)
    elif isinstance(x, tuple) and all(is_int(v) for v in x):
        shape = tuple(int(v) for v in x)
    else:
        return None
    if any(d < 0 for d in shape):
        raise _validate.ValidationError(
            f"shape_or_tree={x!r} has a negative dimension; pass a valid shape"
        )
    return shape

