"""Guo et al. (ICML 2020) certified removal for L2-regularised linear models.

Learning (the randomised algorithm ``A``): draw ``b ~ N(0, sigma^2 I)`` once and
train to a tight optimum of the perturbed objective (certun's mean scale)

.. math:: J(w) = \\frac1n\\sum_i \\ell(w^\\top x_i, y_i) + \\frac\\lambda2\\|w\\|^2 + \\frac{b^\\top w}{n},

i.e. ``L_b = n J`` on the paper's sum scale. Removing rows ``U`` (``m`` of the
``n`` current rows) takes one Newton step on the *remaining* data at the current model:

.. math::
    \\Delta = \\sum_{j\\in U}\\nabla\\ell(w^\\top x_j, y_j) + m\\lambda w,\\qquad
    w^- = w + H^{-1}\\Delta,\\qquad H = \\nabla^2 L_b(w; D\\setminus U).

**Certificate.** With ``r`` the residual ``grad L_b(w^-; D \\ U)`` (sum scale, with
``b``), Guo et al.'s Theorem 3 makes the result ``(epsilon, delta)``-indistinguishable
from retraining on ``D \\ U`` with a fresh draw of ``b`` as long as ``||r|| <= epsilon'``
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

__all__ = ["GuoState", "certified_removal", "MECHANISM"]

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


def _targets(loss: glm.ScalarLoss, y: np.ndarray, num_classes: int | None) -> np.ndarray:
    if y.ndim == 2:
        return np.asarray(y, np.float64)
    if loss.name == "squared":
        return np.asarray(y, np.float64)[:, None]
    vals = np.unique(y)
    if num_classes is None and np.all(np.isin(vals, (-1.0, 1.0))):
        return np.asarray(y, np.float64)[:, None]
    if not np.all(np.mod(vals, 1) == 0) or vals.min() < 0:
        raise _validate.ValidationError(
            "y must hold binary labels in {-1, +1} or integer class ids 0..K-1 for one-vs-rest"
        )
    K = int(num_classes if num_classes is not None else vals.max() + 1)
    if vals.max() >= K:
        raise _validate.ValidationError(f"y holds class id {int(vals.max())} >= num_classes={K}")
    return np.where(y[:, None] == np.arange(K)[None, :], 1.0, -1.0)


def certified_removal(*, lam: float, sigma: float, epsilon: float, delta: float,
                      loss: str = "logistic", bound: str = "data_dependent",
                      gamma: float | None = None, train_tol: float = 1e-10,
                      train_method: str = "newton", solve_rtol: float = 1e-12,
                      max_cg_steps: int = 200, refactor_every: int = 0,
                      diagnose: bool = False, auto_retrain: bool = False) -> Unlearner:
    """Guo et al. (2020) certified removal for logistic (binary / one-vs-rest) and ridge models.

    Args:
      lam: L2 regularisation ``lambda`` of certun's mean-scale objective (> 0).
      sigma: standard deviation of the objective perturbation ``b`` (> 0). It fixes
        the removal budget ``sigma * epsilon / c``.
      epsilon, delta: the certified-removal guarantee per released model.
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
      diagnose: also compute the true residual ``||grad L_b(w^-; D \\ U)||`` (one pass
        over the data) and return it in ``diagnostics``/the certificate's private part.
      auto_retrain: when a request would exceed the budget, retrain on the remaining
        rows with a fresh ``b`` (outcome ``"retrained"``) instead of refusing.

    Returns:
      An :class:`~certun.unlearners.base.Unlearner`: ``init(X, y, key, num_classes=None)``,
      ``unlearn(state, indices)``, ``params(state)``, ``retrain(state, key=None, same_b=True)``.

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
    if gamma is None:
        gamma = lossf.gamma_paper
    gamma = _validate.non_negative(gamma=gamma)
    if gamma < lossf.gamma:
        raise _validate.ValidationError(
            f"gamma={gamma} is below the Lipschitz constant of l'' for the {lossf.name} loss "
            f"({lossf.gamma:.6g}); the bound would not hold"
        )
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
        return jnp.linalg.norm(g), mag

    @jax.jit
    def _factor(W, X, Y, mask):
        G = glm.curvature_gram(lossf, W, X, Y, mask)
        w, Q = jax.vmap(jnp.linalg.eigh)(G)
        return G, w, Q

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

    def _finish(state, idx, xu, delta, Delta, mask_new, solver_res, code, steps):
        gram_new = state.gram - xu.T @ xu
        qf = jnp.einsum("jk,jl,lk->k", delta, gram_new, delta)  # ||X_rem delta_k||^2 (approx.)
        W_new = state.W + delta
        small = dict(
            delta_norms=jnp.linalg.norm(delta, axis=0), Delta_norms=jnp.linalg.norm(Delta, axis=0),
            x_delta_sq=qf, solver_residual=solver_res, code=code, steps=steps,
            gram_fro=jnp.linalg.norm(gram_new),
        )
        big = dict(W_new=W_new, mask_new=mask_new, gram_new=gram_new,
                   params=W_new[:, 0] if W_new.shape[1] == 1 else W_new,
                   n_removed=state.n_removed + idx.shape[0], requests=state.requests + 1,
                   steps_since_factor=state.steps_since_factor + 1)
        return small, big

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

    # ------------------------------------------------------------ host helpers
    def _grad_allowance(n: float, d: int, mag: float) -> float:
        return (n + d + 2) * UNIT_ROUNDOFF * mag

    def _train_state(X, Y, key, retrains, mask, n_removed, requests):
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
        gnorm, mag = _grad_sum(W, X, Y, b, mask)
        n = float(jnp.sum(mask))
        r0 = float(gnorm) + _grad_allowance(n, d, float(mag))
        G, w, Q = _factor(W, X, Y, mask)
        Xm = np.asarray(X) * np.asarray(mask)[:, None]
        gram = Xm.T @ Xm
        fro2 = float(np.sum(np.asarray(X) ** 2))
        xs = spectral_norm_upper_bound(np.asarray(X))
        gram_err = (X.shape[0] + 2) * UNIT_ROUNDOFF / (1 - (X.shape[0] + 2) * UNIT_ROUNDOFF) * fro2
        f = jnp.asarray
        return GuoState(
            X=X, Y=Y, mask=mask, W=W, b=b, W_factor=W, factor_mask=mask, curv=G, eigvals=w,
            eigvecs=Q, gram=f(gram, X.dtype), gram_err=f(gram_err), x_spectral=f(xs.value),
            fro2=f(fro2), residual_bound=f(r0), train_grad_norm=f(r0),
            n_removed=f(n_removed, jnp.int32), requests=f(requests, jnp.int32),
            retrains=f(retrains, jnp.int32), steps_since_factor=f(0, jnp.int32), key=key,
        )

    def init(X: Any, y: Any, key: jax.Array, num_classes: int | None = None) -> GuoState:
        """Draw ``b``, train to ``train_tol`` and build the caches (see module docstring).

        Args:
          X: ``(n, d)`` features with ``||x_i||_2 <= 1`` (use ``certun.data.normalize_rows``).
          y: labels ``+-1`` (binary), class ids (one-vs-rest, with ``num_classes``), or
            real targets (ridge; bounded).
          key: PRNG key for ``b`` (retrain ``j`` uses ``fold_in`` release ``j``).
          num_classes: number of classes for one-vs-rest.
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
        n_total = int(state.X.shape[0])
        idx_np = _validate.forget_indices(indices, n_total,
                                          already_removed=np.asarray(state.mask) == 0)
        m = int(idx_np.size)
        h = jax.device_get(dict(  # every host-side scalar of the state in one transfer
            n_removed=state.n_removed, since=state.steps_since_factor, xs=state.x_spectral,
            fro2=state.fro2, gram_err=state.gram_err, R=state.residual_bound,
            tg=state.train_grad_norm, b=state.b))
        n_removed, since_factor = int(h["n_removed"]), int(h["since"])
        n_prev = n_total - n_removed
        if m >= n_prev:
            raise _validate.ValidationError(
                f"indices would remove all {n_prev} remaining rows; keep at least one")
        idx = jnp.asarray(idx_np, jnp.int32)
        exact = since_factor == 0
        out, big = (_exact_step if exact else _cg_step)(state, idx)
        out = jax.device_get(out)  # only scalars and per-head norms come to the host
        t_step = time.perf_counter() - t0

        n_rem = n_prev - m
        d, K = state.W.shape
        u = UNIT_ROUNDOFF
        x64 = state.X.dtype == jnp.float64
        d_fro2 = float(h["fro2"])
        x_spec = guo_bounds.spectral_cap(float(h["xs"]), n_rem)
        gram_err = float(h["gram_err"]) + (m + 2) * u * (m + float(out["gram_fro"]))
        dn = np.asarray(out["delta_norms"], np.float64) * (1 + 4 * d * u)
        xdn = np.sqrt(np.maximum(np.asarray(out["x_delta_sq"], np.float64), 0.0)
                      + (gram_err + 4 * (d + 1) * u * float(out["gram_fro"])) * dn ** 2)
        b_norms = np.linalg.norm(np.asarray(h["b"], np.float64), axis=0)
        R_prev = float(h["R"])
        dd = [guo_bounds.data_dependent_bound(gamma, x_spec, dn[k], xdn[k]) for k in range(K)]
        if lossf.gamma > 0:
            wc = [guo_bounds.worst_case_bound(gamma, C, lam, n_prev, m, b_norms[k], R_prev)
                  for k in range(K)]
            wcp = [guo_bounds.worst_case_bound_printed(gamma, C, lam, n_prev, m) for k in range(K)]
        else:
            wc, wcp = [0.0] * K, [0.0] * K
        rho_bound = float(sum(dd) if bound == "data_dependent" else sum(wc))
        Dn = float(np.linalg.norm(np.asarray(out["Delta_norms"])))
        rounding = ((n_total + d + m + 4) * u
                    * (lossf.d2_bound * d_fro2 + lam * n_prev + m) * float(np.sum(dn))
                    + (d + 2) * u * Dn)
        solver_res = float(out["solver_residual"])
        beta = rho_bound + solver_res + rounding
        R_new = R_prev + beta
        code = int(out["code"])
        solver_ok = code == RESULTS.successful and math.isfinite(solver_res)
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
        solver = {"path": "eigh_woodbury" if exact else "pcg", "iterations": int(out["steps"]),
                  "residual": solver_res, "result": RESULTS(code).name}
        diagnostics = dict(bounds, seconds_step=t_step, m=m, n_before=n_prev, n_after=n_rem,
                           delta_norms=dn.tolist(), solver=solver)
        private = {"b_norm": float(np.linalg.norm(b_norms)),
                   "train_grad_norm": float(h["tg"])}

        new_state = state._replace(
            mask=big["mask_new"], W=big["W_new"], gram=big["gram_new"],
            gram_err=jnp.asarray(gram_err), residual_bound=jnp.asarray(R_new),
            n_removed=big["n_removed"], requests=big["requests"],
            steps_since_factor=big["steps_since_factor"],
        )
        if diagnose:
            tr = float(_true_residual(new_state.W, state.X, state.Y, state.b, new_state.mask))
            private["true_residual"] = tr
            diagnostics["true_residual"] = tr

        if not solver_ok or not x64 or R_new > budget_total:
            if solver_ok and x64 and auto_retrain:
                rstate = _train_state(state.X, state.Y, state.key, int(state.retrains) + 1,
                                      new_state.mask, int(new_state.n_removed),
                                      int(new_state.requests))
                used = float(rstate.residual_bound)
                cert = _cert(rstate, used, _assumptions(rstate, x64, True, RESULTS.successful),
                             {"residual_bound_after": used, "retrained": True},
                             {"path": "retrain"}, {"train_grad_norm": used})
                diagnostics["retrained"] = True
                return UnlearnResult(params(rstate), rstate, cert, "retrained", diagnostics)
            fail = None
            if R_new > budget_total and solver_ok:
                fail = (f"retrain required: this request would raise the residual bound to "
                        f"{R_new:.6g} > budget {budget_total:.6g}")
            cert = _cert(state, R_new, _assumptions(state, x64, solver_ok, code, h["xs"], h["tg"]), bounds, solver,
                         private, extra_failure=fail)
            return UnlearnResult(None, state, cert, "retrain_required", diagnostics)

        published = big["params"]
        if refactor_every and since_factor + 1 >= refactor_every:
            G, w, Q = _factor(new_state.W, state.X, state.Y, new_state.mask)
            new_state = new_state._replace(W_factor=new_state.W, factor_mask=new_state.mask,
                                           curv=G, eigvals=w, eigvecs=Q,
                                           steps_since_factor=jnp.asarray(0, jnp.int32))
        cert = _cert(new_state, R_new, _assumptions(new_state, x64, True, code, h["xs"], h["tg"]), bounds, solver,
                     private, removed=n_removed + m)
        diagnostics["seconds_total"] = time.perf_counter() - t0
        return UnlearnResult(published, new_state, cert, "unlearned", diagnostics)

    return Unlearner(init=init, unlearn=unlearn, params=params, retrain=retrain)

