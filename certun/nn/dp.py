r"""DP-SGD as a reusable transform: per-example clipping, Gaussian noise, and its accounting.

* :func:`dp_aggregate` -- the private gradient of one step: per-example gradients clipped to
  ``clip`` (global L2 norm over the pytree), masked (Poisson-sampled rows), summed, plus
  ``N(0, (noise_multiplier clip)^2 I)``, divided by the *expected* batch size (public).
* :func:`dp_gradient` -- ``(params, X, y, mask, key) -> private gradient`` for a per-example
  loss; feed it to any optax optimizer (post-processing).
* :func:`poisson_batch` -- Poisson sampling at rate ``q`` into a fixed-size index buffer (jit
  shapes); the overflow probability is computed exactly and added to ``delta``
  (:func:`overflow_probability`).
* :func:`dp_sgd_train` -- a complete DP-SGD training run (``lax.scan``) with any optax
  optimizer and a pure ``apply``.
* :func:`dpsgd_epsilon`, :func:`dpsgd_noise_multiplier` -- accounting with dp-accounting
  (PLD by default, or RDP) for Poisson-sampled Gaussian steps, with **group privacy** for
  ``k`` rows (a deletion of ``k`` rows): per-row ``(epsilon_1, delta_1)`` gives
  ``(k epsilon_1, k e^{(k-1) epsilon_1} delta_1)`` (Vadhan 2017, Lemma 2.2), the group
  conversion of Koloskova et al.'s DP-SGD baseline (whose code omits the factor ``k`` in
  ``delta``).

Why not optax's ``optax.contrib.differentially_private_aggregate``: it keeps its PRNG key in
the optimizer state (certun passes explicit keys), divides by the realised batch size (under
Poisson sampling that size depends on the data set; the expected size is public) and has no
mask for padded Poisson batches. jax-privacy is not a dependency of certun. The clip-and-noise
itself is a few lines (below), checked in ``tests/nn/test_dp.py`` against a direct computation.

References:
  M. Abadi et al., "Deep Learning with Differential Privacy", CCS 2016,
  https://arxiv.org/abs/1607.00133.
  S. Vadhan, "The Complexity of Differential Privacy", 2017, Lemma 2.2 (group privacy).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

from certun import _validate

__all__ = [
    "DPSGDConfig",
    "clip_per_example",
    "dp_aggregate",
    "dp_gradient",
    "poisson_batch",
    "overflow_probability",
    "dp_sgd_train",
    "dpsgd_epsilon",
    "dpsgd_noise_multiplier",
    "group_epsilon",
]

PyTree = Any
ACCOUNTANTS = ("pld", "rdp")
_RDP_ORDERS = ([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
               + [128, 256, 512, 1024, 2048, 4096])


def clip_per_example(grads: PyTree, clip: float | jax.Array) -> tuple[PyTree, jax.Array]:
    """Clip each example's gradient (leading axis) to global L2 norm ``clip``.

    Returns:
      ``(clipped, norms)``: the clipped per-example gradients and the original norms ``(b,)``.
    """
    leaves = jax.tree.leaves(grads)
    norms = jnp.sqrt(sum(jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1)
                         for x in leaves))
    scale = jnp.minimum(1.0, clip / jnp.maximum(norms, jnp.finfo(norms.dtype).tiny))
    return jax.tree.map(lambda x: x * scale.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype),
                        grads), norms


def dp_aggregate(per_example_grads: PyTree, key: jax.Array, *, clip: float | jax.Array,
                 noise_multiplier: float | jax.Array, expected_batch_size: float | jax.Array,
                 mask: jax.Array | None = None) -> PyTree:
    r"""The private gradient ``(sum_i m_i clip(g_i) + N(0, (z C)^2 I)) / B``.

    Args:
      per_example_grads: pytree with a leading example axis ``b``.
      key: the step's noise key.
      clip: ``C``, the per-example clipping norm.
      noise_multiplier: ``z``; the noise standard deviation is ``z C``.
      expected_batch_size: ``B = q n`` (public), the normaliser.
      mask: ``(b,)`` 0/1 weights (the sampled rows of a padded buffer); default all ones.

    Returns:
      A pytree shaped like one example's gradient.
    """
    clipped, _ = clip_per_example(per_example_grads, clip)
    leaves, treedef = jax.tree.flatten(clipped)
    b = leaves[0].shape[0]
    m = jnp.ones(b, leaves[0].dtype) if mask is None else mask.astype(leaves[0].dtype)
    ks = jax.random.split(key, len(leaves))
    out = []
    for k, x in zip(ks, leaves, strict=True):
        s = jnp.tensordot(m, x, axes=1)
        out.append((s + noise_multiplier * clip * jax.random.normal(k, s.shape, s.dtype))
                   / expected_batch_size)
    return jax.tree.unflatten(treedef, out)


def dp_gradient(loss: Callable[[PyTree, jax.Array, jax.Array], jax.Array], *, clip: float,
                noise_multiplier: float, expected_batch_size: float) -> Callable:
    """``(params, X, y, mask, key) -> private gradient`` of a per-example ``loss(params, x, y)``.

    ``X, y`` is the padded batch (leading axis), ``mask`` marks its sampled rows.
    """
    c = _validate.positive(clip=clip)
    z = _validate.non_negative(noise_multiplier=noise_multiplier)
    B = _validate.positive(expected_batch_size=expected_batch_size)
    per_ex = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))

    def grad(params: PyTree, X: jax.Array, y: jax.Array, mask: jax.Array,
             key: jax.Array) -> PyTree:
        return dp_aggregate(per_ex(params, X, y), key, clip=c, noise_multiplier=z,
                            expected_batch_size=B, mask=mask)

    return grad


def overflow_probability(n: int, rate: float, buffer: int, steps: int) -> float:
    """Probability that some Poisson batch of ``steps`` exceeds ``buffer`` rows (union bound)."""
    p_one = float(stats.binom.sf(buffer, n, rate))
    return min(1.0, steps * p_one)


def _buffer(n: int, rate: float, steps: int, target: float) -> int:
    lo = int(math.ceil(rate * n))
    b = lo
    while b < n and overflow_probability(n, rate, b, steps) > target:
        b = min(n, b + max(1, int(math.sqrt(rate * n))))
    return b


def poisson_batch(key: jax.Array, n: int, rate: float, buffer: int,
                  eligible: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Poisson-sample rows (each independently with probability ``rate``) into a buffer.

    Returns:
      ``(indices, mask)``: ``buffer`` row indices (padding repeats row 0) and a 0/1 mask of the
      sampled ones. Rows sampled beyond the buffer are dropped (probability
      :func:`overflow_probability`, charged to ``delta`` by :func:`dp_sgd_train`).
    """
    take = jax.random.bernoulli(key, rate, (n,))
    if eligible is not None:
        take = take & eligible
    (idx,) = jnp.nonzero(take, size=buffer, fill_value=0)
    valid = jnp.arange(buffer) < jnp.sum(take)
    return idx, valid


