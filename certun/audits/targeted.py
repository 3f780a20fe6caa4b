r"""Targeted malicious deletion requests and a gradient-influence defence (Qian et al., KDD 2023).

**Provenance.** Implemented *from a description* of Qian, Zhao, Le, Ma, Huai, "Towards
Understanding and Enhancing Robustness of Deep Learning Models against Malicious Unlearning
Attacks" (KDD 2023): no text or code of the paper was available when this was written, so
the formulation below is the standard influence-function relaxation of the attack the paper
names, not a transcription of its algorithm. Numbers are certun's, not the paper's.

**Threat.** An attacker may ask for the deletion of at most ``budget`` training rows (rows it
contributed or can name). It wants a chosen test point ``(x_t, y_t)``, correctly classified
today, to be misclassified by the *unlearned* model. Exact retraining honours the request
faithfully, so the attack works against exact unlearning and against every certified
unlearner (they are indistinguishable from retraining): certification does not protect
against it. The bilevel problem ``max_S loss(U(theta, S); x_t, y_t)`` is relaxed with
influence functions (Koh & Liang 2017): deleting ``S`` moves the sum-scale minimiser of a
one-vs-rest L2-logistic model by

.. math::
    w_k(S) - w_k \approx H_k^{-1}\sum_{z\in S}\big(\ell'_k(z)\,x_z + \lambda w_k\big),

so the target margin ``s_{y_t}(x_t) - s_c(x_t)`` against a competitor class ``c`` changes by
the sum of per-row scores; :func:`craft_deletions` takes the ``budget`` most negative rows
for the competitor that yields the lowest predicted margin.

**Defence** (the gradient-influence screening described for the paper).
:func:`request_influence` scores each requested row by the largest predicted change its
deletion alone causes to the margin of any point of a public reference set (the defender's
validation data), relative to that point's margin; :func:`screen` discards requests above a
threshold calibrated on honest (random) requests. A discarded request is not honoured by
this defence -- a real deployment must route it to manual review, since deletion is a right.

References:
  W. Qian, C. Zhao, W. Le, M. Ma, M. Huai, "Towards Understanding and Enhancing Robustness
  of Deep Learning Models against Malicious Unlearning Attacks", KDD 2023.
  P. W. Koh, P. Liang, "Understanding Black-box Predictions via Influence Functions",
  ICML 2017.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from certun import _validate

__all__ = ["InfluenceModel", "influence_model", "margin_influence", "craft_deletions",
           "request_influence", "influence_threshold", "screen"]


class InfluenceModel(NamedTuple):
    """What the influence relaxation needs of a trained one-vs-rest logistic model.

    Attributes:
      W: ``(d, K)`` weights.
      X: ``(n, d)`` training rows.
      d1: ``(n, K)`` first derivative of the logistic loss at each row and head.
      Hinv: ``(K, d, d)`` inverse sum-scale Hessians of the present rows.
      lam: mean-scale L2 regularisation.
    """

    W: np.ndarray
    X: np.ndarray
    d1: np.ndarray
    Hinv: np.ndarray
    lam: float


def influence_model(W: Any, X: Any, y: Any, *, lam: float, mask: Any | None = None
                    ) -> InfluenceModel:
    """Precompute the per-head inverse Hessians of ``sum_i l(w_k; x_i) + (lam n / 2)||w_k||^2``.

    Args:
      W: ``(d, K)`` one-vs-rest weights (mean-scale objective with L2 ``lam``).
      X: ``(n, d)`` training rows.
      y: ``(n,)`` class ids ``0..K-1``.
      lam: mean-scale L2 regularisation (> 0).
      mask: optional ``(n,)`` 0/1 rows present (default all).
    """
    Wn = _validate.finite_array(W=W, ndim=2)
    Xn = _validate.finite_array(X=X, ndim=2)
    yn = np.asarray(y, np.int64)
    _validate.matching_rows(X=Xn, y=yn)
    lam = _validate.positive(lam=lam)
    if Wn.shape[0] != Xn.shape[1]:
        raise _validate.ValidationError(
            f"W must be (d, K) with d = X.shape[1] = {Xn.shape[1]}, got {Wn.shape}")
    K = Wn.shape[1]
    m = np.ones(Xn.shape[0]) if mask is None else np.asarray(mask, np.float64)
    Y = np.where(np.arange(K)[None, :] == yn[:, None], 1.0, -1.0)
    A = Xn @ Wn
    s = 1.0 / (1.0 + np.exp(Y * A))           # sigmoid(-y a)
    d1 = -Y * s * m[:, None]
    d2 = s * (1.0 - s) * m[:, None]
    n = float(m.sum())
    eye = np.eye(Xn.shape[1])
    Hinv = np.stack([np.linalg.inv((Xn * d2[:, k:k + 1]).T @ Xn + lam * n * eye)
                     for k in range(K)])
    return InfluenceModel(Wn, Xn, d1, Hinv, lam)


def margin_influence(model: InfluenceModel, x: Any, a: int, c: int) -> np.ndarray:
    """Predicted change of ``s_a(x) - s_c(x)`` when each training row alone is deleted.

    ``(g_a(z)^T H_a^{-1} - g_c(z)^T H_c^{-1}) x`` with ``g_k(z) = l'_k(z) x_z + lam w_k``
    (first-order influence of removing ``z``; sum scale). Returns ``(n,)``.
    """
    xv = np.asarray(x, np.float64)
    u, v = model.Hinv[a] @ xv, model.Hinv[c] @ xv
    W, X, d1, lam = model.W, model.X, model.d1, model.lam
    return (d1[:, a] * (X @ u) + lam * W[:, a] @ u) - (d1[:, c] * (X @ v) + lam * W[:, c] @ v)


def craft_deletions(model: InfluenceModel, x_target: Any, y_target: int, *, budget: int,
                    competitors: int = 3, allowed: Any | None = None) -> np.ndarray:
    """The attacker's ``budget`` deletions that most lower the target's predicted margin.

    For each of the ``competitors`` highest-scoring wrong classes ``c``, rank rows by
    :func:`margin_influence` of ``s_{y_t} - s_c`` and take the ``budget`` most negative; keep
    the competitor whose predicted margin after deletion is lowest (greedy top-k of the
    influence relaxation).

    Args:
      model: :func:`influence_model` of the deployed model.
      x_target: ``(d,)`` target point.
      y_target: its true class.
      budget: number of deletion requests (>= 1).
      competitors: wrong classes tried.
      allowed: optional ``(n,)`` boolean mask of rows the attacker may name.

    Returns:
      ``(budget,)`` row indices.
    """
    budget = _validate.integer(budget=budget, minimum=1)
    xt = np.asarray(x_target, np.float64)
    s = xt @ model.W
    order = [int(c) for c in np.argsort(-s) if int(c) != int(y_target)][:competitors]
    best = None
    for c in order:
        ch = margin_influence(model, xt, int(y_target), c)
        if allowed is not None:
            ch = np.where(np.asarray(allowed, bool), ch, np.inf)
        idx = np.argsort(ch, kind="stable")[:budget]
        new_margin = s[int(y_target)] - s[c] + ch[idx].sum()
        if best is None or new_margin < best[0]:
            best = (new_margin, idx)
    assert best is not None  # at least one class was scored
    return np.asarray(best[1], np.int64)


def request_influence(model: InfluenceModel, requests: Any, X_ref: Any) -> np.ndarray:
    """Defence score of each requested row: max relative margin change over reference points.

    For every reference point ``r`` with predicted class ``p_r`` and runner-up ``c_r`` the
    first-order change of ``s_{p_r}(r) - s_{c_r}(r)`` caused by deleting the row alone,
    divided by that margin; the score is the maximum over ``r`` of its negative part (a
    value near 1 means the request alone is predicted to flip a reference prediction).

    Args:
      model: :func:`influence_model` of the deployed model.
      requests: ``(m,)`` requested row indices.
      X_ref: ``(R, d)`` public reference points (the defender's validation data).

    Returns:
      ``(m,)`` scores (>= 0).
    """
    idx = np.asarray(requests, np.int64)
    Xr = _validate.finite_array(X_ref=X_ref, ndim=2)
    S = Xr @ model.W
    top2 = np.argsort(-S, axis=1)[:, :2]
    p, c = top2[:, 0], top2[:, 1]
    margin = S[np.arange(len(Xr)), p] - S[np.arange(len(Xr)), c]
    K = model.W.shape[1]
    # dS[z, r, k] = g_k(z)^T H_k^{-1} x_r for the requested rows only
    U = np.einsum("kde,re->krd", model.Hinv, Xr)                     # (K, R, d)
    XU = np.einsum("zd,krd->zrk", model.X[idx], U)                  # (m, R, K)
    reg = model.lam * np.einsum("dk,krd->rk", model.W, U)           # (R, K)
    dS = model.d1[idx][:, None, :] * XU + reg[None]
    rr = np.arange(len(Xr))
    dm = dS[:, rr, p] - dS[:, rr, c]
    del K
    return np.max(np.maximum(-dm, 0.0) / np.maximum(margin, 1e-12)[None], axis=1)


def influence_threshold(honest_scores: Any, *, false_positive_rate: float = 0.05) -> float:
    """Threshold flagging a ``false_positive_rate`` share of honest calibration requests."""
    s = _validate.finite_array(honest_scores=honest_scores, ndim=1)
    q = _validate.in_range(0.0, 1.0, false_positive_rate=false_positive_rate)
    return float(np.quantile(s, 1.0 - q))


def screen(model: InfluenceModel, requests: Any, X_ref: Any, threshold: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """Split requests into ``(accepted, discarded)`` by :func:`request_influence` > threshold."""
    idx = np.asarray(requests, np.int64)
    flag = request_influence(model, idx, X_ref) > threshold
    return idx[~flag], idx[flag]
