"""Gaussian-mechanism calibration: classic, analytic (Balle-Wang) and Guo et al.'s constant.

A Gaussian mechanism releases ``f(D) + N(0, sigma^2 I)`` for a query ``f`` of L2
sensitivity ``Delta = max ||f(D) - f(D')||_2`` over neighbouring data sets. This
module answers the two calibration questions for it, entirely on the host in
float64 (NumPy / SciPy / dp-accounting; nothing here is traced):

* *which* ``sigma`` makes the release ``(epsilon, delta)``-DP
  (:func:`analytic_sigma`, :func:`classic_sigma`, :func:`guo_sigma`,
  :func:`calibrate`), and
* *what* ``(epsilon, delta)`` a given ``sigma`` buys (:func:`gaussian_delta`,
  :func:`analytic_epsilon`).

The exact condition (Balle & Wang 2018, Theorem 8): ``N(f(D), sigma^2 I)`` is
``(epsilon, delta)``-DP iff::

    Phi(Delta/(2 sigma) - epsilon sigma/Delta)
        - e^epsilon Phi(-Delta/(2 sigma) - epsilon sigma/Delta)  <=  delta.

Three calibrations are offered; their public names (as written into
certificates) are ``"analytic_gaussian"``, ``"classic_gaussian"`` and ``"guo_c"``:

* **analytic** -- the smallest ``sigma`` satisfying the exact condition. Always
  valid; the default.
* **classic** -- Dwork & Roth (2014, Theorem A.1),
  ``sigma = Delta sqrt(2 ln(1.25/delta)) / epsilon``. Its proof needs
  ``epsilon < 1``; above that it can *under*-noise (0.4845 < 0.4999 at
  ``epsilon = 10``, ``delta = 1e-5``), so it is refused there.
* **guo** -- Guo et al. (2020, Theorem 3), ``sigma = c Delta / epsilon`` with
  ``c = sqrt(2 ln(1.5/delta))``. It over-noises for moderate ``epsilon`` but
  falls below the exact requirement above :func:`guo_max_epsilon` (about 8.38 at
  ``delta = 1e-4``, 8.79 at ``1e-5``), so it is refused there (docs/bibliography.md
  erratum 2).

References:
  B. Balle and Y.-X. Wang, "Improving the Gaussian mechanism for differential
  privacy: analytical calibration and optimal denoising", ICML 2018,
  https://arxiv.org/abs/1805.06530.
  C. Guo, T. Goldstein, A. Hannun and L. van der Maaten, "Certified data removal
  from machine learning models", ICML 2020, https://arxiv.org/abs/1911.03030.
  C. Dwork and A. Roth, "The algorithmic foundations of differential privacy",
  Foundations and Trends in TCS 9(3-4), 2014, Theorem A.1.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, cast

import dp_accounting
import numpy as np
import scipy.optimize
import scipy.special

from certun import _validate

__all__ = [
    "ANALYTIC_GAUSSIAN",
    "CLASSIC_GAUSSIAN",
    "GUO_C",
    "CALIBRATION_METHODS",
    "Calibration",
    "classic_sigma",
    "guo_c",
    "analytic_sigma",
    "gaussian_delta",
    "log_gaussian_delta",
    "analytic_epsilon",
    "guo_max_epsilon",
    "guo_sigma",
    "guo_budget",
    "calibrate",
]

#: Public (certificate) name of the analytic Gaussian mechanism (Balle & Wang 2018).
ANALYTIC_GAUSSIAN = "analytic_gaussian"
#: Public (certificate) name of the classic Gaussian mechanism (Dwork & Roth 2014).
CLASSIC_GAUSSIAN = "classic_gaussian"
#: Public (certificate) name of Guo et al.'s ``c = sqrt(2 ln(1.5/delta))`` calibration.
GUO_C = "guo_c"

#: Short method name accepted by :func:`calibrate` -> public certificate name.
CALIBRATION_METHODS: dict[str, str] = {
    "analytic": ANALYTIC_GAUSSIAN,
    "classic": CLASSIC_GAUSSIAN,
    "guo": GUO_C,
}


class Calibration(NamedTuple):
    """A calibrated Gaussian mechanism.

    Attributes:
      sigma: the noise standard deviation (same units as ``sensitivity``).
      method: public name of the calibration: ``"analytic_gaussian"``,
        ``"classic_gaussian"`` or ``"guo_c"``.
      epsilon: the target epsilon.
      delta: the target delta.
      sensitivity: the L2 sensitivity ``Delta`` the noise was calibrated to.
    """

    sigma: float
    method: str
    epsilon: float
    delta: float
    sensitivity: float


# --------------------------------------------------------------------------- #
# Classic (Dwork & Roth) and Guo et al.
# --------------------------------------------------------------------------- #


def classic_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    r"""Noise of the classic Gaussian mechanism (Dwork & Roth 2014, Theorem A.1).

    .. math::  \sigma = \Delta \sqrt{2 \ln(1.25/\delta)} / \epsilon .

    The theorem is proved only for ``epsilon < 1``; for larger epsilon the formula
    can fall below the exact requirement (e.g. ``sigma/Delta = 0.4845`` versus the
    exact 0.4999 at ``epsilon = 10, delta = 1e-5``), so it is refused there.

    Args:
      epsilon: target epsilon, ``0 < epsilon < 1``.
      delta: target delta in ``(0, 1)``.
      sensitivity: L2 sensitivity ``Delta > 0``.

    Returns:
      The standard deviation ``sigma`` (float64 Python float).

    Raises:
      ValueError: if an argument is out of range, or if ``epsilon >= 1`` where the
        classic theorem does not hold (use :func:`analytic_sigma`, which is valid
        for every epsilon and never larger).

    References:
      C. Dwork and A. Roth, "The algorithmic foundations of differential privacy",
      2014, Theorem A.1. B. Balle and Y.-X. Wang, ICML 2018,
      https://arxiv.org/abs/1805.06530 (Section 2 shows the failure for large
      epsilon).
    """
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    sens = _validate.positive(sensitivity=sensitivity)
    if eps >= 1.0:
        raise _validate.ValidationError(
            f"epsilon={epsilon!r} is >= 1, where the classic Gaussian mechanism "
            "(Dwork & Roth Thm A.1) is not proved and can under-noise; use "
            "analytic_sigma (calibrate(..., method='analytic')), which is exact for "
            "every epsilon"
        )
    return sens * math.sqrt(2.0 * math.log(1.25 / dlt)) / eps


def guo_c(delta: float) -> float:
    r"""Guo et al.'s noise constant ``c = sqrt(2 ln(1.5/delta))``.

    Guo et al. (2020, Theorem 3) draw ``b ~ N(0, (c epsilon'/epsilon)^2 I)`` so
    that ``delta = 1.5 exp(-c^2/2)``. ``c = 4.3854`` at ``delta = 1e-4`` and
    ``4.8823`` at ``delta = 1e-5``.

    Args:
      delta: target delta in ``(0, 1)``.

    Returns:
      ``c`` as a float64 Python float.

    Raises:
      ValueError: if ``delta`` is not in ``(0, 1)``.

    References:
      C. Guo et al., "Certified data removal from machine learning models",
      ICML 2020, https://arxiv.org/abs/1911.03030.
    """
    dlt = _validate.delta(delta=delta)
    return math.sqrt(2.0 * math.log(1.5 / dlt))


# --------------------------------------------------------------------------- #
# Exact (analytic) Gaussian mechanism
# --------------------------------------------------------------------------- #


def _log_delta(z: float, eps: float) -> float:
    """``log delta(eps)`` of a Gaussian with noise multiplier ``z = sigma/Delta``.

    ``delta = Phi(a) - e^eps Phi(b)`` with ``a = 1/(2z) - eps z`` and
    ``b = -1/(2z) - eps z``, evaluated as
    ``log Phi(a) + log(1 - exp(eps + log Phi(b) - log Phi(a)))`` so that neither
    ``e^eps`` nor the tails overflow/underflow. ``-inf`` means ``delta = 0``.
    """
    a = 0.5 / z - eps * z
    b = -0.5 / z - eps * z
    la = float(scipy.special.log_ndtr(a))
    lb = eps + float(scipy.special.log_ndtr(b))
    if not lb < la:
        return -math.inf
    return la + math.log(-math.expm1(lb - la))


def log_gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """Natural log of :func:`gaussian_delta` (``-inf`` when delta is 0).

    Args:
      sigma: noise standard deviation ``> 0``.
      epsilon: epsilon ``> 0``.
      sensitivity: L2 sensitivity ``Delta > 0``.

    Returns:
      ``log delta`` as a float64 Python float.

    Raises:
      ValueError: if an argument is out of range.
    """
    s = _validate.positive(sigma=sigma)
    eps = _validate.epsilon(epsilon=epsilon)
    sens = _validate.positive(sensitivity=sensitivity)
    return _log_delta(s / sens, eps)


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    r"""Exact delta of the Gaussian mechanism at a given epsilon (Balle & Wang 2018).

    .. math::
        \delta(\epsilon) = \Phi\Big(\frac{\Delta}{2\sigma} - \frac{\epsilon\sigma}{\Delta}\Big)
          - e^{\epsilon}\,\Phi\Big(-\frac{\Delta}{2\sigma} - \frac{\epsilon\sigma}{\Delta}\Big).

    ``N(f(D), sigma^2 I)`` is ``(epsilon, delta)``-DP iff ``delta >=`` this value.
    Computed in log space (``scipy.special.log_ndtr``) so that large epsilon
    does not overflow ``e^epsilon``.

    Args:
      sigma: noise standard deviation ``> 0``.
      epsilon: epsilon ``> 0``.
      sensitivity: L2 sensitivity ``Delta > 0``.

    Returns:
      delta in ``[0, 1)`` as a float64 Python float; decreasing in both ``sigma``
      and ``epsilon``.

    Raises:
      ValueError: if an argument is out of range.

    References:
      B. Balle and Y.-X. Wang, ICML 2018, https://arxiv.org/abs/1805.06530,
      Theorem 8.
    """
    return math.exp(log_gaussian_delta(sigma, epsilon, sensitivity))


def analytic_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    r"""Smallest noise of an ``(epsilon, delta)``-DP Gaussian mechanism (analytic calibration).

    Solves :func:`gaussian_delta` ``(sigma, epsilon, Delta) = delta`` for
    ``sigma`` via ``dp_accounting.get_sigma_gaussian`` (the Balle-Wang condition,
    bracketed root-finding in log space) and scales by the sensitivity:
    ``sigma = Delta * z(epsilon, delta)``; ``z = 3.7306`` at ``(1, 1e-5)``.

    Valid for every ``epsilon > 0``, and never larger than :func:`classic_sigma`
    where that one applies.

    Args:
      epsilon: target epsilon ``> 0``.
      delta: target delta in ``(0, 1)``.
      sensitivity: L2 sensitivity ``Delta > 0``.

    Returns:
      ``sigma`` as a float64 Python float.

    Raises:
      ValueError: if an argument is out of range.

    References:
      B. Balle and Y.-X. Wang, ICML 2018, https://arxiv.org/abs/1805.06530.
    """
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    sens = _validate.positive(sensitivity=sensitivity)
    z = float(dp_accounting.get_sigma_gaussian(eps, dlt))
    # The root finder may stop a hair on the wrong side of the exact condition; step up
    # (relative 1e-12 at a time) until the exact delta is within the target.
    log_target = math.log(dlt)
    for _ in range(1000):
        if _log_delta(z, eps) <= log_target:
            break
        z *= 1.0 + 1e-12
    return sens * z


def analytic_epsilon(sigma: float, delta: float, sensitivity: float = 1.0) -> float:
    r"""Smallest epsilon for which a Gaussian mechanism is ``(epsilon, delta)``-DP.

    .. math::  \epsilon^*(\sigma, \delta) = \min\{\epsilon \ge 0 : \delta(\epsilon) \le \delta\}

    with ``delta(epsilon)`` from :func:`gaussian_delta`; computed by
    ``dp_accounting.get_epsilon_gaussian(sigma / Delta, delta)``.

    Args:
      sigma: noise standard deviation ``> 0``.
      delta: target delta in ``(0, 1)``.
      sensitivity: L2 sensitivity ``Delta > 0``.

    Returns:
      epsilon ``>= 0`` (0 when the mechanism is already ``(0, delta)``-DP).

    Raises:
      ValueError: if an argument is out of range.

    References:
      B. Balle and Y.-X. Wang, ICML 2018, https://arxiv.org/abs/1805.06530.
    """
    s = _validate.positive(sigma=sigma)
    dlt = _validate.delta(delta=delta)
    sens = _validate.positive(sensitivity=sensitivity)
    return float(dp_accounting.get_epsilon_gaussian(s / sens, dlt))


# --------------------------------------------------------------------------- #
# Guo et al.'s calibration and its validity range
# --------------------------------------------------------------------------- #


@functools.lru_cache(maxsize=256)
def _guo_max_epsilon(dlt: float) -> float:
    c = math.sqrt(2.0 * math.log(1.5 / dlt))
    log_target = math.log(dlt)

    def gap(eps: float) -> float:
        # > 0 iff Guo's sigma = c/eps is below the exact requirement at eps.
        return _log_delta(c / eps, eps) - log_target

    lo, hi = 1.0, 2.0
    for _ in range(200):
        if gap(lo) < 0.0:
            break
        lo *= 0.5
    else:  # pragma: no cover - cannot happen for delta in (0, 1)
        raise RuntimeError(f"could not bracket guo_max_epsilon for delta={dlt}")
    hi = 2.0 * lo
    for _ in range(200):
        if gap(hi) > 0.0:
            break
        lo, hi = hi, 2.0 * hi
    else:  # pragma: no cover
        raise RuntimeError(f"could not bracket guo_max_epsilon for delta={dlt}")
    root = float(cast(float, scipy.optimize.brentq(gap, lo, hi, xtol=1e-13,
                                                   rtol=4 * np.finfo(float).eps)))
    # Return a value on the valid side of the root (gap <= 0), stepping down if needed.
    for _ in range(1000):
        if gap(root) <= 0.0:
            break
        root = float(np.nextafter(root, 0.0)) - 1e-13
    return root


def guo_max_epsilon(delta: float) -> float:
    r"""Largest epsilon at which Guo et al.'s ``sigma = c Delta / epsilon`` is still valid.

    Solves, by Brent's method,

    .. math::  \delta_{\rm exact}\big(\sigma = c/\epsilon,\ \epsilon,\ \Delta = 1\big) = \delta,
               \qquad c = \sqrt{2\ln(1.5/\delta)},

    where ``delta_exact`` is :func:`gaussian_delta`. Below the root Guo's sigma is
    at least the analytic requirement; above it, it is smaller (under-noised).
    The root is about 8.376 at ``delta = 1e-4`` and 8.794 at ``delta = 1e-5``
    (docs/bibliography.md erratum 2). Cached per delta.

    Args:
      delta: target delta in ``(0, 1)``.

    Returns:
      The threshold epsilon as a float64 Python float.

    Raises:
      ValueError: if ``delta`` is not in ``(0, 1)``.

    References:
      C. Guo et al., ICML 2020, https://arxiv.org/abs/1911.03030.
      B. Balle and Y.-X. Wang, ICML 2018, https://arxiv.org/abs/1805.06530.
    """
    return _guo_max_epsilon(_validate.delta(delta=delta))


def _check_guo_range(eps: float, dlt: float, epsilon: object) -> None:
    emax = _guo_max_epsilon(dlt)
    if eps > emax:
        raise _validate.ValidationError(
            f"epsilon={epsilon!r} exceeds {emax:.6g}, the largest epsilon at which Guo et "
            f"al.'s c = sqrt(2 ln(1.5/delta)) still meets the exact Gaussian requirement at "
            f"delta={dlt:g}; above it sigma = c*Delta/epsilon under-noises. Lower epsilon "
            "or use the analytic calibration (analytic_sigma / method='analytic')"
        )


def guo_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    r"""Guo et al.'s noise ``sigma = c Delta / epsilon`` with ``c = sqrt(2 ln(1.5/delta))``.

    Args:
      epsilon: target epsilon, ``0 < epsilon <= guo_max_epsilon(delta)``.
      delta: target delta in ``(0, 1)``.
      sensitivity: L2 sensitivity ``Delta > 0`` (Guo's ``epsilon'``, the
        gradient-residual norm bound).

    Returns:
      ``sigma`` as a float64 Python float.

    Raises:
      ValueError: if an argument is out of range, or if
        ``epsilon > guo_max_epsilon(delta)``, where the formula under-noises.

    References:
      C. Guo et al., ICML 2020, https://arxiv.org/abs/1911.03030, Theorem 3.
    """
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    sens = _validate.positive(sensitivity=sensitivity)
    _check_guo_range(eps, dlt, epsilon)
    return math.sqrt(2.0 * math.log(1.5 / dlt)) * sens / eps


def guo_budget(sigma: float, epsilon: float, delta: float) -> float:
    r"""Guo et al.'s removal budget ``beta_max = sigma epsilon / c``.

    One draw of the objective perturbation ``b ~ N(0, sigma^2 I)`` certifies
    ``(epsilon, delta)``-removal as long as the *cumulative* gradient-residual
    norm bound (sum-of-losses scale; residuals add by the triangle inequality)
    stays ``<= sigma epsilon / c`` with ``c = sqrt(2 ln(1.5/delta))``; beyond it
    the model must be retrained with a fresh ``b`` (Guo et al. 2020, Algorithm 2).
    ``guo_budget(10, 1, 1e-4) = 2.2803``.

    Args:
      sigma: standard deviation of ``b``, ``> 0``.
      epsilon: target epsilon, ``0 < epsilon <= guo_max_epsilon(delta)``.
      delta: target delta in ``(0, 1)``.

    Returns:
      The budget as a float64 Python float.

    Raises:
      ValueError: if an argument is out of range, or if
        ``epsilon > guo_max_epsilon(delta)``.

    References:
      C. Guo et al., ICML 2020, https://arxiv.org/abs/1911.03030, Algorithm 2.
    """
    s = _validate.positive(sigma=sigma)
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    _check_guo_range(eps, dlt, epsilon)
    return s * eps / math.sqrt(2.0 * math.log(1.5 / dlt))


# --------------------------------------------------------------------------- #
# Front door
# --------------------------------------------------------------------------- #


def calibrate(
    epsilon: float,
    delta: float,
    sensitivity: float = 1.0,
    method: str = "analytic",
) -> Calibration:
    """Calibrate a Gaussian mechanism and record how.

    Args:
      epsilon: target epsilon ``> 0``.
      delta: target delta in ``(0, 1)``.
      sensitivity: L2 sensitivity ``Delta > 0``.
      method: ``"analytic"`` (default; :func:`analytic_sigma`), ``"classic"``
        (:func:`classic_sigma`, ``epsilon < 1`` only) or ``"guo"``
        (:func:`guo_sigma`, ``epsilon <= guo_max_epsilon(delta)`` only). The
        public names ``"analytic_gaussian"``, ``"classic_gaussian"``, ``"guo_c"``
        are accepted too.

    Returns:
      A :class:`Calibration` whose ``method`` is the public name
      (``"analytic_gaussian"``, ``"classic_gaussian"`` or ``"guo_c"``).

    Raises:
      ValueError: if an argument is out of range, ``method`` is unknown, or the
        method is not valid at this epsilon.

    References:
      B. Balle and Y.-X. Wang, ICML 2018, https://arxiv.org/abs/1805.06530.
      C. Guo et al., ICML 2020, https://arxiv.org/abs/1911.03030.
      C. Dwork and A. Roth, 2014, Theorem A.1.
    """
    aliases = {**CALIBRATION_METHODS, **{v: v for v in CALIBRATION_METHODS.values()}}
    _validate.choice(list(aliases), method=method)
    public = aliases[method]
    fn = {ANALYTIC_GAUSSIAN: analytic_sigma, CLASSIC_GAUSSIAN: classic_sigma, GUO_C: guo_sigma}[
        public
    ]
    sigma = fn(epsilon, delta, sensitivity)
    return Calibration(
        sigma=sigma,
        method=public,
        epsilon=float(epsilon),
        delta=float(delta),
        sensitivity=float(sensitivity),
    )