class DPSGDConfig(NamedTuple):
    """A DP-SGD training run and its guarantee.

    Attributes:
      noise_multiplier, clip, rate, steps, buffer: the run (``rate`` is the Poisson rate).
      epsilon, delta: the guarantee for ``group_size`` rows (``delta`` includes the
        buffer-overflow probability).
      group_size: rows the guarantee covers (1: ordinary DP; ``k``: a deletion of ``k`` rows).
      accountant: ``"pld"`` or ``"rdp"``.
    """

    noise_multiplier: float
    clip: float
    rate: float
    steps: int
    buffer: int
    epsilon: float
    delta: float
    group_size: int
    accountant: str


def _event(z: float, rate: float, steps: int) -> Any:
    g = dp_accounting.GaussianDpEvent(z)
    ev = g if rate >= 1.0 else dp_accounting.PoissonSampledDpEvent(rate, g)
    return dp_accounting.SelfComposedDpEvent(ev, steps)


def _acc(accountant: str) -> Any:
    if accountant == "pld":
        return dp_accounting.pld.PLDAccountant()
    # dp-accounting's default orders plus integer orders up to 4096: small epsilons at small
    # deltas need large orders (ln(1/delta)/(alpha - 1) alone exceeds epsilon below them);
    # integer orders have a finite binomial expansion (fractional large orders are slow)
    return dp_accounting.rdp.RdpAccountant(orders=_RDP_ORDERS)


def _per_row_curve(z: float, rate: float, steps: int, accountant: str) -> Callable:
    """``delta -> epsilon``; PLD falls back to RDP where its truncated tails give ``inf``."""
    r = _acc("rdp")
    r.compose(_event(z, rate, steps))
    if accountant == "rdp":
        return lambda d: float(r.get_epsilon(d))
    a = _acc("pld")
    a.compose(_event(z, rate, steps))
    return lambda d: min(float(a.get_epsilon(d)), float(r.get_epsilon(d)))


