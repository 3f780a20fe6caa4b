r"""Minibatch projected noisy SGD unlearning (Chien et al. 2024b) for L2-logistic models.

Learning and unlearning are the same projected noisy SGD with a fixed cyclic partition of
the rows into batches of ``b`` (a public permutation drawn from the key; the rows are padded
with masked slots to a multiple of ``b``):

.. math::
    w \leftarrow \Pi_R\Big(w - \eta\big(\tfrac1b\textstyle\sum_{i\in B}\mathrm{mask}_i\,
    \nabla\ell_i(w) + \lambda w\big) + \sqrt{2\eta\sigma^2}\,\xi\Big),\qquad w_0 = 0,

on certun's mean-scale logistic objective (``||x_i|| <= 1``; one-vs-rest for class ids),
``eta = 1/L`` with ``L = 1/4 + lambda``. ``init`` runs ``epochs`` epochs on the training rows.
A removal request masks the rows (their slots stay, with zero gradient, so the partition and
the divisor ``b`` do not change) and runs the fewest further epochs ``K``
(:func:`certun.accounting.pnsgd.pnsgd_epochs`) whose guarantee reaches ``epsilon``.

**Certificate** (threat ``indistinguishable_from_retraining``): the law of the published
iterate is ``(epsilon, delta)``-indistinguishable from the law of retraining: the same PNSGD
(same partition, start ``w_0 = 0``) run on the rows kept, for the same total number of
epochs (:meth:`retrain` draws from it). Derivation: ``proofs/pnsgd_unlearning.md``. Every
constant is verified by construction (unit rows, logistic ``|l'| <= 1``, or ``sigmoid(R)``
with a projection radius ``R`` (:func:`gradient_bound`), ``eta = 1/L``). One
request per state is certified; a second request is refused (sequential accounting is not
implemented). It does not hide a deletion from someone who saw both models.

Reference: E. Chien, H. Wang, Z. Chen, P. Li, "Certified Machine Unlearning via Noisy
Stochastic Gradient Descent", NeurIPS 2024, arXiv:2403.17105.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.accounting import pnsgd as acct
from certun.certificate import make_certificate, verified
from certun.models import glm
from certun.primitives.spectral import UNIT_ROUNDOFF
from certun.unlearners.base import Reference, Unlearner, UnlearnResult, published_view

__all__ = ["PNSGDState", "gradient_bound", "pnsgd_unlearning"]

MECHANISM = "chien2024_pnsgd"


class PNSGDState(NamedTuple):
    """State of :func:`pnsgd_unlearning`.

    Attributes:
      X, Y: padded rows ``(N, d)`` and targets ``(N, K)`` (``N`` a multiple of ``b``).
      mask: ``(N,)`` 1.0 for rows present (padding and removed rows 0).
      order: the cyclic partition: row slots in batch order (public).
      W: the current iterate ``(d, K)``.
      key: the noise key.
      epochs: epochs run so far.
      requests: removal requests served.
    """

    X: jax.Array
    Y: jax.Array
    mask: jax.Array
    order: jax.Array
    W: jax.Array
    key: jax.Array
    epochs: int
    requests: int


def gradient_bound(num_classes: int, radius: float | None, dim: int | None = None) -> float:
    r"""``M``: the per-example gradient bound of the logistic loss on the iterates of PNSGD.

    ``||grad l_i(W)||_F <= sqrt(K) sigmoid(R)`` for every ``W`` with ``||W||_F <= R`` and
    ``||x_i|| <= 1``: each class's derivative is ``|l'| = sigmoid(-y x.w_k) <=
    sigmoid(||x|| ||w_k||) <= sigmoid(R)``; without a projection (``radius=None``) the bound
    is ``sqrt(K)`` (``|l'| < 1``). Every gradient of :func:`pnsgd_unlearning` is taken at
    ``w_0 = 0`` or at a projected iterate, so the bound holds on every step
    (``proofs/pnsgd_unlearning.md`` §1, (1.1)). For ``K = 1`` it is attained at
    ``w = -R y x`` for a unit row.

    Args:
      num_classes: ``K`` (1 for binary labels).
      radius: ``R`` of the projection, or ``None``.
      dim: ``d`` of the rows, for the rounding allowance of float64 iterates: the projected
        ``W`` may exceed ``R`` and a computed margin ``|x.w_k|`` its exact value by
        ``gamma = (d K + d + 8) u / (1 - (d K + d + 8) u)`` relatively (``u = 2^-53``; the
        norm's and the dot product's sums), and ``sigmoid(R (1 + gamma)) <= sigmoid(R)
        (1 + R gamma)``; the bound is then ``sqrt(K) sigmoid(R) (1 + R gamma + 4 u)``.
        ``None``: the exact-arithmetic bound.

    Returns:
      ``M``.
    """
    K = _validate.integer(num_classes=num_classes, minimum=1)
    if radius is None:
        return math.sqrt(K)
    R = _validate.positive(radius=radius)
    M = math.sqrt(K) / (1.0 + math.exp(-R))
    if dim is None:
        return M
    k = (_validate.integer(dim=dim, minimum=1) * (K + 1) + 8) * UNIT_ROUNDOFF
    return M * (1.0 + R * k / (1.0 - k) + 4.0 * UNIT_ROUNDOFF)


@functools.partial(jax.jit, static_argnames=("b",))
def _epochs(W, X, Y, mask, order, key, start, count, lam, eta, noise, radius, *, b: int):
    nb = order.shape[0] // b
    batches = order.reshape(nb, b)

    def step(t, W):
        idx = batches[t % nb]
        x, yv, mk = X[idx], Y[idx], mask[idx]
        z = x @ W
        d1 = glm.LOGISTIC.d1(z, yv)  # (b, K)
        g = x.T @ (d1 * mk[:, None]) / b + lam * W
        k = jax.random.fold_in(key, start * nb + t)
        W = W - eta * g + noise * jax.random.normal(k, W.shape, W.dtype)
        nrm = jnp.linalg.norm(W)
        return jnp.where(jnp.logical_and(radius > 0, nrm > radius), W * (radius / nrm), W)

    return jax.lax.fori_loop(0, count * nb, step, W)


def pnsgd_unlearning(*, lam: float, sigma: float, epsilon: float, delta: float,
                     batch_size: int, epochs: int = 50, radius: float | None = None,
                     max_epochs: int = 100_000) -> Unlearner:
    """Chien et al.'s minibatch noisy SGD unlearning of an L2-logistic model (removal).

    Args:
      lam: mean-scale L2 regularisation, the strong convexity ``m``.
      sigma: the noise parameter (step noise ``sqrt(2 eta sigma^2)``).
      epsilon: target epsilon of the request.
      delta: its delta.
      batch_size: ``b`` of the cyclic partition.
      epochs: learning epochs run by ``init`` (and the reference's first phase).
      radius: projection radius ``R`` (``None``: none; the ``2R`` cap of the shift is then
        not used). With a radius the per-example gradient bound is ``sqrt(K) sigmoid(R)``
        (:func:`gradient_bound`) instead of ``sqrt(K)``: a small radius shortens unlearning.
      max_epochs: the most unlearning epochs a request may take.

    Returns:
      An :class:`~certun.unlearners.base.Unlearner`: ``init(X, y, key, num_classes=None)``,
      ``unlearn(state, indices, key=None)``, ``params(state)``, ``retrain(state, key=None)``.
    """
    m = _validate.positive(lam=lam)
    sig = _validate.positive(sigma=sigma)
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    b = _validate.integer(batch_size=batch_size, minimum=1)
    E = _validate.integer(epochs=epochs, minimum=1)
    R = None if radius is None else _validate.positive(radius=radius)
    kmax = _validate.integer(max_epochs=max_epochs, minimum=1)
    lossf = glm.LOGISTIC
    L = 0.25 + m
    eta = 1.0 / L
    noise = math.sqrt(2.0 * eta) * sig

    def _run(st: PNSGDState, W: jax.Array, mask: jax.Array, start: int, count: int):
        dt = st.X.dtype
        return _epochs(W, st.X, st.Y, mask, st.order, st.key, jnp.asarray(start),
                       jnp.asarray(count), jnp.asarray(m, dt), jnp.asarray(eta, dt),
                       jnp.asarray(noise, dt), jnp.asarray(0.0 if R is None else R, dt), b=b)

    def init(X: Any, y: Any, key: jax.Array, num_classes: int | None = None) -> PNSGDState:
        Xn = _validate.unit_rows(X=X, tol=0.0)
        yn = _validate.finite_array(y=y, ndim=1)
        _validate.matching_rows(X=Xn, y=yn)
        if jnp.zeros(()).dtype != jnp.float64:
            raise _validate.ValidationError(
                "pnsgd_unlearning needs float64; call certun.enable_x64() first")
        Yn = _validate.targets(lossf, yn, num_classes)
        n, d = Xn.shape
        N = -(-n // b) * b
        Xp = np.zeros((N, d))
        Xp[:n] = Xn
        Yp = np.ones((N, Yn.shape[1]))
        Yp[:n] = Yn
        mask = np.zeros(N)
        mask[:n] = 1.0
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), N))
        st = PNSGDState(jnp.asarray(Xp), jnp.asarray(Yp), jnp.asarray(mask),
                        jnp.asarray(order), jnp.zeros((d, Yn.shape[1])),
                        jax.random.fold_in(key, 1), 0, 0)
        return st._replace(W=_run(st, st.W, st.mask, 0, E), epochs=E)

    def params(state: PNSGDState) -> jax.Array:
        return state.W[:, 0] if state.W.shape[1] == 1 else state.W

    def retrain(state: PNSGDState, key: jax.Array | None = None) -> Reference:
        """A draw of the reference: the same PNSGD from ``w_0 = 0`` on the rows kept."""
        st = state if key is None else state._replace(key=key)
        return Reference(published_view(_run(st, jnp.zeros_like(state.W), state.mask, 0,
                                              state.epochs)))

    def unlearn(state: PNSGDState, indices: Any, key: jax.Array | None = None) -> UnlearnResult:
        del key  # the noise continues the state's stream
        if state.requests:
            raise _validate.ValidationError(
                "pnsgd_unlearning certifies one request per learned state (no sequential "
                "accounting); retrain, or use langevin_unlearning for sequences")
        N = int(state.X.shape[0])
        present = np.asarray(state.mask) > 0
        idx = _validate.forget_indices(indices, N, already_removed=~present)
        S = int(idx.size)
        mask = state.mask.at[jnp.asarray(idx)].set(0.0)
        Kc = int(state.W.shape[1])
        M = gradient_bound(Kc, R, int(state.W.shape[0]) if R is not None else None)
        kw: dict[str, Any] = dict(n=N, batch_size=b, changed=S, eta=eta, sigma=sig, m=m, L=L,
                                  grad_bound=M, delta=dlt, radius=R, masked=True)
        K = acct.pnsgd_epochs(epsilon=eps, max_epochs=kmax, **kw)
        g = acct.pnsgd_epsilon(epochs=K, **kw)
        W = _run(state, state.W, mask, state.epochs, K)
        a = [verified("unit_rows", "||x_i||_2 <= 1 for every row"),
             verified("strong_convexity", f"m = lam = {m:g} (mean scale)"),
             verified("step_size", f"eta = 1/L with L = 1/4 + lam = {L:g}: every gradient map "
                      f"is a (1 - eta m) contraction"),
             verified("gradient_bound", f"||grad l_i|| <= M = {M:.6g} on every iterate "
                      + ("(sqrt(K) |l'|, |l'| <= 1)" if R is None else
                         f"(sqrt(K) sigmoid(R): every iterate lies in the ball of radius "
                         f"R = {R:g}, so every margin is at most R)")),
             verified("partition", "fixed cyclic partition; removed rows keep their slots "
                      "with zero gradient (the divisor b is unchanged)")]
        cert = make_certificate(
            mechanism=MECHANISM, epsilon=g.epsilon, delta=dlt, sigma=sig,
            threat="indistinguishable_from_retraining", adjacency="removal", scale="mean",
            calibration="pnsgd_w_inf_amplification_by_iteration",
            conversion="order_dependent_cks2020 (D_alpha <= alpha mu at every order)",
            sensitivity=g.shift, releases=1, removed=S, assumptions=a,
            public_inputs={"lam": m, "sigma": sig, "batch_size": b, "epochs": state.epochs,
                           "unlearning_epochs": K, "radius": R, "eta": eta},
            bounds={"K": K, "mu": g.mu, "order": g.order, "shift": g.shift, "steps": g.steps},
            notes=("Compared laws: the published iterate versus retraining: the same PNSGD "
                   "from w_0 = 0 on the rows kept for the same total epochs. It does not hide "
                   "a deletion from someone who saw both models.",))
        new = state._replace(W=W, mask=mask, epochs=state.epochs + K,
                             requests=state.requests + 1)
        return UnlearnResult(params(new), new, cert, "unlearned",
                             {"K": K, "S": S, "grads": K * int(np.sum(np.asarray(mask)))})

    return Unlearner(init=init, unlearn=unlearn, params=params, retrain=retrain)
