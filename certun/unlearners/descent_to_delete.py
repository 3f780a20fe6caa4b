"""Descent-to-Delete (Neel, Roth & Sharifi-Malvajerdi, ALT 2021) for L2-logistic models.

The strongly convex, full-batch variant. ``J_D(w) = mean_i l(w; z_i) + (lam/2)||w||^2``
(certun's mean scale) is ``m = lam``-strongly convex and ``L``-smooth; projected gradient
descent with ``eta = 2/(L + m)`` on the ball ``||w|| <= G/m`` (which holds every optimum)
contracts the distance to the optimum by ``gamma = (L - m)/(L + m)`` per step.

* ``init`` runs ``T`` steps from ``w = 0`` and publishes ``w_0 + N(0, sigma_0^2 I)``.
* A request (rows removed, or replaced with ``adjacency="replacement"``) runs ``I`` more
  steps from the **internal, noiseless** iterate on the new data, then publishes it with
  **fresh** Gaussian noise (key folded by release index).
* The error bound ``e_j >= ||w_j - w*_j||`` follows ``e_j = gamma^I (e_{j-1} + 2 S G/(m n))``
  (:mod:`certun.bounds.descent_to_delete`); the published model is compared with the same
  algorithm run from scratch on the current data (``T`` steps from 0, error
  ``e_ref = gamma^T G/m``) and published with the same noise, so the sensitivity is
  ``e_j + e_ref`` and the noise is calibrated to it (analytic Gaussian mechanism by default).

Two ways to set the trade-off: ``steps=I`` fixes the steps per request (the noise of each
release then follows from its error bound), or ``sigma`` fixes the noise (each request then
runs the steps :func:`certun.bounds.descent_to_delete.steps_for` computes). Every quantity
the noise depends on (``S``, ``n``, ``I``, constants) is public.

**Threat.** Each release is ``(epsilon, delta)``-indistinguishable from the noised retrained
model; ``epsilon_composed`` covers an observer of all releases against the sequence of
noised retrained models (exact Gaussian composition). Like every removal guarantee it does not
hide a deletion from someone who saw the model before and after.

Derivations: ``proofs/descent_to_delete.md``.

Reference: S. Neel, A. Roth, S. Sharifi-Malvajerdi, ALT 2021, arXiv:2007.02923.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.accounting.gaussian import analytic_epsilon, calibrate
from certun.bounds import descent_to_delete as d2d
from certun.certificate import assumed, check, make_certificate, verified
from certun.models import glm
from certun.primitives.noise import gaussian_like
from certun.primitives.spectral import UNIT_ROUNDOFF, spectral_norm_upper_bound
from certun.unlearners.base import Unlearner, UnlearnResult, published_view
from certun.unlearners.guo import _targets
from certun.unlearners.langevin import NoisyRun, noisy_gd

__all__ = ["D2DState", "descent_to_delete", "MECHANISM"]

#: Mechanism name in Descent-to-Delete certificates (Neel et al. 2021).
MECHANISM = "neel2021_descent_to_delete"


class D2DState(NamedTuple):
    """State of :func:`descent_to_delete` (private as a whole).

    Attributes:
      X, Y: training rows and ``(n, K)`` targets (replaced rows overwritten).
      mask: 1 for rows present.
      W: the internal, noiseless iterate; published: the current noisy release.
      key: base key; release ``j`` draws its noise with ``release = j``.
      error: ``e_j``, a bound on ``||W - w*||`` for the current data.
      reference_error: ``e_ref = gamma^T G/m``, the same bound for retraining from scratch.
      sigmas, sensitivities, steps: per release so far (release 0 is training).
      n_replaced: rows replaced so far; spectral_sq: ``||X||_2^2`` bound (``"data"`` only).
    """

    X: jax.Array
    Y: jax.Array
    mask: jax.Array
    W: jax.Array
    published: jax.Array
    key: jax.Array
    error: float
    reference_error: float
    sigmas: tuple
    sensitivities: tuple
    steps: tuple
    n_replaced: int
    spectral_sq: float


@functools.partial(jax.jit, static_argnames=("loss",))
def _grad_norm_jit(W, X, Y, mask, lam, *, loss: str):
    return jnp.linalg.norm(glm.gradient_mean(glm.get_loss(loss), W, X, Y, lam, None, mask))


def descent_to_delete(*, lam: float, epsilon: float, delta: float, steps: int | None = None,
                      sigma: float | None = None, train_steps: int | None = None,
                      adjacency: str = "removal", smoothness: str = "loose",
                      max_removals: int | None = None, lipschitz: float | None = None,
                      calibration: str = "analytic", max_steps: int = 1_000_000,
                      loss: str = "logistic") -> Unlearner:
    """Descent-to-Delete: projected GD from the internal model, then fresh Gaussian noise.

    Args:
      lam: mean-scale L2 regularisation, the strong convexity ``m``.
      epsilon: epsilon (``> 0``) of every release's guarantee against the noised retrained
        model; the noise (or, with ``sigma`` given, the steps) is calibrated to it.
      delta: delta of every release's guarantee, in ``(0, 1)``.
      steps: ``I``, gradient steps per request (give exactly one of ``steps``/``sigma``).
      sigma: the noise of every release; the steps per request are then computed.
      train_steps: ``T``, steps of the initial training (default: the fewest with
        ``gamma^T G/m`` at most the per-request error target).
      adjacency: ``"removal"`` or ``"replacement"`` (``unlearn(..., replacement=(X, y))``).
      smoothness: ``"loose"`` (``L = 1/4 + lam``) or ``"data"`` (guaranteed spectral bound,
        capacity ``max_removals``; the certificate is then conditional on treating the
        step size as public).
      max_removals: capacity for ``smoothness="data"`` (default ``n // 10``).
      lipschitz: ``G``, per-example loss-gradient bound (default the verified ``sqrt(K)``).
      calibration: ``"analytic"`` (Balle & Wang, default) or ``"classic"`` (``epsilon < 1``).
      max_steps: the most steps a request may take.
      loss: ``"logistic"``.

    Returns:
      An :class:`~certun.unlearners.base.Unlearner`: ``init(X, y, key, num_classes=None)``,
      ``unlearn(state, indices, key=None, replacement=None)``, ``params(state)``,
      ``retrain(state, key=None)``.
    """
    m = _validate.positive(lam=lam)
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    if (steps is None) == (sigma is None):
        raise _validate.ValidationError(
            "give exactly one of steps (gradient steps per request) or sigma (noise per "
            "release)")
    I_fixed = None if steps is None else _validate.integer(steps=steps, minimum=1)
    sig_fixed = None if sigma is None else _validate.positive(sigma=sigma)
    T_user = None if train_steps is None else _validate.integer(train_steps=train_steps,
                                                                minimum=0)
    adjacency = _validate.choice(("removal", "replacement"), adjacency=adjacency)
    smoothness = _validate.choice(("loose", "data"), smoothness=smoothness)
    calibration = _validate.choice(("analytic", "classic"), calibration=calibration)
    if calibration == "classic" and eps >= 1.0:
        raise _validate.ValidationError(
            "calibration='classic' needs epsilon < 1; use calibration='analytic'")
    k_max = _validate.integer(max_steps=max_steps, minimum=1)
    lossf = glm.get_loss(_validate.choice(("logistic",), loss=loss))
    if max_removals is not None:
        _validate.integer(max_removals=max_removals, minimum=1)
    z = calibrate(eps, dlt, 1.0, method=calibration).sigma  # noise multiplier
    def _runner(eta: float, radius: float):
        return noisy_gd(lossf, m, eta, 0.0, None, radius)

    def _G(K: int) -> float:
        assert lossf.d1_bound is not None  # logistic: |l'| <= 1
        G = lossf.d1_bound * math.sqrt(K)
        if lipschitz is None:
            return G
        Gv = _validate.positive(lipschitz=lipschitz)
        if Gv < G:
            raise _validate.ValidationError(
                f"lipschitz={Gv} is below the per-example loss-gradient bound {G:.6g}")
        return Gv

    def _L(n_now: int, s2: float, n_replaced: int) -> float:
        if smoothness == "loose":
            return lossf.d2_bound + m
        return min(lossf.d2_bound * (s2 + n_replaced) / n_now, lossf.d2_bound) + m

    def _consts(state: D2DState) -> tuple[float, float, float, float, float]:
        K = state.W.shape[1]
        G = _G(K)
        n = int(state.X.shape[0])
        if smoothness == "loose":
            L = _L(n, 0.0, 0)
        else:
            cap = max(1, n // 10) if max_removals is None else max_removals
            L = (_L(n - cap, state.spectral_sq, 0) if adjacency == "removal"
                 else _L(n, state.spectral_sq, cap))
        return G, L, d2d.step_size(L, m), d2d.contraction(L, m), d2d.optimum_norm_bound(m, G)

    def _calib(sens: float) -> float:
        return z * sens if sig_fixed is None else sig_fixed

    def init(X: Any, y: Any, key: jax.Array, num_classes: int | None = None) -> D2DState:
        """Train ``T`` projected GD steps from 0 and publish release 0 (model plus noise)."""
        Xn = _validate.unit_rows(X=X, tol=0.0)
        yn = _validate.finite_array(y=y, ndim=(1, 2))  # 2-D: refused by _targets
        _validate.matching_rows(X=Xn, y=yn)
        n = Xn.shape[0]
        if n < 2:
            raise _validate.ValidationError("X needs at least 2 rows")
        dtype = jnp.zeros(()).dtype
        if dtype != jnp.float64:
            raise _validate.ValidationError(
                "descent_to_delete needs float64; call certun.enable_x64() first")
        Yn = _targets(lossf, yn, num_classes)
        if smoothness == "data":
            cap = max(1, n // 10) if max_removals is None else max_removals
            if cap >= n:
                raise _validate.ValidationError(
                    f"max_removals={cap} must be smaller than the {n} training rows")
            s2 = float(spectral_norm_upper_bound(Xn).value) ** 2
        else:
            s2 = 0.0
        Xj, Yj = jnp.asarray(Xn, dtype), jnp.asarray(Yn, dtype)
        W0 = jnp.zeros((Xn.shape[1], Yn.shape[1]), dtype)
        base = D2DState(Xj, Yj, jnp.ones(n, dtype), W0, W0, key, 0.0, 0.0, (), (), (), 0, s2)
        G, L, eta, gamma, R0 = _consts(base)
        if T_user is not None:
            T = T_user
        elif I_fixed is not None:
            target = d2d.steady_state(gamma, I_fixed, d2d.optimum_shift(m, n, 1, G, adjacency))
            T = d2d.steps_for(gamma, R0, 0.0, target)
        else:
            assert sig_fixed is not None  # exactly one of steps, I, sigma is given
            T = d2d.steps_for(gamma, R0, 0.0, sig_fixed / z / 2.0)
        if T > k_max:
            raise _validate.ValidationError(
                f"training needs T = {T} steps > max_steps = {k_max}; raise max_steps or sigma")
        W, _, _ = _runner(eta, R0)(W0, Xj, Yj, base.mask, key, T)
        e0 = d2d.training_error(gamma, T, R0)
        if sig_fixed is not None and 2.0 * e0 >= sig_fixed / z:
            raise _validate.ValidationError(
                f"train_steps={T} leaves the training error bound {e0:.3g}, too large for "
                f"sigma={sig_fixed} (needs 2 e_ref < sigma / z = {sig_fixed / z:.3g}); raise "
                "train_steps or sigma")
        sens = d2d.sensitivity(e0, e0)
        sig0 = _calib(sens)
        pub = W + gaussian_like(key, W, sig0, release=0)
        return base._replace(W=W, published=pub, error=e0, reference_error=e0, sigmas=(sig0,),
                             sensitivities=(sens,), steps=(T,))

    def params(state: D2DState) -> jax.Array:
        """The currently published (noisy) model."""
        return published_view(state.published)

    def retrain(state: D2DState, key: jax.Array | None = None) -> NoisyRun:
        """The reference: ``T`` projected GD steps from 0 on the current data.

        With a ``key``, the current release's noise is added.
        """
        G, L, eta, gamma, R0 = _consts(state)
        T = state.steps[0]
        W0 = jnp.zeros_like(state.W)
        W, _, _ = _runner(eta, R0)(W0, state.X, state.Y, state.mask, state.key, T)
        if key is not None:
            W = W + gaussian_like(key, W, state.sigmas[-1])
        return NoisyRun(published_view(W), T, float("nan"), 0)

    def _grad_norm(W, X, Y, mask):
        return _grad_norm_jit(W, X, Y, mask, m, loss=lossf.name)

    def unlearn(state: D2DState, indices: Any, key: jax.Array | None = None,
                replacement: tuple[Any, Any] | None = None) -> UnlearnResult:
        """Serve a request: projected GD from the internal model, then a fresh noisy release.

        ``key`` is unused (release ``j`` folds ``state.key`` with ``j``).
        """
        del key
        t0 = time.perf_counter()
        n_total = int(state.X.shape[0])
        mask_np = np.asarray(state.mask) > 0
        idx = _validate.forget_indices(indices, n_total, already_removed=~mask_np)
        S = int(idx.size)
        n_before = int(mask_np.sum())
        d, Kh = state.W.shape
        X, Y, mask, n_replaced = state.X, state.Y, state.mask, state.n_replaced
        if adjacency == "removal":
            if replacement is not None:
                raise _validate.ValidationError(
                    "replacement is only used with adjacency='replacement'")
            if S >= n_before:
                raise _validate.ValidationError(
                    f"indices would remove all {n_before} remaining rows; keep at least one")
            mask = mask.at[jnp.asarray(idx)].set(0.0)
            n_after = n_before - S
        else:
            if replacement is None:
                raise _validate.ValidationError(
                    "adjacency='replacement' needs replacement=(X_new, y_new)")
            Xr = _validate.unit_rows(replacement_X=replacement[0], tol=0.0)
            yr = _validate.finite_array(replacement_y=replacement[1], ndim=1)
            if Xr.shape != (S, d) or yr.shape[0] != S:
                raise _validate.ValidationError(
                    f"replacement must hold {S} rows of {d} features and {S} labels")
            X = X.at[jnp.asarray(idx)].set(jnp.asarray(Xr, X.dtype))
            Y = Y.at[jnp.asarray(idx)].set(
                jnp.asarray(_targets(lossf, yr, Kh if Kh > 1 else None, complete=False,
                     name="replacement_y"), Y.dtype))
            n_after, n_replaced = n_before, n_replaced + S

        G, L, eta, gamma, R0 = _consts(state)
        L_now = _L(n_after, state.spectral_sq, n_replaced)
        step_ok = L_now <= L * (1 + 1e-12)
        shift = d2d.optimum_shift(m, n_before, S, G, adjacency)
        e_ref = state.reference_error
        if I_fixed is not None:
            I = I_fixed  # noqa: E741
        else:
            assert sig_fixed is not None
            I = d2d.steps_for(gamma, state.error, shift, sig_fixed / z - e_ref)  # noqa: E741
        steps_ok = I <= k_max
        e_new = d2d.error_after(gamma, min(I, k_max), state.error, shift)
        sens = d2d.sensitivity(e_new, e_ref)
        sig = _calib(sens)
        release = len(state.sigmas)
        ran = step_ok and steps_ok
        if ran:
            W, _, _ = _runner(eta, R0)(state.W, X, Y, mask, state.key, I)
            gnorm = float(_grad_norm(W, X, Y, mask))
        else:
            W, gnorm = state.W, float("nan")
        # necessary condition of the bound: ||grad J(W)|| <= L ||W - w*|| <= L e_new, up to the
        # rounding of the computed gradient norm (n + d + 2) u (G + m ||W||)
        lower = gnorm / L_now
        w_norm = float(jnp.linalg.norm(W))
        slack = (n_total + d + 2) * UNIT_ROUNDOFF * (G + m * w_norm) / L_now
        consistent = bool(ran and lower <= e_new * (1 + 1e-9) + slack)
        sigmas = state.sigmas + (sig,)
        senss = state.sensitivities + (sens,)
        # k Gaussian releases compose exactly into one with z = (sum z_i^-2)^(-1/2) (mu-GDP;
        # proofs/gaussian_mechanisms.md section 4); releases since training
        z_eq = sum((t / s) ** 2 for s, t in zip(sigmas[1:], senss[1:], strict=True)) ** -0.5
        eps_composed = analytic_epsilon(z_eq, dlt)
        x64 = state.X.dtype == jnp.float64
        a = [
            verified("unit_rows", "||x_i||_2 <= 1 for every row (training and replacement)"),
            verified("strong_convexity", f"J is m-strongly convex, m = lam = {m:g} (mean scale)"),
            check("smoothness", f"J is L-smooth with L <= {L:.6g} for the current data "
                  f"({smoothness}; bound now {L_now:.6g}); eta = 2/(L + m)", step_ok, L_now, L),
            verified("loss_gradient_bound",
                     f"||grad l_i(w)|| <= G = {G:.6g} for every w and row", G),
            verified("projection", f"every optimum lies in the ball ||w|| <= G/m = {R0:.6g} "
                     "(projection keeps the contraction)", R0),
            check("steps", f"I = {I} steps within max_steps = {k_max}", steps_ok, I, k_max),
            check("contraction_consistent",
                  "the measured ||grad J(w)||/L (a lower bound on the distance to the optimum) "
                  "is within the contraction bound (plus its rounding allowance)", consistent,
                  lower, e_new, private=True),
            check("float64", "computed in float64 (enable jax_enable_x64)", x64),
        ]
        if smoothness == "data":
            a.append(assumed("public_step_size", "eta = 2/(L + m) uses a spectral bound of the "
                             "training data; treated as a public constant", eta))
        bounds = {"I": I, "T": state.steps[0], "gamma": gamma, "eta": eta, "L": L, "m": m,
                  "G": G, "optimum_shift": shift, "error_before": state.error,
                  "error_bound": e_new, "reference_error": e_ref, "sensitivity": sens,
                  "noise_multiplier": z, "measured_distance_lower_bound": lower,
                  "measured_distance_upper_bound": gnorm / m}
        if adjacency == "replacement" and I >= 1 and S == 1:
            bounds["sigma_paper"] = d2d.sigma_paper(L, m, n_before, I, eps, dlt, G)
        cert = make_certificate(
            mechanism=MECHANISM, epsilon=eps, delta=dlt, sigma=sig,
            threat="indistinguishable_from_retraining", adjacency=adjacency, scale="mean",
            calibration=calibrate(eps, dlt, 1.0, method=calibration).method,
            sensitivity=sens, releases=release + 1, epsilon_composed=eps_composed,
            delta_composed=dlt, removed=int(n_total - int(np.asarray(mask).sum())),
            assumptions=a, bounds=bounds, solver={"steps": I}, private={"grad_norm": gnorm},
            notes=("Each release is (epsilon, delta)-indistinguishable from the same algorithm "
                   "run from scratch on the current data (T projected GD steps from 0) and "
                   "published with the same Gaussian noise; fresh noise per release from the "
                   "internal noiseless model.",
                   "epsilon_composed (exact Gaussian composition) covers an observer of all "
                   "releases since training "
                   "against the sequence of noised retrained models; it does not hide a "
                   "deletion from an observer of the model before and after.",
                   f"sensitivity = e + e_ref = {e_new:.6g} + {e_ref:.6g} (mean-scale parameter "
                   "distance)"),
        )
        diagnostics = {"I": I, "S": S, "n_before": n_before, "n_after": n_after, "sigma": sig,
                       "error_bound": e_new, "sensitivity": sens,
                       "measured_distance_lower_bound": lower,
                       "seconds": time.perf_counter() - t0}
        if cert.status == "fails":
            return UnlearnResult(None, state, cert, "retrain_required", diagnostics)
        pub = W + gaussian_like(state.key, W, sig, release=release)
        new_state = state._replace(X=X, Y=Y, mask=mask, W=W, published=pub, error=e_new,
                                   sigmas=sigmas, sensitivities=senss,
                                   steps=state.steps + (I,), n_replaced=n_replaced)
        return UnlearnResult(params(new_state), new_state, cert, "unlearned", diagnostics)

    return Unlearner(init=init, unlearn=unlearn, params=params, retrain=retrain)
