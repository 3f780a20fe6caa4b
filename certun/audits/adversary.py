r"""Adversarial multi-statistic epsilon audits of every certified mechanism in certun.

:mod:`certun.audits.epsilon` scores each run with one statistic: the projection on the mean
shift, the most powerful test when the two worlds are Gaussians with the **same**
covariance. A mechanism that gets its noise scale wrong -- e.g. one whose ``sigma`` depends
on the size of the data set it runs on, so that neighbouring worlds of ``n`` and ``n - 1``
rows are noised differently -- is invisible to that statistic and obvious to one that looks
at the noise scale. This module attacks a mechanism the way an adversary who knows both
neighbouring data sets and the mechanism (everything except the noise) would:

* a **world pair** (:class:`Worlds`) holds one sampler per world -- ``key -> output``
  (a flat float64 vector), built from certun's own code (the public API where the output
  is a deterministic model plus noise, the mechanism's own jitted training where every
  output is a training run) -- plus what is public about the worlds: the noiseless centres
  and the noise scales, when the mechanism's noise is added to a deterministic model;
* :func:`adversarial_audit` scores every output with ``m = 4`` statistics
  (:data:`STATISTICS`): the projection on the mean shift (Fisher's discriminant when the
  centres are estimated), the squared norm ``||out - c||^2`` around the centre ``c``
  (sensitive to the noise scale), the coordinate-wise maximum ``|out - c|_inf`` and the
  Gaussian log-likelihood ratio with each world's own centre and scale; the parameters of
  the statistics (estimated ones on a *fit* split), their thresholds and orientations (on a
  *selection* split) never see the *evaluation* runs, on which each statistic gets a
  Clopper-Pearson bound at ``alpha / m`` (Bonferroni): the largest of the ``m`` bounds holds
  with probability ``1 - alpha``;
* world builders for every certified mechanism under its stated adjacency, with a
  ``sigma_scale`` hook (per world) that mis-calibrates the noise only, for power checks:
  :func:`gaussian_output_worlds`, :func:`guo_worlds`, :func:`sekhari_worlds`,
  :func:`descent_to_delete_worlds`, :func:`langevin_worlds`, :func:`zhang_worlds`,
  :func:`private_release_worlds` (and ``old_release_calibration=True``: the release's noise
  scale following the size of each world's data under add/remove adjacency, the defect of
  issue 14, kept as a twin so its regression test holds after the fix).

Derivations, the sample sizes and the expected sizes of the bounds:
``proofs/audit_epsilon.md`` (section "Adversarial multi-statistic audit").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from certun import _validate
from certun.accounting.gaussian import calibrate, guo_budget
from certun.audits.epsilon import (
    AuditViolation,
    Canary,
    guo_removal_worlds,
    worst_case_canary,
)
from certun.audits.stats import epsilon_from_scores
from certun.primitives.noise import gaussian_like, release_key

__all__ = [
    "STATISTICS",
    "Worlds",
    "StatisticBound",
    "AdversarialAudit",
    "adversarial_audit",
    "twin",
    "loose_scale",
    "safe_unit_rows",
    "audit_problem",
    "gaussian_output_worlds",
    "guo_worlds",
    "sekhari_worlds",
    "descent_to_delete_worlds",
    "langevin_worlds",
    "pnsgd_worlds",
    "pnsgd_audit_problem",
    "zhang_worlds",
    "private_release_worlds",
]

#: The statistics of :func:`adversarial_audit`, in the order of its per-statistic bounds.
STATISTICS = ("mean_shift", "norm_sq", "max_abs", "gaussian_lr")

_U = 2.0 ** -53
_API_NOISE_SEED = 11  # noise key of the releases built through the API (checked in tests)


class Worlds(NamedTuple):
    """Two neighbouring worlds of a mechanism, as samplers of its published output.

    Attributes:
      mechanism: the audited mechanism's name (with a twin's tag for mis-calibrated twins).
      adjacency: the adjacency the worlds realise (the certificate's).
      config: the configuration (n, d, lam, ...), JSON-ready.
      epsilon, delta: the certified guarantee the audit compares with.
      sampler_in, sampler_out: module-level ``(key, args) -> (d,)`` float64 output of one run
        (jit- and vmap-able; module-level, so one compilation serves every audit of a shape).
      args_in, args_out: each world's arguments of its sampler (pytrees of arrays).
      center_in, center_out: the noiseless outputs when public (deterministic model plus
        noise), else ``None`` (estimated on the fit split).
      sigma_in, sigma_out: each world's noise standard deviation when public, else ``None``.
      runs_are_training: each output is a whole training run (fewer outputs are drawn).
      details: anything else worth reporting (sigmas, factor of a twin, ...).
    """

    mechanism: str
    adjacency: str
    config: dict
    epsilon: float
    delta: float
    sampler_in: Callable[[jax.Array, Any], jax.Array]
    sampler_out: Callable[[jax.Array, Any], jax.Array]
    args_in: Any
    args_out: Any
    center_in: np.ndarray | None = None
    center_out: np.ndarray | None = None
    sigma_in: float | None = None
    sigma_out: float | None = None
    runs_are_training: bool = False
    details: dict = {}


class StatisticBound(NamedTuple):
    """One statistic's test and Clopper-Pearson bound (at ``alpha / m``) on the evaluation runs.

    Attributes:
      statistic: its name (one of :data:`STATISTICS`).
      epsilon_lower: the lower bound.
      threshold, sign: the test ``sign * score >= threshold`` (chosen on the selection split).
      tp, n_in, fp, n_out: the evaluation counts.
      point_estimate: epsilon from the raw rates (an estimate, not a bound).
    """

    statistic: str
    epsilon_lower: float
    threshold: float
    sign: int
    tp: int
    n_in: int
    fp: int
    n_out: int
    point_estimate: float


class AdversarialAudit(NamedTuple):
    """The outcome of :func:`adversarial_audit`.

    Attributes:
      mechanism, adjacency, config: from the :class:`Worlds`.
      epsilon_claimed, delta, alpha: the certified guarantee and the total miss probability.
      runs_per_world: outputs drawn per world (fit + selection + evaluation).
      split: ``{"fit": ..., "select": ..., "evaluate": ...}`` runs per world.
      per_statistic: one :class:`StatisticBound` per statistic (Bonferroni ``alpha / m``).
      epsilon_lower: the largest of them (holds with probability ``1 - alpha``).
      best_statistic: the statistic that gave it.
      verdict: ``"consistent"`` or ``"violated"``.
      details: the worlds' details plus the statistics' parameters.
    """

    mechanism: str
    adjacency: str
    config: dict
    epsilon_claimed: float
    delta: float
    alpha: float
    runs_per_world: int
    split: dict
    per_statistic: tuple
    epsilon_lower: float
    best_statistic: str
    verdict: str
    details: dict

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = self._asdict()
        d["per_statistic"] = [s._asdict() for s in self.per_statistic]
        return d


# --------------------------------------------------------------------------- the audit


@functools.lru_cache(maxsize=64)
def _batched(sampler: Callable, scored: bool) -> Callable:
    if scored:
        return jax.jit(jax.vmap(lambda k, a, p: _scores(sampler(k, a), p), in_axes=(0, None, None)))
    return jax.jit(jax.vmap(lambda k, a, p: sampler(k, a), in_axes=(0, None, None)))


def _draw(sampler: Callable, args: Any, key: jax.Array, num: int, batch_size: int,
          params: Any = None) -> np.ndarray:
    """``num`` outputs (scores, with ``params``), batch ``j`` keyed by ``fold_in(key, j)``."""
    if num == 0:
        return np.zeros((0, 0))
    bs = batch_size  # one compiled shape for every split and every audit of the same worlds
    run = _batched(sampler, params is not None)
    out, done, j = [], 0, 0
    while done < num:
        keys = jax.random.split(jax.random.fold_in(key, j), bs)
        v = run(keys, args, params)
        out.append(np.asarray(v, np.float64)[: num - done])
        done += bs
        j += 1
    return np.concatenate(out)


def _scores(x: jax.Array, p: dict) -> jax.Array:
    """The ``m`` statistics of one output ``x`` (jitted, vmapped)."""
    r = x - p["mid"]
    d = x.shape[0]
    proj = jnp.vdot(r, p["direction"])
    norm_sq = jnp.vdot(r, r)
    max_abs = jnp.max(jnp.abs(r))
    ri, ro = x - p["c_in"], x - p["c_out"]
    lr = (-jnp.vdot(ri, ri) / (2 * p["s_in"] ** 2) - d * jnp.log(p["s_in"])
          + jnp.vdot(ro, ro) / (2 * p["s_out"] ** 2) + d * jnp.log(p["s_out"]))
    return jnp.stack([proj, norm_sq, max_abs, lr])


def _statistic_params(w: Worlds, fit_in: np.ndarray, fit_out: np.ndarray,
                      shrinkage: float) -> tuple[dict[str, Any], str]:
    public = w.center_in is not None and w.sigma_in is not None
    if public:
        assert w.sigma_in is not None and w.sigma_out is not None
        c_in = np.asarray(w.center_in, np.float64).ravel()
        c_out = np.asarray(w.center_out, np.float64).ravel()
        s_in, s_out = float(w.sigma_in), float(w.sigma_out)
        diff = c_in - c_out
        nd = float(np.linalg.norm(diff))
        direction = diff / nd if nd > 0 else np.zeros_like(diff)
        how = "public: noiseless centres and sigmas of both worlds (known to the adversary)"
    else:
        d = fit_in.shape[1]
        c_in, c_out = fit_in.mean(0), fit_out.mean(0)
        s_in = float(np.sqrt(np.mean(np.sum((fit_in - c_in) ** 2, 1)) / d))
        s_out = float(np.sqrt(np.mean(np.sum((fit_out - c_out) ** 2, 1)) / d))
        C = 0.5 * (np.cov(fit_in.T) + np.cov(fit_out.T)).reshape(d, d)
        C = C + shrinkage * max(np.trace(C) / d, 1e-300) * np.eye(d)
        direction = np.linalg.solve(C, c_in - c_out)          # Fisher's discriminant
        direction = direction / max(float(np.linalg.norm(direction)), 1e-300)
        how = (f"estimated on {fit_in.shape[0]} fit runs per world (means, per-world scale, "
               "Fisher direction with shrinkage)")
    p = {"mid": 0.5 * (c_in + c_out), "direction": direction, "c_in": c_in, "c_out": c_out,
         "s_in": max(s_in, 1e-300), "s_out": max(s_out, 1e-300)}
    return {k: jnp.asarray(v) for k, v in p.items()}, how


def adversarial_audit(worlds: Worlds, *, key: jax.Array, num_runs: int = 20_000,
                      alpha: float = 0.05, select_fraction: float = 0.3,
                      fit_runs: int = 2000, shrinkage: float = 1e-2, batch_size: int = 8192,
                      raise_on_violation: bool = True) -> AdversarialAudit:
    """Attack a mechanism with several statistics; Clopper-Pearson bounds with Bonferroni.

    Per world, ``num_runs`` outputs are drawn with fixed keys (``fold_in`` of ``key`` by
    world and split): ``fit_runs`` to estimate what is not public (centres, scales and the
    Fisher direction; none when the worlds give their centres and sigmas), a
    ``select_fraction`` of the rest to choose each statistic's threshold and orientation
    (:func:`certun.audits.stats.choose_test`, at level ``alpha / m``), and the remaining
    runs to evaluate them. Statistic ``i`` gives the Clopper-Pearson lower bound
    ``eps_i`` at ``alpha / m``; with probability ``1 - alpha`` none of them exceeds the true
    epsilon (union bound), so ``max_i eps_i`` is a ``1 - alpha`` lower bound.

    Args:
      worlds: the two worlds (:class:`Worlds`).
      key: base key (world "in" folds in 1, "out" 0; then the split 0, 1, 2).
      num_runs: outputs per world (all splits together).
      alpha: total miss probability (over both rates and all statistics).
      select_fraction: fraction of the non-fit runs that choose the tests.
      fit_runs: outputs per world that estimate the statistics' parameters (used only when
        the centres or sigmas are not public; capped at a third of ``num_runs``).
      shrinkage: ridge on the pooled covariance of the Fisher direction (times its mean
        eigenvalue).
      batch_size: outputs per compiled batch (only the ``m`` scores leave the device).
      raise_on_violation: raise :class:`~certun.audits.epsilon.AuditViolation` when the
        bound exceeds the certified epsilon.

    Returns:
      An :class:`AdversarialAudit`.

    Raises:
      AuditViolation: if ``raise_on_violation`` and the bound exceeds ``worlds.epsilon``.
    """
    n = _validate.integer(num_runs=num_runs, minimum=20)
    a = _validate.in_range(0.0, 1.0, alpha=alpha)
    frac = _validate.in_range(0.0, 1.0, select_fraction=select_fraction)
    bs = _validate.integer(batch_size=batch_size, minimum=1)
    eps = _validate.epsilon(epsilon=worlds.epsilon)
    dlt = _validate.delta(delta=worlds.delta)
    public = worlds.center_in is not None and worlds.sigma_in is not None
    n_fit = 0 if public else min(_validate.integer(fit_runs=fit_runs, minimum=4), n // 3)
    n_sel = int(round(frac * (n - n_fit)))
    n_eval = n - n_fit - n_sel
    if min(n_sel, n_eval) < 10:
        raise _validate.ValidationError("num_runs too small for the selection and evaluation "
                                        "splits; raise num_runs")
    m = len(STATISTICS)
    ks = {w: jax.random.fold_in(key, i) for w, i in (("in", 1), ("out", 0))}
    args = {"in": worlds.args_in, "out": worlds.args_out}
    smp = {"in": worlds.sampler_in, "out": worlds.sampler_out}
    fit = {w: _draw(smp[w], args[w], jax.random.fold_in(ks[w], 0), n_fit, bs)
           for w in ks}
    params, how = _statistic_params(worlds, fit["in"], fit["out"], shrinkage)
    sel = {w: _draw(smp[w], args[w], jax.random.fold_in(ks[w], 1), n_sel, bs, params)
           for w in ks}
    ev = {w: _draw(smp[w], args[w], jax.random.fold_in(ks[w], 2), n_eval, bs, params)
          for w in ks}
    per = []
    for i, name in enumerate(STATISTICS):
        tb = epsilon_from_scores(ev["in"][:, i], ev["out"][:, i], alpha=a / m, delta=dlt,
                                 threshold="split", orientation="either",
                                 search_scores=(sel["in"][:, i], sel["out"][:, i]))
        b = tb.bound
        per.append(StatisticBound(name, b.epsilon, tb.threshold, tb.sign, b.tp, b.n_in, b.fp,
                                  b.n_out, b.point_estimate))
    best = max(per, key=lambda s: s.epsilon_lower)
    verdict = "violated" if best.epsilon_lower > eps else "consistent"
    details = dict(worlds.details, statistic_parameters=how,
                   sigma_in=float(params["s_in"]), sigma_out=float(params["s_out"]),
                   center_distance=float(jnp.linalg.norm(params["c_in"] - params["c_out"])))
    res = AdversarialAudit(worlds.mechanism, worlds.adjacency, dict(worlds.config), eps, dlt, a,
                           n, {"fit": n_fit, "select": n_sel, "evaluate": n_eval}, tuple(per),
                           best.epsilon_lower, best.statistic, verdict, details)
    if verdict == "violated" and raise_on_violation:
        raise AuditViolation(
            f"{worlds.mechanism} ({worlds.adjacency}): empirical epsilon lower bound "
            f"{best.epsilon_lower:.4f} from the {best.statistic} statistic exceeds the certified "
            f"epsilon {eps:g} (delta {dlt:g}; TP {best.tp}/{best.n_in}, FP {best.fp}/"
            f"{best.n_out}, alpha {a:g} over {m} statistics); the certificate does not hold")
    return res


# --------------------------------------------------------------------------- problems


def safe_unit_rows(A: Any) -> np.ndarray:
    """Rows of ``A`` scaled to L2 norm ``1 - (d + 2) u``, ``u = 2^-53`` (zero rows stay zero).

    Any summation order then computes a norm ``<= 1`` (the canaries of this module are built
    with it).
    """
    A = np.atleast_2d(np.asarray(A, np.float64))
    d = A.shape[1]
    nr = np.linalg.norm(A, axis=1, keepdims=True)
    return np.where(nr > 0, A / np.where(nr > 0, nr, 1.0), 0.0) * (1.0 - (d + 2) * _U)


def audit_problem(n: int, d: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small hard problem: ``n`` Gaussian rows of dimension ``d``, labels ``+-1``.

    Rows are scaled by :func:`safe_unit_rows`; labels come from a random direction with
    10 % flipped (both classes present).
    """
    rng = np.random.default_rng(seed)
    X = safe_unit_rows(rng.standard_normal((n, d)))
    w = rng.standard_normal(d)
    y = np.where(X @ w >= 0, 1.0, -1.0)
    y = np.where(rng.random(n) < 0.1, -y, y)
    if np.all(y == y[0]):
        y[0] = -y[0]
    return X, y


