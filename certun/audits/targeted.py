r"""Targeted malicious deletion requests and a gradient-influence defence (Qian et al., KDD 2023).

**Provenance.** Implemented *from a description* of Qian, Zhao, Le, Ma, Huai, "Towards
Understanding and Enhancing Robustness of Deep Learning Models against Malicious Unlearning
Attacks" (KDD 2023): no text or code of the paper was available when this was written, so
the formulation below is the standard influence-function relaxation of the attack the paper
names, not a transcription of its algorithm. Numbers are certun's, not the paper's.

**Threat.** An attacker may ask for the deletion of at most ``budget`` training rows (rows it
contributed or can name). It wants a chosen test point ``(x_t, y_t)``, correctly classified
today, to be misclassified by the *unlearned* model. Exact retraining honours the request
faithfully, so the attack works against exact unlearning and against every certified
unlearner (they are indistinguishable from retraining): certification does not protect
against it. The bilevel problem ``max_S loss(U(theta, S); x_t, y_t)`` is relaxed with
influence functions (Koh & Liang 2017): deleting ``S`` moves the sum-scale minimiser of a
one-vs-rest L2-logistic model by

.. math::
    w_k(S) - w_k \approx H_k^{-1}\sum_{z\in S}\big(\ell'_k(z)\,x_z + \lambda w_k\big),

so the target margin ``s_{y_t}(x_t) - s_c(x_t)`` against a competitor class ``c`` changes by
the sum of per-row scores; :func:`craft_deletions` takes the ``budget`` most negative rows
for the competitor that yields the lowest predicted margin.

**Networks.** Qian et al. attack deep networks unlearned by *approximate* first- and
second-order updates; :func:`gradient_ascent_unlearner` is such an unlearner (uncertified),
:func:`greedy_deletions` chooses the requests greedily through it (first-order scores
:func:`network_margin_scores` recomputed at the unlearned parameters as the set grows,
optionally trying the best candidates through the unlearner itself), and
:func:`batch_request_influence` / :func:`network_request_influence` are the
gradient-influence defence scores for a whole request and per requested row. Against an
approximate unlearner the attack exploits the *approximation*: the same requests honoured by
retraining rarely flip the target (``experiments/qian2023``).

**Defence** (the gradient-influence screening described for the paper).
:func:`request_influence` scores each requested row by the largest predicted change its
deletion alone causes to the margin of any point of a public reference set (the defender's
validation data), relative to that point's margin; :func:`screen` discards requests above a
threshold calibrated on honest (random) requests. A discarded request is not honoured by
this defence -- a real deployment must route it to manual review, since deletion is a right.

References:
  W. Qian, C. Zhao, W. Le, M. Ma, M. Huai, "Towards Understanding and Enhancing Robustness
  of Deep Learning Models against Malicious Unlearning Attacks", KDD 2023.
  P. W. Koh, P. Liang, "Understanding Black-box Predictions via Influence Functions",
  ICML 2017.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from certun import _validate

__all__ = ["InfluenceModel", "influence_model", "margin_influence", "craft_deletions",
           "request_influence", "influence_threshold", "screen", "gradient_ascent_unlearner",
           "network_margin_scores", "greedy_deletions", "network_request_influence",
           "batch_request_influence"]


class InfluenceModel(NamedTuple):
    """What the influence relaxation needs of a trained one-vs-rest logistic model.

    Attributes:
      W: ``(d, K)`` weights.
      X: ``(n, d)`` training rows.
      d1: ``(n, K)`` first derivative of the logistic loss at each row and head.
      Hinv: ``(K, d, d)`` inverse sum-scale Hessians of the present rows.
      lam: mean-scale L2 regularisation.
    """

    W: np.ndarray
    X: np.ndarray
    d1: np.ndarray
    Hinv: np.ndarray
    lam: float


def influence_model(W: Any, X: Any, y: Any, *, lam: float, mask: Any | None = None
                    ) -> InfluenceModel:
    """Precompute the per-head inverse Hessians of ``sum_i l(w_k; x_i) + (lam n / 2)||w_k||^2``.

    Args:
      W: ``(d, K)`` one-vs-rest weights (mean-scale objective with L2 ``lam``).
      X: ``(n, d)`` training rows.
      y: ``(n,)`` class ids ``0..K-1``.
      lam: mean-scale L2 regularisation (> 0).
      mask: optional ``(n,)`` 0/1 rows present (default all).
    """
    Wn = _validate.finite_array(W=W, ndim=2)
    Xn = _validate.finite_array(X=X, ndim=2)
    yn = np.asarray(y, np.int64)
    _validate.matching_rows(X=Xn, y=yn)
    lam = _validate.positive(lam=lam)
    if Wn.shape[0] != Xn.shape[1]:
        raise _validate.ValidationError(
            f"W must be (d, K) with d = X.shape[1] = {Xn.shape[1]}, got {Wn.shape}")
    K = Wn.shape[1]
    m = np.ones(Xn.shape[0]) if mask is None else np.asarray(mask, np.float64)
    Y = np.where(np.arange(K)[None, :] == yn[:, None], 1.0, -1.0)
    A = Xn @ Wn
    s = 1.0 / (1.0 + np.exp(Y * A))           # sigmoid(-y a)
    d1 = -Y * s * m[:, None]
    d2 = s * (1.0 - s) * m[:, None]
    n = float(m.sum())
    eye = np.eye(Xn.shape[1])
    Hinv = np.stack([np.linalg.inv((Xn * d2[:, k:k + 1]).T @ Xn + lam * n * eye)
                     for k in range(K)])
    return InfluenceModel(Wn, Xn, d1, Hinv, lam)


def margin_influence(model: InfluenceModel, x: Any, a: int, c: int) -> np.ndarray:
    """Predicted change of ``s_a(x) - s_c(x)`` when each training row alone is deleted.

    ``(g_a(z)^T H_a^{-1} - g_c(z)^T H_c^{-1}) x`` with ``g_k(z) = l'_k(z) x_z + lam w_k``
    (first-order influence of removing ``z``; sum scale). Returns ``(n,)``.
    """
    xv = np.asarray(x, np.float64)
    u, v = model.Hinv[a] @ xv, model.Hinv[c] @ xv
    W, X, d1, lam = model.W, model.X, model.d1, model.lam
    return (d1[:, a] * (X @ u) + lam * W[:, a] @ u) - (d1[:, c] * (X @ v) + lam * W[:, c] @ v)


def craft_deletions(model: InfluenceModel, x_target: Any, y_target: int, *, budget: int,
                    competitors: int = 3, allowed: Any | None = None) -> np.ndarray:
    """The attacker's ``budget`` deletions that most lower the target's predicted margin.

    For each of the ``competitors`` highest-scoring wrong classes ``c``, rank rows by
    :func:`margin_influence` of ``s_{y_t} - s_c`` and take the ``budget`` most negative; keep
    the competitor whose predicted margin after deletion is lowest (greedy top-k of the
    influence relaxation).

    Args:
      model: :func:`influence_model` of the deployed model.
      x_target: ``(d,)`` target point.
      y_target: its true class.
      budget: number of deletion requests (>= 1).
      competitors: wrong classes tried.
      allowed: optional ``(n,)`` boolean mask of rows the attacker may name.

    Returns:
      ``(budget,)`` row indices.
    """
    budget = _validate.integer(budget=budget, minimum=1)
    xt = np.asarray(x_target, np.float64)
    s = xt @ model.W
    order = [int(c) for c in np.argsort(-s) if int(c) != int(y_target)][:competitors]
    best = None
    for c in order:
        ch = margin_influence(model, xt, int(y_target), c)
        if allowed is not None:
            ch = np.where(np.asarray(allowed, bool), ch, np.inf)
        idx = np.argsort(ch, kind="stable")[:budget]
        new_margin = s[int(y_target)] - s[c] + ch[idx].sum()
        if best is None or new_margin < best[0]:
            best = (new_margin, idx)
    assert best is not None  # at least one class was scored
    return np.asarray(best[1], np.int64)


def request_influence(model: InfluenceModel, requests: Any, X_ref: Any) -> np.ndarray:
    """Defence score of each requested row: max relative margin change over reference points.

    For every reference point ``r`` with predicted class ``p_r`` and runner-up ``c_r`` the
    first-order change of ``s_{p_r}(r) - s_{c_r}(r)`` caused by deleting the row alone,
    divided by that margin; the score is the maximum over ``r`` of its negative part (a
    value near 1 means the request alone is predicted to flip a reference prediction).

    Args:
      model: :func:`influence_model` of the deployed model.
      requests: ``(m,)`` requested row indices.
      X_ref: ``(R, d)`` public reference points (the defender's validation data).

    Returns:
      ``(m,)`` scores (>= 0).
    """
    idx = np.asarray(requests, np.int64)
    Xr = _validate.finite_array(X_ref=X_ref, ndim=2)
    S = Xr @ model.W
    top2 = np.argsort(-S, axis=1)[:, :2]
    p, c = top2[:, 0], top2[:, 1]
    margin = S[np.arange(len(Xr)), p] - S[np.arange(len(Xr)), c]
    K = model.W.shape[1]
    # dS[z, r, k] = g_k(z)^T H_k^{-1} x_r for the requested rows only
    U = np.einsum("kde,re->krd", model.Hinv, Xr)                     # (K, R, d)
    XU = np.einsum("zd,krd->zrk", model.X[idx], U)                  # (m, R, K)
    reg = model.lam * np.einsum("dk,krd->rk", model.W, U)           # (R, K)
    dS = model.d1[idx][:, None, :] * XU + reg[None]
    rr = np.arange(len(Xr))
    dm = dS[:, rr, p] - dS[:, rr, c]
    del K
    return np.max(np.maximum(-dm, 0.0) / np.maximum(margin, 1e-12)[None], axis=1)


def influence_threshold(honest_scores: Any, *, false_positive_rate: float = 0.05) -> float:
    """Threshold flagging a ``false_positive_rate`` share of honest calibration requests."""
    s = _validate.finite_array(honest_scores=honest_scores, ndim=1)
    q = _validate.in_range(0.0, 1.0, false_positive_rate=false_positive_rate)
    return float(np.quantile(s, 1.0 - q))


def screen(model: InfluenceModel, requests: Any, X_ref: Any, threshold: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """Split requests into ``(accepted, discarded)`` by :func:`request_influence` > threshold."""
    idx = np.asarray(requests, np.int64)
    flag = request_influence(model, idx, X_ref) > threshold
    return idx[~flag], idx[flag]


# --------------------------------------------------------------------------- networks
#
# The attack and the defence against a *network* unlearned by gradient ascent (an uncertified
# first-order unlearner: the "GA" baseline of Jia et al. 2023). The network
# is given as ``logits(theta, X) -> (m, K)`` on a flat parameter vector ``theta`` (use
# ``jax.flatten_util.ravel_pytree`` on a :class:`certun.nn.Network`'s params).


def _margin(logits: Callable, theta: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array:
    z = logits(theta, x[None])[0]
    return z[t] - jnp.max(jnp.where(jnp.arange(z.shape[0]) == t, -jnp.inf, z))


def _row_loss(logits: Callable, theta: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits(theta, x[None])[0], t)


@functools.lru_cache(maxsize=16)
def _score_fns(logits: Callable) -> tuple[Callable, Callable, Callable]:
    """Jitted margin-score and defence-score kernels for one ``logits`` function (cached)."""

    def margin_scores(th, X, y, x, t):
        # grad l(z) . g for every row at once: one Jacobian-vector product of the row losses
        g = jax.grad(_margin, argnums=1)(logits, th, x, t)

        def losses(p):
            return optax.softmax_cross_entropy_with_integer_labels(logits(p, X), y)

        return jax.jvp(losses, (th,), (g,))[1]

    def batch_influence(th, Xz, yz, Xr):
        pred = jnp.argmax(logits(th, Xr), axis=1)
        Gm = jax.vmap(jax.grad(_margin, argnums=1), (None, None, 0, 0))(logits, th, Xr, pred)
        g = jax.grad(lambda p: jnp.mean(jax.vmap(lambda x, t: _row_loss(logits, p, x, t))(
            Xz, yz)))(th)
        return jnp.max(jnp.maximum(-(Gm @ g), 0.0))

    def influence(th, Xz, yz, Xr):
        pred = jnp.argmax(logits(th, Xr), axis=1)
        M = jax.vmap(lambda x, t: _margin(logits, th, x, t))(Xr, pred)
        Gm = jax.vmap(jax.grad(_margin, argnums=1), (None, None, 0, 0))(logits, th, Xr, pred)
        Gz = jax.vmap(jax.grad(_row_loss, argnums=1), (None, None, 0, 0))(logits, th, Xz, yz)
        dm = Gz @ Gm.T
        return jnp.max(jnp.maximum(-dm, 0.0) / jnp.maximum(M, 1e-12)[None], axis=1)

    return jax.jit(margin_scores), jax.jit(influence), jax.jit(batch_influence)


def gradient_ascent_unlearner(logits: Callable[[jax.Array, jax.Array], jax.Array], X: Any,
                              y: Any, *, lr: float, steps: int
                              ) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Gradient-ascent unlearning of a network: ``steps`` ascent steps on the requested rows.

    ``theta <- theta + lr * grad (1/|S|) sum_{z in S} l(z; theta)`` (softmax cross-entropy,
    mean over the request), ``steps`` times: the uncertified "GA" baseline of the unlearning
    literature (as evaluated by Jia et al. 2023). It gives no guarantee of any kind.

    Args:
      logits: ``logits(theta, X) -> (m, K)`` on flat parameters.
      X: ``(n, d)`` training rows.
      y: ``(n,)`` integer labels.
      lr: ascent step size (> 0).
      steps: number of ascent steps (>= 1).

    Returns:
      A jitted ``unlearn(theta, weights) -> theta'``; ``weights`` is ``(n,)`` with 1 on the
      requested rows and 0 elsewhere.
    """
    Xj = jnp.asarray(_validate.finite_array(X=X, ndim=2))
    yj = jnp.asarray(np.asarray(y, np.int64))
    _validate.matching_rows(X=Xj, y=yj)
    lr = _validate.positive(lr=lr)
    steps = _validate.integer(steps=steps, minimum=1)

    def forget_loss(theta: jax.Array, w: jax.Array) -> jax.Array:
        losses = optax.softmax_cross_entropy_with_integer_labels(logits(theta, Xj), yj)
        return jnp.sum(w * losses) / jnp.maximum(jnp.sum(w), 1.0)

    @jax.jit
    def unlearn(theta: jax.Array, weights: jax.Array) -> jax.Array:
        def body(t: jax.Array, _: None) -> tuple[jax.Array, None]:
            return t + lr * jax.grad(forget_loss)(t, weights), None

        return jax.lax.scan(body, theta, None, length=steps)[0]

    return unlearn


def network_margin_scores(logits: Callable[[jax.Array, jax.Array], jax.Array], theta: Any,
                          X: Any, y: Any, x_target: Any, y_target: int) -> np.ndarray:
    r"""First-order effect of ascending each training row's loss on the target's margin.

    ``grad_theta m(x_t; theta) . grad_theta l(z; theta)`` for every training row ``z``, with
    ``m = s_{y_t} - max_{c != y_t} s_c``: one ascent step of size ``eta`` on ``z`` alone moves
    the margin by ``eta`` times this to first order. Returns ``(n,)``.
    """
    return np.asarray(_score_fns(logits)[0](
        jnp.asarray(theta), jnp.asarray(X), jnp.asarray(np.asarray(y, np.int64)),
        jnp.asarray(x_target), jnp.asarray(y_target)))


def greedy_deletions(logits: Callable[[jax.Array, jax.Array], jax.Array],
                     unlearn: Callable[[jax.Array, jax.Array], jax.Array], theta: Any, X: Any,
                     y: Any, x_target: Any, y_target: int, *, budget: int,
                     allowed: Any | None = None, lookahead: int = 1) -> np.ndarray:
    """The attacker's ``budget`` deletion requests, chosen greedily through the unlearner used.

    Start from ``S = {}``; at each step unlearn ``S`` with the deployed ``unlearn`` (e.g.
    :func:`gradient_ascent_unlearner`), score every remaining row by
    :func:`network_margin_scores` at the *unlearned* parameters and add the row that lowers
    the target's margin most; the scores are recomputed as the set grows, so the choice
    accounts for the unlearner's non-linearity. With ``lookahead > 1`` the ``lookahead``
    best-scored rows are each tried through the unlearner and the one leaving the lowest
    *actual* margin is added. A white-box attacker (it knows the parameters, the training
    rows it may name, and the unlearner).

    Args:
      logits: ``logits(theta, X) -> (m, K)`` on flat parameters.
      unlearn: ``unlearn(theta, weights) -> theta'`` (weights ``(n,)``: 1 on requested rows).
      theta: flat trained parameters.
      X: ``(n, d)`` training rows.
      y: ``(n,)`` labels.
      x_target: ``(d,)`` target point.
      y_target: its true class.
      budget: number of requests (>= 1).
      allowed: optional ``(n,)`` boolean mask of rows the attacker may name.
      lookahead: candidates tried through the unlearner per step (1: first-order greedy).

    Returns:
      ``(budget,)`` row indices, in the order chosen.
    """
    budget = _validate.integer(budget=budget, minimum=1)
    Xn = _validate.finite_array(X=X, ndim=2)
    n = Xn.shape[0]
    ok = np.ones(n, bool) if allowed is None else np.asarray(allowed, bool).copy()
    if ok.shape != (n,) or ok.sum() < budget:
        raise _validate.ValidationError(
            f"allowed must be a boolean (n,) mask with at least budget={budget} True entries")
    lookahead = _validate.integer(lookahead=lookahead, minimum=1)
    th0 = jnp.asarray(theta)
    xt, yt = jnp.asarray(x_target), jnp.asarray(int(y_target))
    try_all = _lookahead_fn(logits, unlearn)
    w = np.zeros(n)
    chosen: list[int] = []
    for _ in range(budget):
        th = th0 if not chosen else unlearn(th0, jnp.asarray(w))
        sc = network_margin_scores(logits, th, Xn, y, x_target, y_target)
        sc = np.where(ok, sc, np.inf)
        cand = np.argsort(sc, kind="stable")[:min(lookahead, int(ok.sum()))]
        if len(cand) > 1:
            W = np.repeat(w[None], len(cand), axis=0)
            W[np.arange(len(cand)), cand] = 1.0
            j = int(cand[int(np.argmin(np.asarray(try_all(th0, jnp.asarray(W), xt, yt))))])
        else:
            j = int(cand[0])
        chosen.append(j)
        ok[j] = False
        w[j] = 1.0
    return np.asarray(chosen, np.int64)


@functools.lru_cache(maxsize=16)
def _lookahead_fn(logits: Callable, unlearn: Callable) -> Callable:
    """Jitted: the target's margin after unlearning each candidate weight vector."""

    def margins(th0, W, x, t):
        return jax.vmap(lambda w: _margin(logits, unlearn(th0, w), x, t))(W)

    return jax.jit(margins)


def network_request_influence(logits: Callable[[jax.Array, jax.Array], jax.Array],
                              theta: Any, X: Any, y: Any, requests: Any, X_ref: Any
                              ) -> np.ndarray:
    r"""Gradient-influence defence score of each requested row of a network.

    For each reference point ``r`` (predicted class ``p_r``, margin
    ``m_r = s_{p_r} - max_{c != p_r} s_c > 0``) the first-order change of ``m_r`` per unit
    ascent step on the requested row ``z`` alone is ``grad m_r . grad l(z)``; the score is
    ``max_r max(0, -grad m_r . grad l(z)) / m_r``: the largest relative margin drop the
    request causes on the defender's reference data (scale-free: a threshold calibrated on
    honest requests absorbs the step size).

    Args:
      logits: ``logits(theta, X) -> (m, K)`` on flat parameters.
      theta: flat deployed parameters.
      X: ``(n, d)`` training rows.
      y: ``(n,)`` labels.
      requests: ``(m,)`` requested row indices.
      X_ref: ``(R, d)`` reference points.

    Returns:
      ``(m,)`` scores (>= 0).
    """
    idx = np.asarray(requests, np.int64)
    Xr = _validate.finite_array(X_ref=X_ref, ndim=2)
    Xn = _validate.finite_array(X=X, ndim=2)
    yn = np.asarray(y, np.int64)
    return np.asarray(_score_fns(logits)[1](jnp.asarray(theta), jnp.asarray(Xn[idx]),
                                            jnp.asarray(yn[idx]), jnp.asarray(Xr)))


def batch_request_influence(logits: Callable[[jax.Array, jax.Array], jax.Array], theta: Any,
                            X: Any, y: Any, requests: Any, X_ref: Any) -> float:
    r"""Gradient-influence defence score of a whole deletion request (a set of rows).

    Gradient ascent on the request moves the parameters along the mean loss gradient
    ``g_S = (1/|S|) sum_{z in S} grad l(z)``; the first-order drop of the margin of
    reference point ``r`` (its predicted class against the runner-up) per unit step is
    ``-grad m_r . g_S``. The score is the largest such drop over the reference set. Honest
    requests (rows the model fits, pulling in unrelated directions) score low; a request
    crafted to move one decision region moves nearby reference margins too. Calibrate a
    threshold on honest requests of the same size (:func:`influence_threshold`) and hold
    requests above it for review.

    Args:
      logits: ``logits(theta, X) -> (m, K)`` on flat parameters.
      theta: flat deployed parameters.
      X: ``(n, d)`` training rows.
      y: ``(n,)`` labels.
      requests: ``(m,)`` requested row indices (m >= 1).
      X_ref: ``(R, d)`` reference points.

    Returns:
      The score (>= 0).
    """
    idx = np.asarray(requests, np.int64)
    if idx.ndim != 1 or idx.size == 0:
        raise _validate.ValidationError("requests must be a non-empty 1-d array of row indices")
    Xn = _validate.finite_array(X=X, ndim=2)
    Xr = _validate.finite_array(X_ref=X_ref, ndim=2)
    yn = np.asarray(y, np.int64)
    return float(_score_fns(logits)[2](jnp.asarray(theta), jnp.asarray(Xn[idx]),
                                       jnp.asarray(yn[idx]), jnp.asarray(Xr)))
