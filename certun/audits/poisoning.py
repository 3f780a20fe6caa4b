r"""Camouflaged poisoning: poisons and camouflages crafted by gradient matching (Di et al. 2023).

Di, Douglas, Acharya, Kamath, Sekhari, "Hidden Poison: Machine Unlearning Enables
Camouflaged Poisoning Attacks", NeurIPS 2023. The adversary adds **poisons** (clean-label:
rows of the adversarial class, labelled as such, slightly perturbed) that push a target
``x_t`` towards the adversarial class, and **camouflages** (rows of the target's true class)
that cancel the poisons. With both present the target stays correct; a later request to
delete the camouflages "unleashes" the poisons.

Crafting follows the paper's Witches'-Brew-style gradient matching: perturbations
``Delta`` of chosen base rows minimise

.. math::
    1-\frac{\langle\nabla_\theta\ell(\mathrm{batch}+\Delta),\,g_{\mathrm{tgt}}\rangle}
    {\lVert\nabla_\theta\ell(\mathrm{batch}+\Delta)\rVert\,\lVert g_{\mathrm{tgt}}\rVert}

by signed Adam-style steps projected onto ``||Delta||_inf <= eps`` and the valid pixel box,
with ``g_tgt = grad l(x_t, y_adv)`` at the clean model for poisons and
``g_tgt = grad l(x_t, y_true)`` at the model retrained on clean + poisons for camouflages.
Here ``theta`` is a one-vs-rest L2-logistic model on the fixed feature map ``phi`` (the
paper's convex variant is an SVM on binary CIFAR-10; its main results use ResNet-18).

**What certification does not protect against.** The deletion of the camouflages is a
legitimate request, and *exact retraining* honours it: the attack works against exact
unlearning, hence against every certified unlearner (indistinguishable from retraining)
and against SISA. Certification bounds what the published model reveals about deleted
rows; it says nothing about what deleting them does to predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate

__all__ = ["ovr_loss_grad", "gradient_matching"]


def ovr_loss_grad(W: jax.Array, phi: jax.Array, labels: jax.Array) -> jax.Array:
    """Gradient w.r.t. ``W`` of the summed one-vs-rest logistic loss of rows ``phi``."""
    K = W.shape[1]
    Y = jnp.where(jnp.arange(K)[None, :] == labels[:, None], 1.0, -1.0)

    def loss(Wv):
        return jnp.sum(jnp.logaddexp(0.0, -Y * (phi @ Wv)))

    return jax.grad(loss)(W)


def _objective(D, W, B, lab, g_t, feature_map, box):
    g = ovr_loss_grad(W, feature_map(jnp.clip(B + D, *box)), lab)
    return 1.0 - jnp.sum(g * g_t) / (jnp.linalg.norm(g) + 1e-30)


@partial(jax.jit, static_argnames=("feature_map", "steps", "box"))
def _match(W, B, lab, g_t, k, eps, lr, *, feature_map, steps, box):
    """Signed-Adam steps on the cosine loss from a random start; ``(Delta, loss)``."""
    D0 = jax.random.uniform(k, B.shape, W.dtype, -eps, eps)
    grad = jax.grad(_objective)

    def step(carry, t):
        D, m, v = carry
        g = grad(D, W, B, lab, g_t, feature_map, box)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        mh, vh = m / (1 - 0.9 ** (t + 1)), v / (1 - 0.999 ** (t + 1))
        D = D - lr * eps * mh / (jnp.sqrt(vh) + 1e-12)
        D = jnp.clip(jnp.clip(D, -eps, eps), box[0] - B, box[1] - B)
        return (D, m, v), None

    z = jnp.zeros_like(B)
    (D, _, _), _ = jax.lax.scan(step, (D0, z, z), jnp.arange(steps, dtype=W.dtype))
    return D, _objective(D, W, B, lab, g_t, feature_map, box)


def gradient_matching(W: Any, base: Any, labels: Any, x_target: Any, y_target_grad: int, *,
                      feature_map: Callable[[jax.Array], jax.Array], eps: float,
                      box: tuple[float, float] = (0.0, 1.0), steps: int = 250,
                      lr: float = 0.1, restarts: int = 2, key: jax.Array) -> np.ndarray:
    """Perturb ``base`` rows so their loss gradient aligns with the target's.

    Args:
      W: ``(d, K)`` model at which gradients are matched.
      base: ``(m, p)`` base rows in input (pixel) space.
      labels: ``(m,)`` their (clean) labels, kept.
      x_target: ``(p,)`` target in input space.
      y_target_grad: the label of the target gradient (``y_adv`` for poisons, ``y_true``
        for camouflages).
      feature_map: ``phi`` from input space to model features (jax-traceable).
      eps: ``L_inf`` radius of the perturbation (> 0).
      box: valid input range.
      steps: optimisation steps per restart (the paper: 250).
      lr: step size of the signed-Adam update, as a fraction of ``eps``.
      restarts: random restarts; the lowest loss is kept (the paper: 8).
      key: PRNG key of the random starts.

    Returns:
      ``(m, p)`` perturbed rows (float64 on the host).
    """
    eps = _validate.positive(eps=eps)
    steps = _validate.integer(steps=steps, minimum=1)
    restarts = _validate.integer(restarts=restarts, minimum=1)
    Wj = jnp.asarray(W)
    B = jnp.asarray(base, Wj.dtype)
    lab = jnp.asarray(labels, jnp.int32)
    xt = jnp.asarray(x_target, Wj.dtype)
    g_t = ovr_loss_grad(Wj, feature_map(xt[None]), jnp.asarray([y_target_grad], jnp.int32))
    g_t = g_t / jnp.linalg.norm(g_t)

    best, best_loss = None, np.inf
    for k in jax.random.split(key, restarts):
        D, loss = _match(Wj, B, lab, g_t, k, eps, lr, feature_map=feature_map, steps=steps,
                         box=tuple(box))
        if float(loss) < best_loss:
            best, best_loss = D, float(loss)
    assert best is not None  # restarts >= 1
    return np.asarray(jnp.clip(B + best, *box), np.float64)
