r"""Zhang et al. (ICML 2024): certified unlearning for neural networks by a damped Newton step.

Learning (:func:`certun.nn.train`): Adam on the mean-scale objective
:math:`F(w;D)=\frac1{|D|}\sum_{i\in D}\ell(f_w(x_i),y_i)+\frac\kappa2\lVert w\rVert^2` with
projection onto :math:`\lVert w\rVert_2\le C` after every step; the original model
:math:`w^*` is published as trained (release 0, noiseless, as in the paper).

Unlearning a set :math:`U_k` (request :math:`k`; rows of the original training set), from
the **noiseless** internal model :math:`w_{k-1}` (:math:`w_0=w^*`), with
:math:`F_r=F(\cdot;D_{k-1}\setminus U_k)`, :math:`H=\nabla^2F_r(w_{k-1})` and the local convex
approximation :math:`\lambda` (the paper's ``gamma``):

.. math::
    x \approx (H+\lambda I)^{-1} g,\qquad w_k = P_C(w_{k-1} - x),\qquad
    \text{release}_k = w_k + \mathcal N(0,\sigma^2 I)\ \text{(fresh noise, key folded by } k),

with ``gradient="forget"`` (default): the paper's displayed form
:math:`g=-\frac{m_k}{n_r}\nabla F(w_{k-1};U_k)=\nabla F_r(w_{k-1})-\frac{n_{k-1}}{n_r}
\nabla F(w_{k-1};D_{k-1})` (identical when :math:`w_{k-1}` is stationary; it does not try to
finish an unconverged training run, and moves a network trained by Adam much closer to
its retrained counterpart, see ``experiments/zhang2024``), or ``gradient="retained"``:
:math:`g=\nabla F_r(w_{k-1})` (the authors' code), which also tries to finish an
unconverged training run and then moves *away* from the retrained model.

Inverse-Hessian-vector products (``solver``):

* ``"cg"`` -- conjugate gradients on the exact damped Hessian :math:`H+\lambda I`
  (:func:`certun.primitives.pcg`); a curvature :math:`p^\top(H+\lambda I)p\le0` proves the
  matrix indefinite and the request fails.
* ``"lissa"`` -- the paper's estimator (:func:`certun.primitives.lissa_solver`): ``s1``
  chains (``lissa_repeats``) of depth ``s2`` (``lissa_depth``), scale ``H``
  (``lissa_scale``; estimated by power iteration if ``None``), minibatch Hessians of
  ``lissa_batch_size`` rows drawn **with replacement** from the retained rows, plus
  :math:`\lambda I`. Koh & Liang's recursion returns :math:`(H+\lambda I+d\,s\,I)^{-1}g` for
  damping ``d`` (``lissa_damping``, default 0). The paper's defaults (``s1=10, s2=1000,
  scale=1000, batch 10``) **truncate** the Neumann series: along an eigenvalue :math:`h` of
  :math:`H+\lambda I` the gain is :math:`(1-(1-h/s)^{s_2+1})/h\approx s_2/s = 1` instead of
  :math:`1/h` -- a spectral filter that barely moves the model (docs/bibliography.md §4.3 quirk 2).
  The residual is always measured on the exact operator.
* ``"ggn"`` -- CG on the Gauss-Newton matrix plus :math:`(\kappa+\lambda)I` (always PD); a
  Gauss-Newton step, to which the Hessian-based bound does **not** apply.

**Certificate** (threat ``indistinguishable_from_retraining``: release :math:`k` against
:math:`A(D_k)+\mathcal N(0,\sigma^2I)`, with :math:`A` = :func:`certun.nn.train` from the same
``key``). Both :math:`w_k` and :math:`A(D_k)` lie in the ball, so :math:`2C'` (:math:`C'` the
rounding-safe radius) is always a valid sensitivity, resting only on verified facts; the
distance bound of :func:`certun.bounds.zhang.distance_bound`,
:math:`(2C(MC+\lambda)+G_r+\lVert r\rVert+b)/(\lambda+\lambda_{\min})`, rests on an *assumed*
Hessian-Lipschitz constant :math:`M`, an assumed retrained gradient norm :math:`G_r`, and
:math:`\lambda_{\min}` (verified by ``lam_min="exact"``, a dense float64 bound for tiny
models; *assumed* for a Lanczos estimate, which over-estimates it, or a user value).

The **public** certificate (sensitivity, epsilon, epsilon_composed, status, assumptions)
always rests on :math:`2C'`, a function of the configuration only: the bound depends on
:math:`\lambda_{\min}` at the data and on the solve residual, so a public claim built on it
(or a status that switched with it) would be data-dependent (``proofs/README.md``, "Noise
scales and public fields"). The bound is evaluated privately: ``bounds["distance_bound"]``,
``bounds["which"]`` (``"bound"`` when it is below :math:`2C'`, which needs a locally strongly
convex problem: :math:`MC<\lambda_{\min}`; never for a network with :math:`\lambda_{\min}\le0`),
``bounds["epsilon_at_bound"]`` (the epsilon ``sigma`` certifies at ``min(bound, 2C')``) and
``bounds["bound_assumptions"]`` with ``bounds["bound_status"]`` (``conditional`` on
:math:`M`, :math:`G_r` and an estimated :math:`\lambda_{\min}`). The certificate is

* ``holds`` at :math:`2C'` when the step is usable (a solve stopped by its iteration cap is
  reported with its residual: the guarantee at :math:`2C'` does not depend on it, and the
  bound charges it);
* ``fails`` (no model released, outcome ``"retrain_required"``) when
  :math:`\lambda+\lambda_{\min}\le0` by the estimate or the bound, when CG finds the damped
  Hessian indefinite, or when the solver diverges or returns NaN/Inf.

``sigma`` is data-independent: given directly, or calibrated by the analytic Gaussian
mechanism to :math:`2C'` for a target ``epsilon``; the certificate reports the epsilon that
``sigma`` certifies at :math:`2C'` (analytic Gaussian), **however large**, and the exact
composition over all unlearning releases so far (Gaussian mechanisms compose as one with
:math:`\sqrt{\sum_k(\Delta_k/\sigma_k)^2}`). The failure events above are data-dependent
refusals (no model published); ``proofs/README.md`` lists them as open.

``mode="empirical"`` reproduces the paper's experiments: a fixed noise std
(``empirical_std``, the authors' 1e-3) that is **not calibrated**; the model is released
but its certificate ``fails`` with the reason "empirical mode: noise not calibrated",
threat ``"none"`` and epsilon ``inf`` (the epsilon that std would certify at :math:`2C'`
is in ``bounds["epsilon_at_2C"]``, for information).

**Bring your own model.** ``net`` may also be the user's own model: a flax linen ``Module``,
an nnx ``GraphDef`` or a pure ``f(params, x) -> logits`` (:func:`certun.nn.byo.as_apply`),
with the parameters the user trained with their own loop passed to
``init(X, y, key, params=...)``. The Newton step, the projection and the noise are the same;
the reference is then ``P_C(A'(D_k)) + N(0, sigma^2 I)`` for any learning algorithm ``A'``
that never saw the removed rows (the user's loop with its output projected onto the ball, or
:meth:`retrain` from ``init_fn``), which lies in the ball, so the ``2C'`` certificate
``holds`` unchanged.

Deviations from the authors' code (docs/bibliography.md §4.3), each deliberate:

1. Regulariser: the paper's :math:`\frac\kappa2\lVert w\rVert^2` (their HVPs use the
   unsquared ``(lam + gamma) * sum_p ||p||``); :math:`\lambda I` is added exactly.
2. LiSSA is one of three solvers; with the paper's defaults it is a truncated series
   (a spectral filter), reported with its exact residual, not the exact inverse.
3. Noise: calibrated (certified mode) or explicitly labelled uncalibrated (empirical
   mode); the authors' code never calibrates and its sequential script likely adds none.
4. Train/unlearn splits are consistent (the authors train on 80% and unlearn rows of the
   full set); retraining uses the same initialisation and the same algorithm.

Reference: B. Zhang, Y. Dong, T. Wang, J. Li, "Towards Certified Unlearning for Deep Neural
Networks", ICML 2024, arXiv:2408.00920. Proofs: ``proofs/zhang2024_sensitivity.md``.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun._tree import tree_norm, tree_sub
from certun.accounting.gaussian import analytic_epsilon, analytic_sigma
from certun.bounds import zhang as zb
from certun.certificate import assumed, check, derive_status, make_certificate, verified
from certun.nn.models import Network, num_params
from certun.nn.objective import gauss_newton_parts, minibatch_objective, objective
from certun.nn.spectral import exact_min_eigenvalue, lanczos_extreme_eigenvalues
from certun.nn.train import (
    TrainConfig,
    TrainResult,
    check_params_in_ball,
    project_ball,
    radius_bound,
)
from certun.nn.train import train as nn_train
from certun.primitives.curvature import ggn_operator, hessian_operator
from certun.primitives.noise import gaussian_like
from certun.primitives.solvers import lissa_solver, pcg
from certun.primitives.spectral import UNIT_ROUNDOFF
from certun.results import RESULTS
from certun.unlearners.base import Unlearner, UnlearnResult

__all__ = ["ZhangState", "zhang_unlearning", "MECHANISM", "SOLVERS"]

#: Mechanism name in Zhang et al. (2024) certificates.
MECHANISM = "zhang2024_dnn_newton"
#: Inverse-Hessian-vector solvers of :func:`zhang_unlearning`: CG, LiSSA, Gauss-Newton.
SOLVERS = ("cg", "lissa", "ggn")
PyTree = Any


class ZhangState(NamedTuple):
    """State of :func:`zhang_unlearning` (private as a whole).

    Attributes:
      X, y: the original training rows (parameter dtype) and integer labels.
      removed: 1.0 for rows deleted so far.
      params_trained: the original model ``w*``.
      params_bar: the noiseless internal model (``w*`` before any request).
      published: the current release (``w*`` at first; then ``w_k`` plus fresh noise).
      releases: number of unlearning releases so far.
      sigmas, sensitivities: per unlearning release (certified mode).
      key: base key of the unlearner's own randomness (noise, LiSSA batches, Lanczos).
      train_key: the learning algorithm's randomness (retraining reuses it).
      train_seconds, train_grad_norm: of the original training run.
    """

    X: jax.Array
    y: jax.Array
    removed: jax.Array
    params_trained: PyTree
    params_bar: PyTree
    published: PyTree
    releases: int
    sigmas: tuple
    sensitivities: tuple
    key: jax.Array
    train_key: jax.Array
    train_seconds: float
    train_grad_norm: float


@functools.lru_cache(maxsize=32)
def _step_fn(net: Network, config: TrainConfig, solver: str, gradient: str, lam: float,
             cg_rtol: float, cg_max_steps: int, lissa_repeats: int, lissa_depth: int,
             lissa_scale: float | None, lissa_batch_size: int, lissa_damping: float) -> Callable:
    """The jitted Newton step, cached per setting.

    Unlearners that differ only in their certificate's settings share one compilation.
    """
    C = config.radius
    wd = config.weight_decay
    F = objective(net, wd)
    lissa = lissa_solver(scale=lissa_scale, damping=lissa_damping, depth=lissa_depth,
                         repeats=lissa_repeats)

    @jax.jit
    def _step(w, X, y, mask_r, mask_prev, key):
        """Right-hand side, the solve, its exact residual on (H + lam I), and the new model."""
        n_r = jnp.sum(mask_r)
        n_prev = jnp.sum(mask_prev)
        g_r = jax.grad(F)(w, X, y, mask_r)
        g_prev = jax.grad(F)(w, X, y, mask_prev)
        if gradient == "forget":
            c = n_prev / n_r
            rhs = jax.tree.map(lambda a, b: a - c * b, g_r, g_prev)
        else:
            c = jnp.zeros((), n_r.dtype)
            rhs = g_r
        exact = hessian_operator(F, w, X, y, mask_r, damping=lam)
        if solver == "cg":
            sol = pcg(exact.mv, rhs, rtol=cg_rtol, max_steps=cg_max_steps)
            scale = jnp.zeros(())
        elif solver == "ggn":
            model_fn, loss_fn = gauss_newton_parts(net, mask_r)
            op = ggn_operator(model_fn, loss_fn, w, X, y, damping=wd + lam)
            sol = pcg(op.mv, rhs, rtol=cg_rtol, max_steps=cg_max_steps)
            scale = jnp.zeros(())
        else:
            sample_f = minibatch_objective(net, wd, X, y, mask_r, lissa_batch_size)
            op = hessian_operator(F, w, X, y, mask_r, sample_f=sample_f, damping=lam)
            st = lissa.init(op, jax.random.fold_in(key, 0))
            sol = lissa.solve(st, rhs, jax.random.fold_in(key, 1))
            scale = st.scale
        x = sol.value
        if solver == "ggn":  # the Gauss-Newton system's own residual (the bound does not apply)
            residual = sol.residual_norm
        else:  # on the exact (H + lam I), whatever the solver's own system
            residual = tree_norm(tree_sub(exact.mv(x), rhs))
        w_new = project_ball(tree_sub(w, x), C)
        return (w_new, residual, sol.residual_norm, sol.num_steps, sol.result, tree_norm(x),
                tree_norm(rhs), c * tree_norm(g_prev), scale)

    return _step


@functools.lru_cache(maxsize=32)
def _lanczos_fn(net: Network, weight_decay: float, steps: int) -> Callable:
    """Jitted Lanczos on the Hessian of the masked objective, shared by unlearners (one compile)."""
    F = objective(net, weight_decay)

    @jax.jit
    def run(w, X, y, mask_r, key):
        op = hessian_operator(F, w, X, y, mask_r)
        return lanczos_extreme_eigenvalues(op.mv, op.structure, key, steps)

    return run


def _byo_network(model: Any, init_fn: Callable[[jax.Array], PyTree] | None) -> Network:
    """A :class:`Network` around a user's model, one per ``(model, init_fn)`` when hashable.

    The jitted Newton step is cached per :class:`Network` (:func:`_step_fn`); building a fresh
    ``Network`` (a fresh ``init`` closure) per unlearner would compile, and keep, one program
    per unlearner of the same model.
    """
    try:
        return _byo_network_cached(model, init_fn)
    except TypeError:  # an unhashable model: no sharing
        return _make_byo_network(model, init_fn)


@functools.lru_cache(maxsize=32)
def _byo_network_cached(model: Any, init_fn: Callable[[jax.Array], PyTree] | None) -> Network:
    return _make_byo_network(model, init_fn)


def _make_byo_network(model: Any, init_fn: Callable[[jax.Array], PyTree] | None) -> Network:
    """A :class:`Network` around a user's model (:func:`certun.nn.byo.as_apply`).

    ``input_dim`` and ``num_classes`` are unknown (``-1``): only :meth:`retrain` needs them,
    and it reads them from the data.
    """
    from certun.nn.byo import as_apply

    apply = as_apply(model)

    def init(key: jax.Array, dtype: Any = jnp.float32) -> PyTree:
        if init_fn is None:
            raise _validate.ValidationError(
                "retrain of a user's model needs init_fn=lambda key: <fresh parameters> "
                "(or retrain with your own loop, projecting onto ||w|| <= C)")
        return jax.tree.map(lambda a: jnp.asarray(a, dtype), init_fn(key))

    return Network(init, apply, -1, -1, "user_model", False)


def zhang_unlearning(net: Network | Any, config: TrainConfig, *, lam: float = 0.01,
                     solver: str = "cg", gradient: str = "forget", mode: str = "certified",
                     sigma: float | None = None, epsilon: float | None = None,
                     delta: float = 1e-5, empirical_std: float = 1e-3,
                     hessian_lipschitz: float | None = None, lam_min: str | float = "lanczos",
                     retrained_grad_norm: float = 0.0, cg_rtol: float = 1e-6,
                     cg_max_steps: int = 500, lissa_repeats: int = 10, lissa_depth: int = 1000,
                     lissa_scale: float | None = 1000.0, lissa_batch_size: int = 10,
                     lissa_damping: float = 0.0, lanczos_steps: int = 64,
                     exact_max_params: int = 2048,
                     progress: Callable[[int, float], None] | bool | None = None,
                     init_fn: Callable[[jax.Array], PyTree] | None = None) -> Unlearner:
    """Zhang et al.'s single-batch and sequential certified unlearning for networks.

    Notation to arguments: ``C`` = ``config.radius``, ``kappa`` = ``config.weight_decay``,
    ``lambda`` = ``lam`` (the paper's ``gamma``), ``M`` = ``hessian_lipschitz``,
    ``lambda_min`` = ``lam_min``, ``G_r`` = ``retrained_grad_norm``, ``s1, s2, H`` =
    ``lissa_repeats, lissa_depth, lissa_scale``.

    Args:
      net: the network (:func:`certun.nn.mlp` / :func:`certun.nn.cnn`), or the user's own
        model: a flax linen ``Module``, an nnx ``GraphDef`` or a pure ``f(params, x) ->
        logits`` (:func:`certun.nn.byo.as_apply`); pass its trained parameters to
        ``init(X, y, key, params=...)``.
      config: the learning algorithm (training and retraining); with the user's own
        parameters only ``radius`` (``C``), ``weight_decay`` (``kappa``, in the objective whose
        Hessian is inverted) and ``dtype`` are used (and all of it by :meth:`retrain`).
      lam: damping of the local convex approximation, ``>= 0``.
      solver: ``"cg"``, ``"lissa"`` or ``"ggn"`` (see the module docstring).
      gradient: ``"forget"`` (default; the paper's ``D_u`` form) or ``"retained"`` (``grad F_r``).
      mode: ``"certified"`` or ``"empirical"`` (fixed uncalibrated std, not certified).
      sigma: noise std per coordinate (certified mode; exactly one of ``sigma``/``epsilon``).
      epsilon: target epsilon: ``sigma`` is calibrated to ``2C'`` (analytic Gaussian).
      delta: delta of every release.
      empirical_std: the std of empirical mode (the paper's 1e-3).
      hessian_lipschitz: ``M`` (assumed; ``None``: the bound is not used, sensitivity 2C).
      lam_min: ``"lanczos"`` (estimate), ``"exact"`` (dense float64 bound, tiny models),
        ``"none"`` (not computed), or a number (assumed).
      retrained_grad_norm: ``G_r``, assumed bound on ``||grad F_r(A(D_r))||``.
      cg_rtol: CG tolerance on the relative 2-norm residual.
      cg_max_steps: CG iteration cap.
      lissa_repeats: LiSSA chains ``s1`` (averaged).
      lissa_depth: LiSSA recursion depth ``s2``.
      lissa_scale: LiSSA scale ``H`` (``None``: power-iteration estimate of ``lambda_max``).
      lissa_batch_size: rows per sampled Hessian (drawn with replacement).
      lissa_damping: Koh & Liang's ``d`` (adds ``d * scale`` to the damping; default 0).
      lanczos_steps: Lanczos steps for the ``lambda_min`` estimate.
      exact_max_params: size limit of ``lam_min="exact"``.
      progress: training progress (see :func:`certun.nn.train`).
      init_fn: the user's model only: ``init_fn(key) -> params``, a fresh initialisation
        for :meth:`retrain` (which then runs :func:`certun.nn.train` from it).

    Returns:
      An :class:`~certun.unlearners.base.Unlearner`: ``init(X, y, key, params=None)``
      (``params``: the user's trained model, any pytree; ``None`` trains one with
      :func:`certun.nn.train`),
      ``unlearn(state, indices, key=None)``, ``params(state)``, ``retrain(state)``.
    """
    byo = not isinstance(net, Network)
    if byo:
        net = _byo_network(net, init_fn)
    elif init_fn is not None:
        raise _validate.ValidationError(
            "init_fn is for a user's model; a certun Network has its own init")
    if not isinstance(config, TrainConfig):
        raise _validate.ValidationError(
            f"config must be a certun.nn.TrainConfig, got {type(config).__name__}")
    lam = _validate.non_negative(lam=lam)
    solver = _validate.choice(SOLVERS, solver=solver)
    gradient = _validate.choice(("retained", "forget"), gradient=gradient)
    mode = _validate.choice(("certified", "empirical"), mode=mode)
    dlt = _validate.delta(delta=delta)
    std = _validate.positive(empirical_std=empirical_std)
    if mode == "certified":
        if (sigma is None) == (epsilon is None):
            raise _validate.ValidationError(
                "certified mode needs exactly one of sigma (the noise std; the certificate "
                "reports the epsilon it certifies) or epsilon (sigma is then calibrated to 2C)")
        if sigma is not None:
            sigma = _validate.positive(sigma=sigma)
        else:
            epsilon = _validate.epsilon(epsilon=epsilon)
    M = None if hessian_lipschitz is None else _validate.non_negative(
        hessian_lipschitz=hessian_lipschitz)
    if isinstance(lam_min, str):
        lam_min_kind = _validate.choice(("lanczos", "exact", "none"), lam_min=lam_min)
        lam_min_value = None
    else:
        lam_min_kind = "given"
        lam_min_value = _validate._scalar("lam_min", lam_min)
    Gr = _validate.non_negative(retrained_grad_norm=retrained_grad_norm)
    cg_rtol = _validate.positive(cg_rtol=cg_rtol)
    cg_max_steps = _validate.integer(cg_max_steps=cg_max_steps, minimum=1)
    lissa_repeats = _validate.integer(lissa_repeats=lissa_repeats, minimum=1)
    lissa_depth = _validate.integer(lissa_depth=lissa_depth, minimum=4)
    if lissa_scale is not None:
        lissa_scale = _validate.positive(lissa_scale=lissa_scale)
    lissa_batch_size = _validate.integer(lissa_batch_size=lissa_batch_size, minimum=1)
    lissa_damping = _validate.non_negative(lissa_damping=lissa_damping)
    if lissa_damping >= 2.0:
        raise _validate.ValidationError(f"lissa_damping must lie in [0, 2), got {lissa_damping}")
    lanczos_steps = _validate.integer(lanczos_steps=lanczos_steps, minimum=2)
    exact_max_params = _validate.integer(exact_max_params=exact_max_params, minimum=1)
    C = config.radius
    wd = config.weight_decay
    F = objective(net, wd)

    # ------------------------------------------------------------------ jitted pieces (cached)

    _step = _step_fn(net, config, solver, gradient, lam, cg_rtol, cg_max_steps, lissa_repeats,
                     lissa_depth, lissa_scale, lissa_batch_size, lissa_damping)

    _lanczos = _lanczos_fn(net, wd, lanczos_steps)

    def _lam_min(w, X, y, mask_r, key) -> dict:
        """lambda_min of grad^2 F_r(w): value, kind, state for the certificate."""
        if lam_min_kind == "none":
            return {"value": None, "kind": "none", "largest": None}
        if lam_min_kind == "given":
            return {"value": lam_min_value, "kind": "given", "largest": None}
        if lam_min_kind == "exact":
            b = exact_min_eigenvalue(F, w, X, y, mask_r, max_params=exact_max_params)
            return {"value": b.value, "kind": "exact", "largest": None, "computed": b.computed,
                    "allowance": b.allowance}
        r = jax.device_get(_lanczos(w, X, y, mask_r, key))
        return {"value": float(r.smallest), "kind": "lanczos", "largest": float(r.largest),
                "steps": int(r.num_steps)}

    # ------------------------------------------------------------------ API

    def init(X: Any, y: Any, key: jax.Array, *, params: PyTree = None) -> ZhangState:
        """Train ``w*`` with :func:`certun.nn.train`, or take the user's ``params``.

        Release 0 is ``w*`` itself, noiseless. ``params`` (the user's trained model, trained
        by any loop) is cast to ``config.dtype``; it need not lie in the ball (every
        unlearned model is projected onto it).
        """
        Xn = _validate.finite_array(X=X, ndim=2)
        yn = _validate.finite_array(y=y, ndim=1)
        _validate.matching_rows(X=Xn, y=yn)
        dtype = jnp.dtype(config.dtype)
        train_key = jax.random.fold_in(key, 0)
        Xj = jnp.asarray(Xn, dtype)
        yj = jnp.asarray(yn, jnp.int32)
        if params is None:
            if byo:
                raise _validate.ValidationError(
                    "a user's model needs its trained parameters: init(X, y, key, params=...)")
            tr = nn_train(net, Xn, yn, train_key, config, progress=progress)
            w, secs, gn = tr.params, tr.seconds, tr.grad_norm
        else:
            _validate.finite_tree(params=params)
            w = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
            secs = 0.0
            gn = float(tree_norm(jax.grad(F)(w, Xj, yj, jnp.ones(Xj.shape[0], dtype))))
        return ZhangState(Xj, yj, jnp.zeros(Xj.shape[0], dtype), w, w, w, 0, (), (),
                          jax.random.fold_in(key, 1), train_key, secs, gn)

    def params(state: ZhangState) -> PyTree:
        """The currently published model."""
        return state.published

    def retrain(state: ZhangState, key: jax.Array | None = None) -> TrainResult:
        """``A(D_k)``: :func:`certun.nn.train` on the remaining rows from the same key."""
        keep = np.flatnonzero(np.asarray(state.removed) == 0)
        k = state.train_key if key is None else key
        rnet = net
        if byo:  # the shapes certun.nn.train checks, from the data and the model
            out = jax.eval_shape(net.apply, state.params_bar, state.X[:1])
            rnet = net._replace(input_dim=int(state.X.shape[1]), num_classes=int(out.shape[-1]))
        return nn_train(rnet, np.asarray(state.X)[keep], np.asarray(state.y)[keep], k, config,
                        progress=progress)

    def unlearn(state: ZhangState, indices: Any, key: jax.Array | None = None) -> UnlearnResult:
        """Remove ``indices`` (original row positions) and publish a freshly noised model."""
        t0 = time.perf_counter()
        n = int(state.X.shape[0])
        removed_prev = np.asarray(state.removed) > 0
        idx_new = _validate.forget_indices(indices, n, already_removed=removed_prev)
        removed = removed_prev.copy()
        removed[idx_new] = True
        n_r = n - int(removed.sum())
        if n_r < 1:
            raise _validate.ValidationError(
                "indices would remove every remaining training row; nothing is left to train on")
        dtype = state.X.dtype
        mask_prev = jnp.asarray(~removed_prev, dtype)
        mask_r = jnp.asarray(~removed, dtype)
        release = state.releases + 1
        base = state.key if key is None else key
        # separate streams: noise (release-folded by gaussian_like), solver batches, Lanczos
        noise_key, solver_key, lanczos_key = (jax.random.fold_in(base, i) for i in range(3))
        p = num_params(state.params_bar)
        x64 = dtype == jnp.float64

        t1 = time.perf_counter()
        out = _step(state.params_bar, state.X, state.y, mask_r, mask_prev,
                    jax.random.fold_in(solver_key, release))
        w_new = jax.block_until_ready(out[0])
        (residual, solver_residual, steps, code, step_norm, rhs_norm, base_term,
         lissa_s) = (float(out[1]), float(out[2]), int(out[3]), int(out[4]), float(out[5]),
                     float(out[6]), float(out[7]), float(out[8]))
        t_solve = time.perf_counter() - t1
        t1 = time.perf_counter()
        if solver == "ggn":  # the Gauss-Newton step is always defined; the bound never applies
            lm = {"value": None, "kind": "not used (Gauss-Newton step)", "largest": None}
        else:
            lm = _lam_min(state.params_bar, state.X, state.y, mask_r,
                          jax.random.fold_in(lanczos_key, release))
        t_lam = time.perf_counter() - t1

        C_safe = radius_bound(C, p, dtype)
        in_ball, w_norm, _ = check_params_in_ball(w_new, C)
        code_name = RESULTS(code).name
        failures = []
        if code in (RESULTS.nonfinite, RESULTS.diverged) or not math.isfinite(residual):
            failures.append(f"solver {solver} {code_name}: the Newton step is unusable")
        if code == RESULTS.not_positive_definite and solver == "cg":
            failures.append("CG met p^T (H + lam I) p <= 0: H + lam I is not positive definite; "
                            "raise lam")
        if not in_ball:
            # public reason: the norm itself is private (assumption value)
            failures.append(f"the unlearned model's norm exceeds the rounding-safe radius "
                            f"{C_safe:.9g}")
        lm_val = lm["value"]
        if lm_val is not None and not lam + lm_val > 0:
            failures.append(f"lam + lam_min <= 0 (lam = {lam:g}; lam_min by the {lm['kind']} "
                            "value, private): the damped Newton step is undefined; raise lam")

        # --- the distance bound (only where its derivation applies)
        bound, bound_note = None, None
        rounding = 10.0 * (p + 4) * UNIT_ROUNDOFF * (2.0 * rhs_norm + residual)
        if M is None:
            bound_note = "hessian_lipschitz (M) not given: the bound is not evaluated"
        elif solver == "ggn":
            bound_note = "Gauss-Newton step: the Hessian-based bound does not apply"
        elif lm_val is None:
            bound_note = "lam_min not computed (lam_min='none')"
        elif not lam + lm_val > 0:
            bound_note = "lam + lam_min <= 0: the bound does not apply"
        elif not x64:
            bound_note = "the residual is certified only in float64: the bound is not used"
        else:
            # ||w - w_r|| <= ||w|| + ||w_r|| <= 2C' (both in the rounding-safe ball); the
            # projection toward w_r (in the C' ball) costs C' - C, the subtraction and
            # projection in floating point a few ulps of ||w|| + ||x||
            excess = (C_safe - C) + 10.0 * (p + 4) * UNIT_ROUNDOFF * (C_safe + step_norm)
            bound = zb.distance_bound(C, M, lam, lm_val, retrained_grad_norm=Gr,
                                      solve_residual=residual + rounding,
                                      base_grad_term=base_term, radius_excess=excess,
                                      distance=2.0 * C_safe)
        sens, which = zb.sensitivity(bound, C_safe)

        # --- noise
        if mode == "empirical":
            sig = std
        elif sigma is not None:
            sig = sigma
        else:
            assert epsilon is not None  # certified mode: sigma or epsilon (validated)
            sig = analytic_sigma(epsilon, dlt, 2.0 * C_safe)
        eps_2c = analytic_epsilon(sig, dlt, 2.0 * C_safe)
        # the public claim rests on 2C' (configuration only); the bound's epsilon is private
        eps_bound = analytic_epsilon(sig, dlt, sens) if mode == "certified" else math.inf
        eps = eps_2c if mode == "certified" else math.inf

        assumptions = [
            check("unlearned_in_ball", f"||w_k||_2 <= C' = C (1 + gamma_(p+4)) = {C_safe:.9g} "
                  "(measured in float64)", in_ball, w_norm, C_safe, private=True),
            (verified("retrained_in_ball", "the reference A(D_k) = certun.nn.train projects onto "
                      f"||w|| <= C = {C:g} after every step, so ||A(D_k)|| <= C'", C_safe)
             if not byo else
             verified("retrained_in_ball", "the reference is P_C(A'(D_k)) for any learning "
                      "algorithm A' that never saw the removed rows (the user's own loop, its "
                      "output projected onto the ball by certun.nn.project_ball; or retrain): "
                      f"||P_C(.)|| <= C' for C = {C:g}", C_safe)),
        ]
        bound_assumptions = []
        if which == "bound":
            bound_assumptions += [
                assumed("hessian_lipschitz", f"grad^2 F_r is M-Lipschitz on the ball, M = {M:g} "
                        "(cannot be verified for a network)", M),
                (verified("lam_min", "lambda_min(grad^2 F_r(w)) >= lam_min (dense float64 "
                          "eigvalsh with rounding allowances)", lm_val, private=True)
                 if lm["kind"] == "exact" else
                 assumed("lam_min", f"lambda_min(grad^2 F_r(w)) >= lam_min ({lm['kind']} value; "
                         "a Lanczos estimate over-estimates lambda_min)", lm_val, private=True)),
                assumed("retrained_grad_norm", "||grad F_r(A(D_k))|| <= G_r (Adam does not reach "
                        f"a stationary point), G_r = {Gr:g}", Gr),
                verified("solve_residual", "||(H + lam I) x - g|| measured on the exact operator "
                         "(+ rounding allowance) enters the bound", residual + rounding,
                         private=True),
                check("float64", "computed in float64", x64),
            ]
        bound_status = derive_status(bound_assumptions)[0] if bound_assumptions else None
        extra = "; ".join(failures) if failures else None
        threat = "indistinguishable_from_retraining"
        if mode == "empirical":
            msg = (f"empirical mode: noise not calibrated (fixed std {std:g}, the paper's "
                   "experiments); no (epsilon, delta) guarantee")
            extra = msg if extra is None else f"{extra}; {msg}"
            threat = "none"

        sig_all = state.sigmas + (sig,)
        sens_all = state.sensitivities + (2.0 * C_safe,)
        if mode == "certified":
            mu = math.sqrt(sum((d / s) ** 2 for s, d in zip(sig_all, sens_all, strict=True)))
            eps_comp = analytic_epsilon(1.0, dlt, mu)
        else:
            eps_comp = math.inf
        bounds = {"sensitivity": sens, "which": which, "ball_sensitivity": 2.0 * C_safe,
                  "radius": C, "radius_safe": C_safe, "distance_bound": bound,
                  "bound_note": bound_note, "M": M, "lam": lam, "lam_min": lm_val,
                  "lam_min_kind": lm["kind"], "lam_max_estimate": lm.get("largest"),
                  "retrained_grad_norm": Gr, "base_grad_term": base_term,
                  "epsilon_at_2C": eps_2c, "gradient": gradient,
                  "epsilon_at_bound": eps_bound, "bound_status": bound_status,
                  "bound_assumptions": [a.to_dict() for a in bound_assumptions]}
        solver_info = {"name": solver, "result": code_name, "num_steps": steps,
                       "residual": residual,
                       "residual_system": ("(GGN + (kappa + lam) I) x = g" if solver == "ggn"
                                           else "(H + lam I) x = g, exact operator"),
                       "solver_residual": solver_residual,
                       "relative_residual": residual / rhs_norm if rhs_norm > 0 else 0.0,
                       "rounding_allowance": rounding, "step_norm": step_norm,
                       "rhs_norm": rhs_norm}
        if solver == "lissa":
            solver_info.update(repeats=lissa_repeats, depth=lissa_depth, scale=lissa_s,
                               batch_size=lissa_batch_size, damping=lissa_damping)
        notes = [
            "Both the unlearned and the retrained model lie in the ball ||w|| <= C, so 2C is "
            "always a valid sensitivity; the Newton bound 2C(MC + lam)/(lam + lam_min) is below "
            "2C only if M C < lam_min (a locally strongly convex problem).",
            f"Public sensitivity 2C' = {2.0 * C_safe:.6g} (configuration only); epsilon is what "
            f"sigma = {sig:.6g} certifies at it (analytic Gaussian), however large. The Newton "
            "bound depends on the data (lam_min, solve residual) and is reported privately.",
            "Removal certificate: it does not hide the deletion from an observer of the model "
            "before and after.",
            "Fresh noise per release from the noiseless internal model.",
        ]
        if sig * math.sqrt(p) > C_safe:  # public: configuration and model size only
            notes.append("The noise dominates the model: sigma sqrt(p) exceeds the ball's "
                         "radius C, so the release is mostly noise (expect accuracy near chance).")
            warnings.warn(
                f"zhang_unlearning: the release noise (sigma sqrt(p) = {sig * math.sqrt(p):.3g}) "
                f"exceeds the radius C = {C:g} of the ball every model lies in: the published "
                "model is mostly noise and its accuracy will be near chance; the certificate "
                "rests on the trivial sensitivity 2C (lower epsilon's demands, or use "
                "noisy_finetuning / frozen_extractor_head)", UserWarning, stacklevel=2)
        cert = make_certificate(
            mechanism=MECHANISM, epsilon=eps, delta=dlt, sigma=sig, threat=threat,
            adjacency="removal", scale="mean",
            calibration="analytic_gaussian" if mode == "certified" else "none",
            sensitivity=2.0 * C_safe, releases=release, epsilon_composed=eps_comp,
            delta_composed=dlt if mode == "certified" else None,
            removed=int(removed.sum()), assumptions=assumptions, extra_failure=extra,
            bounds=bounds, solver=solver_info, notes=tuple(notes))
        diagnostics = {"seconds": time.perf_counter() - t0, "seconds_solve": t_solve,
                       "seconds_lam_min": t_lam, "m": int(idx_new.size), "n_retained": n_r,
                       "sensitivity": sens, "which": which, "sigma": sig, "epsilon": eps_bound,
                       "residual": residual, "solver_result": code_name, "num_steps": steps,
                       "lam_min": lm_val, "lam_min_kind": lm["kind"], "bound": bound,
                       "step_norm": step_norm, "params_noiseless": w_new}
        if failures:
            return UnlearnResult(None, state, cert, "retrain_required", diagnostics)
        noise = gaussian_like(noise_key, w_new, sig, release=release)
        pub = jax.tree.map(jnp.add, w_new, noise)
        new_state = state._replace(removed=jnp.asarray(removed, dtype), params_bar=w_new,
                                   published=pub, releases=release, sigmas=sig_all,
                                   sensitivities=sens_all)
        return UnlearnResult(pub, new_state, cert, "unlearned", diagnostics)

    return Unlearner(init=init, unlearn=unlearn, params=params, retrain=retrain)
