"""SISA training (Bourtoule et al., IEEE S&P 2021): exact unlearning by sharding and slicing.

The training rows are split at random into ``S`` disjoint **shards**, each shard into
``R`` **slices**. Each shard trains its own constituent model incrementally: checkpoint
``r`` is the model trained on slices ``0..r`` of the shard, warm-started from
checkpoint ``r - 1``. Predictions aggregate the constituents (majority vote of the
labels, or the average of their scores; the mean for regression).

**Deleting** a row retrains only its shard, from the checkpoint *before* the slice that
held it: slices ``r*..R-1`` are refitted on the remaining rows, each warm-started from the
previous checkpoint. Because the same deterministic fit is used at training time, the
ensemble after a deletion is exactly (bit for bit) the ensemble SISA training would produce
on the remaining rows with the same shard and slice assignment; nothing about the deleted
row remains, so no noise and no certificate budget are involved (exact unlearning). The
price: each constituent sees only ``n / S`` rows (accuracy drops as ``S`` grows) and a
deletion costs up to ``R`` refits of a shard.

Models are certun's convex GLMs (:mod:`certun.models.glm`: logistic, one-vs-rest for class
ids, or ridge), each fit to a gradient-norm tolerance on certun's mean-scale objective
``mean(loss) + (lam/2)||w||^2`` over the slice prefix.

Reference: L. Bourtoule, V. Chandrasekaran, C. A. Choquette-Choo, H. Jia, A. Travers,
B. Zhang, D. Lie, N. Papernot, "Machine Unlearning", IEEE S&P 2021 (arXiv:1912.03817).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.models import glm
from certun.progress import progress_bar
from certun.results import RESULTS

__all__ = ["SisaState", "SisaDeletion", "Sisa", "sisa"]


class SisaState(NamedTuple):
    """State of a SISA ensemble (a pytree of arrays).

    Attributes:
      X, Y: rows grouped by shard, ``(S, n_s, d)`` and ``(S, n_s, K)`` (padded with zero rows).
      slice_id: ``(S, n_s)`` slice of each row within its shard.
      mask: ``(S, n_s)`` 1 for rows present, 0 for deleted rows and padding.
      checkpoints: ``(S, R, d, K)``; checkpoint ``r`` is trained on slices ``0..r``.
      shard_of, pos_of: ``(n,)`` where each original row lives.
      slice_fits: number of slice fits performed so far (training and deletions).
    """

    X: jax.Array
    Y: jax.Array
    slice_id: jax.Array
    mask: jax.Array
    checkpoints: jax.Array
    shard_of: jax.Array
    pos_of: jax.Array
    slice_fits: jax.Array


class SisaDeletion(NamedTuple):
    """Outcome of :meth:`Sisa.delete`: the new state and what the deletion cost."""

    state: SisaState
    shards: tuple[int, ...]
    slices_refit: int
    rows_refit: int
    seconds: float


class Sisa(NamedTuple):
    """A SISA ensemble's functions.

    ``init(X, y, key, num_classes=None)``, ``delete(state, indices)``, ``predict(state, X)``,
    ``fit_slices(state, shard, start, mask=None, w0=None)``.
    """

    init: Callable[..., SisaState]
    delete: Callable[..., SisaDeletion]
    predict: Callable[..., jax.Array]
    fit_slices: Callable[..., jax.Array]


def sisa(*, shards: int, slices: int, lam: float, loss: str = "logistic",
         method: str = "newton", tol: float = 1e-10, aggregate: str = "vote") -> Sisa:
    """Build a SISA ensemble of convex GLMs.

    Args:
      shards: ``S``, number of disjoint shards (constituent models).
      slices: ``R``, slices per shard (checkpoints).
      lam: mean-scale L2 regularisation of every constituent (> 0).
      loss: ``"logistic"`` (labels ``+-1``, or class ids for one-vs-rest) or ``"squared"``.
      method: ``"newton"`` or ``"lbfgs"`` (each slice fit is warm-started).
      tol: mean-scale gradient-norm tolerance of every slice fit.
      aggregate: ``"vote"`` (majority of the constituents' labels, ties broken by the
        mean score) or ``"mean"`` (sign/argmax of the mean score); regression averages.

    Returns:
      A :class:`Sisa`.
    """
    S = _validate.integer(shards=shards, minimum=1)
    R = _validate.integer(slices=slices, minimum=1)
    lam = _validate.positive(lam=lam)
    lossf = glm.get_loss(_validate.choice(("logistic", "squared"), loss=loss))
    method = _validate.choice(("newton", "lbfgs"), method=method)
    tol = _validate.positive(tol=tol)
    aggregate = _validate.choice(("vote", "mean"), aggregate=aggregate)

    @jax.jit
    def _fit_prefix(X, Y, slice_id, mask, r, W0):
        """Fit on the present rows of slices ``0..r`` of one shard, warm-started at ``W0``."""
        m = mask * (slice_id <= r)
        res = glm.fit(lossf, X, Y, lam, None, m, W0, method=method, tol=tol)
        ok = jnp.sum(m) > 0
        return jnp.where(ok, res.params, W0), jnp.where(ok, res.result, RESULTS.successful)

    def fit_slices(state: SisaState, shard: int, start: int, mask: Any = None,
                   w0: Any = None) -> jax.Array:
        """Refit slices ``start..R-1`` of ``shard`` from checkpoint ``start - 1``.

        This is the one training routine: :func:`init` calls it with ``start = 0`` and
        :func:`delete` from the first affected slice, so a deletion reproduces SISA
        training on the remaining rows exactly. Returns the ``(R - start, d, K)`` checkpoints.
        """
        X, Y, sl = state.X[shard], state.Y[shard], state.slice_id[shard]
        mk = state.mask[shard] if mask is None else mask
        d, K = X.shape[1], Y.shape[1]
        W = (jnp.zeros((d, K), X.dtype) if start == 0 else state.checkpoints[shard, start - 1]
             ) if w0 is None else w0
        out = []
        for r in range(start, R):
            W, code = _fit_prefix(X, Y, sl, mk, jnp.int32(r), W)
            if int(code) != RESULTS.successful:
                raise RuntimeError(f"SISA slice fit did not reach tol={tol} (shard {shard}, "
                                   f"slice {r}); raise lam or loosen tol")
            out.append(W)
        return jnp.stack(out)

    def init(X: Any, y: Any, key: jax.Array, num_classes: int | None = None) -> SisaState:
        """Assign rows to shards and slices at random (``key``) and train every shard."""
        from certun.unlearners.guo import _targets

        Xn = _validate.finite_array(X=X, ndim=2)
        yn = _validate.finite_array(y=y, ndim=(1, 2))
        _validate.matching_rows(X=Xn, y=yn)
        n, d = Xn.shape
        if n < S * R:
            raise _validate.ValidationError(
                f"shards * slices = {S * R} exceeds the {n} rows; use fewer shards or slices")
        Yn = _targets(lossf, yn, num_classes)
        perm = np.asarray(jax.random.permutation(key, n))
        n_s = -(-n // S)
        Xs = np.zeros((S, n_s, d))
        Ys = np.zeros((S, n_s, Yn.shape[1]))
        sl = np.zeros((S, n_s), np.int32)
        mk = np.zeros((S, n_s))
        shard_of = np.empty(n, np.int32)
        pos_of = np.empty(n, np.int32)
        for s in range(S):
            rows = perm[s::S]
            k = rows.size
            Xs[s, :k], Ys[s, :k], mk[s, :k] = Xn[rows], Yn[rows], 1.0
            sl[s, :k] = (np.arange(k) * R) // k  # R contiguous slices of (nearly) equal size
            sl[s, k:] = R - 1
            shard_of[rows], pos_of[rows] = s, np.arange(k)
        dtype = jnp.zeros(()).dtype
        state = SisaState(jnp.asarray(Xs, dtype), jnp.asarray(Ys, dtype), jnp.asarray(sl),
                          jnp.asarray(mk, dtype), jnp.zeros((S, R, d, Yn.shape[1]), dtype),
                          jnp.asarray(shard_of), jnp.asarray(pos_of), jnp.asarray(0, jnp.int32))
        ckpts = []
        with progress_bar(S, "SISA shards") as bar:  # host loop; a bar only on a terminal
            for s in range(S):
                ckpts.append(fit_slices(state, s, 0))
                bar.advance(1)
        ck = jnp.stack(ckpts)
        return state._replace(checkpoints=ck, slice_fits=jnp.asarray(S * R, jnp.int32))

    def delete(state: SisaState, indices: Any) -> SisaDeletion:
        """Delete rows (original positions): refit each affected shard from its checkpoint."""
        t0 = time.perf_counter()
        shard_of, pos_of = np.asarray(state.shard_of), np.asarray(state.pos_of)
        n = shard_of.size
        mask = np.asarray(state.mask)
        removed = mask[shard_of, pos_of] == 0
        idx = _validate.forget_indices(indices, n, already_removed=removed)
        new_mask = mask.copy()
        new_mask[shard_of[idx], pos_of[idx]] = 0.0
        sl = np.asarray(state.slice_id)
        ck = state.checkpoints
        touched, refit, rows = [], 0, 0
        mask_j = jnp.asarray(new_mask, state.mask.dtype)
        for s in sorted(set(shard_of[idx].tolist())):
            start = int(sl[s, pos_of[idx][shard_of[idx] == s]].min())
            new = fit_slices(state._replace(mask=mask_j), s, start)
            ck = ck.at[s, start:].set(new)
            touched.append(s)
            refit += R - start
            rows += int(sum(((sl[s] <= r) & (new_mask[s] > 0)).sum() for r in range(start, R)))
        new_state = state._replace(mask=mask_j, checkpoints=ck,
                                   slice_fits=state.slice_fits + refit)
        return SisaDeletion(new_state, tuple(touched), refit, rows, time.perf_counter() - t0)

    @jax.jit
    def _scores(ck, X):
        return jnp.einsum("nd,sdk->snk", X, ck[:, -1])  # (S, n, K) margins of the final models

    def predict(state: SisaState, X: Any) -> jax.Array:
        """Aggregated prediction of the constituents' final models (see ``aggregate``)."""
        A = _scores(state.checkpoints, jnp.asarray(X, state.X.dtype))
        if lossf.name == "squared":
            P = jnp.mean(A, axis=0)
            return P[:, 0] if P.shape[1] == 1 else P
        mean = jnp.mean(A, axis=0)
        if A.shape[2] == 1:  # binary +-1
            if aggregate == "mean":
                return jnp.where(mean[:, 0] >= 0, 1.0, -1.0)
            votes = jnp.sum(jnp.where(A[..., 0] >= 0, 1.0, -1.0), axis=0)
            return jnp.where(votes > 0, 1.0, jnp.where(votes < 0, -1.0,
                                                       jnp.where(mean[:, 0] >= 0, 1.0, -1.0)))
        if aggregate == "mean":
            return jnp.argmax(mean, axis=1)
        K = A.shape[2]
        counts = jnp.sum(jax.nn.one_hot(jnp.argmax(A, axis=2), K), axis=0)  # (n, K)
        # majority; ties broken by the mean score (scaled below one vote)
        span = jnp.max(jnp.abs(mean), axis=1, keepdims=True) + 1.0
        return jnp.argmax(counts + 0.5 * mean / span, axis=1)

    return Sisa(init=init, delete=delete, predict=predict, fit_slices=fit_slices)
