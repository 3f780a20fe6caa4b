r"""Accounting of noisy fine-tuning (Koloskova et al., ICML 2025), host side, float64.

Two analyses of a noisy fine-tuning run on the *retained* data that starts from a model
clipped into a ball (derivations: ``proofs/koloskova2025_noisy_finetuning.md``).

**Gradient clipping** (privacy amplification by iteration, Feldman et al. 2018, with
shifts). The run is ``x_0 = clip(x_hat, C_0) + N(0, sigma_0^2 I)`` and

.. math::  x_{t+1} = (1-\eta\lambda)\,x_t - \eta\,\mathrm{clip}(g_t, C_1) + N(0,\sigma^2 I),

so one step moves two runs apart by at most ``rho ||x - x'|| + s`` with
``rho = 1 - eta lambda`` and ``s = 2 eta C_1``, whatever the loss. Two runs started
anywhere in the ball (distance ``D = 2 C_0``) then satisfy, at **every** order ``alpha``,

.. math::
    D_\alpha \le \alpha\,\mu,\qquad
    \mu = \frac{Z^2}{2\,\bigl(\rho^{2T}\sigma_0^2 + \sigma^2\sum_{t<T}\rho^{2(T-1-t)}\bigr)},
    \qquad Z = \rho^T D + s\sum_{t<T}\rho^{T-1-t}

(:func:`pabi_mu`). The Renyi epsilon grows **linearly** with the order, so the
``(epsilon, delta)`` guarantee needs the order-dependent conversion (Canonne, Kamath &
Steinke 2020, Prop. 12; the one dp-accounting uses)

.. math::
    \epsilon = \min_{\alpha>1}\ \alpha\mu + \ln(1 - 1/\alpha) - \frac{\ln(\delta\alpha)}{\alpha-1}

(:func:`mu_to_epsilon`; :func:`epsilon_to_mu` inverts it). The authors' public code
evaluates this minimum with the Renyi epsilon held **constant** in ``alpha`` (its
``eps_renyi`` in place of ``alpha mu``): :func:`reference_code_epsilon`. Their
"epsilon 1" (``mu = 1``, delta ``1e-5``) is really epsilon ``mu_to_epsilon(1, 1e-5)``
``~= 6.8``.

**Model clipping** (contraction of projected noisy steps; Asoodeh et al. 2020's
``E_gamma`` contraction coefficients). The run is
``x_0 = clip(x_hat, C_0) + N(0, sigma_0^2 I)``,
``x_{t+1} = clip(x_t - eta (g_t + lambda x_t), C_2) + N(0, sigma^2 I)``; the hockey-stick
divergence at ``e^epsilon`` starts at ``delta_0 = theta_epsilon(2 C_0 / sigma_0)`` and after
each step is multiplied by ``theta_{epsilon_t}(2 C_2 / sigma)``,
``epsilon_t = ln(1 + (e^epsilon - 1) / delta_t)`` (:func:`model_clipping_deltas`), where

.. math::  \theta_\epsilon(r) = \Phi(-\epsilon/r + r/2) - e^\epsilon\,\Phi(-\epsilon/r - r/2)

is the privacy profile of a Gaussian mechanism with ``sensitivity / sigma = r``.

**Output perturbation** (the paper's baseline): ``clip(x_hat, C_0) + N(0, sigma^2 I)`` with
``sigma`` the analytic Gaussian calibration to sensitivity ``2 C_0``.

References:
  A. Koloskova, Y. Allouah, A. Jha, R. Guerraoui, S. Koyejo, "Certified Unlearning for
  Neural Networks", ICML 2025, https://arxiv.org/abs/2506.06985.
  V. Feldman, I. Mironov, K. Talwar, A. Thakurta, "Privacy Amplification by Iteration",
  FOCS 2018, https://arxiv.org/abs/1808.06651.
  S. Asoodeh, M. Diaz, F. Calmon, "Privacy Amplification of Iterative Algorithms via
  Contraction Coefficients", ISIT 2020, https://arxiv.org/abs/2001.06546.
  C. L. Canonne, G. Kamath, T. Steinke, "The Discrete Gaussian for Differential Privacy",
  NeurIPS 2020, https://arxiv.org/abs/2004.00010, Proposition 12.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

import numpy as np
from scipy import optimize, special

from certun import _validate

__all__ = [
    "PabiCalibration",
    "pabi_mu",
    "mu_to_epsilon",
    "epsilon_to_mu",
    "reference_code_epsilon",
    "gradient_clipping_sigma",
    "theta",
    "model_clipping_deltas",
    "model_clipping_steps",
]


class PabiCalibration(NamedTuple):
    """The prescribed noise of the gradient-clipping variant.

    Attributes:
      sigma: per-step noise standard deviation (0 when the initial noise suffices).
      steps: number of noisy steps ``T``.
      mu: the Renyi slope ``D_alpha <= alpha mu`` the noise certifies.
      epsilon, delta: the guarantee (order-dependent conversion of ``mu``).
      order: the Renyi order at which the conversion's minimum is attained.
      shift: ``Z``, the total shift the noise has to absorb.
    """

    sigma: float
    steps: int
    mu: float
    epsilon: float
    delta: float
    order: float
    shift: float


def _weights(steps: int, rho: float) -> np.ndarray:
    """``rho^(T-1-t)`` for ``t = 0..T-1`` (float64)."""
    return rho ** np.arange(steps - 1, -1, -1, dtype=np.float64)


def _shift_and_mass(steps: int, init_clip: float, grad_clip: float, lr: float,
                    weight_decay: float) -> tuple[float, float, float]:
    rho = 1.0 - lr * weight_decay
    w = _weights(steps, rho)
    shift = rho ** steps * 2.0 * init_clip + 2.0 * lr * grad_clip * float(np.sum(w))
    return shift, float(np.sum(w * w)), rho ** (2 * steps)


def _check_contraction(lr: float, weight_decay: float) -> None:
    if not 0.0 <= lr * weight_decay < 1.0:
        raise _validate.ValidationError(
            f"lr * weight_decay = {lr * weight_decay:g} must lie in [0, 1) (the step "
            "(1 - lr weight_decay) x must not flip the sign); lower lr or weight_decay")


def pabi_mu(*, sigma: float, steps: int, init_clip: float, grad_clip: float, lr: float,
            weight_decay: float = 0.0, init_sigma: float = 0.0) -> float:
    r"""The Renyi slope ``mu`` (``D_alpha <= alpha mu`` at every order) of gradient clipping.

    ``mu = Z^2 / (2 (rho^{2T} sigma_0^2 + sigma^2 sum_t rho^{2(T-1-t)}))`` when that optimal
    split of the shift keeps every intermediate shift non-negative, else the smaller of the
    per-step-noise-only bound ``Z^2 / (2 sigma^2 sum_t rho^{2(T-1-t)})`` and the
    initial-noise-only bound ``(2 C_0)^2 / (2 sigma_0^2)``; Koloskova et al. (ICML 2025),
    gradient-clipping theorem, in the closed form of ``proofs/koloskova2025_noisy_finetuning.md``
    §2 (eqs. (2.4)-(2.6)).

    Args:
      sigma: per-step noise standard deviation (``>= 0``).
      steps: number of noisy steps ``T >= 1``.
      init_clip: ``C_0``, the radius the trained model is clipped to.
      grad_clip: ``C_1``, the per-step (minibatch) gradient clipping norm.
      lr: step size ``eta``.
      weight_decay: ``lambda`` (``0 <= eta lambda < 1``).
      init_sigma: ``sigma_0``, noise added to the clipped model before the first step.

    Returns:
      ``mu`` (``inf`` when there is no noise at all).
    """
    T = _validate.integer(steps=steps, minimum=1)
    s = _validate.non_negative(sigma=sigma)
    s0 = _validate.non_negative(init_sigma=init_sigma)
    c0 = _validate.positive(init_clip=init_clip)
    c1 = _validate.positive(grad_clip=grad_clip)
    eta = _validate.positive(lr=lr)
    lam = _validate.non_negative(weight_decay=weight_decay)
    _check_contraction(eta, lam)
    return _mu(s, T, c0, c1, eta, lam, s0)


def _allocation_feasible(sigma: float, steps: int, c0: float, c1: float, lr: float, lam: float,
                         s0: float) -> bool:
    """Whether the optimal shift allocation keeps every intermediate shift ``z_t >= 0``."""
    rho = 1.0 - lr * lam
    shift, mass, rho2T = _shift_and_mass(steps, c0, c1, lr, lam)
    var = rho2T * s0 * s0 + sigma * sigma * mass
    c = shift / var  # a_j = c w_j sigma_j^2
    z = 2.0 * c0 - c * rho ** steps * s0 * s0
    if z < -1e-12 * shift:
        return False
    w = _weights(steps, rho)
    s = 2.0 * lr * c1
    for t in range(steps):  # z_{t+1} = rho z_t + s - a_t
        z = rho * z + s - c * w[t] * sigma * sigma
        if z < -1e-9 * shift:
            return False
    return True


def _mu(s: float, T: int, c0: float, c1: float, eta: float, lam: float, s0: float) -> float:
    shift, mass, rho2T = _shift_and_mass(T, c0, c1, eta, lam)
    cands = []
    if s > 0:  # the per-step noise alone (always a feasible allocation, §2.3)
        cands.append(shift * shift / (2.0 * s * s * mass))
    if s0 > 0:  # the initial noise alone, then post-processing (data processing)
        cands.append((2.0 * c0) ** 2 / (2.0 * s0 * s0))
    if s > 0 and s0 > 0 and _allocation_feasible(s, T, c0, c1, eta, lam, s0):
        cands.append(shift * shift / (2.0 * (rho2T * s0 * s0 + s * s * mass)))
    return min(cands) if cands else math.inf


def _conv(alpha: float, mu: float, log_delta: float) -> float:
    return alpha * mu + math.log1p(-1.0 / alpha) - (log_delta + math.log(alpha)) / (alpha - 1.0)


def _dconv(alpha: float, mu: float, log_delta: float) -> float:
    # d/dalpha of _conv: mu + 1/(alpha(alpha-1)) - 1/(alpha(alpha-1)) + (ld + ln a)/(a-1)^2
    return mu + (log_delta + math.log(alpha)) / (alpha - 1.0) ** 2


def mu_to_epsilon(mu: float, delta: float) -> tuple[float, float]:
    r"""The order-dependent conversion of ``D_alpha <= alpha mu`` (all ``alpha > 1``) to DP.

    ``epsilon = min_alpha alpha mu + ln(1 - 1/alpha) - ln(delta alpha)/(alpha - 1)``
    (Canonne, Kamath & Steinke 2020, Prop. 12), minimised exactly: the derivative
    ``mu + ln(delta alpha)/(alpha - 1)^2`` is increasing in ``alpha`` where it vanishes, and
    its root is found by Brent's method (``proofs/koloskova2025_noisy_finetuning.md`` §3).

    Args:
      mu: the Renyi slope (``> 0``).
      delta: target delta in ``(0, 1)``.

    Returns:
      ``(epsilon, alpha*)`` (epsilon clipped at 0).
    """
    m = _validate.positive(mu=mu)
    dlt = _validate.delta(delta=delta)
    ld = math.log(dlt)
    lo, hi = 1.0 + 1e-12, 2.0
    while _dconv(hi, m, ld) < 0.0:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:  # pragma: no cover - mu > 0 makes the derivative positive eventually
            raise RuntimeError("mu_to_epsilon: no minimum found")
    if _dconv(lo, m, ld) >= 0.0:
        a = lo
    else:
        a = float(cast(float, optimize.brentq(_dconv, lo, hi, args=(m, ld), xtol=1e-15,
                                             rtol=cast(Any, 1e-15), maxiter=500)))
    return max(0.0, _conv(a, m, ld)), float(a)


def epsilon_to_mu(epsilon: float, delta: float) -> float:
    """The largest Renyi slope ``mu`` whose order-dependent conversion gives ``epsilon``.

    Inverse of :func:`mu_to_epsilon` in ``mu`` (which it increases), by Brent's method to
    relative ``1e-14``.
    """
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    lo, hi = 1e-12, 1.0
    while mu_to_epsilon(hi, dlt)[0] < eps:
        lo, hi = hi, hi * 2.0
    while mu_to_epsilon(lo, dlt)[0] > eps:
        lo *= 1e-3
    mu = float(cast(float, optimize.brentq(lambda m: mu_to_epsilon(m, dlt)[0] - eps, lo, hi,
                                           xtol=1e-300, rtol=cast(Any, 1e-14), maxiter=500)))
    for _ in range(1000):  # shade down until the forward conversion is within the target
        if mu_to_epsilon(mu, dlt)[0] <= eps:
            break
        mu *= 1.0 - 1e-15
    return mu


def reference_code_epsilon(renyi_epsilon: float, delta: float) -> float:
    r"""What the authors' public code reports for a Renyi epsilon: a constant-in-order curve.

    Their accountant evaluates ``min_alpha eps_R + ln((alpha-1)/alpha) - (ln delta +
    ln alpha)/(alpha - 1)`` over ``alpha`` in ``linspace(1.001, 1000, 10000)`` with ``eps_R``
    their per-order value ``mu`` held fixed for every ``alpha``. The analysis gives
    ``D_alpha <= alpha mu``, not ``mu``: the true guarantee of the same noise is
    :func:`mu_to_epsilon` ``(renyi_epsilon, delta)`` (about 6.8 for their ``1`` at ``1e-5``).
    """
    r = _validate.positive(renyi_epsilon=renyi_epsilon)
    dlt = _validate.delta(delta=delta)
    a = np.linspace(1.001, 1000.0, 10000)
    return float(np.min(r - (np.log(dlt) + np.log(a)) / (a - 1.0) + np.log((a - 1.0) / a)))


def gradient_clipping_sigma(*, epsilon: float, delta: float, init_clip: float, grad_clip: float,
                            lr: float, weight_decay: float = 0.0, steps: int | None = None,
                            init_sigma: float = 0.0, max_steps: int = 100_000) -> PabiCalibration:
    r"""Per-step noise of the gradient-clipping variant for an ``(epsilon, delta)`` target.

    ``mu* = epsilon_to_mu(epsilon, delta)``; then
    ``sigma^2 = (Z^2 / (2 mu*) - rho^{2T} sigma_0^2) / sum_t rho^{2(T-1-t)}`` (0 if negative),
    the inverse of :func:`pabi_mu`. With ``steps=None`` the ``T <= max_steps`` with the
    smallest ``sigma`` is used (without weight decay ``T = C_0 / (eta C_1)`` rounded, as in
    the authors' code).

    Args:
      epsilon: the target epsilon (order-dependent conversion).
      delta: the target delta.
      init_clip: ``C_0`` (as in :func:`pabi_mu`).
      grad_clip: ``C_1``.
      lr: step size ``eta``.
      weight_decay: ``lambda``.
      init_sigma: ``sigma_0``.
      steps: number of noisy steps, or ``None`` for the noise-minimising count.
      max_steps: the largest count searched when ``steps`` is ``None``.

    Returns:
      A :class:`PabiCalibration`.
    """
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    c0 = _validate.positive(init_clip=init_clip)
    c1 = _validate.positive(grad_clip=grad_clip)
    eta = _validate.positive(lr=lr)
    lam = _validate.non_negative(weight_decay=weight_decay)
    s0 = _validate.non_negative(init_sigma=init_sigma)
    _check_contraction(eta, lam)
    mu = epsilon_to_mu(eps, dlt)
    rho = 1.0 - eta * lam
    if steps is None:
        Tmax = _validate.integer(max_steps=max_steps, minimum=1)
        T = np.arange(1, Tmax + 1, dtype=np.float64)
        geo = T if rho == 1.0 else (1.0 - rho ** T) / (1.0 - rho)
        geo2 = T if rho == 1.0 else (1.0 - rho ** (2 * T)) / (1.0 - rho * rho)
        Z = rho ** T * 2.0 * c0 + 2.0 * eta * c1 * geo
        var = np.maximum(Z * Z / (2.0 * mu) - rho ** (2 * T) * s0 * s0, 0.0) / geo2
        T_best = int(T[int(np.argmin(var))])
    else:
        T_best = _validate.integer(steps=steps, minimum=1)
    shift, mass, rho2T = _shift_and_mass(T_best, c0, c1, eta, lam)
    if s0 > 0 and (2.0 * c0) ** 2 / (2.0 * s0 * s0) <= mu:
        sigma = 0.0  # the initial noise alone meets the target
    else:
        sigma = math.sqrt(max(shift * shift / (2.0 * mu) - rho2T * s0 * s0, 0.0) / mass)
        if s0 > 0 and not _allocation_feasible(sigma, T_best, c0, c1, eta, lam, s0):
            sigma = math.sqrt(shift * shift / (2.0 * mu) / mass)  # per-step noise alone
    if sigma > 0:  # round up until the forward bound meets the target exactly
        for _ in range(100):
            if pabi_mu(sigma=sigma, steps=T_best, init_clip=c0, grad_clip=c1, lr=eta,
                       weight_decay=lam, init_sigma=s0) <= mu:
                break
            sigma *= 1.0 + 1e-15
    mu_got = pabi_mu(sigma=sigma, steps=T_best, init_clip=c0, grad_clip=c1, lr=eta,
                     weight_decay=lam, init_sigma=s0)
    e, a = mu_to_epsilon(mu_got, dlt)
    return PabiCalibration(sigma, T_best, mu_got, e, dlt, a, shift)


def theta(epsilon: float, r: float) -> float:
    r"""``theta_epsilon(r) = Phi(-epsilon/r + r/2) - e^epsilon Phi(-epsilon/r - r/2)``.

    The exact ``delta(epsilon)`` of a Gaussian mechanism with ``sensitivity / sigma = r``
    (Balle & Wang 2018, Thm. 8), evaluated in log space (``log_ndtr``) so that tiny values
    keep their relative precision; ``1`` for ``r = inf``.
    """
    eps = _validate.non_negative(epsilon=epsilon)
    if math.isinf(r):
        return 1.0
    r = _validate.positive(r=r)
    la = float(special.log_ndtr(-eps / r + r / 2.0))
    lb = eps + float(special.log_ndtr(-eps / r - r / 2.0))
    if lb >= la:
        return 0.0
    return float(math.exp(la) * -math.expm1(lb - la))


def model_clipping_deltas(*, epsilon: float, init_clip: float, init_sigma: float,
                          model_clip: float, sigma: float, steps: int) -> np.ndarray:
    r"""``delta_t`` (``t = 0..T``) of the model-clipping variant at a fixed ``epsilon``.

    ``delta_0 = theta_epsilon(2 C_0 / sigma_0)`` (the clip-and-noise start; 1 without
    initial noise), ``delta_{t+1} = delta_t theta_{epsilon_t}(2 C_2 / sigma)`` with
    ``epsilon_t = ln(1 + (e^epsilon - 1)/delta_t)`` (``proofs/koloskova2025_noisy_finetuning.md``
    §4, eq. (4.3)). The run is ``(epsilon, delta_T)``-indistinguishable from the same run
    started from any other point of the ball.
    """
    eps = _validate.epsilon(epsilon=epsilon)
    c0 = _validate.positive(init_clip=init_clip)
    s0 = _validate.non_negative(init_sigma=init_sigma)
    c2 = _validate.positive(model_clip=model_clip)
    s = _validate.positive(sigma=sigma)
    T = _validate.integer(steps=steps, minimum=0)
    d = [1.0 if s0 == 0 else theta(eps, 2.0 * c0 / s0)]
    em1 = math.expm1(eps)
    for _ in range(T):
        prev = d[-1]
        if prev <= 0.0:
            d.append(0.0)
            continue
        eps_t = math.log1p(em1 / prev)
        d.append(prev * theta(eps_t, 2.0 * c2 / s))
    return np.asarray(d, np.float64)


def model_clipping_steps(*, epsilon: float, delta: float, init_clip: float, init_sigma: float,
                         model_clip: float, sigma: float, max_steps: int = 100_000) -> int:
    """The fewest noisy steps after which the model-clipping run is ``(epsilon, delta)``.

    Raises:
      ValidationError: when ``max_steps`` steps do not reach ``delta`` (raise ``sigma``).
    """
    dlt = _validate.delta(delta=delta)
    cap = _validate.integer(max_steps=max_steps, minimum=0)
    eps = _validate.epsilon(epsilon=epsilon)
    c0 = _validate.positive(init_clip=init_clip)
    s0 = _validate.non_negative(init_sigma=init_sigma)
    c2 = _validate.positive(model_clip=model_clip)
    s = _validate.positive(sigma=sigma)
    d = 1.0 if s0 == 0 else theta(eps, 2.0 * c0 / s0)
    em1 = math.expm1(eps)
    t = 0
    while d > dlt:
        if t >= cap:
            raise _validate.ValidationError(
                f"model clipping does not reach delta={dlt:g} within max_steps={cap} at "
                f"sigma={s:g}; raise sigma (or init_sigma), lower model_clip or raise max_steps")
        d *= theta(math.log1p(em1 / d), 2.0 * c2 / s)
        t += 1
    return t
