"""Exact retraining: the baseline every certified unlearner is compared with.

``unlearn`` retrains from zero on the remaining rows with the same training
randomness (the objective perturbation ``b`` when ``sigma > 0``, drawn once at
``init``), to the same tolerance as the original training. Its output *is* the
reference distribution of certified removal, so its certificate holds with
``epsilon = delta = 0`` against retraining — and, like every removal guarantee, says
nothing about an observer of the model before and after.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.certificate import check, make_certificate
from certun.models import glm, multinomial
from certun.primitives.noise import objective_perturbation
from certun.results import RESULTS
from certun.unlearners.base import Unlearner, UnlearnResult, published_view
from certun.unlearners.guo import _targets

__all__ = ["RetrainState", "exact_retraining", "MECHANISM"]

#: Mechanism name in exact-retraining certificates.
MECHANISM = "exact_retraining"


class RetrainState(NamedTuple):
    """State of :func:`exact_retraining`: data, mask of present rows, model, perturbation."""

    X: jax.Array
    Y: jax.Array
    mask: jax.Array
    W: jax.Array
    b: jax.Array | None
    grad_norm: jax.Array


def exact_retraining(*, lam: float, loss: str = "logistic", sigma: float = 0.0,
                     method: str = "newton", tol: float = 1e-10) -> Unlearner:
    """Retrain from scratch on every request.

    Args:
      lam: mean-scale L2 regularisation.
      loss: ``"logistic"`` (binary / one-vs-rest), ``"squared"`` (ridge) or
        ``"multinomial"`` (softmax).
      sigma: std of Guo et al.'s objective perturbation ``b`` (0: none).
      method: ``"newton"`` or ``"lbfgs"``.
      tol: mean-scale gradient-norm tolerance.
    """
    lam = _validate.positive(lam=lam)
    loss = _validate.choice(("logistic", "squared", "multinomial"), loss=loss)
    sigma = _validate.non_negative(sigma=sigma)
    method = _validate.choice(("newton", "lbfgs"), method=method)
    tol = _validate.positive(tol=tol)

    def _fit_any(X, Y, b, mask):
        if loss == "multinomial":
            y = jnp.argmax(Y, axis=1)
            return multinomial.fit(X, y, Y.shape[1], lam, b, mask, method=method, tol=tol)
        return glm.fit(loss, X, Y, lam, b, mask, method=method, tol=tol)

    fit_jit = jax.jit(_fit_any)

    def init(X: Any, y: Any, key: jax.Array | None = None, num_classes: int | None = None
             ) -> RetrainState:
        """Train on all rows (drawing ``b`` with ``key`` when ``sigma > 0``)."""
        Xn = _validate.finite_array(X=X, ndim=2)
        yn = _validate.finite_array(y=y, ndim=(1, 2))
        _validate.matching_rows(X=Xn, y=yn)
        dtype = jnp.zeros(()).dtype
        if loss == "multinomial":
            ids, K = _validate.class_ids(yn, num_classes)
            Yn = np.eye(K)[ids]
        else:
            Yn = _targets(glm.get_loss(loss), yn, num_classes)
        Xj, Yj = jnp.asarray(Xn, dtype), jnp.asarray(Yn, dtype)
        b = None
        if sigma > 0:
            if key is None:
                raise _validate.ValidationError("key is required when sigma > 0")
            b = objective_perturbation(key, (Xj.shape[1], Yj.shape[1]), sigma, dtype)
        mask = jnp.ones(Xj.shape[0], dtype)
        fr = fit_jit(Xj, Yj, b, mask)
        if int(fr.result) != RESULTS.successful:
            raise RuntimeError(
                f"training did not reach tol={tol}: grad norm {float(fr.grad_norm):.3e}")
        return RetrainState(Xj, Yj, mask, fr.params, b, fr.grad_norm)

    def params(state: RetrainState) -> jax.Array:
        """The current model (``(d,)`` for one head)."""
        return state.W[:, 0] if (state.W.shape[1] == 1 and loss != "multinomial") else state.W

    def retrain(state: RetrainState, key: jax.Array | None = None) -> Any:
        """Retrain on the remaining rows (a :class:`~certun.models.fit.FitResult`)."""
        del key
        fr = fit_jit(state.X, state.Y, state.b, state.mask)
        return fr if loss == "multinomial" else fr._replace(params=published_view(fr.params))

    def unlearn(state: RetrainState, indices: Any, key: jax.Array | None = None) -> UnlearnResult:
        """Remove ``indices`` and retrain from zero on what remains."""
        del key
        t0 = time.perf_counter()
        n = int(state.X.shape[0])
        idx = _validate.forget_indices(indices, n, already_removed=np.asarray(state.mask) == 0)
        mask = state.mask.at[jnp.asarray(idx)].set(0.0)
        if float(jnp.sum(mask)) < 1:
            raise _validate.ValidationError("indices would remove every remaining row")
        fr = fit_jit(state.X, state.Y, state.b, mask)
        ok = int(fr.result) == RESULTS.successful
        new = RetrainState(state.X, state.Y, mask, fr.params, state.b, fr.grad_norm)
        cert = make_certificate(
            mechanism=MECHANISM, epsilon=0.0, delta=0.0, sigma=sigma,
            threat="indistinguishable_from_retraining", adjacency="removal", scale="mean",
            calibration="none", removed=int(n - float(jnp.sum(mask))),
            assumptions=[check("converged", f"retraining reached ||grad J|| <= {tol:g}", ok,
                               float(fr.grad_norm), tol, private=True)],
            solver={"iterations": int(fr.num_steps), "grad_norm": float(fr.grad_norm)},
            notes=("Exact retraining is the reference distribution; it does not hide the deletion "
                   "from an observer of the model before and after.",),
        )
        diag = {"seconds": time.perf_counter() - t0, "iterations": int(fr.num_steps)}
        if not ok:
            return UnlearnResult(None, state, cert, "retrain_required", diag)
        return UnlearnResult(params(new), new, cert, "unlearned", diag)

    return Unlearner(init=init, unlearn=unlearn, params=params, retrain=retrain)
