r"""Malicious deletion requests: the "Hard to Forget" attack and an influence-based defence.

**Attack** (Marchant, Rubinstein, Alfeld, AAAI 2022; docs/bibliography.md §14.3). Guo et
al.'s certified removal charges every request's residual bound to a budget and retrains
when it is spent. An attacker who plants its own points in the training set and later
asks for their deletion can craft them so that each deletion burns as much budget as
possible, forcing frequent, costly retrains. :func:`craft_poisons` maximises one of the
paper's surrogates at the clean model ``theta`` (the model's dependence on the poisons is
ignored, as in the paper) by projected gradient ascent over the inputs (labels fixed),
projected (Dykstra) onto the intersection of an L2 ball of radius ``radius`` around each
poison's reference point and the unit ball ``||x|| <= 1`` that certun's bounds require:

* ``"grad_norm"``: ``||grad l(theta; p)||``;
* ``"influence_norm"`` (the paper's default): ``||H^{-1} grad l(theta; p)||``;
* ``"grnb_norm"``: ``||H^{-1} grad l|| ||X H^{-1} grad l||`` (Guo et al.'s data-dependent
  bound up to ``gamma ||X||_2``), the budget a single deletion burns.

**Defence** (in the spirit of Qian et al., KDD 2023). :func:`influence_scores` predicts the
budget a request would burn, ``gamma ||X||_2 ||delta|| ||X delta||`` with
``delta = H^{-1}(grad l_z + lambda w)``, at the current model; :func:`influence_threshold`
calibrates a threshold on clean reference rows (a high quantile). Flagged requests are
**not** refused -- deletion is a right -- but deferred: they are honoured by the next
retraining (triggered by the budget, or when ``max_deferred`` requests wait), so they do
not burn the Newton budget. :func:`run_requests` replays a request stream through a
certified-removal unlearner with ``auto_retrain=True`` (certun's public ``unlearn``) with or
without the defence and reports the retrains, the intervals between them and the budget
burnt per request.

References:
  N. G. Marchant, B. I. P. Rubinstein, S. Alfeld, "Hard to Forget: Poisoning Attacks on
  Certified Machine Unlearning", AAAI 2022, arXiv:2109.08266.
  W. Qian, C. Zhao, W. Le, M. Ma, M. Huai, "Towards Understanding and Enhancing Robustness
  of Deep Learning Models against Malicious Unlearning Attacks", KDD 2023.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.data.preprocessing import unit_row_factor, unit_row_scale
from certun.models import glm
from certun.primitives.spectral import spectral_norm_upper_bound
from certun.unlearners.base import Unlearner

__all__ = ["SURROGATES", "craft_poisons", "influence_scores", "influence_threshold",
           "StreamResult", "run_requests"]

#: Scores a Hard-to-Forget attacker can maximise when crafting deletion requests.
SURROGATES = ("grad_norm", "influence_norm", "grnb_norm")


def _project(x: jax.Array, ref: jax.Array, radius: float, iters: int = 50) -> jax.Array:
    """Dykstra's projection onto ``{||x - ref|| <= radius} & {||x|| <= 1}``."""
    def ball(v, c, r):
        d = v - c
        n = jnp.linalg.norm(d)
        return jnp.where(n > r, c + d * (r / jnp.maximum(n, 1e-300)), v)

    def body(_, carry):
        v, p, q = carry
        a = ball(v + p, ref, radius)
        p = v + p - a
        b = ball(a + q, jnp.zeros_like(a), 1.0)
        q = a + q - b
        return b, p, q

    z = jnp.zeros_like(x)
    v, _, _ = jax.lax.fori_loop(0, iters, body, (x, z, z))
    return v


