r"""Training with Adam, coupled weight decay and the weight-norm constraint ``||w||_2 <= C``.

Zhang et al. (ICML 2024, §3.2) train under a norm constraint so that the original, the
unlearned and the retrained models all lie in the ball :math:`\{\lVert w\rVert_2\le C\}`
(whole-network L2 norm); their code rescales the parameters by :math:`C/\lVert w\rVert`
after every Adam step (docs/bibliography.md §4.2). certun does the same:

.. math::
    w \leftarrow P_C\big(w + \mathrm{Adam}(\nabla F_B(w))\big),\qquad
    P_C(w) = w\,\min\big(1, C/\lVert w\rVert_2\big),

with :math:`F_B` the mean cross-entropy over a minibatch plus :math:`\frac\kappa2\lVert
w\rVert^2` (``weight_decay``; PyTorch's coupled ``Adam(weight_decay=kappa)``).

Epochs run as a jit-compiled ``lax.scan`` over minibatches, ``log_every`` epochs per
compiled call (another ``lax.scan``); the host loop between calls reports progress. The
randomness is explicit: ``key`` gives the initialisation (``fold_in(key, 0)``) and the
batch order of epoch ``e`` (``fold_in(fold_in(key, 1), e)``), so retraining on the
retained rows with the same ``key`` starts from the same initial parameters
(:func:`train` is the learning algorithm ``A`` of the certificate: ``A(D_r)`` is
``train(net, X_r, y_r, key, config)``).

Rounding: in floating point :math:`\lVert P_C(w)\rVert` can exceed :math:`C` by a few
units of roundoff; :func:`radius_bound` gives the guaranteed radius
:math:`C(1+\gamma_{p+4})` (``p`` parameters, unit roundoff of the parameter dtype), which the
certificates use (``proofs/zhang2024_sensitivity.md``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from certun import _validate
from certun._tree import tree_norm, tree_vdot
from certun.nn.models import Network, num_params
from certun.nn.objective import cross_entropy, objective
from certun.progress import enabled as progress_enabled
from certun.progress import progress_bar

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "project_ball",
    "radius_bound",
    "unit_roundoff",
    "check_params_in_ball",
]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The learning algorithm's hyperparameters (also those of retraining).

    Attributes:
      epochs: passes over the data.
      batch_size: minibatch size (``None``: full batch). The last batch of an epoch is
        padded with zero-weight rows, so every row is used once per epoch.
      learning_rate: Adam's step size (the paper: 1e-3).
      weight_decay: ``kappa``, coupled L2 weight decay (the paper: 5e-4).
      radius: ``C``, the weight-norm constraint ``||w||_2 <= C`` (the authors' code: 20).
      schedule: ``"constant"`` or ``"cosine"`` (cosine decay of the step size to 0).
      log_every: epochs per compiled call (progress is reported between calls).
      dtype: parameter dtype, ``"float32"`` or ``"float64"``.
    """

    epochs: int = 50
    batch_size: int | None = 128
    learning_rate: float = 1e-3
    weight_decay: float = 5e-4
    radius: float = 20.0
    schedule: str = "constant"
    log_every: int = 10
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _validate.integer(epochs=self.epochs, minimum=1)
        if self.batch_size is not None:
            _validate.integer(batch_size=self.batch_size, minimum=1)
        _validate.positive(learning_rate=self.learning_rate)
        _validate.non_negative(weight_decay=self.weight_decay)
        _validate.positive(radius=self.radius)
        _validate.choice(("constant", "cosine"), schedule=self.schedule)
        _validate.integer(log_every=self.log_every, minimum=1)
        _validate.choice(("float32", "float64"), dtype=self.dtype)


class TrainResult(NamedTuple):
    """Output of :func:`train`.

    Attributes:
      params: the trained parameters (in the ball ``||w|| <= radius_bound``).
      init_params: the initial parameters (a function of ``key`` only).
      losses: mean minibatch objective per epoch (host NumPy array).
      grad_norm: ``||grad F(params; D)||_2`` on the full training data at the end.
      seconds: wall time of the training loop (compilation included).
    """

    params: PyTree
    init_params: PyTree
    losses: np.ndarray
    grad_norm: float
    seconds: float


def unit_roundoff(dtype: Any) -> float:
    """Unit roundoff ``u = eps / 2`` of a floating dtype."""
    return float(jnp.finfo(dtype).eps) / 2.0


