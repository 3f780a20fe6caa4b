r"""Langevin unlearning (Chien, Wang, Chen & Li, NeurIPS 2024) for L2-logistic models.

Learning and unlearning are the same (projected) noisy gradient descent on certun's
mean-scale objective ``J_D(w) = mean_i l(w; z_i) + (lam/2)||w||^2`` (``m = lam``-strongly
convex, ``L``-smooth, step ``eta = 1/L``):

.. math::
    w_{t+1} = \Pi\big(w_t - \eta\, g_D(w_t) + \sqrt{2\eta\sigma^2}\,\xi_t\big),\qquad
    w_0 \sim \mathcal N\big(0, \tfrac{2\sigma^2}{m} I\big),

with ``g_D = grad J_D`` (no clipping, the default) or, as in the authors' code, the mean of
per-example gradients ``grad l_i + lam w`` clipped at ``clip_norm``; ``Pi`` projects on a
ball of radius ``projection_radius`` (off by default, as in the code). ``init`` runs
``burn_in`` steps on the training data. A request (rows removed, or replaced with
``adjacency="replacement"``) continues the same chain on the new data for the ``K`` steps
:func:`certun.accounting.langevin.steps_needed` computes for the target epsilon, with the
sequential weak-triangle recursion over all requests so far. The published model is the
current noisy iterate; nothing else is added.

**Certificate.** The law of the published iterate is ``(epsilon, delta)``-indistinguishable
(both directions; Renyi bound converted by ``conversion``) from the law of **retraining
from scratch**: the same noisy gradient descent, from the same initial distribution, run on
the current data for the same total number of steps (``retrain`` draws from it). It compares
*distributions* over the algorithm's noise, not two particular models. Like every removal
guarantee it does not hide a deletion from someone who saw the model before and after.

**Clipping.** The accounting needs the drift to be the gradient of an ``m``-strongly convex,
``L``-smooth function (contraction and log-Sobolev constants) and bounds the drift
difference with the per-example *loss* gradient bound ``M`` (the regulariser cancels,
since ``lam`` is the same before and after). Clipping ``grad l_i + lam w`` changes the drift,
and no analysis here covers an active clip: with ``clip_norm`` set, the certificate records
the largest per-example norm over every step since initialisation and **fails** if the clip
was ever active. For logistic loss with ``||x_i|| <= 1``, ``||grad l_i|| <= 1`` everywhere,
so no clip is needed (``clip_norm=None``, the default).

Derivations: ``proofs/langevin_unlearning.md``.

Reference: E. Chien, H. Wang, Z. Chen, P. Li, NeurIPS 2024, arXiv:2401.10371.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.accounting import langevin as acct
from certun.certificate import assumed, check, make_certificate, verified
from certun.models import glm
from certun.primitives.noise import gaussian_like, release_key
from certun.primitives.spectral import spectral_norm_upper_bound
from certun.unlearners.base import Unlearner, UnlearnResult, published_view
from certun.unlearners.guo import _targets

__all__ = ["LangevinState", "NoisyRun", "langevin_unlearning", "noisy_gd", "MECHANISM"]

#: Mechanism name in Langevin unlearning certificates (Chien et al. 2024).
MECHANISM = "chien2024_langevin"

_THREAT_NOTE = (
    "Compared distributions: the law of the published iterate (over the algorithm's Gaussian "
    "noise: initialisation N(0, 2 sigma^2/m I), burn-in on the original data, K_s steps on the "
    "data after each request) versus the law of retraining from scratch: the same noisy "
    "gradient descent from the same initial distribution, on the current data, for the same "
    "total number of steps. It does NOT hide a deletion from an observer of the model before "
    "and after."
)


class NoisyRun(NamedTuple):
    """Outcome of a run of noisy gradient descent.

    Attributes:
      params: the final iterate, ``(d, K)``.
      steps: steps run.
      max_grad_norm: largest per-example ``||grad l_i(w_t) + lam w_t||`` over the steps and
        the rows present (what a clip at ``clip_norm`` would compare).
      clipped_steps: steps on which the clip was active (0 without a clip).
    """

    params: jax.Array
    steps: int
    max_grad_norm: float
    clipped_steps: int


class LangevinState(NamedTuple):
    """State of :func:`langevin_unlearning` (private as a whole).

    Attributes:
      X, Y: training rows and ``(n, K)`` targets (replaced rows overwritten).
      mask: 1 for rows present, 0 for removed rows.
      W: the current noisy iterate (the published model).
      key: base key; phase ``j`` (0 training, ``j`` request ``j``) uses ``fold_in(key, j)``,
        step ``t`` of a phase a further fold.
      requests: the accounting's history (:class:`certun.accounting.langevin.Request`).
      steps_total: noisy-GD steps since initialisation.
      max_grad_norm: largest per-example gradient norm over all those steps.
      clipped_steps: steps on which the clip was active.
      n_replaced: rows replaced so far (replacement adjacency).
      eta, L: the step size and the smoothness bound it was chosen from (fixed at ``init``).
      spectral_sq: guaranteed upper bound on ``||X||_2^2`` of the training data (0 with
        ``smoothness="loose"``).
    """

    X: jax.Array
    Y: jax.Array
    mask: jax.Array
    W: jax.Array
    key: jax.Array
    requests: tuple
    steps_total: int
    max_grad_norm: float
    clipped_steps: int
    n_replaced: int
    eta: float
    L: float
    spectral_sq: float


@functools.partial(jax.jit, static_argnames=("loss", "clip", "project", "noisy"))
def _noisy_gd_run(W, X, Y, mask, key, num_steps, lam, eta, noise_std, clip_norm, radius, *,
                  loss: str, clip: bool, project: bool, noisy: bool):
    lossf = glm.get_loss(loss)
    rn2 = jnp.sum(X * X, axis=1)
    present = mask > 0
    n = jnp.sum(mask)

    def body(t, carry):
        W, mx, nc = carry
        A = X @ W
        D1 = lossf.d1(A, Y)
        # ||l'_i x_i^T + lam W||_F^2 for every row, from the margins (no per-example tensors)
        sq = (rn2 * jnp.sum(D1 * D1, axis=1) + 2.0 * lam * jnp.sum(D1 * A, axis=1)
              + lam * lam * jnp.sum(W * W))
        norms = jnp.sqrt(jnp.maximum(sq, 0.0))
        if clip:
            wts = mask * jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-300))
            clipped = jnp.any(present & (norms > clip_norm))
        else:
            wts, clipped = mask, jnp.zeros((), bool)
        g = (jnp.einsum("ik,ij->jk", D1 * wts[:, None], X) + lam * jnp.sum(wts) * W) / n
        W = W - eta * g
        if noisy:
            W = W + gaussian_like(key, W, noise_std, release=t + 1)
        if project:
            W = W * jnp.minimum(1.0, radius / jnp.maximum(jnp.linalg.norm(W), 1e-300))
        mx = jnp.maximum(mx, jnp.max(jnp.where(present, norms, 0.0)))
        return W, mx, nc + clipped.astype(jnp.int32)

    zero = jnp.zeros((), W.dtype)
    return jax.lax.fori_loop(0, num_steps, body, (W, zero, jnp.zeros((), jnp.int32)))


def noisy_gd(lossf: glm.ScalarLoss, lam: float, eta: float, noise_std: float,
             clip_norm: float | None = None, radius: float | None = None):
    """A ``run(W, X, Y, mask, key, num_steps) -> (W, max_norm, clipped_steps)`` function.

    One step: ``W <- Pi(W - eta g(W) + noise_std xi_t)`` with ``xi_t`` drawn by
    :func:`certun.primitives.noise.gaussian_like` (``release = t + 1`` of ``key``), ``g`` the
    mean over present rows of the per-example gradients ``grad l_i + lam W`` (clipped at
    ``clip_norm`` if given; without a clip this is ``certun.models.glm.gradient_mean``), and
    ``Pi`` the projection on the ball of radius ``radius`` (none if ``None``). ``noise_std = 0``
    gives plain (projected) gradient descent. The loop is a ``lax.fori_loop`` in one jitted
    function shared by all calls: ``num_steps`` and the constants vary without recompiling.
    ``max_norm`` is the largest per-example ``||grad l_i + lam W||`` over the steps (what a
    clip compares), ``clipped_steps`` the steps on which the clip was active.
    """
    consts = (float(lam), float(eta), float(noise_std),
              0.0 if clip_norm is None else float(clip_norm),
              0.0 if radius is None else float(radius))
    flags = dict(loss=lossf.name, clip=clip_norm is not None, project=radius is not None,
                 noisy=noise_std > 0)

    def run(W, X, Y, mask, key, num_steps):
        return _noisy_gd_run(W, X, Y, mask, key, jnp.asarray(num_steps, jnp.int32), *consts,
                             **flags)

    return run


def langevin_unlearning(*, lam: float, sigma: float, epsilon: float, delta: float,
                        burn_in: int = 10_000, adjacency: str = "removal",
                        smoothness: str = "loose", max_removals: int | None = None,
                        lipschitz: float | None = None, clip_norm: float | None = None,
                        projection_radius: float | None = None, conversion: str = "simple",
                        recursion: str = "paper", min_steps: int = 1,
                        max_steps: int = 1_000_000, loss: str = "logistic",
                        extract: Any = None, extractor_params: Any = None) -> Unlearner:
    """Langevin unlearning: noisy gradient descent for learning and unlearning.

    Args:
      lam: mean-scale L2 regularisation, the strong convexity ``m`` (the paper's
        ``lambda n``: :func:`certun.scale.lam_from_langevin`).
      sigma: the Langevin noise parameter (step noise ``sqrt(2 eta sigma^2)``).
      epsilon: target epsilon (``> 0``) of every request: each one runs the fewest steps
        ``K`` (:func:`certun.accounting.langevin.steps_needed`) whose accounted epsilon
        reaches it.
      delta: target delta of every request's guarantee, in ``(0, 1)``.
      burn_in: training steps ``T`` (the authors use 10,000).
      adjacency: ``"removal"`` (``unlearn`` drops rows) or ``"replacement"`` (``unlearn``
        swaps rows for ``replacement`` rows, ``n`` fixed: the authors' experiments).
      smoothness: ``"loose"`` (``L = 1/4 + lam``, data-independent, default) or ``"data"``
        (``L = s^2 / (4 n_min) + lam`` with ``s`` a guaranteed upper bound on ``||X||_2`` and
        ``n_min`` the fewest rows up to the capacity, as the authors' run). ``"data"`` makes
        ``eta`` a function of the training data: the certificate is then *conditional* on
        treating it as a public constant.
      max_removals: capacity for ``smoothness="data"`` (default ``n // 10``).
      lipschitz: ``M``, the per-example loss-gradient bound of the accounting (default the
        verified ``sup|l'| max||x_i|| sqrt(K) = sqrt(K)``; smaller values are refused).
      clip_norm: clip per-example ``grad l_i + lam w`` at this norm (the authors' ``M = 1``);
        the certificate then fails if the clip was ever active. ``None``: no clip.
      projection_radius: project the iterates on this ball (``None``: no projection).
      conversion: RDP-to-DP conversion that sets ``K`` and the certified epsilon:
        ``"simple"`` (Mironov, the paper's) or ``"tight"`` (dp-accounting). The
        certificate reports both.
      recursion: ``"paper"`` or ``"tight"`` weak triangle recursion (sequential requests).
      min_steps: smallest ``K`` per request (the authors run at least one step).
      max_steps: the most steps a request may take; beyond, it is refused.
      loss: ``"logistic"`` (binary labels ``+-1``, or class ids for one-vs-rest).
      extract: the user's own frozen network as a feature extractor: a flax linen ``Module``
        (its output layer the features), an nnx ``GraphDef`` or a pure ``f(params, x) ->
        features`` (:func:`certun.nn.byo.as_apply`), with ``extractor_params`` the
        parameters the user trained with their own loop. ``init`` and ``unlearn`` then take
        raw inputs, and the model is the convex head on ``normalize_rows(extract(params, x))``
        (a per-row map, so ``||phi(x_i)|| <= 1``). The extractor must be public: trained on
        data disjoint from the training rows and never deleted from (the certificate says
        so; :func:`certun.unlearners.frozen_extractor_head` covers a DP extractor). The
        Langevin analysis needs strong convexity, so only the head is unlearned: the
        network's own weights are never moved.
      extractor_params: the extractor's parameters (with ``extract``).

    Returns:
      An :class:`~certun.unlearners.base.Unlearner`: ``init(X, y, key, num_classes=None)``,
      ``unlearn(state, indices, key=None, replacement=None)``, ``params(state)``,
      ``retrain(state, key, steps=None)``.
    """
    m = _validate.positive(lam=lam)
    sig = _validate.positive(sigma=sigma)
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    T = _validate.integer(burn_in=burn_in, minimum=0)
    adjacency = _validate.choice(acct.LANGEVIN_ADJACENCIES, adjacency=adjacency)
    smoothness = _validate.choice(("loose", "data"), smoothness=smoothness)
    conversion = _validate.choice(acct.CONVERSIONS, conversion=conversion)
    recursion = _validate.choice(acct.RECURSIONS, recursion=recursion)
    lossf = glm.get_loss(_validate.choice(("logistic",), loss=loss))
    k_min = _validate.integer(min_steps=min_steps, minimum=0)
    k_max = _validate.integer(max_steps=max_steps, minimum=max(k_min, 1))
    clip = None if clip_norm is None else _validate.positive(clip_norm=clip_norm)
    radius = None if projection_radius is None else _validate.positive(
        projection_radius=projection_radius)
    if max_removals is not None:
        _validate.integer(max_removals=max_removals, minimum=1)
    init_std = math.sqrt(acct.lsi_constant(sig, m))  # w_0 ~ N(0, (2 sigma^2/m) I)

    def _runner(eta: float):
        return noisy_gd(lossf, m, eta, math.sqrt(2.0 * eta) * sig, clip, radius)

    def _grad_bound(K: int) -> float:
        # |l'| <= 1 and ||x_i|| <= 1 (validated for every row, replacements included)
        assert lossf.d1_bound is not None
        return lossf.d1_bound * math.sqrt(K)

    def _M(K: int) -> float:
        G = _grad_bound(K)
        if lipschitz is None:
            return G
        Mv = _validate.positive(lipschitz=lipschitz)
        if Mv < G:
            raise _validate.ValidationError(
                f"lipschitz={Mv} is below the per-example loss-gradient bound {G:.6g} "
                "(sup|l'| ||x|| sqrt(K)); the drift sensitivity would not hold")
        return Mv

    def _run(W0, mask, X, Y, phase_key, steps: int, eta: float) -> NoisyRun:
        W, mx, nc = _runner(eta)(W0, X, Y, mask, phase_key, steps)
        return NoisyRun(W, steps, float(mx), int(nc))

    def init(X: Any, y: Any, key: jax.Array, num_classes: int | None = None) -> LangevinState:
        """Draw ``w_0 ~ N(0, 2 sigma^2/m I)`` and run ``burn_in`` noisy-GD steps on ``(X, y)``.

        Args:
          X: ``(n, d)`` features with ``||x_i||_2 <= 1`` (``certun.data.normalize_rows``).
          y: labels ``+-1`` (binary) or class ids (one-vs-rest, with ``num_classes``).
          key: PRNG key of the mechanism's noise.
          num_classes: number of classes for one-vs-rest.
        """
        Xn = _validate.unit_rows(X=X, tol=0.0)
        yn = _validate.finite_array(y=y, ndim=(1, 2))  # 2-D: refused by _targets
        _validate.matching_rows(X=Xn, y=yn)
        n = Xn.shape[0]
        if n < 2:
            raise _validate.ValidationError("X needs at least 2 rows")
        Yn = _targets(lossf, yn, num_classes)
        dtype = jnp.zeros(()).dtype
        if dtype != jnp.float64:
            raise _validate.ValidationError(
                "langevin_unlearning needs float64 (its certificate carries a float64 "
                "assumption); call certun.enable_x64() before creating arrays")
        K = Yn.shape[1]
        _M(K)  # validates lipschitz
        s2 = 0.0
        if smoothness == "loose":
            L = lossf.d2_bound + m
        else:
            cap = max(1, n // 10) if max_removals is None else max_removals
            if cap >= n:
                raise _validate.ValidationError(
                    f"max_removals={cap} must be smaller than the {n} training rows")
            s2 = float(spectral_norm_upper_bound(Xn).value) ** 2
            if adjacency == "removal":  # fewest rows up to the capacity
                L = min(lossf.d2_bound * s2 / (n - cap), lossf.d2_bound) + m
            else:  # n fixed; each replaced unit row adds at most 1 to lambda_max
                L = min(lossf.d2_bound * (s2 + cap) / n, lossf.d2_bound) + m
        eta = 1.0 / L
        Xj, Yj = jnp.asarray(Xn, dtype), jnp.asarray(Yn, dtype)
        mask = jnp.ones(n, dtype)
        pk = release_key(key, 0)
        W0 = gaussian_like(pk, jnp.zeros((Xn.shape[1], K), dtype), init_std, release=0)
        run = _run(W0, mask, Xj, Yj, pk, T, eta)
        return LangevinState(X=Xj, Y=Yj, mask=mask, W=run.params, key=key, requests=(),
                             steps_total=T, max_grad_norm=run.max_grad_norm,
                             clipped_steps=run.clipped_steps, n_replaced=0, eta=eta, L=L,
                             spectral_sq=s2)

    def params(state: LangevinState) -> jax.Array:
        """The published model (the current noisy iterate): ``(d,)`` or ``(d, K)``."""
        return published_view(state.W)

    def retrain(state: LangevinState, key: jax.Array, steps: int | None = None) -> NoisyRun:
        """A draw from the reference distribution: noisy GD from a fresh ``w_0``.

        ``w_0`` is drawn with ``key``; the chain runs on the current data for ``steps``
        steps (default: ``state.steps_total``, the number the certificate compares with).
        """
        k = state.steps_total if steps is None else _validate.integer(steps=steps, minimum=0)
        d, K = state.W.shape
        W0 = gaussian_like(key, jnp.zeros((d, K), state.W.dtype), init_std, release=0)
        run = _run(W0, state.mask, state.X, state.Y, key, k, state.eta)
        return run._replace(params=published_view(run.params))

    def _smoothness_now(state: LangevinState, n_now: int, n_replaced: int) -> float:
        if smoothness == "loose":
            return lossf.d2_bound + m
        # lambda_max(X_now^T X_now) <= ||X_orig||_2^2 + (rows replaced): removing rows cannot
        # raise it, each unit-norm replacement row adds at most 1
        return min(lossf.d2_bound * (state.spectral_sq + n_replaced) / n_now,
                   lossf.d2_bound) + m

    def unlearn(state: LangevinState, indices: Any, key: jax.Array | None = None,
                replacement: tuple[Any, Any] | None = None) -> UnlearnResult:
        """Serve a request: remove (or replace) rows ``indices`` and run ``K`` steps.

        Args:
          state: the current state.
          indices: rows of the original training set.
          key: unused (the noise of request ``j`` is ``fold_in(state.key, j)``).
          replacement: ``(X_new, y_new)`` rows for ``adjacency="replacement"``.

        Returns:
          An :class:`~certun.unlearners.base.UnlearnResult`; when the request cannot be
          certified (``K > max_steps``, a step size above ``1/L``, an active clip) ``params``
          is ``None``, the state is unchanged and the certificate says why.
        """
        del key
        t0 = time.perf_counter()
        n_total = int(state.X.shape[0])
        mask_np = np.asarray(state.mask) > 0
        idx = _validate.forget_indices(indices, n_total, already_removed=~mask_np)
        S = int(idx.size)
        n_before = int(mask_np.sum())
        d, Kh = state.W.shape
        X, Y, mask = state.X, state.Y, state.mask
        n_replaced = state.n_replaced
        if adjacency == "removal":
            if replacement is not None:
                raise _validate.ValidationError(
                    "replacement is only used with adjacency='replacement'")
            if S >= n_before:
                raise _validate.ValidationError(
                    f"indices would remove all {n_before} remaining rows; keep at least one")
            mask = mask.at[jnp.asarray(idx)].set(0.0)
            n_after = n_before - S
        else:
            if replacement is None:
                raise _validate.ValidationError(
                    "adjacency='replacement' needs replacement=(X_new, y_new) with one row per "
                    "index")
            Xr = _validate.unit_rows(replacement_X=replacement[0], tol=0.0)
            yr = _validate.finite_array(replacement_y=replacement[1], ndim=1)
            if Xr.shape != (S, d) or yr.shape[0] != S:
                raise _validate.ValidationError(
                    f"replacement must hold {S} rows of {d} features and {S} labels, got "
                    f"{Xr.shape} and {yr.shape}")
            Yr = _targets(lossf, yr, Kh if Kh > 1 else None, complete=False,
                     name="replacement_y")
            X = X.at[jnp.asarray(idx)].set(jnp.asarray(Xr, X.dtype))
            Y = Y.at[jnp.asarray(idx)].set(jnp.asarray(Yr, Y.dtype))
            n_after = n_before
            n_replaced += S

        M = _M(Kh)
        L_now = _smoothness_now(state, n_after, n_replaced)
        step_ok = state.eta * L_now <= 1.0
        k_fail = None
        try:
            K = acct.steps_needed(eps, sigma=sig, m=m, eta=state.eta, n=n_before, delta=dlt,
                                  changed=S, M=M, adjacency=adjacency, previous=state.requests,
                                  recursion=recursion, conversion=conversion,
                                  min_steps=k_min, max_steps=k_max)
        except _validate.ValidationError as exc:
            K, k_fail = k_max, str(exc)
        reqs = state.requests + (acct.Request(K, S, n_before),)
        common: dict[str, Any] = dict(sigma=sig, m=m, eta=state.eta, delta=dlt, M=M,
                                      adjacency=adjacency, recursion=recursion)
        e_simple = acct.langevin_epsilon(reqs, conversion="simple", **common)
        e_tight = acct.langevin_epsilon(reqs, conversion="tight", **common)
        e_cert = e_simple if conversion == "simple" else e_tight

        ran = k_fail is None and step_ok
        if ran:
            pk = release_key(state.key, len(reqs))
            run = _run(state.W, mask, X, Y, pk, K, state.eta)
            max_norm = max(state.max_grad_norm, run.max_grad_norm)
            clipped = state.clipped_steps + run.clipped_steps
        else:
            run, max_norm, clipped = None, state.max_grad_norm, state.clipped_steps
        x64 = state.X.dtype == jnp.float64

        a = [
            verified("unit_rows", "||x_i||_2 <= 1 for every row (training and replacement)"),
            verified("strong_convexity", f"J is m-strongly convex, m = lam = {m:g} (mean scale)"),
            check("smoothness", f"eta = {state.eta:.6g} <= 1/L for the current data, "
                  f"L <= {L_now:.6g} ({smoothness})", step_ok, L_now, 1.0 / state.eta),
            verified("loss_gradient_bound",
                     f"||grad l_i(w)|| <= M = {M:.6g} for every w and row (|l'| <= 1, ||x|| <= 1)",
                     M),
            verified("initial_distribution",
                     f"w_0 ~ N(0, (2 sigma^2/m) I): log-Sobolev constant <= C_LSI = "
                     f"{acct.lsi_constant(sig, m):.6g} for every iterate"),
            check("steps", f"K = {K} steps reach epsilon = {eps:g} within max_steps = {k_max}",
                  k_fail is None, K, k_max),
            check("float64", "iterates computed in float64 (enable jax_enable_x64)", x64),
        ]
        if clip is not None:
            a.append(check(
                "clip_inactive",
                f"the per-example clip at {clip:g} was inactive on every step since "
                "initialisation (the count of active steps is private); the accounting needs "
                "the unclipped, strongly convex drift and no analysis here covers an active clip",
                clipped == 0, max_norm, clip, private=True))
        if smoothness == "data":
            a.append(assumed(
                "public_step_size",
                "eta = 1/L uses a spectral bound of the training data; the guarantee treats "
                "it as a public constant (the retraining reference uses the same eta)",
                state.eta))
        sens = acct.drift_sensitivity(n_before, S, M, adjacency)
        bounds = {
            "K": K, "steps_total": state.steps_total + (K if ran else 0),
            "epsilon_simple": e_simple.epsilon, "order_simple": e_simple.order,
            "epsilon_tight": e_tight.epsilon, "order_tight": e_tight.order,
            "target_epsilon": eps, "eta": state.eta, "L": state.L, "L_now": L_now, "m": m,
            "M": M, "drift_sensitivity": sens, "lsi_constant": acct.lsi_constant(sig, m),
            "requests": [list(r) for r in reqs], "recursion": recursion,
            "max_grad_norm": max_norm, "clipped_steps": clipped,
        }
        cert = make_certificate(
            mechanism=MECHANISM, epsilon=e_cert.epsilon, delta=dlt, sigma=sig,
            threat="indistinguishable_from_retraining", adjacency=adjacency, scale="mean",
            calibration="langevin_rdp", conversion=e_cert.conversion, sensitivity=sens,
            releases=len(reqs) + 1, removed=int(n_total - int(np.asarray(mask).sum())),
            assumptions=a, bounds=bounds,
            solver={"K": K, "steps_total": bounds["steps_total"]},
            private={"max_grad_norm": max_norm},
            notes=(
                _THREAT_NOTE,
                f"epsilon = {e_simple.epsilon:.6g} with Mironov's conversion (order "
                f"{e_simple.order:.4g}); {e_tight.epsilon:.6g} with dp-accounting's tight "
                f"conversion of the same RDP curve (order {e_tight.order:.4g}); the "
                f"certified value uses '{e_cert.conversion}'.",
                f"scale: mean (m = lam = {m:g}; the paper's lambda = lam / n); the step noise "
                f"is sqrt(2 eta sigma^2) = {math.sqrt(2 * state.eta) * sig:.6g}.",
            ),
            extra_failure=None if k_fail is None else f"retrain required: {k_fail}",
        )
        diagnostics = {"K": K, "S": S, "n_before": n_before, "n_after": n_after,
                       "epsilon_simple": e_simple.epsilon, "epsilon_tight": e_tight.epsilon,
                       "max_grad_norm": max_norm, "clipped_steps": clipped,
                       "seconds": time.perf_counter() - t0}
        if not cert.valid and cert.status == "fails":
            return UnlearnResult(None, state, cert, "retrain_required", diagnostics)
        assert run is not None  # a failed request returned above
        new_state = state._replace(X=X, Y=Y, mask=mask, W=run.params, requests=reqs,
                                   steps_total=state.steps_total + K, max_grad_norm=max_norm,
                                   clipped_steps=clipped, n_replaced=n_replaced)
        return UnlearnResult(params(new_state), new_state, cert, "unlearned", diagnostics)

    if extract is None:
        if extractor_params is not None:
            raise _validate.ValidationError("extractor_params needs extract (the user's model)")
        return Unlearner(init=init, unlearn=unlearn, params=params, retrain=retrain)
    return _on_features(Unlearner(init=init, unlearn=unlearn, params=params, retrain=retrain),
                        extract, extractor_params)


def _on_features(head: Unlearner, extract: Any, extractor_params: Any) -> Unlearner:
    """``head`` on the features of the user's frozen, public extractor (raw inputs in)."""
    import dataclasses

    from certun.nn.byo import as_apply
    from certun.unlearners.frozen_head import extract_features

    if extractor_params is None:
        raise _validate.ValidationError(
            "extract needs extractor_params (the parameters of the user's trained model)")
    _validate.finite_tree(extractor_params=extractor_params)
    f = as_apply(extract)
    note = ("feature extractor: the user's frozen network, declared public by the caller "
            "(trained on data disjoint from the training rows, never deleted from); the "
            "certificate covers the convex head on its row-normalised features")

    def feats(X: Any) -> np.ndarray:
        return extract_features(f, extractor_params, X)

    def init(X: Any, y: Any, key: jax.Array, num_classes: int | None = None) -> LangevinState:
        return head.init(feats(X), y, key, num_classes=num_classes)

    def unlearn(state: LangevinState, indices: Any, key: jax.Array | None = None,
                replacement: tuple[Any, Any] | None = None) -> UnlearnResult:
        rep = None if replacement is None else (feats(replacement[0]), replacement[1])
        res = head.unlearn(state, indices, key, replacement=rep)
        cert = dataclasses.replace(
            res.certificate, mechanism=f"frozen_public_extractor+{res.certificate.mechanism}",
            public_inputs=dict(res.certificate.public_inputs, extractor="public"),
            notes=tuple(res.certificate.notes) + (note,))
        return res._replace(certificate=cert)

    return Unlearner(init=init, unlearn=unlearn, params=head.params, retrain=head.retrain)