def craft_poisons(X_ref: Any, y_ref: Any, theta: Any, X_data: Any, y_data: Any, *, lam: float,
                  surrogate: str = "influence_norm", radius: float = 0.5, steps: int = 50,
                  lr: float = 0.05) -> np.ndarray:
    """Hard-to-forget poisons: inputs maximising a removal-cost surrogate (labels fixed).

    Args:
      X_ref: ``(p, d)`` reference points (the attacker's own rows) the poisons start from.
      y_ref: ``(p,)`` their labels ``+-1`` (kept).
      theta: ``(d,)`` the clean model the surrogate is evaluated at.
      X_data: ``(n, d)`` clean training rows, ``||x_i|| <= 1`` (give the Hessian ``H`` and
        the ``X`` of the ``"grnb_norm"`` surrogate).
      y_data: ``(n,)`` their labels ``+-1``.
      lam: mean-scale regularisation of the victim.
      surrogate: ``"grad_norm"``, ``"influence_norm"`` or ``"grnb_norm"``.
      radius: L2 radius around each reference point.
      steps: projected gradient-ascent steps (normalised gradients, step ``lr``).
      lr: step length.

    Returns:
      ``(p, d)`` poisons with ``||x|| <= 1`` and ``||x - x_ref|| <= radius``.
    """
    _validate.choice(SURROGATES, surrogate=surrogate)
    lam = _validate.positive(lam=lam)
    r = _validate.positive(radius=radius)
    steps = _validate.integer(steps=steps, minimum=1)
    lr = _validate.positive(lr=lr)
    Xr = jnp.asarray(_validate.unit_rows(X_ref=X_ref, tol=1e-9))
    yr = jnp.asarray(_validate.labels_pm1(y_ref=y_ref))
    X = jnp.asarray(_validate.unit_rows(X_data=X_data, tol=1e-9))
    Y = jnp.asarray(_validate.labels_pm1(y_data=y_data))[:, None]
    w = jnp.asarray(theta).reshape(-1)
    W = w[:, None]
    H = glm.hessian_sum(glm.LOGISTIC, W, X, Y, lam)[0]
    Hinv = jnp.linalg.inv(H)

    def objective(x, y):
        g = glm.LOGISTIC.d1(x @ w, y) * x
        if surrogate == "grad_norm":
            return jnp.linalg.norm(g)
        d = Hinv @ g
        if surrogate == "influence_norm":
            return jnp.linalg.norm(d)
        return jnp.linalg.norm(d) * jnp.linalg.norm(X @ d)

    grad = jax.grad(objective)

    @jax.jit
    def run(x0, y):
        def body(_, x):
            g = grad(x, y)
            x = x + lr * g / jnp.maximum(jnp.linalg.norm(g), 1e-300)
            return _project(x, x0, r)
        return jax.lax.fori_loop(0, steps, body, x0)

    out = np.array(jax.vmap(run)(Xr, yr), np.float64)  # a writable copy
    # rounding can leave a row at 1 + ulp: a row whose computed norm exceeds 1 - (2d + 6) u
    # is rescaled by unit_row_scale (exact norm <= 1 - (d + 2) u, so certun's zero-tolerance
    # check accepts it in any summation order; proofs/unit_rows.md); a row below that has an
    # exact norm <= (1 - (2d + 6) u)(1 + gamma_(d+1)) <= 1 - (d + 2) u already
    over = np.linalg.norm(out, axis=1) > unit_row_factor(out.shape[1])
    out[over] = unit_row_scale(out[over])
    return out


