r"""Uncertified unlearning shortcuts, for comparison in audits (NOT CERTIFIED).

These are the heuristics the literature compares certified unlearning with. They come
with **no guarantee of any kind**: their results carry ``certificate=None`` and outcome
``"uncertified"``, and nothing in certun treats them as unlearned models. They exist so
that the audits (membership inference, reconstruction, distance to retraining) can show
what a guarantee buys.

* :func:`newton_shortcut` -- one Newton step on the remaining data at the current model,
  without noise (Guo et al.'s step with ``b = 0`` and no budget; an influence-function
  update). Close to retraining, but nothing bounds what it reveals.
* :func:`finetune_shortcut` -- ``steps`` gradient-descent steps on the mean-scale objective
  of the retained data, step size ``1 / (l''_max + lambda)`` (``1/L``).
* :func:`gradient_ascent_shortcut` -- ``steps`` gradient-*ascent* steps on the forgotten
  rows' summed loss, step size ``lr`` (default ``1 / (steps lambda n)``, so the total move
  is about the first-order influence ``grad l_z / (lambda n)``).

Each is a factory returning an unlearner-shaped ``(init, unlearn, params, retrain)``; the
linear model (logistic, binary or one-vs-rest, or ridge) is trained to ``tol`` without
perturbation. ``retrain`` is exact retraining on the remaining rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.models import glm
from certun.release import targets

__all__ = ["ShortcutState", "ShortcutResult", "Shortcut", "newton_shortcut",
           "finetune_shortcut", "gradient_ascent_shortcut", "SHORTCUTS"]


class ShortcutState(NamedTuple):
    """Rows, targets, mask of present rows and the current (uncertified) model ``(d, K)``."""

    X: jax.Array
    Y: jax.Array
    mask: jax.Array
    W: jax.Array


class ShortcutResult(NamedTuple):
    """Like :class:`~certun.unlearners.base.UnlearnResult`, with ``certificate=None``."""

    params: Any
    state: ShortcutState
    certificate: None
    outcome: str
    diagnostics: dict


class Shortcut(NamedTuple):
    """An uncertified unlearner: ``init``, ``unlearn``, ``params``, ``retrain``."""

    init: Callable[..., ShortcutState]
    unlearn: Callable[..., ShortcutResult]
    params: Callable[[ShortcutState], Any]
    retrain: Callable[..., Any]
    name: str


def _factory(name: str, update: Callable, lam: float, loss: str, tol: float) -> Shortcut:
    lossf = glm.get_loss(loss)

    @jax.jit
    def _fit(X, Y, mask):
        return glm.fit(lossf, X, Y, lam, None, mask, tol=tol)

    upd = jax.jit(update, static_argnums=(0,))

    def init(X: Any, y: Any, key: jax.Array | None = None,
             num_classes: int | None = None) -> ShortcutState:
        """Train the model (no perturbation, no noise)."""
        del key
        Xn = _validate.finite_array(X=X, ndim=2)
        yn = _validate.finite_array(y=y, ndim=(1, 2))
        _validate.matching_rows(X=Xn, y=yn)
        dtype = jnp.zeros(()).dtype
        Xj = jnp.asarray(Xn, dtype)
        Yj = jnp.asarray(targets(lossf.name, yn, num_classes), dtype)
        mask = jnp.ones(Xj.shape[0], dtype)
        return ShortcutState(Xj, Yj, mask, _fit(Xj, Yj, mask).params)

    def params(state: ShortcutState) -> jax.Array:
        """The current model: ``(d,)`` for one head."""
        return state.W[:, 0] if state.W.shape[1] == 1 else state.W

    def retrain(state: ShortcutState, key: jax.Array | None = None) -> Any:
        """Exact retraining on the remaining rows (a ``FitResult``)."""
        del key
        return _fit(state.X, state.Y, state.mask)

    def unlearn(state: ShortcutState, indices: Any, key: jax.Array | None = None
                ) -> ShortcutResult:
        """Apply the shortcut for ``indices``. NOT CERTIFIED (``certificate=None``)."""
        del key
        idx = _validate.forget_indices(indices, int(state.X.shape[0]),
                                       already_removed=np.asarray(state.mask) == 0)
        mask_new = state.mask.at[jnp.asarray(idx)].set(0.0)
        forget = jnp.zeros_like(state.mask).at[jnp.asarray(idx)].set(1.0)
        W = upd(lossf, state.W, state.X, state.Y, mask_new, forget)
        new = state._replace(mask=mask_new, W=W)
        return ShortcutResult(params(new), new, None, "uncertified",
                              {"shortcut": name, "certified": False})

    return Shortcut(init, unlearn, params, retrain, name)


def newton_shortcut(*, lam: float, loss: str = "logistic", tol: float = 1e-10) -> Shortcut:
    """One noiseless Newton step on the remaining data (NOT CERTIFIED).

    ``W <- W + H^{-1} (sum_U grad l + m lam W)`` with ``H`` the sum-scale Hessian of the
    remaining rows at ``W`` (Guo et al.'s step with ``b = 0``, no budget).
    """
    lam = _validate.positive(lam=lam)
    _validate.choice(("logistic", "squared"), loss=loss)

    def update(lossf, W, X, Y, mask_new, forget):
        m = jnp.sum(forget)
        Delta = jnp.einsum("ik,ij->jk", forget[:, None] * lossf.d1(X @ W, Y), X) + m * lam * W
        H = glm.hessian_sum(lossf, W, X, Y, lam, mask_new)
        step = jax.vmap(jnp.linalg.solve, in_axes=(0, 1), out_axes=1)(H, Delta)
        return W + step

    return _factory("newton_step_noiseless", update, lam, loss, tol)


def finetune_shortcut(*, lam: float, loss: str = "logistic", steps: int = 10,
                      lr: float | None = None, tol: float = 1e-10) -> Shortcut:
    """Gradient descent on the retained rows' mean-scale objective (NOT CERTIFIED).

    Args:
      lam: L2 regularisation ``> 0``, mean scale (the objective is ``mean loss + lam/2 ||W||^2``).
      loss: ``"logistic"`` (binary ``+-1`` labels, or integer class ids fitted one-vs-rest)
        or ``"squared"`` (ridge).
      steps: gradient steps (``>= 1``).
      lr: step size (default ``1 / (l''_max + lam)``, the inverse smoothness bound).
      tol: training tolerance on the mean-scale gradient norm (``init`` and ``retrain``
        fit to it).
    """
    lam = _validate.positive(lam=lam)
    lossf = glm.get_loss(_validate.choice(("logistic", "squared"), loss=loss))
    steps = _validate.integer(steps=steps, minimum=1)
    eta = 1.0 / (lossf.d2_bound + lam) if lr is None else _validate.positive(lr=lr)

    def update(lossf, W, X, Y, mask_new, forget):
        def body(_, W):
            return W - eta * glm.gradient_mean(lossf, W, X, Y, lam, None, mask_new)
        return jax.lax.fori_loop(0, steps, body, W)

    return _factory(f"finetune_retained_{steps}steps", update, lam, loss, tol)


def gradient_ascent_shortcut(*, lam: float, loss: str = "logistic", steps: int = 5,
                             lr: float | None = None, tol: float = 1e-10) -> Shortcut:
    """Gradient ascent on the forgotten rows' summed loss (NOT CERTIFIED).

    Args:
      lam: L2 regularisation ``> 0``, mean scale (the objective is ``mean loss + lam/2 ||W||^2``).
      loss: ``"logistic"`` (binary ``+-1`` labels, or integer class ids fitted one-vs-rest)
        or ``"squared"`` (ridge).
      steps: ascent steps (``>= 1``).
      lr: step size on the summed forget loss (default ``1 / (steps lam n)``, ``n`` the
        rows before the request: the total move is about ``grad l_z / (lam n)``).
      tol: training tolerance on the mean-scale gradient norm (``init`` and ``retrain``
        fit to it).
    """
    lam = _validate.positive(lam=lam)
    _validate.choice(("logistic", "squared"), loss=loss)
    steps = _validate.integer(steps=steps, minimum=1)
    lr_fixed = None if lr is None else _validate.positive(lr=lr)

    def update(lossf, W, X, Y, mask_new, forget):
        n = jnp.sum(mask_new) + jnp.sum(forget)
        eta = (1.0 / (steps * lam * n)) if lr_fixed is None else lr_fixed

        def body(_, W):
            g = jnp.einsum("ik,ij->jk", forget[:, None] * lossf.d1(X @ W, Y), X)
            return W + eta * g
        return jax.lax.fori_loop(0, steps, body, W)

    return _factory(f"gradient_ascent_forget_{steps}steps", update, lam, loss, tol)


#: Factories of the uncertified shortcuts, by name.
SHORTCUTS = {"newton_step_noiseless": newton_shortcut, "finetune_retained": finetune_shortcut,
             "gradient_ascent_forget": gradient_ascent_shortcut}
