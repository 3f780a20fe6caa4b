r"""Per-example likelihood-ratio membership scores: LiRA and U-LiRA.

For an example ``x`` and a model, the statistic is the logit-scaled confidence
:math:`\phi = \log p_y - \log\sum_{y'\ne y}p_{y'}` (:func:`certun.audits.distance.margins`
computes it stably from logits). With shadow models,

* **LiRA** (Carlini et al. 2022): fit :math:`\mathcal N(\mu_{in},\sigma_{in}^2)` to
  :math:`\phi` over shadow models trained *with* ``x`` and
  :math:`\mathcal N(\mu_{out},\sigma_{out}^2)` over models trained without it; the score of a
  target model is :math:`\log\mathcal N(\phi;\mu_{in},\sigma_{in}^2) -
  \log\mathcal N(\phi;\mu_{out},\sigma_{out}^2)`.
* **U-LiRA** (Hayes et al. 2024): the same test, but the "in" distribution comes from
  shadow models that were trained with ``x`` **and then unlearned it** with the mechanism
  under audit, the "out" distribution from models retrained (never trained) without ``x``.
  An unlearner that matches retraining gives scores that carry no information (per-example
  AUC 0.5).

Centres are medians (as in the reference code, ``mi_lira_2021/plot.py``) or means;
``fix_variance`` uses one global standard deviation per pool (recommended for few shadow
models; the reference code's quirk of using the IN pool's for both is not copied).
Everything here is host-side NumPy (docs/bibliography.md §18).

References:
  N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramer, "Membership Inference
  Attacks From First Principles", IEEE S&P 2022.
  J. Hayes, I. Shumailov, E. Triantafillou, A. Khalifa, N. Papernot, "Inexact Unlearning
  Needs More Careful Evaluations to Avoid a False Sense of Privacy", arXiv:2403.01218.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from certun import _validate
from certun.audits.stats import auc_with_ci

__all__ = ["GaussianFit", "fit_gaussians", "likelihood_ratio", "lira_scores",
           "ulira_scores", "per_example_auc", "ULiraAudit", "ulira_audit"]

_MIN_STD = 1e-12


class GaussianFit(NamedTuple):
    """Per-example Gaussian fits of the two pools (arrays of shape ``(P,)``)."""

    mu_in: np.ndarray
    std_in: np.ndarray
    mu_out: np.ndarray
    std_out: np.ndarray


def _pool(name: str, x: Any, keep: Any | None) -> np.ndarray:
    a = _validate.finite_array(**{name: x}, ndim=(1, 2)).astype(np.float64)
    a = a[:, None] if a.ndim == 1 else a
    if keep is not None:
        k = np.asarray(keep, bool)
        if k.shape != a.shape:
            raise _validate.ValidationError(f"mask for {name} must have shape {a.shape}")
        a = np.where(k, a, np.nan)
    if np.any(np.sum(~np.isnan(a), axis=0) < 2):
        raise _validate.ValidationError(f"{name} needs at least 2 shadow values per example")
    return a


def fit_gaussians(in_phi: Any, out_phi: Any, *, in_mask: Any | None = None,
                  out_mask: Any | None = None, center: str = "median",
                  fix_variance: bool = False) -> GaussianFit:
    """Fit the per-example IN and OUT Gaussians from ``(N, P)`` shadow statistics.

    Args:
      in_phi: ``(N, P)`` statistics of the IN shadow models (trained on the example), one
        row per shadow model, one column per example (a 1-D array is one example); at
        least 2 valid values per column.
      out_phi: ``(N', P)`` statistics of the OUT shadow models, same columns as ``in_phi``.
      in_mask: optional boolean mask of the valid entries of ``in_phi`` (its 2-D shape),
        e.g. LiRA's ``keep`` matrix when ``in_phi`` and ``out_phi`` are the same array.
      out_mask: optional boolean mask of the valid entries of ``out_phi`` (e.g. ``~keep``).
      center: ``"median"`` (reference code) or ``"mean"``.
      fix_variance: one global standard deviation per pool.
    """
    _validate.choice(("median", "mean"), center=center)
    a = _pool("in_phi", in_phi, in_mask)
    b = _pool("out_phi", out_phi, out_mask)
    if a.shape[1] != b.shape[1]:
        raise _validate.ValidationError("in_phi and out_phi must have the same number of examples")
    if np.isnan(a).any() or np.isnan(b).any():
        c = np.nanmedian if center == "median" else np.nanmean
    else:  # the same values without the masked-array path (many times faster)
        c = np.median if center == "median" else np.mean
    mu_a, mu_b = c(a, axis=0), c(b, axis=0)
    if fix_variance:
        sa = np.full(a.shape[1], np.nanstd(a - np.nanmean(a, 0)))
        sb = np.full(b.shape[1], np.nanstd(b - np.nanmean(b, 0)))
    else:
        sa, sb = np.nanstd(a, axis=0), np.nanstd(b, axis=0)
    return GaussianFit(mu_a, np.maximum(sa, _MIN_STD), mu_b, np.maximum(sb, _MIN_STD))


def _logpdf(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)


def likelihood_ratio(target_phi: Any, fit: GaussianFit) -> np.ndarray:
    """``log N(phi; mu_in, sd_in^2) - log N(phi; mu_out, sd_out^2)`` (``(T, P)`` or ``(P,)``)."""
    t = _validate.finite_array(target_phi=target_phi, ndim=(1, 2)).astype(np.float64)
    return _logpdf(t, fit.mu_in, fit.std_in) - _logpdf(t, fit.mu_out, fit.std_out)


def lira_scores(target_phi: Any, shadow_phi: Any, keep: Any, *, center: str = "median",
                fix_variance: bool = False) -> np.ndarray:
    """Online LiRA; ``keep[i, j]`` is true when shadow model ``i`` trained on example ``j``."""
    k = np.asarray(keep, bool)
    fit = fit_gaussians(shadow_phi, shadow_phi, in_mask=k, out_mask=~k, center=center,
                        fix_variance=fix_variance)
    return likelihood_ratio(target_phi, fit)


def ulira_scores(target_phi: Any, unlearned_phi: Any, retrained_phi: Any, *,
                 center: str = "median", fix_variance: bool = False) -> np.ndarray:
    """U-LiRA: IN pool = shadow models that trained on and then unlearned each example."""
    fit = fit_gaussians(unlearned_phi, retrained_phi, center=center, fix_variance=fix_variance)
    return likelihood_ratio(target_phi, fit)


def per_example_auc(member_scores: Any, nonmember_scores: Any) -> np.ndarray:
    """Per-example AUC over target models (0.5 means no information).

    ``member_scores`` are ``(T1, P)`` scores of target models where the example was in (and
    unlearned), ``nonmember_scores`` ``(T0, P)`` where it was out.
    """
    a = _validate.finite_array(member_scores=member_scores, ndim=2)
    b = _validate.finite_array(nonmember_scores=nonmember_scores, ndim=2)
    if a.shape[1] != b.shape[1]:
        raise _validate.ValidationError("member_scores and nonmember_scores need equal columns")
    return np.array([auc_with_ci(a[:, j], b[:, j]).auc for j in range(a.shape[1])])


class ULiraAudit(NamedTuple):
    """The outcome of :func:`ulira_audit`.

    Attributes:
      auc: mean over the audited examples of the per-example AUC (0.5: as good as retraining).
      lower, upper: a ``1 - alpha`` percentile-bootstrap interval of that mean, resampling the
        shadow models (the Gaussians refitted) and the target models (the examples share
        them, so they are not independent).
      per_example: ``(P,)`` per-example AUCs.
      shadow, target: models per pool used to fit the Gaussians / to score.
    """

    auc: float
    lower: float
    upper: float
    per_example: np.ndarray
    shadow: int
    target: int


def _mean_auc(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over columns of the Mann-Whitney AUC of ``a[:, j]`` above ``b[:, j]`` (ties 1/2)."""
    gt = np.mean(a[:, None, :] > b[None, :, :], axis=(0, 1))
    eq = np.mean(a[:, None, :] == b[None, :, :], axis=(0, 1))
    return float(np.mean(gt + 0.5 * eq))


def ulira_audit(unlearned_phi: Any, retrained_phi: Any, *, alpha: float = 0.05,
                fix_variance: bool = True, num_resamples: int = 1000,
                seed: int = 0) -> ULiraAudit:
    """U-LiRA (Hayes et al.) from one ensemble of unlearned and one of retrained models.

    The ``N`` rows of each pool are split in halves: the first half of both pools are the
    shadow models that fit the per-example Gaussians (:func:`ulira_scores`), the second
    halves are the target models scored by them; the per-example AUC separates the target
    models that unlearned the example from those retrained without it
    (:func:`per_example_auc`), and the audit reports its mean over the examples, with a
    bootstrap interval over the models (shadow and target halves resampled separately).

    Args:
      unlearned_phi: ``(N, P)`` statistics (margins) of models trained on the examples and
        then unlearned with the mechanism under audit, ``N >= 8``.
      retrained_phi: ``(N', P)`` statistics of models retrained without them, ``N' >= 8``.
      alpha: miss probability of the interval.
      fix_variance: one global standard deviation per pool (recommended for few shadows).
      num_resamples: bootstrap resamples of the models.
      seed: bootstrap seed.
    """
    a = _validate.finite_array(unlearned_phi=unlearned_phi, ndim=2).astype(np.float64)
    b = _validate.finite_array(retrained_phi=retrained_phi, ndim=2).astype(np.float64)
    if a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 8:
        raise _validate.ValidationError(
            "unlearned_phi and retrained_phi need the same examples (columns) and at least 8 "
            f"models each, got {a.shape} and {b.shape}")
    al = _validate.in_range(0.0, 1.0, alpha=alpha)
    B = _validate.integer(num_resamples=num_resamples, minimum=10)
    ha, hb = a.shape[0] // 2, b.shape[0] // 2
    fit = fit_gaussians(a[:ha], b[:hb], fix_variance=fix_variance)
    member = likelihood_ratio(a[ha:], fit)
    nonmember = likelihood_ratio(b[hb:], fit)
    per = per_example_auc(member, nonmember)
    rng = np.random.default_rng(seed)

    def pick(x: np.ndarray) -> np.ndarray:
        return x[rng.integers(0, x.shape[0], x.shape[0])]

    boots = []
    for _ in range(B):  # resample shadows (refit) and targets, each within its own half
        f = fit_gaussians(pick(a[:ha]), pick(b[:hb]), fix_variance=fix_variance)
        boots.append(_mean_auc(likelihood_ratio(pick(a[ha:]), f),
                               likelihood_ratio(pick(b[hb:]), f)))
    lo, hi = np.quantile(boots, [al / 2, 1 - al / 2])
    return ULiraAudit(float(np.mean(per)), float(lo), float(hi), per, ha,
                      min(a.shape[0] - ha, b.shape[0] - hb))
