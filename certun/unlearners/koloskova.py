r"""Koloskova et al. (ICML 2025): certified unlearning for networks by noisy fine-tuning.

The user trains a network with their own loop and hands certun the parameters and a pure
``apply(params, x)`` (:func:`certun.nn.byo.as_apply`). To forget rows ``U``, the model is
clipped into the ball ``||x|| <= C_0``, optionally noised, and fine-tuned with noise on the
**retained** rows only (``variant``):

* ``"gradient_clipping"`` (privacy amplification by iteration):
  ``x_{t+1} = (1 - eta lambda) x_t - eta clip(g_t, C_1) + N(0, sigma^2 I)``; ``sigma`` is
  calibrated by :func:`certun.accounting.koloskova.gradient_clipping_sigma` (the analysis
  gives ``D_alpha <= alpha mu`` at every order; the order-dependent conversion to
  ``(epsilon, delta)``);
* ``"model_clipping"`` (contraction of projected noisy steps):
  ``x_{t+1} = clip(x_t - eta (g_t + lambda x_t), C_2) + N(0, sigma^2 I)``, run for the
  number of steps :func:`certun.accounting.koloskova.model_clipping_steps` prescribes;
* ``"output_perturbation"`` (the paper's baseline): ``clip(x_hat, C_0) + N(0, sigma_0^2 I)``
  with ``sigma_0`` the analytic Gaussian calibration to sensitivity ``2 C_0``.

``g_t`` is the gradient of the mean loss on a minibatch drawn (with replacement) from the
retained rows. Optional noiseless fine-tuning on the retained rows follows
(``post_steps``; post-processing, free for the guarantee), optionally after a data-independent
map of the release (``post_clip``; ``post_rescale``: every layer onto its norm in a fresh
initialisation, which is what makes the noiseless phase cost about what retraining costs
when the noise dominates).

**Certificate** (threat ``indistinguishable_from_retraining``): every analysis holds for any
two starting points of the ball, so the released model is ``(epsilon, delta)``-indistinguishable
from the same procedure run from *any* model that never saw ``U`` (e.g. one retrained on the
retained rows, or a fresh initialisation: :meth:`retrain`). No convexity, smoothness or
Lipschitz assumption is made: the certificate ``holds`` because the clipping is enforced by
the code (``||x_0|| <= C_0``, ``||clip(g_t)|| <= C_1``, ``||clip(.)|| <= C_2``). Only the
gradient-clipping variant run *without* clipping (``grad_clip=None`` with an
``assumed_grad_bound``) is ``conditional`` on that bound. Every public number depends only on
the configuration. Derivations: ``proofs/koloskova2025_noisy_finetuning.md``.

A measured caution: at small epsilon the calibrated noise dwarfs any model of the ball
(``sigma_0 sqrt(d) >> C_0``) and the method amounts to retraining from a noisy start; a
:class:`UserWarning` says so (a public comparison) when the initial noise alone exceeds
the ball.

Reference: A. Koloskova, Y. Allouah, A. Jha, R. Guerraoui, S. Koyejo, "Certified Unlearning
for Neural Networks", ICML 2025, https://arxiv.org/abs/2506.06985.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from certun import _validate
from certun.accounting import koloskova as acct
from certun.accounting.gaussian import analytic_sigma
from certun.certificate import assumed, make_certificate, verified
from certun.nn.byo import leaf_norms, tree_clip, tree_rescale
from certun.unlearners.base import Reference, Unlearner, UnlearnResult

__all__ = ["VARIANTS", "NoisyFinetuneState", "noisy_finetuning", "softmax_cross_entropy"]

PyTree = Any

#: The mechanisms of :func:`noisy_finetuning`.
VARIANTS = ("gradient_clipping", "model_clipping", "output_perturbation")


def softmax_cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``logits`` ``(b, K)`` against integer labels ``y``."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y.astype(jnp.int32)))


class NoisyFinetuneState(NamedTuple):
    """State of :func:`noisy_finetuning`.

    Attributes:
      params: the currently published parameters (the user's trained model before any request).
      X, y: the training rows (original order).
      retained: ``(n,)`` bool, rows not yet forgotten.
      removed: number of rows forgotten so far.
      releases: number of unlearned models published so far.
    """

    params: PyTree
    X: jax.Array
    y: jax.Array
    retained: jax.Array
    removed: int
    releases: int


def _noise(key: jax.Array, tree: PyTree, sigma: jax.Array) -> PyTree:
    leaves, treedef = jax.tree.flatten(tree)
    ks = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [
        x + (sigma * jax.random.normal(k, x.shape, x.dtype)).astype(x.dtype)
        for k, x in zip(ks, leaves, strict=True)])


# the default optimizer of the noiseless steps: ONE object, so that every unlearner built with
# the default shares the compiled program (``_run`` is keyed on it as a static argument; a fresh
# ``optax.adam(1e-3)`` per call would compile, and keep, one program per unlearner)
_DEFAULT_POST_OPT = optax.adam(1e-3)


@functools.partial(jax.jit, static_argnames=("apply", "loss", "variant", "steps", "batch_size",
                                             "clip_grad", "post_steps", "post_opt", "post_clip"))
def _run(params: PyTree, X: jax.Array, y: jax.Array, retained: jax.Array, key: jax.Array,
         hp: dict, rescale: PyTree, *, apply: Callable, loss: Callable, variant: str, steps: int,
         batch_size: int, clip_grad: bool, post_steps: int, post_opt: Any,
         post_clip: bool) -> PyTree:
    k0, kloop, kpost = jax.random.split(key, 3)
    x = _noise(k0, tree_clip(params, hp["init_clip"]), hp["init_sigma"])
    n = X.shape[0]
    p = retained.astype(X.dtype) / jnp.sum(retained)

    def batch_grad(w: PyTree, k: jax.Array) -> PyTree:
        idx = jax.random.choice(k, n, (batch_size,), replace=True, p=p)
        return jax.grad(lambda v: loss(apply(v, X[idx]), y[idx]))(w)

    def step(w: PyTree, k: jax.Array) -> tuple[PyTree, None]:
        kb, kn = jax.random.split(k)
        g = batch_grad(w, kb)
        lam, lr = hp["weight_decay"], hp["lr"]
        if variant == "gradient_clipping":
            if clip_grad:
                g = tree_clip(g, hp["grad_clip"])
            w = jax.tree.map(lambda a, b: (1.0 - lr * lam) * a - lr * b, w, g)
        else:  # model clipping
            u = jax.tree.map(lambda a, b: b + lam * a, w, g)
            if clip_grad:
                u = tree_clip(u, hp["grad_clip"])
            w = tree_clip(jax.tree.map(lambda a, b: a - lr * b, w, u), hp["model_clip"])
        return _noise(kn, w, hp["sigma"]), None

    if steps:
        x, _ = jax.lax.scan(step, x, jax.random.split(kloop, steps))
    if post_clip:
        x = tree_clip(x, hp["post_clip"])
    if rescale is not None:
        x = tree_rescale(x, rescale)
    if post_steps:
        def post(carry: tuple, k: jax.Array) -> tuple[tuple, None]:
            w, s = carry
            upd, s = post_opt.update(batch_grad(w, k), s, w)
            return (optax.apply_updates(w, upd), s), None

        (x, _), _ = jax.lax.scan(post, (x, post_opt.init(x)), jax.random.split(kpost, post_steps))
    return x


def noisy_finetuning(apply: Callable[[PyTree, jax.Array], jax.Array], *, variant: str,
                     epsilon: float, delta: float, init_clip: float, lr: float = 0.1,
                     steps: int | None = None, grad_clip: float | None = 1.0,
                     model_clip: float | None = None, sigma: float | None = None,
                     init_sigma: float = 0.0, weight_decay: float = 0.0, batch_size: int = 64,
                     post_steps: int = 0, post_optimizer: Any = None,
                     post_clip: float | None = None, post_rescale: PyTree = None,
                     loss: Callable[[jax.Array, jax.Array], jax.Array] = softmax_cross_entropy,
                     assumed_grad_bound: float | None = None, max_steps: int = 100_000,
                     init_fn: Callable[[jax.Array], PyTree] | None = None,
                     jit: bool = True) -> Unlearner:
    r"""Certified unlearning of a user-trained network by noisy fine-tuning (Koloskova et al.).

    Args:
      apply: pure ``apply(params, x) -> logits`` (:func:`certun.nn.byo.as_apply`).
      variant: one of :data:`VARIANTS`.
      epsilon: the epsilon of every released model.
      delta: its delta.
      init_clip: ``C_0``, radius the model is clipped to before the noisy phase.
      lr: step size ``eta`` of the noisy phase.
      steps: noisy steps ``T``: gradient clipping: ``None`` for the noise-minimising count;
        model clipping: ``None`` to take the fewest steps that reach ``delta`` at ``sigma``,
        or a count (``sigma`` is then the smallest reaching ``delta`` in ``steps``).
      grad_clip: ``C_1``, clipping norm of the minibatch gradient (gradient clipping); for model
        clipping it clips the update ``g_t + lambda x_t`` when given (a deterministic map before
        the projection; the accounting does not use it; ``None`` turns it off). For gradient
        clipping, ``None`` with ``assumed_grad_bound`` makes the certificate conditional on
        ``||g_t|| <= assumed_grad_bound``.
      model_clip: ``C_2`` (model clipping; default ``init_clip``).
      sigma: per-step noise of model clipping (gradient clipping calibrates its own).
      init_sigma: ``sigma_0``, noise added after the initial clip (model clipping needs it
        ``> 0`` to start below ``delta = 1``; output perturbation calibrates its own).
      weight_decay: ``lambda`` (``0 <= eta lambda < 1``).
      batch_size: minibatch size of the fine-tuning gradients.
      post_steps: noiseless fine-tuning steps on the retained rows after the noisy phase.
      post_optimizer: optax optimizer of those steps (default ``optax.adam(1e-3)``).
      post_clip: clip the model to this radius after the noisy phase (post-processing, as the
        authors' ``post_unlearn_clip``): when the noise dominates, it brings the model back to
        the scale of a fresh initialisation before the noiseless steps.
      post_rescale: a reference parameter pytree that depends on no data, typically a fresh
        initialisation ``init_fn(jax.random.key(0))``: after the noisy phase (and
        ``post_clip``) every leaf is rescaled to the norm of the matching reference leaf
        (leaves that are zero there, e.g. biases, become zero), before the noiseless steps.
        When the noise dominates, this maps the release onto the per-layer scale of a fresh
        initialisation, which one global ``post_clip`` cannot do (it leaves the noise spread
        over all layers in proportion to their size). Post-processing: the guarantee is kept
        (``proofs/koloskova2025_noisy_finetuning.md``, "Post-processing").
      loss: ``loss(logits, y) -> scalar`` (default mean softmax cross-entropy).
      assumed_grad_bound: see ``grad_clip``.
      max_steps: cap of the step searches.
      init_fn: ``init_fn(key) -> params``, the default start of :meth:`retrain` (zeros if
        ``None``).
      jit: compile the whole fine-tuning as one program (``False`` runs it eagerly, only the
        ``lax.scan`` loop bodies compiled; for debugging and for callers that jit themselves).
        The compiled program is cached per ``apply``, ``loss``, ``post_optimizer`` (by
        identity), variant, ``steps``, ``batch_size`` and shapes, and kept for the process's
        life: pass the *same* ``apply`` object to every unlearner of one model (not a fresh
        closure per call), or every call compiles, and keeps, a program of its own.

    Returns:
      An :class:`~certun.unlearners.base.Unlearner`: ``init(X, y, key, *, params)`` (``params``:
      the user's trained model; ``key`` unused), ``unlearn(state, indices, key)``,
      ``params(state)``, ``retrain(state, key, start=None)`` (the same procedure on the
      retained rows from ``start``, default ``init_fn(key)``: a draw of the reference the
      certificate compares with).
    """
    var = _validate.choice(VARIANTS, variant=variant)
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    c0 = _validate.positive(init_clip=init_clip)
    eta = _validate.positive(lr=lr)
    lam = _validate.non_negative(weight_decay=weight_decay)
    bs = _validate.integer(batch_size=batch_size, minimum=1)
    npost = _validate.integer(post_steps=post_steps, minimum=0)
    s0 = _validate.non_negative(init_sigma=init_sigma)
    post_opt = _DEFAULT_POST_OPT if post_optimizer is None else post_optimizer
    if not callable(apply):
        raise _validate.ValidationError(
            "apply must be a function apply(params, x); build one with certun.nn.as_apply")
    c1 = None if grad_clip is None else _validate.positive(grad_clip=grad_clip)
    assumptions = [verified("start_in_ball", f"the start is clipped to ||x_0|| <= C_0 = {c0:g}, "
                            "so any two starts are within 2 C_0")]
    conversion = None
    notes = ["no convexity, smoothness or Lipschitz assumption on the loss",
             "the guarantee compares with the same procedure run from any model that never "
             "saw the forgotten rows (any start in the ball)",
             "certified removal does not hide a deletion from someone who saw the model "
             "before and after"]
    if var == "gradient_clipping":
        if c1 is None:
            if assumed_grad_bound is None:
                raise _validate.ValidationError(
                    "gradient clipping needs grad_clip (enforced) or assumed_grad_bound "
                    "(the certificate is then conditional on it)")
            g_bound = _validate.positive(assumed_grad_bound=assumed_grad_bound)
            assumptions.append(assumed("gradient_bound", "||g_t|| <= G on every iterate "
                                       "(not enforced: grad_clip=None)", g_bound))
        else:
            g_bound = c1
            assumptions.append(verified("gradient_clipped",
                                        f"||clip(g_t)|| <= C_1 = {c1:g}, enforced every step"))
        cal = acct.gradient_clipping_sigma(epsilon=eps, delta=dlt, init_clip=c0,
                                           grad_clip=g_bound, lr=eta, weight_decay=lam,
                                           steps=steps, init_sigma=s0, max_steps=max_steps)
        T, sig, c2 = cal.steps, cal.sigma, math.inf
        eps_out = cal.epsilon
        calibration = "koloskova2025_amplification_by_iteration"
        conversion = "order_dependent_cks2020 (D_alpha <= alpha mu at every order)"
        details = {"mu": cal.mu, "order": cal.order, "shift": cal.shift}
    elif var == "model_clipping":
        c2 = c0 if model_clip is None else _validate.positive(model_clip=model_clip)
        if s0 == 0:
            raise _validate.ValidationError(
                "model clipping needs init_sigma > 0 (the clip-and-noise start); pass init_sigma")
        if steps is None:
            sig = _validate.positive(sigma=sigma) if sigma is not None else None
            if sig is None:
                raise _validate.ValidationError("model clipping needs sigma or steps; pass one")
            T = acct.model_clipping_steps(epsilon=eps, delta=dlt, init_clip=c0, init_sigma=s0,
                                          model_clip=c2, sigma=sig, max_steps=max_steps)
        else:
            T = _validate.integer(steps=steps, minimum=0)
            sig = _model_clipping_sigma(eps, dlt, c0, s0, c2, T)
        eps_out = eps
        dT = float(acct.model_clipping_deltas(epsilon=eps, init_clip=c0, init_sigma=s0,
                                              model_clip=c2, sigma=sig, steps=T)[-1])
        if not dT <= dlt:  # pragma: no cover - guarded by the calibrations above
            raise RuntimeError("model clipping calibration missed delta")
        assumptions.append(verified("model_clipped",
                                    f"every iterate is projected onto ||x|| <= C_2 = {c2:g} "
                                    "before its noise is added"))
        calibration = "koloskova2025_contraction_coefficients"
        details = {"delta_reached": dT}
    else:
        T, sig, c2 = 0, 0.0, math.inf
        s0 = analytic_sigma(eps, dlt, 2.0 * c0)
        eps_out = eps
        calibration = "analytic_gaussian"
        details = {}
    pc = None if post_clip is None else _validate.positive(post_clip=post_clip)
    rescale_norms = None
    if post_rescale is not None:
        _validate.finite_tree(post_rescale=post_rescale)
        rescale_norms = jax.tree.map(float, jax.device_get(leaf_norms(post_rescale)))
    hp = {"post_clip": 1.0 if pc is None else pc, "init_clip": c0, "init_sigma": s0,
          "grad_clip": 1.0 if c1 is None else c1,
          "model_clip": 1.0 if math.isinf(c2) else c2, "sigma": sig, "lr": eta,
          "weight_decay": lam}
    clip_grad = c1 is not None
    public = {"variant": var, "init_clip": c0, "init_sigma": s0, "grad_clip": c1,
              "model_clip": None if math.isinf(c2) else c2, "sigma": sig, "steps": T,
              "lr": eta, "weight_decay": lam, "batch_size": bs, "post_steps": npost,
              "post_clip": pc, "post_rescale": rescale_norms is not None,
              "adjacency": "removal (any number of rows; the bound holds for any two starts)"}

    def _fine_tune(params: PyTree, X: jax.Array, y: jax.Array, retained: jax.Array,
                   key: jax.Array) -> PyTree:
        hpa = {k: jnp.asarray(v, jax.tree.leaves(params)[0].dtype) for k, v in hp.items()}
        kw = dict(apply=apply, loss=loss, variant=var, steps=T, batch_size=bs,
                  clip_grad=clip_grad, post_steps=npost, post_opt=post_opt if npost else None,
                  post_clip=pc is not None)
        if rescale_norms is not None and (jax.tree.structure(rescale_norms)
                                          != jax.tree.structure(params)):
            raise _validate.ValidationError(
                "post_rescale must have the structure of the parameters (a fresh "
                "initialisation of the same model)")
        rs = None if rescale_norms is None else jax.tree.map(
            lambda r, x: jnp.asarray(r, x.dtype), rescale_norms, params)
        if jit:
            return _run(params, X, y, retained, key, hpa, rs, **kw)
        return _run.__wrapped__(params, X, y, retained, key, hpa, rs, **kw)  # pyright: ignore[reportAttributeAccessIssue]

    def _warn_noise(params: PyTree) -> bool:
        root_d = math.sqrt(sum(int(np.size(x)) for x in jax.tree.leaves(params)))
        noise = max(s0, sig) * root_d
        if noise > c0:
            warnings.warn(
                f"noisy fine-tuning ({var}): the calibrated noise (sigma sqrt(d) = {noise:.3g}) "
                f"exceeds the clipped model's radius C_0 = {c0:g}: almost nothing of the trained "
                "model survives, so the method amounts to retraining from a noisy start; expect "
                "no saving over retraining at this epsilon", UserWarning, stacklevel=3)
            return True
        return False

    def init(X: Any, y: Any, key: jax.Array | None = None, *, params: PyTree) -> NoisyFinetuneState:
        Xa = _validate.finite_array(X=X, ndim=(2, 3, 4))
        ya = np.asarray(y)
        if ya.shape[0] != Xa.shape[0]:
            raise _validate.ValidationError(
                f"y has {ya.shape[0]} rows but X has {Xa.shape[0]}; pass matching rows")
        _validate.finite_tree(params=params)
        return NoisyFinetuneState(params, jnp.asarray(Xa), jnp.asarray(ya),
                                  jnp.ones(Xa.shape[0], bool), 0, 0)

    def params_of(state: NoisyFinetuneState) -> PyTree:
        return state.params

    def unlearn(state: NoisyFinetuneState, indices: Any,
                key: jax.Array | None = None) -> UnlearnResult:
        if key is None:
            raise _validate.ValidationError("unlearn needs a fresh key (the mechanism's noise)")
        n = int(state.X.shape[0])
        idx = _validate.forget_indices(indices, n)
        retained = state.retained.at[jnp.asarray(idx)].set(False)
        if not bool(jnp.any(retained)):
            raise _validate.ValidationError("indices would forget every row; nothing to tune on")
        dominated = _warn_noise(state.params)
        new = _fine_tune(state.params, state.X, state.y, retained, key)
        removed = state.removed + int(np.size(idx))
        cert = make_certificate(
            assumptions=assumptions, mechanism=f"koloskova2025_{var}", epsilon=eps_out,
            delta=dlt, sigma=sig if var != "output_perturbation" else s0,
            threat="indistinguishable_from_retraining", adjacency="removal", scale="mean",
            calibration=calibration, conversion=conversion, sensitivity=2.0 * c0,
            releases=state.releases + 1, removed=removed, public_inputs=public,
            notes=tuple(notes + (["the noise dominates the model at this epsilon "
                                  "(sigma sqrt(d) > C_0): the method amounts to retraining "
                                  "from a noisy start"] if dominated else [])),
            bounds=dict(details))
        st = NoisyFinetuneState(new, state.X, state.y, retained, removed, state.releases + 1)
        return UnlearnResult(new, st, cert, "unlearned",
                             {"steps": T, "sigma": sig, "init_sigma": s0, **details})

    def retrain(state: NoisyFinetuneState, key: jax.Array | None = None,
                start: PyTree = None) -> Reference:
        """The reference: the same fine-tuning from ``start`` (default: the fresh start).

        Returns a :class:`~certun.unlearners.base.Reference` (``.params``, a pytree like
        ``params(state)``).
        """
        if key is None:
            raise _validate.ValidationError("retrain needs a key")
        k1, k2 = jax.random.split(key)
        if start is None:
            start = (jax.tree.map(jnp.zeros_like, state.params) if init_fn is None
                     else init_fn(k1))
        return Reference(_fine_tune(start, state.X, state.y, state.retained, k2))

    return Unlearner(init, unlearn, params_of, retrain)


def _model_clipping_sigma(eps: float, dlt: float, c0: float, s0: float, c2: float,
                          steps: int) -> float:
    """Smallest per-step sigma (relative 1e-10) whose ``delta_T`` is at most ``dlt``."""
    def d_T(s: float) -> float:
        return float(acct.model_clipping_deltas(epsilon=eps, init_clip=c0, init_sigma=s0,
                                                model_clip=c2, sigma=s, steps=steps)[-1])

    if d_T(1e-300 + c2 * 1e6) > dlt:
        raise _validate.ValidationError(
            f"model clipping cannot reach delta={dlt:g} in {steps} steps; raise steps or "
            "init_sigma")
    lo, hi = c2 * 1e-6, c2 * 1e6
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if d_T(mid) <= dlt:
            hi = mid
        else:
            lo = mid
        if hi / lo < 1.0 + 1e-10:
            break
    return hi
