r"""Distance to retraining: parameters, predictions and KLoM (KL divergence of margins).

* :func:`parameter_distance` -- :math:`\lVert\theta_u-\theta_r\rVert_2` over pytrees.
* :func:`prediction_agreement` -- the fraction of inputs on which two models agree.
* :func:`margins` / :func:`binary_margins` -- the logit-scaled correct-class confidence
  :math:`m(z, c) = z_c - \log\sum_{j\ne c} e^{z_j}` (jit-able; the statistic of KLoM,
  LiRA and the NeurIPS 2023 challenge).
* :func:`klom` -- per example, the KL divergence between the histogram of the margins of
  ``N`` unlearned models and that of ``N`` oracle (retrained) models: margins clipped to
  ``[-100, 100]``, 20 equal-width bins over the joint range (widened by 1 when all values
  coincide), the oracle histogram ``q`` floored at ``1e-5`` where ``p > 0``, and
  :math:`\mathrm{KL}(p\Vert q) = \sum_{p_b>0} p_b\log(p_b/q_b)`. Direction: KL(unlearned ||
  oracle), as EasyDUB (docs/bibliography.md §15.1; the original data-unlearning-bench
  computes the reverse).
* :func:`percentile_ci` -- a percentile of per-example values (e.g. KLoM's 95th) with a
  bootstrap interval over the examples.
* :func:`klom_null` -- the null distribution of a KLoM percentile between two ensembles of
  the same law, from random partitions of a pool of models (the interval an unlearner that
  matches retraining falls in).
* :func:`klom_report` -- the 95th percentile of KLoM per split (forget, retain,
  validation), next to the same statistic for an independent oracle ensemble: KLoM is a
  biased plug-in estimator whose null level depends on ``N`` (section 15.4), so a number
  alone means little.

The histograms and percentiles are host-side NumPy.

References:
  K. Georgiev, R. Rinberg, S. M. Park, S. Garg, A. Ilyas, A. Madry, S. Neel,
  "Attribute-to-Delete: Machine Unlearning via Datamodel Matching", arXiv:2410.23232,
  App. E.1 (KLoM); EasyDUB ``easydub/eval.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate

__all__ = [
    "parameter_distance",
    "prediction_agreement",
    "margins",
    "binary_margins",
    "klom",
    "klom_report",
    "percentile_ci",
    "klom_null",
    "KLOM_BINS",
    "KLOM_CLIP",
    "KLOM_FLOOR",
]

#: Number of histogram bins over the clipped margins in :func:`klom` (Georgiev et al. 2024).
KLOM_BINS = 20
#: Margins are clipped to ``[-KLOM_CLIP, KLOM_CLIP]`` before binning in :func:`klom`.
KLOM_CLIP = 100.0
#: Probability floor added to empty bins so the KL divergence in :func:`klom` stays finite.
KLOM_FLOOR = 1e-5


def parameter_distance(a: Any, b: Any) -> float:
    """L2 distance between two pytrees of the same structure (all leaves flattened)."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    if ta != tb:
        raise _validate.ValidationError(f"a and b have different structures: {ta} vs {tb}")
    sq = 0.0
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            raise _validate.ValidationError(f"leaf shapes differ: {x.shape} vs {y.shape}")
        sq += float(np.sum((x - y) ** 2))
    return float(np.sqrt(sq))


def prediction_agreement(pred_a: Any, pred_b: Any) -> float:
    """Fraction of positions where two prediction arrays are equal."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if a.shape != b.shape or a.size == 0:
        raise _validate.ValidationError(
            f"pred_a and pred_b must be non-empty with equal shapes, got {a.shape} and {b.shape}")
    return float(np.mean(a == b))


def margins(logits: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Correct-class margin :math:`z_c - \log\sum_{j\ne c}e^{z_j}` of ``(..., C)`` logits.

    Computed stably (``logsumexp`` with the true class masked out); for two classes with
    logits ``(0, a)`` and label 1 it is ``a``. jit-able.
    """
    z = jnp.asarray(logits)
    c = jnp.asarray(labels).astype(jnp.int32)
    zc = jnp.take_along_axis(z, c[..., None], axis=-1)[..., 0]
    masked = jnp.where(jnp.arange(z.shape[-1]) == c[..., None], -jnp.inf, z)
    return zc - jax.scipy.special.logsumexp(masked, axis=-1)


