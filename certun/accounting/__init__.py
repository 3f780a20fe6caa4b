"""Privacy accounting: Gaussian-mechanism calibration and composition (host side, float64).

Calibration (:mod:`certun.accounting.gaussian`):

* :func:`calibrate` -- ``sigma`` for ``(epsilon, delta)`` and a sensitivity, by the
  analytic Gaussian mechanism (``"analytic_gaussian"``, default; Balle & Wang
  2018), the classic one (``"classic_gaussian"``, ``epsilon < 1`` only; Dwork &
  Roth 2014) or Guo et al.'s constant (``"guo_c"``,
  ``epsilon <= guo_max_epsilon(delta)`` only; Guo et al. 2020).
* :func:`gaussian_delta`, :func:`analytic_epsilon` -- the exact guarantee of a
  given ``sigma``.
* :func:`guo_c`, :func:`guo_sigma`, :func:`guo_budget`, :func:`guo_max_epsilon` --
  Guo et al.'s certified-removal calibration and its validity range.

Composition (:mod:`certun.accounting.composition`):

* :func:`compose_gaussian` -- epsilon of several Gaussian releases (PLD or RDP,
  via dp-accounting).
* :func:`compose_basic`, :func:`compose_advanced` -- textbook bounds.
* :func:`gaussian_rdp`, :func:`rdp_to_dp_simple` (Mironov 2017, the conversion
  of Chien et al.), :func:`rdp_to_dp_tight` (dp-accounting's) -- Renyi-DP
  helpers. State the conversion with every epsilon.

References:
  B. Balle and Y.-X. Wang, ICML 2018, https://arxiv.org/abs/1805.06530.
  C. Guo et al., ICML 2020, https://arxiv.org/abs/1911.03030.
  I. Mironov, CSF 2017, https://arxiv.org/abs/1702.07476.
  C. Dwork and A. Roth, "The algorithmic foundations of differential privacy", 2014.
"""

from __future__ import annotations

from certun.accounting.composition import (
    ACCOUNTANTS,
    ADJACENCIES,
    Composition,
    compose_advanced,
    compose_basic,
    compose_gaussian,
    gaussian_rdp,
    rdp_to_dp_simple,
    rdp_to_dp_tight,
)
from certun.accounting.gaussian import (
    ANALYTIC_GAUSSIAN,
    CALIBRATION_METHODS,
    CLASSIC_GAUSSIAN,
    GUO_C,
    Calibration,
    analytic_epsilon,
    analytic_sigma,
    calibrate,
    classic_sigma,
    gaussian_delta,
    guo_budget,
    guo_c,
    guo_max_epsilon,
    guo_sigma,
    log_gaussian_delta,
)

__all__ = [
    # gaussian
    "ANALYTIC_GAUSSIAN",
    "CLASSIC_GAUSSIAN",
    "GUO_C",
    "CALIBRATION_METHODS",
    "Calibration",
    "calibrate",
    "analytic_sigma",
    "classic_sigma",
    "guo_c",
    "guo_sigma",
    "guo_budget",
    "guo_max_epsilon",
    "gaussian_delta",
    "log_gaussian_delta",
    "analytic_epsilon",
    # composition
    "ACCOUNTANTS",
    "ADJACENCIES",
    "Composition",
    "compose_gaussian",
    "compose_basic",
    "compose_advanced",
    "gaussian_rdp",
    "rdp_to_dp_simple",
    "rdp_to_dp_tight",
]

from certun.accounting import langevin as langevin  # noqa: E402
from certun.accounting.langevin import langevin_epsilon as langevin_epsilon  # noqa: E402
from certun.accounting.langevin import steps_needed as steps_needed  # noqa: E402

__all__ += ["langevin", "langevin_epsilon", "steps_needed"]

from certun.accounting import koloskova as koloskova  # noqa: E402

__all__ += ["koloskova"]
