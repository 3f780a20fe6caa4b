r"""Sekhari et al. (NeurIPS 2021): stored-Hessian Newton unlearning with output noise.

Learning: train ``w_hat`` to ``||grad F|| <= train_tol`` on the mean-scale objective
``F(w) = (1/n) sum_i f(w, z_i)``, ``f = l + (lambda/2)||w||^2`` (no perturbation), and
store ``T(S)``: the curvature ``X^T D X`` at ``w_hat`` (eigendecomposed once) and the
training gradient ``g``. The unlearner never sees the retained data.

Unlearning a set ``U`` (``m`` rows; sequential requests are answered for the union of
all rows deleted so far, against the stored statistics):

.. math::
    \hat H = \frac{X^\top D X - \sum_{j\in U} l''_j x_j x_j^\top}{n - m} + \lambda I, \quad
    \nabla F_r(\hat w) = \frac{n g - \sum_{j \in U} \nabla f(\hat w, z_j)}{n - m}, \quad
    \bar w = \hat w - \hat H^{-1}\nabla F_r(\hat w),

(with ``g = 0`` this is the paper's ``w_hat + H_hat^{-1} sum_U grad f / (n - m)``; certun keeps
``g`` so the step is exactly Newton's on ``F_r``), then releases
``w_tilde = w_bar + N(0, sigma^2 I)`` with **fresh** noise per release (key folded by
release index) from the noiseless internal ``w_bar``. ``sigma`` is a property of the
algorithm, fixed by the deletion capacity ``m = max_removals``: it is calibrated to the
data-independent sensitivity :func:`certun.bounds.sekhari.sensitivity` at that ``m``
(which grows with ``m``, so it covers every smaller deletion set), with ``epsilon`` and
``delta`` per release (the analytic Gaussian mechanism by default; the classic one of the
paper on request, refused at ``epsilon >= 1``).

The guarantee is Sekhari et al.'s: each release is indistinguishable from the same
algorithm run with nothing to delete on the retrained model, ``A(S \ U) + N(0, sigma^2 I)``.
The reference is noised too, so **every** published model, the original one included
(release 0), goes through the same noise. The certificate also reports the composed
epsilon of all releases so far (PLD accounting), against the sequence of noised
retrained models; like every removal guarantee it does not hide a deletion from an
observer of the model before and after. Deleting more than ``max_removals`` rows returns
``"retrain_required"``.

Constants (``||x_i|| <= 1``): logistic ``L = 2 + tau``, ``M = 1/(6 sqrt 3)`` (exact
Lipschitz constant of ``l''``); ridge needs bounded labels ``|y| <= B`` and gives
``M = 0`` (the Newton step is exact; noise then covers only tolerances) and
``L = R + B + lambda R`` with ``R = B/sqrt(lambda) + tau/lambda``.

Reference: A. Sekhari, J. Acharya, G. Kamath, A. T. Suresh, NeurIPS 2021, arXiv:2103.03279.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.accounting.composition import compose_gaussian
from certun.accounting.gaussian import calibrate
from certun.bounds import sekhari as sb
from certun.certificate import check, make_certificate, verified
from certun.models import glm
from certun.primitives import curvature_cache
from certun.primitives.noise import gaussian_like
from certun.primitives.spectral import UNIT_ROUNDOFF
from certun.results import RESULTS
from certun.unlearners.base import Unlearner, UnlearnResult, published_view
from certun.unlearners.guo import _targets

__all__ = ["SekhariState", "newton_unlearning", "MECHANISM"]

#: Mechanism name in Sekhari et al. (2021) Newton-unlearning certificates.
MECHANISM = "sekhari2021_newton"


class SekhariState(NamedTuple):
    """State of :func:`newton_unlearning` (private as a whole).

    Attributes:
      X, Y: original rows and ``(n, K)`` targets (only rows in a request are read).
      removed: 1 for rows deleted so far.
      W_hat: the trained model; W_bar: noiseless unlearned model (``W_hat`` at first).
      g: training gradient ``grad F(w_hat)`` (mean scale).
      curv_eigvals, curv_eigvecs: eigendecomposition of ``X^T D X`` at ``w_hat`` per head.
      curv: the curvature matrices themselves (for residuals).
      published: the current noisy release; sensitivities, sigmas: per release so far.
      releases: number of releases (the original model is release 0).
      key: base key; release ``j`` uses ``fold_in`` release ``j``.
    """

    X: jax.Array
    Y: jax.Array
    removed: jax.Array
    W_hat: jax.Array
    W_bar: jax.Array
    g: jax.Array
    curv: jax.Array
    curv_eigvals: jax.Array
    curv_eigvecs: jax.Array
    published: jax.Array
    sensitivities: tuple
    sigmas: tuple
    releases: int
    key: jax.Array


def newton_unlearning(*, lam: float, epsilon: float, delta: float, loss: str = "logistic",
                      max_removals: int = 100, calibration: str = "analytic",
                      variant: str = "paper", hessian_lipschitz: float | None = None,
                      label_bound: float | None = None, train_tol: float = 1e-10,
                      solve_tol: float = 1e-9) -> Unlearner:
    """Sekhari et al. (2021) Newton-step unlearning with a stored Hessian and output noise.

    Args:
      lam: mean-scale L2 regularisation (the strong convexity), > 0.
      epsilon: epsilon (``> 0``) of every release's guarantee against noised retraining;
        the output noise is calibrated to it (``< 1`` with ``calibration="classic"``).
      delta: delta of every release's guarantee, in ``(0, 1)``.
      loss: ``"logistic"`` (binary or one-vs-rest) or ``"squared"`` (ridge; needs ``label_bound``).
      max_removals: deletion capacity ``m``; more deletions require retraining.
      calibration: ``"analytic"`` (Balle & Wang) or ``"classic"`` (the paper's
        ``sqrt(2 ln(1.25/delta))/epsilon``, only for ``epsilon < 1``).
      variant: ``"paper"`` (distance ``2mL/(lambda n)``) or ``"tight"`` (``mL/(lambda n)``).
      hessian_lipschitz: ``M``; default the loss's exact value (refused if smaller).
      label_bound: ``B`` with ``|y| <= B`` (ridge only; checked at ``init``).
      train_tol: guaranteed mean-scale gradient tolerance of training and retraining.
      solve_tol: guaranteed (checked per request) residual of the Newton system, mean scale.

    Returns:
      An :class:`~certun.unlearners.base.Unlearner` with ``init(X, y, key, num_classes=None)``,
      ``unlearn(state, indices, key=None)``, ``params(state)`` and ``retrain(state)``.
    """
    lam = _validate.positive(lam=lam)
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    lossf = glm.get_loss(_validate.choice(("logistic", "squared"), loss=loss))
    m_max = _validate.integer(max_removals=max_removals, minimum=1)
    calibration = _validate.choice(("analytic", "classic"), calibration=calibration)
    variant = _validate.choice(("paper", "tight"), variant=variant)
    tau = _validate.positive(train_tol=train_tol)
    stol = _validate.positive(solve_tol=solve_tol)
    M = lossf.gamma if hessian_lipschitz is None else _validate.non_negative(
        hessian_lipschitz=hessian_lipschitz)
    if M < lossf.gamma:
        raise _validate.ValidationError(
            f"hessian_lipschitz={M} is below the {lossf.name} loss's exact constant "
            f"{lossf.gamma:.6g}")
    if lossf.name == "squared":
        if label_bound is None:
            raise _validate.ValidationError(
                "label_bound is required for loss='squared': the Lipschitz constant needs "
                "bounded labels |y| <= B (clip them, e.g. certun.data.load_diabetes)")
        B = _validate.positive(label_bound=label_bound)
        L = sb.lipschitz_ridge(lam, B, tau)
    else:
        B = None
        L = sb.lipschitz_logistic(lam, tau)
    if calibration == "classic" and eps >= 1.0:
        raise _validate.ValidationError(
            "calibration='classic' needs epsilon < 1 (the classic Gaussian theorem); "
            "use calibration='analytic'")

    def _sens(n: int, m: int, heads: int) -> float:
        return sb.sensitivity(M, L, lam, n, m, tau, stol, variant, heads)

    @jax.jit
    def _train(X, Y, mask):
        return glm.fit(lossf, X, Y, lam, None, mask, method="newton", tol=tau)

    @jax.jit
    def _stats(W, X, Y):
        G = glm.curvature_gram(lossf, W, X, Y)
        # the stored Hessian T(S), factored once by the shared curvature cache
        fac = curvature_cache.init(G, lam, X.shape[0], method="eigh", max_rank=1)
        g = glm.gradient_mean(lossf, W, X, Y, lam)
        return G, fac.eigvals, fac.eigvecs, g

    @jax.jit
    def _newton(X, Y, W, g, curv, curv_eigvals, curv_eigvecs, idx):
        n = X.shape[0]
        m = idx.shape[0]
        xu, yu = X[idx], Y[idx]
        grad_u = xu.T @ lossf.d1(xu @ W, yu) + m * lam * W  # sum over U of grad f (d, K)
        rhs = (n * g - grad_u) / (n - m)  # grad F_r(w_hat), mean scale
        h = lossf.d2(xu @ W, yu)  # (m, K)
        # T(S) minus the removed rows' curvature, plus lam (n - m) I: the cache's downdate
        # (Woodbury over the m rows in eigen-coordinates) and its measured residual
        d, K = W.shape
        cache = curvature_cache.CurvatureCache(
            curv, curv_eigvals, curv_eigvecs, rows=jnp.zeros((m, d), W.dtype),
            h=jnp.zeros((m, K), W.dtype), proj=jnp.zeros((K, m, d), W.dtype),
            filled=jnp.asarray(0, jnp.int32))
        _, sol, _ = curvature_cache.downdate_solve(cache, rhs * (n - m), xu, h, lam, n - m,
                                                   jnp.zeros_like(W), kb=m)
        step = sol.value
        pd = (sol.result != RESULTS.not_positive_definite) & (sol.result != RESULTS.nonfinite)
        return (W - step, pd, sol.residual / (n - m), jnp.linalg.norm(rhs),
                jnp.linalg.norm(step))

    def _release(state: SekhariState, W_bar: jax.Array, release: int):
        n, K = int(state.X.shape[0]), int(state.W_hat.shape[1])
        sens = _sens(n, m_max, K)  # the algorithm's sigma: fixed by the capacity
        cal = calibrate(eps, dlt, sens, method=calibration)
        noise = gaussian_like(state.key, W_bar, cal.sigma, release=release)
        return W_bar + noise, sens, cal

    def init(X: Any, y: Any, key: jax.Array, num_classes: int | None = None) -> SekhariState:
        """Train ``w_hat``, store ``T(S)`` and publish release 0 (``w_hat`` plus noise)."""
        Xn = _validate.unit_rows(X=X, tol=0.0)
        yn = _validate.finite_array(y=y, ndim=(1, 2))
        _validate.matching_rows(X=Xn, y=yn)
        if B is not None and float(np.max(np.abs(yn))) > B:
            raise _validate.ValidationError(
                f"y has |y| = {float(np.max(np.abs(yn))):.4g} > label_bound = {B}; clip the labels "
                "to [-B, B] with a fixed, data-independent B")
        Yn = _targets(lossf, yn, num_classes)
        dtype = jnp.zeros(()).dtype
        if dtype != jnp.float64:
            raise _validate.ValidationError(
                "newton_unlearning needs float64 for its tolerances; call certun.enable_x64() "
                "(or set JAX_ENABLE_X64=1) before creating arrays")
        Xj, Yj = jnp.asarray(Xn, dtype), jnp.asarray(Yn, dtype)
        if m_max >= Xj.shape[0]:
            raise _validate.ValidationError(
                f"max_removals={m_max} must be smaller than the {Xj.shape[0]} training rows")
        fr = _train(Xj, Yj, jnp.ones(Xj.shape[0], dtype))
        G, w, Q, g = _stats(fr.params, Xj, Yj)
        # the measured gradient norm plus its rounding allowance must be within tau
        gn = float(jnp.linalg.norm(g))
        n, d = Xj.shape
        allowance = (n + d + 2) * UNIT_ROUNDOFF * (2.0 + lam * float(jnp.linalg.norm(fr.params)))
        if int(fr.result) != RESULTS.successful or gn + allowance > tau:
            raise RuntimeError(
                f"training did not reach train_tol={tau}: gradient norm {gn:.3e} (+ rounding "
                f"{allowance:.1e}); raise lam or loosen train_tol")
        base = SekhariState(Xj, Yj, jnp.zeros(Xj.shape[0], dtype), fr.params, fr.params, g, G, w,
                            Q, fr.params, (), (), 0, key)
        pub, sens, cal = _release(base, fr.params, 0)
        return base._replace(published=pub, sensitivities=(sens,), sigmas=(cal.sigma,), releases=1)

    def params(state: SekhariState) -> jax.Array:
        """The currently published (noisy) model."""
        return published_view(state.published)

    def retrain(state: SekhariState, key: jax.Array | None = None, noised: bool = False) -> Any:
        r"""Exact retraining ``A(S \ U)`` on the remaining rows (noiseless unless ``noised``).

        With ``noised`` and a ``key``, adds ``N(0, sigma^2)`` for the current ``m``: the
        reference distribution the certificate compares with.
        """
        mask = 1.0 - state.removed
        fr = _train(state.X, state.Y, mask)
        fr = fr._replace(params=published_view(fr.params))
        if not noised:
            return fr
        if key is None:
            raise _validate.ValidationError("key is required with noised=True")
        sig = calibrate(eps, dlt, _sens(int(state.X.shape[0]), m_max, int(state.W_hat.shape[1])),
                        method=calibration).sigma
        return fr._replace(params=fr.params + gaussian_like(key, fr.params, sig))

    def unlearn(state: SekhariState, indices: Any, key: jax.Array | None = None) -> UnlearnResult:
        """Delete ``indices`` (original row positions); release a freshly noised model."""
        del key
        t0 = time.perf_counter()
        n = int(state.X.shape[0])
        idx_new = _validate.forget_indices(indices, n,
                                           already_removed=np.asarray(state.removed) > 0)
        removed = np.asarray(state.removed).copy()
        removed[idx_new] = 1.0
        union = np.flatnonzero(removed)
        m = int(union.size)
        d, K = state.W_hat.shape
        x64 = state.X.dtype == jnp.float64

        def assumptions(solve_ok: bool, res: float, cap_ok: bool) -> list:
            a = [
                verified("unit_rows", "||x_i||_2 <= 1 for every training row"),
                verified("strong_convexity", f"f is lambda-strongly convex, lambda = {lam:g}"),
                verified("lipschitz", f"f is L-Lipschitz on the relevant region, L = {L:.6g}"
                         + (f" (|y| <= B = {B})" if B is not None else " (|l'| <= 1)"), L),
                verified("hessian_lipschitz",
                         f"grad^2 f is M-Lipschitz, M = {M:.6g} (exact for the {lossf.name} "
                         "loss)", M),
                verified("tolerance", f"training and retraining reach ||grad F|| <= tau = {tau:g} "
                         "by construction (they raise otherwise)", tau),
                check("solve_residual", f"Newton system residual <= solve_tol = {stol:g}",
                      solve_ok, res, stol, private=True),
                check("capacity", f"rows deleted m = {m} <= max_removals = {m_max}", cap_ok,
                      m, m_max),
                check("float64", "computed in float64 (enable jax_enable_x64)", x64),
            ]
            return a

        if m > m_max:
            cert = make_certificate(
                mechanism=MECHANISM, epsilon=eps, delta=dlt, sigma=float(state.sigmas[-1]),
                threat="indistinguishable_from_retraining", adjacency="removal", scale="mean",
                calibration=calibrate(eps, dlt, 1.0, method=calibration).method,
                releases=state.releases, removed=m, assumptions=assumptions(True, 0.0, False),
                extra_failure=f"retrain required: deletion capacity {m_max} exceeded")
            return UnlearnResult(None, state, cert, "retrain_required", {"m": m})

        W_bar, pd, res, rhs_norm, step_norm = jax.device_get(_newton(
            state.X, state.Y, state.W_hat, state.g, state.curv, state.curv_eigvals,
            state.curv_eigvecs, jnp.asarray(union, jnp.int32)))
        # rounding allowance of the residual: the stored curvature was formed from n rows
        # (entries <= d2_bound ||x||^2) and the products in the residual add d + m + 2 terms
        h_norm = lossf.d2_bound * n / (n - m) + lam
        res = float(res) + (n + d + m + 4) * UNIT_ROUNDOFF * (
            h_norm * float(step_norm) + float(rhs_norm))
        solve_ok = bool(pd) and np.isfinite(res) and res <= stol
        release = state.releases
        pub, sens, cal = _release(state, jnp.asarray(W_bar), release)
        sens_all = state.sensitivities + (sens,)
        sig_all = state.sigmas + (cal.sigma,)
        comp = compose_gaussian([s / t for s, t in zip(sig_all, sens_all, strict=True)], dlt)
        bounds = {"sensitivity": sens, "capacity": m_max, "heads": K,
                  "gamma_paper_at_capacity": sb.gamma_paper(M, L, lam, n, m_max),
                  "sensitivity_for_current_m": _sens(n, m, K),
                  "distance_bound": sb.distance_bound(L, lam, n, m_max, tau, variant),
                  "variant": variant, "M": M, "L": L}
        cert = make_certificate(
            mechanism=MECHANISM, epsilon=eps, delta=dlt, sigma=cal.sigma,
            threat="indistinguishable_from_retraining", adjacency="removal", scale="mean",
            calibration=cal.method, sensitivity=sens, releases=release + 1,
            epsilon_composed=comp.epsilon, delta_composed=comp.delta, removed=m,
            assumptions=assumptions(solve_ok, res, True), bounds=bounds,
            solver={"path": "eigh_woodbury", "residual": res},
            private={"rhs_norm": float(rhs_norm)},
            notes=("Each release is (epsilon, delta)-indistinguishable from A(S minus U) plus the "
                   "same Gaussian noise (Sekhari et al.'s definition: sigma is fixed by the "
                   "capacity and the original model is published with that noise too).",
                   "epsilon_composed covers an observer of all releases so far, against the "
                   "sequence of noised retrained models; it does not hide a deletion from an "
                   "observer of the model before and after.",
                   "Fresh noise per release from the noiseless internal model."),
        )
        diagnostics = {"seconds": time.perf_counter() - t0, "m": m, "sensitivity": sens,
                       "sigma": cal.sigma, "solve_residual": res}
        if not solve_ok or not x64:
            return UnlearnResult(None, state, cert, "retrain_required", diagnostics)
        new_state = state._replace(removed=jnp.asarray(removed, state.X.dtype),
                                   W_bar=jnp.asarray(W_bar), published=pub,
                                   sensitivities=sens_all, sigmas=sig_all, releases=release + 1)
        return UnlearnResult(params(new_state), new_state, cert, "unlearned", diagnostics)

    return Unlearner(init=init, unlearn=unlearn, params=params, retrain=retrain)
