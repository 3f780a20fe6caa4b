"""Composition of sequential releases: PLD / RDP accounting and textbook bounds.

When an adversary sees several noisy releases (e.g. Zhang et al. / Sekhari et
al. style unlearning that adds fresh Gaussian noise to every published model),
their privacy losses compose. This module offers:

* :func:`compose_gaussian` -- tight accounting of ``k`` Gaussian releases with
  noise multipliers ``z_i = sigma_i / Delta_i`` through Google's
  ``dp_accounting`` (privacy-loss-distribution or Renyi accountant);
* :func:`compose_basic` and :func:`compose_advanced` -- the textbook bounds
  (Dwork & Roth 2014, Thm 3.16 / 3.20), for reference and comparison;
* :func:`gaussian_rdp`, :func:`rdp_to_dp_simple`, :func:`rdp_to_dp_tight` --
  Renyi-DP helpers for mechanisms whose RDP curve is not a plain Gaussian
  (e.g. Langevin unlearning, Chien et al. 2024). Always state which conversion
  produced an epsilon: the same RDP curve gives different epsilons (docs/bibliography.md
  erratum 6: 0.998 with the simple conversion, about 0.777 with the tight one).

Adjacency. ``"removal"`` (add-or-remove-one, the notion of certified removal:
the unlearned model versus one retrained without the point) and
``"replacement"`` (replace-one). For a Gaussian mechanism the privacy curve
depends only on ``Delta / sigma`` where ``Delta`` is the L2 distance between the
query on *neighbouring* data sets, so both relations give the same curve once
``Delta`` is measured under the relation in use (a replacement sensitivity is
typically up to twice the removal one). :func:`compose_gaussian` therefore
expects ``noise_multipliers = sigma / Delta_relation`` and accounts every
adjacency through dp-accounting's ``ADD_OR_REMOVE_ONE`` Gaussian curve, and
records the adjacency in the result. (dp-accounting 0.6.0 is inconsistent here:
its ``RdpAccountant`` ignores the relation for ``GaussianDpEvent``, while its
``PLDAccountant`` with ``REPLACE_ONE`` treats the noise multiplier as relative
to the *removal* sensitivity and doubles the shift, i.e. it returns the epsilon
of ``z/2``. Passing ``REPLACE_ONE`` straight through would make the two
accountants disagree by a factor of about two.)

References:
  I. Mironov, "Renyi differential privacy", CSF 2017,
  https://arxiv.org/abs/1702.07476.
  C. Dwork, G. N. Rothblum and S. Vadhan, "Boosting and differential privacy",
  FOCS 2010 (advanced composition); C. Dwork and A. Roth, 2014, Theorem 3.20.
  C. L. Canonne, G. Kamath and T. Steinke, "The discrete Gaussian for
  differential privacy", 2020, https://arxiv.org/abs/2004.00010, Proposition 12
  (the tight RDP-to-DP conversion used by dp-accounting).
  S. Meiser and E. Mohammadi, "Tight on budget?", CCS 2018 /
  Y. Koskela et al. 2020 (privacy loss distributions), as implemented in
  ``dp_accounting.pld``.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import dp_accounting
import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant

from certun import _validate

__all__ = [
    "ADJACENCIES",
    "ACCOUNTANTS",
    "Composition",
    "compose_gaussian",
    "compose_basic",
    "compose_advanced",
    "gaussian_rdp",
    "rdp_to_dp_simple",
    "rdp_to_dp_tight",
]

#: Adjacency name -> the dp-accounting neighbouring relation it denotes.
ADJACENCIES: dict[str, Any] = {
    "removal": dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
    "replacement": dp_accounting.NeighboringRelation.REPLACE_ONE,
}

#: Accountants accepted by :func:`compose_gaussian`.
ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp")


class Composition(NamedTuple):
    """The composed guarantee of several Gaussian releases.

    Attributes:
      epsilon: the composed epsilon at ``delta`` (``inf`` if some release had
        no noise).
      delta: the target (total) delta.
      releases: the number of releases composed.
      accountant: ``"pld"`` or ``"rdp"``.
      adjacency: ``"removal"`` or ``"replacement"``.
    """

    epsilon: float
    delta: float
    releases: int
    accountant: str
    adjacency: str


def _multipliers(noise_multipliers: Any, count: int | None) -> list[float]:
    try:
        if isinstance(noise_multipliers, (str, bytes)):
            raise TypeError
        arr = np.asarray(noise_multipliers, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim > 1:
        raise _validate.ValidationError(
            "noise_multipliers must be a positive number or a 1-D sequence of positive "
            f"numbers (sigma_i / sensitivity_i), got {noise_multipliers!r}"
        )
    if arr.ndim == 0:
        k = 1 if count is None else _validate.integer(count=count, minimum=1)
        z = _validate.positive(noise_multipliers=float(arr))
        return [z] * k
    if count is not None:
        raise _validate.ValidationError(
            "count is only used with a scalar noise_multipliers; with a sequence, list "
            "one noise multiplier per release and leave count=None"
        )
    if arr.size == 0:
        raise _validate.ValidationError(
            "noise_multipliers is empty; pass at least one release's noise multiplier"
        )
    out = []
    for i, z in enumerate(arr.tolist()):
        out.append(_validate.positive(**{f"noise_multipliers[{i}]": z}))
    return out


def compose_gaussian(
    noise_multipliers: float | Sequence[float],
    delta: float,
    *,
    count: int | None = None,
    accountant: str = "pld",
    adjacency: str = "removal",
    value_discretization_interval: float = 1e-4,
) -> Composition:
    r"""Epsilon of the adaptive composition of Gaussian releases.

    Release ``i`` adds ``N(0, sigma_i^2 I)`` to a query of L2 sensitivity
    ``Delta_i``; its noise multiplier is ``z_i = sigma_i / Delta_i``. The
    composition is accounted by dp-accounting with a ``GaussianDpEvent`` per
    distinct multiplier (``SelfComposedDpEvent`` for repeats, inside a
    ``ComposedDpEvent``):

    * ``accountant="pld"`` -- privacy loss distributions (pessimistic
      discretisation with ``value_discretization_interval``), numerically tight:
      one release reproduces :func:`~certun.accounting.gaussian.analytic_epsilon`
      to about 1e-6 relative. (The exact answer for Gaussians is the single
      Gaussian with ``z = (sum_i z_i^{-2})^{-1/2}``.)
    * ``accountant="rdp"`` -- Renyi DP, ``eps_alpha = sum_i alpha / (2 z_i^2)``
      over dp-accounting's default orders, converted with its tight conversion
      (:func:`rdp_to_dp_tight`); an upper bound, looser than PLD.

    Args:
      noise_multipliers: ``z_i = sigma_i / Delta_i > 0``, a sequence (one per
        release) or a scalar (used ``count`` times).
      delta: target total delta in ``(0, 1)``.
      count: number of releases when ``noise_multipliers`` is a scalar
        (default 1); must be ``None`` with a sequence.
      accountant: ``"pld"`` (default) or ``"rdp"``.
      adjacency: ``"removal"`` (add-or-remove-one, default) or
        ``"replacement"`` (replace-one). ``Delta_i`` must be the sensitivity
        under this relation; the Gaussian privacy curve is then the same for both
        (see the module docstring for how dp-accounting 0.6.0 is used).
      value_discretization_interval: PLD grid step (ignored for RDP).

    Returns:
      A :class:`Composition`.

    Raises:
      ValueError: if an argument is out of range or not one of the options.

    References:
      I. Mironov, CSF 2017, https://arxiv.org/abs/1702.07476 (RDP).
      dp-accounting (Google), ``dp_accounting.pld`` and ``dp_accounting.rdp``.
    """
    dlt = _validate.delta(delta=delta)
    _validate.choice(list(ACCOUNTANTS), accountant=accountant)
    _validate.choice(list(ADJACENCIES), adjacency=adjacency)
    step = _validate.positive(value_discretization_interval=value_discretization_interval)
    zs = _multipliers(noise_multipliers, count)

    groups = collections.Counter(zs)
    events: list[dp_accounting.DpEvent] = [
        dp_accounting.GaussianDpEvent(z) if k == 1
        else dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), k)
        for z, k in sorted(groups.items())
    ]
    event = events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)

    # Documented equivalence: with z_i measured against the sensitivity under the
    # chosen relation, the Gaussian curve is that of ADD_OR_REMOVE_ONE for both.
    relation = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    if accountant == "pld":
        acc = dp_accounting.pld.PLDAccountant(
            neighboring_relation=relation, value_discretization_interval=step
        )
    else:
        acc = dp_accounting.rdp.RdpAccountant(neighboring_relation=relation)
    acc.compose(event)
    eps = float(acc.get_epsilon(dlt))
    return Composition(
        epsilon=eps, delta=dlt, releases=len(zs), accountant=accountant, adjacency=adjacency
    )


def compose_basic(epsilon: float, delta: float, k: int) -> tuple[float, float]:
    r"""Basic composition: ``k`` ``(epsilon, delta)``-DP releases are ``(k epsilon, k delta)``-DP.

    Args:
      epsilon: per-release epsilon ``> 0``.
      delta: per-release delta in ``(0, 1)``.
      k: number of releases ``>= 1``.

    Returns:
      ``(k * epsilon, k * delta)``. The total delta may reach 1 or more, in which
      case the guarantee is vacuous.

    Raises:
      ValueError: if an argument is out of range.

    References:
      C. Dwork and A. Roth, 2014, Theorem 3.16.
    """
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    n = _validate.integer(k=k, minimum=1)
    return n * eps, n * dlt


def compose_advanced(
    epsilon: float, delta: float, k: int, delta_prime: float
) -> tuple[float, float]:
    r"""Advanced composition (Dwork, Rothblum & Vadhan 2010).

    ``k`` adaptive ``(epsilon, delta)``-DP releases are
    ``(epsilon_total, k delta + delta')``-DP with

    .. math::
        \epsilon_{\rm total} = \sqrt{2k\ln(1/\delta')}\,\epsilon + k\,\epsilon\,(e^{\epsilon} - 1).

    Args:
      epsilon: per-release epsilon ``> 0``.
      delta: per-release delta in ``(0, 1)``.
      k: number of releases ``>= 1``.
      delta_prime: the extra slack ``delta'`` in ``(0, 1)``.

    Returns:
      ``(epsilon_total, k * delta + delta_prime)``.

    Raises:
      ValueError: if an argument is out of range.

    References:
      C. Dwork, G. N. Rothblum and S. Vadhan, "Boosting and differential
      privacy", FOCS 2010; C. Dwork and A. Roth, 2014, Theorem 3.20.
    """
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    n = _validate.integer(k=k, minimum=1)
    dp = _validate.delta(delta_prime=delta_prime)
    total = math.sqrt(2.0 * n * math.log(1.0 / dp)) * eps + n * eps * math.expm1(eps)
    return total, n * dlt + dp


# --------------------------------------------------------------------------- #
# Renyi DP
# --------------------------------------------------------------------------- #


def gaussian_rdp(alpha: float | np.ndarray, noise_multiplier: float) -> float | np.ndarray:
    r"""Renyi DP of the Gaussian mechanism: ``eps(alpha) = alpha / (2 z^2)``.

    ``z = sigma / Delta``. RDP curves add under composition.

    Args:
      alpha: Renyi order(s) ``> 1`` (scalar or array).
      noise_multiplier: ``z > 0``.

    Returns:
      ``alpha / (2 z^2)`` (a float for a scalar ``alpha``, else a float64 array).

    Raises:
      ValueError: if an argument is out of range.

    References:
      I. Mironov, CSF 2017, https://arxiv.org/abs/1702.07476, Proposition 7.
    """
    z = _validate.positive(noise_multiplier=noise_multiplier)
    a = _orders(alpha, name="alpha")
    out = a / (2.0 * z * z)
    return float(out) if np.ndim(alpha) == 0 else out


def _orders(orders: Any, *, name: str) -> np.ndarray:
    a = _validate.finite_array(**{name: orders}, ndim=(0, 1)).astype(np.float64)
    if np.any(a <= 1.0):
        raise _validate.ValidationError(
            f"{name} must hold Renyi orders > 1, got min {float(np.min(a))!r}; the RDP to "
            "DP conversion divides by (alpha - 1)"
        )
    return a


def _curve(rdp_curve: Any, orders: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.atleast_1d(_orders(orders, name="orders"))
    try:
        r = np.atleast_1d(np.asarray(rdp_curve, dtype=np.float64))
    except (TypeError, ValueError):
        raise _validate.ValidationError(
            f"rdp_curve must be a numeric array, got {rdp_curve!r}"
        ) from None
    if r.ndim != 1 or r.shape != a.shape:
        raise _validate.ValidationError(
            f"rdp_curve has shape {r.shape} but orders has shape {a.shape}; pass one RDP "
            "value per order"
        )
    if np.any(np.isnan(r)) or np.any(r < 0):
        raise _validate.ValidationError(
            "rdp_curve must hold values >= 0 (+inf allowed for orders where the bound is "
            "vacuous), got NaN or a negative value"
        )
    return r, a


def rdp_to_dp_simple(
    rdp_curve: Sequence[float] | np.ndarray,
    orders: Sequence[float] | np.ndarray,
    delta: float,
) -> tuple[float, float]:
    r"""Mironov's RDP-to-DP conversion (the one Chien et al.'s Langevin unlearning uses).

    .. math::  \epsilon = \min_\alpha\ \varepsilon(\alpha) + \frac{\ln(1/\delta)}{\alpha - 1}.

    Args:
      rdp_curve: ``varepsilon(alpha)`` at each order (``>= 0``, ``inf`` allowed).
      orders: the Renyi orders ``alpha > 1`` (same length).
      delta: target delta in ``(0, 1)``.

    Returns:
      ``(epsilon, best_order)``.

    Raises:
      ValueError: if an argument is out of range or the shapes differ.

    References:
      I. Mironov, CSF 2017, https://arxiv.org/abs/1702.07476, Proposition 3.
    """
    dlt = _validate.delta(delta=delta)
    r, a = _curve(rdp_curve, orders)
    eps = r + math.log(1.0 / dlt) / (a - 1.0)
    i = int(np.argmin(eps))
    return float(eps[i]), float(a[i])


def rdp_to_dp_tight(
    rdp_curve: Sequence[float] | np.ndarray,
    orders: Sequence[float] | np.ndarray,
    delta: float,
) -> tuple[float, float]:
    r"""dp-accounting's tighter RDP-to-DP conversion.

    At each order ``alpha > 1.01`` dp-accounting
    (``dp_accounting.rdp.rdp_privacy_accountant.compute_epsilon``) uses

    .. math::
        \epsilon(\alpha) = \varepsilon(\alpha) + \ln(1 - 1/\alpha)
                          - \frac{\ln(\delta\,\alpha)}{\alpha - 1}

    (Canonne, Kamath & Steinke 2020, Prop. 12; Asoodeh et al. 2020), plus a KL
    shortcut giving ``epsilon = 0`` when ``delta^2 > 1 - e^{-varepsilon(alpha)}``.
    Both it and Mironov's bound are valid at every order, so this function takes
    the per-order minimum of the two (dp-accounting returns ``inf`` for
    ``alpha <= 1.01``); hence the result is never above :func:`rdp_to_dp_simple`.

    Args:
      rdp_curve: ``varepsilon(alpha)`` at each order (``>= 0``, ``inf`` allowed).
      orders: the Renyi orders ``alpha > 1`` (same length).
      delta: target delta in ``(0, 1)``.

    Returns:
      ``(epsilon, best_order)``.

    Raises:
      ValueError: if an argument is out of range or the shapes differ.

    References:
      C. L. Canonne, G. Kamath and T. Steinke, https://arxiv.org/abs/2004.00010,
      Proposition 12. I. Mironov, CSF 2017, https://arxiv.org/abs/1702.07476.
    """
    dlt = _validate.delta(delta=delta)
    r, a = _curve(rdp_curve, orders)
    simple = r + math.log(1.0 / dlt) / (a - 1.0)
    best_eps, best_order = math.inf, float(a[0])
    for ai, ri, si in zip(a.tolist(), r.tolist(), simple.tolist(), strict=True):
        ti, _ = rdp_privacy_accountant.compute_epsilon([ai], [ri], dlt)
        e = min(float(ti), float(si))
        if e < best_eps:
            best_eps, best_order = e, ai
    return max(0.0, best_eps), best_order
