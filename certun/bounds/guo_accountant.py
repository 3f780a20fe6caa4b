r"""Host-side float64 budget accounting of Guo et al.'s certified removal (sum scale).

The certificate of Guo et al. (ICML 2020, Theorem 3) holds while the gradient residual
``||grad L_b(w; D')||`` stays at most ``sigma epsilon / c``, ``c = sqrt(2 ln(1.5 / delta))``
(Algorithm 2). The accountant keeps an upper bound ``R`` on that residual: it starts at the
measured training gradient and each request **charges** a bound on its remainder (Guo et
al.'s data-dependent bound, Corollary 1; the corrected worst case of Theorem 1 -- the printed
``4 gamma C^2 / (lambda^2 (n - 1))`` omits the ``||b|| / n`` term of the weight-norm bound
that objective perturbation adds, see ``proofs/guo2020_residual_bounds.md`` §3; or, for a
cached factor, the least of three staleness-aware routes, ``proofs/cached_factors.md`` §3),
plus the measured solve residual and a rounding allowance. A **remeasure** replaces ``R`` by
the measured residual plus its rounding allowance (``proofs/guo2020_residual_bounds.md``
§5a). The **refresh policy** (``proofs/cached_factors.md`` §4) decides when re-factorising
the curvature pays. Everything here is host float64 on a few scalars per head: ``O(K)`` per
request, independent of ``n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from certun.bounds import guo as guo_bounds
from certun.primitives.spectral import UNIT_ROUNDOFF

__all__ = ["GuoAccountant", "charge", "grad_allowance", "measured_residual", "refresh_after",
           "refresh_worth", "refresh_cost", "measures_every_request", "GEMM_SPEEDUP"]

#: How many times faster, per flop, the refresh's matrix-matrix products run than the
#: measurement's matrix-vector passes over ``X`` (memory-bound). Measured on 2 shared cores
#: (XLA:CPU, float64, d = 784): 4-6 at n = 12,000 (gradient ~3 ms, refresh ~250 ms, quiet) and
#: 3-6 at n = 1,500 under load 8-10; the policy only needs the order of magnitude.
GEMM_SPEEDUP = 5.0


def measures_every_request(n: int, d: int) -> bool:
    """Whether the cached path should measure every request's residual: ``n <= 2 d``.

    A measured request replaces the charged bound by the exact residual (one gradient, two
    passes over the ``n x d`` rows) and drops the bound's two passes over the stored ``d x d``
    curvature and Gram matrix; the measurement then also resets the residual each request
    (``proofs/guo2020_residual_bounds.md`` §5b), so no staleness is charged and refreshes are
    rare. It pays when ``X`` is no larger than the matrices it replaces plus the
    measurements the bounds trigger anyway: at ``n = 1,500``, ``d = 784`` (2 shared cores)
    the staleness bound needed a measurement every ~2 requests, and ``X`` (9.4 MB) with the
    inverse (4.9 MB) stays in cache where ``X`` with three ``d x d`` matrices (24 MB) does not.
    A function of the shapes only (a ledger replays to the same decisions).
    """
    return n <= 2 * d


def refresh_cost(n: int, d: int, method: str = "cholesky") -> float:
    """The cost of a refresh in measurements (gradients over the ``n`` rows): deterministic.

    A measurement is two passes over ``X`` (``4 n d`` flops per head, memory-bound); a refresh
    forms ``X^T diag(l'') X`` (``2 n d^2``, a matrix-matrix product) and factorises it
    (``~2 d^3`` for the Cholesky inverse, ``~10 d^3`` for ``eigh``), :data:`GEMM_SPEEDUP`
    times faster per flop: ``rho = (d / 2 + f d^2 / (4 n)) / GEMM_SPEEDUP``. A function of
    the shapes only (no timings), so a ledger replays to the same decisions.
    """
    f = 2.0 if method == "cholesky" else 10.0
    return (d / 2.0 + f * d * d / (4.0 * max(n, 1))) / GEMM_SPEEDUP


@dataclass(frozen=True)
class GuoAccountant:
    """The public constants the accounting uses (one per unlearner).

    Attributes:
      lam: mean-scale ``lambda``. gamma: Lipschitz constant of ``l''`` charged.
      loss_gamma, d2_bound: the loss's exact ``sup |l'''|`` and ``sup l''``.
      C: ``sup |l'|`` (``None`` for the squared loss). sc_const: ``c`` with
      ``|l'''| <= c l''`` (``None``: self-concordant route off).
      bound: ``"data_dependent"`` or ``"worst_case"``. cached: stale-curvature steps.
      budget: ``sigma epsilon / c``. refresh_cost_ratio: ``kappa`` (``None``: policy off).
      remeasure: restart ``R`` from a measurement when the budget would be exceeded.
    """

    lam: float
    gamma: float
    loss_gamma: float
    d2_bound: float
    C: float | None
    sc_const: float | None
    bound: str
    cached: bool
    budget: float
    refresh_cost_ratio: float | None
    remeasure: bool


def grad_allowance(n: float, d: int, mag: float) -> float:
    """Rounding allowance ``(n + d + 2) u M`` of a summed gradient of magnitude ``M``."""
    return (n + d + 2) * UNIT_ROUNDOFF * mag


def measured_residual(gn: float, mag: float, margin: float, n: float, d: int) -> float:
    """``||grad L_b||`` measured (``gn``) plus its rounding allowance.

    ``proofs/guo2020_residual_bounds.md`` §5a: ``(n + d + 2) u M`` for the sums and
    ``1.01 (d + 4) u l''_max ||W||_F sum_i ||x_i||`` (``margin``) for the margins.
    """
    return gn + grad_allowance(n, d, mag) + 1.01 * (d + 4) * UNIT_ROUNDOFF * margin


def _cached_routes(acc: GuoAccountant, out: dict, dn, xdn, q_err, x_spec, d, n_total, d_fro2,
                   kk) -> tuple[list, Any]:
    """The cached step's remainder: the least of three routes per head (cached_factors §3)."""
    u = UNIT_ROUNDOFF
    K = len(dn)
    un = np.asarray(out["u_norms"], np.float64) * (1 + 4 * d * u)
    xun = np.sqrt(np.maximum(np.asarray(out["x_u_sq"], np.float64), 0.0) + q_err * un ** 2)
    aun: Any = [None] * K
    adn: Any = [None] * K
    if acc.sc_const is not None:
        # curv: formation, weights at fl(x^T w_f), folds, the buffered rows and the
        # quadratic form (proofs/cached_factors.md §3, "Inputs are upper bounds")
        wn = np.asarray(out["w_norms"], np.float64)
        a_err = (((4 * n_total + 5 * d + 2 * kk + 30) * u
                  + acc.loss_gamma * (d + 2) * u * 1.01 * wn)
                 * acc.d2_bound * (n_total + d_fro2 + kk))
        aun = np.sqrt(np.maximum(np.asarray(out["a_u_sq"], np.float64), 0.0) + a_err * un ** 2)
        adn = np.sqrt(np.maximum(np.asarray(out["a_delta_sq"], np.float64), 0.0)
                      + a_err * dn ** 2)
    rem = [guo_bounds.cached_remainder_bound(acc.gamma, x_spec, un[k], xun[k], dn[k], xdn[k],
                                             aun[k], adn[k], acc.sc_const) for k in range(K)]
    return rem, xun


def charge(acc: GuoAccountant, out: dict, h: dict, m: int, n_prev: int, n_total: int, d: int,
           K: int, k_buf: int = 0) -> tuple[dict, float, float, float]:
    """Host-side float64 bounds of one request.

    ``proofs/guo2020_residual_bounds.md`` sections 3-5 and ``proofs/cached_factors.md``
    (staleness). ``out``: the step's measured norms per head (``delta_norms``,
    ``x_delta_sq``, ...); ``h``: the state's host scalars (``R``, ``xs``, ``fro2``,
    ``gram_err``, ``b_norms``, optionally ``R_carry``). Returns ``(bounds, charge, R_new,
    gram_err)`` with ``R_new = R_carry + charge``: ``R_carry`` is ``R`` unless the step
    cancels a measured gradient ``g`` at the current model, when it is the bound on
    ``||grad L_b - g||`` (``proofs/guo2020_residual_bounds.md`` §5b).
    """
    u = UNIT_ROUNDOFF
    d_fro2 = float(h["fro2"])
    gram_fro = d_fro2  # ||G||_F <= tr G <= ||X||_F^2 for the PSD Gram of any subset of rows
    x_spec = guo_bounds.spectral_cap(float(h["xs"]), n_prev - m)
    kk = k_buf + m  # rows downdated from the stored Gram (eagerly, or lazily when cached)
    gram_err = float(h["gram_err"]) + (kk + 2) * u * (kk + gram_fro)
    q_err = gram_err + 4 * (d + 1) * u * gram_fro
    dn = np.asarray(out["delta_norms"], np.float64) * (1 + 4 * d * u)
    xdn = np.sqrt(np.maximum(np.asarray(out["x_delta_sq"], np.float64), 0.0) + q_err * dn ** 2)
    b_norms = h["b_norms"]
    R_prev = float(h["R"])
    dd = [guo_bounds.data_dependent_bound(acc.gamma, x_spec, dn[k], xdn[k]) for k in range(K)]
    if acc.loss_gamma > 0:
        assert acc.C is not None  # a loss with curvature has a bounded derivative here
        wc = [guo_bounds.worst_case_bound(acc.gamma, acc.C, acc.lam, n_prev, m, b_norms[k],
                                          R_prev) for k in range(K)]
        wcp = [guo_bounds.worst_case_bound_printed(acc.gamma, acc.C, acc.lam, n_prev, m)] * K
    else:
        wc, wcp = [0.0] * K, [0.0] * K
    rem: list | None = None
    xun: Any = None
    if acc.cached:
        rem, xun = _cached_routes(acc, out, dn, xdn, q_err, x_spec, d, n_total, d_fro2, kk)
        rho_bound = float(sum(r.charged for r in rem))
    else:
        rho_bound = float(sum(dd) if acc.bound == "data_dependent" else sum(wc))
    Dn = float(np.linalg.norm(np.asarray(out["Delta_norms"])))
    # curv: formed from <= n_total rows, and on the cached path downdated by <= n_total more;
    # margins x^T w carry an error <= gamma_d ||w||, which moves l'' by <= gamma* times that
    # (every curvature weight) and l' by <= l''_max times that (every removed row)
    rows_in_curv = 2 * n_total if acc.cached else n_total
    wn = np.asarray(out["w_norms"], np.float64)
    rounding = ((rows_in_curv + d + kk + 4) * u
                * (acc.d2_bound * d_fro2 + acc.lam * n_prev + kk) * float(np.sum(dn))
                + (d + 2) * u * Dn
                + (d + 4) * u * 1.01 * float(np.sum(
                    wn * (acc.loss_gamma * d_fro2 * dn + acc.d2_bound * m))))
    solver_res = float(out["solver_residual"])
    total = rho_bound + solver_res + rounding
    R_carry = float(h.get("R_carry", R_prev))
    R_new = R_carry + total
    bounds: dict[str, Any] = {
        "residual_bound_before": R_prev,
        "step_remainder_bound": rho_bound,
        "step_data_dependent_bound": float(sum(dd)),
        "step_worst_case_bound": float(sum(wc)),
        "step_worst_case_bound_printed": float(sum(wcp)),
        "step_solver_residual": solver_res,
        "step_rounding_allowance": rounding,
        "residual_bound_after": R_new,
        "x_spectral_bound": x_spec,
        "bound_charged": acc.bound,
        "gamma": acc.gamma,
    }
    if R_carry < R_prev:
        bounds["residual_carried"] = R_carry
    if rem is not None:
        bounds["step_staleness_bound"] = float(sum(r.staleness for r in rem))
        bounds["step_drift_norm"] = float(np.sum(xun))
        bounds["step_spectral_bound"] = float(sum(r.spectral for r in rem))
        bounds["step_l1_bound"] = float(sum(r.l1 for r in rem))
        sc = float(sum(r.self_concordant for r in rem))
        bounds["step_self_concordant_bound"] = sc if math.isfinite(sc) else None
        bounds["step_remainder_routes"] = [r.route for r in rem]
    return bounds, total, R_new, gram_err


def refresh_worth(acc: GuoAccountant, R_before: float, auto_retrain: bool, solver_ok: bool
                  ) -> bool:
    """Whether a refresh before refusing (or retraining) is worth trying.

    Unless the retrain is automatic and the budget a refresh could still open up is worth less
    than the refresh (``kappa * budget``, the policy's exchange rate; cached_factors §4).
    """
    kappa = acc.refresh_cost_ratio
    return (kappa is None or not auto_retrain or not solver_ok
            or acc.budget - R_before >= kappa * acc.budget)


def refresh_after(acc: GuoAccountant, bounds: dict, since: int, S_new: float | None,
                  D_new: float | None, R_new: float, total: float, refactor_every: int,
                  rho: float) -> tuple[str | None, float | None]:
    """Why to re-factorise after a served request (``None``: keep the factor).

    Returns ``(reason, s_hat)``: ``"refactor_every"``; ``"policy"`` (``proofs/cached_factors.md``
    §4: after request ``t`` when ``t s_hat - S_t >= kappa B``, ``s_hat = S_t D_t / sum_j D_j``
    the next request's expected staleness); or ``"remeasure"`` (remeasuring in place of the
    policy, ``proofs/cached_factors.md`` §4, "With remeasuring": after a measurement, the
    renewal rule in measurements, ``t min(s_t, B) - S_t >= rho B`` with ``s_t`` the request's
    staleness charge, ``S_t`` the staleness charged since the factorisation, each request's
    capped at the budget ``B`` (staleness costs measurements at the rate ``min(s, B) / B``),
    and ``rho`` the cost of a refresh in measurements, :func:`refresh_cost`; ``R_new`` and
    ``total`` are unused by this rule). ``s_hat`` for the diagnostics.
    """
    if refactor_every and since + 1 >= refactor_every:
        return "refactor_every", None
    if acc.cached and not acc.remeasure:
        s_t, D_t = bounds["step_staleness_bound"], bounds["step_drift_norm"]
        t = since + 1
        s_hat = S_new * D_t / D_new if D_new else s_t
        kappa = acc.refresh_cost_ratio
        if kappa is not None and s_t > 0 and t * s_hat - S_new >= kappa * acc.budget:
            return "policy", s_hat
        return None, s_hat
    if acc.cached and "residual_remeasured" in bounds:
        s_t = bounds["step_staleness_bound"]
        if s_t > 0 and (since + 1) * min(s_t, acc.budget) - float(S_new or 0.0) \
                >= rho * acc.budget:
            return "remeasure", None
    return None, None


# --------------------------------------------------------------------------- on the device
#: Layout of :func:`charge_device`'s vector (then the per-head route indices, ``K`` entries).
CHARGE_FIELDS = ("residual_bound_before", "step_remainder_bound", "step_data_dependent_bound",
                 "step_worst_case_bound", "step_worst_case_bound_printed",
                 "step_solver_residual", "step_rounding_allowance", "residual_bound_after",
                 "x_spectral_bound", "gram_err", "charge", "step_staleness_bound",
                 "step_drift_norm", "step_spectral_bound", "step_l1_bound",
                 "step_self_concordant_bound", "residual_carried")
ROUTES = ("spectral", "l1", "self_concordant")


def _expm1_ratio_dev(M):
    import jax.numpy as jnp

    safe = jnp.where(M > 0, M, 1.0)
    r = jnp.expm1(jnp.minimum(safe, 700.0)) / safe * (1 + 1e-14)
    return jnp.where(M <= 0, 1.0, jnp.where(M > 700.0, jnp.inf, r))


def charge_device(acc: GuoAccountant, out: dict, R_prev, xs, fro2, gram_err0, b_norms, m: int,
                  n_prev, n_total: int, d: int, k_buf, R_carry=None):
    """:func:`charge` in jitted float64 arithmetic: the request's bounds in its own dispatch.

    The same formulas as the host :func:`charge` (a test holds them equal to 1e-13), on the
    step's per-head arrays ``out`` and the state's scalars (traced). Returns the vector laid
    out as :data:`CHARGE_FIELDS` followed by the per-head index into :data:`ROUTES`.
    ``R_carry`` (default ``R_prev``): the part of the residual the step carries over, smaller
    when the step cancels a measured gradient (:func:`charge`).
    """
    import jax.numpy as jnp

    if R_carry is None:
        R_carry = R_prev

    u = UNIT_ROUNDOFF
    f64 = jnp.float64
    n_prev = jnp.asarray(n_prev, f64)
    kk = jnp.asarray(k_buf, f64) + m
    n_rem = n_prev - m
    x_spec = jnp.minimum(xs, jnp.nextafter(jnp.sqrt(jnp.maximum(n_rem, 0.0)), jnp.inf))
    gram_err = gram_err0 + (kk + 2) * u * (kk + fro2)
    q_err = gram_err + 4 * (d + 1) * u * fro2
    dn = out["delta_norms"] * (1 + 4 * d * u)
    xdn = jnp.sqrt(jnp.maximum(out["x_delta_sq"], 0.0) + q_err * dn ** 2)
    g = acc.gamma
    dd = g * x_spec * dn * xdn
    zeros = jnp.zeros_like(dn)
    if acc.loss_gamma > 0:
        C = float(acc.C or 0.0)
        gg = 2.0 * C + (b_norms + R_prev) / n_prev
        wc = g * m * m * gg * gg / (acc.lam * acc.lam * n_rem)
        wcp = zeros + 4.0 * g * m * m * C * C / (acc.lam * acc.lam * n_rem)
    else:
        wc = wcp = zeros
    stale = drift = spec = l1 = sc = zeros
    route = jnp.zeros(dn.shape, jnp.int32)
    if acc.cached:
        un = out["u_norms"] * (1 + 4 * d * u)
        xun = jnp.sqrt(jnp.maximum(out["x_u_sq"], 0.0) + q_err * un ** 2)
        drift = xun
        if g > 0:
            st = g * x_spec * jnp.minimum(un * xdn, xun * dn)
            spec = st + dd
            l1 = g * xun * xdn + 0.5 * g * xdn * xdn
            fresh = jnp.minimum(dd, 0.5 * g * xdn * xdn)
            sc = jnp.full_like(dn, jnp.inf)
            if acc.sc_const is not None:
                cst = acc.sc_const
                a_err = (((4 * n_total + 5 * d + 2 * kk + 30) * u
                          + acc.loss_gamma * (d + 2) * u * 1.01 * out["w_norms"])
                         * acc.d2_bound * (n_total + fro2 + kk))
                aun = jnp.sqrt(jnp.maximum(out["a_u_sq"], 0.0) + a_err * un ** 2)
                adn = jnp.sqrt(jnp.maximum(out["a_delta_sq"], 0.0) + a_err * dn ** 2)
                sc = cst * _expm1_ratio_dev(cst * (un + dn)) * (aun * adn + 0.5 * adn * adn)
                sc0 = cst * _expm1_ratio_dev(cst * dn) * (0.5 * adn * adn)
                fresh = jnp.minimum(fresh, sc0)
            routes = jnp.stack([spec, l1, sc])
            route = jnp.argmin(routes, axis=0).astype(jnp.int32)
            charged = jnp.min(routes, axis=0)
            stale = jnp.maximum(charged - fresh, 0.0)
            rho = jnp.sum(charged)
        else:
            rho = jnp.zeros((), f64)
    else:
        rho = jnp.sum(dd) if acc.bound == "data_dependent" else jnp.sum(wc)
    Dn = jnp.linalg.norm(out["Delta_norms"])
    rows_in_curv = 2 * n_total if acc.cached else n_total
    wn = out["w_norms"]
    rounding = ((rows_in_curv + d + kk + 4) * u
                * (acc.d2_bound * fro2 + acc.lam * n_prev + kk) * jnp.sum(dn)
                + (d + 2) * u * Dn
                + (d + 4) * u * 1.01 * jnp.sum(wn * (acc.loss_gamma * fro2 * dn
                                                     + acc.d2_bound * m)))
    solver_res = jnp.asarray(out["solver_residual"], f64)
    total = rho + solver_res + rounding
    vals = [R_prev, rho, jnp.sum(dd), jnp.sum(wc), jnp.sum(wcp), solver_res, rounding,
            R_carry + total, x_spec, gram_err, total, jnp.sum(stale), jnp.sum(drift),
            jnp.sum(spec), jnp.sum(l1), jnp.sum(sc), R_carry]
    return jnp.concatenate([jnp.stack([jnp.asarray(v, f64) for v in vals]),
                            route.astype(f64)])


def bounds_from_device(acc: GuoAccountant, vec: Any, K: int) -> tuple[dict, float, float, float]:
    """The host ``(bounds, charge, R_new, gram_err)`` of :func:`charge_device`'s vector."""
    v = [float(x) for x in np.asarray(vec, np.float64)]
    f = dict(zip(CHARGE_FIELDS, v, strict=False))
    bounds: dict[str, Any] = {k: f[k] for k in CHARGE_FIELDS[:9]}
    bounds["bound_charged"] = acc.bound
    bounds["gamma"] = acc.gamma
    if f["residual_carried"] < f["residual_bound_before"]:
        bounds["residual_carried"] = f["residual_carried"]
    if acc.cached:
        for k in CHARGE_FIELDS[11:15]:
            bounds[k] = f[k]
        sc = f["step_self_concordant_bound"]
        bounds["step_self_concordant_bound"] = sc if math.isfinite(sc) else None
        n = len(CHARGE_FIELDS)
        bounds["step_remainder_routes"] = ([ROUTES[int(r)] for r in v[n:n + K]]
                                           if acc.gamma > 0 else ["exact"] * K)
    return bounds, f["charge"], f["residual_bound_after"], f["gram_err"]