def influence_scores(W: Any, X: Any, y: Any, mask: Any, candidates: Any, *, lam: float,
                     gamma: float = 0.25, x_spectral: float | None = None) -> np.ndarray:
    """Predicted budget burn of deleting each candidate alone at the current model.

    ``gamma ||X_rem||_2 ||delta|| ||X_rem delta||`` with ``delta = H^{-1}(grad l_z(w) + lambda w)``
    and ``H`` the sum-scale Hessian of the rows remaining without the candidate (Guo et
    al.'s data-dependent bound on the Newton step's residual, sum scale, as
    ``certified_removal`` charges it for a first request after a factorisation; ``||X_rem||_2``
    is bounded by ``min(x_spectral, sqrt(n_rem))``).

    Args:
      W: ``(d,)`` current model.
      X: ``(n, d)`` all training rows (present or removed).
      y: ``(n,)`` their labels ``+-1``.
      mask: ``(n,)``, 1 for rows currently present, 0 for removed ones.
      candidates: ``(c,)`` indices of present rows (a request names a present row; labels
        from ``y``), or a tuple ``(points, labels)`` of ``(c, d)`` points and ``(c,)``
        labels ``+-1`` that need not be in the data (e.g. reference rows).
      lam: mean-scale regularisation of the victim.
      gamma: Guo et al.'s Lipschitz constant of ``l''`` (1/4 for the logistic loss).
      x_spectral: bound on ``||X||_2`` (default: :func:`spectral_norm_upper_bound` of ``X``).
    """
    Xj = jnp.asarray(X, jnp.float64 if jnp.zeros(()).dtype == jnp.float64 else jnp.float32)
    Y = jnp.asarray(y, Xj.dtype)[:, None]
    m = jnp.asarray(mask, Xj.dtype)
    w = jnp.asarray(W, Xj.dtype).reshape(-1, 1)
    if isinstance(candidates, tuple):  # outside points: the data stay as they are
        P, yp = jnp.asarray(candidates[0], Xj.dtype), jnp.asarray(candidates[1], Xj.dtype)
        drop = jnp.zeros((P.shape[0], Xj.shape[0]), Xj.dtype)
    else:  # present rows: the Hessian and X_rem are those of the rows without the candidate
        idx = np.asarray(candidates, np.int64)
        P, yp = Xj[idx], Y[idx, 0]
        drop = jax.nn.one_hot(jnp.asarray(idx), Xj.shape[0], dtype=Xj.dtype)
    xs = spectral_norm_upper_bound(np.asarray(X)).value if x_spectral is None else x_spectral
    H = glm.hessian_sum(glm.LOGISTIC, w, Xj, Y, lam, m)[0]
    d2 = glm.LOGISTIC.d2(Xj @ w, Y)[:, 0]
    n = jnp.sum(m)

    def one(p, yz, dr):
        keep = m * (1.0 - dr)
        Hr = H - jnp.einsum("i,ij,il->jl", dr * d2, Xj, Xj) - lam * jnp.sum(dr) * jnp.eye(
            Xj.shape[1], dtype=Xj.dtype)
        g = p * glm.LOGISTIC.d1(p @ w[:, 0], yz) + lam * w[:, 0]
        delta = jnp.linalg.solve(Hr, g)
        xsc = jnp.minimum(xs, jnp.sqrt(n - jnp.sum(dr)))
        return gamma * xsc * jnp.linalg.norm(delta) * jnp.linalg.norm((Xj * keep[:, None]) @ delta)

    return np.asarray(jax.vmap(one)(P, yp, drop), np.float64)


def influence_threshold(scores_reference: Any, quantile: float = 0.99, factor: float = 1.0
                        ) -> float:
    """Flag threshold: ``factor`` times the ``quantile`` of clean reference scores."""
    s = _validate.finite_array(scores_reference=scores_reference, ndim=1)
    q = _validate.in_range(0.0, 1.0, quantile=quantile, inclusive=True)
    return float(_validate.positive(factor=factor) * np.quantile(s, q))


class StreamResult(NamedTuple):
    """A replayed stream of single-row deletion requests.

    Attributes:
      outcomes: per request: ``"unlearned"``, ``"retrained"`` (forced by the budget),
        ``"deferred"`` (flagged; waits for the next retraining) or ``"flushed"`` (deferred
        requests reached ``max_deferred`` and were honoured by a scheduled retraining).
      budget_burnt: per request, the budget its Newton step charged (0 when deferred; for
        a forced retrain, the charge that exceeded the budget is not spent).
      forced_retrains, scheduled_retrains: retrainings triggered by the budget / the defence.
      requests_per_retrain: requests honoured per retraining (all kinds; the "interval").
        With no retraining it is the stream length (a lower bound on the interval).
      first_retrain: 1-based index of the request that first caused a retraining (or None).
      flagged: how many requests the defence flagged.
      pending: deferred requests still waiting at the end of the stream (they are honoured
        by the next retraining, after the window replayed here).
    """

    outcomes: list
    budget_burnt: list
    forced_retrains: int
    scheduled_retrains: int
    requests_per_retrain: float
    first_retrain: int | None
    flagged: int
    pending: int