def group_epsilon(per_row: Callable[[float], float], k: int, delta: float) -> float:
    r"""Group privacy for ``k`` rows from a per-row curve ``delta_1 -> epsilon_1``.

    ``(epsilon_1, delta_1)``-DP per row gives ``(k epsilon_1, k e^{(k-1) epsilon_1}
    delta_1)``-DP for ``k`` rows (Vadhan 2017, Lemma 2.2). With
    ``delta_1(e) = delta / (k e^{(k-1) e})``, every ``e`` with ``per_row(delta_1(e)) <= e`` gives
    the valid guarantee ``(k per_row(delta_1(e)), delta)``; ``per_row(delta_1(e))`` grows with
    ``e``, so the smallest such ``e`` (bisection, relative ``1e-9``) is the best.
    """
    if k == 1:
        return per_row(delta)

    def e1(e: float) -> float:
        log_d1 = math.log(delta) - math.log(k) - (k - 1) * e
        return math.inf if log_d1 < -700 else per_row(math.exp(log_d1))

    lo, hi = 0.0, 1e-3
    while e1(hi) > hi:
        lo, hi = hi, hi * 2.0
        if hi > 1e3:
            return math.inf
    while hi - lo > 1e-9 * hi:
        mid = 0.5 * (lo + hi)
        if e1(mid) <= mid:
            hi = mid
        else:
            lo = mid
    return k * e1(hi)


def dpsgd_epsilon(*, noise_multiplier: float, rate: float, steps: int, delta: float,
                  group_size: int = 1, accountant: str = "pld") -> float:
    """Epsilon of ``steps`` Poisson-sampled Gaussian steps for a group of ``group_size`` rows.

    Args:
      noise_multiplier: ``z`` (noise std over the clipping norm).
      rate: Poisson sampling rate ``q`` (1 for full batches).
      steps: number of steps.
      delta: target delta of the group guarantee.
      group_size: ``k`` rows: with ``rate = 1`` exactly (the sum moves by ``k C``: one Gaussian
        of multiplier ``z / (k sqrt(T))``, Balle & Wang's analytic epsilon); otherwise by the
        group lemma (:func:`group_epsilon`).
      accountant: ``"pld"`` (dp-accounting's privacy-loss distributions) or ``"rdp"``.
    """
    z = _validate.positive(noise_multiplier=noise_multiplier)
    q = _validate.in_range(0.0, 1.0, inclusive=True, rate=rate)
    T = _validate.integer(steps=steps, minimum=1)
    dlt = _validate.delta(delta=delta)
    k = _validate.integer(group_size=group_size, minimum=1)
    how = _validate.choice(ACCOUNTANTS, accountant=accountant)
    if q >= 1.0 and k > 1:
        # full batches: k rows move the clipped sum by at most k C, and T Gaussian steps compose
        # to one Gaussian of multiplier z / sqrt(T): exact (no group lemma needed)
        from certun.accounting.gaussian import analytic_epsilon

        return analytic_epsilon(z / math.sqrt(T), dlt, float(k))
    return group_epsilon(_per_row_curve(z, q, T, how), k, dlt)


def dpsgd_noise_multiplier(*, epsilon: float, delta: float, rate: float, steps: int,
                           group_size: int = 1, accountant: str = "pld",
                           rtol: float = 1e-3) -> float:
    """The smallest noise multiplier (bisection, relative ``rtol``) meeting ``(epsilon, delta)``."""
    eps = _validate.epsilon(epsilon=epsilon)

    def f(z: float) -> float:
        return dpsgd_epsilon(noise_multiplier=z, rate=rate, steps=steps, delta=delta,
                             group_size=group_size, accountant=accountant)

    lo, hi = 1e-2, 1.0
    while f(hi) > eps:
        lo, hi = hi, hi * 2.0
        if hi > 1e7:
            raise _validate.ValidationError("no noise multiplier below 1e7 meets the target")
    while hi / lo > 1.0 + rtol:
        mid = math.sqrt(lo * hi)
        if f(mid) <= eps:
            hi = mid
        else:
            lo = mid
    return hi


# the default optimizer: ONE object, so that every call with the default shares the compiled
# program (``_train`` is keyed on it as a static argument)
_DEFAULT_OPT = optax.adam(1e-3)


@functools.partial(jax.jit, static_argnames=("apply", "loss", "optimizer", "steps", "buffer",
                                             "chunk"))
