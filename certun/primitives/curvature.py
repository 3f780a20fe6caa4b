"""Curvature primitives over arbitrary pytrees: HVPs, Gauss-Newton products, per-example gradients.

Notation: ``f(params, *args)`` is a scalar objective, ``H = d^2 f / d params^2``
its Hessian at ``params`` and ``v`` a pytree with the structure of ``params``.

* :func:`hvp` computes ``H v`` exactly by forward-over-reverse differentiation
  (Pearlmutter 1994; the JAX autodiff cookbook's ``jvp`` of ``grad``), at about
  1.2-1.6 gradients' cost and no Hessian in memory.
* :func:`ggn_vp` computes the generalised Gauss-Newton product ``J^T H_out J v``
  for objectives of the form ``loss(model(params, x), y)``; it is positive
  semi-definite whenever the loss is convex in the model output.
* :func:`hessian_operator` / :func:`ggn_operator` return a :class:`LinearOperator`
  whose matrix-vector product re-uses one linearisation (``jax.linearize``), so
  solvers that apply it many times do not redo the forward pass.
* :func:`dense_hessian` and :func:`dense_matrix` build the full ``d x d`` matrix
  for small models: the exact oracle tests compare against.

References:
  B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural
  Computation 1994. N. N. Schraudolph, "Fast curvature matrix-vector products
  for second-order gradient descent", Neural Computation 2002 (Gauss-Newton).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from certun._tree import ravel, tree_axpy

__all__ = [
    "LinearOperator",
    "hvp",
    "ggn_vp",
    "hessian_operator",
    "ggn_operator",
    "per_example_grads",
    "dense_hessian",
    "dense_matrix",
    "damped",
]

PyTree = Any


class LinearOperator(NamedTuple):
    """A symmetric linear operator on a pytree space.

    Attributes:
      mv: ``v -> A v`` (pytree to pytree, same structure as ``structure``).
      structure: a pytree of ``jax.ShapeDtypeStruct`` describing the vectors.
      sample_mv: optional ``(key, v) -> A_hat v``, an unbiased stochastic estimate
        (e.g. a mini-batch HVP sampled with replacement), used by LiSSA.
    """

    mv: Callable[[PyTree], PyTree]
    structure: PyTree
    sample_mv: Callable[[jax.Array, PyTree], PyTree] | None = None


def _structure(params: PyTree) -> PyTree:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), params)


def hvp(f: Callable[..., jax.Array], params: PyTree, v: PyTree, *args: Any) -> PyTree:
    r"""Hessian-vector product ``H v`` of ``f(params, *args)`` by forward-over-reverse AD.

    .. math:: H v = \frac{d}{dr} \nabla f(\theta + r v) \Big|_{r=0}

    Args:
      f: scalar function ``f(params, *args)``.
      params: the point ``theta`` (any pytree of float arrays).
      v: the direction, same structure as ``params``.
      *args: extra arguments forwarded to ``f`` (data, labels, ...), not differentiated.

    Returns:
      ``H v`` with the structure of ``params``.
    """
    return jax.jvp(lambda p: jax.grad(f)(p, *args), (params,), (v,))[1]


def ggn_vp(model_fn: Callable[..., Any], loss_fn: Callable[..., jax.Array], params: PyTree,
           v: PyTree, x: Any, y: Any) -> PyTree:
    """Generalised Gauss-Newton product ``J^T H_out J v``.

    For an objective ``F(params) = loss_fn(model_fn(params, x), y)`` with model
    outputs ``o = model_fn(params, x)``, ``J = d o / d params`` and
    ``H_out = d^2 loss_fn / d o^2``. The GGN equals the Hessian minus the
    term that involves the model's second derivatives, and is PSD when
    ``loss_fn`` is convex in ``o``.

    Args:
      model_fn: ``model_fn(params, x) -> outputs`` (any pytree of arrays).
      loss_fn: ``loss_fn(outputs, y) -> scalar`` (e.g. mean cross-entropy).
      params: the linearisation point.
      v: direction, same structure as ``params``.
      x: inputs passed to ``model_fn`` (held fixed, not differentiated).
      y: targets passed to ``loss_fn`` (held fixed, not differentiated).

    Returns:
      ``J^T H_out J v`` with the structure of ``params``.
    """
    out, jv = jax.jvp(lambda p: model_fn(p, x), (params,), (v,))
    hjv = jax.jvp(jax.grad(lambda o: loss_fn(o, y)), (out,), (jv,))[1]
    _, vjp = jax.vjp(lambda p: model_fn(p, x), params)
    return vjp(hjv)[0]


def damped(op: LinearOperator, damping: float | jax.Array) -> LinearOperator:
    """The operator ``A + damping * I`` (also applied to ``sample_mv``)."""
    mv = lambda v: tree_axpy(damping, v, op.mv(v))  # noqa: E731
    smv = None
    sample = op.sample_mv
    if sample is not None:
        smv = lambda k, v: tree_axpy(damping, v, sample(k, v))  # noqa: E731
    return LinearOperator(mv, op.structure, smv)


def hessian_operator(f: Callable[..., jax.Array], params: PyTree, *args: Any,
                     sample_f: Callable[[jax.Array, PyTree], jax.Array] | None = None,
                     damping: float = 0.0) -> LinearOperator:
    """The Hessian of ``f(params, *args)`` at ``params`` as a :class:`LinearOperator`.

    The gradient is linearised once (``jax.linearize``), so each ``mv`` costs one
    tangent pass, not a fresh forward-over-reverse trace.

    Args:
      f: scalar objective ``f(params, *args)``.
      params: the point at which the Hessian is taken.
      *args: data forwarded to ``f``.
      sample_f: optional ``sample_f(key, params) -> scalar``, a stochastic
        objective (e.g. a mini-batch drawn with replacement using ``key``) whose
        expected Hessian is the Hessian of ``f``; provides ``sample_mv`` for LiSSA.
      damping: adds ``damping * I``.

    Returns:
      The operator ``v -> (H + damping I) v``.
    """
    _, lin = jax.linearize(lambda p: jax.grad(f)(p, *args), params)
    op = LinearOperator(lin, _structure(params), None)
    if sample_f is not None:
        def smv(key: jax.Array, v: PyTree) -> PyTree:
            return jax.jvp(lambda p: jax.grad(sample_f, argnums=1)(key, p), (params,), (v,))[1]

        op = op._replace(sample_mv=smv)
    return damped(op, damping) if damping else op


def ggn_operator(model_fn: Callable[..., Any], loss_fn: Callable[..., jax.Array], params: PyTree,
                 x: Any, y: Any, damping: float = 0.0) -> LinearOperator:
    """The Gauss-Newton matrix of ``loss_fn(model_fn(params, x), y)`` as an operator.

    The model Jacobian is linearised once (``jax.linearize`` for ``J v`` and one
    ``jax.vjp`` for ``J^T u``), so repeated products re-use the forward pass.

    Args:
      model_fn: ``model_fn(params, x) -> outputs`` (any pytree of arrays).
      loss_fn: ``loss_fn(outputs, y) -> scalar`` (e.g. mean cross-entropy); the operator
        is PSD when it is convex in the outputs.
      params: the linearisation point (any pytree of float arrays).
      x: inputs passed to ``model_fn`` (held fixed).
      y: targets passed to ``loss_fn`` (held fixed).
      damping: adds ``damping * I``.

    Returns:
      The operator ``v -> (J^T H_out J + damping I) v`` (PSD for convex losses).
    """
    out, jvp_lin = jax.linearize(lambda p: model_fn(p, x), params)
    _, vjp = jax.vjp(lambda p: model_fn(p, x), params)
    grad_out = jax.grad(lambda o: loss_fn(o, y))

    def mv(v: PyTree) -> PyTree:
        jv = jvp_lin(v)
        hjv = jax.jvp(grad_out, (out,), (jv,))[1]
        return vjp(hjv)[0]

    op = LinearOperator(mv, _structure(params), None)
    return damped(op, damping) if damping else op


def per_example_grads(loss_fn: Callable[..., jax.Array], params: PyTree, x: Any, y: Any) -> PyTree:
    """Gradients of ``loss_fn(params, x_i, y_i)`` for every example, by ``vmap``.

    Args:
      loss_fn: loss of a *single* example, ``loss_fn(params, x_i, y_i) -> scalar``.
      params: parameters (pytree).
      x: batched inputs; the leading axis indexes the ``n`` examples.
      y: batched targets, the same leading axis ``n``.

    Returns:
      A pytree like ``params`` whose leaves have an extra leading axis of size ``n``.
    """
    return jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0))(params, x, y)


def dense_matrix(op: LinearOperator) -> jax.Array:
    """Materialise an operator as a dense ``d x d`` matrix over the flattened pytree.

    Column ``j`` is ``A e_j``; only for small ``d`` (it costs ``d`` products).
    """
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), op.structure)
    flat0, unravel = ravel(zeros)
    eye = jnp.eye(flat0.size, dtype=flat0.dtype)
    cols = jax.jit(jax.vmap(lambda e: ravel(op.mv(unravel(e)))[0]))(eye)  # one program
    return cols.T


def dense_hessian(f: Callable[..., jax.Array], params: PyTree, *args: Any) -> jax.Array:
    """The exact Hessian of ``f(params, *args)`` as a dense matrix over the flattened pytree.

    The test oracle for every implicit product and solver; only for small models.
    The flattening order is that of ``jax.flatten_util.ravel_pytree(params)``.
    """
    flat, unravel = ravel(params)
    # One compiled program: the unjitted jax.hessian would dispatch (and compile) each of its
    # hundreds of primitives separately, which costs seconds even for a 50-parameter model.
    return jax.jit(jax.hessian(lambda z: f(unravel(z), *args)))(flat)
