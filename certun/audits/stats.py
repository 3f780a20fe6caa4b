r"""Host-side statistics of the audit suite: Clopper-Pearson epsilon bounds, AUC, one-run audits.

Everything here runs on the host in float64 with NumPy / SciPy (jax-privacy's design
rule: jitted code only produces scores; the statistics that turn scores into claims are
plain, reviewable host code). Nothing is traced.

**Hypothesis-testing bound** (Kairouz et al. 2015; docs/bibliography.md §17.1). If a
mechanism is :math:`(\epsilon,\delta)`-DP, every test between the two neighbouring worlds
satisfies :math:`\mathrm{TPR} \le e^\epsilon \mathrm{FPR} + \delta` and
:math:`\mathrm{TNR} \le e^\epsilon \mathrm{FNR} + \delta`, hence

.. math::
    \epsilon \ge \max\Big\{\log\frac{\mathrm{TPR}_{lb}-\delta}{\mathrm{FPR}_{ub}},\
    \log\frac{\mathrm{TNR}_{lb}-\delta}{\mathrm{FNR}_{ub}}\Big\}

with Clopper-Pearson bounds on the rates. **Convention** (docs/bibliography.md erratum 7,
jax-privacy ``CanaryScoreAuditor.epsilon_clopper_pearson``): ``alpha`` is the total
failure probability; each rate gets ``alpha / 2`` (the lower end of a two-sided
``1 - alpha`` interval for the true-positive rate, the upper end of one for the
false-positive rate), so the bound holds with probability at least ``1 - alpha``.
Anchor: 1,000 in / 1,000 out, 500 true and 10 false positives, ``alpha = 0.05``,
``delta = 1e-5`` gives ``epsilon >= 3.242`` (point estimate ``log(0.5/0.01) = 3.912``).

A test "says in" when the score is **at least** the threshold (jax-privacy's rule).

**Threshold choice.** The bound is valid for a threshold fixed before the scores are
seen. :func:`epsilon_from_scores` either takes such a threshold or chooses one on a
separate split of the scores (``threshold="split"``) and evaluates it on the rest; it
never picks the threshold on the scores it evaluates (docs/bibliography.md erratum 12).

Proofs: ``proofs/audit_epsilon.md``.

References:
  M. Jagielski, J. Ullman, A. Oprea, "Auditing Differentially Private Machine
  Learning: How Private is Private SGD?", NeurIPS 2020.
  T. Steinke, M. Nasr, M. Jagielski, "Privacy Auditing with One (1) Training Run",
  NeurIPS 2023, arXiv:2305.08846.
  E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, "Comparing the areas under two or
  more correlated receiver operating characteristic curves", Biometrics 44, 1988.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from certun import _validate

__all__ = [
    "clopper_pearson",
    "EpsilonBound",
    "epsilon_lower_bound",
    "point_epsilon",
    "gdp_epsilon_estimate",
    "counts_at_threshold",
    "best_threshold",
    "ThresholdedBound",
    "choose_test",
    "epsilon_from_scores",
    "AUC",
    "auc",
    "auc_with_ci",
    "pooled_auc",
    "auc_cluster_bootstrap",
    "tpr_at_fpr",
    "one_run_epsilon",
    "mean_ci",
]


def _alpha(alpha: float) -> float:
    return _validate.in_range(0.0, 0.5, alpha=alpha)


def _count(name: str, k: Any, n: int) -> int:
    k = _validate.integer(**{name: k}, minimum=0)
    if k > n:
        raise _validate.ValidationError(f"{name}={k} exceeds the number of trials {n}")
    return k


def clopper_pearson(k: Any, n: Any, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    r"""Two-sided Clopper-Pearson interval for a binomial proportion, at confidence ``1 - alpha``.

    .. math::
        p_{lo} = \mathrm{Beta}^{-1}(\alpha/2;\ k,\ n-k+1),\qquad
        p_{hi} = \mathrm{Beta}^{-1}(1-\alpha/2;\ k+1,\ n-k),

    with ``p_lo = 0`` when ``k = 0`` and ``p_hi = 1`` when ``k = n``. Each end alone is a
    one-sided ``1 - alpha/2`` bound.

    Args:
      k: successes (integer or integer array), ``0 <= k <= n``.
      n: trials (integer or integer array), ``>= 1``.
      alpha: total miss probability of the interval, in ``(0, 0.5)``.

    Returns:
      ``(lower, upper)`` as float64 arrays (0-d for scalar input).
    """
    a = _alpha(alpha)
    k = np.asarray(k)
    n = np.asarray(n)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise _validate.ValidationError("clopper_pearson needs 0 <= k <= n and n >= 1")
    kf, nf = k.astype(np.float64), n.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, scipy.stats.beta.ppf(a / 2, kf, nf - kf + 1), 0.0)
        hi = np.where(k < n, scipy.stats.beta.ppf(1 - a / 2, kf + 1, nf - kf), 1.0)
    return np.asarray(lo, np.float64), np.asarray(hi, np.float64)


class EpsilonBound(NamedTuple):
    """An epsilon lower bound from one test's counts (see :func:`epsilon_lower_bound`).

    Attributes:
      epsilon: the lower bound (``>= 0``); it holds with probability ``1 - alpha``.
      point_estimate: ``max(log((TPR - delta)/FPR), log((TNR - delta)/FNR))`` on the raw
        rates (an estimate, not a bound; ``inf`` when a denominator is 0).
      tpr_lower, fpr_upper, tnr_lower, fnr_upper: the Clopper-Pearson ends used.
      direction: ``"tpr/fpr"`` or ``"tnr/fnr"``, the ratio attaining the bound.
      tp, n_in, fp, n_out: the counts.
      alpha, delta: the miss probability and the delta of the bound.
    """

    epsilon: float
    point_estimate: float
    tpr_lower: float
    fpr_upper: float
    tnr_lower: float
    fnr_upper: float
    direction: str
    tp: int
    n_in: int
    fp: int
    n_out: int
    alpha: float
    delta: float


def _log_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(num > 0, np.log(np.maximum(num, 1e-300)) - np.log(den), -np.inf)


def _bound_arrays(tp: np.ndarray, n_in: int, fp: np.ndarray, n_out: int, alpha: float,
                  delta: float, both_directions: bool) -> tuple[np.ndarray, ...]:
    tpr_lo, tpr_hi = clopper_pearson(tp, n_in, alpha)
    fpr_lo, fpr_hi = clopper_pearson(fp, n_out, alpha)
    e1 = _log_ratio(tpr_lo - delta, fpr_hi)          # TPR <= e^eps FPR + delta
    tnr_lo, fnr_hi = 1.0 - fpr_hi, 1.0 - tpr_lo
    e2 = _log_ratio(tnr_lo - delta, fnr_hi)          # TNR <= e^eps FNR + delta
    if not both_directions:
        e2 = np.full_like(e1, -np.inf)
    return e1, e2, tpr_lo, fpr_hi, tnr_lo, fnr_hi


def epsilon_lower_bound(tp: int, n_in: int, fp: int, n_out: int, *, alpha: float = 0.05,
                        delta: float = 0.0, both_directions: bool = True) -> EpsilonBound:
    r"""Clopper-Pearson lower bound on epsilon from one test's true/false positive counts.

    Implements the bound of the module docstring: each rate is bounded at ``alpha / 2``
    (two-sided ``1 - alpha`` Clopper-Pearson ends), and

    .. math::
        \epsilon_{LB} = \max\{0,\ \log\tfrac{\mathrm{TPR}_{lb}-\delta}{\mathrm{FPR}_{ub}},\
        \log\tfrac{1-\mathrm{FPR}_{ub}-\delta}{1-\mathrm{TPR}_{lb}}\}.

    Matches jax-privacy's ``epsilon_clopper_pearson(significance=alpha, delta,
    one_sided=not both_directions, threshold_strategy=Explicit(t))``.

    Args:
      tp: in-world runs the test called "in" (true positives), of ``n_in``.
      n_in: in-world runs (``>= 1``).
      fp: out-world runs the test called "in" (false positives), of ``n_out``.
      n_out: out-world runs (``>= 1``).
      alpha: total miss probability (0.05: two-sided 95 %, 2.5 % per rate).
      delta: the delta of the guarantee being audited (``0 <= delta < 1``).
      both_directions: also use ``TNR <= e^eps FNR + delta`` (the guarantee is symmetric).

    Returns:
      An :class:`EpsilonBound`.
    """
    n_in = _validate.integer(n_in=n_in, minimum=1)
    n_out = _validate.integer(n_out=n_out, minimum=1)
    tp = _count("tp", tp, n_in)
    fp = _count("fp", fp, n_out)
    a = _alpha(alpha)
    dlt = _validate.in_range(0.0, 1.0, delta=delta, inclusive=True)
    e1, e2, tl, fh, nl, nh = (float(v) for v in _bound_arrays(
        np.asarray(tp), n_in, np.asarray(fp), n_out, a, dlt, both_directions))
    tpr, fpr = tp / n_in, fp / n_out
    p1 = float(_log_ratio(np.asarray(tpr - dlt), np.asarray(fpr)))
    p2 = float(_log_ratio(np.asarray(1 - fpr - dlt), np.asarray(1 - tpr)))
    point = max(p1, p2 if both_directions else -math.inf, 0.0)
    eps = max(e1, e2, 0.0)
    return EpsilonBound(
        epsilon=eps, point_estimate=point, tpr_lower=tl, fpr_upper=fh, tnr_lower=nl,
        fnr_upper=nh, direction="tpr/fpr" if e1 >= e2 else "tnr/fnr", tp=tp, n_in=n_in, fp=fp,
        n_out=n_out, alpha=a, delta=dlt)


def point_epsilon(tp: int, n_in: int, fp: int, n_out: int, delta: float = 0.0) -> float:
    """The point estimate of :func:`epsilon_lower_bound` (an estimate, not a bound)."""
    return epsilon_lower_bound(tp, n_in, fp, n_out, delta=delta).point_estimate


def gdp_epsilon_estimate(bound: EpsilonBound, delta: float) -> float:
    r"""Epsilon *estimate* under a Gaussian trade-off assumption (Nasr et al. 2023).

    From the same Clopper-Pearson ends, :math:`\mu = \Phi^{-1}(1-\mathrm{FPR}_{ub}) -
    \Phi^{-1}(\mathrm{FNR}_{ub})`, converted to epsilon at ``delta`` as for a Gaussian
    mechanism with noise multiplier ``1/mu`` (:func:`certun.accounting.analytic_epsilon`).
    **Not** a distribution-free lower bound (docs/bibliography.md §17.3: it can exceed the
    Clopper-Pearson bound by a lot); reported labelled as an estimate.

    Returns:
      The estimate (0 when ``mu <= 0``).
    """
    from certun.accounting.gaussian import analytic_epsilon

    dlt = _validate.delta(delta=delta)
    mu = float(scipy.stats.norm.ppf(1 - bound.fpr_upper) - scipy.stats.norm.ppf(bound.fnr_upper))
    if not (mu > 0) or not math.isfinite(mu):
        return 0.0 if not (mu > 0) else math.inf
    return analytic_epsilon(1.0 / mu, dlt)


def counts_at_threshold(in_scores: Any, out_scores: Any, threshold: float) -> tuple[int, int]:
    """``(tp, fp)``: scores ``>= threshold`` among in-world and out-world scores."""
    i = np.asarray(in_scores, np.float64).ravel()
    o = np.asarray(out_scores, np.float64).ravel()
    return int(np.count_nonzero(i >= threshold)), int(np.count_nonzero(o >= threshold))


def _sorted_counts(i_sorted: np.ndarray, o_sorted: np.ndarray, t: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    tp = i_sorted.size - np.searchsorted(i_sorted, t, side="left")
    fp = o_sorted.size - np.searchsorted(o_sorted, t, side="left")
    return tp, fp


def best_threshold(in_scores: Any, out_scores: Any, *, alpha: float = 0.05, delta: float = 0.0,
                   both_directions: bool = True, max_candidates: int = 4000) -> float:
    """The threshold maximising the Clopper-Pearson bound on *these* scores (use on a search split).

    Candidates are the pooled scores' quantiles (at most ``max_candidates``, denser in the
    tails, where low false-positive rates live) plus the extreme scores. Choosing the
    threshold on the scores that are then evaluated would invalidate the bound; see
    :func:`epsilon_from_scores`.
    """
    i = np.sort(np.asarray(in_scores, np.float64).ravel())
    o = np.sort(np.asarray(out_scores, np.float64).ravel())
    if i.size == 0 or o.size == 0:
        raise _validate.ValidationError("in_scores and out_scores must be non-empty")
    pooled = np.concatenate([i, o])
    m = max_candidates // 2
    u = np.linspace(0.0, 1.0, m)
    tails = np.concatenate([1.0 - np.logspace(-7, 0, m // 2), np.logspace(-7, 0, m // 2)])
    qs = np.clip(np.concatenate([u, tails]), 0.0, 1.0)
    cand = np.unique(np.concatenate([np.quantile(pooled, qs), i[-5:], o[-5:], i[:5], o[:5]]))
    tp, fp = _sorted_counts(i, o, cand)
    e1, e2, *_ = _bound_arrays(tp, i.size, fp, o.size, _alpha(alpha), delta, both_directions)
    score = np.maximum(e1, e2)
    return float(cand[int(np.argmax(score))])


class ThresholdedBound(NamedTuple):
    """An epsilon lower bound with the test that produced it.

    Attributes:
      bound: the :class:`EpsilonBound` on the evaluation runs.
      threshold: the test says "in" when ``sign * score >= threshold``.
      sign: ``+1`` or ``-1`` (the orientation of the scores, chosen with the threshold).
      rule: how the test was chosen (fixed in advance, or on a separate split).
    """

    bound: EpsilonBound
    threshold: float
    sign: int
    rule: str


def _finite_scores(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x, np.float64).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise _validate.ValidationError(f"{name} must be non-empty and finite (one score per run)")
    return a


def choose_test(search_in: Any, search_out: Any, *, alpha: float = 0.05, delta: float = 0.0,
                both_directions: bool = True, orientation: str = "higher") -> tuple[float, int]:
    """Choose the test ``sign * score >= threshold`` that maximises the bound on a search split.

    Returns:
      ``(threshold, sign)``; evaluate it on *other* runs with :func:`counts_at_threshold`.
    """
    si, so = _finite_scores("search_in", search_in), _finite_scores("search_out", search_out)
    _validate.choice(("higher", "either"), orientation=orientation)
    best = None
    for sg in ((1, -1) if orientation == "either" else (1,)):
        t = best_threshold(sg * si, sg * so, alpha=alpha, delta=delta,
                           both_directions=both_directions)
        tp, fp = counts_at_threshold(sg * si, sg * so, t)
        e = epsilon_lower_bound(tp, si.size, fp, so.size, alpha=alpha, delta=delta,
                                both_directions=both_directions).epsilon
        if best is None or e > best[0]:
            best = (e, t, sg)
    assert best is not None  # the loop runs at least once
    return best[1], best[2]


def epsilon_from_scores(in_scores: Any, out_scores: Any, *, alpha: float = 0.05,
                        delta: float = 0.0, threshold: float | str = "split",
                        split_fraction: float = 0.5, seed: int = 0,
                        both_directions: bool = True, orientation: str = "higher",
                        search_scores: tuple[Any, Any] | None = None) -> ThresholdedBound:
    """Epsilon lower bound from in-world and out-world scores with an honestly chosen test.

    Args:
      in_scores: one finite score per run of the "in" world (any shape, flattened).
      out_scores: one finite score per run of the "out" world (flattened likewise).
      alpha: total miss probability of the bound (two-sided 95 % at 0.05).
      delta: delta of the guarantee being audited.
      threshold: a float fixed in advance (all runs are evaluated; the test is
        ``score >= threshold``), or ``"split"``: choose the test with :func:`choose_test` on
        a random ``split_fraction`` of each world's runs (or on ``search_scores``, when
        given) and evaluate it on the other runs.
      split_fraction: fraction of runs used to choose the test (``"split"`` only).
      seed: seed of the split.
      both_directions: use both ratios of the symmetric guarantee.
      orientation: ``"higher"`` (in-world scores are expected higher) or ``"either"``
        (``"split"`` only: the orientation is chosen with the threshold).
      search_scores: ``(search_in, search_out)`` from separate runs used only to choose the
        test; then every run of ``in_scores``/``out_scores`` is evaluated.

    Returns:
      A :class:`ThresholdedBound`.
    """
    i, o = _finite_scores("in_scores", in_scores), _finite_scores("out_scores", out_scores)
    sign = 1
    if isinstance(threshold, str):
        _validate.choice(("split",), threshold=threshold)
        if search_scores is None:
            frac = _validate.in_range(0.0, 1.0, split_fraction=split_fraction)
            rng = np.random.default_rng(seed)
            pi, po = rng.permutation(i.size), rng.permutation(o.size)
            ki, ko = int(round(frac * i.size)), int(round(frac * o.size))
            if min(ki, ko, i.size - ki, o.size - ko) < 1:
                raise _validate.ValidationError(
                    "too few runs to split; pass more runs or a threshold")
            si, so = i[pi[:ki]], o[po[:ko]]
            i, o = i[pi[ki:]], o[po[ko:]]
        else:
            si, so = search_scores
            ki, ko = np.size(si), np.size(so)
        t, sign = choose_test(si, so, alpha=alpha, delta=delta, both_directions=both_directions,
                              orientation=orientation)
        rule = (f"test chosen on a separate split ({ki} + {ko} runs), evaluated on the other "
                f"{i.size} + {o.size}")
    else:
        if orientation != "higher" or search_scores is not None:
            raise _validate.ValidationError(
                "orientation='either' and search_scores need threshold='split'")
        t = float(threshold)
        rule = "threshold fixed in advance"
    tp, fp = counts_at_threshold(sign * i, sign * o, t)
    bound = epsilon_lower_bound(tp, i.size, fp, o.size, alpha=alpha, delta=delta,
                                both_directions=both_directions)
    return ThresholdedBound(bound, t, sign, rule)


# --------------------------------------------------------------------------- AUC


class AUC(NamedTuple):
    """Area under the ROC curve with a normal-approximation confidence interval.

    Attributes:
      auc: the Mann-Whitney estimate (ties count one half).
      lower, upper: the ``1 - alpha`` interval (clipped to ``[0, 1]``).
      se: the standard error (DeLong et al. 1988).
      n_pos, n_neg: sample sizes.
    """

    auc: float
    lower: float
    upper: float
    se: float
    n_pos: int
    n_neg: int


def _midranks(x: np.ndarray) -> np.ndarray:
    return scipy.stats.rankdata(x, method="average")


def auc(pos_scores: Any, neg_scores: Any) -> float:
    """AUC = P(score_pos > score_neg) + P(equal)/2, by ranks (ties averaged)."""
    return auc_with_ci(pos_scores, neg_scores).auc


def auc_with_ci(pos_scores: Any, neg_scores: Any, alpha: float = 0.05) -> AUC:
    """AUC with DeLong's standard error and a normal ``1 - alpha`` interval.

    Args:
      pos_scores: scores of the positives (members), higher means "member".
      neg_scores: scores of the negatives.
      alpha: miss probability of the interval.
    """
    x = np.asarray(pos_scores, np.float64).ravel()
    y = np.asarray(neg_scores, np.float64).ravel()
    m, n = x.size, y.size
    if m < 2 or n < 2:
        raise _validate.ValidationError("AUC needs at least 2 positive and 2 negative scores")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise _validate.ValidationError("scores must be finite")
    r = _midranks(np.concatenate([x, y]))
    rx, ry = _midranks(x), _midranks(y)
    a = float((np.sum(r[:m]) - m * (m + 1) / 2) / (m * n))
    v10 = (r[:m] - rx) / n          # per-positive structural components
    v01 = 1.0 - (r[m:] - ry) / m    # per-negative
    var = np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n
    se = float(math.sqrt(max(var, 0.0)))
    z = float(scipy.stats.norm.ppf(1 - _alpha(alpha) / 2))
    return AUC(a, max(0.0, a - z * se), min(1.0, a + z * se), se, m, n)


def pooled_auc(aucs: Sequence[AUC], alpha: float = 0.05) -> AUC:
    """Mean of independent AUCs (e.g. one per seed) with ``se = sqrt(sum se_i^2) / S``."""
    if len(aucs) == 0:
        raise _validate.ValidationError("aucs is empty")
    a = float(np.mean([x.auc for x in aucs]))
    se = float(math.sqrt(sum(x.se ** 2 for x in aucs)) / len(aucs))
    z = float(scipy.stats.norm.ppf(1 - _alpha(alpha) / 2))
    return AUC(a, max(0.0, a - z * se), min(1.0, a + z * se), se,
               sum(x.n_pos for x in aucs), sum(x.n_neg for x in aucs))


def auc_cluster_bootstrap(pos_scores: Any, neg_scores: Any, pos_clusters: Any,
                          neg_clusters: Any, *, num_resamples: int = 1000, seed: int = 0,
                          alpha: float = 0.05) -> AUC:
    """AUC with a cluster-bootstrap interval, for rows that share a model.

    In Chen et al.'s pipeline the rows of one training set share the original model (and,
    under a private release, its noise draw), so they are not independent and DeLong's
    interval is too narrow. Clusters (e.g. training sets) are resampled with replacement;
    ``se`` is the bootstrap standard deviation and the interval the percentile interval.

    Args:
      pos_scores: scores of the positives (flattened; the AUC is the probability that a
        positive scores above a negative).
      neg_scores: scores of the negatives (flattened).
      pos_clusters: the cluster id of each positive score (same size as ``pos_scores``).
      neg_clusters: the cluster id of each negative score (same size as ``neg_scores``); ids
        shared with ``pos_clusters`` name the same cluster.
      num_resamples: bootstrap resamples.
      seed: bootstrap seed.
      alpha: miss probability of the interval.
    """
    x = np.asarray(pos_scores, np.float64).ravel()
    y = np.asarray(neg_scores, np.float64).ravel()
    cx, cy = np.asarray(pos_clusters).ravel(), np.asarray(neg_clusters).ravel()
    if cx.size != x.size or cy.size != y.size:
        raise _validate.ValidationError("one cluster id per score is required")
    a0 = auc_with_ci(x, y, alpha)
    ids = np.unique(np.concatenate([cx, cy]))
    rng = np.random.default_rng(seed)
    bx = {c: x[cx == c] for c in ids}
    by = {c: y[cy == c] for c in ids}
    vals = []
    for _ in range(_validate.integer(num_resamples=num_resamples, minimum=10)):
        pick = rng.choice(ids, size=ids.size, replace=True)
        xs = np.concatenate([bx[c] for c in pick])
        ys = np.concatenate([by[c] for c in pick])
        if xs.size < 2 or ys.size < 2:
            continue
        r = _midranks(np.concatenate([xs, ys]))
        vals.append((np.sum(r[:xs.size]) - xs.size * (xs.size + 1) / 2) / (xs.size * ys.size))
    v = np.asarray(vals)
    lo, hi = np.quantile(v, [_alpha(alpha) / 2, 1 - _alpha(alpha) / 2])
    return AUC(a0.auc, float(lo), float(hi), float(v.std(ddof=1)), x.size, y.size)


def tpr_at_fpr(pos_scores: Any, neg_scores: Any, fpr: float) -> float:
    """Largest true-positive rate of a threshold rule whose false-positive rate is ``<= fpr``."""
    f = _validate.in_range(0.0, 1.0, fpr=fpr, inclusive=True)
    x = np.sort(np.asarray(pos_scores, np.float64).ravel())
    y = np.sort(np.asarray(neg_scores, np.float64).ravel())
    cand = np.concatenate([np.unique(np.concatenate([x, y])), [np.inf]])
    tp, fp = _sorted_counts(x, y, cand)
    ok = fp / y.size <= f
    return float(np.max(tp[ok]) / x.size)


# --------------------------------------------------------------------------- one run


def _one_run_p_value(eps: float, m: int, r: int, v: int, delta: float) -> float:
    q = math.exp(eps) / (1 + math.exp(eps))
    sf = scipy.stats.binom.sf  # P[X >= k] = sf(k - 1)
    beta = float(sf(v - 1, r, q))
    i = np.arange(1, v + 1)
    alpha = float(np.max((sf(v - i - 1, r, q) - beta) / i)) if v > 0 else 0.0
    return min(beta + 2 * m * delta * alpha, 1.0)


def one_run_epsilon(m: int, r: int, v: int, *, delta: float, alpha: float = 0.05) -> float:
    r"""Steinke et al. (2023)'s one-run epsilon lower bound (abstention form).

    ``m`` canaries, each included with probability 1/2; the auditor guesses on ``r`` of
    them and ``v`` guesses are right. With :math:`q=e^\epsilon/(1+e^\epsilon)`,
    :math:`\beta=\Pr[\mathrm{Bin}(r,q)\ge v]` and
    :math:`a=\max_{1\le i\le v}(\Pr[\mathrm{Bin}(r,q)\ge v-i]-\beta)/i`, the p-value is
    :math:`\min(\beta+2m\delta a, 1)`; the bound is the largest epsilon with p-value
    ``<= alpha`` (docs/bibliography.md §17.4; anchor (1000, 100, 100) -> 3.465 at
    ``delta = 1e-5``). Valid only if the guarantee holds per canary with the others fixed.

    Returns:
      The bound (0 when even epsilon = 0 is not rejected).
    """
    m = _validate.integer(m=m, minimum=1)
    r = _validate.integer(r=r, minimum=0, maximum=m)
    v = _validate.integer(v=v, minimum=0, maximum=r)
    dlt = _validate.in_range(0.0, 1.0, delta=delta, inclusive=True)
    a = _alpha(alpha)
    if _one_run_p_value(0.0, m, r, v, dlt) > a:
        return 0.0
    hi = 1.0
    while _one_run_p_value(hi, m, r, v, dlt) <= a:
        hi *= 2.0
        if hi > 1e3:
            return math.inf
    return float(cast(float, scipy.optimize.brentq(
        lambda e: _one_run_p_value(e, m, r, v, dlt) - a, 0.0, hi, xtol=1e-10)))


def mean_ci(values: Any, alpha: float = 0.05) -> dict:
    """Mean over independent repetitions (seeds) with a two-sided Student-t interval.

    Used by the security experiments: a claim "A rises above B" is reported as the mean of the
    per-seed differences ``A - B`` and holds when the interval excludes 0. The interval is
    :func:`certun.audits.utility.mean_ci`'s (one definition), as a JSON-ready dict.

    Args:
      values: ``(r,)`` one number per independent repetition (``r >= 2``).
      alpha: ``1 -`` the interval's coverage.

    Returns:
      ``{"mean", "ci": [lo, hi], "n", "excludes_zero"}``.
    """
    from certun.audits.utility import mean_ci as _interval

    v = _validate.finite_array(values=values, ndim=1)
    if v.size < 2:
        raise _validate.ValidationError(f"values needs at least 2 repetitions, got {v.size}")
    iv = _interval(v, alpha)
    lo, hi = iv.lower, iv.upper
    return {"mean": iv.value, "ci": [lo, hi], "n": iv.n, "excludes_zero": bool(lo > 0 or hi < 0)}