def _train(params: PyTree, X: jax.Array, y: jax.Array, eligible: jax.Array, key: jax.Array,
           hp: dict, *, apply: Callable, loss: Callable, optimizer: Any, steps: int,
           buffer: int, chunk: int) -> PyTree:
    n = X.shape[0]

    def per_ex_loss(p: PyTree, x: jax.Array, t: jax.Array) -> jax.Array:
        return loss(apply(p, x[None]), t[None])

    per_ex = jax.vmap(jax.grad(per_ex_loss), in_axes=(None, 0, 0))
    pad = (-buffer) % chunk

    def clipped_sum(p: PyTree, idx: jax.Array, valid: jax.Array) -> PyTree:
        # per-example gradients in chunks of `chunk` rows (memory chunk x params), summed
        idx = jnp.concatenate([idx, jnp.zeros(pad, idx.dtype)]).reshape(-1, chunk)
        m = jnp.concatenate([valid, jnp.zeros(pad, bool)]).reshape(-1, chunk)

        def body(acc: PyTree, c: tuple) -> tuple[PyTree, None]:
            i, mi = c
            g, _ = clip_per_example(per_ex(p, X[i], y[i]), hp["clip"])
            return jax.tree.map(lambda a, b: a + jnp.tensordot(mi.astype(b.dtype), b, axes=1),
                                acc, g), None

        zero = jax.tree.map(jnp.zeros_like, p)
        return jax.lax.scan(body, zero, (idx, m))[0]

    def step(carry: tuple, k: jax.Array) -> tuple[tuple, None]:
        p, s = carry
        kb, kn = jax.random.split(k)
        idx, valid = poisson_batch(kb, n, hp["rate"], buffer, eligible)
        tot = clipped_sum(p, idx, valid)
        leaves, treedef = jax.tree.flatten(tot)
        ks = jax.random.split(kn, len(leaves))
        g = jax.tree.unflatten(treedef, [
            (x + hp["z"] * hp["clip"] * jax.random.normal(kk, x.shape, x.dtype)) / hp["B"]
            for kk, x in zip(ks, leaves, strict=True)])
        upd, s = optimizer.update(g, s, p)
        return (optax.apply_updates(p, upd), s), None

    (p, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jax.random.split(key, steps))
    return p


def dp_sgd_train(apply: Callable, params: PyTree, X: Any, y: Any, key: jax.Array, *,
                 epsilon: float, delta: float, steps: int, batch_size: int, clip: float = 1.0,
                 optimizer: Any = None, loss: Callable | None = None, group_size: int = 1,
                 accountant: str = "pld", eligible: Any = None,
                 chunk: int = 256) -> tuple[PyTree, DPSGDConfig]:
    """Train ``params`` with DP-SGD for an ``(epsilon, delta)`` guarantee on ``group_size`` rows.

    The noise multiplier is calibrated (:func:`dpsgd_noise_multiplier`) to
    ``delta - p_overflow``, the buffer sized so that ``p_overflow <= delta / 100``.

    Args:
      apply: pure ``apply(params, x) -> logits``.
      params: the initial parameters.
      X: the training rows (``n`` of them; the guarantee is about these).
      y: their labels.
      key: the run's key.
      epsilon: the target epsilon.
      delta: the target delta.
      steps: number of steps.
      batch_size: the expected batch ``q n``.
      clip: per-example clipping norm.
      optimizer: any optax optimizer (default ``optax.adam(1e-3)``). The compiled training
        loop is cached per ``apply``, ``loss`` and ``optimizer`` (by identity), ``steps`` and
        shapes for the process's life: reuse one optimizer object (and one ``apply``) across
        calls, or every call compiles, and keeps, a program of its own.
      loss: ``loss(logits, y)`` mean loss (default softmax cross-entropy).
      group_size: rows the guarantee covers (``k`` for deleting ``k`` rows).
      accountant: ``"pld"`` or ``"rdp"``.
      eligible: optional ``(n,)`` bool of the rows that may be sampled (the rest are absent).
      chunk: rows whose per-example gradients are held in memory at once.

    Returns:
      ``(params, DPSGDConfig)``.
    """
    from certun.unlearners.koloskova import softmax_cross_entropy

    Xa = jnp.asarray(_validate.finite_array(X=X, ndim=(2, 3, 4)))
    ya = jnp.asarray(np.asarray(y))
    n = int(Xa.shape[0])
    T = _validate.integer(steps=steps, minimum=1)
    B = _validate.integer(batch_size=batch_size, minimum=1, maximum=n)
    dlt = _validate.delta(delta=delta)
    q = B / n
    buf = n if q >= 1.0 else _buffer(n, q, T, dlt / 100.0)
    p_over = 0.0 if buf >= n else overflow_probability(n, q, buf, T)
    z = dpsgd_noise_multiplier(epsilon=epsilon, delta=dlt - p_over, rate=q, steps=T,
                               group_size=group_size, accountant=accountant)
    opt = _DEFAULT_OPT if optimizer is None else optimizer
    el = jnp.ones(n, bool) if eligible is None else jnp.asarray(eligible, bool)
    dt = jax.tree.leaves(params)[0].dtype
    hp = {"rate": jnp.asarray(q, dt), "clip": jnp.asarray(clip, dt), "z": jnp.asarray(z, dt),
          "B": jnp.asarray(B, dt)}
    out = _train(params, Xa, ya, el, key, hp, apply=apply,
                 loss=softmax_cross_entropy if loss is None else loss, optimizer=opt, steps=T,
                 buffer=buf, chunk=min(_validate.integer(chunk=chunk, minimum=1), buf))
    eps_got = dpsgd_epsilon(noise_multiplier=z, rate=q, steps=T, delta=dlt - p_over,
                            group_size=group_size, accountant=accountant)
    return out, DPSGDConfig(z, float(clip), q, T, buf, eps_got, dlt, int(group_size), accountant)
