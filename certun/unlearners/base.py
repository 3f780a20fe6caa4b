"""Shared types of certun unlearners.

An unlearner is a factory that closes over its hyperparameters and returns an
:class:`Unlearner`, a NamedTuple of pure functions (the optax pattern):

* ``state = unlearner.init(X, y, key)`` trains the model with the mechanism's
  own randomness and builds everything later requests reuse (factorisations,
  Gram matrices, norm bounds);
* ``result = unlearner.unlearn(state, indices, key=None)`` removes the training
  rows ``indices`` (positions in the *original* training set) and returns an
  :class:`UnlearnResult` with the new published parameters, the new state and a
  :class:`~certun.certificate.Certificate`;
* ``params = unlearner.params(state)`` gives the currently published model;
* ``retrain = unlearner.retrain(state, key=None)`` gives the exact-retraining
  reference on the remaining rows (same training randomness where the
  mechanism's definition requires it); its ``.params`` has the shape (the pytree
  structure) of ``params(state)``: ``(d,)`` for one linear head, ``(d, K)`` for K heads,
  so ``unlearner.params(state) - unlearner.retrain(state).params`` never broadcasts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from certun.certificate import Certificate

__all__ = ["Unlearner", "UnlearnResult", "OUTCOMES", "RetrainRequired", "Reference",
           "published_view"]

#: What a request ended in: unlearned, a retrain is required (refused), or retrained.
OUTCOMES = ("unlearned", "retrain_required", "retrained")


def published_view(W: Any) -> Any:
    """The published form of linear weights ``W`` of shape ``(d, K)``.

    ``(d,)`` for one head (``K == 1``), ``W`` itself for ``K > 1`` heads. Every linear
    unlearner's ``params(state)`` and ``retrain(state).params`` use this form, so the two
    compare without broadcasting.
    """
    return W.squeeze(1) if W.shape[1] == 1 else W


class Reference(NamedTuple):
    """A retraining reference with nothing to report but its parameters.

    Unlearners whose ``retrain`` has no solver outcome to return (a fixed number of noisy
    steps) return this, so every ``retrain(state).params`` reads alike.

    Attributes:
      params: the reference parameters, in the form of ``params(state)``.
    """

    params: Any


class RetrainRequired(RuntimeError):
    """Raised (only when asked) when a request cannot be certified without retraining."""


class UnlearnResult(NamedTuple):
    """What an unlearning request returns.

    Attributes:
      params: the new published parameters, or ``None`` when the request was
        refused (``outcome == "retrain_required"``): a refused request never
        returns a model that still contains the data as if it were unlearned.
      state: the new unlearner state (unchanged when refused).
      certificate: the certificate of ``params`` (``fails`` when refused, with the reason).
      outcome: ``"unlearned"``, ``"retrain_required"`` or ``"retrained"`` (the
        unlearner retrained on the remaining rows with fresh randomness).
      diagnostics: private per-request numbers (bounds, residuals, timings).
    """

    params: Any
    state: Any
    certificate: Certificate
    outcome: str
    diagnostics: dict


class Unlearner(NamedTuple):
    """A certified unlearner: ``init``, ``unlearn``, ``params`` and ``retrain`` (pure functions)."""

    init: Callable[..., Any]
    unlearn: Callable[..., UnlearnResult]
    params: Callable[[Any], Any]
    retrain: Callable[..., Any]