def binary_margins(scores: jax.Array, y: jax.Array) -> jax.Array:
    """Margin of a binary logistic model: ``y * (x . w)`` for labels ``y`` in ``{-1, +1}``.

    Equals :func:`margins` of the logits ``(0, x . w)`` (``log p_y / (1 - p_y)``).
    """
    return jnp.asarray(y) * jnp.asarray(scores)


def klom(unlearned: Any, oracle: Any, *, bins: int = KLOM_BINS, clip: float = KLOM_CLIP,
         floor: float = KLOM_FLOOR) -> np.ndarray:
    """KLoM of every example: KL(unlearned margins || oracle margins) on a shared histogram.

    Args:
      unlearned: ``(N, P)`` margins of ``N`` unlearned models on ``P`` examples (or ``(N,)``).
      oracle: ``(M, P)`` margins of ``M`` oracle (retrained) models on the same examples.
      bins: number of equal-width bins over each example's joint min-max range.
      clip: margins are clipped to ``[-clip, clip]``.
      floor: ``q`` is floored at this value where ``p > 0``.

    Returns:
      ``(P,)`` float64 KLoM values (``>= 0``; exactly 0 for identical samples).
    """
    p_m = _validate.finite_array(unlearned=unlearned, ndim=(1, 2)).astype(np.float64)
    q_m = _validate.finite_array(oracle=oracle, ndim=(1, 2)).astype(np.float64)
    if p_m.ndim == 1:
        p_m, q_m = p_m[:, None], (q_m[:, None] if q_m.ndim == 1 else q_m)
    if p_m.shape[1] != q_m.shape[1]:
        raise _validate.ValidationError(
            f"unlearned and oracle must cover the same examples (columns): {p_m.shape} vs "
            f"{q_m.shape}")
    bins = _validate.integer(bins=bins, minimum=1)
    c = _validate.positive(clip=clip)
    fl = _validate.positive(floor=floor)
    p_m, q_m = np.clip(p_m, -c, c), np.clip(q_m, -c, c)
    lo = np.minimum(p_m.min(0), q_m.min(0))
    hi = np.maximum(p_m.max(0), q_m.max(0))
    hi = np.where(hi > lo, hi, lo + 1.0)
    width = (hi - lo) / bins
    P = p_m.shape[1]

    def hist(v: np.ndarray) -> np.ndarray:
        idx = np.clip(np.floor((v - lo) / width).astype(np.int64), 0, bins - 1)
        flat = (idx + bins * np.arange(P)[None, :]).ravel()
        h = np.bincount(flat, minlength=bins * P).reshape(P, bins).astype(np.float64)
        return h / v.shape[0]

    p, q = hist(p_m), hist(q_m)
    q = np.where(p > 0, np.maximum(q, fl), q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return np.maximum(terms.sum(axis=1), 0.0)


def klom_report(unlearned: Any, oracle: Any, splits: Mapping[str, Any], *,
                oracle_reference: Any | None = None, percentile: float = 95.0
                ) -> dict[str, dict[str, float]]:
    """Percentile of KLoM per split, with the oracle-vs-independent-oracle baseline.

    Args:
      unlearned: ``(N, P)`` margins of unlearned models.
      oracle: ``(M, P)`` margins of oracle models.
      splits: name -> column indices (e.g. ``{"forget": ..., "retain": ..., "val": ...}``).
      oracle_reference: ``(N, P)`` margins of a second, independent oracle ensemble; its
        KLoM against ``oracle`` is the null level of the statistic at this ``N``.
      percentile: the reported percentile (95 as in EasyDUB).

    Returns:
      ``{split: {"p95": ..., "mean": ..., "null_p95": ... (if a reference is given), "n": ...}}``
      (the key is ``f"p{percentile:g}"``).
    """
    pc = _validate.in_range(0.0, 100.0, percentile=percentile, inclusive=True)
    k = klom(unlearned, oracle)
    k0 = None if oracle_reference is None else klom(oracle_reference, oracle)
    key = f"p{pc:g}"
    out: dict[str, dict[str, float]] = {}
    for name, idx in splits.items():
        idx = np.asarray(idx, np.int64)
        if idx.size == 0:
            raise _validate.ValidationError(f"split {name!r} is empty")
        row = {key: float(np.percentile(k[idx], pc)), "mean": float(np.mean(k[idx])),
               "n": int(idx.size)}
        if k0 is not None:
            row["null_" + key] = float(np.percentile(k0[idx], pc))
            row["null_mean"] = float(np.mean(k0[idx]))
        out[name] = row
    return out


def percentile_ci(values: Any, percentile: float = 95.0, *, alpha: float = 0.05,
                  num_bootstrap: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """A percentile of per-example values with a percentile-bootstrap ``1 - alpha`` interval.

    The examples are resampled with replacement ``num_bootstrap`` times (seeded); the
    interval covers the sampling of examples, not the randomness of the models behind each
    value (compare with an independent oracle ensemble for that, :func:`klom_report`).

    Args:
      values: ``(P,)`` finite per-example values (e.g. :func:`klom` of one split).
      percentile: in ``[0, 100]``.
      alpha: miss probability of the interval.
      num_bootstrap: bootstrap resamples (``>= 1``).
      seed: seed of the resampling.

    Returns:
      ``(estimate, lower, upper)``.
    """
    v = _validate.finite_array(values=values, ndim=1).astype(np.float64)
    if v.size == 0:
        raise _validate.ValidationError("values is empty")
    pc = _validate.in_range(0.0, 100.0, percentile=percentile, inclusive=True)
    a = _validate.in_range(0.0, 1.0, alpha=alpha)
    B = _validate.integer(num_bootstrap=num_bootstrap, minimum=1)
    rng = np.random.default_rng(seed)
    boots = np.percentile(v[rng.integers(0, v.size, size=(B, v.size))], pc, axis=1)
    lo, hi = np.percentile(boots, [100 * a / 2, 100 * (1 - a / 2)])
    return float(np.percentile(v, pc)), float(lo), float(hi)


def klom_null(pool: Any, n: int, splits: Mapping[str, Any], *, percentile: float = 95.0,
              num_partitions: int = 200, alpha: float = 0.05, seed: int = 0
              ) -> dict[str, tuple[float, float, float]]:
    """Null distribution of the per-split KLoM percentile between two ensembles of one law.

    ``pool`` holds the margins of ``M >= 2n`` models drawn from one distribution (e.g.
    ``2N`` oracle models retrained with independent seeds). Each partition draws two disjoint
    sets of ``n`` models at random and computes the KLoM percentile of the first against the
    second on each split; over ``num_partitions`` partitions this is the sampling
    distribution of the statistic when the "unlearned" ensemble has the oracle's law -- model
    randomness and the plug-in bias at this ``n`` included (a bootstrap over examples alone
    misses the first). An unlearned ensemble whose KLoM lies inside the ``1 - alpha`` range
    is consistent with retraining.

    Args:
      pool: ``(M, P)`` margins, ``M >= 2 n``.
      n: models per ensemble (``>= 2``).
      splits: name -> column indices.
      percentile: the KLoM percentile (95 as in EasyDUB).
      num_partitions: random partitions (``>= 10``).
      alpha: the range is the ``alpha/2`` and ``1 - alpha/2`` quantiles.
      seed: seed of the partitions.

    Returns:
      ``{split: (median, lower, upper)}``.
    """
    a = _validate.finite_array(pool=pool, ndim=2).astype(np.float64)
    n = _validate.integer(n=n, minimum=2, maximum=a.shape[0] // 2)
    pc = _validate.in_range(0.0, 100.0, percentile=percentile, inclusive=True)
    B = _validate.integer(num_partitions=num_partitions, minimum=10)
    al = _validate.in_range(0.0, 1.0, alpha=alpha)
    rng = np.random.default_rng(seed)
    cols = {k: np.asarray(v, np.int64) for k, v in splits.items()}
    vals: dict[str, list[float]] = {k: [] for k in cols}
    for _ in range(B):
        perm = rng.permutation(a.shape[0])
        k = klom(a[perm[:n]], a[perm[n:2 * n]])
        for name, c in cols.items():
            vals[name].append(float(np.percentile(k[c], pc)))
    out = {}
    for name, v in vals.items():
        lo, med, hi = np.quantile(v, [al / 2, 0.5, 1 - al / 2])
        out[name] = (float(med), float(lo), float(hi))
    return out
