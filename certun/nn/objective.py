r"""Training objectives of a :class:`~certun.nn.models.Network` on certun's mean scale.

.. math::
    F(w; D) = \frac{1}{|D|}\sum_{i\in D} \ell(f_w(x_i), y_i) + \frac{\kappa}{2}\lVert w\rVert_2^2

with :math:`\ell` the softmax cross-entropy and :math:`\kappa` = ``weight_decay`` (the
coupled L2 weight decay of PyTorch's ``Adam(weight_decay=...)``, which Zhang et al. train
with; its gradient is :math:`\kappa w` and its Hessian :math:`\kappa I`). Subsets are
selected with a 0/1 ``mask`` over the rows, so that the retained objective
:math:`F(\cdot; D_r)` of every request has the same array shapes (one compilation).

* :func:`objective` -- :math:`F(w; D_{\rm mask})`, full batch.
* :func:`minibatch_objective` -- a stochastic objective ``f(key, w)`` whose batch of
  ``batch_size`` rows is drawn uniformly **with replacement** from the masked rows, so
  that :math:`\mathbb E\,\nabla^2 f(key, w) = \nabla^2 F(w)` (LiSSA's sampled Hessians,
  as in Zhang et al.'s code, docs/bibliography.md §4.3).
* :func:`gauss_newton_parts` -- ``(model_fn, loss_fn)`` for
  :func:`certun.primitives.ggn_operator`: the Gauss-Newton matrix of the data term.

Deviation from the authors' code kept out: their Hessian-vector products use an
**unsquared** regulariser ``(lam + gamma) * sum_p ||p||_2`` (a sum of per-tensor norms, whose
Hessian is not a multiple of the identity); certun uses the paper's
:math:`\frac{\kappa}{2}\lVert w\rVert^2` in training and in the Newton matrix, and the local
convex approximation adds :math:`\lambda I` exactly (docs/bibliography.md §4.3, quirk 1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from certun._tree import tree_vdot
from certun.nn.models import Network

__all__ = [
    "cross_entropy",
    "objective",
    "minibatch_objective",
    "gauss_newton_parts",
    "accuracy",
    "sample_retained",
    "retained_sampler",
]

PyTree = Any


def cross_entropy(logits: jax.Array, y: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Weighted mean softmax cross-entropy ``sum_i w_i l_i / sum_i w_i`` (plain mean if None)."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    if weights is None:
        return jnp.mean(losses)
    weights = weights.astype(losses.dtype)
    return jnp.sum(weights * losses) / jnp.maximum(jnp.sum(weights), 1.0)


@functools.lru_cache(maxsize=128)
def objective(net: Network, weight_decay: float) -> Callable[..., jax.Array]:
    """``F(params, X, y, mask=None)``: mean cross-entropy over masked rows + ``(kappa/2)||w||^2``.

    Cached per ``(net, weight_decay)``: the same function object comes back, so jitted
    callers that take it as a static argument compile once.

    Args:
      net: the network.
      weight_decay: ``kappa >= 0``.

    Returns:
      The scalar objective, differentiable in ``params`` (use with
      :func:`certun.primitives.hvp`, ``hessian_operator``, ``jax.grad``).
    """

    def F(params: PyTree, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        return cross_entropy(net.apply(params, X), y, mask) + 0.5 * weight_decay * tree_vdot(
            params, params)

    return F


def sample_retained(key: jax.Array, mask: jax.Array, batch_size: int) -> jax.Array:
    """``batch_size`` row indices drawn uniformly with replacement among rows with ``mask > 0``.

    Costs ``O(n)`` to list the retained rows and ``O(batch_size)`` to draw; a caller drawing
    many batches from one mask should use :func:`retained_sampler` (lists them once).
    """
    return retained_sampler(mask, batch_size)(key)


def retained_sampler(mask: jax.Array, batch_size: int) -> Callable[[jax.Array], jax.Array]:
    """``key -> indices``: uniform draws with replacement among the rows with ``mask > 0``.

    The retained rows are listed once (``jnp.nonzero`` with a static size); each draw is
    ``batch_size`` uniform integers in ``[0, n_r)`` mapped through that list.
    """
    n = mask.shape[0]
    rows = jnp.nonzero(mask > 0, size=n, fill_value=0)[0]
    count = jnp.sum(mask > 0)

    def draw(key: jax.Array) -> jax.Array:
        return rows[jax.random.randint(key, (batch_size,), 0, count)]

    return draw


def minibatch_objective(net: Network, weight_decay: float, X: jax.Array, y: jax.Array,
                        mask: jax.Array, batch_size: int
                        ) -> Callable[[jax.Array, PyTree], jax.Array]:
    """A stochastic objective ``f(key, params)`` on ``batch_size`` rows drawn with replacement.

    ``E_key[f(key, w)] = F(w; D_mask)`` and likewise for its gradient and Hessian (uniform
    sampling with replacement among the masked rows). It is the ``sample_f`` of
    :func:`certun.primitives.hessian_operator` for LiSSA.
    """
    draw = retained_sampler(mask, batch_size)

    def f(key: jax.Array, params: PyTree) -> jax.Array:
        idx = draw(key)
        return cross_entropy(net.apply(params, X[idx]), y[idx]) + 0.5 * weight_decay * tree_vdot(
            params, params)

    return f


def gauss_newton_parts(net: Network, mask: jax.Array) -> tuple[Callable, Callable]:
    """``(model_fn, loss_fn)`` whose Gauss-Newton matrix is that of the masked cross-entropy.

    ``ggn_operator(model_fn, loss_fn, params, X, y)`` then gives ``J^T H_out J`` of the
    data term (PSD: cross-entropy is convex in the logits); add ``weight_decay + lam`` as
    damping for the Newton matrix.
    """

    def loss_fn(logits: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(logits, y, mask)

    return net.apply, loss_fn


def accuracy(net: Network, params: PyTree, X: jax.Array, y: jax.Array) -> float:
    """Fraction of rows whose arg-max logit equals the label (1.0 for an empty set)."""
    if X.shape[0] == 0:
        return 1.0
    pred = jnp.argmax(net.apply(params, X), axis=-1)
    return float(jnp.mean(pred == y))