def _canary(X: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    c = worst_case_canary(X, y, lam=lam)
    return safe_unit_rows(c.x)[0], float(c.y)


def _noised(k: jax.Array, a: tuple) -> jax.Array:
    """One output of a deterministic model ``c`` plus ``gaussian_like(k, c, s, release=0)``."""
    c, s = a
    return c + gaussian_like(k, c, s, release=0)


def _gargs(center: np.ndarray, sigma: float) -> tuple:
    return jnp.asarray(center, jnp.float64), jnp.asarray(sigma, jnp.float64)


def _flat(tree: Any) -> np.ndarray:
    return np.asarray(ravel_pytree(tree)[0], np.float64)


def _scales(sigma_scale: float | tuple[float, float]) -> tuple[float, float]:
    s: tuple[float, ...] = ((float(sigma_scale), float(sigma_scale))
                            if isinstance(sigma_scale, (int, float, np.number))
                            else tuple(sigma_scale))
    if len(s) != 2 or not all(v > 0 and math.isfinite(v) for v in s):
        raise _validate.ValidationError(
            "sigma_scale must be a positive number or a pair (world in, world out)")
    return float(s[0]), float(s[1])


def _tag(name: str, scales: tuple[float, float], extra: str = "") -> str:
    if scales == (1.0, 1.0) and not extra:
        return name
    t = [] if scales == (1.0, 1.0) else [f"sigma_x{scales[0]:g}/{scales[1]:g}"]
    return name + "[twin: " + ", ".join(t + ([extra] if extra else [])) + "]"


def _gaussian_pair(name: str, adjacency: str, config: dict, eps: float, dlt: float,
                   c_in: np.ndarray, c_out: np.ndarray, s_in: float, s_out: float,
                   details: dict) -> Worlds:
    return Worlds(name, adjacency, config, eps, dlt, _noised, _noised, _gargs(c_in, s_in),
                  _gargs(c_out, s_out), c_in, c_out, s_in, s_out, False,
                  dict(details, sigma_world_in=s_in, sigma_world_out=s_out,
                       noiseless_distance=float(np.linalg.norm(c_in - c_out))))


# --------------------------------------------------------------------------- twins


def twin(worlds: Worlds, sigma_scale: float | tuple[float, float] = 1.0, tag: str = "", *,
         steps: int | None = None) -> Worlds:
    """A deliberately mis-calibrated twin: the same worlds with the noise scaled per world.

    Only the calibration changes: for a deterministic model plus noise each world's
    ``sigma`` is multiplied by its factor; for Guo et al. the objective perturbation's scale
    (the budget stays the certified one); for Langevin the chain's noise (initial and per
    step; the step counts stay the certified ones). The claimed epsilon is kept, so a
    powerful audit must report a violation.

    Args:
      worlds: honest worlds from a builder of this module.
      sigma_scale: a factor for both worlds or a pair ``(in, out)``; ``(1, n / (n - 1))``
        models a noise scale that follows each world's row count ``n_t``.
      tag: a name for the twin in reports (default the factors).
      steps: Langevin only: run ``steps`` unlearning steps instead of the certified ``K``
        (a step count calibrated for a smaller epsilon than the chain's noise gives).
    """
    sc = _scales(sigma_scale)
    if steps is not None and worlds.sampler_in is not _langevin_sample_in:
        raise _validate.ValidationError("steps is a Langevin twin's argument")
    label = tag or (f"sigma x{sc[0]:.3g}/{sc[1]:.3g}"
                    + ("" if steps is None else f", K = {steps}"))
    det = dict(worlds.details, twin=label, twin_sigma_scale=list(sc))
    name = f"{worlds.mechanism}[twin: {label}]"
    if worlds.sampler_in is _noised:
        assert worlds.sigma_in is not None and worlds.sigma_out is not None
        assert worlds.center_in is not None and worlds.center_out is not None
        s_in, s_out = worlds.sigma_in * sc[0], worlds.sigma_out * sc[1]
        return worlds._replace(mechanism=name, args_in=_gargs(worlds.center_in, s_in),
                               args_out=_gargs(worlds.center_out, s_out), sigma_in=s_in,
                               sigma_out=s_out, details=det)
    if sc[0] != sc[1]:
        raise _validate.ValidationError(
            "per-world noise factors need a mechanism whose output is a model plus noise")
    if worlds.sampler_in is _guo_sample_in:
        P = dict(worlds.args_in, sigma=worlds.args_in["sigma"] * sc[0])
        return worlds._replace(mechanism=name, args_in=P, args_out=P, details=det)
    if worlds.sampler_in is _langevin_sample_in:
        a = dict(worlds.args_in, init_std=worlds.args_in["init_std"] * sc[0],
                 noise_std=worlds.args_in["noise_std"] * sc[0])
        if steps is not None:
            a["K"] = jnp.asarray(_validate.integer(steps=steps, minimum=0), jnp.int32)
        return worlds._replace(mechanism=name, args_in=a, args_out=a, details=det)
    raise _validate.ValidationError(f"no twin for the worlds of {worlds.mechanism}")


def loose_scale(worlds: Worlds, mu: float = 3.0) -> float:
    """The noise factor of a twin that adds ``mu`` noise standard deviations of real shift.

    For a deterministic model plus noise: ``min(1/2, ||c_in - c_out|| / (mu sigma))``. When
    a certified sensitivity is much looser than the real distance between the worlds,
    halving the noise still leaves the mechanism private; this factor makes the twin's
    mis-calibration as large as the measured looseness requires (reported with the twin).
    """
    if worlds.sampler_in is not _noised:
        raise _validate.ValidationError("loose_scale needs public centres and sigmas")
    assert worlds.sigma_in is not None and worlds.sigma_out is not None  # public sigmas
    dist = float(np.linalg.norm(np.asarray(worlds.center_in) - np.asarray(worlds.center_out)))
    return float(min(0.5, dist / (mu * max(worlds.sigma_in, worlds.sigma_out))))


# --------------------------------------------------------------------------- world builders


def gaussian_output_worlds(*, d: int = 100, epsilon: float = 1.0, delta: float = 1e-5,
                           sensitivity: float = 1.0,
                           sigma_scale: float | tuple[float, float] = 1.0) -> Worlds:
    """The Gaussian output mechanism ``f(D) + N(0, sigma^2 I)`` on a pair at the sensitivity.

    ``f(D) = 0``, ``f(D') = sensitivity * e_1`` in ``d`` dimensions; ``sigma`` from
    :func:`certun.accounting.calibrate` (analytic), noise from ``gaussian_like``.
    """
    eps, dlt = _validate.epsilon(epsilon=epsilon), _validate.delta(delta=delta)
    sens = _validate.positive(sensitivity=sensitivity)
    d = _validate.integer(d=d, minimum=1)
    sc = _scales(sigma_scale)
    sig = calibrate(eps, dlt, sens).sigma
    c_in = np.zeros(d)
    c_in[0] = sens
    return _gaussian_pair(_tag("gaussian_output", sc), "any (pair at the sensitivity)",
                          {"d": d, "sensitivity": sens}, eps, dlt, c_in, np.zeros(d),
                          sig * sc[0], sig * sc[1], {"sigma_certified": sig})


def guo_worlds(X: Any, y: Any, *, lam: float, sigma: float, epsilon: float, delta: float,
               sigma_scale: float = 1.0, enforce_budget: bool = True, gamma: float = 0.25,
               train_tol: float = 1e-10) -> Worlds:
    """Guo et al.'s certified removal of the worst-case canary vs retraining without it.

    The worlds of :func:`certun.audits.epsilon.guo_removal_worlds` (checked there against
    ``certified_removal``): "in" trains on ``D + {z}`` with ``b`` and removes ``z`` by the
    Newton step, retraining with a fresh ``b`` when the charged residual exceeds the budget
    (``auto_retrain``); "out" trains on ``D``. The budget is the certified one,
    ``sigma epsilon / c``; ``sigma_scale`` scales only the drawn ``b`` (a mis-calibrated twin).
    Every output is a training run.
    """
    X = _validate.unit_rows(X=X, tol=0.0)
    sig = _validate.positive(sigma=sigma)
    eps, dlt = _validate.epsilon(epsilon=epsilon), _validate.delta(delta=delta)
    s = _validate.positive(sigma_scale=sigma_scale)
    x, yz = _canary(X, np.asarray(y, np.float64), lam)
    can = Canary(x, yz, "grnb_norm", float("nan"), float("nan"))
    budget = guo_budget(sig, eps, dlt)
    gw = guo_removal_worlds(X, y, can, lam=lam, sigma=sig * s, budget=budget, gamma=gamma,
                            enforce_budget=enforce_budget, train_tol=train_tol)
    tag = "" if enforce_budget else "budget unchecked"
    return Worlds(_tag("guo2020_certified_removal", (s, s), tag), "removal",
                  {"n": int(X.shape[0]), "d": int(X.shape[1]), "lam": lam, "sigma": sig,
                   "canary": "worst-case (grnb_norm)"}, eps, dlt, _guo_sample_in,
                  _guo_sample_out, gw.params, gw.params, runs_are_training=True,
                  details={"budget": budget, "sigma_scale": s, "enforce_budget": enforce_budget})


def _guo_sample_in(k: jax.Array, P: dict) -> jax.Array:
    """Guo's world "in": removal of the canary, ``auto_retrain`` (fresh ``b``) when refused."""
    from certun.audits.epsilon import _guo_in, _guo_retrain

    w, served, _, _ = _guo_in(k, P)
    return jnp.where(served, w, _guo_retrain(k, P)[0])


def _guo_sample_out(k: jax.Array, P: dict) -> jax.Array:
    """Guo's world "out": training on ``D`` with ``b`` of release 0."""
    from certun.audits.epsilon import _guo_out

    return _guo_out(k, P)[0]


def _unlearned_vs_retrained(what: str, unl: Any, Xz: np.ndarray, yz: np.ndarray, iz: int,
                            sigma_scale: float | tuple[float, float], config: dict,
                            noiseless: Callable[[Any], Any]) -> Worlds:
    """Output-perturbation worlds through the public API: ``init(D + {z})``, ``unlearn([z])``.

    World "in" is the noiseless unlearned model (``noiseless(state)``), world "out" the
    noiseless ``retrain`` reference; both are noised with the certificate's ``sigma`` (times
    ``sigma_scale`` for a twin). Both centres are deterministic, so the outputs are
    ``centre + gaussian_like(k, centre, sigma)``.
    """
    res = unl.unlearn(unl.init(Xz, yz, jax.random.key(0)), [iz])
    if res.params is None:
        raise RuntimeError(f"{what} refused the request: {res.certificate.reason}")
    cert = res.certificate
    sig = float(cert.sigma)
    c_in, c_out = _flat(noiseless(res.state)), _flat(unl.retrain(res.state).params)
    sc = _scales(sigma_scale)
    return _gaussian_pair(_tag(cert.mechanism, sc), cert.adjacency,
                          {"n": int(Xz.shape[0]), "d": int(Xz.shape[1]), **config,
                           "canary": "worst-case (grnb_norm)"},
                          float(cert.epsilon), float(cert.delta), c_in, c_out,
                          sig * sc[0], sig * sc[1], {"sigma_certified": sig})


def sekhari_worlds(X: Any, y: Any, *, lam: float, epsilon: float, delta: float,
                   max_removals: int = 1, sigma_scale: float | tuple[float, float] = 1.0,
                   **kwargs: Any) -> Worlds:
    """Sekhari et al.'s Newton unlearning of the canary vs noised retraining (public API).

    ``init(D + {z})`` then ``unlearn([z])`` gives the noiseless ``W_bar`` and the
    certificate's ``sigma``; ``retrain`` gives ``A(D)``, noised with the same ``sigma``
    (the certificate's reference). Both noiseless models are deterministic, so the outputs
    are ``centre + gaussian_like(k, centre, sigma)``.
    """
    from certun.unlearners.sekhari import newton_unlearning

    Xz, yz, iz = _with_canary(X, y, lam)
    unl = newton_unlearning(lam=lam, epsilon=epsilon, delta=delta, max_removals=max_removals,
                            **kwargs)
    return _unlearned_vs_retrained("Sekhari unlearning", unl, Xz, yz, iz, sigma_scale,
                                   {"lam": lam, "max_removals": max_removals},
                                   lambda st: st.W_bar)


def descent_to_delete_worlds(X: Any, y: Any, *, lam: float, epsilon: float, delta: float,
                             steps: int | None = 1, sigma_scale: float | tuple[float, float] = 1.0,
                             **kwargs: Any) -> Worlds:
    """Descent-to-Delete's release after deleting the canary vs the noised reference (API).

    ``init(D + {z})`` then ``unlearn([z])``: the noiseless internal iterate and the
    certificate's ``sigma``; ``retrain`` (no key): the noiseless reference (``T`` steps from
    0 on ``D``), noised with the same ``sigma``.
    """
    from certun.unlearners.descent_to_delete import descent_to_delete

    Xz, yz, iz = _with_canary(X, y, lam)
    unl = descent_to_delete(lam=lam, epsilon=epsilon, delta=delta, steps=steps, **kwargs)
    return _unlearned_vs_retrained("Descent-to-Delete", unl, Xz, yz, iz, sigma_scale,
                                   {"lam": lam, "steps": steps}, lambda st: st.W)


def langevin_worlds(X: Any, y: Any, *, lam: float, sigma: float, epsilon: float, delta: float,
                    burn_in: int = 200, sigma_scale: float = 1.0, **kwargs: Any) -> Worlds:
    """Langevin unlearning of the canary vs retraining from scratch; every output is a run.

    The certificate of ``init(D + {z})`` + ``unlearn([z])`` fixes the step size ``eta``,
    the burn-in ``T`` and the unlearning steps ``K``; each output then replays the
    mechanism with certun's own :func:`certun.unlearners.langevin.noisy_gd` from a fresh
    key ``k`` exactly as ``init``/``unlearn``/``retrain`` do (``w_0`` from
    ``gaussian_like(release_key(k, 0), ...)``, ``T`` steps on ``D + {z}``, ``K`` on ``D``
    with ``release_key(k, 1)``; the reference: ``w_0`` from ``k`` and ``T + K`` steps on
    ``D``). ``details`` keeps the API's own outputs for ``jax.random.key(0)`` (the published
    model after the request, and ``retrain``'s draw), which ``tests/audits/test_adversary.py``
    compares with the samplers.
    ``sigma_scale`` scales the chain's noise (initial and per step) only, not ``K``.
    """
    from certun.accounting import langevin as acct
    from certun.unlearners.langevin import langevin_unlearning

    Xz, yz, iz = _with_canary(X, y, lam)
    s = _validate.positive(sigma_scale=sigma_scale)
    unl = langevin_unlearning(lam=lam, sigma=sigma, epsilon=epsilon, delta=delta,
                              burn_in=burn_in, **kwargs)
    st = unl.init(Xz, yz, jax.random.key(0))
    res = unl.unlearn(st, [iz])
    if res.params is None:
        raise RuntimeError(f"Langevin unlearning refused the request: {res.certificate.reason}")
    K = int(res.state.steps_total) - burn_in
    api_in = np.asarray(res.state.W, np.float64)[:, 0]              # key(0)'s published model
    api_out = np.asarray(unl.retrain(res.state, jax.random.key(0)).params, np.float64)
    eta = float(res.state.eta)
    init_std = math.sqrt(acct.lsi_constant(sigma, lam)) * s
    Xj = jnp.asarray(Xz)
    m_all = jnp.ones(Xz.shape[0])
    common = {"X": Xj, "Y": jnp.asarray(yz)[:, None], "lam": jnp.asarray(float(lam)),
              "eta": jnp.asarray(eta), "init_std": jnp.asarray(init_std),
              "noise_std": jnp.asarray(math.sqrt(2.0 * eta) * sigma * s),
              "m_all": m_all, "m_del": m_all.at[iz].set(0.0),
              "T": jnp.asarray(burn_in, jnp.int32), "K": jnp.asarray(K, jnp.int32)}
    d = Xz.shape[1]
    return Worlds(_tag(res.certificate.mechanism, (s, s)), res.certificate.adjacency,
                  {"n": int(Xz.shape[0]), "d": d, "lam": lam, "sigma": sigma,
                   "burn_in": burn_in, "K": K, "canary": "worst-case (grnb_norm)"},
                  float(res.certificate.epsilon), float(res.certificate.delta),
                  _langevin_sample_in, _langevin_sample_out, common, common,
                  runs_are_training=True,
                  details={"eta": eta, "K": K, "sigma_scale": s, "api_published_in": api_in,
                           "api_published_out": api_out})


def pnsgd_audit_problem(n: int, d: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    r"""The worst case of PNSGD's bound: ``n - 1`` zero rows and a unit canary ``e_1`` (last).

    Returns ``(X, y, canary)`` for :func:`pnsgd_worlds` (``canary=`` the last index). Zero rows
    add neither gradient nor curvature, so along the canary's direction every step of
    :func:`certun.unlearners.pnsgd_unlearning` is exactly the contraction ``c = 1 - eta lam``
    the accounting uses, plus the canary's own term ``(eta / b) sigmoid(-w_1)`` in world
    "in"; with a small projection radius ``R`` that term is close to the bound
    ``(eta / b) sigmoid(R)`` (``certun.unlearners.pnsgd.gradient_bound``), and with
    ``batch_size = n`` (one batch per epoch) the canary is in every step, so the distance
    between the worlds is the tracking bound ``Z`` of ``proofs/pnsgd_unlearning.md`` §2 up to
    the ratio ``(1/2) / sigmoid(R)`` and the canary's own curvature (§5 measures it). On a
    problem of random rows the other rows' logistic curvature contracts the chains much
    faster than ``c`` and the canary's derivative stays near ``1/2 < M``: the bound is then
    far from attained and no audit can catch a twin with half the noise.

    Args:
      n: rows, the canary included (``>= 2``).
      d: dimension (the canary is ``e_1``; the other coordinates stay pure noise).
    """
    n = _validate.integer(n=n, minimum=2)
    d = _validate.integer(d=d, minimum=1)
    X = np.zeros((n, d))
    X[-1] = safe_unit_rows(np.eye(1, d))[0]
    y = np.where(np.arange(n) % 2 == 0, -1.0, 1.0)  # both labels (zero rows: no effect)
    y[-1] = 1.0
    return X, y, n - 1


def pnsgd_worlds(X: Any, y: Any, *, lam: float, sigma: float, epsilon: float, delta: float,
                 batch_size: int, epochs: int = 6, radius: float | None = None,
                 sigma_scale: float = 1.0, unlearn_epochs: int | None = None,
                 canary: int | None = None) -> Worlds:
    """Minibatch noisy SGD unlearning of the canary vs retraining; every output is a run.

    World "in": :func:`certun.unlearners.pnsgd_unlearning`'s ``init`` on ``D + {z}`` (``E``
    epochs from 0, the cyclic partition and the noise from the run's key ``k``), then its
    ``unlearn([z])`` (``K`` more epochs with ``z`` masked, the noise stream continued). World
    "out": its ``retrain``: ``E + K`` epochs from 0 with ``z`` masked, same partition and key.
    ``K`` is the certified one (fixed by ``key(0)``'s request); ``sigma_scale`` scales the
    step noise only (a twin with that fraction of the certified noise); ``unlearn_epochs``
    replaces ``K`` in both worlds (a twin that unlearns for fewer epochs than certified; 0:
    publishes the model trained with ``z``). ``canary``: the index of the row of ``(X, y)``
    to remove (e.g. :func:`pnsgd_audit_problem`'s); ``None`` appends the worst-case canary
    of the convex audits (:func:`certun.audits.epsilon.worst_case_canary`).
    """
    from certun.unlearners.pnsgd import pnsgd_unlearning

    if canary is None:
        Xz, yz, iz = _with_canary(X, y, lam)
    else:
        Xz = _validate.unit_rows(X=X, tol=0.0)
        yz = np.asarray(y, np.float64)
        iz = _validate.integer(canary=canary, minimum=0, maximum=Xz.shape[0] - 1)
    s = _validate.positive(sigma_scale=sigma_scale)
    unl = pnsgd_unlearning(lam=lam, sigma=sigma, epsilon=epsilon, delta=delta,
                           batch_size=batch_size, epochs=epochs, radius=radius)
    st = unl.init(Xz, yz, jax.random.key(0))
    res = unl.unlearn(st, [iz])
    cert = res.certificate
    K = int(cert.bounds["K"]) if unlearn_epochs is None else _validate.integer(
        unlearn_epochs=unlearn_epochs, minimum=0)
    eta = float(cert.public_inputs["eta"])
    m_all = st.mask
    common = {"X": st.X, "Y": st.Y, "m_all": m_all, "m_del": m_all.at[iz].set(0.0),
              "lam": jnp.asarray(float(lam)), "eta": jnp.asarray(eta),
              "noise": jnp.asarray(math.sqrt(2.0 * eta) * sigma * s),
              "radius": jnp.asarray(0.0 if radius is None else float(radius)),
              "E": jnp.asarray(epochs, jnp.int32), "K": jnp.asarray(K, jnp.int32)}
    api_in = np.asarray(res.params, np.float64).reshape(-1)
    api_out = np.asarray(unl.retrain(res.state).params, np.float64).reshape(-1)
    smp_in, smp_out = _pnsgd_samplers(int(batch_size))
    extra = "" if unlearn_epochs is None else f"K = {K}"
    return Worlds(_tag(cert.mechanism, (s, s), extra), cert.adjacency,
                  {"n": int(Xz.shape[0]), "d": int(Xz.shape[1]), "lam": lam, "sigma": sigma,
                   "batch_size": batch_size, "epochs": epochs, "K": K, "radius": radius,
                   "canary": "worst-case (grnb_norm)" if canary is None else f"row {iz}"},
                  float(cert.epsilon), float(cert.delta), smp_in, smp_out, common, common,
                  runs_are_training=True,
                  details={"K": K, "sigma_scale": s, "certificate_status": cert.status,
                           "shift": float(cert.bounds["shift"]), "mu": float(cert.bounds["mu"]),
                           "api_published_in": api_in, "api_published_out": api_out})


@functools.lru_cache(maxsize=8)
def _pnsgd_samplers(b: int) -> tuple[Callable, Callable]:
    from certun.unlearners.pnsgd import _epochs

    def run(a: dict, W: jax.Array, mask: jax.Array, order: jax.Array, key: jax.Array,
            start: jax.Array, count: jax.Array) -> jax.Array:
        return _epochs(W, a["X"], a["Y"], mask, order, key, start, count, a["lam"], a["eta"],
                       a["noise"], a["radius"], b=b)

    def keys(k: jax.Array, a: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
        order = jax.random.permutation(jax.random.fold_in(k, 0), a["X"].shape[0])
        zero = jnp.zeros((a["X"].shape[1], a["Y"].shape[1]), a["X"].dtype)
        return order, jax.random.fold_in(k, 1), zero

    def sample_in(k: jax.Array, a: dict) -> jax.Array:
        order, nk, zero = keys(k, a)
        W = run(a, zero, a["m_all"], order, nk, jnp.asarray(0), a["E"])
        return run(a, W, a["m_del"], order, nk, a["E"], a["K"]).reshape(-1)

    def sample_out(k: jax.Array, a: dict) -> jax.Array:
        order, nk, zero = keys(k, a)
        return run(a, zero, a["m_del"], order, nk, jnp.asarray(0), a["E"] + a["K"]).reshape(-1)

    return sample_in, sample_out


def _langevin_run(a: dict, W: jax.Array, mask: jax.Array, key: jax.Array,
                  steps: jax.Array) -> jax.Array:
    from certun.unlearners.langevin import _noisy_gd_run

    return _noisy_gd_run(W, a["X"], a["Y"], mask, key, steps, a["lam"], a["eta"], a["noise_std"],
                         0.0, 0.0, loss="logistic", clip=False, project=False, noisy=True)[0]


def _langevin_sample_in(k: jax.Array, a: dict) -> jax.Array:
    """Langevin's world "in": ``w_0``, ``T`` steps on ``D + {z}``, then ``K`` on ``D``."""
    zero = jnp.zeros((a["X"].shape[1], 1), a["X"].dtype)
    pk = release_key(k, 0)
    W = _langevin_run(a, gaussian_like(pk, zero, a["init_std"], release=0), a["m_all"], pk,
                      a["T"])
    return _langevin_run(a, W, a["m_del"], release_key(k, 1), a["K"])[:, 0]


def _langevin_sample_out(k: jax.Array, a: dict) -> jax.Array:
    """Langevin's world "out": retraining, ``w_0`` from ``k`` and ``T + K`` steps on ``D``."""
    zero = jnp.zeros((a["X"].shape[1], 1), a["X"].dtype)
    W0 = gaussian_like(k, zero, a["init_std"], release=0)
    return _langevin_run(a, W0, a["m_del"], k, a["T"] + a["K"])[:, 0]


def zhang_worlds(X: Any, y: Any, net: Any, config: Any, forget: Any, *, epsilon: float,
                 delta: float, key: jax.Array, sigma_scale: float | tuple[float, float] = 1.0,
                 **kwargs: Any) -> Worlds:
    """Zhang et al.'s network unlearning vs noised retraining, conditionally on the init key.

    Training is deterministic given ``key`` (:func:`certun.nn.train`, full batch): the
    noiseless unlearned model ``w_k`` (``unlearn``'s diagnostics) and the retrained
    ``A(D_k)`` (``retrain``, same key) are computed once; the outputs are each plus
    ``gaussian_like(k, w, sigma)`` with the certificate's ``sigma``. The certificate's
    guarantee holds for every training key, so it holds conditionally on this one
    (``proofs/audit_epsilon.md``).
    """
    from certun.unlearners.zhang import zhang_unlearning

    unl = zhang_unlearning(net, config, epsilon=epsilon, delta=delta, **kwargs)
    st = unl.init(X, y, key)
    res = unl.unlearn(st, forget)
    if res.params is None:
        raise RuntimeError(f"Zhang unlearning refused the request: {res.certificate.reason}")
    cert = res.certificate
    c_in = _flat(res.state.params_bar)
    c_out = _flat(unl.retrain(res.state).params)
    sig = float(cert.sigma)
    sc = _scales(sigma_scale)
    assert cert.sensitivity is not None  # a private release always states its sensitivity
    return _gaussian_pair(_tag(cert.mechanism, sc), cert.adjacency,
                          {"n": int(np.shape(X)[0]), "parameters": int(c_in.size),
                           "forget": int(np.size(forget)), "sensitivity": float(cert.sensitivity)},
                          float(cert.epsilon), float(cert.delta), c_in, c_out, sig * sc[0],
                          sig * sc[1], {"sigma_certified": sig,
                                        "certificate_status": cert.status})


def _with_canary(X: Any, y: Any, lam: float) -> tuple[np.ndarray, np.ndarray, int]:
    """``D + {z}`` with the worst-case canary ``z`` appended (row index returned)."""
    X = _validate.unit_rows(X=X, tol=0.0)
    y = np.asarray(y, np.float64)
    x, yz = _canary(X, y, lam)
    return np.vstack([X, x[None, :]]), np.concatenate([y, [yz]]), int(X.shape[0])


@functools.lru_cache(maxsize=8)
def _release_instance(lam: float, epsilon: float, delta: float, tol: float,
                      kw: tuple) -> Any:
    """One ``private_release`` over exact retraining per configuration (shares its compiles)."""
    from certun.release import private_release
    from certun.unlearners.retrain import exact_retraining

    return private_release(exact_retraining(lam=lam), lam=lam, epsilon=epsilon, delta=delta,
                           tol=tol, **dict(kw))


def private_release_worlds(X: Any, y: Any, *, lam: float, epsilon: float, delta: float,
                           sigma_scale: float | tuple[float, float] = 1.0,
                           old_release_calibration: bool = False, tol: float = 1e-8,
                           release_kwargs: dict | None = None) -> Worlds:
    """The private release of :func:`certun.release.private_release` in two neighbouring worlds.

    Each world is built through the public API with an exact-retraining inner unlearner
    (deterministic noiseless model): ``init(D_w, y_w, key)`` gives ``state.noiseless`` and
    ``certificate(state)``, whose ``sigma`` (each world's **own**) and ``adjacency`` fix the
    worlds; the outputs are ``noiseless + gaussian_like(k, noiseless, sigma_w, release=0)``
    (the noise of release 0). Under add/remove adjacency (``"removal"``; with ``n_min``)
    the worlds are ``D + {z}`` and ``D``; under replace-one they are ``D + {z}`` and
    ``D + {z'}`` with ``z' = (x_z, -y_z)``. ``z`` is the worst-case canary. ``details``
    keeps each world's release 0 as published by the API (noise key
    ``jax.random.key(11)``), against which the sampler is checked.

    ``old_release_calibration=True`` is the defect of issue 14 as a twin: add/remove worlds,
    each noised with ``z_mult (G / (lam n_w) + 2 tol / lam)`` for its own row count ``n_w``
    (the calibration of the release before the fix), whatever the current API does.
    """
    Xd = _validate.unit_rows(X=X, tol=0.0)
    yd = np.asarray(y, np.float64)
    x, yz = _canary(Xd, yd, lam)
    kw = dict(release_kwargs or {})
    rel = _release_instance(float(lam), float(epsilon), float(delta), float(tol),
                            tuple(sorted(kw.items())))
    Xin, yin = np.vstack([Xd, x[None]]), np.concatenate([yd, [yz]])

    def world(Xw, yw):
        stw = rel.init(Xw, yw, jax.random.key(0), noise_key=jax.random.key(_API_NOISE_SEED))
        return stw, rel.certificate(stw)

    st_in, cert_in = world(Xin, yin)
    adjacency = str(cert_in.adjacency)
    replace = "replace" in adjacency and not old_release_calibration
    if replace:
        Xout, yout = np.vstack([Xd, x[None]]), np.concatenate([yd, [-yz]])
    else:
        Xout, yout = Xd, yd
    st_out, cert_out = world(Xout, yout)
    s_in, s_out = float(cert_in.sigma), float(cert_out.sigma)
    if old_release_calibration:
        z_mult = calibrate(epsilon, delta, 1.0, method="analytic").sigma
        G = 1.0 + min(1.0, math.sqrt(2.0 * lam * math.log(2.0)))

        def old(nw):
            return z_mult * (G / (lam * nw) + 2.0 * tol / lam)

        s_in, s_out = old(Xin.shape[0]), old(Xout.shape[0])
        adjacency = "removal (add/remove, sigma from each world's n_t: the release before the fix)"
    sc = _scales(sigma_scale)
    c_in = np.asarray(st_in.noiseless, np.float64).ravel()
    c_out = np.asarray(st_out.noiseless, np.float64).ravel()
    name = _tag(cert_in.mechanism, sc, "old n_t calibration" if old_release_calibration else "")
    return _gaussian_pair(name, adjacency,
                          {"n_in": int(Xin.shape[0]), "n_out": int(Xout.shape[0]),
                           "d": int(Xd.shape[1]), "lam": lam, "tol": tol,
                           "release_kwargs": {k: repr(v) for k, v in kw.items()},
                           "canary": "worst-case (grnb_norm)"},
                          float(cert_in.epsilon), float(cert_in.delta), c_in, c_out,
                          s_in * sc[0], s_out * sc[1],
                          {"certificate_adjacency": str(cert_in.adjacency),
                           "api_published_in": np.asarray(st_in.published, np.float64).ravel(),
                           "api_published_out": np.asarray(st_out.published,
                                                           np.float64).ravel(),
                           "sigma_certificate_in": float(cert_in.sigma),
                           "sigma_certificate_out": float(cert_out.sigma)})
