"""Certificates of :func:`certun.unlearners.guo.certified_removal` (host side)."""

from __future__ import annotations

from typing import Any

import jax

from certun.certificate import Budget, check, make_certificate, verified
from certun.results import message as result_message
from certun.unlearners.base import published_view

MECHANISM = "guo2020_certified_removal"
_THREAT_NOTE = (
    "Certified removal: the model is (epsilon, delta)-indistinguishable from one retrained "
    "without the removed rows (Guo et al. 2020, Thm 3). It does NOT hide the deletion from an "
    "observer of the model before and after: b is shared by both versions and cancels in their "
    "difference; use a private release for that threat."
)
_DECISION_NOTE = (
    "The retrain decision compares data-dependent bounds with the budget, as in Guo et al.'s "
    "Algorithm 2; the number of removals served before a retrain is itself data-dependent."
)


def params(state: Any) -> jax.Array:
    """The published model: ``(d,)`` for one head, ``(d, K)`` for one-vs-rest."""
    return published_view(state.W)


def assumptions(ctx: Any, state: Any, x64: bool, solver_ok: bool, code: int,
                xs: float | None = None, tg: float | None = None, measured: bool = False
                ) -> list:
    """The certificate's assumptions (each verified or checked).

    ``measured``: a request whose residual was measured, not bounded
    (``proofs/guo2020_residual_bounds.md`` §5a-5b).
    """
    acc, lossf = ctx.acc, ctx.lossf
    xs = float(state.x_spectral) if xs is None else xs
    tg = float(state.train_grad_norm) if tg is None else tg
    a = [
        verified("unit_rows", "||x_i||_2 <= 1 for every training row (checked at init)"),
        verified("strong_convexity",
                 f"lambda = {acc.lam:g} > 0, so H >= lambda |D| I (sum scale)"),
        verified("curvature_lipschitz",
                 f"l'' is gamma-Lipschitz with gamma = {acc.gamma:.6g} >= the {lossf.name} "
                 f"loss's exact constant {lossf.gamma:.6g}", acc.gamma, lossf.gamma),
        verified("training_gradient",
                 "the training gradient norm (sum scale, with b) is measured and charged to "
                 "the budget", tg, private=True),
        verified("spectral_norm_bound",
                 "||X_rem||_2 bounded by exact float64 eigvalsh of X^T X plus a rounding "
                 "allowance, capped at sqrt(n_rem) (not a power iteration)", xs, private=True),
        check("float64", "bound inputs computed in float64 (enable jax_enable_x64)", x64),
        check("solver", "the Newton system was solved (PD, finite); its residual is in the "
              + ("measured gradient" if measured else "bound")
              + ("" if solver_ok else f": {result_message(code)}"), solver_ok),
    ]
    if measured:
        a.append(verified("measured_residual",
                          "the residual ||grad L_b(w^-; D')|| of this request is measured "
                          "exactly (one gradient in float64) plus its rounding allowance; no "
                          "bound is charged (proofs/guo2020_residual_bounds.md §5a-5b)"))
        return a
    if acc.bound == "worst_case" and lossf.gamma > 0:
        a.append(verified("gradient_bound", f"|l'| <= C = {acc.C} (per-example gradient norm)"))
    if acc.cached and lossf.gamma > 0:
        a.append(verified("stale_curvature",
                          "the step uses the curvature at the factorisation point w_f; its "
                          "whole remainder (Taylor + staleness, u = w - w_f) is charged as the "
                          "least of three bounds: gamma ||X_rem||_2 (min(||u|| ||X_rem delta||,"
                          " ||X_rem u|| ||delta||) + ||delta|| ||X_rem delta||), gamma ||X_rem "
                          "u|| ||X_rem delta|| + (gamma/2) ||X_rem delta||^2"
                          + (", and kappa (sqrt(u^T A' u) sqrt(delta^T A' delta) + delta^T A' "
                             "delta / 2) with A' the curvature at w_f (|l'''| <= l'')"
                             if acc.sc_const is not None else "")
                          + " (proofs/cached_factors.md)"))
    return a


def cert(ctx: Any, state: Any, used: float, assumptions: list, bounds: dict, solver: dict,
         private: dict, extra_failure: str | None = None, removed: int | None = None):
    """The removal certificate of a state with ``used`` of the budget spent."""
    return make_certificate(
        mechanism=MECHANISM, epsilon=ctx.eps, delta=ctx.dlt, sigma=ctx.sigma,
        threat="indistinguishable_from_retraining", adjacency="removal", scale="sum",
        calibration="guo_c", conversion=None, sensitivity=None, releases=1,
        removed=int(state.n_removed) if removed is None else removed,
        budget=Budget(ctx.acc.budget, used, "sum-scale gradient-residual norm ||grad L_b||_F"),
        assumptions=assumptions, bounds=bounds, solver=solver, private=private,
        notes=(_THREAT_NOTE, _DECISION_NOTE, f"c = sqrt(2 ln(1.5/delta)) = {ctx.c:.6g}; "
               f"budget = sigma * epsilon / c = {ctx.acc.budget:.6g}"),
        extra_failure=extra_failure,
    )
