r"""Sparsity-aware unlearning (Jia et al., NeurIPS 2023), convex analogue, and their metrics.

Jia, Liu, Ram, Yao, Liu, Liu, Sharma, Liu, "Model Sparsity Can Simplify Machine Unlearning"
(NeurIPS 2023) prune first (one-shot magnitude pruning), then unlearn approximately
(fine-tuning, gradient ascent, influence/Newton steps), and propose **l1-sparse unlearning**
(fine-tuning with an l1 penalty). Their metrics, relative to retraining:

* **UA** (unlearning accuracy) ``1 - Acc(D_f)``; **RA** ``Acc(D_r)``; **TA** ``Acc(D_t)``;
* **MIA-efficacy**: the share of ``D_f`` a membership predictor calls non-member; the
  predictor is ``SVC(C=3, gamma="auto", rbf)`` on the true-class confidence, trained on the
  first ``|D_t|`` retained rows (members) vs ``D_t`` (non-members) (:func:`mia_efficacy`).

Here the model is a one-vs-rest L2-logistic regression (convex: certun's home ground), the
pruning mask is per weight, and every method acts inside the mask. This is a convex
analogue, not the paper's ResNet-18 / CIFAR-10 setting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from certun import _validate

__all__ = ["magnitude_mask", "fit_masked", "finetune", "gradient_ascent", "newton_step",
           "accuracy", "mia_efficacy", "jia_metrics"]


def _targets(y: np.ndarray, K: int) -> np.ndarray:
    return np.where(np.arange(K)[None, :] == np.asarray(y)[:, None], 1.0, -1.0)


def _grad(W, X, Y, lam):
    s = 1.0 / (1.0 + np.exp(Y * (X @ W)))
    return X.T @ (-Y * s) / X.shape[0] + lam * W


def magnitude_mask(W: Any, sparsity: float) -> np.ndarray:
    """One-shot global magnitude pruning: 0 for the ``sparsity`` share of smallest ``|W|``."""
    Wn = _validate.finite_array(W=W, ndim=2)
    s = _validate.in_range(0.0, 1.0, sparsity=sparsity, inclusive=True)
    k = int(round(s * Wn.size))
    M = np.ones_like(Wn)
    if k:
        M.reshape(-1)[np.argsort(np.abs(Wn).reshape(-1), kind="stable")[:k]] = 0.0
    return M


def fit_masked(X: Any, y: Any, K: int, lam: float, mask: Any | None = None, *,
               iters: int = 30) -> np.ndarray:
    """Minimise ``mean l + (lam/2)||W||^2`` over weights inside ``mask`` (Newton per head)."""
    Xn = np.asarray(X, np.float64)
    Y = _targets(y, K)
    d = Xn.shape[1]
    M = np.ones((d, K)) if mask is None else np.asarray(mask, np.float64)
    W = np.zeros((d, K))
    for k in range(K):
        a = np.flatnonzero(M[:, k])
        if a.size == 0:
            continue
        Xa, w = Xn[:, a], np.zeros(a.size)
        for _ in range(iters):
            s = 1.0 / (1.0 + np.exp(Y[:, k] * (Xa @ w)))
            g = Xa.T @ (-Y[:, k] * s) / len(s) + lam * w
            H = (Xa * (s * (1 - s))[:, None]).T @ Xa / len(s) + lam * np.eye(a.size)
            w = w - np.linalg.solve(H, g)
            if np.linalg.norm(g) < 1e-10:
                break
        W[a, k] = w
    return W


def finetune(W: Any, X_r: Any, y_r: Any, lam: float, mask: Any, *, steps: int, lr: float,
             l1: float = 0.0) -> np.ndarray:
    """Gradient descent on the retained rows inside ``mask``; ``l1 > 0``: l1-sparse unlearning.

    With ``l1 > 0`` each step is followed by soft-thresholding at ``lr * l1`` (proximal
    gradient on ``mean l + (lam/2)||W||^2 + l1 ||W||_1``), Jia et al.'s l1-sparse unlearning.
    """
    W = np.array(W, np.float64) * mask
    Y = _targets(y_r, W.shape[1])
    for _ in range(steps):
        W = W - lr * _grad(W, np.asarray(X_r), Y, lam) * mask
        if l1 > 0:
            W = np.sign(W) * np.maximum(np.abs(W) - lr * l1, 0.0)
    return W


def gradient_ascent(W: Any, X_f: Any, y_f: Any, mask: Any, *, steps: int, lr: float
                    ) -> np.ndarray:
    """Gradient ascent on the forgotten rows' loss inside ``mask`` (NOT certified)."""
    W = np.array(W, np.float64) * mask
    Y = _targets(y_f, W.shape[1])
    for _ in range(steps):
        W = W + lr * _grad(W, np.asarray(X_f), Y, 0.0) * mask
    return W


def newton_step(W: Any, X_r: Any, y_r: Any, lam: float, mask: Any) -> np.ndarray:
    """One Newton step on the retained rows' objective, per head inside ``mask`` (Zhang-style)."""
    W = np.array(W, np.float64)
    Xn = np.asarray(X_r, np.float64)
    Y = _targets(y_r, W.shape[1])
    for k in range(W.shape[1]):
        a = np.flatnonzero(np.asarray(mask)[:, k])
        if a.size == 0:
            continue
        Xa, w = Xn[:, a], W[a, k]
        s = 1.0 / (1.0 + np.exp(Y[:, k] * (Xa @ w)))
        g = Xa.T @ (-Y[:, k] * s) / len(s) + lam * w
        H = (Xa * (s * (1 - s))[:, None]).T @ Xa / len(s) + lam * np.eye(a.size)
        W[a, k] = w - np.linalg.solve(H, g)
    return W


def accuracy(W: Any, X: Any, y: Any) -> float:
    """Top-1 accuracy of the one-vs-rest scores."""
    return float(np.mean(np.argmax(np.asarray(X) @ np.asarray(W), 1) == np.asarray(y)))


def _confidence(W, X, y):
    Z = np.asarray(X) @ np.asarray(W)
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    return P[np.arange(len(y)), np.asarray(y)]


def mia_efficacy(W: Any, X_r: Any, y_r: Any, X_f: Any, y_f: Any, X_t: Any, y_t: Any) -> float:
    """Jia et al.'s MIA-efficacy (``confidence`` variant): share of ``D_f`` called non-member."""
    from sklearn.svm import SVC

    m = min(len(y_t), len(y_r))
    c_in = _confidence(W, np.asarray(X_r)[:m], np.asarray(y_r)[:m])
    c_out = _confidence(W, X_t, y_t)
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(np.r_[c_in, c_out][:, None], np.r_[np.ones(m), np.zeros(len(c_out))])
    return float(1.0 - clf.predict(_confidence(W, X_f, y_f)[:, None]).mean())


def jia_metrics(W: Any, X_r: Any, y_r: Any, X_f: Any, y_f: Any, X_t: Any, y_t: Any) -> dict:
    """``{"UA", "RA", "TA", "MIA"}`` of one model (fractions)."""
    return {"UA": 1.0 - accuracy(W, X_f, y_f), "RA": accuracy(W, X_r, y_r),
            "TA": accuracy(W, X_t, y_t), "MIA": mia_efficacy(W, X_r, y_r, X_f, y_f, X_t, y_t)}
