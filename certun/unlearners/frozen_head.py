r"""A certified convex head on a frozen feature extractor (Guo et al. 2020, section 4).

The nonlinear part of a network is trained once and frozen; only a linear head on its
features is trained on the private rows and unlearned with Guo et al.'s certified removal
(:func:`certun.unlearners.certified_removal`, objective perturbation plus a Newton step,
used through its public API). Two extractor settings, as in the paper:

* ``extractor="public"``: trained on data that is never deleted from and is disjoint from the
  private training rows (a public split). The extractor is then a fixed, public function; the
  head's certificate is the whole guarantee. certun cannot see how the extractor was trained,
  so the declaration is stated in the certificate's ``public_inputs`` and notes.
* ``extractor=DPExtractor(epsilon, delta, group_size)``: trained with DP-SGD on the private rows
  themselves (:func:`certun.nn.dp.dp_sgd_train`), ``(epsilon, delta)`` for groups of
  ``group_size`` rows. A deletion of ``k <= group_size`` rows is then covered by the basic
  composition of the extractor's guarantee with the head's: ``epsilon_head + epsilon_extractor``,
  ``delta_head + delta_extractor``; a request beyond ``group_size`` rows in total is refused
  (the extractor's guarantee no longer covers the deleted group).

Features are ``normalize_rows(extract(params, X))``: a per-row map, so ``||phi(x_i)|| <= 1``
(the head's bounds need it) without leaking other rows.

References:
  C. Guo, T. Goldstein, A. Hannun, L. van der Maaten, "Certified Data Removal from Machine
  Learning Models", ICML 2020, https://arxiv.org/abs/1911.03030, section 4 (public and DP
  feature extractors).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.data.preprocessing import normalize_rows
from certun.unlearners.base import Unlearner, UnlearnResult

__all__ = ["DPExtractor", "FrozenHeadState", "frozen_extractor_head", "extract_features"]

PyTree = Any


class DPExtractor(NamedTuple):
    """An extractor trained with DP-SGD on the private rows.

    Attributes:
      epsilon, delta: its guarantee for a group of ``group_size`` rows (group privacy).
      group_size: the largest number of deleted rows the guarantee covers.
    """

    epsilon: float
    delta: float
    group_size: int


class FrozenHeadState(NamedTuple):
    """State of :func:`frozen_extractor_head`: the head's Guo state and the removals so far."""

    head: Any
    removed: int


def extract_features(extract: Callable[[PyTree, jax.Array], jax.Array], params: PyTree,
                     X: Any, batch_size: int = 4096) -> np.ndarray:
    """``normalize_rows(extract(params, X))`` in float64, computed in batches (a per-row map)."""
    Xa = np.asarray(X)
    f = jax.jit(extract)
    out = [np.asarray(f(params, jnp.asarray(Xa[i:i + batch_size])), np.float64)
           for i in range(0, Xa.shape[0], batch_size)]
    F = np.concatenate(out, axis=0).reshape(Xa.shape[0], -1)
    return normalize_rows(F)


