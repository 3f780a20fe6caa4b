"""Generic minimisers used to train convex models to a tight optimum.

* :func:`newton_minimize`: damped Newton with Armijo backtracking, in a
  ``lax.while_loop``; quadratic convergence near the optimum, which makes
  gradient norms of ~1e-12 (float64) cheap for the models certun certifies.
* :func:`lbfgs_minimize`: optax's L-BFGS with its zoom line search, jitted; the
  honest baseline for retraining from scratch (it is what the benchmarks time).

Both stop when the Euclidean norm of the gradient (of the objective they are
given, which for certun models is the *mean*-scale objective) is at most
``tol``, and return a :class:`FitResult` that states whether it was reached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu
from jax import lax

from certun._tree import tree_axpy, tree_norm, tree_vdot
from certun.results import RESULTS

__all__ = ["FitResult", "newton_minimize", "lbfgs_minimize"]

PyTree = Any


class FitResult(NamedTuple):
    """Outcome of training.

    Attributes:
      params: the parameters reached.
      grad_norm: Euclidean norm of the objective's gradient at ``params`` (the
        scale of the objective passed in; certun models pass the mean scale).
      num_steps: iterations used.
      result: ``RESULTS.successful`` if ``grad_norm <= tol``, else
        ``max_steps_reached`` (or ``nonfinite``).
    """

    params: PyTree
    grad_norm: jax.Array
    num_steps: jax.Array
    result: jax.Array


def newton_minimize(fun: Callable[[PyTree], jax.Array], grad: Callable[[PyTree], PyTree],
                    newton_dir: Callable[[PyTree, PyTree], PyTree], x0: PyTree, *,
                    tol: float = 1e-10, max_steps: int = 100, max_halvings: int = 40) -> FitResult:
    """Damped Newton's method with Armijo backtracking for a smooth strongly convex ``fun``.

    Each step solves ``H s = -g`` through ``newton_dir(x, g)`` and takes the
    largest ``t in {1, 1/2, 1/4, ...}`` with ``f(x + t s) <= f(x) + 1e-4 t g^T s``; once the
    predicted decrease ``-g^T s`` is within rounding of ``f`` (where that test can no longer
    see progress) the full step is taken.

    Args:
      fun: objective.
      grad: its gradient.
      newton_dir: ``(x, g) -> -H(x)^{-1} g``.
      x0: starting point.
      tol: stop when ``||grad(x)||_2 <= tol``.
      max_steps: Newton iteration cap.
      max_halvings: backtracking cap per iteration.

    Returns:
      A :class:`FitResult`.
    """

    def cond(c):
        _, g, k, _ = c
        gn = tree_norm(g)
        return (gn > tol) & (k < max_steps) & jnp.isfinite(gn)

    def body(c):
        x, g, k, _ = c
        s = newton_dir(x, g)
        f0 = fun(x)
        slope = tree_vdot(g, s)

        # Near the optimum the predicted decrease -g^T s falls below the rounding error of f,
        # so Armijo cannot see it: take the full Newton step there (quadratic convergence).
        eps = jnp.finfo(jnp.result_type(f0)).eps
        in_rounding = -slope <= 64.0 * eps * (jnp.abs(f0) + 1.0)

        def bt_cond(bc):
            t, j = bc
            return ((fun(tree_axpy(t, s, x)) > f0 + 1e-4 * t * slope) & (j < max_halvings)
                    & ~in_rounding)

        t, _ = lax.while_loop(bt_cond, lambda bc: (bc[0] * 0.5, bc[1] + 1), (jnp.ones_like(f0), 0))
        x_new = tree_axpy(t, s, x)
        return x_new, grad(x_new), k + 1, t

    x, g, k, _ = lax.while_loop(cond, body, (x0, grad(x0), jnp.int32(0), jnp.zeros(())))
    gn = tree_norm(g)
    code = jnp.where(gn <= tol, jnp.int32(RESULTS.successful), jnp.int32(RESULTS.max_steps_reached))
    code = jnp.where(jnp.isfinite(gn), code, jnp.int32(RESULTS.nonfinite))
    return FitResult(x, gn, k, code)


def lbfgs_minimize(fun: Callable[[PyTree], jax.Array], x0: PyTree, *, tol: float = 1e-10,
                   max_steps: int = 1000, memory_size: int = 10) -> FitResult:
    """Minimise ``fun`` with optax L-BFGS (zoom line search) until ``||grad|| <= tol``.

    The loop is a ``lax.while_loop`` so the whole run compiles to one program.

    Args:
      fun: objective (pytree -> scalar).
      x0: starting point.
      tol: gradient-norm tolerance.
      max_steps: iteration cap.
      memory_size: L-BFGS history length.

    Returns:
      A :class:`FitResult`.
    """
    opt = optax.lbfgs(memory_size=memory_size)
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        x, state, _ = carry
        value, g = value_and_grad(x, state=state)
        updates, state = opt.update(g, state, x, value=value, grad=g, value_fn=fun)
        x = optax.apply_updates(x, updates)
        return x, state, tree_norm(otu.tree_get(state, "grad"))

    def cond(carry):
        _, state, gn = carry
        k = otu.tree_get(state, "count")
        return (k == 0) | ((gn > tol) & (k < max_steps) & jnp.isfinite(gn))

    state0 = opt.init(x0)
    inf = jnp.asarray(jnp.inf, jnp.result_type(float))
    x, state, _ = lax.while_loop(cond, step, (x0, state0, inf))
    gn = tree_norm(jax.grad(fun)(x))
    code = jnp.where(gn <= tol, jnp.int32(RESULTS.successful), jnp.int32(RESULTS.max_steps_reached))
    code = jnp.where(jnp.isfinite(gn), code, jnp.int32(RESULTS.nonfinite))
    return FitResult(x, gn, otu.tree_get(state, "count"), code)
