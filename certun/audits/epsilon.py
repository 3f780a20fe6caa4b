r"""Empirical epsilon audits: run a mechanism many times on two neighbouring worlds, bound epsilon.

An audit draws ``T`` runs of a randomised mechanism in each of two neighbouring worlds
(``vmap`` over keys, with certun's own calibration and pytree noise -- the code under
audit, not a separate sampler), scores every output with a jitted statistic, and turns
the true- and false-positive counts of a threshold test into a Clopper-Pearson lower
bound on epsilon (host-side, :mod:`certun.audits.stats`). If the mechanism is
``(epsilon, delta)``-DP, the bound exceeds ``epsilon`` with probability at most ``alpha``;
a bound above the certified epsilon is therefore reported as a **violation** and, by
default, raises :class:`AuditViolation` (a bug, not a statistic to shrug off).

Two mechanisms are provided:

* :func:`gaussian_output_audit` -- the Gaussian output mechanism ``f(D) + N(0, sigma^2 I)``
  over a pytree, ``sigma`` from :func:`certun.accounting.calibrate`, noise from
  :func:`certun.primitives.noise.gaussian_like`. Scored by the likelihood ratio, which
  for two Gaussians with the same covariance is monotone in the projection on the
  direction ``u = (f(D) - f(D')) / ||f(D) - f(D')||`` (Neyman-Pearson: the most powerful
  test). With a pair attaining the sensitivity, the audit is tight up to sampling error.
* :func:`guo_removal_audit` -- Guo et al.'s certified removal: world "in" trains on
  ``D + {z}`` with a fresh objective perturbation ``b`` and removes ``z`` with the Newton
  step (retraining with a fresh ``b`` when the residual bound would exceed the budget, as
  ``certified_removal(..., auto_retrain=True)``), world "out" trains on ``D`` with a fresh
  ``b``. Scored by the projection of the released model on the direction removal moves it,
  ``H^{-1} grad l(theta_0; z)``, with the worst-case canary of :func:`worst_case_canary`
  (docs/bibliography.md §17.5).

The test (threshold and orientation) is either fixed in advance or chosen on a separate
split of the runs and evaluated on the rest (never on the runs it is evaluated on).
Derivations and the expected size of the bounds: ``proofs/audit_epsilon.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.accounting.gaussian import analytic_epsilon, calibrate, guo_budget, guo_c
from certun.audits.stats import EpsilonBound, epsilon_from_scores, gdp_epsilon_estimate
from certun.data.preprocessing import unit_row_scale
from certun.models import glm
from certun.primitives.noise import gaussian_like, objective_perturbation
from certun.primitives.spectral import spectral_norm_upper_bound
from certun.progress import progress_bar

__all__ = [
    "AuditViolation",
    "EpsilonAudit",
    "sample_scores",
    "audit_scores",
    "gaussian_output_audit",
    "worst_case_canary",
    "Canary",
    "GuoWorlds",
    "guo_removal_worlds",
    "guo_removal_audit",
]


class AuditViolation(AssertionError):
    """An empirical lower bound exceeded the certified epsilon: the certificate is wrong."""


class EpsilonAudit(NamedTuple):
    """The outcome of an empirical epsilon audit.

    Attributes:
      mechanism: what was audited.
      epsilon_claimed, delta: the certified guarantee under audit.
      epsilon_lower: the Clopper-Pearson lower bound (holds with probability ``1 - alpha``).
      bound: the full :class:`~certun.audits.stats.EpsilonBound` (counts, rate bounds).
      threshold, sign: the test ``sign * score >= threshold``.
      rule: how the test was chosen.
      runs_per_world: runs drawn per world (the evaluated ones are ``bound.n_in``/``n_out``).
      point_estimate: epsilon from the raw rates (an estimate, not a bound).
      gdp_estimate: epsilon under a Gaussian trade-off assumption (an estimate).
      verdict: ``"consistent"`` (lower bound <= claim) or ``"violated"``.
      details: mechanism-specific numbers (sigma, sensitivity, served fraction, ...).
    """

    mechanism: str
    epsilon_claimed: float
    delta: float
    epsilon_lower: float
    bound: EpsilonBound
    threshold: float
    sign: int
    rule: str
    runs_per_world: int
    point_estimate: float
    gdp_estimate: float
    verdict: str
    details: dict

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = self._asdict()
        d["bound"] = self.bound._asdict()
        return d


def sample_scores(mechanism: Callable[[jax.Array], Any], score: Callable[[Any], jax.Array],
                  key: jax.Array, num_runs: int, *, batch_size: int = 131072) -> np.ndarray:
    """``score(mechanism(k))`` for ``num_runs`` independent keys, ``vmap``-ed and jitted.

    Batch ``j`` uses ``jax.random.split(jax.random.fold_in(key, j), batch_size)``; only the
    scalar scores leave the device.

    Args:
      mechanism: ``key -> output`` (one run of the randomised mechanism; jit-able).
      score: ``output -> scalar`` (jit-able).
      key: base PRNG key.
      num_runs: number of runs.
      batch_size: runs per compiled batch.

    Returns:
      ``(num_runs,)`` float64 scores.
    """
    n = _validate.integer(num_runs=num_runs, minimum=1)
    bs = min(_validate.integer(batch_size=batch_size, minimum=1), n)
    run = jax.jit(jax.vmap(lambda k: score(mechanism(k))))
    out = []
    done, j = 0, 0
    with progress_bar(n, "mechanism runs") as bar:  # host loop over compiled batches
        while done < n:
            keys = jax.random.split(jax.random.fold_in(key, j), bs)
            s = np.asarray(run(keys), np.float64)
            out.append(s[: n - done])
            bar.advance(min(bs, n - done))
            done += bs
            j += 1
    return np.concatenate(out)


def audit_scores(in_scores: Any, out_scores: Any, *, mechanism: str, epsilon_claimed: float,
                 delta: float, alpha: float = 0.05, threshold: float | str = "split",
                 split_fraction: float = 0.5, seed: int = 0, orientation: str = "higher",
                 raise_on_violation: bool = True, details: dict | None = None,
                 search_scores: tuple[Any, Any] | None = None) -> EpsilonAudit:
    """Turn per-run scores of the two worlds into an :class:`EpsilonAudit`.

    Args:
      in_scores: one finite score per run of the "in" world (any shape, flattened); with
        ``orientation="higher"`` the test flags high scores as "in".
      out_scores: one finite score per run of the "out" world (flattened likewise).
      mechanism: name for the report.
      epsilon_claimed: the certified epsilon (``> 0``) the lower bound is compared with.
      delta: the certified delta, in ``(0, 1)``.
      alpha: miss probability of the bound (0.05: two-sided 95 %, 2.5 % per rate).
      threshold: a float fixed in advance or ``"split"`` (see
        :func:`certun.audits.stats.epsilon_from_scores`).
      split_fraction: fraction of each world's runs used to choose the test (``"split"``
        without ``search_scores`` only).
      seed: seed of the random split.
      orientation: ``"higher"`` (in-world scores are expected higher) or ``"either"``
        (``"split"`` only: the direction is chosen with the threshold).
      raise_on_violation: raise :class:`AuditViolation` when the bound exceeds the claim.
      details: extra numbers to keep with the result.
      search_scores: scores of separate runs used only to choose the test (``"split"``).

    Raises:
      AuditViolation: if ``raise_on_violation`` and the lower bound exceeds ``epsilon_claimed``.
    """
    eps = _validate.epsilon(epsilon_claimed=epsilon_claimed)
    dlt = _validate.delta(delta=delta)
    tb = epsilon_from_scores(in_scores, out_scores, alpha=alpha, delta=dlt, threshold=threshold,
                             split_fraction=split_fraction, seed=seed, orientation=orientation,
                             search_scores=search_scores)
    b = tb.bound
    verdict = "violated" if b.epsilon > eps else "consistent"
    res = EpsilonAudit(
        mechanism=mechanism, epsilon_claimed=eps, delta=dlt, epsilon_lower=b.epsilon, bound=b,
        threshold=tb.threshold, sign=tb.sign, rule=tb.rule,
        runs_per_world=int(np.size(in_scores)) + (0 if search_scores is None
                                                   else int(np.size(search_scores[0]))),
        point_estimate=b.point_estimate,
        gdp_estimate=gdp_epsilon_estimate(b, dlt), verdict=verdict, details=dict(details or {}))
    if verdict == "violated" and raise_on_violation:
        raise AuditViolation(
            f"{mechanism}: empirical epsilon lower bound {b.epsilon:.4f} exceeds the certified "
            f"epsilon {eps:g} (delta {dlt:g}; TP {b.tp}/{b.n_in}, FP {b.fp}/{b.n_out}, "
            f"alpha {b.alpha:g}); the certificate does not hold -- this is a bug")
    return res


# --------------------------------------------------------------------------- Gaussian output


def _tree_dot(a: Any, b: Any) -> jax.Array:
    return jnp.asarray(sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                          jax.tree_util.tree_leaves(b),
                                                          strict=True)))


def gaussian_output_audit(f_in: Any, f_out: Any, *, epsilon: float, delta: float,
                          sensitivity: float, key: jax.Array, num_runs: int = 2_000_000,
                          noise_scale: float = 1.0, calibration: str = "analytic",
                          alpha: float = 0.05, threshold: float | str = "split",
                          split_fraction: float = 0.5, seed: int = 0,
                          batch_size: int = 131072,
                          raise_on_violation: bool = True) -> EpsilonAudit:
    """Audit the Gaussian output mechanism ``f(D) + N(0, sigma^2 I)`` on one neighbouring pair.

    ``sigma = noise_scale * calibrate(epsilon, delta, sensitivity).sigma``: with
    ``noise_scale = 1`` this is certun's calibrated mechanism and the bound must stay
    below ``epsilon``; ``noise_scale = 0.1`` is a mechanism that adds ten times less noise
    than it claims, which a good audit catches. Each run draws
    ``gaussian_like(k, f, sigma, release=0)`` with its own key ``k`` (``vmap``).

    Args:
      f_in: the query's value on the "in" data set (a pytree of finite arrays).
      f_out: the query's value on the neighbouring "out" data set (same pytree structure);
        ``0 < ||f_in - f_out|| <= sensitivity`` is checked (attaining it makes the audit
        tight).
      epsilon: the claimed epsilon (``> 0``); the noise is calibrated to it.
      delta: the claimed delta, in ``(0, 1)``.
      sensitivity: the L2 sensitivity the noise is calibrated to.
      key: base key (world "in" folds in 1, world "out" 0).
      num_runs: runs per world (split into search and evaluation runs with ``"split"``).
      noise_scale: multiplier of the calibrated sigma (1 for the honest mechanism).
      calibration: ``"analytic"`` or ``"classic"``.
      alpha: miss probability of the bound (0.05: two-sided 95 %, 2.5 % per rate).
      threshold: a float fixed in advance (the test is ``score >= threshold``, the score
        being the projection of ``output - f_out`` on the unit direction of
        ``f_in - f_out``) or ``"split"`` (chosen on part of the runs).
      split_fraction: fraction of each world's runs used to choose the test (``"split"``).
      seed: seed of the split.
      batch_size: runs per compiled batch.
      raise_on_violation: raise :class:`AuditViolation` if the bound exceeds ``epsilon``.

    Returns:
      An :class:`EpsilonAudit`; ``details`` holds sigma, ``||f_in - f_out||`` and the
      epsilon the *actual* noise gives for that pair (the best any test can reach).
    """
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    sens = _validate.positive(sensitivity=sensitivity)
    scale = _validate.positive(noise_scale=noise_scale)
    _validate.finite_tree(f_in=f_in)
    _validate.finite_tree(f_out=f_out)
    if jax.tree_util.tree_structure(f_in) != jax.tree_util.tree_structure(f_out):
        raise _validate.ValidationError("f_in and f_out must have the same pytree structure")
    diff = jax.tree_util.tree_map(lambda a, b: jnp.asarray(a) - jnp.asarray(b), f_in, f_out)
    dist = float(jnp.sqrt(_tree_dot(diff, diff)))
    if not dist > 0:
        raise _validate.ValidationError("f_in and f_out are equal: there is nothing to audit")
    if dist > sens * (1 + 1e-9):
        raise _validate.ValidationError(
            f"||f_in - f_out|| = {dist:.6g} exceeds the sensitivity {sens:g}: the pair is not "
            "neighbouring for this sensitivity")
    cal = calibrate(eps, dlt, sens, method=calibration)
    sigma = scale * cal.sigma
    u = jax.tree_util.tree_map(lambda t: t / dist, diff)

    def mech(world: Any) -> Callable[[jax.Array], Any]:
        def run(k: jax.Array) -> Any:
            noise = gaussian_like(k, world, sigma, release=0)
            return jax.tree_util.tree_map(jnp.add, world, noise)
        return run

    def score(out: Any) -> jax.Array:  # log-likelihood ratio, up to a monotone map
        return _tree_dot(jax.tree_util.tree_map(jnp.subtract, out, f_out), u)

    s_in = sample_scores(mech(f_in), score, jax.random.fold_in(key, 1), num_runs,
                         batch_size=batch_size)
    s_out = sample_scores(mech(f_out), score, jax.random.fold_in(key, 0), num_runs,
                          batch_size=batch_size)
    details = {"sigma": sigma, "sigma_calibrated": cal.sigma, "noise_scale": scale,
               "sensitivity": sens, "pair_distance": dist, "calibration": cal.method,
               "epsilon_of_actual_noise_for_pair": analytic_epsilon(sigma, dlt, dist)}
    name = "gaussian_output" + ("" if scale == 1.0 else f"_under_noised_x{1 / scale:g}")
    return audit_scores(s_in, s_out, mechanism=name, epsilon_claimed=eps, delta=dlt,
                        alpha=alpha, threshold=threshold, split_fraction=split_fraction,
                        seed=seed, raise_on_violation=raise_on_violation, details=details)


# --------------------------------------------------------------------------- Guo et al.


class Canary(NamedTuple):
    """A worst-case canary for removal audits.

    Attributes:
      x: ``(d,)`` the canary's features (unit norm).
      y: its label (``+-1``).
      surrogate: the objective it maximises (``"grnb_norm"`` or ``"influence_norm"``).
      value: that objective's value.
      influence_norm: ``||H^{-1} grad l(theta_0; z)||`` (sum scale) at the model trained
        without it.
    """

    x: np.ndarray
    y: float
    surrogate: str
    value: float
    influence_norm: float


def worst_case_canary(X: Any, y: Any, *, lam: float, surrogate: str = "grnb_norm") -> Canary:
    """A unit-norm, misclassified point whose removal is hardest to certify (bibliography §17.5).

    Marchant et al.'s surrogates (docs/bibliography.md §14.3) at the noiseless model ``theta_0`` on
    ``X, y``, with ``H`` the sum-scale Hessian of the data and ``delta = H^{-1} grad l(z)``:
    ``"influence_norm"`` maximises ``||delta||`` and ``"grnb_norm"`` (default) Guo et al.'s
    data-dependent residual bound ``||delta|| ||X delta||`` (up to the constant
    ``gamma ||X||_2``). Candidates are the eigenvectors of ``H`` (both signs), each labelled
    against the model's prediction so that ``|l'| >= 1/2``; the best is returned.
    ``influence_norm`` picks the direction the data constrain least -- often a null
    direction of ``X``, where the Newton removal is *exact* (the data's loss does not vary
    along it), so ``grnb_norm`` is the canary of choice for auditing the residual.

    Args:
      X: ``(n, d)`` rows with ``||x_i|| <= 1``.
      y: ``(n,)`` labels in ``{-1, +1}``.
      lam: the mean-scale regularisation of the mechanism.
      surrogate: ``"grnb_norm"`` or ``"influence_norm"``.
    """
    Xn = _validate.unit_rows(X=X, tol=0.0)
    yn = _validate.labels_pm1(y=y)
    lam = _validate.positive(lam=lam)
    _validate.choice(("grnb_norm", "influence_norm"), surrogate=surrogate)
    Xj, Yj = jnp.asarray(Xn), jnp.asarray(yn)[:, None]
    W0 = glm.fit("logistic", Xj, Yj, lam).params
    H = np.asarray(glm.hessian_sum(glm.LOGISTIC, W0, Xj, Yj, lam)[0], np.float64)
    _, Q = np.linalg.eigh(H)
    theta = np.asarray(W0[:, 0], np.float64)
    a = Q.T @ theta                                   # margins of the candidates
    yz = np.where(a > 0, -1.0, 1.0)                   # labelled against the prediction
    l1 = np.asarray(jax.device_get(glm.LOGISTIC.d1(jnp.asarray(a), jnp.asarray(yz))))
    D = np.linalg.solve(H, Q * l1[None, :])           # columns: H^{-1} grad l(z_i)
    infl = np.linalg.norm(D, axis=0)
    val = infl if surrogate == "influence_norm" else infl * np.linalg.norm(Xn @ D, axis=0)
    i = int(np.argmax(val))
    # an eigenvector's computed norm can be 1 + 2**-52: scale it just inside the unit ball
    # (proofs/unit_rows.md), so that certun's zero-tolerance row check accepts it
    x = unit_row_scale(Q[:, i][None, :])[0]
    return Canary(x, float(yz[i]), surrogate, float(val[i]), float(infl[i]))


class GuoWorlds(NamedTuple):
    """One run of each world of :func:`guo_removal_audit` (``key -> (params, ...)``, jit-able)."""

    world_in: Callable[[jax.Array], tuple]
    retrain_in: Callable[[jax.Array], tuple]
    world_out: Callable[[jax.Array], tuple]
    x_spectral: float
    params: dict


def guo_removal_worlds(X: np.ndarray, y: np.ndarray, canary: Canary, *, lam: float,
                       sigma: float, budget: float, gamma: float = 0.25,
                       enforce_budget: bool = True, train_tol: float = 1e-10) -> GuoWorlds:
    """The two worlds of :func:`guo_removal_audit` as functions of one key.

    ``world_in(k) -> (params (d,), served, charged_residual, converged)``: train on
    ``D + {z}`` with ``b`` of release 0 and remove ``z`` by the Newton step (``served``: the
    charged residual is within ``budget``); ``retrain_in(k) -> (params, converged)``: the
    ``auto_retrain`` output (fresh ``b`` of release 1, trained on ``D``);
    ``world_out(k) -> (params, converged)``: train on ``D`` with ``b`` of release 0.
    """
    XD, YD = jnp.asarray(X), jnp.asarray(y, jnp.asarray(X).dtype)[:, None]
    Xz = jnp.concatenate([XD, jnp.asarray(canary.x, XD.dtype)[None, :]])
    Yz = jnp.concatenate([YD, jnp.asarray([[canary.y]], XD.dtype)])
    x_spec = spectral_norm_upper_bound(np.asarray(X)).value
    f = functools.partial(jnp.asarray, dtype=XD.dtype)
    P = {"XD": XD, "YD": YD, "Xz": Xz, "Yz": Yz,
         "start_z": glm.fit("logistic", Xz, Yz, lam, tol=train_tol).params,
         "start_d": glm.fit("logistic", XD, YD, lam, tol=train_tol).params,
         "lam": f(lam), "sigma": f(sigma), "budget": f(budget), "gamma": f(gamma),
         "x_spec": f(x_spec), "enforce": jnp.asarray(bool(enforce_budget)), "tol": f(train_tol)}
    return GuoWorlds(lambda k: _guo_in_jit(k, P), lambda k: _guo_retrain_jit(k, P),
                     lambda k: _guo_out_jit(k, P), float(x_spec), P)


# The worlds are module-level functions of (key, parameters): every audit on data of the
# same shape reuses one compilation (sigma, lam, budget, ... are traced arguments).
def _guo_fit(P, Xa, Ya, b, W0):
    return glm.fit("logistic", Xa, Ya, P["lam"], b, None, W0, tol=P["tol"])


def _guo_in(k, P):
    d = P["XD"].shape[1]
    b = objective_perturbation(k, (d, 1), P["sigma"], P["XD"].dtype, release=0)
    fr = _guo_fit(P, P["Xz"], P["Yz"], b, P["start_z"])
    W, lam = fr.params, P["lam"]
    r0 = jnp.linalg.norm(glm.gradient_sum(glm.LOGISTIC, W, P["Xz"], P["Yz"], lam, b))
    Delta = P["Xz"][-1:].T @ glm.LOGISTIC.d1(P["Xz"][-1:] @ W, P["Yz"][-1:]) + lam * W
    H = glm.hessian_sum(glm.LOGISTIC, W, P["XD"], P["YD"], lam)[0]
    step = jnp.linalg.solve(H, Delta)
    res = jnp.linalg.norm(H @ step - Delta)
    dd = P["gamma"] * P["x_spec"] * jnp.linalg.norm(step) * jnp.linalg.norm(P["XD"] @ step)
    charged = r0 + dd + res
    served = jnp.logical_or(charged <= P["budget"], jnp.logical_not(P["enforce"]))
    return (W + step)[:, 0], served, charged, fr.result == 0


def _guo_retrain(k, P):  # auto_retrain: fresh b (release 1), trained on D
    d = P["XD"].shape[1]
    b1 = objective_perturbation(k, (d, 1), P["sigma"], P["XD"].dtype, release=1)
    fr = _guo_fit(P, P["XD"], P["YD"], b1, P["start_d"])
    return fr.params[:, 0], fr.result == 0


def _guo_out(k, P):
    d = P["XD"].shape[1]
    b = objective_perturbation(k, (d, 1), P["sigma"], P["XD"].dtype, release=0)
    fr = _guo_fit(P, P["XD"], P["YD"], b, P["start_d"])
    return fr.params[:, 0], fr.result == 0


_guo_in_jit, _guo_retrain_jit, _guo_out_jit = (jax.jit(f) for f in (_guo_in, _guo_retrain,
                                                                       _guo_out))
_guo_in_batch = jax.jit(jax.vmap(_guo_in, in_axes=(0, None)))
_guo_retrain_batch = jax.jit(jax.vmap(_guo_retrain, in_axes=(0, None)))
_guo_out_batch = jax.jit(jax.vmap(_guo_out, in_axes=(0, None)))


def guo_removal_audit(X: Any, y: Any, canary: Canary, *, lam: float, sigma: float,
                      epsilon: float, delta: float, key: jax.Array, num_runs: int = 20000,
                      gamma: float = 0.25, enforce_budget: bool = True, train_tol: float = 1e-10,
                      alpha: float = 0.05, search_fraction: float = 0.5,
                      shrinkage: float = 1e-3, batch_size: int = 2048,
                      raise_on_violation: bool = True) -> EpsilonAudit:
    """Audit Guo et al.'s certified removal of the canary against retraining without it.

    World "in" (one run per key ``k``): draw ``b = objective_perturbation(k, (d, 1), sigma)``
    (release 0, as ``certified_removal.init``), train on ``D + {z}`` to ``train_tol``, remove
    ``z`` with the Newton step ``w + H^{-1}(grad l_z(w) + lam w)`` (``H`` the sum-scale
    Hessian of ``D`` at ``w``). The request is served when the measured training gradient
    plus Guo et al.'s data-dependent bound ``gamma ||X_D||_2 ||delta|| ||X_D delta||`` and the
    solve residual stay within the budget ``sigma epsilon / c``; otherwise (as with
    ``auto_retrain=True``) the model is retrained on ``D`` with the fresh ``b`` of release 1.
    World "out": draw ``b`` the same way and train on ``D``. Both worlds are the mechanism's
    own computations (certun's ``objective_perturbation``, ``glm.fit``, ``guo_budget``),
    ``vmap``-ed over keys; training starts from the noiseless minimiser (any start reaches
    the same optimum to ``train_tol``). ``tests/audits/test_epsilon.py`` checks the worlds
    against ``certified_removal``'s ``init``/``unlearn``.

    **Statistic.** The first ``search_fraction`` of the runs of each world estimate the
    direction that best separates them (Fisher's discriminant: pooled covariance with
    ``shrinkage`` times its mean eigenvalue added, applied to the difference of means) and
    choose the threshold and orientation; the bound is evaluated on the other runs only.

    ``enforce_budget=False`` serves every request whatever its bound (a bookkeeping bug,
    for negative controls: with a small ``sigma`` it must be caught).

    Returns:
      An :class:`EpsilonAudit`; ``details`` holds the budget, the served fraction and the
      charged residuals.
    """
    Xn = _validate.unit_rows(X=X, tol=0.0)
    yn = _validate.labels_pm1(y=y)
    lam = _validate.positive(lam=lam)
    sig = _validate.positive(sigma=sigma)
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    frac = _validate.in_range(0.0, 1.0, search_fraction=search_fraction)
    shrink = _validate.positive(shrinkage=shrinkage)
    n = _validate.integer(num_runs=num_runs, minimum=4)
    bs = min(_validate.integer(batch_size=batch_size, minimum=1), n)  # one compiled shape
    budget = guo_budget(sig, eps, dlt)
    if jnp.zeros(()).dtype != jnp.float64:
        raise _validate.ValidationError("guo_removal_audit needs float64; call certun.enable_x64()")
    worlds = guo_removal_worlds(Xn, yn, canary, lam=lam, sigma=sig, budget=budget, gamma=gamma,
                                enforce_budget=enforce_budget, train_tol=train_tol)
    P = worlds.params
    XD = P["XD"]
    d = XD.shape[1]
    x_spec = worlds.x_spectral
    def run_in(keys):
        return _guo_in_batch(keys, P)

    def run_re(keys):
        return _guo_retrain_batch(keys, P)

    def run_out(keys):
        return _guo_out_batch(keys, P)
    k_in, k_out = jax.random.fold_in(key, 1), jax.random.fold_in(key, 0)
    W_in, W_out, served, charged, ok = [], [], [], [], []
    done, j = 0, 0
    with progress_bar(n, "removal runs") as bar:  # host loop over compiled batches
        while done < n:
            m = min(bs, n - done)
            keys = jax.random.split(jax.random.fold_in(k_in, j), bs)
            Wi, sv, ch, ok1 = (np.asarray(v) for v in run_in(keys))
            if not np.all(sv):
                Wr, ok2 = (np.asarray(v) for v in run_re(keys))  # only when a request is refused
                Wi = np.where(sv[:, None], Wi, Wr)
                ok1 = ok1 & (sv | ok2)
            Wo, ok0 = (np.asarray(v) for v in run_out(
                jax.random.split(jax.random.fold_in(k_out, j), bs)))
            W_in.append(Wi[:m])
            W_out.append(Wo[:m])
            served.append(sv[:m])
            charged.append(ch[:m])
            ok.append((ok1 & ok0)[:m])
            bar.advance(m)
            done += m
            j += 1
    if not np.all(np.concatenate(ok)):
        raise RuntimeError(f"training did not reach train_tol={train_tol} in some runs; raise lam")
    W_in, W_out = np.concatenate(W_in), np.concatenate(W_out)
    served_a, charged_a = np.concatenate(served), np.concatenate(charged)
    k = int(round(frac * n))
    if min(k, n - k) < 2:
        raise _validate.ValidationError("num_runs too small for the search split")
    mu = W_in[:k].mean(0) - W_out[:k].mean(0)
    C = 0.5 * (np.cov(W_in[:k].T) + np.cov(W_out[:k].T))
    C = C + shrink * np.trace(C) / d * np.eye(d)
    v = np.linalg.solve(C, mu)
    s_in, s_out = W_in @ v, W_out @ v
    details = {"budget": budget, "c": guo_c(dlt), "sigma": sig, "lam": lam, "gamma": gamma,
               "served_fraction": float(np.mean(served_a)),
               "max_charged_residual": float(np.max(charged_a)),
               "median_charged_residual": float(np.median(charged_a)),
               "enforce_budget": enforce_budget, "n": int(XD.shape[0]),
               "canary_surrogate": canary.surrogate, "canary_value": canary.value,
               "canary_influence_norm": canary.influence_norm, "x_spectral_bound": x_spec,
               "mean_shift_norm": float(np.linalg.norm(mu)),
               "statistic": "Fisher discriminant of the released parameters, fitted on the "
                            "search runs"}
    name = "guo2020_certified_removal" + ("" if enforce_budget else "_budget_unchecked")
    return audit_scores(s_in[k:], s_out[k:], mechanism=name, epsilon_claimed=eps, delta=dlt,
                        alpha=alpha, threshold="split", orientation="either",
                        search_scores=(s_in[:k], s_out[:k]),
                        raise_on_violation=raise_on_violation, details=details)