def run_requests(unlearner: Unlearner, state: Any, requests: Sequence[int], *,
                 threshold: float | None = None, lam: float | None = None,
                 gamma: float = 0.25, max_deferred: int = 50) -> StreamResult:
    """Replay single-row deletion requests through a certified-removal unlearner.

    The unlearner must retrain by itself when a request exceeds the budget
    (``certified_removal(..., auto_retrain=True)``). With ``threshold`` (the defence), each
    request is scored by :func:`influence_scores` on the current state (``state.W``,
    ``state.X``, ``state.Y``, ``state.mask`` of :class:`~certun.unlearners.guo.GuoState`) and
    deferred when its score exceeds the threshold; deferred rows ride along with the next
    request that forces a retraining (they are then removed by it), or are flushed by a
    scheduled retraining when ``max_deferred`` wait (counted separately). Rows still waiting
    at the end of the stream are reported as ``pending``.

    Args:
      unlearner: a certified-removal unlearner with ``auto_retrain=True``.
      state: its state after ``init``.
      requests: training-row indices, one request each.
      threshold: the defence's flag threshold (``None``: no defence).
      lam: the unlearner's ``lam`` (needed with ``threshold``).
      gamma: Guo et al.'s constant for the scores.
      max_deferred: deferred requests that force a scheduled retraining.
    """
    if threshold is not None and lam is None:
        raise _validate.ValidationError("lam is required with threshold (the defence)")
    _validate.integer(max_deferred=max_deferred, minimum=1)
    outcomes, burnt = [], []
    forced = scheduled = flagged = 0
    first = None
    queue: list[int] = []
    xs = spectral_norm_upper_bound(np.asarray(state.X)).value if threshold is not None else None

    def charged(res) -> float:
        return float(res.diagnostics.get("residual_bound_after", 0.0)
                     - res.diagnostics.get("residual_bound_before", 0.0))

    def flush(st):
        nonlocal scheduled
        res = unlearner.unlearn(st, list(queue))
        scheduled += 1
        if res.outcome != "retrained":  # the batch fitted the budget: a Newton step served it
            scheduled -= 1
        queue.clear()
        return res.state

    for t, i in enumerate(requests):
        i = int(i)
        if threshold is not None:
            assert lam is not None  # validated above
            s = influence_scores(state.W[:, 0], state.X, state.Y[:, 0], state.mask, [i],
                                 lam=lam, gamma=gamma, x_spectral=xs)[0]
            if s > threshold:
                flagged += 1
                queue.append(i)
                outcomes.append("deferred")
                burnt.append(0.0)
                if len(queue) >= max_deferred:
                    state = flush(state)
                    outcomes[-1] = "flushed"
                    if first is None:
                        first = t + 1
                continue
        res = unlearner.unlearn(state, [i])
        if res.outcome == "retrained" and queue:
            res = unlearner.unlearn(state, [i] + queue)  # ride along with the forced retrain
            queue.clear()
        if res.params is None:
            raise RuntimeError("the unlearner refused a request; use auto_retrain=True")
        if res.outcome == "retrained":
            forced += 1
            burnt.append(0.0)
            if first is None:
                first = t + 1
        else:
            burnt.append(charged(res))
        outcomes.append(res.outcome)
        state = res.state
    honoured = len(requests) - len(queue)
    retrains = forced + scheduled
    return StreamResult(outcomes, burnt, forced, scheduled,
                        float(honoured / max(retrains, 1)), first, flagged, len(queue))
