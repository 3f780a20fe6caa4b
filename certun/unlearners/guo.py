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

**Cost.** ``init`` forms ``X^T X`` (for ``||X_rem delta||`` and a guaranteed bound on
``||X||_2``) and the eigendecomposition of each head's curvature ``X^T D X`` at the
trained model. The first request after a factorisation is then solved exactly in
``O(d^2 m)``: the regulariser's shift ``lambda (n - m) I`` is absorbed by the eigenvalues
and the removed rows by Woodbury. Later requests (the model has moved, so the
curvature has) run preconditioned CG on the exact Hessian-vector product of the
remaining data at the current model, with that factorisation as the
preconditioner (``O(nd)`` per iteration, a handful of iterations), and fold the
achieved residual into the bound; ``refactor_every`` re-factorises at the current
model every so many requests.

**Cached factors** (``update="cached"``, the default for the squared loss). Every
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
(``proofs/guo2020_residual_bounds.md`` §5a).
:meth:`GuoUnlearner.what_if` evaluates the budget each of many candidate removals would
consume in one vmapped call.

**Threat covered.** Indistinguishability from retraining. This does **not** hide a
deletion from someone who sees the model before and after: ``b`` is shared by
both versions and cancels in their difference (use a private release for that).

Reference: C. Guo, T. Goldstein, A. Hannun, L. van der Maaten, "Certified Data
Removal from Machine Learning Models", ICML 2020, arXiv:1911.03030.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from certun import _validate
from certun.accounting.gaussian import guo_budget, guo_c, guo_max_epsilon
from certun.bounds import guo as guo_bounds
from certun.certificate import Budget, check, make_certificate, verified
from certun.models import glm
from certun.primitives.noise import objective_perturbation
from certun.primitives.solvers import eigh_solve, pcg
from certun.primitives.spectral import UNIT_ROUNDOFF, spectral_norm_upper_bound
from certun.results import RESULTS
from certun.results import message as result_message
from certun.unlearners.base import Unlearner, UnlearnResult

__all__ = ["GuoState", "GuoUnlearner", "WhatIf", "certified_removal", "cached_factor_solve",
           "MECHANISM", "UPDATES"]

UPDATES = ("auto", "pcg", "cached")

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


