r"""Utility and cost of an unlearned model: accuracy per split, relative cost, intervals.

Jia et al. (2023) report an unlearned model by its accuracy on the forgotten rows
(UA is one minus it), on the retained rows (RA) and on held-out rows (TA), next to the
run-time efficiency relative to retraining (RTE). certun defines them once here:

* :func:`accuracy` -- the fraction of rows a model labels correctly, from its logits
  (binary ``+-1`` labels from the sign of the score, class ids from the argmax); for a
  regression model :func:`accuracy` is not defined and :func:`neg_rmse` stands in.
* :func:`relative_cost` -- a cost (seconds, gradient evaluations) divided by the cost of
  exact retraining measured in the same run.
* :func:`mean_ci` -- the mean of independent repetitions (one per seed) with a Student-t
  confidence interval, the interval every ensemble metric of :mod:`certun.bench` reports.

Host-side NumPy/SciPy.

Reference:
  J. Jia, J. Liu, P. Ram, Y. Yao, G. Liu, Y. Liu, P. Sharma, S. Liu, "Model Sparsity Can
  Simplify Machine Unlearning", NeurIPS 2023, arXiv:2304.04934 (UA, RA, TA, RTE).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import scipy.stats

from certun import _validate

__all__ = ["Interval", "accuracy", "neg_rmse", "relative_cost", "mean_ci"]


class Interval(NamedTuple):
    """A point estimate with a ``1 - alpha`` confidence interval.

    Attributes:
      value: the estimate.
      lower, upper: the interval (equal to ``value`` when it has no spread or one sample).
      n: the number of repetitions it rests on.
    """

    value: float
    lower: float
    upper: float
    n: int


def accuracy(logits: Any, labels: Any) -> float:
    """Fraction of rows labelled correctly, from ``(P, C)`` logits or ``(P,)`` binary scores.

    Args:
      logits: ``(P,)`` scores of a binary model (predicts ``+1`` where the score is ``>= 0``),
        ``(P, 2)`` logits with ``+-1`` labels (the second column's margin over the first),
        or ``(P, C)`` logits with class ids (argmax).
      labels: ``(P,)`` labels: ``+-1`` (binary) or class ids.
    """
    z = _validate.finite_array(logits=logits, ndim=(1, 2)).astype(np.float64)
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != z.shape[0] or y.size == 0:
        raise _validate.ValidationError(
            f"labels must be 1-D with one label per row of logits ({z.shape[0]}), got shape "
            f"{y.shape}")
    binary = bool(np.all(np.isin(y, (-1.0, 1.0))))
    if z.ndim == 1 or (z.shape[1] == 2 and binary):
        s = z if z.ndim == 1 else z[:, 1] - z[:, 0]
        if not binary:
            raise _validate.ValidationError("binary scores need labels in {-1, +1}")
        return float(np.mean(np.where(s >= 0, 1.0, -1.0) == y))
    return float(np.mean(np.argmax(z, axis=1) == y.astype(np.int64)))


def neg_rmse(predictions: Any, targets: Any) -> float:
    """Minus the root mean squared error (higher is better, like an accuracy) of a regression."""
    p = _validate.finite_array(predictions=predictions, ndim=1).astype(np.float64)
    t = _validate.finite_array(targets=targets, ndim=1).astype(np.float64)
    if p.shape != t.shape or p.size == 0:
        raise _validate.ValidationError(
            f"predictions and targets need equal non-empty shapes, got {p.shape}, {t.shape}")
    return -float(np.sqrt(np.mean((p - t) ** 2)))


def relative_cost(cost: float, retrain_cost: float) -> float:
    """``cost / retrain_cost`` (Jia et al.'s RTE is its inverse); ``nan`` if either is unknown."""
    c, r = float(cost), float(retrain_cost)
    if not (math.isfinite(c) and math.isfinite(r)) or r <= 0:
        return float("nan")
    return c / r


def mean_ci(values: Any, alpha: float = 0.05) -> Interval:
    """Mean of independent repetitions with a two-sided Student-t ``1 - alpha`` interval.

    Args:
      values: one finite value per repetition (e.g. one per seed).
      alpha: miss probability of the interval, in ``(0, 1)``.
    """
    v = _validate.finite_array(values=values, ndim=1).astype(np.float64)
    a = _validate.in_range(0.0, 1.0, alpha=alpha)
    if v.size == 0:
        raise _validate.ValidationError("values is empty")
    m = float(np.mean(v))
    if v.size < 2:
        return Interval(m, m, m, 1)
    se = float(np.std(v, ddof=1) / math.sqrt(v.size))
    h = float(scipy.stats.t.ppf(1 - a / 2, v.size - 1)) * se
    return Interval(m, m - h, m + h, int(v.size))