def radius_bound(radius: float, num_params: int, dtype: Any) -> float:
    """A guaranteed bound on ``||P_C(w)||_2`` as computed in ``dtype``: ``C (1 + gamma_{p+4})``.

    The computed norm has relative error at most ``gamma_{p+1}`` (a sum of ``p`` squares and
    a square root), the factor ``C / norm`` one more rounding and the scaling one more per
    entry, so the computed projection has norm at most ``C (1 + gamma_{p+4})``
    (``gamma_k = k u / (1 - k u)``; ``proofs/zhang2024_sensitivity.md``, step 4).
    """
    u = unit_roundoff(dtype)
    k = num_params + 4
    if k * u >= 0.5:
        raise _validate.ValidationError(
            f"{num_params} parameters are too many for a rounding bound in {jnp.dtype(dtype).name}")
    return float(radius) * (1.0 + k * u / (1.0 - k * u))


def project_ball(params: PyTree, radius: float | jax.Array) -> PyTree:
    """``P_C(w) = w min(1, C / ||w||_2)`` (whole-network norm; identity inside the ball)."""
    nrm = tree_norm(params)
    scale = jnp.minimum(1.0, radius / jnp.maximum(nrm, jnp.finfo(nrm.dtype).tiny))
    return jax.tree.map(lambda p: (p * scale).astype(p.dtype), params)


def _optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    if config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.learning_rate, config.epochs * steps_per_epoch)
    else:
        lr = config.learning_rate
    return optax.adam(lr)


def _progress_fn(progress: Callable[[int, float], None] | bool | None, epochs: int,
                 stack: contextlib.ExitStack) -> Callable[[int, float], None] | None:
    """The reporter called between compiled chunks (host side, never inside ``jit``).

    ``True`` draws a :mod:`certun.progress` bar (closed by ``stack``) when bars are
    enabled -- stderr is a terminal and ``CERTUN_PROGRESS`` is not ``0`` -- and otherwise
    prints one line per chunk on stderr (stdout stays free for a command's ``--json``).
    """
    if progress is True:
        if progress_enabled():
            bar = stack.enter_context(progress_bar(epochs, "training"))
            done = [0]

            def advance(epoch: int, loss: float) -> None:
                bar.advance(epoch - done[0], info=f"loss {loss:.5f}")
                done[0] = epoch

            return advance
        width = len(str(epochs))

        def show(epoch: int, loss: float) -> None:
            print(f"  epoch {epoch:>{width}}/{epochs}  loss {loss:.5f}", file=sys.stderr,
                  flush=True)

        return show
    return progress or None


@functools.lru_cache(maxsize=64)
def _full_grad(net: Network, weight_decay: float) -> Callable:
    return jax.jit(jax.grad(objective(net, weight_decay)))


@functools.lru_cache(maxsize=64)
def _compiled(net: Network, config: TrainConfig, n: int) -> tuple[optax.GradientTransformation,
                                                                   Callable]:
    """The optimiser and the jitted ``log_every``-epoch chunk, cached per (net, config, n).

    Data are arguments of the jitted function (never closed-over constants), so retraining
    on a data set of the same size re-uses the compilation.
    """
    bs = n if config.batch_size is None else min(config.batch_size, n)
    nb = math.ceil(n / bs)
    opt = _optimizer(config, nb)
    wd = config.weight_decay
    radius = config.radius

    def epoch(carry, e, X, y, data_key):
        params, opt_state = carry
        dtype = X.dtype

        def batch_loss(p, idx, w):
            return cross_entropy(net.apply(p, X[idx]), y[idx], w) + 0.5 * wd * tree_vdot(p, p)

        grad_fn = jax.value_and_grad(batch_loss)
        perm = jax.random.permutation(jax.random.fold_in(data_key, e), n)
        pad = nb * bs - n
        idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)]).reshape(nb, bs)
        w = jnp.concatenate([jnp.ones((n,), dtype), jnp.zeros((pad,), dtype)]).reshape(nb, bs)

        def step(c, batch):
            p, s = c
            loss, g = grad_fn(p, *batch)
            upd, s = opt.update(g, s, p)
            p = project_ball(optax.apply_updates(p, upd), radius)
            return (p, s), loss

        (params, opt_state), losses = lax.scan(step, (params, opt_state), (idx, w))
        return (params, opt_state), jnp.mean(losses)

    @jax.jit
    def run_chunk(params, opt_state, epochs_idx, X, y, data_key):
        return lax.scan(lambda c, e: epoch(c, e, X, y, data_key), (params, opt_state), epochs_idx)

    return opt, run_chunk


