r"""Fairness manipulation through deletion requests, and an influence-screening defence.

**Threat.** Deletion requests are a right; an adversary who controls (or can name) some
training rows can choose *which* to delete so that the unlearned model becomes less fair:
its demographic-parity gap ``|P(yhat = 1 | A = 1) - P(yhat = 1 | A = 0)|`` (or equalised-odds
gap) on the population rises. Exact retraining honours such requests faithfully, so the
attack works against exact unlearning and every certified unlearner: certification
bounds what the model reveals about deleted rows, not what their deletion does to the
model's fairness.

**Attack** (influence relaxation, as in the fairness-poisoning literature, e.g. Solans,
Biggio, Castillo, "Poisoning Attacks on Algorithmic Fairness", ECML-PKDD 2020, adapted to
deletions). For a binary L2-logistic model the smooth gap
``G(w) = mean_{A=1} sigmoid(w.x) - mean_{A=0} sigmoid(w.x)`` on reference data changes, when row
``z`` is deleted, by ``grad G(w)^T H^{-1} (l'(z) y_z x_z + lam w)`` to first order (sum-scale
Hessian ``H``). :func:`gap_influence` gives this per row; :func:`craft_fairness_deletions`
takes the ``budget`` rows that push ``G`` furthest from zero in its current sign.

**Defence.** :func:`gap_influence` is also the screen: a request whose predicted change of
the gap exceeds a threshold calibrated on honest (random) requests (see
:func:`certun.audits.targeted.influence_threshold`) is held for review instead of being
honoured automatically.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from certun import _validate

__all__ = ["demographic_parity_gap", "equalized_odds_gap", "gap_influence",
           "craft_fairness_deletions"]


def demographic_parity_gap(pred: Any, group: Any) -> float:
    """``P(pred = 1 | group = 1) - P(pred = 1 | group = 0)`` for 0/1 predictions (signed)."""
    p = np.asarray(pred, np.float64)
    g = np.asarray(group, bool)
    if g.all() or (~g).all():
        raise _validate.ValidationError("group must contain both groups (0 and 1)")
    return float(p[g].mean() - p[~g].mean())


def equalized_odds_gap(pred: Any, y: Any, group: Any) -> float:
    """Largest absolute between-group difference of the true- and false-positive rates."""
    p, yy, g = np.asarray(pred, np.float64), np.asarray(y) > 0, np.asarray(group, bool)
    gaps = []
    for cls in (True, False):
        a, b = g & (yy == cls), ~g & (yy == cls)
        if a.any() and b.any():
            gaps.append(abs(p[a].mean() - p[b].mean()))
    return float(max(gaps))


def gap_influence(w: Any, X: Any, y: Any, lam: float, X_ref: Any, group_ref: Any,
                  rows: Any | None = None) -> np.ndarray:
    """First-order change of the smooth demographic-parity gap when each row alone is deleted.

    Args:
      w: ``(d,)`` binary L2-logistic weights (mean-scale objective with ``lam``).
      X: ``(n, d)`` training rows.
      y: ``(n,)`` their labels ``+-1``.
      lam: mean-scale L2 regularisation.
      X_ref: ``(R, d)`` reference rows on which the gap is measured.
      group_ref: ``(R,)`` their 0/1 sensitive attribute.
      rows: optional indices of the rows to score (default all).

    Returns:
      Predicted change of ``G = mean_{A=1} sigmoid(w.x) - mean_{A=0} sigmoid(w.x)``.
    """
    wv = _validate.finite_array(w=w, ndim=1)
    Xn = _validate.finite_array(X=X, ndim=2)
    yn = np.asarray(y, np.float64)
    lam = _validate.positive(lam=lam)
    Xr = _validate.finite_array(X_ref=X_ref, ndim=2)
    g = np.asarray(group_ref, bool)
    s = 1.0 / (1.0 + np.exp(-(Xr @ wv)))
    wt = np.where(g, 1.0 / max(g.sum(), 1), -1.0 / max((~g).sum(), 1)) * s * (1 - s)
    grad_G = Xr.T @ wt
    a = yn * (Xn @ wv)
    sig = 1.0 / (1.0 + np.exp(a))                      # sigmoid(-y w.x)
    d2 = sig * (1 - sig)
    H = (Xn * d2[:, None]).T @ Xn + lam * Xn.shape[0] * np.eye(Xn.shape[1])
    u = np.linalg.solve(H, grad_G)
    idx = np.arange(Xn.shape[0]) if rows is None else np.asarray(rows, np.int64)
    return (-yn[idx] * sig[idx]) * (Xn[idx] @ u) + lam * (wv @ u)


def craft_fairness_deletions(influence: Any, current_gap: float, budget: int,
                             allowed: Any | None = None) -> np.ndarray:
    """The ``budget`` rows whose deletion moves the gap furthest away from zero."""
    budget = _validate.integer(budget=budget, minimum=1)
    sgn = 1.0 if current_gap >= 0 else -1.0
    sc = sgn * np.asarray(influence, np.float64)
    if allowed is not None:
        sc = np.where(np.asarray(allowed, bool), sc, -np.inf)
    return np.argsort(-sc, kind="stable")[:budget]