class WhatIf(NamedTuple):
    """Budget that each of several candidate single-row removals would consume.

    Attributes:
      indices: the candidate rows (original positions), in the order given.
      charge: what removing that row alone (next request, from this state) would add
        to the residual bound (remainder bound + staleness + solve residual + rounding).
      used_after: ``residual_bound + charge``.
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
        """The budget each candidate single-row removal would consume, in one vmapped call."""
        return self.unlearn.what_if(state, candidates)

    def refresh(self, state: GuoState) -> GuoState:
        """Re-factorise the curvature at the current model on the remaining rows."""
        return self.unlearn.refresh(state)

    def warmup(self, state: GuoState) -> float:
        """Compile every step single-row requests can take, before the first request (seconds)."""
        return self.unlearn.warmup(state)

    def fold(self, state: GuoState) -> GuoState:
        """Fold the cached buffer of removed rows into the factorisation (same point, no pass).

        Afterwards ``rows_buf``, ``h_buf``, ``proj_buf`` are zero, ``cap_buf`` the identity,
        and ``gram``, ``curv`` and the factor (``eigvecs``/``eigvals`` or ``inv``) exclude the
        removed rows; ``W_factor`` and the staleness accounting are unchanged
        (``proofs/cached_factors.md``). Needs ``update="cached"``.
        """
        return self.unlearn.fold(state)


def _bucket(k: int, cap: int) -> int:
    """Static width of the capacitance: the smallest power of two >= ``k``, 32 to ``cap``.

    Few widths, few compilations (:meth:`GuoUnlearner.warmup` compiles them all); below 32
    rows the ``O(d k^2)`` capacitance costs less than one ``O(d^2)`` pass anyway.
    """
    b = 32
    while b < k:
        b *= 2
    return min(b, cap)


def _eig_woodbury(eigvals: jax.Array, Pm: jax.Array, shift: jax.Array, y: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
    """Solve ``(diag(eigvals + shift) - Pm^T Pm) x = y`` in eigen-coordinates.

    Woodbury with ``D = diag(1 / (eigvals + shift))`` and the ``k x k`` capacitance
    ``C = I - Pm D Pm^T``: ``x = D (y + Pm^T C^{-1} Pm D y)``, ``O(d k^2 + k^3)``. By
    Haynsworth's inertia formula the matrix is PD exactly when ``C`` is, which the
    Cholesky factorisation of ``C`` tests (zero rows of ``Pm``, unused buffer slots,
    leave ``C`` the identity there). Returns ``(x, pd_ok)``.
    """
    ws = eigvals + shift
    pd = jnp.all(ws > 0)
    dinv = 1.0 / jnp.where(ws > 0, ws, 1.0)
    C = jnp.eye(Pm.shape[0], dtype=y.dtype) - jnp.einsum("cd,ed->ce", Pm * dinv[None, :], Pm)
    L = jnp.linalg.cholesky(0.5 * (C + C.T))
    ok = pd & jnp.all(jnp.isfinite(L))
    z = jax.scipy.linalg.cho_solve((L, True), Pm @ (dinv * y))
    return dinv * (y + jnp.einsum("c,cd->d", z, Pm)), ok


#: ``remeasure=True`` on the cached path: refresh after a measurement that leaves room for
#: fewer than this many requests at the current charge (a measurement costs one gradient, a
#: refresh ~50 of them at n = 12,000, d = 784: refreshing pays once they come this often).
_REMEASURE_ROOM = 8

#: ``factor="cholesky"``: a fold updates the inverse by Woodbury at its shift while the
#: rows removed since it was inverted, plus a full buffer, stay within this fraction of the
#: rows then (the Neumann ratio ``q``; ``proofs/cached_factors.md`` §5); else it re-inverts.
_REINVERT_RATIO = 0.05


def _chol_inverse(A: jax.Array) -> jax.Array:
    """``A^{-1}`` of a symmetric matrix through its Cholesky factor (NaN where not PD)."""
    L = jnp.linalg.cholesky(0.5 * (A + A.T))
    Ainv = jax.scipy.linalg.cho_solve((L, True), jnp.eye(A.shape[-1], dtype=A.dtype))
    return 0.5 * (Ainv + Ainv.T)


def _chol_apply(Bv: jax.Array, v: jax.Array, Yk: jax.Array, Lk: jax.Array) -> jax.Array:
    """``T_0^{-1} v = B v + Y^T C^{-1} (Y v)``: Woodbury on the fixed-shift inverse ``B``.

    ``T_0 = B^{-1} - P^T P`` (the buffered rows ``P``), ``Y = P B`` (rows ``B p_j``) and
    ``C = I - P B P^T = L L^T`` (``proofs/cached_factors.md`` §5); ``O(d k + k^2)``.
    """
    return Bv + jax.scipy.linalg.cho_solve((Lk, True), Yk @ v) @ Yk


def _chol_neumann(B: jax.Array, Yk: jax.Array, Lk: jax.Array, mu: jax.Array, v: jax.Array,
                  Bv: jax.Array, terms: int) -> jax.Array:
    """``(T_0 - mu I)^{-1} v`` by the Neumann series ``sum_{j <= terms} mu^j T_0^{-(j+1)} v``.

    The regulariser's shift moves by ``lambda`` per removed row while ``B`` is fixed between
    folds: ``mu = lambda t`` for the ``t`` rows removed since. The series converges with
    ratio ``mu ||T_0^{-1}|| <= t / n_f``; its truncation error is part of the measured
    residual (``proofs/cached_factors.md`` §5). ``terms`` passes over ``B`` (static).
    """
    e = _chol_apply(Bv, v, Yk, Lk)
    x = e
    for _ in range(terms):
        e = mu * _chol_apply(e @ B, e, Yk, Lk)  # B is symmetric: e @ B = B e
        x = x + e
    return x


def cached_factor_solve(state: GuoState, V: Any, lam: float) -> jax.Array:
    """Solve with the maintained factor of a ``update="cached"`` state, per head.

    Solves ``(curv_k - sum_{j in buffer} h_jk x_j x_j^T + lam n I) x_k = v_k`` with
    ``n`` the rows still present, i.e. the sum-scale Hessian of the **remaining** rows
    at the factorisation point ``W_factor`` (regulariser included), using only the
    maintained factor: the eigendecomposition and the Woodbury capacitance, or with
    ``factor="cholesky"`` the fixed-shift inverse, its capacitance and the Neumann series
    summed to relative error ``1e-17`` (``proofs/cached_factors.md`` §5).

    Args:
      state: a :class:`GuoState` of an unlearner with ``update="cached"``.
      V: right-hand sides ``(d, K)``.
      lam: the unlearner's mean-scale ``lambda``.
    """
    if state.proj_buf is None:
        raise _validate.ValidationError(
            "state has no cached factor: build the unlearner with update='cached'")
    V = jnp.asarray(V, state.W.dtype).reshape(state.W.shape)
    shift = lam * jnp.sum(state.mask)
    kb = _bucket(int(state.buf_count), state.proj_buf.shape[1])
    if state.inv is not None:
        # factor="cholesky": the Neumann series in the shift, to relative error <= 1e-17.
        # Its ratio is q <= t / n_f (t rows removed since the inversion at n_f rows;
        # proofs/cached_factors.md §5), and J terms after the first leave q^(J+1) / (1 - q)
        n_f, n = int(state.inv_rows), float(jnp.sum(state.mask))
        q = (n_f - n) / n_f
        terms = 0 if q <= 0 else max(0, math.ceil(math.log(1e-17 * (1 - q)) / math.log(q)) - 1)
        mu = lam * (n_f - n)
        return jnp.stack([
            _chol_neumann(state.inv[j], state.proj_buf[j, :kb], state.cap_buf[j, :kb, :kb], mu,
                          V[:, j], state.inv[j] @ V[:, j], terms)
            for j in range(V.shape[1])], axis=1)

    def head(lam_k, Q, P, v):
        x, _ = _eig_woodbury(lam_k, P[:kb], shift, v @ Q)
        return Q @ x

    return jax.vmap(head, in_axes=(0, 0, 0, 1), out_axes=1)(
        state.eigvals, state.eigvecs, state.proj_buf, V)


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
                      update: str = "auto", max_rank: int = 128,
                      refresh_cost_ratio: float | None = 0.25,
                      remeasure: bool = False, factor: str = "eigh",
                      neumann_terms: int = 2) -> GuoUnlearner:
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
        logistic curvature; exact for ridge) or ``"auto"`` (``"cached"`` for the
        squared loss, ``"pcg"`` for logistic).
      max_rank: capacity ``k`` of the buffer of removed rows of the cached factor; a
        request that does not fit folds the buffer into the factorisation first.
      refresh_cost_ratio: cost of a refresh relative to a retrain, ``kappa`` in the
        refresh policy of ``proofs/cached_factors.md``: refresh after request ``t`` since
        the last refresh when ``t s_hat - S_t >= kappa * budget``, ``S_t`` the staleness
        charged since, ``s_hat = S_t D_t / sum_{j<=t} D_j`` the next request's expected
        staleness (``D_j = ||X_rem (w - w_f)||``, the drift); with ``auto_retrain`` a
        refresh before a retrain is tried only while the budget left is at least
        ``kappa * budget``. ``None`` disables the policy (and tries that refresh always).
      remeasure: when a request's accumulated bound would exceed the budget, first measure
        the residual of the stepped model exactly, ``||grad L_b(w^-; D \ U)||`` plus its
        rounding allowance (one gradient over the remaining rows, ``O(nd)``), and restart the
        accumulated bound from it (``proofs/guo2020_residual_bounds.md`` §5a). The bounds
        overestimate the residual many times over, so this serves far more requests per
        ``b`` (fewer retrains). With ``update="cached"`` it also replaces the refresh policy:
        budget the staleness bound spends is won back by the next measurement, so the
        factorisation is refreshed only before a request that a stale step cannot serve.
      factor: the maintained factorisation of ``update="cached"``: ``"eigh"`` (an
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

    Returns:
      A :class:`GuoUnlearner` (an :class:`~certun.unlearners.base.Unlearner`):
      ``init(X, y, key, num_classes=None, mesh=None)``, ``unlearn(state, indices)``,
      ``params(state)``, ``retrain(state, key=None, same_b=True)``, ``what_if(state,
      candidates)``, ``refresh(state)``.

    Raises:
      ValueError: for invalid hyperparameters (naming the argument), including an
        ``epsilon`` above the range where Guo et al.'s constant ``c`` is valid.
    """
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
    if update == "auto":
        update = "cached" if lossf.name == "squared" else "pcg"
    cached = update == "cached"
    max_rank = _validate.integer(max_rank=max_rank, minimum=1)
    factor = _validate.choice(("eigh", "cholesky"), factor=factor)
    neumann_terms = _validate.integer(neumann_terms=neumann_terms, minimum=0)
    chol = factor == "cholesky"
    if chol and not cached:
        raise _validate.ValidationError(
            "factor='cholesky' is a factorisation of update='cached'; pass update='cached'")
    if not isinstance(remeasure, bool):
        raise _validate.ValidationError(f"remeasure must be True or False, got {remeasure!r}")
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
    C = lossf.d1_bound  # None for squared loss (gamma = 0 there, so C is not needed)
    # |l'''| <= c l'': the self-concordant route of the cached bound (logistic only)
    sc_const = guo_bounds.LOGISTIC_D3_OVER_D2 if lossf.name == "logistic" else None

    # ------------------------------------------------------------ jitted cores
    @jax.jit
    def _train(X, Y, b, mask, W0):
        return glm.fit(lossf, X, Y, lam, b, mask, W0, method=train_method, tol=train_tol)

    @jax.jit
    def _grad_sum(W, X, Y, b, mask):
        g = glm.gradient_sum(lossf, W, X, Y, lam, b, mask)
        a = X @ W
        m = mask[:, None]
        # magnitude of the summed terms, for the rounding allowance of ||g||
        row_norms = jnp.linalg.norm(X, axis=1)
        mag = (jnp.sum(jnp.abs(m * lossf.d1(a, Y)) * row_norms[:, None])
               + lam * jnp.sum(mask) * jnp.linalg.norm(W) + jnp.linalg.norm(b))
        # the margins x_i^T w carry an error <= gamma_d ||x_i|| ||w||, which moves l' by at
        # most l''_max times that: sum_i l''_max ||x_i|| ||w||_F bounds its effect on g
        margin = lossf.d2_bound * jnp.linalg.norm(W) * jnp.sum(mask * row_norms)
        return jnp.stack([jnp.linalg.norm(g), mag, margin, jnp.sum(mask)])

    @jax.jit
    def _factor(W, X, Y, mask):
        G = glm.curvature_gram(lossf, W, X, Y, mask)
        w, Q = jax.vmap(jnp.linalg.eigh)(G)
        return G, w, Q

    def _shifted_inverse(curv, n):
        # factor="cholesky": (curv_k + lam n I)^{-1} per head
        eye = jnp.eye(curv.shape[-1], dtype=curv.dtype)
        return jax.vmap(_chol_inverse)(curv + (lam * n) * eye)

    @jax.jit
    def _factor_inv(W, X, Y, mask):
        G = glm.curvature_gram(lossf, W, X, Y, mask)
        n = jnp.sum(mask)
        return G, _shifted_inverse(G, n), n.astype(jnp.int32)

    def _factorise(W, X, Y, mask) -> dict:
        """The factorisation fields of a state made at ``W`` on the rows of ``mask``."""
        if chol:
            G, inv, n = _factor_inv(W, X, Y, mask)
            return dict(curv=G, eigvals=None, eigvecs=None, inv=inv, inv_rows=n)
        G, w, Q = _factor(W, X, Y, mask)
        return dict(curv=G, eigvals=w, eigvecs=Q)

    def _step_common(state, idx):
        X, Y, W = state.X, state.Y, state.W
        m = idx.shape[0]
        xu, yu = X[idx], Y[idx]
        mask_new = state.mask.at[idx].set(0.0)
        n_prev = jnp.sum(state.mask)
        n_rem = n_prev - m
        Delta = xu.T @ lossf.d1(xu @ W, yu) + m * lam * W  # (d, K)
        h_f = lossf.d2(xu @ state.W_factor, yu)  # (m, K) curvature of removed rows at factor point
        shift = lam * n_rem

        def precond_head(k_vals, k_vecs, r, h):
            x, pd = eigh_solve(k_vals, k_vecs, r, shift, (xu.T, -h))
            return x, pd

        return xu, yu, mask_new, n_prev, n_rem, Delta, h_f, shift, precond_head

    # the small outputs of a step travel to the host as one vector (one transfer)
    _PER_HEAD = ("delta_norms", "Delta_norms", "x_delta_sq", "u_norms", "x_u_sq", "a_delta_sq",
                 "a_u_sq", "w_norms")

    def _pack(small: dict, K: int) -> jax.Array:
        dt = small["delta_norms"].dtype
        zeros = jnp.zeros(K, dt)
        parts = [jnp.ravel(small.get(k, zeros)).astype(dt) for k in _PER_HEAD]
        parts += [jnp.ravel(jnp.asarray(small[k])).astype(dt)
                  for k in ("solver_residual", "code", "steps")]
        return jnp.concatenate(parts)

    def _unpack(v: Any, K: int) -> dict:
        v = np.asarray(v, np.float64)
        out = {k: v[i * K:(i + 1) * K] for i, k in enumerate(_PER_HEAD)}
        n = len(_PER_HEAD) * K
        out.update(solver_residual=float(v[n]), code=int(v[n + 1]), steps=int(v[n + 2]))
        return out

    def _w_norms(W, W_f):
        # max(||w_k||, ||w_f,k||) per head: margins x^T w are computed with error
        # <= gamma_d ||w||, which the rounding allowance of the step covers
        return jnp.maximum(jnp.linalg.norm(W, axis=0), jnp.linalg.norm(W_f, axis=0))

    def _finish(state, idx, xu, delta, Delta, mask_new, solver_res, code, steps):
        gram_new = state.gram - xu.T @ xu
        # ||X_rem delta_k||^2 = delta^T G delta - ||X_U delta||^2 (no d x d temporary per head,
        # so that what-if queries can vmap this over candidates)
        qf = (jnp.einsum("jk,jl,lk->k", delta, state.gram, delta)
              - jnp.sum(jnp.square(xu @ delta), axis=0))
        W_new = state.W + delta
        small = dict(
            delta_norms=jnp.linalg.norm(delta, axis=0), Delta_norms=jnp.linalg.norm(Delta, axis=0),
            x_delta_sq=qf, w_norms=_w_norms(state.W, state.W_factor),
            solver_residual=solver_res, code=code, steps=steps,
        )
        big = dict(W_new=W_new, mask_new=mask_new, gram_new=gram_new,
                   params=W_new[:, 0] if W_new.shape[1] == 1 else W_new,
                   n_removed=state.n_removed + idx.shape[0], requests=state.requests + 1,
                   steps_since_factor=state.steps_since_factor + 1)
        return _pack(small, W_new.shape[1]), big

    @jax.jit
    def _exact_step(state, idx):
        xu, yu, mask_new, n_prev, n_rem, Delta, h_f, shift, _ = _step_common(state, idx)

        def head(G, w, Q, dk, hk):
            x, pd = eigh_solve(w, Q, dk, shift, (xu.T, -hk))
            res = G @ x + shift * x - xu.T @ (hk * (xu @ x)) - dk
            return x, pd, jnp.linalg.norm(res)

        delta, pd, res = jax.vmap(head, in_axes=(0, 0, 0, 1, 1), out_axes=(1, 0, 0))(
            state.curv, state.eigvals, state.eigvecs, Delta, h_f)
        code = jnp.where(jnp.all(pd), jnp.int32(RESULTS.successful),
                         jnp.int32(RESULTS.not_positive_definite))
        code = jnp.where(jnp.all(jnp.isfinite(delta)), code, jnp.int32(RESULTS.nonfinite))
        return _finish(state, idx, xu, delta, Delta, mask_new, jnp.linalg.norm(res), code,
                       jnp.int32(0))

    @jax.jit
    def _cg_step(state, idx):
        xu, yu, mask_new, n_prev, n_rem, Delta, h_f, shift, precond_head = _step_common(state, idx)
        X, Y, W = state.X, state.Y, state.W

        def mv(V):
            return glm.hvp_sum(lossf, W, V, X, Y, lam, mask_new)

        def precond(R):
            x, _ = jax.vmap(precond_head, in_axes=(0, 0, 1, 1), out_axes=(1, 0))(
                state.eigvals, state.eigvecs, R, h_f)
            return x

        sol = pcg(mv, Delta, precond=precond, x0=precond(Delta), rtol=solve_rtol,
                  max_steps=max_cg_steps)
        return _finish(state, idx, xu, sol.value, Delta, mask_new, sol.residual_norm, sol.result,
                       sol.num_steps)

    @jax.jit
    def _true_residual(W, X, Y, b, mask):
        return jnp.linalg.norm(glm.gradient_sum(lossf, W, X, Y, lam, b, mask))

    def _cached_core(state, idx, kb):
        """One request on the maintained factor: four ``O(d^2)`` passes plus ``O(d k^2)``.

        The matrix solved is ``T = curv - sum_{j in buffer + idx} h_j x_j x_j^T + lam n_rem I``
        (the curvature at ``W_factor`` of the remaining rows, regulariser included):
        eigen-coordinates absorb the shift and :func:`_eig_woodbury` the removed rows
        (the first ``kb`` buffer slots, ``kb`` static). The residual is measured against
        ``T`` formed from the stored ``curv``. Passes per head: one over ``Q`` for
        ``Q^T Delta`` and ``Q^T x_j`` together, one for ``Q x``, one over ``curv`` for
        ``curv delta`` and ``curv u`` together (the residual and ``delta^T A' delta``,
        ``u^T A' u`` of the self-concordant bound), and one over the Gram matrix for
        ``||X_rem delta||`` and ``||X_rem u||`` (shared by the heads). Several vectors go
        through a matrix as the rows of one product: on XLA:CPU that costs one pass.
        With ``factor="cholesky"`` only the solve differs (:func:`_chol_neumann`: ``1 + J``
        passes over the inverse instead of the two over ``Q``, and an ``O(d k)`` capacitance
        extension instead of the ``O(d k^2)`` rebuild); the measurement is shared.
        """
        X, Y, W = state.X, state.Y, state.W
        m = idx.shape[0]
        xu, yu = X[idx], Y[idx]
        mask_new = state.mask.at[idx].set(0.0)
        n_rem = jnp.sum(state.mask) - m
        Delta = xu.T @ lossf.d1(xu @ W, yu) + m * lam * W  # (d, K)
        h_new = lossf.d2(xu @ state.W_factor, yu)  # (m, K) at the factorisation point
        k = state.buf_count
        zero = jnp.int32(0)
        rows = lax.dynamic_update_slice(state.rows_buf, xu, (k, zero))
        hbuf = lax.dynamic_update_slice(state.h_buf, h_new, (k, zero))
        rows_k = rows[:kb]
        shift = lam * n_rem
        U = W - state.W_factor  # (d, K)
        K = W.shape[1]

        # factor="cholesky": the inverse's shift minus the shift now (rows removed since it)
        mu = lam * (state.inv_rows - n_rem) if chol else None

        def solve_eigh(Q, lam_k, P, dk, hk_new, hk):
            del hk
            yq = jnp.concatenate([dk[None, :], xu], axis=0) @ Q  # rows: Q^T Delta_k, Q^T x_j
            P = lax.dynamic_update_slice(P, yq[1:] * jnp.sqrt(hk_new)[:, None], (k, zero))
            xt, ok = _eig_woodbury(lam_k, P[:kb], shift, yq[0])
            return Q @ xt, (P,), ok

        def solve_chol(B, Yb, Lc, dk, hk_new, hk):
            # one pass over B for B Delta_k and B x_j; the capacitance C = I - P B P^T of the
            # buffered rows P (rows sqrt(h_j) x_j) gains the new rows' Cholesky rows
            BV = jnp.concatenate([dk[None, :], xu], axis=0) @ B
            y_new = BV[1:] * jnp.sqrt(hk_new)[:, None]  # rows B p_j of the new rows
            Yb = lax.dynamic_update_slice(Yb, y_new, (k, zero))
            Yk = Yb[:kb]
            Pk = rows_k * jnp.sqrt(hk[:kb])[:, None]
            col = Pk @ y_new.T  # (kb, m): p_i^T B p_j
            old = (jnp.arange(kb) < k)[:, None]
            Z = jax.scipy.linalg.solve_triangular(Lc[:kb, :kb], jnp.where(old, -col, 0.0),
                                                  lower=True)
            C22 = jnp.eye(m, dtype=dk.dtype) - lax.dynamic_slice(col, (k, zero), (m, m))
            L22 = jnp.linalg.cholesky(0.5 * (C22 + C22.T) - Z.T @ Z)
            Lc = lax.dynamic_update_slice(Lc, lax.dynamic_update_slice(Z.T, L22, (zero, k)),
                                          (k, zero))
            ok = jnp.all(jnp.isfinite(L22)) & jnp.all(jnp.diagonal(L22) > 0)
            return _chol_neumann(B, Yk, Lc[:kb, :kb], mu, dk, BV[0], neumann_terms), (Yb, Lc), ok

        solve = solve_chol if chol else solve_eigh

        def head(fac, A, dk, hk_new, hk, uk):
            dlt, bufs, ok = solve(*fac, dk, hk_new, hk)
            # what is certified is measured against the stored curvature, whatever the solve
            Adu = jnp.stack([dlt, uk]) @ A  # rows: curv^T delta, curv^T u
            bd, bu = rows_k @ dlt, rows_k @ uk
            hb = hk[:kb]
            Ad = Adu[0] - (hb * bd) @ rows_k  # A' delta, A' the curvature of the remaining rows
            res = Ad + shift * dlt - dk
            return (dlt, bufs, ok, jnp.sum(res * res), dlt @ Ad,
                    uk @ Adu[1] - jnp.sum(hb * bu * bu), jnp.sum(bd * bd), jnp.sum(bu * bu))

        fac = ((state.inv, state.proj_buf, state.cap_buf) if chol
               else (state.eigvecs, state.eigvals, state.proj_buf))
        args = (fac, state.curv, Delta.T, h_new.T, hbuf.T, U.T)
        if K <= 2:  # unrolled: matrix-vector passes (XLA:CPU's thin GEMMs are slower)
            outs = [head(*jax.tree.map(lambda a, j=j: a[j], args)) for j in range(K)]
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
        else:  # one-vs-rest: vmapped over heads
            stacked = jax.vmap(head)(*args)
        dT, bufs, oks, res2, a_dd, a_uu, bdd, buu = stacked
        delta = dT.T
        proj, caps = bufs[0], (bufs[1] if chol else None)
        res = jnp.sqrt(jnp.sum(res2))
        # ||X_rem v||^2 = v^T G_f v - ||X_R v||^2 for v = delta_k and u_k (one pass over G_f)
        GV = jnp.concatenate([delta.T, U.T], axis=0) @ state.gram  # (2K, d)
        qd = jnp.sum(GV[:K] * delta.T, axis=1) - bdd
        qu = jnp.sum(GV[K:] * U.T, axis=1) - buu
        code = jnp.where(jnp.all(oks), jnp.int32(RESULTS.successful),
                         jnp.int32(RESULTS.not_positive_definite))
        code = jnp.where(jnp.all(jnp.isfinite(delta)) & jnp.isfinite(res), code,
                         jnp.int32(RESULTS.nonfinite))
        W_new = W + delta
        small = dict(
            delta_norms=jnp.linalg.norm(delta, axis=0), Delta_norms=jnp.linalg.norm(Delta, axis=0),
            x_delta_sq=qd, u_norms=jnp.linalg.norm(U, axis=0), x_u_sq=qu,
            a_delta_sq=a_dd, a_u_sq=a_uu, w_norms=_w_norms(W, state.W_factor),
            solver_residual=res, code=code, steps=jnp.int32(0),
        )
        big = dict(W_new=W_new, mask_new=mask_new, rows_buf=rows, h_buf=hbuf,
                   proj_buf=proj, buf_count=k + m, cap_buf=caps,
                   params=W_new[:, 0] if W_new.shape[1] == 1 else W_new,
                   n_removed=state.n_removed + m, requests=state.requests + 1,
                   steps_since_factor=state.steps_since_factor + 1)
        return _pack(small, W_new.shape[1]), big

    _cached_step = jax.jit(_cached_core, static_argnums=2)

    @jax.jit
    def _fresh_step(state, idx):
        """A request larger than the buffer: the exact Newton step at the current model.

        Factorises the curvature of the remaining rows at the current model
        (``O(n d^2 + d^3)``) and steps with it.
        """
        X, Y, W = state.X, state.Y, state.W
        m = idx.shape[0]
        xu, yu = X[idx], Y[idx]
        mask_new = state.mask.at[idx].set(0.0)
        shift = lam * (jnp.sum(state.mask) - m)
        Delta = xu.T @ lossf.d1(xu @ W, yu) + m * lam * W
        if chol:
            G = glm.curvature_gram(lossf, W, X, Y, mask_new)
            inv = _shifted_inverse(G, jnp.sum(mask_new))
            inv_rows = jnp.sum(mask_new).astype(jnp.int32)
            pd = jnp.all(jnp.isfinite(inv))
            delta = jnp.einsum("kde,ek->dk", inv, Delta)
            w = Q = None
        else:
            G, w, Q = _factor(W, X, Y, mask_new)
            inv = inv_rows = None
            ws = w + shift
            pd = jnp.all(ws > 0)
            delta = jnp.einsum("kdi,ki->dk", Q, jnp.einsum("dk,kdi->ki", Delta, Q)
                               / jnp.where(ws > 0, ws, 1.0))
        Gd = jnp.einsum("kde,ek->dk", G, delta)
        res = Gd + shift * delta - Delta
        gram_new = state.gram - xu.T @ xu
        K = W.shape[1]
        qd = jnp.sum(delta * (gram_new @ delta), axis=0)
        code = jnp.where(pd, jnp.int32(RESULTS.successful),
                         jnp.int32(RESULTS.not_positive_definite))
        code = jnp.where(jnp.all(jnp.isfinite(delta)), code, jnp.int32(RESULTS.nonfinite))
        W_new = W + delta
        small = dict(delta_norms=jnp.linalg.norm(delta, axis=0),
                     Delta_norms=jnp.linalg.norm(Delta, axis=0), x_delta_sq=qd,
                     u_norms=jnp.zeros(K), x_u_sq=jnp.zeros(K),
                     a_delta_sq=jnp.sum(delta * Gd, axis=0), a_u_sq=jnp.zeros(K),
                     w_norms=_w_norms(W, W), solver_residual=jnp.linalg.norm(res), code=code,
                     steps=jnp.int32(0))
        big = dict(W_new=W_new, mask_new=mask_new, params=W_new[:, 0] if K == 1 else W_new,
                   n_removed=state.n_removed + m, requests=state.requests + 1,
                   curv=G, eigvals=w, eigvecs=Q, inv=inv, inv_rows=inv_rows, gram_new=gram_new,
                   steps_since_factor=jnp.asarray(1, jnp.int32))
        return _pack(small, W_new.shape[1]), big

    @jax.jit
    def _fold(state):
        """Fold the buffered rows into the factorisation at the same point (no data pass)."""
        R = state.rows_buf
        curv = state.curv - jnp.einsum("ck,cd,ce->kde", state.h_buf, R, R)
        curv = 0.5 * (curv + jnp.swapaxes(curv, 1, 2))
        gram = state.gram - jnp.einsum("cd,ce->de", R, R)
        if chol:
            # Woodbury at the inverse's shift, O(d^2 k), while the drift the next buffer can
            # reach keeps the Neumann ratio <= _REINVERT_RATIO; else invert afresh, O(d^3)
            n = jnp.sum(state.mask)
            drift = state.inv_rows - n

            def woodbury(_):
                def head(B, Y, L):
                    Bn = B + Y.T @ jax.scipy.linalg.cho_solve((L, True), Y)
                    return 0.5 * (Bn + Bn.T)
                return jax.vmap(head)(state.inv, state.proj_buf, state.cap_buf), state.inv_rows

            def reinvert(_):
                return _shifted_inverse(curv, n), n.astype(jnp.int32)

            inv, inv_rows = lax.cond(drift + max_rank <= _REINVERT_RATIO * state.inv_rows,
                                     woodbury, reinvert, None)
            return dict(curv=curv, inv=inv, inv_rows=inv_rows), gram
        w, Q = jax.vmap(jnp.linalg.eigh)(curv)
        return dict(curv=curv, eigvals=w, eigvecs=Q), gram

    @jax.jit
    def _scalars(v):
        # float64 state scalars from one host vector: one transfer, one dispatch (several
        # jax.device_put calls cost ~10x more on the request path)
        return tuple(v[i] for i in range(v.shape[0]))

    @jax.jit
    def _downdate_gram(gram, rows):
        return gram - jnp.einsum("cd,ce->de", rows, rows)

    def _batched(core, *static):
        # what-if queries: the small outputs of ``core`` for every candidate row (vmapped;
        # the big outputs are dead code for XLA)
        return jax.jit(jax.vmap(lambda st, i: core(st, i, *static)[0], in_axes=(None, 0)))

    _what_if_fns = {"exact": _batched(_exact_step), "pcg": _batched(_cg_step)}

    def _what_if_cached(kb):
        if kb not in _what_if_fns:
            _what_if_fns[kb] = _batched(_cached_core, kb)
        return _what_if_fns[kb]

    # ------------------------------------------------------------ host helpers
    def _grad_allowance(n: float, d: int, mag: float) -> float:
        return (n + d + 2) * UNIT_ROUNDOFF * mag

    def _measured_residual(W, X, Y, b, mask) -> float:
        """``||grad L_b(W; rows of mask)||`` (sum scale) plus its rounding allowance.

        ``proofs/guo2020_residual_bounds.md`` §5a: ``(n + d + 2) u M`` for the sums and
        ``1.01 (d + 4) u l''_max ||W||_F sum_i ||x_i||`` for the margins (float64 host).
        """
        gn, mag, margin, n = (float(v) for v in jax.device_get(_grad_sum(W, X, Y, b, mask)))
        d = W.shape[0]
        return gn + _grad_allowance(n, d, mag) + 1.01 * (d + 4) * UNIT_ROUNDOFF * margin

    def _train_state(X, Y, key, retrains, mask, n_removed, requests, reuse=None):
        d, K = X.shape[1], Y.shape[1]
        b = objective_perturbation(key, (d, K), sigma, X.dtype, release=int(retrains))
        fitres = _train(X, Y, b, mask, jnp.zeros((d, K), X.dtype))
        if int(fitres.result) != RESULTS.successful:
            raise RuntimeError(
                f"training did not reach train_tol={train_tol} (mean-scale gradient norm "
                f"{float(fitres.grad_norm):.3e} after {int(fitres.num_steps)} steps, "
                f"{result_message(int(fitres.result))}); raise lam or loosen train_tol"
                + ("" if train_method == "newton" else ", or use train_method='newton'")
            )
        W = fitres.params
        r0 = _measured_residual(W, X, Y, b, mask)
        fac = _factorise(W, X, Y, mask)
        f = jnp.asarray
        if reuse is not None:
            # a retrain: the Gram matrix of the remaining rows, ||X||_F^2 and the bound on
            # ||X||_2 (valid for every subset of rows) carry over from the state
            gram, gram_err = reuse["gram"], float(reuse["gram_err"])
            fro2, xs_value = float(reuse["fro2"]), reuse["x_spectral"]
        else:
            Xm = np.asarray(X) * np.asarray(mask)[:, None]
            gram = Xm.T @ Xm
            fro2 = float(np.sum(np.asarray(X) ** 2))
            xs_value = spectral_norm_upper_bound(np.asarray(X)).value
            gram_err = ((X.shape[0] + 2) * UNIT_ROUNDOFF / (1 - (X.shape[0] + 2) * UNIT_ROUNDOFF)
                        * fro2)
        st = GuoState(
            X=X, Y=Y, mask=mask, W=W, b=b, W_factor=W, factor_mask=mask, **fac,
            gram=f(gram, X.dtype), gram_err=_scalar(gram_err),
            x_spectral=_scalar(xs_value), fro2=_scalar(fro2), residual_bound=_scalar(r0),
            train_grad_norm=_scalar(r0),
            n_removed=f(n_removed, jnp.int32), requests=f(requests, jnp.int32),
            retrains=f(retrains, jnp.int32), steps_since_factor=f(0, jnp.int32), key=key,
        )
        if cached:
            st = st._replace(**_empty_buffers(d, K, X.dtype))
        return _place(st)

    def _scalar(x: Any) -> jax.Array:
        # float64 scalars of the state, never weakly typed: a state read back from disk (or
        # made by a retrain) must have the same jit signature as one made in memory
        return jnp.asarray(float(x), jnp.float64)

    def _empty_buffers(d: int, K: int, dtype) -> dict:
        out = dict(rows_buf=jnp.zeros((max_rank, d), dtype), h_buf=jnp.zeros((max_rank, K), dtype),
                   proj_buf=jnp.zeros((K, max_rank, d), dtype),
                   buf_count=jnp.asarray(0, jnp.int32), stale_sum=_scalar(0.0),
                   drift_sum=_scalar(0.0))
        if chol:
            out["cap_buf"] = jnp.broadcast_to(jnp.eye(max_rank, dtype=dtype),
                                              (K, max_rank, max_rank))
        return out

    def _place(state: GuoState) -> GuoState:
        """Lay the state out for data parallelism when its rows are sharded over a mesh.

        The per-row fields share the rows' sharding and everything else is replicated, so
        that every jitted step runs data-parallel (:mod:`certun.sharding`).
        """
        sh = getattr(state.X, "sharding", None)
        if not isinstance(sh, jax.sharding.NamedSharding) or len(sh.device_set) == 1:
            return state
        from certun.sharding import replicate, shard_rows

        axis = sh.spec[0]
        upd = {}
        for name, val in state._asdict().items():
            if val is None or name == "X":
                continue
            upd[name] = (shard_rows(val, sh.mesh, axis) if name in ("Y", "mask", "factor_mask")
                         else replicate(val, sh.mesh))
        return state._replace(**upd)

    def refresh(state: GuoState) -> GuoState:
        """Re-factorise the curvature at the current model on the remaining rows (O(n d^2 + d^3)).

        With ``update="cached"`` the Gram matrix is downdated by the buffered rows and the
        buffer emptied; the residual bound is unchanged (a refresh moves no parameter).
        """
        new = state._replace(W_factor=state.W, factor_mask=state.mask,
                             steps_since_factor=jnp.asarray(0, jnp.int32),
                             **_factorise(state.W, state.X, state.Y, state.mask))
        if state.rows_buf is not None:
            k = int(state.buf_count)
            fro2 = float(state.fro2)
            gram_err = float(state.gram_err) + (k + 2) * UNIT_ROUNDOFF * (k + fro2)
            d, K = state.W.shape
            new = new._replace(gram=_downdate_gram(state.gram, state.rows_buf),
                               gram_err=_scalar(gram_err),
                               **_empty_buffers(d, K, state.X.dtype))
        return _place(new)

    def fold(state: GuoState) -> GuoState:
        """Fold the buffered rows into the eigendecomposition, same point (``O(d^2 k + d^3)``).

        Used when the buffer is full: no pass over the data, ``W_factor`` and the
        staleness accounting are unchanged; the buffer is emptied.
        """
        fac, gram = _fold(state)
        k = int(state.buf_count)
        gram_err = float(state.gram_err) + (k + 2) * UNIT_ROUNDOFF * (k + float(state.fro2))
        d, K = state.W.shape
        bufs = _empty_buffers(d, K, state.X.dtype)
        bufs["stale_sum"], bufs["drift_sum"] = state.stale_sum, state.drift_sum
        return _place(state._replace(gram=gram, gram_err=_scalar(gram_err),
                                     factor_mask=state.mask, **fac, **bufs))

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
        Xn = _validate.unit_rows(X=X, tol=0.0)
        yn = _validate.finite_array(y=y, ndim=(1, 2))
        _validate.matching_rows(X=Xn, y=yn)
        if Xn.shape[0] < 2:
            raise _validate.ValidationError("X needs at least 2 rows")
        Yn = _targets(lossf, yn, num_classes)
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
        return _train_state(Xj, Yj, key, 0, mask, 0, 0)

    def params(state: GuoState) -> jax.Array:
        """The published model: ``(d,)`` for one head, ``(d, K)`` for one-vs-rest."""
        return state.W[:, 0] if state.W.shape[1] == 1 else state.W

    def retrain(state: GuoState, key: jax.Array | None = None, same_b: bool = True,
                method: str | None = None) -> Any:
        """Exact retraining on the remaining rows from zero (the baseline).

        With ``same_b`` (default) the retrained model uses the same ``b``, so it is the
        model certified removal is indistinguishable from; otherwise a fresh ``b``
        drawn with ``key``. Returns a :class:`~certun.models.fit.FitResult`.
        """
        b = state.b
        if not same_b:
            if key is None:
                raise _validate.ValidationError("key is required when same_b=False")
            b = objective_perturbation(key, state.b.shape, sigma, state.X.dtype)
        d, K = state.W.shape
        if method is None:
            return _train(state.X, state.Y, b, state.mask, jnp.zeros((d, K), state.X.dtype))
        return glm.fit(lossf, state.X, state.Y, lam, b, state.mask, method=method, tol=train_tol)

    def _assumptions(state: GuoState, x64: bool, solver_ok: bool, code: int,
                     xs: float | None = None, tg: float | None = None) -> list:
        xs = float(state.x_spectral) if xs is None else xs
        tg = float(state.train_grad_norm) if tg is None else tg
        a = [
            verified("unit_rows", "||x_i||_2 <= 1 for every training row (checked at init)"),
            verified("strong_convexity", f"lambda = {lam:g} > 0, so H >= lambda |D| I (sum scale)"),
            verified("curvature_lipschitz",
                     f"l'' is gamma-Lipschitz with gamma = {gamma:.6g} >= the {lossf.name} loss's "
                     f"exact constant {lossf.gamma:.6g}", gamma, lossf.gamma),
            verified("training_gradient",
                     "the training gradient norm (sum scale, with b) is measured and charged to "
                     "the budget", tg, private=True),
            verified("spectral_norm_bound",
                     "||X_rem||_2 bounded by exact float64 eigvalsh of X^T X plus a rounding "
                     "allowance, capped at sqrt(n_rem) (not a power iteration)", xs, private=True),
            check("float64", "bound inputs computed in float64 (enable jax_enable_x64)", x64),
            check("solver", "the Newton system was solved (PD, finite); its residual is in the "
                  "bound" + ("" if solver_ok else f": {result_message(code)}"), solver_ok),
        ]
        if bound == "worst_case" and lossf.gamma > 0:
            a.append(verified("gradient_bound", f"|l'| <= C = {C} (per-example gradient norm)"))
        if cached and lossf.gamma > 0:
            a.append(verified("stale_curvature",
                              "the step uses the curvature at the factorisation point w_f; its "
                              "whole remainder (Taylor + staleness, u = w - w_f) is charged as the "
                              "least of three bounds: gamma ||X_rem||_2 (min(||u|| ||X_rem delta||,"
                              " ||X_rem u|| ||delta||) + ||delta|| ||X_rem delta||), gamma ||X_rem "
                              "u|| ||X_rem delta|| + (gamma/2) ||X_rem delta||^2"
                              + (", and kappa (sqrt(u^T A' u) sqrt(delta^T A' delta) + delta^T A' "
                                 "delta / 2) with A' the curvature at w_f (|l'''| <= l'')"
                                 if sc_const is not None else "")
                              + " (proofs/cached_factors.md)"))
        return a

    def _cert(state: GuoState, used: float, assumptions, bounds: dict, solver: dict,
              private: dict, extra_failure: str | None = None, removed: int | None = None):
        return make_certificate(
            mechanism=MECHANISM, epsilon=eps, delta=dlt, sigma=sigma,
            threat="indistinguishable_from_retraining", adjacency="removal", scale="sum",
            calibration="guo_c", conversion=None, sensitivity=None, releases=1,
            removed=int(state.n_removed) if removed is None else removed,
            budget=Budget(budget_total, used, "sum-scale gradient-residual norm ||grad L_b||_F"),
            assumptions=assumptions, bounds=bounds, solver=solver, private=private,
            notes=(_THREAT_NOTE, _DECISION_NOTE, f"c = sqrt(2 ln(1.5/delta)) = {c:.6g}; "
                   f"budget = sigma * epsilon / c = {budget_total:.6g}"),
            extra_failure=extra_failure,
        )

    # ------------------------------------------------------------ host mirror
    # The host-side scalars of the last state this unlearner produced (and its removed-row
    # mask), so that the next request on that state needs no device->host transfer before
    # its step. Valid only while every mirrored field of the state it is asked about is the
    # very array object recorded (JAX arrays are immutable); one tuple, swapped atomically.
    _MIRRORED = ("residual_bound", "mask", "n_removed", "steps_since_factor", "b", "gram_err",
                 "x_spectral", "fro2", "train_grad_norm", "buf_count", "stale_sum",
                 "drift_sum")
    _mirror: list = [None]

    def _mirrored(state: GuoState) -> tuple[dict, np.ndarray] | None:
        rec = _mirror[0]
        if rec is None or any(getattr(state, f) is not o
                              for f, o in zip(_MIRRORED, rec[0], strict=True)):
            return None
        return dict(rec[1]), rec[2]

    def _remember(state: GuoState, h: dict, removed: np.ndarray) -> None:
        _mirror[0] = (tuple(getattr(state, f) for f in _MIRRORED), h, removed)

    def _removed_rows(state: GuoState) -> np.ndarray:
        """Boolean mask of the rows already removed (host)."""
        rec = _mirrored(state)
        return rec[1] if rec is not None else np.asarray(state.mask) == 0

    def _host(state: GuoState) -> dict:
        rec = _mirrored(state)
        if rec is not None:
            return rec[0]
        # every host-side scalar of the state in one transfer
        keys = dict(n_removed=state.n_removed, since=state.steps_since_factor, xs=state.x_spectral,
                    fro2=state.fro2, gram_err=state.gram_err, R=state.residual_bound,
                    tg=state.train_grad_norm, b=state.b)
        if cached:
            keys.update(count=state.buf_count, stale_sum=state.stale_sum)
            if state.drift_sum is not None:  # absent from states saved before it existed
                keys["drift_sum"] = state.drift_sum
        h = jax.device_get(keys)
        # per-head ||b_k||, constant until a retrain draws a new b (the mirror carries it)
        h["b_norms"] = np.linalg.norm(np.asarray(h["b"], np.float64), axis=0)
        return h

    def _charge(out: dict, h: dict, m: int, n_prev: int, n_total: int, d: int, K: int,
                k_buf: int = 0) -> tuple[dict, float, float, float]:
        """Host-side float64 bounds of one request.

        ``proofs/guo2020_residual_bounds.md`` sections 3-5 and ``proofs/cached_factors.md``
        (staleness). Returns ``(bounds, charge, R_new, gram_err)``.
        """
        n_rem = n_prev - m
        u = UNIT_ROUNDOFF
        d_fro2 = float(h["fro2"])
        gram_fro = d_fro2  # ||G||_F <= tr G <= ||X||_F^2 for the PSD Gram of any subset of rows
        x_spec = guo_bounds.spectral_cap(float(h["xs"]), n_rem)
        kk = k_buf + m  # rows downdated from the stored Gram (eagerly, or lazily when cached)
        gram_err = float(h["gram_err"]) + (kk + 2) * u * (kk + gram_fro)
        q_err = gram_err + 4 * (d + 1) * u * gram_fro
        dn = np.asarray(out["delta_norms"], np.float64) * (1 + 4 * d * u)
        xdn = np.sqrt(np.maximum(np.asarray(out["x_delta_sq"], np.float64), 0.0) + q_err * dn ** 2)
        b_norms = h["b_norms"]
        R_prev = float(h["R"])
        dd = [guo_bounds.data_dependent_bound(gamma, x_spec, dn[k], xdn[k]) for k in range(K)]
        if lossf.gamma > 0:
            wc = [guo_bounds.worst_case_bound(gamma, C, lam, n_prev, m, b_norms[k], R_prev)
                  for k in range(K)]
            wcp = [guo_bounds.worst_case_bound_printed(gamma, C, lam, n_prev, m) for k in range(K)]
        else:
            wc, wcp = [0.0] * K, [0.0] * K
        stale = [0.0] * K
        rem = None
        if cached:
            # the cached step's remainder: the least of three bounds (proofs/cached_factors.md §3)
            un = np.asarray(out["u_norms"], np.float64) * (1 + 4 * d * u)
            xun = np.sqrt(np.maximum(np.asarray(out["x_u_sq"], np.float64), 0.0) + q_err * un ** 2)
            aun = adn = [None] * K
            if sc_const is not None:
                # curv: formation, weights at fl(x^T w_f), folds, the buffered rows and the
                # quadratic form (proofs/cached_factors.md §3, "Inputs are upper bounds")
                wn = np.asarray(out["w_norms"], np.float64)
                a_err = (((4 * n_total + 5 * d + 2 * kk + 30) * u
                          + lossf.gamma * (d + 2) * u * 1.01 * wn)
                         * lossf.d2_bound * (n_total + d_fro2 + kk))
                aun = np.sqrt(np.maximum(np.asarray(out["a_u_sq"], np.float64), 0.0)
                              + a_err * un ** 2)
                adn = np.sqrt(np.maximum(np.asarray(out["a_delta_sq"], np.float64), 0.0)
                              + a_err * dn ** 2)
            rem = [guo_bounds.cached_remainder_bound(gamma, x_spec, un[k], xun[k], dn[k], xdn[k],
                                                     aun[k], adn[k], sc_const) for k in range(K)]
            stale = [r.staleness for r in rem]
            rho_bound = float(sum(r.charged for r in rem))
        else:
            rho_bound = float(sum(dd) if bound == "data_dependent" else sum(wc))
        Dn = float(np.linalg.norm(np.asarray(out["Delta_norms"])))
        # curv: formed from <= n_total rows, and on the cached path downdated by <= n_total more;
        # margins x^T w carry an error <= gamma_d ||w||, which moves l'' by <= gamma* times that
        # (every curvature weight) and l' by <= l''_max times that (every removed row)
        rows_in_curv = 2 * n_total if cached else n_total
        wn = np.asarray(out["w_norms"], np.float64)
        rounding = ((rows_in_curv + d + kk + 4) * u
                    * (lossf.d2_bound * d_fro2 + lam * n_prev + kk) * float(np.sum(dn))
                    + (d + 2) * u * Dn
                    + (d + 4) * u * 1.01 * float(np.sum(
                        wn * (lossf.gamma * d_fro2 * dn + lossf.d2_bound * m))))
        solver_res = float(out["solver_residual"])
        charge = rho_bound + solver_res + rounding
        R_new = R_prev + charge
        bounds = {
            "residual_bound_before": R_prev,
            "step_remainder_bound": rho_bound,
            "step_data_dependent_bound": float(sum(dd)),
            "step_worst_case_bound": float(sum(wc)),
            "step_worst_case_bound_printed": float(sum(wcp)),
            "step_solver_residual": solver_res,
            "step_rounding_allowance": rounding,
            "residual_bound_after": R_new,
            "x_spectral_bound": x_spec,
            "bound_charged": bound,
            "gamma": gamma,
        }
        if cached:
            bounds["step_staleness_bound"] = float(sum(stale))
            bounds["step_drift_norm"] = float(np.sum(xun))
            bounds["step_spectral_bound"] = float(sum(r.spectral for r in rem))
            bounds["step_l1_bound"] = float(sum(r.l1 for r in rem))
            sc = float(sum(r.self_concordant for r in rem))
            bounds["step_self_concordant_bound"] = sc if math.isfinite(sc) else None
            bounds["step_remainder_routes"] = [r.route for r in rem]
        return bounds, charge, R_new, gram_err

    def unlearn(state: GuoState, indices: Any, key: jax.Array | None = None) -> UnlearnResult:
        """Remove the training rows ``indices`` (positions in the original training set).

        Returns an :class:`~certun.unlearners.base.UnlearnResult`; when the request
        would exceed the budget (or the Newton system cannot be solved), ``params``
        is ``None``, the state is unchanged and the certificate says why (unless
        ``auto_retrain``, which retrains on the remaining rows with a fresh ``b``).
        ``key`` is unused (the mechanism's noise is ``b``, drawn at training).
        """
        del key
        t0 = time.perf_counter()
        _check_kind(state)
        n_total = int(state.X.shape[0])
        removed = _removed_rows(state)
        idx_np = _validate.forget_indices(indices, n_total, already_removed=removed)
        return _serve(state, idx_np, t0, allow_refresh=True, removed=removed)

    def _check_kind(state: GuoState) -> None:
        made = ("none" if state.proj_buf is None
                else "cholesky" if state.inv is not None else "eigh")
        want = factor if cached else "none"
        if made != want:
            raise _validate.ValidationError(
                f"state: made by an unlearner with update={'cached' if made != 'none' else 'pcg'!r}"
                + (f", factor={made!r}" if made != "none" else "")
                + f"; this one has update={update!r}" + (f", factor={factor!r}" if cached else "")
                + ": use the unlearner (or configuration) that made the state")
        if cached and state.rows_buf.shape[0] != max_rank:
            raise _validate.ValidationError(
                f"state: its buffer holds {state.rows_buf.shape[0]} rows but this unlearner has "
                f"max_rank={max_rank}: use the unlearner (or configuration) that made the state")

    def _serve(state: GuoState, idx_np: np.ndarray, t0: float, allow_refresh: bool,
               refreshed: str | None = None, t_maint: float = 0.0,
               removed: np.ndarray | None = None) -> UnlearnResult:
        n_total = int(state.X.shape[0])
        m = int(idx_np.size)
        h = _host(state)
        n_removed, since_factor = int(h["n_removed"]), int(h["since"])
        n_prev = n_total - n_removed
        if m >= n_prev:
            raise _validate.ValidationError(
                f"indices would remove all {n_prev} remaining rows; keep at least one")
        oversized = cached and m > max_rank
        t_m = time.perf_counter()
        if cached and not oversized and int(h["count"]) + m > max_rank:
            # the buffer of removed rows is full: fold it into the factorisation first
            state = jax.block_until_ready(fold(state))
            h = _host(state)
            refreshed = "capacity"
        if oversized:
            # the buffer is folded and the curvature of the remaining rows refactorised
            state = fold(state) if int(h["count"]) else state
            h = _host(state)
            h["stale_sum"], h["drift_sum"], since_factor, refreshed = 0.0, 0.0, 0, "oversized"
        t_maint += time.perf_counter() - t_m if refreshed in ("capacity", "oversized") else 0.0
        idx = idx_np.astype(np.int32)  # host array: the jitted call transfers it
        if cached:
            path = "cached_factor"
            if oversized:
                path = "fresh_factor"
                out, big = _fresh_step(state, idx)
            else:
                out, big = _cached_step(state, idx, _bucket(int(h["count"]) + m, max_rank))
        else:
            exact = since_factor == 0
            path = "eigh_woodbury" if exact else "pcg"
            out, big = (_exact_step if exact else _cg_step)(state, idx)
        out = _unpack(jax.device_get(out), state.W.shape[1])  # scalars and per-head norms
        t_step = time.perf_counter() - t0

        n_rem = n_prev - m
        d, K = state.W.shape
        x64 = state.X.dtype == jnp.float64
        k_buf = int(h["count"]) if cached else 0
        bounds, charge, R_new, gram_err = _charge(out, h, m, n_prev, n_total, d, K, k_buf)
        solver_res = bounds["step_solver_residual"]
        code = int(out["code"])
        solver_ok = code == RESULTS.successful and math.isfinite(solver_res)
        solver = {"path": path, "iterations": int(out["steps"]),
                  "residual": solver_res, "result": RESULTS(code).name}
        if cached:
            solver["buffer_rows"] = k_buf + m
        diagnostics = dict(bounds, seconds_step=t_step, m=m, n_before=n_prev, n_after=n_rem,
                           delta_norms=(np.asarray(out["delta_norms"], np.float64)
                                        * (1 + 4 * d * UNIT_ROUNDOFF)).tolist(), solver=solver)
        if cached:
            diagnostics["refreshed"] = refreshed
        b_norms = h["b_norms"]
        private = {"b_norm": float(np.linalg.norm(b_norms)),
                   "train_grad_norm": float(h["tg"])}

        S_new = D_new = None
        if cached:
            # the refresh policy's running sums since the factorisation (§4 of the proof)
            S_new = float(h["stale_sum"]) + bounds["step_staleness_bound"]
            D_new = float(h.get("drift_sum") or 0.0) + bounds["step_drift_norm"]
            R_dev, g_dev, S_dev, D_dev = _scalars(np.array([R_new, gram_err, S_new, D_new]))
        else:
            R_dev, g_dev = _scalars(np.array([R_new, gram_err]))
        new_state = state._replace(
            mask=big["mask_new"], W=big["W_new"], residual_bound=R_dev,
            n_removed=big["n_removed"], requests=big["requests"],
            steps_since_factor=big["steps_since_factor"],
        )
        if cached:
            new_state = new_state._replace(stale_sum=S_dev, drift_sum=D_dev)
        if oversized:
            new_state = new_state._replace(
                W_factor=state.W, factor_mask=big["mask_new"], curv=big["curv"],
                eigvals=big["eigvals"], eigvecs=big["eigvecs"], inv=big["inv"],
                inv_rows=big["inv_rows"],
                gram=big["gram_new"], gram_err=g_dev,
                steps_since_factor=jnp.asarray(1, jnp.int32))
        elif cached:
            new_state = new_state._replace(rows_buf=big["rows_buf"], h_buf=big["h_buf"],
                                           proj_buf=big["proj_buf"], buf_count=big["buf_count"],
                                           cap_buf=big["cap_buf"])
        else:
            new_state = new_state._replace(gram=big["gram_new"], gram_err=g_dev)
        if remeasure and solver_ok and x64 and R_new > budget_total:
            # measure the residual of the stepped model instead of accumulating bounds
            # (proofs/guo2020_residual_bounds.md §5a): ||grad L_b(w^-; D \ U)|| + rounding
            t_r = time.perf_counter()
            R_meas = _measured_residual(new_state.W, state.X, state.Y, state.b, new_state.mask)
            diagnostics["seconds_remeasure"] = time.perf_counter() - t_r
            t_maint += diagnostics["seconds_remeasure"]
            bounds["residual_remeasured"] = R_meas
            bounds["residual_bound_accumulated"] = R_new
            if R_meas < R_new:
                R_new = R_meas
                bounds["residual_bound_after"] = R_meas
                new_state = new_state._replace(residual_bound=_scalar(R_meas))
            diagnostics.update(bounds)
        if diagnose:
            tr = float(_true_residual(new_state.W, state.X, state.Y, state.b, new_state.mask))
            private["true_residual"] = tr
            diagnostics["true_residual"] = tr

        if not solver_ok or not x64 or R_new > budget_total:
            # a step at a fresh factorisation has no staleness and an exact solve: try it before
            # refusing or retraining -- unless the retrain is automatic and the budget a refresh
            # could still open up is worth less than the refresh (kappa * budget, the refresh
            # policy's exchange rate; proofs/cached_factors.md §4)
            worth = (refresh_cost_ratio is None or not auto_retrain or not solver_ok
                     or budget_total - float(h["R"]) >= refresh_cost_ratio * budget_total)
            if cached and allow_refresh and since_factor > 0 and x64 and worth:
                t_m = time.perf_counter()
                fresh = jax.block_until_ready(refresh(state))
                res = _serve(fresh, idx_np, t0, allow_refresh=False,
                             refreshed="budget" if solver_ok else "solver",
                             t_maint=t_maint + time.perf_counter() - t_m, removed=removed)
                if res.outcome != "retrain_required":
                    return res
                return res._replace(state=state)
            if solver_ok and x64 and auto_retrain:
                if cached and not oversized:  # Gram of the remaining rows, downdated lazily
                    gram = _downdate_gram(state.gram, big["rows_buf"])
                    k = int(h["count"]) + m
                    g_err = float(h["gram_err"]) + (k + 2) * UNIT_ROUNDOFF * (k + float(h["fro2"]))
                else:
                    gram, g_err = big["gram_new"], gram_err
                rstate = _train_state(state.X, state.Y, state.key, int(state.retrains) + 1,
                                      new_state.mask, int(new_state.n_removed),
                                      int(new_state.requests),
                                      reuse=dict(gram=gram, gram_err=g_err, fro2=h["fro2"],
                                                 x_spectral=h["xs"]))
                used = float(rstate.residual_bound)
                cert = _cert(rstate, used, _assumptions(rstate, x64, True, RESULTS.successful),
                             {"residual_bound_after": used, "retrained": True},
                             {"path": "retrain"}, {"train_grad_norm": used})
                diagnostics["retrained"] = True
                return UnlearnResult(params(rstate), rstate, cert, "retrained", diagnostics)
            fail = None
            if R_new > budget_total and solver_ok:
                # public reason: the residual bound is data-dependent (private view: bounds)
                fail = ("retrain required: this request would raise the residual bound above "
                        "the budget")
            cert = _cert(state, R_new, _assumptions(state, x64, solver_ok, code, h["xs"], h["tg"]),
                         bounds, solver, private, extra_failure=fail)
            return UnlearnResult(None, state, cert, "retrain_required", diagnostics)

        published = big["params"]
        after = None
        if refactor_every and since_factor + 1 >= refactor_every:
            after = "refactor_every"
        elif cached and not remeasure:
            # the refresh policy (proofs/cached_factors.md §4): refresh after request t when
            # t * E[s_{t+1}] - S_t >= kappa * budget, with E[s_{t+1}] estimated as the drift
            # D_t = ||X_rem (w - w_f)|| times the staleness charged per unit of drift so far
            s_t, D_t = bounds["step_staleness_bound"], bounds["step_drift_norm"]
            t = since_factor + 1
            s_hat = S_new * D_t / D_new if D_new > 0 else s_t
            diagnostics["refresh_policy_estimate"] = s_hat
            if (refresh_cost_ratio is not None and s_t > 0
                    and t * s_hat - S_new >= refresh_cost_ratio * budget_total):
                after = "policy"
        elif (cached and "residual_remeasured" in bounds and bounds["step_staleness_bound"] > 0
              and budget_total - R_new < _REMEASURE_ROOM * charge):
            # remeasuring in place of the policy: when the room a measurement opened lasts
            # fewer than _REMEASURE_ROOM requests at this charge, the staleness is costing a
            # measurement every few requests and a refresh pays (guo2020_residual_bounds §5a)
            after = "remeasure"
        if after is not None:
            t_r = time.perf_counter()
            new_state = jax.block_until_ready(refresh(new_state))
            diagnostics["seconds_refresh"] = time.perf_counter() - t_r
            t_maint += diagnostics["seconds_refresh"]
        elif removed is not None and not oversized:
            # the next request on new_state reads its scalars from here, not from the device
            rm = removed.copy()
            rm[idx_np] = True
            h_new = dict(h, n_removed=n_removed + m, since=since_factor + 1, R=R_new)
            if cached:
                h_new.update(count=k_buf + m, stale_sum=S_new, drift_sum=D_new)
            else:
                h_new["gram_err"] = gram_err
            _remember(new_state, h_new, rm)
        if cached:
            diagnostics["refreshed_after"] = after
            diagnostics["seconds_maintenance"] = t_maint  # folds and refreshes of this request
        cert = _cert(new_state, R_new, _assumptions(new_state, x64, True, code, h["xs"], h["tg"]),
                     bounds, solver, private, removed=n_removed + m)
        diagnostics["seconds_total"] = time.perf_counter() - t0
        return UnlearnResult(published, new_state, cert, "unlearned", diagnostics)

    def warmup(state: GuoState) -> float:
        """Compile, ahead of the requests, every step a sequence of single-row requests can take.

        With ``update="cached"``: the cached step at every buffer width (``_bucket``), the
        fold and the Gram downdate; otherwise the first exact step and the PCG step. Each
        is run once on ``state`` with a row still present (the results are discarded; the
        state is not changed). Training, refreshes and retrains compile at ``init``.
        Returns the seconds spent (compilation, once per unlearner and state layout).
        """
        t0 = time.perf_counter()
        present = np.flatnonzero(~_removed_rows(state))
        if present.size < 2:
            return 0.0
        idx = present[:1].astype(np.int32)  # as _serve passes it (a host array)
        if cached:
            kb = _bucket(1, max_rank)
            while True:
                jax.block_until_ready(_cached_step(state, idx, kb))
                if kb >= max_rank:
                    break
                kb = _bucket(2 * kb, max_rank)
            jax.block_until_ready(_fold(state))
            jax.block_until_ready(_downdate_gram(state.gram, state.rows_buf))
        else:
            jax.block_until_ready(_exact_step(state, idx))
            jax.block_until_ready(_cg_step(state, idx))
        jax.block_until_ready(_scalars(np.zeros(4 if cached else 2)))
        return time.perf_counter() - t0

    def what_if(state: GuoState, candidates: Any) -> WhatIf:
        """The budget each candidate removal (one row, next request) would consume.

        All candidates are evaluated in one jitted ``vmap`` of the step the next request
        would take (cached factor, first exact step, or PCG), followed by the same
        host-side bounds as :func:`unlearn`. The state is not changed. With
        ``remeasure=True`` a candidate whose bound ``exceeds`` the budget may still be served
        by :func:`unlearn` after it measures the residual (one gradient per request; not done
        here, per candidate).

        Args:
          state: the current state.
          candidates: 1-D distinct row indices still present.
        """
        _check_kind(state)
        n_total = int(state.X.shape[0])
        cand = np.asarray(candidates)
        _validate.forget_indices(cand, n_total, name="candidates",
                                 already_removed=np.asarray(state.mask) == 0)
        cand = cand.astype(np.int64).reshape(-1)
        h = _host(state)
        n_prev = n_total - int(h["n_removed"])
        if n_prev < 2:
            raise _validate.ValidationError("candidates: only one row remains")
        if cached:
            if int(h["count"]) + 1 > max_rank:
                state = fold(state)
                h = _host(state)
            fn = _what_if_cached(_bucket(int(h["count"]) + 1, max_rank))
        else:
            fn = _what_if_fns["exact" if int(h["since"]) == 0 else "pcg"]
        outs = jax.device_get(fn(state, jnp.asarray(cand[:, None], jnp.int32)))
        d, K = state.W.shape
        k_buf = int(h["count"]) if cached else 0
        charge = np.empty(cand.size)
        for j in range(cand.size):
            oj = _unpack(outs[j], K)
            _, charge[j], _, _ = _charge(oj, h, 1, n_prev, n_total, d, K, k_buf)
        R = float(h["R"])
        return WhatIf(cand, charge, R + charge, R + charge > budget_total, budget_total, R)

    unlearn.what_if = what_if
    unlearn.refresh = refresh
    unlearn.fold = fold
    unlearn.warmup = warmup

    return GuoUnlearner(init=init, unlearn=unlearn, params=params, retrain=retrain)