def frozen_extractor_head(extract: Callable[[PyTree, jax.Array], jax.Array],
                          extractor_params: PyTree, *, extractor: str | DPExtractor,
                          lam: float, sigma: float, epsilon: float, delta: float,
                          **guo_kwargs: Any) -> Unlearner:
    r"""Guo et al.'s certified removal of a linear head on frozen features.

    Args:
      extract: ``extract(params, x) -> features`` (a flax ``apply`` with the penultimate
        layer as output, :func:`certun.nn.byo.as_apply`, or any function).
      extractor_params: the frozen extractor's parameters.
      extractor: ``"public"`` or a :class:`DPExtractor`.
      lam: the head's L2 regularisation (mean scale).
      sigma: the objective perturbation's standard deviation (Guo et al.'s ``b``).
      epsilon: the head's epsilon per released model.
      delta: the head's delta.
      **guo_kwargs: further arguments of :func:`certun.unlearners.certified_removal`.

    Returns:
      An :class:`~certun.unlearners.base.Unlearner` whose ``init(X, y, key)`` takes raw inputs
      (features are extracted inside), ``unlearn(state, indices, key=None)``,
      ``params(state)`` (the head's weights, ``(dim, 1)`` binary or ``(dim, K)`` one-vs-rest),
      ``retrain(state, key=None)`` (the head retrained on the remaining features).
    """
    from certun.unlearners.guo import certified_removal

    if isinstance(extractor, str):
        if extractor != "public":
            raise _validate.ValidationError(
                f"extractor must be 'public' or a DPExtractor(epsilon, delta, group_size), got "
                f"{extractor!r}")
        dp = None
    elif isinstance(extractor, DPExtractor):
        dp = DPExtractor(_validate.epsilon(**{"extractor.epsilon": extractor.epsilon}),
                         _validate.delta(**{"extractor.delta": extractor.delta}),
                         _validate.integer(**{"extractor.group_size": extractor.group_size},
                                           minimum=1))
    else:
        raise _validate.ValidationError(
            "extractor must be 'public' or a DPExtractor(epsilon, delta, group_size)")
    head = certified_removal(lam=lam, sigma=sigma, epsilon=epsilon, delta=delta, **guo_kwargs)

    def _wrap(cert: Any, removed: int) -> Any:
        if dp is None:
            status_note = ("feature extractor: public (declared by the caller: trained on data "
                           "disjoint from the training rows, never deleted from); frozen, so the "
                           "head's guarantee is the whole guarantee")
            return dataclasses.replace(
                cert, mechanism=f"frozen_public_extractor+{cert.mechanism}",
                public_inputs=dict(cert.public_inputs, extractor="public"),
                notes=tuple(cert.notes) + (status_note,))
        eps_tot = float(cert.epsilon) + dp.epsilon
        dlt_tot = float(cert.delta) + dp.delta
        note = (f"feature extractor: DP-SGD ({dp.epsilon:g}, {dp.delta:g}) for groups of "
                f"{dp.group_size} rows; composed with the head by basic composition: "
                f"({eps_tot:g}, {dlt_tot:g}) in total")
        return dataclasses.replace(
            cert, mechanism=f"frozen_dp_extractor+{cert.mechanism}", epsilon=eps_tot,
            delta=dlt_tot,
            public_inputs=dict(cert.public_inputs, extractor="dp_sgd",
                               extractor_epsilon=dp.epsilon, extractor_delta=dp.delta,
                               extractor_group_size=dp.group_size,
                               head_epsilon=float(cert.epsilon), head_delta=float(cert.delta)),
            notes=tuple(cert.notes) + (note,))

    def init(X: Any, y: Any, key: jax.Array, num_classes: int | None = None) -> FrozenHeadState:
        F = extract_features(extract, extractor_params, X)
        return FrozenHeadState(head.init(F, y, key, num_classes=num_classes), 0)

    def unlearn(state: FrozenHeadState, indices: Any,
                key: jax.Array | None = None) -> UnlearnResult:
        k = int(np.size(indices))
        if dp is not None and state.removed + k > dp.group_size:
            raise _validate.ValidationError(
                f"the DP extractor covers groups of {dp.group_size} rows; {state.removed} were "
                f"removed and {k} more are requested: retrain the extractor (or train it for a "
                "larger group_size)")
        res = head.unlearn(state.head, indices, key)
        removed = state.removed + (k if res.params is not None else 0)
        return UnlearnResult(res.params, FrozenHeadState(res.state, removed),
                             _wrap(res.certificate, removed), res.outcome, res.diagnostics)

    def params(state: FrozenHeadState) -> Any:
        return head.params(state.head)

    def retrain(state: FrozenHeadState, key: jax.Array | None = None) -> Any:
        return head.retrain(state.head, key)

    return Unlearner(init, unlearn, params, retrain)