def train(net: Network, X: Any, y: Any, key: jax.Array, config: TrainConfig = TrainConfig(),
          *, progress: Callable[[int, float], None] | bool | None = None) -> TrainResult:
    """Train ``net`` with Adam, coupled weight decay and projection onto ``||w|| <= C``.

    Args:
      net: the network (:func:`certun.nn.mlp`, :func:`certun.nn.cnn`).
      X: inputs ``(n, input_dim)``.
      y: integer labels ``(n,)`` in ``0 .. num_classes - 1``.
      key: the training randomness (initialisation and batch order).
      config: the hyperparameters.
      progress: ``True`` reports every ``log_every`` epochs: a progress bar on stderr
        when it is a terminal (:mod:`certun.progress`; ``CERTUN_PROGRESS=0`` turns bars
        off), one line on stderr per report otherwise; a callable ``progress(epoch, loss)``
        is called instead; ``None`` is silent. Reporting happens between compiled chunks
        and never changes the result.

    Returns:
      A :class:`TrainResult`.

    Raises:
      ValueError: on invalid data (shapes, NaN/Inf, labels out of range).
    """
    Xn = _validate.finite_array(X=X, ndim=2)
    yn = _validate.finite_array(y=y, ndim=1)
    _validate.matching_rows(X=Xn, y=yn)
    if Xn.shape[1] != net.input_dim:
        raise _validate.ValidationError(
            f"X has {Xn.shape[1]} features but the network expects input_dim={net.input_dim}")
    if not np.issubdtype(yn.dtype, np.integer) or yn.min() < 0 or yn.max() >= net.num_classes:
        raise _validate.ValidationError(
            f"y must hold integer class ids in 0..{net.num_classes - 1}, got dtype {yn.dtype} "
            f"and range [{yn.min()}, {yn.max()}]")
    dtype = jnp.dtype(config.dtype)
    if dtype == jnp.float64 and not jax.config.read("jax_enable_x64"):
        raise _validate.ValidationError(
            "config.dtype='float64' needs jax_enable_x64; call certun.enable_x64() first")
    Xj = jnp.asarray(Xn, dtype)
    yj = jnp.asarray(yn, jnp.int32)
    n = int(Xj.shape[0])
    opt, run_chunk = _compiled(net, config, n)
    params0 = net.init(jax.random.fold_in(key, 0), dtype)
    data_key = jax.random.fold_in(key, 1)
    t0 = time.perf_counter()
    params, opt_state = project_ball(params0, config.radius), opt.init(params0)
    history: list[np.ndarray] = []
    done = 0
    with contextlib.ExitStack() as stack:
        show = _progress_fn(progress, config.epochs, stack)
        while done < config.epochs:  # host loop: one compiled chunk of log_every epochs a pass
            k = min(config.log_every, config.epochs - done)
            (params, opt_state), losses = run_chunk(params, opt_state,
                                                    jnp.arange(done, done + k), Xj, yj, data_key)
            losses = np.asarray(losses)
            history.append(losses)
            done += k
            if show is not None:
                show(done, float(losses[-1]))
    gnorm = float(tree_norm(_full_grad(net, config.weight_decay)(params, Xj, yj)))
    seconds = time.perf_counter() - t0
    return TrainResult(params, params0, np.concatenate(history), gnorm, seconds)


def check_params_in_ball(params: PyTree, radius: float) -> tuple[bool, float, float]:
    """Host check in float64: ``(ok, ||w||_2, bound)`` with ``bound = radius_bound(...)``.

    The float64 norm of the parameters (exact conversion of each entry) has relative error
    at most ``gamma_{p+1}`` in float64; the check compares ``norm (1 + gamma_{p+1})`` with
    :func:`radius_bound` of the parameters' dtype.
    """
    leaves = jax.tree.leaves(params)
    dtype = leaves[0].dtype
    p = num_params(params)
    flat = np.concatenate([np.asarray(x, np.float64).ravel() for x in leaves])
    nrm = float(np.linalg.norm(flat))
    u64 = unit_roundoff(np.float64)
    nrm_up = nrm * (1.0 + (p + 1) * u64 / (1.0 - (p + 1) * u64))
    bound = radius_bound(radius, p, dtype)
    return nrm_up <= bound, nrm, bound
