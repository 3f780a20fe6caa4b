r"""L2-regularised linear models with a scalar-link loss: logistic (binary, one-vs-rest) and ridge.

Parameters are a ``(d, K)`` matrix ``W`` with one column ("head") per output:
``K = 1`` for binary logistic regression and ridge, ``K`` = number of classes
for one-vs-rest (OvR) logistic regression. Targets are an ``(n, K)`` matrix
``Y`` (``+-1`` for logistic heads, real values for ridge). A row mask ``mask``
(1 = present, 0 = removed) lets every function act on the remaining data
without copying it, with fixed shapes under ``jit``.

Objective (certun's public, *mean* scale; see :mod:`certun.scale`):

.. math::

    J(W) = \frac{1}{n}\sum_{i}\sum_{k} \ell(x_i^\top w_k, y_{ik})
           + \frac{\lambda}{2}\|W\|_F^2 + \frac{\langle b, W\rangle}{n},
    \qquad n = \sum_i \mathrm{mask}_i .

Its sum-scale counterpart ``L_b = n J`` has gradient and Hessian (per head)

.. math::

    \nabla L_b = X^\top (\mathrm{mask} \odot \ell'(XW, Y)) + \lambda n W + b, \qquad
    \nabla^2_{w_k} L_b = X^\top \mathrm{diag}(\mathrm{mask} \odot \ell''(X w_k)) X + \lambda n I .

Heads are independent (the Hessian is block diagonal), which is how Guo et
al.'s OvR model is trained and unlearned.

Loss constants used by the certified bounds (with ``||x_i||_2 <= 1``):

============  ==============  ===============  ==================================
loss          sup |l'|        sup l''          Lipschitz const. of l'' (gamma)
============  ==============  ===============  ==================================
logistic      1               1/4              1/(6 sqrt 3) ~ 0.0962 (Guo: 1/4)
squared       unbounded       1                0 (the Newton step is exact)
============  ==============  ===============  ==================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun.models.fit import FitResult, lbfgs_minimize, newton_minimize

__all__ = [
    "ScalarLoss",
    "LOGISTIC",
    "SQUARED",
    "get_loss",
    "margins",
    "objective",
    "gradient_sum",
    "gradient_mean",
    "curvature_weights",
    "curvature_gram",
    "hessian_sum",
    "hvp_sum",
    "fit",
    "predict",
    "accuracy",
    "one_vs_rest_targets",
]

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


class ScalarLoss(NamedTuple):
    """A loss ``l(a, y)`` of the margin ``a = x^T w`` and its derivatives in ``a``.

    Attributes:
      name: ``"logistic"`` or ``"squared"``.
      value: ``l(a, y)``.
      d1: ``l'(a, y)``.
      d2: ``l''(a, y)``.
      d1_bound: ``sup |l'|`` (``None`` if unbounded). With ``||x|| <= 1`` it bounds
        the per-example gradient norm (Guo et al.'s ``C``).
      d2_bound: ``sup l''``.
      gamma: the exact Lipschitz constant of ``l''`` (``sup |l'''|``).
      gamma_paper: the constant Guo et al. 2020 use (``1/4`` for logistic).
    """

    name: str
    value: Callable[[Array, Array], Array]
    d1: Callable[[Array, Array], Array]
    d2: Callable[[Array, Array], Array]
    d1_bound: float | None
    d2_bound: float
    gamma: float
    gamma_paper: float


def _logistic_d1(a: Array, y: Array) -> Array:
    return -y * jax.nn.sigmoid(-y * a)


def _logistic_d2(a: Array, y: Array) -> Array:
    del y
    return jax.nn.sigmoid(a) * jax.nn.sigmoid(-a)


#: Logistic loss log(1 + exp(-y a)) with labels in {-1, +1}: |l'| <= 1, l'' <= 1/4, l'' is
#: 1/(6 sqrt 3)-Lipschitz (Guo et al. use 1/4).
LOGISTIC = ScalarLoss(
    name="logistic",
    value=lambda a, y: jnp.logaddexp(0.0, -y * a),
    d1=_logistic_d1,
    d2=_logistic_d2,
    d1_bound=1.0,
    d2_bound=0.25,
    gamma=1.0 / (6.0 * math.sqrt(3.0)),
    gamma_paper=0.25,
)

#: Squared loss (a - y)^2 / 2 (ridge): l'' = 1, so the Newton step is exact (gamma = 0).
SQUARED = ScalarLoss(
    name="squared",
    value=lambda a, y: 0.5 * (a - y) ** 2,
    d1=lambda a, y: a - y,
    d2=lambda a, y: jnp.ones_like(a),
    d1_bound=None,
    d2_bound=1.0,
    gamma=0.0,
    gamma_paper=0.0,
)

_LOSSES = {"logistic": LOGISTIC, "squared": SQUARED}


def get_loss(name: str | ScalarLoss) -> ScalarLoss:
    """Look up a :class:`ScalarLoss` by name (``"logistic"`` or ``"squared"``)."""
    if isinstance(name, ScalarLoss):
        return name
    if name not in _LOSSES:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {name!r}")
    return _LOSSES[name]


def _mask(mask: Array | None, X: Array) -> Array:
    return jnp.ones(X.shape[0], X.dtype) if mask is None else jnp.asarray(mask, X.dtype)


def margins(W: Array, X: Array) -> Array:
    """``X @ W``: the ``(n, K)`` margins."""
    return X @ W


def objective(loss: ScalarLoss, W: Array, X: Array, Y: Array, lam: float,
              b: Array | None = None, mask: Array | None = None) -> Array:
    """Mean-scale objective ``J(W)`` on the rows with ``mask = 1`` (see module docstring)."""
    m = _mask(mask, X)
    n = jnp.sum(m)
    data = jnp.sum(m[:, None] * loss.value(X @ W, Y)) / n
    reg = 0.5 * lam * jnp.sum(W * W)
    pert = 0.0 if b is None else jnp.sum(b * W) / n
    return data + reg + pert


def gradient_sum(loss: ScalarLoss, W: Array, X: Array, Y: Array, lam: float,
                 b: Array | None = None, mask: Array | None = None) -> Array:
    """Sum-scale gradient ``X^T (mask * l'(XW, Y)) + lam n W + b`` (shape ``(d, K)``)."""
    m = _mask(mask, X)
    n = jnp.sum(m)
    # written as a contraction over rows, not ``X.T @ u``: XLA:CPU copies the transpose
    # (../PERFORMANCE.md), which made this 4-7x slower than jax.grad
    g = jnp.einsum("ik,ij->jk", m[:, None] * loss.d1(X @ W, Y), X) + lam * n * W
    return g if b is None else g + b


def gradient_mean(loss: ScalarLoss, W: Array, X: Array, Y: Array, lam: float,
                  b: Array | None = None, mask: Array | None = None) -> Array:
    """Mean-scale gradient ``grad J = gradient_sum / n``."""
    n = jnp.sum(_mask(mask, X))
    return gradient_sum(loss, W, X, Y, lam, b, mask) / n


def curvature_weights(loss: ScalarLoss, W: Array, X: Array, Y: Array,
                      mask: Array | None = None) -> Array:
    """``mask * l''(XW, Y)``: the ``(n, K)`` diagonal curvature weights."""
    return _mask(mask, X)[:, None] * loss.d2(X @ W, Y)


def curvature_gram(loss: ScalarLoss, W: Array, X: Array, Y: Array,
                   mask: Array | None = None) -> Array:
    """``X^T diag(mask * l''(X w_k)) X`` per head: shape ``(K, d, d)`` (no regulariser).

    For ``X`` of ``2^26`` entries or more it is accumulated over row blocks
    (:func:`certun.primitives.row_blocks.weighted_gram`: no ``diag(l'') X`` temporary).
    """
    D = curvature_weights(loss, W, X, Y, mask)
    if X.shape[0] * X.shape[1] >= 1 << 26:
        from certun.primitives.row_blocks import weighted_gram

        return weighted_gram(X, D)
    return jnp.einsum("ik,ij,il->kjl", D, X, X)


def hessian_sum(loss: ScalarLoss, W: Array, X: Array, Y: Array, lam: float,
                mask: Array | None = None) -> Array:
    """Sum-scale Hessian blocks ``X^T diag(l'') X + lam n I``: shape ``(K, d, d)``."""
    n = jnp.sum(_mask(mask, X))
    G = curvature_gram(loss, W, X, Y, mask)
    return G + lam * n * jnp.eye(X.shape[1], dtype=X.dtype)[None]


def hvp_sum(loss: ScalarLoss, W: Array, V: Array, X: Array, Y: Array, lam: float,
            mask: Array | None = None) -> Array:
    """Sum-scale Hessian-vector product (blockwise): ``X^T (D * (X V)) + lam n V``.

    Costs two passes over ``X`` (no ``d x d`` matrix); written with ``X.T @ u``
    replaced by ``u @ X``-style contractions where it matters for XLA:CPU.
    """
    m = _mask(mask, X)
    n = jnp.sum(m)
    D = curvature_weights(loss, W, X, Y, m)
    return jnp.einsum("ik,ij->jk", D * (X @ V), X) + lam * n * V


def fit(loss: ScalarLoss | str, X: ArrayLike, Y: ArrayLike, lam: float, b: Array | None = None,
        mask: Array | None = None, W0: Array | None = None, *, method: str = "newton",
        tol: float = 1e-10, max_steps: int | None = None) -> FitResult:
    """Minimise the mean-scale objective ``J`` to ``||grad J||_2 <= tol``.

    Args:
      loss: ``"logistic"``, ``"squared"`` or a :class:`ScalarLoss`.
      X: ``(n, d)`` features.
      Y: ``(n, K)`` targets.
      lam: L2 regularisation (mean scale), > 0.
      b: optional ``(d, K)`` objective perturbation (Guo et al.), entering as ``<b, W>/n``.
      mask: optional row mask (1 present, 0 removed).
      W0: starting point (zeros if None): "retraining from scratch" starts at zero.
      method: ``"newton"`` (dense ``d x d`` Cholesky per head, quadratic
        convergence) or ``"lbfgs"`` (optax, matrix-free).
      tol: tolerance on the **mean-scale** gradient norm (Frobenius over heads).
      max_steps: iteration cap (default 100 for Newton, 5000 for L-BFGS).

    Returns:
      A :class:`~certun.models.fit.FitResult` whose ``grad_norm`` is mean scale.
    """
    loss = get_loss(loss)
    X = jnp.asarray(X)
    Y = jnp.asarray(Y, X.dtype)
    if Y.ndim == 1:
        Y = Y[:, None]
    K = Y.shape[1]
    W0 = jnp.zeros((X.shape[1], K), X.dtype) if W0 is None else jnp.asarray(W0, X.dtype)
    fun = lambda W: objective(loss, W, X, Y, lam, b, mask)  # noqa: E731
    if method == "newton":
        def grad(W: Array) -> Array:
            return gradient_mean(loss, W, X, Y, lam, b, mask)

        def newton_dir(W: Array, g: Array) -> Array:
            n = jnp.sum(_mask(mask, X))
            H = hessian_sum(loss, W, X, Y, lam, mask) / n
            L = jnp.linalg.cholesky(H)
            sol = jax.vmap(lambda Lk, gk: jax.scipy.linalg.cho_solve((Lk, True), gk))(L, g.T)
            return -sol.T

        return newton_minimize(fun, grad, newton_dir, W0, tol=tol, max_steps=max_steps or 100)
    if method == "lbfgs":
        return lbfgs_minimize(fun, W0, tol=tol, max_steps=max_steps or 5000)
    raise ValueError(f"method must be 'newton' or 'lbfgs', got {method!r}")


def predict(loss: ScalarLoss | str, W: ArrayLike, X: ArrayLike) -> Array:
    """Predictions: ``+-1`` (binary logistic), class ids (OvR, ``K > 1``) or values (ridge).

    ``W`` is ``(d, K)`` or, for one head, ``(d,)`` (the form unlearners publish).
    """
    loss = get_loss(loss)
    W = jnp.asarray(W)
    A = jnp.asarray(X) @ (W[:, None] if W.ndim == 1 else W)
    if loss.name == "squared":
        return A[:, 0] if A.shape[1] == 1 else A
    if A.shape[1] == 1:
        return jnp.where(A[:, 0] >= 0, 1.0, -1.0)
    return jnp.argmax(A, axis=1)


def accuracy(loss: ScalarLoss | str, W: ArrayLike, X: ArrayLike, y: ArrayLike) -> float:
    """Classification accuracy of a logistic model (binary ``+-1`` labels or class ids)."""
    return float(np.mean(np.asarray(predict(loss, W, X)) == np.asarray(y)))


def one_vs_rest_targets(y: Array, num_classes: int) -> Array:
    """Class ids ``(n,)`` to OvR targets ``(n, K)`` in ``{-1, +1}``."""
    y = jnp.asarray(y)
    return jnp.where(y[:, None] == jnp.arange(num_classes)[None, :], 1.0, -1.0)
