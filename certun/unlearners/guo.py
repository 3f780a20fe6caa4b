r"""Guo et al. (ICML 2020) certified removal for L2-regularised linear models.

Learning (the randomised algorithm ``A``): draw ``b ~ N(0, sigma^2 I)`` once and
train to a tight optimum of the perturbed objective (certun's mean scale)

.. math:: J(w) = \frac1n\sum_i \ell(w^\top x_i, y_i) + \frac\lambda2\|w\|^2 + \frac{b^\top w}{n},

i.e. ``L_b = n J`` on the paper's sum scale. Removing rows ``U`` (``m`` of the
``n`` current rows) takes one Newton step on the *remaining* data at the current model:

.. math::
    \Delta = \sum_{j\in U}\nabla\ell(w^\top x_j, y_j) + m\lambda w,\qquad
    w^- = w + H^{-1}\Delta,\qquad H = \nabla^2 L_b(w; D\setminus U).

**Certificate.** With ``r`` the residual ``grad L_b(w^-; D \ U)`` (sum scale, with
``b``), Guo et al.'s Theorem 3 makes the result ``(epsilon, delta)``-indistinguishable
from retraining on ``D \ U`` with a fresh draw of ``b`` as long as ``||r|| <= epsilon'``
and ``sigma = c epsilon' / epsilon``, ``c = sqrt(2 ln(1.5/delta))``. ``r`` accumulates over
requests (``r_new = r_prev + s + rho``: previous residual, solve residual, Taylor
remainder), so certun keeps an upper bound ``R`` on ``||r||`` that starts at the
measured training-gradient norm and adds, per request, a bound on ``||rho||``
(data-dependent by default, :func:`certun.bounds.guo.data_dependent_bound`, or the
corrected worst case), the measured solve residual and a rounding allowance.
The **budget** is ``sigma epsilon / c``; a request that would push ``R`` above it
is refused with outcome ``"retrain_required"`` (or, with ``auto_retrain``, the
model is retrained on the remaining rows with a fresh ``b`` and a new budget).
Derivations: ``proofs/guo2020_residual_bounds.md``.

**Cost** (``update="pcg"``). ``init`` forms ``X^T X`` (for ``||X_rem delta||`` and a bound on
``||X||_2``) and the eigendecomposition of each head's curvature ``X^T D X``. The first
request is then solved exactly in ``O(d^2 m)`` (shift by the eigenvalues, removed rows by
Woodbury); later ones run CG on the exact Hessian at the current model preconditioned by
that factorisation (``O(nd)`` per iteration) and charge the achieved residual;
``refactor_every`` re-factorises every so many requests.

**Cached factors** (``update="cached"``; ``update="auto"``, the default, picks it for ridge
and, with ``remeasure``, for logistic with the data-dependent bound). Every
request is solved in ``O(d^2 + d k^2)`` with the factorisation kept up to date: the
eigendecomposition made at ``w_f`` absorbs the regulariser's shift exactly and a
``k x k`` Woodbury capacitance (Cholesky) holds the ``k`` rows removed since, so the
maintained factor solves ``H(w_f; D_current) x = v`` exactly.
For the logistic loss ``H`` moves with the model: the step uses the curvature at
``w_f`` and charges a bound on its whole remainder (Taylor and staleness together), the
least of three: Guo et al.'s data-dependent bound plus
``gamma ||X_rem||_2 min(||w - w_f|| ||X_rem delta||, ||X_rem (w - w_f)|| ||delta||)``, the
row-wise ``gamma ||X_rem (w - w_f)|| ||X_rem delta|| + (gamma/2) ||X_rem delta||^2``, and a
curvature-weighted bound from ``|l'''| <= l''``
(:func:`certun.bounds.guo.cached_remainder_bound`, ``proofs/cached_factors.md``), on top of
the measured solve residual. When the buffer of removed rows is full (``max_rank``) it
is folded into the factorisation (``O(d^3)``, no pass over the data); the factorisation
is refreshed at the current model (``O(n d^2 + d^3)``) when the refresh policy of
``proofs/cached_factors.md`` says staleness has become dearer than a refresh
(``refresh_cost_ratio``), and before refusing a request that only a stale step would
push over the budget. :meth:`GuoUnlearner.warmup` compiles every step before the first
request. For ridge the step is exact and no staleness arises. ``factor="cholesky"`` keeps
the shifted inverse at a fixed shift instead (Cholesky), extends the capacitance's Cholesky
factor by one row per removed row (``O(d k)``, never rebuilt) and sums a short Neumann series
for the shift's drift; its folds are mostly Woodbury updates of the inverse, ~7x cheaper than
an ``eigh`` (``proofs/cached_factors.md`` §5). ``remeasure=True`` replaces the accumulated
bound by the measured residual (one gradient) when the budget would be exceeded
(``proofs/guo2020_residual_bounds.md`` §5a); the next step cancels the measured gradient (§5b).
:meth:`GuoUnlearner.what_if` evaluates the budget each of many candidate removals would
consume in one vmapped call.

**Threat covered.** Indistinguishability from retraining. This does **not** hide a
deletion from someone who sees the model before and after: ``b`` is shared by
both versions and cancels in their difference (use a private release for that).

Reference: C. Guo, T. Goldstein, A. Hannun, L. van der Maaten, "Certified Data
Removal from Machine Learning Models", ICML 2020, arXiv:1911.03030.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.accounting.gaussian import guo_budget, guo_c, guo_max_epsilon
from certun.bounds import guo as guo_bounds
from certun.bounds import guo_accountant as ga
from certun.models import glm
from certun.primitives import curvature_cache as cc
from certun.unlearners import _guo_host as host
from certun.unlearners import _guo_request as _request
from certun.unlearners import _guo_sequence as _sequence
from certun.unlearners import _guo_steps as gs
from certun.unlearners._guo_certs import MECHANISM as _MECHANISM
from certun.unlearners._guo_certs import params
from certun.unlearners.base import Unlearner, UnlearnResult, published_view

__all__ = ["GuoState", "GuoUnlearner", "WhatIf", "certified_removal", "cached_factor_solve",
           "MECHANISM", "UPDATES"]

UPDATES = ("auto", "pcg", "cached")

#: The certificate's ``mechanism`` field for certified removal.
MECHANISM = _MECHANISM

# kept for callers of the names before the split (the values live with their layers)
_bucket = cc.bucket
_REINVERT_RATIO = cc.REINVERT_RATIO


class GuoState(NamedTuple):
    """State of :func:`certified_removal` (a pytree of arrays; private as a whole).

    Attributes:
      X, Y: the original training rows and their ``(n, K)`` targets.
      mask: 1 for rows still present, 0 for removed rows.
      W: the current model ``(d, K)`` (the published one: its noise is ``b``).
      b: the objective perturbation ``(d, K)`` (private).
      W_factor, factor_mask: model and mask at which the factorisation was made.
      curv: ``(K, d, d)`` curvature ``X^T diag(mask l'') X`` at ``W_factor`` (float64).
      eigvals, eigvecs: its eigendecomposition per head.
      gram: ``X_rem^T X_rem`` of the rows still present (downdated per request).
      gram_err: rounding bound on ``||fl(gram) - gram||_2``.
      x_spectral: guaranteed upper bound on ``||X||_2`` of the full data (valid for
        every subset of rows).
      fro2: ``||X||_F^2`` of the full data.
      residual_bound: ``R``, an upper bound on ``||grad L_b(W; D_current)||_F`` (sum scale).
      train_grad_norm: the measured training-gradient norm (sum scale) plus rounding.
      n_removed: rows removed so far; requests: requests served; retrains: retrains so far.
      steps_since_factor: requests since the last factorisation.
      key: base key; retrain ``j`` draws ``b`` with ``release = j``.
      rows_buf, h_buf, proj_buf, buf_count, stale_sum, drift_sum: only with ``update="cached"``
        (``None`` otherwise): the rows removed since the factorisation ``(cap, d)``,
        their curvature weights at ``W_factor`` ``(cap, K)``, their projections
        ``Q_k^T x_j sqrt(h_jk)`` ``(K, cap, d)``, how many are held, the staleness
        charged since the factorisation and the sum of the drifts ``||X_rem (w - w_f)||``
        of those requests (the refresh policy's inputs). In that mode ``gram`` is the Gram matrix of
        the rows present at the factorisation (the rows in ``rows_buf`` are subtracted
        lazily) and ``curv`` is never downdated.
      inv, cap_buf, inv_rows: only with ``factor="cholesky"`` (then ``eigvals``/``eigvecs``
        are ``None``): ``(K, d, d)`` inverse ``(curv_k - sum_folded h x x^T + lam n_f I)^{-1}``
        at the shift of ``n_f = inv_rows`` rows (the rows present when it was last inverted;
        folds in between update it by Woodbury at that shift), and ``(K, cap, cap)``
        Cholesky factors of the Woodbury capacitance ``I - P_k inv_k P_k^T`` of the buffered
        rows (identity beyond ``buf_count``); ``proj_buf`` then holds ``inv_k x_j sqrt(h_jk)``.
      grad_known, grad_known_err: with ``remeasure`` (else ``None``): the gradient measured at
        ``W`` by the last request and its error bound (0, ``inf``: none), cancelled next (§5b).
      measure_every: ``True`` when every cached request is measured (else ``None``).
    """

    X: jax.Array
    Y: jax.Array
    mask: jax.Array
    W: jax.Array
    b: jax.Array
    W_factor: jax.Array
    factor_mask: jax.Array
    curv: jax.Array
    eigvals: jax.Array
    eigvecs: jax.Array
    gram: jax.Array
    gram_err: jax.Array
    x_spectral: jax.Array
    fro2: jax.Array
    residual_bound: jax.Array
    train_grad_norm: jax.Array
    n_removed: jax.Array
    requests: jax.Array
    retrains: jax.Array
    steps_since_factor: jax.Array
    key: jax.Array
    rows_buf: jax.Array | None = None
    h_buf: jax.Array | None = None
    proj_buf: jax.Array | None = None
    buf_count: jax.Array | None = None
    stale_sum: jax.Array | None = None
    drift_sum: jax.Array | None = None
    inv: jax.Array | None = None
    cap_buf: jax.Array | None = None
    inv_rows: jax.Array | None = None
    grad_known: jax.Array | None = None
    grad_known_err: jax.Array | None = None
    measure_every: jax.Array | None = None


class WhatIf(NamedTuple):
    """Budget that each of several candidate single-row removals would consume.

    Attributes:
      indices: the candidate rows (original positions), in the order given.
      charge: what removing that row alone (next request, from this state) would add
        to the residual bound (remainder bound + staleness + solve residual + rounding).
      used_after: ``residual_bound + charge`` (``grad_known_err + charge`` when the next
        step cancels a measured gradient).
      exceeds: whether that request would exceed the budget (and so trigger a retrain).
      budget_total: ``sigma * epsilon / c``.
      budget_used: the current residual bound.
    """

    indices: np.ndarray
    charge: np.ndarray
    used_after: np.ndarray
    exceeds: np.ndarray
    budget_total: float
    budget_used: float


class GuoUnlearner(Unlearner):
    """The :class:`~certun.unlearners.base.Unlearner` of :func:`certified_removal`.

    The same four fields (a NamedTuple subclass), plus :meth:`what_if`, :meth:`refresh`,
    :meth:`fold` and :meth:`warmup`.
    """

    __slots__ = ()

    def what_if(self, state: GuoState, candidates: Any) -> WhatIf:
        """The bounded budget each candidate single-row removal would consume (one vmapped call)."""
        return _ops(self).what_if(state, candidates)

    def refresh(self, state: GuoState) -> GuoState:
        """Re-factorise the curvature at the current model on the remaining rows."""
        return _ops(self).refresh(state)

    def warmup(self, state: GuoState) -> float:
        """Compile every step single-row requests can take, before the first request (seconds)."""
        return _ops(self).warmup(state)

    def unlearn_sequence(self, state: GuoState, requests: Any) -> Any:
        """Serve ``requests`` (a list of index lists) in order, in few jitted dispatches.

        With the cached factor, runs of equal-size requests are served inside one jitted
        ``lax.scan`` of the same request function :meth:`unlearn` dispatches; the scan returns
        to the host at buffer-width boundaries and full buffers (folds), after a request whose
        refresh is due, and at a request the step cannot serve (then served by
        :meth:`unlearn`'s own path: refresh and retry, retrain or refusal). Outcomes and
        certificate decisions are :meth:`unlearn`'s in order; parameters and bounds agree to
        rounding. Every request is validated before any is served (no row twice). Returns a
        :class:`~certun.unlearners._guo_sequence.SequenceResult`.
        """
        return _ops(self).sequence(state, requests)

    def fold(self, state: GuoState) -> GuoState:
        """Fold the cached buffer of removed rows into the factorisation (same point, no pass).

        Afterwards ``rows_buf``, ``h_buf``, ``proj_buf`` are zero, ``cap_buf`` the identity,
        and ``gram``, ``curv`` and the factor (``eigvecs``/``eigvals`` or ``inv``) exclude the
        removed rows; ``W_factor`` and the staleness accounting are unchanged
        (``proofs/cached_factors.md``). Needs ``update="cached"``.
        """
        return _ops(self).fold(state)

def cached_factor_solve(state: GuoState, V: Any, lam: float) -> jax.Array:
    """Solve with the maintained factor of a ``update="cached"`` state, per head.

    Solves ``(curv_k - sum_{j in buffer} h_jk x_j x_j^T + lam n I) x_k = v_k`` with
    ``n`` the rows still present, i.e. the sum-scale Hessian of the **remaining** rows
    at the factorisation point ``W_factor`` (regulariser included), using only the
    maintained factor (:func:`certun.primitives.curvature_cache.solve`): the
    eigendecomposition and the Woodbury capacitance, or with ``factor="cholesky"`` the
    fixed-shift inverse, its capacitance and the Neumann series summed to relative error
    ``1e-17`` (``proofs/cached_factors.md`` §5).

    Args:
      state: a :class:`GuoState` of an unlearner with ``update="cached"``.
      V: right-hand sides ``(d, K)``.
      lam: the unlearner's mean-scale ``lambda``.
    """
    if state.proj_buf is None:
        raise _validate.ValidationError(
            "state has no cached factor: build the unlearner with update='cached'")
    V = jnp.asarray(V, state.W.dtype).reshape(state.W.shape)
    n = int(jnp.sum(state.mask))
    assert state.buf_count is not None
    kb = cc.bucket(int(state.buf_count), state.proj_buf.shape[1])
    terms = 0
    if state.inv is not None and state.inv_rows is not None:
        terms, _ = cc.neumann_terms_for(int(state.inv_rows), n)
    x: jax.Array = cc.solve(gs.cache_of(state), V, lam, jnp.asarray(float(n), V.dtype), kb=kb,
                            neumann_terms=terms).value
    return x


def _targets(loss: glm.ScalarLoss, y: np.ndarray, num_classes: int | None, *,
             complete: bool = True, name: str = "y") -> np.ndarray:
    """``(n, K)`` targets: :func:`certun._validate.targets` (the one place labels are checked)."""
    return _validate.targets(loss, y, num_classes, complete=complete, name=name)


def certified_removal(*, lam: float, sigma: float, epsilon: float, delta: float,
                      loss: str = "logistic", bound: str = "data_dependent",
                      gamma: float | None = None, train_tol: float = 1e-10,
                      train_method: str = "newton", solve_rtol: float = 1e-12,
                      max_cg_steps: int = 200, refactor_every: int = 0,
                      diagnose: bool = False, auto_retrain: bool = False,
                      update: str = "auto", max_rank: int = 64,
                      refresh_cost_ratio: float | None = 0.25,
                      remeasure: bool | None = None, factor: str | None = None,
                      neumann_terms: int = 2, measure_every: bool | None = None
                      ) -> GuoUnlearner:
    r"""Guo et al. (2020) certified removal for logistic (binary / one-vs-rest) and ridge models.

    Args:
      lam: L2 regularisation ``lambda`` of certun's mean-scale objective (> 0).
      sigma: standard deviation of the objective perturbation ``b`` (> 0). It fixes
        the removal budget ``sigma * epsilon / c``.
      epsilon: the certified-removal ``epsilon`` per released model.
      delta: the certified-removal ``delta`` per released model.
      loss: ``"logistic"`` (binary labels ``+-1`` or class ids for one-vs-rest) or
        ``"squared"`` (ridge; the Newton step is exact).
      bound: residual bound charged to the budget: ``"data_dependent"`` (Guo et
        al.'s data-dependent bound) or ``"worst_case"`` (the corrected worst case).
      gamma: Lipschitz constant of ``l''`` used by the bounds; default Guo et al.'s
        (1/4 logistic, 0 squared). Values below the loss's exact constant
        (``1/(6 sqrt 3)`` for logistic) are refused.
      train_tol: mean-scale gradient-norm tolerance of training (and retraining).
      train_method: ``"newton"`` or ``"lbfgs"``.
      solve_rtol: relative residual target of the CG path.
      max_cg_steps: iteration cap of the CG path.
      refactor_every: re-factorise the curvature at the current model every this
        many requests (0: never; the CG path then uses the initial factorisation).
      diagnose: also compute the true residual ``||grad L_b(w^-; D \ U)||`` (one pass
        over the data) and return it in ``diagnostics``/the certificate's private part.
      auto_retrain: when a request would exceed the budget, retrain on the remaining
        rows with a fresh ``b`` (outcome ``"retrained"``) instead of refusing.
      update: how requests after the first are solved: ``"pcg"`` (PCG on the exact
        Hessian at the current model, ``O(n d)`` per iteration), ``"cached"`` (the
        maintained factorisation, ``O(d^2 + d k)``, charging the staleness of the
        logistic curvature; exact for ridge) or ``"auto"`` (the default: ``"cached"``
        wherever the cache can serve, with ``remeasure`` on for the logistic loss; ``"pcg"``
        for the logistic loss with ``bound="worst_case"``, whose charge the cache cannot
        make). Pin ``"pcg"`` for the exact-Hessian step of Guo et al.'s reference code.
      max_rank: capacity ``k`` of the buffer of removed rows of the cached factor; a
        request that does not fit folds the buffer into the factorisation first.
      refresh_cost_ratio: ``kappa``, a refresh's cost relative to a retrain in the refresh
        policy of ``proofs/cached_factors.md`` §4 (refresh after request ``t`` when
        ``t s_hat - S_t >= kappa * budget``; with ``auto_retrain`` a refresh before a retrain
        only while ``kappa * budget`` is left). ``None``: no policy, that refresh always.
      remeasure: when a request's accumulated bound would exceed the budget, measure the
        stepped model's residual exactly (one gradient, ``O(nd)``, plus its rounding
        allowance) and restart the bound from it (``proofs/guo2020_residual_bounds.md``
        §5a); the next step cancels the measured gradient (§5b). The bounds overestimate the
        residual many times over, so this serves far more requests per ``b``. On the cached
        path the refresh policy is then the renewal rule in measurements
        (:func:`certun.bounds.guo_accountant.refresh_after`). ``None`` (default): on exactly
        when ``update="auto"`` picks the cached factor for the logistic loss.
      factor: the maintained factorisation of ``update="cached"`` (default ``None``:
        ``"cholesky"`` where ``update="auto"`` picks the cache for the logistic loss, ``"eigh"``
        otherwise, e.g. for ridge, whose cached step is then exact): ``"eigh"`` (an
        eigendecomposition absorbs the regulariser's shift exactly; the capacitance is
        rebuilt per request, ``O(d k^2)``; a fold costs an ``O(d^3)`` eigendecomposition) or
        ``"cholesky"`` (the inverse at a fixed shift through a Cholesky factor, a
        capacitance extended by one Cholesky row per removed row, ``O(d k)``, and a Neumann
        series for the shift's drift; a fold updates the inverse by Woodbury, ``O(d^2 k)``,
        and re-inverts, ``O(d^3)`` but ~4x faster than ``eigh``, only when the drift needs
        it). Both measure the step's residual against the stored curvature and charge it
        (``proofs/cached_factors.md`` §5).
      neumann_terms: terms of that series after the first (``factor="cholesky"``): each is
        one pass over the ``d x d`` inverse and divides the solve's error by at least
        ``n_f / t`` (``t`` rows removed since the fold, ``n_f`` present then).
      measure_every: with ``remeasure`` on the logistic cache, measure every request's residual
        (one gradient) instead of charging bounds: no staleness, the measured gradient
        cancelled by each next step (§5b). ``None`` (default): when ``n <= 2 d`` at training
        (:func:`certun.bounds.guo_accountant.measures_every_request`).

    Returns:
      A :class:`GuoUnlearner` (an :class:`~certun.unlearners.base.Unlearner`):
      ``init(X, y, key, num_classes=None, mesh=None)``, ``unlearn(state, indices)``,
      ``params(state)``, ``retrain(state, key=None, same_b=True)``, ``what_if(state,
      candidates)``, ``refresh(state)``.

    Raises:
      ValueError: for invalid hyperparameters (naming the argument), including an
        ``epsilon`` above the range where Guo et al.'s constant ``c`` is valid.
    """
    return _compose(_context(
        lam=lam, sigma=sigma, epsilon=epsilon, delta=delta, loss=loss, bound=bound, gamma=gamma,
        train_tol=train_tol, train_method=train_method, solve_rtol=solve_rtol,
        max_cg_steps=max_cg_steps, refactor_every=refactor_every, diagnose=diagnose,
        auto_retrain=auto_retrain, update=update, max_rank=max_rank,
        refresh_cost_ratio=refresh_cost_ratio, remeasure=remeasure, factor=factor,
        neumann_terms=neumann_terms, measure_every=measure_every))


def _context(*, lam, sigma, epsilon, delta, loss, bound, gamma, train_tol, train_method,
             solve_rtol, max_cg_steps, refactor_every, diagnose, auto_retrain, update, max_rank,
             refresh_cost_ratio, remeasure, factor, neumann_terms, measure_every) -> host.Ctx:
    """Validate :func:`certified_removal`'s arguments into its context (one error per argument)."""
    lam = _validate.positive(lam=lam)
    sigma = _validate.positive(sigma=sigma)
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    lossf = glm.get_loss(_validate.choice(("logistic", "squared"), loss=loss))
    bound = _validate.choice(("data_dependent", "worst_case"), bound=bound)
    _validate.choice(("newton", "lbfgs"), train_method=train_method)
    _validate.integer(refactor_every=refactor_every, minimum=0)
    _validate.positive(train_tol=train_tol)
    update = _validate.choice(UPDATES, update=update)
    auto = update == "auto"
    if auto:
        # the cached factor wherever it can serve; its staleness bound is data-dependent, so
        # the logistic worst case keeps PCG on the exact Hessian
        update = "cached" if lossf.name == "squared" or bound == "data_dependent" else "pcg"
    cached = update == "cached"
    max_rank = _validate.integer(max_rank=max_rank, minimum=1)
    if factor is None:  # the default: the cheaper Cholesky factor on the logistic default path
        factor = "cholesky" if auto and cached and lossf.name == "logistic" else "eigh"
    factor = _validate.choice(("eigh", "cholesky"), factor=factor)
    neumann_terms = _validate.integer(neumann_terms=neumann_terms, minimum=0)
    chol = factor == "cholesky"
    if chol and not cached:
        raise _validate.ValidationError(
            "factor='cholesky' is a factorisation of update='cached'; pass update='cached'")
    for name, v in (("remeasure", remeasure), ("measure_every", measure_every)):
        if v is not None and not isinstance(v, bool):
            raise _validate.ValidationError(
                f"{name} must be True or False (or None: automatic), got {v!r}")
    if remeasure is None:  # the default: the measured-residual restart on the logistic cache
        remeasure = auto and cached and lossf.name == "logistic"
    if measure_every and not (remeasure and cached and lossf.name == "logistic"):
        raise _validate.ValidationError(  # ridge's cached step is exact: nothing to measure
            "measure_every=True measures on the cached path of the logistic loss: pass "
            "update='cached' with remeasure=True (or leave both at their defaults)")
    if refresh_cost_ratio is not None:
        refresh_cost_ratio = _validate.positive(refresh_cost_ratio=refresh_cost_ratio)
    if gamma is None:
        gamma = lossf.gamma_paper
    gamma = _validate.non_negative(gamma=gamma)
    if gamma < lossf.gamma:
        raise _validate.ValidationError(
            f"gamma={gamma} is below the Lipschitz constant of l'' for the {lossf.name} loss "
            f"({lossf.gamma:.6g}); the bound would not hold"
        )
    if cached and bound == "worst_case" and gamma > 0:
        raise _validate.ValidationError(
            "update='cached' charges the data-dependent staleness bound of the stale curvature; "
            "use bound='data_dependent' or update='pcg' with bound='worst_case'")
    eps_max = guo_max_epsilon(dlt)
    if eps > eps_max:
        raise _validate.ValidationError(
            f"epsilon={eps} exceeds {eps_max:.4g}, above which Guo et al.'s c = "
            f"sqrt(2 ln(1.5/delta)) under-noises relative to the exact Gaussian condition; "
            "lower epsilon"
        )
    c = guo_c(dlt)
    budget_total = guo_budget(sigma, eps, dlt)
    # |l'''| <= c l'': the self-concordant route of the cached bound (logistic only)
    sc_const = guo_bounds.LOGISTIC_D3_OVER_D2 if lossf.name == "logistic" else None
    cfg = gs.StepConfig(lossf=lossf, lam=lam, train_method=train_method, train_tol=train_tol,
                        solve_rtol=solve_rtol, max_cg_steps=max_cg_steps, method=factor,
                        neumann_terms=neumann_terms, max_rank=max_rank,
                        refactor_every=refactor_every, reinvert_ratio=(
                            cc.MEASURED_REINVERT_RATIO if remeasure else cc.REINVERT_RATIO))
    acc = ga.GuoAccountant(lam=lam, gamma=gamma, loss_gamma=lossf.gamma, d2_bound=lossf.d2_bound,
                           C=lossf.d1_bound, sc_const=sc_const, bound=bound, cached=cached,
                           budget=budget_total, refresh_cost_ratio=refresh_cost_ratio,
                           remeasure=remeasure)
    steps = gs.make_steps(cfg, acc, _request.request_host, _request.sequence)
    ctx = host.Ctx(cfg=cfg, acc=acc, steps=steps, sigma=sigma, eps=eps, dlt=dlt, c=c,
                   lossf=lossf, update=update, factor=factor, cached=cached,
                   max_rank=max_rank, auto_retrain=auto_retrain, diagnose=diagnose,
                   refactor_every=refactor_every, train_tol=train_tol, train_method=train_method,
                   measure_every=measure_every)
    return ctx


def _compose(ctx: host.Ctx) -> GuoUnlearner:
    """The unlearner's functions over one context (pure: the caller holds the state)."""

    def init(X: Any, y: Any, key: jax.Array, num_classes: int | None = None,
             mesh: jax.sharding.Mesh | None = None) -> GuoState:
        """Draw ``b``, train to ``train_tol`` and build the caches (see module docstring).

        Args:
          X: ``(n, d)`` features with ``||x_i||_2 <= 1`` (use ``certun.data.normalize_rows``).
          y: labels ``+-1`` (binary), class ids (one-vs-rest, with ``num_classes``), or
            real targets (ridge; bounded).
          key: PRNG key for ``b`` (retrain ``j`` uses ``fold_in`` release ``j``).
          num_classes: number of classes for one-vs-rest.
          mesh: optional :class:`jax.sharding.Mesh` (e.g. :func:`certun.sharding.data_mesh`):
            the rows are sharded over its first axis (``n`` must be divisible by its size)
            and training, the curvature, every removal step and retraining run
            data-parallel through ``jax.sharding``.
        """
        if isinstance(X, jax.Array) and X.size >= gs.BLOCKWISE_ELEMENTS:
            return _init_on_device(X, y, key, num_classes, mesh)
        Xn = _validate.unit_rows(X=X, tol=0.0)
        yn = _validate.finite_array(y=y, ndim=(1, 2))
        _validate.matching_rows(X=Xn, y=yn)
        if Xn.shape[0] < 2:
            raise _validate.ValidationError("X needs at least 2 rows")
        Yn = _targets(ctx.lossf, yn, num_classes)
        dtype = jnp.zeros(()).dtype  # float64 when x64 is enabled
        if dtype != jnp.float64:
            raise _validate.ValidationError(
                "certified_removal needs float64: its residual bounds rest on gradients near "
                "1e-10 that float32 cannot resolve; call certun.enable_x64() (or set "
                "JAX_ENABLE_X64=1) before creating arrays")
        Xj, Yj = jnp.asarray(Xn, dtype), jnp.asarray(Yn, dtype)
        mask = jnp.ones(Xn.shape[0], dtype)
        if mesh is not None:
            from certun.sharding import shard_rows

            axis = mesh.axis_names[0]
            Xj, Yj, mask = (shard_rows(a, mesh, axis, name="X") for a in (Xj, Yj, mask))
        return host.train_state(ctx, GuoState, Xj, Yj, key, 0, mask, 0, 0)

    def _init_on_device(X, y, key, num_classes, mesh) -> GuoState:
        # a large X already on the device: validated and reduced there over row blocks, never
        # copied (to the host, to another dtype or to another layout)
        if jnp.zeros(()).dtype != jnp.float64:
            raise _validate.ValidationError(
                "certified_removal needs float64: call certun.enable_x64() first")
        stats = host.validate_device_rows(X)
        yn = _validate.finite_array(y=y, ndim=(1, 2))
        _validate.matching_rows(X=X, y=yn)
        Yj = jnp.asarray(_targets(ctx.lossf, yn, num_classes), jnp.float64)
        mask = jnp.ones(X.shape[0], jnp.float64)
        if mesh is not None:
            from certun.sharding import shard_rows

            axis = mesh.axis_names[0]
            X, Yj, mask = (shard_rows(a, mesh, axis, name="X") for a in (X, Yj, mask))
        return host.train_state(ctx, GuoState, X, Yj, key, 0, mask, 0, 0, on_device=stats)

    def retrain(state: GuoState, key: jax.Array | None = None, same_b: bool = True,
                method: str | None = None) -> Any:
        """Exact retraining on the remaining rows from zero (the baseline).

        With ``same_b`` (default) the retrained model uses the same ``b``, so it is the
        model certified removal is indistinguishable from; otherwise a fresh ``b``
        drawn with ``key``. Returns a :class:`~certun.models.fit.FitResult` whose ``params``
        has the shape of ``params(state)`` (``(d,)`` for one head).
        """
        b = state.b
        if not same_b:
            if key is None:
                raise _validate.ValidationError("key is required when same_b=False")
            b = host.objective_perturbation(key, state.b.shape, ctx.sigma, state.X.dtype)
        d, K = state.W.shape
        if method is None:
            fr = ctx.steps.train(state.X, state.Y, b, state.mask,
                                 jnp.zeros((d, K), state.X.dtype))
        else:
            fr = glm.fit(ctx.lossf, state.X, state.Y, ctx.cfg.lam, b, state.mask,
                         method=method, tol=ctx.train_tol)
        return fr._replace(params=published_view(fr.params))

    return GuoUnlearner(init=init, unlearn=_Unlearn(ctx), params=params, retrain=retrain)


class _Unlearn:
    """``unlearn`` of :func:`certified_removal` (a callable) with its companion operations.

    Holds only the unlearner's immutable context; the caller holds every state.
    """

    def __init__(self, ctx: host.Ctx) -> None:
        self.ctx = ctx

    def __call__(self, state: GuoState, indices: Any, key: jax.Array | None = None
                 ) -> UnlearnResult:
        """Remove the training rows ``indices`` (positions in the original training set).

        Returns an :class:`~certun.unlearners.base.UnlearnResult`; when the request
        would exceed the budget (or the Newton system cannot be solved), ``params``
        is ``None``, the state is unchanged and the certificate says why (unless
        ``auto_retrain``, which retrains on the remaining rows with a fresh ``b``).
        ``key`` is unused (the mechanism's noise is ``b``, drawn at training). Host work
        is ``O(m)`` (the indices' range and repeats; whether each row is still present is
        checked by the jitted request, which refuses a removed row before anything changes).

        """
        del key
        t0 = time.perf_counter()
        host.check_kind(self.ctx, state)
        idx_np = _validate.forget_indices(indices, int(state.X.shape[0]))
        return host.serve(self.ctx, state, idx_np, t0)

    def what_if(self, state: GuoState, candidates: Any) -> WhatIf:
        """See :meth:`GuoUnlearner.what_if`."""
        return host.what_if(self.ctx, state, candidates, WhatIf)

    def refresh(self, state: GuoState) -> GuoState:
        """See :meth:`GuoUnlearner.refresh`."""
        return host.refresh(self.ctx, state)

    def fold(self, state: GuoState) -> GuoState:
        """See :meth:`GuoUnlearner.fold`."""
        return host.fold(self.ctx, state)

    def warmup(self, state: GuoState) -> float:
        """See :meth:`GuoUnlearner.warmup`."""
        return host.warmup(self.ctx, state)

    def sequence(self, state: GuoState, requests: Any) -> Any:
        """See :meth:`GuoUnlearner.unlearn_sequence`."""
        return _sequence.serve_sequence(self.ctx, state, requests)


def _ops(unl: GuoUnlearner) -> _Unlearn:
    return cast(_Unlearn, unl.unlearn)
