"""Bring your own model: a pure ``apply(params, x)`` from linen, an nnx graph or a function.

certun's network unlearners for user-trained models (:func:`certun.unlearners.noisy_finetuning`,
:func:`certun.unlearners.frozen_extractor_head`) take the *parameters* the user trained with
their own optax loop and a pure function ``apply(params, x) -> logits``. :func:`as_apply`
builds that function from what users have:

* a **flax linen** module: ``apply(params, x) = module.apply({"params": params, **extra}, x)``
  (``params`` is the ``"params"`` collection; frozen non-trainable collections such as
  BatchNorm statistics go in ``extra`` and are never unlearned);
* a **flax nnx** graph definition (``graphdef, state = nnx.split(model)``):
  ``apply(state, x) = nnx.merge(graphdef, state)(x)``; ``state`` (an ``nnx.State``, a pytree)
  is the parameter pytree;
* any **function** ``f(params, x)``: returned as it is.

Nothing is wrapped in a class and nothing is stateful; the unlearners clip, noise and
differentiate ``params`` as a pytree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import jax

from certun import _validate

__all__ = ["as_apply", "tree_clip", "tree_rescale", "leaf_norms"]

PyTree = Any


def as_apply(model: Any, *, extra_variables: Mapping[str, Any] | None = None,
             method: str | None = None) -> Callable[[PyTree, jax.Array], jax.Array]:
    """A pure ``apply(params, x)`` for a linen module, an nnx ``GraphDef`` or a function.

    Args:
      model: a ``flax.linen.Module``, a ``flax.nnx.GraphDef`` (from ``nnx.split``) or a
        callable ``f(params, x)``.
      extra_variables: linen only: fixed non-parameter collections passed to every call
        (e.g. ``{"batch_stats": ...}`` in inference mode); they are never unlearned.
      method: linen only: the module method to call (default ``__call__``).

    Returns:
      ``apply(params, x) -> outputs``, jit-able and differentiable in ``params``.

    Raises:
      ValidationError: when ``model`` is none of the three.
    """
    import flax.linen as nn
    from flax import nnx

    if isinstance(model, nn.Module):
        extra = dict(extra_variables or {})
        if "params" in extra:
            raise _validate.ValidationError(
                "extra_variables must not hold 'params': pass the parameters to apply")

        def linen_apply(params: PyTree, x: jax.Array) -> jax.Array:
            kw: dict[str, Any] = {} if method is None else {"method": method}
            return cast(jax.Array, model.apply({"params": params, **extra}, x, **kw))

        return linen_apply
    if extra_variables is not None or method is not None:
        raise _validate.ValidationError(
            "extra_variables and method apply to flax linen modules only; drop them")
    if isinstance(model, nnx.GraphDef):

        def nnx_apply(state: PyTree, x: jax.Array) -> jax.Array:
            return nnx.merge(model, state)(x)

        return nnx_apply
    if isinstance(model, nnx.Module):
        raise _validate.ValidationError(
            "model is a stateful nnx.Module: split it first, graphdef, state = nnx.split(model), "
            "then pass as_apply(graphdef) and params=state")
    if callable(model):
        return cast(Callable[[PyTree, jax.Array], jax.Array], model)
    raise _validate.ValidationError(
        f"model must be a flax linen Module, an nnx GraphDef or a function f(params, x); got "
        f"{type(model).__name__}")


def tree_clip(tree: PyTree, radius: float | jax.Array) -> PyTree:
    """Scale ``tree`` onto the ball ``||tree||_2 <= radius`` (all leaves as one vector).

    The target radius is shrunk by ``16`` units of the leaves' rounding so that the computed
    norm of the result never exceeds ``radius``; inside the ball the tree is unchanged.
    """
    import jax.numpy as jnp

    leaves = jax.tree.leaves(tree)
    dt = jnp.result_type(*leaves)
    r = jnp.asarray(radius, dt) * (1.0 - 16.0 * jnp.finfo(dt).eps)
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in leaves))
    scale = jnp.where(norm > r, r / jnp.maximum(norm, jnp.finfo(dt).tiny), 1.0)
    return jax.tree.map(lambda x: (x * scale).astype(x.dtype), tree)


def leaf_norms(tree: PyTree) -> PyTree:
    """The Euclidean norm of every leaf of ``tree`` (a pytree of scalars, same structure)."""
    import jax.numpy as jnp

    return jax.tree.map(lambda x: jnp.sqrt(jnp.sum(jnp.square(x))), tree)


def tree_rescale(tree: PyTree, norms: PyTree) -> PyTree:
    """Rescale every leaf of ``tree`` to the norm in the matching leaf of ``norms``.

    A leaf whose target norm is ``0`` (a bias of a fresh initialisation) becomes zeros; a leaf
    that is zero keeps its zeros. With ``norms = leaf_norms(init_fn(public_key))`` this maps
    a model onto the per-layer scale of a fresh initialisation without looking at any data
    (the post-processing of :func:`certun.unlearners.noisy_finetuning`'s ``post_rescale``).

    Args:
      tree: the parameters.
      norms: a pytree of the same structure with a nonnegative scalar per leaf.

    Returns:
      The rescaled parameters (leaf dtypes kept).
    """
    import jax.numpy as jnp

    def one(x: jax.Array, r: jax.Array) -> jax.Array:
        nx = jnp.sqrt(jnp.sum(jnp.square(x)))
        tiny = jnp.finfo(x.dtype).tiny
        return (x * (jnp.asarray(r, x.dtype) / jnp.maximum(nx, tiny))).astype(x.dtype)

    return jax.tree.map(one, tree, norms)
