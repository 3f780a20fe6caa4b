r"""L2-regularised multinomial (softmax) logistic regression.

Parameters ``W`` of shape ``(d, K)``, labels ``y`` in ``{0, ..., K-1}``.
Mean-scale objective (certun's public scale):

.. math::

    J(W) = \frac1n \sum_i \Big(\operatorname{lse}(W^\top x_i) - w_{y_i}^\top x_i\Big)
           + \frac{\lambda}{2}\|W\|_F^2 + \frac{\langle b, W\rangle}{n}.

Gradient ``X^T (P - E_y)/n + lam W + b/n`` with ``P = softmax(XW)``; the
Hessian-vector product is ``X^T (P * (XV) - P * rowsum(P * XV)) / n + lam V``.
This matches scikit-learn's ``LogisticRegression(C=1/(n lam),
fit_intercept=False)`` with the (default) multinomial loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from certun.models.fit import FitResult, lbfgs_minimize, newton_minimize

__all__ = ["objective", "gradient_mean", "hvp_mean", "hessian_mean", "fit", "predict", "accuracy"]

Array = jax.Array


def _mask(mask: Array | None, X: Array) -> Array:
    return jnp.ones(X.shape[0], X.dtype) if mask is None else jnp.asarray(mask, X.dtype)


def objective(W: Array, X: Array, y: Array, lam: float, b: Array | None = None,
              mask: Array | None = None) -> Array:
    """Mean-scale multinomial objective on rows with ``mask = 1``."""
    m = _mask(mask, X)
    n = jnp.sum(m)
    A = X @ W
    nll = jax.nn.logsumexp(A, axis=1) - jnp.take_along_axis(A, y[:, None], axis=1)[:, 0]
    out = jnp.sum(m * nll) / n + 0.5 * lam * jnp.sum(W * W)
    return out if b is None else out + jnp.sum(b * W) / n


def gradient_mean(W: Array, X: Array, y: Array, lam: float, b: Array | None = None,
                  mask: Array | None = None) -> Array:
    """Mean-scale gradient ``X^T (mask * (P - E_y)) / n + lam W + b / n``."""
    m = _mask(mask, X)
    n = jnp.sum(m)
    P = jax.nn.softmax(X @ W, axis=1)
    E = jax.nn.one_hot(y, W.shape[1], dtype=X.dtype)
    g = jnp.einsum("ik,ij->jk", m[:, None] * (P - E), X) / n + lam * W
    return g if b is None else g + b / n


def hvp_mean(W: Array, V: Array, X: Array, lam: float, mask: Array | None = None) -> Array:
    """Mean-scale Hessian-vector product (the Hessian does not depend on ``y`` or ``b``)."""
    m = _mask(mask, X)
    n = jnp.sum(m)
    P = jax.nn.softmax(X @ W, axis=1)
    U = X @ V
    PU = P * U
    inner = PU - P * jnp.sum(PU, axis=1, keepdims=True)
    return jnp.einsum("ik,ij->jk", m[:, None] * inner, X) / n + lam * V


def hessian_mean(W: Array, X: Array, lam: float, mask: Array | None = None) -> Array:
    """Dense mean-scale Hessian over ``vec(W)`` (row-major ``(d, K)`` flattening): ``(dK, dK)``."""
    m = _mask(mask, X)
    n = jnp.sum(m)
    d, K = W.shape
    P = jax.nn.softmax(X @ W, axis=1)
    S = jax.vmap(lambda p: jnp.diag(p) - jnp.outer(p, p))(P)  # (n, K, K)
    H = jnp.einsum("i,ij,il,ikm->jklm", m, X, X, S) / n
    return H.reshape(d * K, d * K) + lam * jnp.eye(d * K, dtype=X.dtype)


def fit(X: Array, y: Array, num_classes: int, lam: float, b: Array | None = None,
        mask: Array | None = None, W0: Array | None = None, *, method: str = "newton",
        tol: float = 1e-10, max_steps: int | None = None) -> FitResult:
    """Train to ``||grad J||_2 <= tol`` (mean scale) by Newton (dense) or L-BFGS.

    Args:
      X: ``(n, d)`` features.
      y: ``(n,)`` integer labels.
      num_classes: ``K``.
      lam: L2 regularisation (mean scale), > 0.
      b: optional ``(d, K)`` objective perturbation.
      mask: optional row mask.
      W0: starting point (zeros if None).
      method: ``"newton"`` (dense ``dK x dK`` Hessian; small models) or ``"lbfgs"``.
      tol: mean-scale gradient-norm tolerance.
      max_steps: iteration cap.
    """
    X = jnp.asarray(X)
    y = jnp.asarray(y, jnp.int32)
    d = X.shape[1]
    W0 = jnp.zeros((d, num_classes), X.dtype) if W0 is None else jnp.asarray(W0, X.dtype)
    fun = lambda W: objective(W, X, y, lam, b, mask)  # noqa: E731
    if method == "newton":
        def newton_dir(W: Array, g: Array) -> Array:
            H = hessian_mean(W, X, lam, mask)
            L = jnp.linalg.cholesky(H)
            return -jax.scipy.linalg.cho_solve((L, True), g.reshape(-1)).reshape(W.shape)

        grad = lambda W: gradient_mean(W, X, y, lam, b, mask)  # noqa: E731
        return newton_minimize(fun, grad, newton_dir, W0, tol=tol, max_steps=max_steps or 100)
    if method == "lbfgs":
        return lbfgs_minimize(fun, W0, tol=tol, max_steps=max_steps or 5000)
    raise ValueError(f"method must be 'newton' or 'lbfgs', got {method!r}")


def predict(W: Array, X: Array) -> Array:
    """Predicted class ids."""
    return jnp.argmax(jnp.asarray(X) @ W, axis=1)


def accuracy(W: Array, X: Array, y: Array) -> float:
    """Classification accuracy."""
    return float(np.mean(np.asarray(predict(W, X)) == np.asarray(y)))
