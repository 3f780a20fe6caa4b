r"""Renyi accounting of Langevin unlearning (Chien, Wang, Chen & Li, NeurIPS 2024).

Learning and unlearning are the same noisy gradient descent (certun's mean scale,
``m``-strongly convex and ``L``-smooth objective ``J_D``, step ``eta <= 1/L``):

.. math::
    w_{t+1} = w_t - \eta\,\nabla J_D(w_t) + \sqrt{2\eta\sigma^2}\,\xi_t,\qquad
    w_0 \sim \mathcal N\big(0, \tfrac{2\sigma^2}{m} I\big).

With ``S`` changed rows and ``M`` a bound on every per-example loss gradient, the drift
of two neighbouring datasets differs by at most ``Delta = 2 S M / n`` everywhere
(:func:`drift_sensitivity`; ``n`` is the number of rows *before* the change, for
removal as for replacement). Then, for every Renyi order ``alpha > 1``:

* learning is RDP with :func:`eps0`
  ``= alpha Delta^2 / (m sigma^2) = 4 alpha S^2 M^2 / (m sigma^2 n^2)`` for any number of
  steps (Ye & Shokri 2022; Chien et al. 2024 *[R]*);
* ``K`` unlearning steps on the new data contract it (LSI constant ``C = 2 sigma^2 / m``):
  :func:`eps_after` ``= exp(-K m eta / alpha) eps0(alpha)``;
* sequential requests use the weak triangle inequality for Renyi divergences
  (Mironov 2017, Prop. 11), which doubles the order (:func:`sequential_rdp`):

  .. math::
      \varepsilon^{(s)}(\alpha) = e^{-K_s m\eta/\alpha}\,\frac{\alpha-\frac12}{\alpha-1}
      \big(\varepsilon_0^{(s)}(2\alpha) + \varepsilon^{(s-1)}(2\alpha)\big)

  (``recursion="paper"``, the authors' form, two-sided), or the sharper two-sided form
  ``recursion="tight"`` that keeps Mironov's orders ``2 alpha`` and ``2 alpha - 1``;
* RDP to ``(epsilon, delta)`` by Mironov's conversion ``eps(alpha) + ln(1/delta)/(alpha - 1)``
  (``conversion="simple"``, the paper's) or dp-accounting's tighter one
  (``conversion="tight"``), minimised over ``alpha`` (:func:`langevin_epsilon`);
* :func:`steps_needed` gives the smallest ``K`` reaching a target epsilon and
  :func:`sigma_needed` the smallest ``sigma`` for a given ``K``.

The compared distributions: the law of the unlearned iterate versus the law of the same
noisy gradient descent run *from scratch* (same initial distribution) on the current data
for the same total number of steps. Derivations, the removal case and the role of
clipping: ``proofs/langevin_unlearning.md``.

References:
  E. Chien, H. Wang, Z. Chen, P. Li, "Langevin Unlearning: A New Perspective of Noisy
  Gradient Descent for Machine Unlearning", NeurIPS 2024, arXiv:2401.10371.
  J. Ye, R. Shokri, "Differentially Private Learning Needs Hidden State (Or Much Faster
  Convergence)", NeurIPS 2022, arXiv:2203.05363.
  I. Mironov, "Renyi Differential Privacy", CSF 2017, arXiv:1702.07476.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar

from certun import _validate
from certun.accounting.composition import rdp_to_dp_simple, rdp_to_dp_tight

__all__ = [
    "LANGEVIN_ADJACENCIES",
    "CONVERSIONS",
    "RECURSIONS",
    "Request",
    "LangevinEpsilon",
    "default_orders",
    "drift_sensitivity",
    "lsi_constant",
    "eps0",
    "eps_after",
    "sequential_rdp",
    "rdp_to_epsilon",
    "langevin_epsilon",
    "steps_needed",
    "sigma_needed",
]

#: Neighbouring relations the accounting supports.
LANGEVIN_ADJACENCIES: tuple[str, ...] = ("removal", "replacement")
#: RDP-to-DP conversions: Mironov's (the paper's) and dp-accounting's tighter one.
CONVERSIONS: tuple[str, ...] = ("simple", "tight")
#: Forms of the sequential (weak triangle) recursion.
RECURSIONS: tuple[str, ...] = ("paper", "tight")

_CONVERSION_NAMES = {"simple": "mironov_simple", "tight": "dp_accounting_tight"}


class Request(NamedTuple):
    """One unlearning request as the accounting sees it (public quantities only).

    Attributes:
      steps: ``K_s``, noisy-GD steps run on the new data after the request.
      changed: ``S_s``, rows removed (or replaced) by the request.
      n: rows of the dataset *before* the request.
    """

    steps: int
    changed: int
    n: int


class LangevinEpsilon(NamedTuple):
    """An ``(epsilon, delta)`` guarantee from a Renyi curve.

    Attributes:
      epsilon: the epsilon at ``delta`` (minimised over the order).
      order: the minimising Renyi order ``alpha``.
      delta: the target delta.
      conversion: ``"mironov_simple"`` or ``"dp_accounting_tight"``.
    """

    epsilon: float
    order: float
    delta: float
    conversion: str


def default_orders(num: int = 2000, lowest: float = 1.001, highest: float = 1e6) -> np.ndarray:
    """A log-spaced grid of Renyi orders in ``[lowest, highest]`` (where minimisation starts)."""
    n = _validate.integer(num=num, minimum=2)
    a = _validate.in_range(1.0, math.inf, lowest=lowest)
    b = _validate.positive(highest=highest)
    if not b > a:
        raise _validate.ValidationError(f"highest={highest} must exceed lowest={lowest}")
    return np.exp(np.linspace(math.log(a), math.log(b), n))


def _count(name: str, value: int, minimum: int) -> int:
    return _validate.integer(minimum=minimum, **{name: value})


def drift_sensitivity(n: int, changed: int = 1, M: float = 1.0,
                      adjacency: str = "removal") -> float:
    r"""``sup_w ||grad J_D(w) - grad J_D'(w)|| <= 2 S M / n`` (mean-scale drift).

    ``n = |D|`` is the number of rows *before* the request. Replacement: the ``S``
    swapped rows differ, each per-example loss gradient has norm ``<= M``. Removal
    (``|D'| = n - S``, same mean-scale ``lam``, so the regulariser cancels):
    ``grad J_D - grad J_D' = (1/n) sum_U grad l_i - (S/n) mean_{D'} grad l_i``, again at
    most ``2 S M / n``. Derivation: ``proofs/langevin_unlearning.md``, section 3.

    Args:
      n: rows before the request (``> changed`` for removal).
      changed: ``S``, rows removed or replaced (``>= 1``).
      M: bound on every per-example loss gradient norm (``> 0``).
      adjacency: ``"removal"`` or ``"replacement"``.

    Returns:
      ``2 S M / n``.
    """
    n = _count("n", n, 1)
    S = _count("changed", changed, 1)
    Mv = _validate.positive(M=M)
    _validate.choice(LANGEVIN_ADJACENCIES, adjacency=adjacency)
    if adjacency == "removal" and S >= n:
        raise _validate.ValidationError(
            f"changed={S} must be smaller than n={n} for removal (keep at least one row)")
    if adjacency == "replacement" and S > n:
        raise _validate.ValidationError(f"changed={S} cannot exceed n={n}")
    return 2.0 * S * Mv / n


def lsi_constant(sigma: float, m: float) -> float:
    """``C_LSI = 2 sigma^2 / m``: the log-Sobolev constant of every iterate (and of ``w_0``)."""
    s = _validate.positive(sigma=sigma)
    mm = _validate.positive(m=m)
    return 2.0 * s * s / mm


def _alpha(alpha: float | np.ndarray) -> np.ndarray:
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim > 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 1.0):
        raise _validate.ValidationError(
            "alpha must be a Renyi order > 1 or a 1-D array of them (finite)")
    return a


def _out(alpha: float | np.ndarray, value: np.ndarray) -> float | np.ndarray:
    return float(value) if np.ndim(alpha) == 0 else value


def eps0(alpha: float | np.ndarray, *, sigma: float, m: float, n: int, changed: int = 1,
         M: float = 1.0, adjacency: str = "removal") -> float | np.ndarray:
    r"""RDP of noisy-GD learning: ``eps_0(alpha) = alpha Delta^2 / (m sigma^2)``.

    That is ``4 alpha S^2 M^2 / (m sigma^2 n^2)`` with ``Delta = 2 S M / n``.

    Holds for any number of steps from the initial distribution ``N(0, 2 sigma^2/m I)``
    (Ye & Shokri 2022, stationary limit; Chien et al. 2024's ``epsilon0_``, docs/bibliography.md
    §6). ``Delta`` is :func:`drift_sensitivity`.

    Args:
      alpha: Renyi order(s) ``> 1``.
      sigma: the Langevin noise parameter (the step noise is ``sqrt(2 eta sigma^2)``).
      m: strong convexity of the mean-scale objective (certun's ``lam``; the paper's
        ``lambda n``, see :func:`certun.scale.lam_from_langevin`).
      n: rows before the request.
      changed: ``S``, rows changed by the request.
      M: per-example loss-gradient bound.
      adjacency: ``"removal"`` or ``"replacement"``.

    Returns:
      ``eps_0(alpha)`` (float for a scalar ``alpha``).
    """
    a = _alpha(alpha)
    d = drift_sensitivity(n, changed, M, adjacency)
    s = _validate.positive(sigma=sigma)
    mm = _validate.positive(m=m)
    with np.errstate(over="ignore"):  # a tiny sigma gives +inf, never a division by zero
        return _out(alpha, a * (np.float64(d) / s) ** 2 / mm)


def eps_after(alpha: float | np.ndarray, steps: int, *, sigma: float, m: float, eta: float,
              n: int, changed: int = 1, M: float = 1.0,
              adjacency: str = "removal") -> float | np.ndarray:
    r"""RDP after ``K`` unlearning steps, one request: ``exp(-K m eta / alpha) eps_0(alpha)``.

    The exponent is ``2 sigma^2 eta K / (alpha C_LSI)`` with ``C_LSI = 2 sigma^2 / m``
    (Chien et al. 2024, strongly convex case *[R]*; ``proofs/langevin_unlearning.md``,
    section 2). Requires ``eta <= 1/L``; the caller checks it.

    Args:
      alpha: Renyi order(s) ``> 1``.
      steps: ``K >= 0``, noisy-GD steps run on the new data after the request.
      sigma: the Langevin noise parameter ``> 0`` (each step adds ``sqrt(2 eta sigma^2)``
        times a standard Gaussian; ``w_0 ~ N(0, 2 sigma^2/m I)``).
      m: strong convexity ``> 0`` of the mean-scale objective (certun's ``lam``; the
        paper's ``lambda n``, see :func:`certun.scale.lam_from_langevin`).
      eta: the step size ``> 0``; the bound needs ``eta <= 1/L`` (not checked here).
      n: rows of the dataset before the request (``> changed`` for removal,
        ``>= changed`` for replacement).
      changed: ``S >= 1``, rows removed or replaced by the request.
      M: bound ``> 0`` on every per-example loss-gradient norm.
      adjacency: ``"removal"`` or ``"replacement"`` (both give ``Delta = 2 S M / n``).

    Returns:
      ``eps_K(alpha)``.
    """
    a = _alpha(alpha)
    K = _count("steps", steps, 0)
    e = _validate.positive(eta=eta)
    mm = _validate.positive(m=m)
    base = np.asarray(eps0(a, sigma=sigma, m=mm, n=n, changed=changed, M=M, adjacency=adjacency))
    return _out(alpha, np.exp(-K * mm * e / a) * base)


def _requests(requests: Sequence[Request | tuple]) -> tuple[Request, ...]:
    if isinstance(requests, Request):
        requests = (requests,)
    out = []
    for i, r in enumerate(requests):
        try:
            k, s, n = r
        except (TypeError, ValueError):
            raise _validate.ValidationError(
                f"requests[{i}] must be a Request(steps, changed, n), got {r!r}") from None
        out.append(Request(_count(f"requests[{i}].steps", k, 0),
                           _count(f"requests[{i}].changed", s, 1),
                           _count(f"requests[{i}].n", n, 1)))
    if not out:
        raise _validate.ValidationError("requests is empty; pass at least one Request")
    return tuple(out)


def sequential_rdp(alpha: float | np.ndarray, requests: Sequence[Request | tuple], *,
                   sigma: float, m: float, eta: float, M: float = 1.0,
                   adjacency: str = "removal", recursion: str = "paper") -> float | np.ndarray:
    r"""RDP bound after a sequence of requests (weak triangle recursion).

    With ``E = eps^{(s-1)}`` (both directions), ``Z = eps_0^{(s)}`` (request ``s``'s
    learning RDP, ``n = requests[s].n``) and ``c = (alpha - 1/2)/(alpha - 1)``:

    * ``recursion="paper"`` (Chien et al.'s ``epsilon_s_with_alpha``):
      ``eps^{(s)}(alpha) = exp(-K_s m eta/alpha) c (Z(2 alpha) + E(2 alpha))``;
    * ``recursion="tight"``:
      ``exp(-K_s m eta/alpha) max(c E(2a) + Z(2a - 1), c Z(2a) + E(2a - 1))``,
      Mironov's Prop. 11 in both directions; never above ``"paper"``.

    The first request is :func:`eps_after` (no triangle inequality).

    Args:
      alpha: Renyi order(s) ``> 1``.
      requests: the requests so far, oldest first (:class:`Request`, each with its own
        ``steps``, ``changed`` and ``n``).
      sigma: the Langevin noise parameter ``> 0`` (each step adds ``sqrt(2 eta sigma^2)``
        times a standard Gaussian; ``w_0 ~ N(0, 2 sigma^2/m I)``).
      m: strong convexity ``> 0`` of the mean-scale objective (certun's ``lam``; the
        paper's ``lambda n``, see :func:`certun.scale.lam_from_langevin`).
      eta: the step size ``> 0``; the bound needs ``eta <= 1/L`` (not checked here).
      M: bound ``> 0`` on every per-example loss-gradient norm.
      adjacency: ``"removal"`` or ``"replacement"`` (both give ``Delta = 2 S M / n``).
      recursion: ``"paper"`` (Chien et al.'s weak triangle recursion) or ``"tight"``
        (Mironov's Prop. 11 in both directions, never above ``"paper"``).

    Returns:
      ``eps^{(s)}(alpha)`` for the last request ``s``.
    """
    a = _alpha(alpha)
    reqs = _requests(requests)
    _validate.choice(RECURSIONS, recursion=recursion)
    s = _validate.positive(sigma=sigma)
    mm = _validate.positive(m=m)
    e = _validate.positive(eta=eta)
    Mv = _validate.positive(M=M)
    _validate.choice(LANGEVIN_ADJACENCIES, adjacency=adjacency)
    with np.errstate(over="ignore"):  # Delta^2 / (m sigma^2); +inf for a tiny sigma
        dz = [(np.float64(drift_sensitivity(r.n, r.changed, Mv, adjacency)) / s) ** 2 / mm
              for r in reqs]

    def curve(j: int, x: np.ndarray) -> np.ndarray:
        decay = np.exp(-reqs[j].steps * mm * e / x)
        if j == 0:
            return decay * x * dz[0]
        c = (x - 0.5) / (x - 1.0)
        x2 = 2.0 * x
        if recursion == "paper":
            return decay * c * (x2 * dz[j] + curve(j - 1, x2))
        x21 = x2 - 1.0
        return decay * np.maximum(c * curve(j - 1, x2) + x21 * dz[j],
                                  c * x2 * dz[j] + curve(j - 1, x21))

    with np.errstate(over="ignore"):
        return _out(alpha, curve(len(reqs) - 1, a))


def rdp_to_epsilon(curve: Callable[[np.ndarray], np.ndarray], delta: float,
                   conversion: str = "simple", orders: np.ndarray | None = None,
                   refine: bool = True) -> LangevinEpsilon:
    """Convert an RDP curve (a function of the order) to ``(epsilon, delta)``.

    ``conversion="simple"``: Mironov's ``min_alpha eps(alpha) + ln(1/delta)/(alpha - 1)``
    (:func:`certun.accounting.rdp_to_dp_simple`), on ``orders`` then refined by a
    bounded scalar minimisation between the neighbours of the best grid order.
    ``conversion="tight"``: :func:`certun.accounting.rdp_to_dp_tight` (dp-accounting's
    conversion, never above Mironov's), on a 400-point grid then a 100-point local grid.
    Every value returned is attained at an order that was evaluated, so it is a valid
    bound whatever the grid.

    Args:
      curve: maps an array of orders to the RDP values (``inf`` allowed).
      delta: target delta in ``(0, 1)``.
      conversion: ``"simple"`` or ``"tight"``.
      orders: the starting grid (default :func:`default_orders`).
      refine: refine around the best grid order.

    Returns:
      A :class:`LangevinEpsilon`.
    """
    dlt = _validate.delta(delta=delta)
    _validate.choice(CONVERSIONS, conversion=conversion)
    if orders is None:
        orders = default_orders(2000 if conversion == "simple" else 400)
    o = _alpha(orders)
    o = np.atleast_1d(o)
    name = _CONVERSION_NAMES[conversion]

    def vals(x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.asarray(curve(x), dtype=np.float64)
        return np.where(np.isnan(v), np.inf, v)

    if conversion == "simple":
        eps, best = rdp_to_dp_simple(vals(o), o, dlt)
        if refine and math.isfinite(eps) and o.size >= 3:
            i = int(np.argmin(np.abs(o - best)))
            lo, hi = o[max(i - 1, 0)], o[min(i + 1, o.size - 1)]
            log1d = math.log(1.0 / dlt)

            def f(x: float) -> float:
                v = float(vals(np.array([x]))[0])
                return v + log1d / (x - 1.0)

            res = minimize_scalar(f, bounds=(lo, hi), method="bounded",
                                  options={"xatol": 1e-10 * hi})
            if res.success and float(res.fun) < eps:
                eps, best = rdp_to_dp_simple(vals(np.array([res.x])), np.array([res.x]), dlt)
        return LangevinEpsilon(float(eps), float(best), dlt, name)

    eps, best = rdp_to_dp_tight(vals(o), o, dlt)
    if refine and math.isfinite(eps) and o.size >= 3:
        i = int(np.argmin(np.abs(o - best)))
        lo, hi = o[max(i - 1, 0)], o[min(i + 1, o.size - 1)]
        fine = np.exp(np.linspace(math.log(lo), math.log(hi), 100))
        e2, b2 = rdp_to_dp_tight(vals(fine), fine, dlt)
        if e2 < eps:
            eps, best = e2, b2
    return LangevinEpsilon(float(eps), float(best), dlt, name)


def langevin_epsilon(requests: Sequence[Request | tuple], *, sigma: float, m: float,
                     eta: float, delta: float, M: float = 1.0, adjacency: str = "removal",
                     recursion: str = "paper", conversion: str = "simple") -> LangevinEpsilon:
    """Epsilon of Langevin unlearning after ``requests`` (:func:`sequential_rdp` + conversion).

    Example (Chien et al.'s MNIST anchor, docs/bibliography.md §6 and errata 6, 11):
    ``langevin_epsilon([Request(1, 1, 11982)], sigma=0.0096, m=0.011982, eta=1/0.19470,
    delta=1/11982, adjacency="replacement")`` gives about 0.997 (``"simple"``) and 0.777
    (``"tight"``).

    Args:
      requests: :class:`Request` s so far, oldest first (a single one for one request).
      sigma: the Langevin noise parameter ``> 0`` (each step adds ``sqrt(2 eta sigma^2)``
        times a standard Gaussian; ``w_0 ~ N(0, 2 sigma^2/m I)``).
      m: strong convexity ``> 0`` of the mean-scale objective (certun's ``lam``; the
        paper's ``lambda n``, see :func:`certun.scale.lam_from_langevin`).
      eta: the step size ``> 0``; the bound needs ``eta <= 1/L`` (not checked here).
      delta: target delta in ``(0, 1)``.
      M: bound ``> 0`` on every per-example loss-gradient norm.
      adjacency: ``"removal"`` or ``"replacement"`` (both give ``Delta = 2 S M / n``).
      recursion: ``"paper"`` (Chien et al.'s weak triangle recursion) or ``"tight"``
        (Mironov's Prop. 11 in both directions, never above ``"paper"``);
        irrelevant for a single request.
      conversion: ``"simple"`` (Mironov's, the paper's) or ``"tight"`` (dp-accounting's,
        never above ``"simple"``).

    Returns:
      A :class:`LangevinEpsilon`.
    """
    reqs = _requests(requests)
    sequential_rdp(2.0, reqs, sigma=sigma, m=m, eta=eta, M=M, adjacency=adjacency,
                   recursion=recursion)  # validates every argument once

    def curve(x: np.ndarray) -> np.ndarray:
        return np.asarray(sequential_rdp(x, reqs, sigma=sigma, m=m, eta=eta, M=M,
                                         adjacency=adjacency, recursion=recursion))

    return rdp_to_epsilon(curve, delta, conversion)


def steps_needed(target_epsilon: float, *, sigma: float, m: float, eta: float, n: int,
                 delta: float, changed: int = 1, M: float = 1.0, adjacency: str = "removal",
                 previous: Sequence[Request | tuple] = (), recursion: str = "paper",
                 conversion: str = "simple", min_steps: int = 1,
                 max_steps: int = 10_000_000) -> int:
    """The smallest ``K >= min_steps`` whose guarantee reaches ``target_epsilon``.

    The epsilon of :func:`langevin_epsilon` is non-increasing in ``K`` (every order's
    RDP is), so an exponential search and a bisection find the smallest ``K``. Chien
    et al. search from ``K = 1`` (``min_steps=1``, the default); ``min_steps=0`` lets a
    learning run that is already private enough need no step.

    Args:
      target_epsilon: the epsilon to reach.
      sigma: the Langevin noise parameter ``> 0`` (each step adds ``sqrt(2 eta sigma^2)``
        times a standard Gaussian; ``w_0 ~ N(0, 2 sigma^2/m I)``).
      m: strong convexity ``> 0`` of the mean-scale objective (certun's ``lam``; the
        paper's ``lambda n``, see :func:`certun.scale.lam_from_langevin`).
      eta: the step size ``> 0``; the bound needs ``eta <= 1/L`` (not checked here).
      n: rows of the dataset before this request (``> changed`` for removal,
        ``>= changed`` for replacement).
      delta: target delta in ``(0, 1)``.
      changed: ``S >= 1``, rows removed or replaced by this request.
      M: bound ``> 0`` on every per-example loss-gradient norm.
      adjacency: ``"removal"`` or ``"replacement"`` (both give ``Delta = 2 S M / n``).
      previous: the earlier requests, oldest first (sequential unlearning).
      recursion: ``"paper"`` (Chien et al.'s weak triangle recursion) or ``"tight"``
        (Mironov's Prop. 11 in both directions, never above ``"paper"``).
      conversion: ``"simple"`` (Mironov's, the paper's) or ``"tight"`` (dp-accounting's,
        never above ``"simple"``).
      min_steps: smallest ``K`` returned.
      max_steps: give up beyond this (raises).

    Returns:
      ``K``.

    Raises:
      ValueError: if an argument is invalid or no ``K <= max_steps`` suffices.
    """
    target = _validate.epsilon(target_epsilon=target_epsilon)
    k_min = _count("min_steps", min_steps, 0)
    k_max = _count("max_steps", max_steps, max(k_min, 1))
    prev = _requests(previous) if len(previous) else ()
    S = _count("changed", changed, 1)
    nn = _count("n", n, 1)

    def eps(K: int) -> float:
        return langevin_epsilon(prev + (Request(K, S, nn),), sigma=sigma, m=m, eta=eta,
                                delta=delta, M=M, adjacency=adjacency, recursion=recursion,
                                conversion=conversion).epsilon

    if eps(k_min) <= target:
        return k_min
    lo, hi = k_min, max(k_min, 1)
    while eps(hi) > target:
        lo = hi
        if hi >= k_max:
            raise _validate.ValidationError(
                f"no K <= max_steps={k_max} reaches epsilon={target} at sigma={sigma}; raise "
                "sigma or max_steps")
        hi = min(2 * hi, k_max)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if eps(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


def sigma_needed(target_epsilon: float, steps: int, *, m: float, eta: float, n: int,
                 delta: float, changed: int = 1, M: float = 1.0, adjacency: str = "removal",
                 conversion: str = "simple", rtol: float = 1e-6) -> float:
    """The smallest ``sigma`` (to ``rtol``) with which ``K = steps`` reach ``target_epsilon``.

    One request. Epsilon is decreasing in ``sigma``; bisection on ``log sigma`` returns
    the upper end of the final bracket, so the result always meets the target. This is
    how Chien et al. chose the noise of their Fig. 3a (``K`` fixed, ``sigma`` calibrated).

    Args:
      target_epsilon: the epsilon to reach.
      steps: ``K >= 0`` unlearning steps.
      m: strong convexity ``> 0`` of the mean-scale objective (certun's ``lam``; the
        paper's ``lambda n``, see :func:`certun.scale.lam_from_langevin`).
      eta: the step size ``> 0``; the bound needs ``eta <= 1/L`` (not checked here).
      n: rows of the dataset before the request (``> changed`` for removal,
        ``>= changed`` for replacement).
      delta: target delta in ``(0, 1)``.
      changed: ``S >= 1``, rows removed or replaced by the request.
      M: bound ``> 0`` on every per-example loss-gradient norm.
      adjacency: ``"removal"`` or ``"replacement"`` (both give ``Delta = 2 S M / n``).
      conversion: ``"simple"`` (Mironov's, the paper's) or ``"tight"`` (dp-accounting's,
        never above ``"simple"``).
      rtol: relative width of the final bracket.

    Returns:
      ``sigma``.
    """
    target = _validate.epsilon(target_epsilon=target_epsilon)
    K = _count("steps", steps, 0)
    tol = _validate.positive(rtol=rtol)

    def eps(s: float) -> float:
        return langevin_epsilon([Request(K, changed, n)], sigma=s, m=m, eta=eta, delta=delta,
                                M=M, adjacency=adjacency, conversion=conversion).epsilon

    lo, hi = 1e-3, 1.0
    while eps(hi) > target:
        lo, hi = hi, hi * 10.0
        if hi > 1e12:
            raise _validate.ValidationError(f"no sigma <= 1e12 reaches epsilon={target}")
    while eps(lo) <= target:
        hi, lo = lo, lo / 10.0
        if lo < 1e-300:
            return hi
    while hi / lo - 1.0 > tol:
        mid = math.sqrt(lo * hi)
        if eps(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi
