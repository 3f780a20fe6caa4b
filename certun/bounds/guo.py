r"""Gradient-residual bounds for Guo et al.'s certified removal (ICML 2020), in float64.

All quantities are on the **sum** loss scale of the paper (``proofs/guo2020_residual_bounds.md``
derives every line; :mod:`certun.scale` relates it to certun's mean scale):

.. math::
    L_b(w; D) = \sum_{i \in D} \ell(w^\top x_i, y_i) + \frac{\lambda |D|}{2}\|w\|^2 + b^\top w .

One removal step deletes ``m`` rows ``U`` from the current data ``D`` (``n = |D|``
rows before, ``n - m`` after) at the current model ``w``:

.. math::
    \Delta = \sum_{j \in U} \nabla \ell(w^\top x_j, y_j) + m \lambda w, \qquad
    H = \nabla^2 L_b(w; D \setminus U), \qquad \delta = H^{-1}\Delta, \qquad w^- = w + \delta .

With the training/previous residual ``r = grad L_b(w; D)``, the solve residual
``s = H delta - Delta`` and the Taylor remainder ``rho``, the new residual is
exactly ``grad L_b(w^-; D \ U) = r + s + rho`` (``proofs/guo2020_residual_bounds.md``, eq. (R)),
and with ``v = X_rem delta``, ``gamma`` the Lipschitz constant of ``l''``:

.. math::
    \|\rho\| \le \|X_{rem}\|_2 \|e\|_2,\quad |e_i| \le \tfrac{\gamma}{2} v_i^2 ,\quad
    \|v \odot v\| \le \|\delta\| \, \|X_{rem}\delta\| ,

giving the chain implemented by :func:`remainder_chain`:
``||rho|| <= Q1 <= Q2 <= Q3 = (gamma/2)||X|| ||delta|| ||X delta||`` and Guo et al.'s
data-dependent bound (their Corollary, with their ``gamma``, no factor 1/2)
``gamma ||X||_2 ||delta|| ||X delta||`` (:func:`data_dependent_bound`), then
``<= gamma (n - m) ||delta||^2 <= gamma ||Delta||^2 / (lambda^2 (n - m))`` and
the worst case.

**Erratum (Guo et al.'s Theorem 1 as printed).** The printed worst case
``4 gamma m^2 C^2 / (lambda^2 (n - m))`` uses ``lambda ||w|| <= C``, which
objective perturbation breaks: optimality gives
``lambda n ||w|| <= n C + ||b|| + ||r||``, so ``||Delta|| <= m (2C + (||b|| + ||r||)/n)``
and the corrected worst case is :func:`worst_case_bound`. The uncorrected
:func:`worst_case_bound_printed` is kept only to show it fails.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "RemainderChain",
    "data_dependent_bound",
    "worst_case_bound",
    "worst_case_bound_printed",
    "step_norm_bound",
    "weight_norm_bound",
    "remainder_chain",
    "spectral_cap",
    "staleness_bound",
    "l1_remainder_bound",
    "self_concordant_remainder_bound",
    "CachedRemainder",
    "cached_remainder_bound",
    "LOGISTIC_D3_OVER_D2",
    "StaleChain",
    "stale_remainder_chain",
]

#: ``sup_a |l'''(a)| / l''(a)`` for the logistic loss: ``l''' = l'' (1 - 2 sigmoid(a))``, so
#: ``|d/da log l''| <= 1`` and ``l''(b) <= l''(a) exp(|b - a|)`` (``proofs/cached_factors.md``).
LOGISTIC_D3_OVER_D2 = 1.0


def spectral_cap(x_spectral: float, n_rem: int) -> float:
    """``min(bound on ||X_rem||_2, sqrt(n_rem))``.

    Rows have norm <= 1, so ``||X_rem||_2 <= ||X_rem||_F <= sqrt(n_rem)``.
    """
    return float(min(x_spectral, np.nextafter(np.sqrt(max(n_rem, 0)), np.inf)))


def data_dependent_bound(gamma: float, x_spectral: float, delta_norm: float,
                         x_delta_norm: float) -> float:
    """Guo et al.'s data-dependent residual bound ``gamma ||X_rem||_2 ||delta|| ||X_rem delta||``.

    Bounds the Taylor remainder ``||rho||`` of one Newton removal (sum scale).
    Guo, Goldstein, Hannun, van der Maaten, "Certified Data Removal from Machine
    Learning Models", ICML 2020 (arXiv:1911.03030), data-dependent bound
    (Corollary 1); derivation: ``proofs/guo2020_residual_bounds.md`` step (Q4).

    Args:
      gamma: Lipschitz constant of ``l''`` (Guo et al. use 1/4 for the logistic loss).
      x_spectral: a guaranteed upper bound on ``||X_rem||_2`` (rows remaining after the removal).
      delta_norm: ``||delta|| = ||H^{-1} Delta||``.
      x_delta_norm: an upper bound on ``||X_rem delta||``.
    """
    return float(gamma * x_spectral * delta_norm * x_delta_norm)


def weight_norm_bound(C: float, lam: float, n: int, b_norm: float, residual: float) -> float:
    """Bound on ``lambda ||w||`` at a point with residual ``||grad L_b(w; D)|| <= residual``.

    From ``sum_i grad l_i + lambda n w + b = r``: ``lambda ||w|| <= C + (||b|| + ||r||) / n``
    (``proofs/guo2020_residual_bounds.md``, eq. (W)). Without perturbation and at an exact
    optimum this is Guo et al.'s ``lambda ||w*|| <= C``.
    """
    return float(C + (b_norm + residual) / n)


def step_norm_bound(C: float, lam: float, n: int, m: int, b_norm: float, residual: float) -> float:
    """Bound on the Newton step ``||delta|| <= ||Delta|| / (lambda (n - m))``.

    With ``||Delta|| <= m (C + lambda ||w||)`` and :func:`weight_norm_bound`.
    """
    return float(m * (C + weight_norm_bound(C, lam, n, b_norm, residual)) / (lam * (n - m)))


def worst_case_bound(gamma: float, C: float, lam: float, n: int, m: int = 1,
                     b_norm: float = 0.0, residual: float = 0.0) -> float:
    r"""Corrected worst-case residual bound for removing ``m`` of ``n`` rows (sum scale).

    .. math::
        \|\rho\| \le \frac{\gamma\, m^2 \big(2C + (\|b\| + \|r\|)/n\big)^2}{\lambda^2 (n - m)}

    where ``b`` is the objective perturbation and ``r`` the residual (training
    gradient plus accumulated removal residuals) at the current model. It
    reduces to Guo et al.'s ``4 gamma m^2 C^2 / (lambda^2 (n - m))`` (Theorem 1 and its
    batch form) when ``b = 0`` and ``r = 0``. See the erratum in the module docstring and
    ``proofs/guo2020_residual_bounds.md`` steps (Q5)-(Q7).

    Args:
      gamma: Lipschitz constant of ``l''``.
      C: bound on ``|l'|`` (per-example gradient norm with ``||x|| <= 1``).
      lam: mean-scale regularisation ``lambda``.
      n: rows before the removal.
      m: rows removed in this step.
      b_norm: ``||b||`` (Frobenius over heads, or per head).
      residual: upper bound on ``||grad L_b(w; D)||`` before the step.
    """
    if m >= n:
        raise ValueError(f"cannot remove m={m} of n={n} rows")
    g = 2.0 * C + (b_norm + residual) / n
    return float(gamma * m * m * g * g / (lam * lam * (n - m)))


def worst_case_bound_printed(gamma: float, C: float, lam: float, n: int, m: int = 1) -> float:
    """Guo et al.'s worst case as printed, ``4 gamma m^2 C^2 / (lambda^2 (n - m))``.

    **Not valid under objective perturbation** (it assumes ``lambda ||w*|| <= C``);
    kept to demonstrate erratum 1. Use :func:`worst_case_bound`.
    """
    return float(4.0 * gamma * m * m * C * C / (lam * lam * (n - m)))


class RemainderChain(NamedTuple):
    """Every intermediate quantity of the remainder bound, for step-by-step tests.

    ``rho <= q1 <= q2 <= q3 <= data_dependent (= 2 q3 with Guo's gamma) <= q5 <= q6 <= worst``
    (the last three under their assumptions). All sum scale, float64.
    """

    rho: float          # ||rho||, the exact Taylor remainder
    q1: float           # ||X_rem||_2 ||e||_2, e_i = l'(a_i+v_i) - l'(a_i) - l''(a_i) v_i
    q2: float           # ||X_rem||_2 (gamma/2) ||v * v||_2
    q3: float           # (gamma/2) ||X_rem||_2 ||delta|| ||X_rem delta||
    data_dependent: float  # gamma ||X_rem||_2 ||delta|| ||X_rem delta||  (Guo et al.)
    q5: float           # gamma (n - m) ||delta||^2
    q6: float           # gamma ||Delta||^2 / (lambda^2 (n - m))
    worst_case: float   # corrected worst case
    worst_case_printed: float


def remainder_chain(loss_d1, loss_d2, gamma: float, C: float, lam: float, X_rem: np.ndarray,
                    y_rem: np.ndarray, w: np.ndarray, delta: np.ndarray, Delta: np.ndarray,
                    n: int, m: int, b_norm: float, residual: float) -> RemainderChain:
    """Evaluate every quantity in the proof of the remainder bound for one head (float64, host).

    Args:
      loss_d1: NumPy-callable ``l'(a, y)``.
      loss_d2: NumPy-callable ``l''(a, y)``.
      gamma: Lipschitz constant of ``l''`` (use the loss's exact one for q2/q3,
        Guo's for ``data_dependent``; this function uses the given ``gamma`` for both).
      C: as in :func:`worst_case_bound`.
      lam: as in :func:`worst_case_bound`.
      X_rem: remaining rows.
      y_rem: their targets (for this head).
      w: the model before the step.
      delta: the step.
      Delta: the removed gradient.
      n: rows before the step.
      m: rows removed.
      b_norm: as in :func:`worst_case_bound`.
      residual: as in :func:`worst_case_bound`.
    """
    X_rem = np.asarray(X_rem, np.float64)
    a = X_rem @ w
    v = X_rem @ delta
    e = loss_d1(a + v, y_rem) - loss_d1(a, y_rem) - loss_d2(a, y_rem) * v
    rho = float(np.linalg.norm(X_rem.T @ e))
    xs = float(np.linalg.norm(X_rem, 2))
    dn, xdn = float(np.linalg.norm(delta)), float(np.linalg.norm(v))
    q1 = xs * float(np.linalg.norm(e))
    q2 = xs * 0.5 * gamma * float(np.linalg.norm(v * v))
    q3 = 0.5 * gamma * xs * dn * xdn
    dd = gamma * xs * dn * xdn
    q5 = gamma * (n - m) * dn * dn
    q6 = gamma * float(np.linalg.norm(Delta)) ** 2 / (lam * lam * (n - m))
    return RemainderChain(rho, q1, q2, q3, dd, q5, q6,
                          worst_case_bound(gamma, C, lam, n, m, b_norm, residual),
                          worst_case_bound_printed(gamma, C, lam, n, m))


# --------------------------------------------------------------------------- cached factors


def staleness_bound(gamma: float, x_spectral: float, u_norm: float, x_u_norm: float,
                    delta_norm: float, x_delta_norm: float) -> float:
    r"""Extra residual of a Newton step taken with the Hessian at a stale point ``w_f``.

    With ``u = w - w_f`` (current model minus the point where the curvature was
    factorised), the step ``delta`` solving ``H(w_f; D') delta ~ Delta`` instead of
    ``H(w; D') delta ~ Delta`` leaves, beyond Guo et al.'s remainder, the term
    ``sum_i (l''(x_i^T w) - l''(x_i^T w_f)) (x_i^T delta) x_i`` whose norm is at most

    .. math::
        \gamma\,\|X_{rem}\|_2\,\min\big(\|u\|\,\|X_{rem}\delta\|,\;
        \|X_{rem}u\|\,\|\delta\|\big)

    (``|l''(a) - l''(b)| <= gamma |a - b|`` and ``||x_i|| <= 1``). Derivation:
    ``proofs/cached_factors.md``, steps (S1)-(S4). Zero for the squared loss
    (``gamma = 0``) and at ``u = 0`` (a fresh factorisation).

    Args:
      gamma: Lipschitz constant of ``l''`` (the unlearner's ``gamma``).
      x_spectral: a guaranteed upper bound on ``||X_rem||_2``.
      u_norm: an upper bound on ``||w - w_f||``.
      x_u_norm: an upper bound on ``||X_rem (w - w_f)||``.
      delta_norm: an upper bound on ``||delta||``.
      x_delta_norm: an upper bound on ``||X_rem delta||``.
    """
    return float(gamma * x_spectral * min(u_norm * x_delta_norm, x_u_norm * delta_norm))


def l1_remainder_bound(gamma: float, x_u_norm: float, x_delta_norm: float) -> float:
    r"""Remainder of a step with stale curvature by the row-wise l1 route (sum scale).

    With unit rows, ``||sum_i e_i x_i|| <= sum_i |e_i|`` and
    ``|e_i| <= gamma |u_i| |v_i| + (gamma/2) v_i^2`` (``u = X_rem (w - w_f)``,
    ``v = X_rem delta``), so by Cauchy-Schwarz

    .. math:: \|\varepsilon\| \le \gamma\,\|X_{rem}u\|\,\|X_{rem}\delta\|
              + \tfrac\gamma2\|X_{rem}\delta\|^2 .

    It covers Guo et al.'s Taylor remainder *and* the staleness term together and is never
    above ``staleness_bound + (gamma/2) ||X_rem||_2 ||delta|| ||X_rem delta||`` (with exact
    norms, since ``||X_rem v|| <= ||X_rem||_2 ||v||``). ``proofs/cached_factors.md``, (L1)-(L3).

    Args:
      gamma: Lipschitz constant of ``l''``.
      x_u_norm: an upper bound on ``||X_rem (w - w_f)||`` (0 at a fresh factorisation).
      x_delta_norm: an upper bound on ``||X_rem delta||``.
    """
    return float(gamma * x_u_norm * x_delta_norm + 0.5 * gamma * x_delta_norm * x_delta_norm)


def _expm1_ratio(M: float) -> float:
    """``(e^M - 1) / M`` (1 at ``M = 0``), rounded up; ``inf`` past overflow."""
    if M <= 0.0:
        return 1.0
    if M > 700.0:
        return float("inf")
    return float(np.expm1(M) / M) * (1 + 1e-14)


def self_concordant_remainder_bound(a_u_norm: float, a_delta_norm: float, u_norm: float,
                                    delta_norm: float, d3_over_d2: float = LOGISTIC_D3_OVER_D2
                                    ) -> float:
    r"""Remainder of a step with stale curvature, weighted by the curvature at ``w_f`` (sum scale).

    For a loss with ``|l'''| <= c l''`` (logistic: ``c = 1``), ``l''(b) <= l''(a) e^{c|b - a|}``,
    hence ``|l''(a_i + t v_i) - l''(f_i)| <= c kappa h_i (|u_i| + t |v_i|)`` with
    ``h_i = l''(f_i)``, ``kappa = (e^M - 1)/M``, ``M = c (||w - w_f|| + ||delta||)``, and

    .. math:: \|\varepsilon\| \le \sum_i|e_i| \le c\,\kappa\Big(
              \sqrt{u^\top A' u}\,\sqrt{\delta^\top A'\delta}
              + \tfrac12\,\delta^\top A'\delta\Big),
              \qquad A' = \sum_{i\in D'} h_i x_i x_i^\top ,

    ``A'`` being exactly the curvature the cached step solves with (without the
    regulariser). ``proofs/cached_factors.md``, step (SC).

    Args:
      a_u_norm: an upper bound on ``sqrt(u^T A' u)``, ``u = w - w_f``.
      a_delta_norm: an upper bound on ``sqrt(delta^T A' delta)``.
      u_norm: an upper bound on ``||w - w_f||``.
      delta_norm: an upper bound on ``||delta||``.
      d3_over_d2: ``c``, a bound on ``|l'''| / l''`` (:data:`LOGISTIC_D3_OVER_D2`).
    """
    kappa = _expm1_ratio(d3_over_d2 * (u_norm + delta_norm))
    return float(d3_over_d2 * kappa * (a_u_norm * a_delta_norm
                                       + 0.5 * a_delta_norm * a_delta_norm))


class CachedRemainder(NamedTuple):
    """The remainder bound charged by a cached-factor step (one head, sum scale).

    ``charged = min(spectral, l1, self_concordant)``: three valid bounds on the whole
    remainder ``||eps||`` of (R') in ``proofs/cached_factors.md``. ``fresh`` is the same
    minimum with every ``u``-dependent input set to zero (what the routes give at a fresh
    factorisation for the same step), and ``staleness = charged - fresh >= 0`` is the part
    attributed to the stale curvature (the refresh policy's ``s_t``).
    """

    charged: float
    spectral: float         # staleness_bound + Guo et al.'s data-dependent bound (S + DD)
    l1: float               # l1_remainder_bound
    self_concordant: float  # self_concordant_remainder_bound (inf where not applicable)
    fresh: float
    staleness: float
    route: str              # which of the three is charged


def cached_remainder_bound(gamma: float, x_spectral: float, u_norm: float, x_u_norm: float,
                           delta_norm: float, x_delta_norm: float,
                           a_u_norm: float | None = None, a_delta_norm: float | None = None,
                           d3_over_d2: float | None = None) -> CachedRemainder:
    """The bound a cached-factor step charges for its remainder: the least of three routes.

    All inputs are upper bounds on the exact quantities; each route alone bounds
    ``||eps||`` (``proofs/cached_factors.md`` §3), so their minimum does.

    Args:
      gamma: Lipschitz constant of ``l''``; 0 for the squared loss (then everything is 0).
      x_spectral: upper bound on ``||X_rem||_2``.
      u_norm: upper bound on ``||w - w_f||``.
      x_u_norm: upper bound on ``||X_rem (w - w_f)||``.
      delta_norm: upper bound on ``||delta||``.
      x_delta_norm: upper bound on ``||X_rem delta||``.
      a_u_norm: upper bound on ``sqrt(u^T A' u)``, ``A'`` the curvature at ``w_f`` of the
        remaining rows; with ``a_delta_norm`` and ``d3_over_d2`` it enables the
        self-concordant route (``None``: not used).
      a_delta_norm: upper bound on ``sqrt(delta^T A' delta)``.
      d3_over_d2: ``c`` with ``|l'''| <= c l''`` (logistic: 1), or ``None``.
    """
    if gamma <= 0.0:
        return CachedRemainder(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "exact")
    stale = staleness_bound(gamma, x_spectral, u_norm, x_u_norm, delta_norm, x_delta_norm)
    dd = data_dependent_bound(gamma, x_spectral, delta_norm, x_delta_norm)
    l1 = l1_remainder_bound(gamma, x_u_norm, x_delta_norm)
    sc = sc_0 = float("inf")
    if d3_over_d2 is not None and a_u_norm is not None and a_delta_norm is not None:
        sc = self_concordant_remainder_bound(a_u_norm, a_delta_norm, u_norm, delta_norm,
                                             d3_over_d2)
        sc_0 = self_concordant_remainder_bound(0.0, a_delta_norm, 0.0, delta_norm, d3_over_d2)
    routes = {"spectral": stale + dd, "l1": l1, "self_concordant": sc}
    route = min(routes, key=lambda r: routes[r])
    charged = routes[route]
    fresh = min(dd, l1_remainder_bound(gamma, 0.0, x_delta_norm), sc_0)
    return CachedRemainder(charged, routes["spectral"], l1, sc, fresh,
                           max(charged - fresh, 0.0), route)


class StaleChain(NamedTuple):
    """The quantities of ``proofs/cached_factors.md`` for one head, for step-by-step tests.

    Spectral route: ``eps <= s1 <= s2 <= stale + q3 <= stale + data_dependent``.
    l1 route: ``eps <= e_l1 <= l1_rows <= l1``. Self-concordant route (logistic):
    ``eps <= e_l1 <= sc_rows <= sc``. ``eps`` is the exact remainder of a step taken with the
    stale curvature (sum scale, float64).
    """

    eps: float             # ||sum_i (l'(a_i+v_i) - l'(a_i) - l''(f_i) v_i) x_i||, exact
    s1: float              # ||X_rem||_2 ||e||_2
    s2: float              # ||X_rem||_2 gamma (||u * v||_2 + ||v * v||_2 / 2)
    stale: float           # staleness_bound(...) with exact norms
    q3: float              # (gamma / 2) ||X_rem||_2 ||delta|| ||X_rem delta||
    data_dependent: float  # gamma ||X_rem||_2 ||delta|| ||X_rem delta||
    e_l1: float            # sum_i |e_i| ||x_i||
    l1_rows: float         # gamma sum_i |u_i| |v_i| + (gamma/2) sum_i v_i^2
    l1: float              # l1_remainder_bound(...) with exact norms
    sc_rows: float         # c kappa sum_i h_i (|u_i| |v_i| + v_i^2 / 2)
    sc: float              # self_concordant_remainder_bound(...) with exact norms


def stale_remainder_chain(loss_d1, loss_d2, gamma: float, X_rem: np.ndarray, y_rem: np.ndarray,
                          w: np.ndarray, w_f: np.ndarray, delta: np.ndarray,
                          d3_over_d2: float = LOGISTIC_D3_OVER_D2) -> StaleChain:
    """Evaluate every quantity of the staleness bounds for one head (float64, host).

    Args:
      loss_d1: NumPy-callable ``l'(a, y)``.
      loss_d2: NumPy-callable ``l''(a, y)``.
      gamma: Lipschitz constant of ``l''``.
      X_rem: remaining rows.
      y_rem: their targets (for this head).
      w: the model before the step.
      w_f: the factorisation point.
      delta: the step.
      d3_over_d2: ``c`` with ``|l'''| <= c l''`` for the self-concordant route.
    """
    X_rem = np.asarray(X_rem, np.float64)
    a, f, v = X_rem @ w, X_rem @ w_f, X_rem @ delta
    u = a - f
    h = loss_d2(f, y_rem)
    e = loss_d1(a + v, y_rem) - loss_d1(a, y_rem) - h * v
    eps = float(np.linalg.norm(X_rem.T @ e))
    xs = float(np.linalg.norm(X_rem, 2))
    dn, xdn, un = float(np.linalg.norm(delta)), float(np.linalg.norm(v)), float(np.linalg.norm(u))
    s1 = xs * float(np.linalg.norm(e))
    s2 = xs * gamma * (float(np.linalg.norm(u * v)) + 0.5 * float(np.linalg.norm(v * v)))
    wn = float(np.linalg.norm(w - w_f))
    stale = staleness_bound(gamma, xs, wn, un, dn, xdn)
    e_l1 = float(np.sum(np.abs(e) * np.linalg.norm(X_rem, axis=1)))
    l1_rows = gamma * float(np.sum(np.abs(u * v))) + 0.5 * gamma * float(np.sum(v * v))
    kappa = _expm1_ratio(d3_over_d2 * (wn + dn))
    sc_rows = d3_over_d2 * kappa * float(np.sum(h * (np.abs(u * v) + 0.5 * v * v)))
    sc = self_concordant_remainder_bound(float(np.sqrt(np.sum(h * u * u))),
                                         float(np.sqrt(np.sum(h * v * v))), wn, dn, d3_over_d2)
    return StaleChain(eps, s1, s2, stale, 0.5 * gamma * xs * dn * xdn, gamma * xs * dn * xdn,
                      e_l1, l1_rows, l1_remainder_bound(gamma, un, xdn), sc_rows, sc)
