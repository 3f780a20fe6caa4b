r"""Epsilon-audit worlds for the network unlearners (noisy fine-tuning, Koloskova et al. 2025).

Builders of :class:`certun.audits.adversary.Worlds` for :func:`certun.unlearners.noisy_finetuning`
(:func:`noisy_finetuning_worlds`) and for DP-SGD training (:func:`dp_sgd_worlds`,
:func:`certun.nn.dp.dp_sgd_train`, the baseline with group privacy) on a configuration small
enough to run many times, for :func:`certun.audits.adversary.adversarial_audit`. For noisy
fine-tuning:

* The guarantee holds for **any two starting models** in the ball ``||x|| <= C_0``
  (``proofs/koloskova2025_noisy_finetuning.md`` §1), so the strongest pair of worlds starts
  from two antipodal points ``+-C_0 e_1`` (the trained and the retrained model as far apart as
  the clipping allows) and fine-tunes on the same retained rows.
* Every output is a whole run of certun's own jitted fine-tuning (``_run``), with the noise and
  the step count the public API calibrated (``details["api_published_in"]`` keeps the API's
  own release for ``jax.random.key(0)``, which the tests compare with the sampler).
* ``sigma_scale`` multiplies every noise of the run (initial and per step) and keeps the
  claimed epsilon: ``sigma_scale=0.5`` is the half-noise twin an audit must catch.

The model is a linear softmax classifier ``x @ W`` (``W`` of shape ``(d, K)``), a pure ``apply``
as a user would bring; its step size is small so that the per-step drift ``2 eta C_1`` is
a small part of the shift and the amplification bound is nearly tight.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.audits.adversary import Worlds

__all__ = ["noisy_finetuning_worlds", "dp_sgd_worlds"]


def _linear_apply(params: Any, x: jax.Array) -> jax.Array:
    return x @ params["W"]


@functools.lru_cache(maxsize=32)
def _sampler(variant: str, steps: int, batch: int, clip_grad: bool):
    from certun.unlearners.koloskova import _run, softmax_cross_entropy

    def sample(k: jax.Array, a: dict) -> jax.Array:
        out = _run(a["start"], a["X"], a["y"], a["retained"], k, a["hp"], None,
                   apply=_linear_apply,
                   loss=softmax_cross_entropy, variant=variant, steps=steps, batch_size=batch,
                   clip_grad=clip_grad, post_steps=0, post_opt=None, post_clip=False)
        return out["W"].reshape(-1)

    return sample


def noisy_finetuning_worlds(X: Any, y: Any, forget: Any, *, variant: str, epsilon: float,
                            delta: float, init_clip: float = 1.0, num_classes: int = 2,
                            sigma_scale: float = 1.0, **kwargs: Any) -> Worlds:
    """Noisy fine-tuning from ``+C_0 e_1`` (world "in") vs from ``-C_0 e_1`` (world "out").

    Args:
      X: ``(n, d)`` rows.
      y: class ids in ``[0, num_classes)``.
      forget: the forgotten rows (both worlds fine-tune on the rest).
      variant: ``"gradient_clipping"``, ``"model_clipping"`` or ``"output_perturbation"``.
      epsilon: the certified epsilon.
      delta: the certified delta.
      init_clip: ``C_0``.
      num_classes: ``K`` (the model is ``W`` of shape ``(d, K)``).
      sigma_scale: factor on every noise of the run (the claimed epsilon is kept).
      **kwargs: further arguments of :func:`certun.unlearners.noisy_finetuning`
        (``lr``, ``steps``, ``grad_clip``, ``model_clip``, ``sigma``, ``init_sigma``,
        ``batch_size``, ...).

    Returns:
      :class:`~certun.audits.adversary.Worlds` (``runs_are_training``).
    """
    import warnings

    from certun.unlearners.koloskova import noisy_finetuning

    s = _validate.positive(sigma_scale=sigma_scale)
    Xa = jnp.asarray(np.asarray(X, np.float64))
    ya = jnp.asarray(np.asarray(y))
    d = int(Xa.shape[1])
    K = _validate.integer(num_classes=num_classes, minimum=2)
    e1 = jnp.zeros((d, K), jnp.float64).at[0, 0].set(float(init_clip))
    start_in, start_out = {"W": e1}, {"W": -e1}
    unl = noisy_finetuning(_linear_apply, variant=variant, epsilon=epsilon, delta=delta,
                           init_clip=init_clip, **kwargs)
    st = unl.init(np.asarray(Xa), np.asarray(ya), params=start_in)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = unl.unlearn(st, forget, jax.random.key(0))
    cert = res.certificate
    pi = cert.public_inputs
    T = int(pi["steps"])
    batch = int(pi["batch_size"])
    clip_grad = pi.get("grad_clip") is not None
    hp = {"post_clip": 1.0, "init_clip": float(init_clip),
          "init_sigma": float(pi["init_sigma"]) * s,
          "grad_clip": float(pi["grad_clip"] or 1.0),
          "model_clip": float(pi["model_clip"] or 1.0), "sigma": float(pi["sigma"]) * s,
          "lr": float(pi["lr"]), "weight_decay": float(pi["weight_decay"])}
    hp = {k: jnp.asarray(v, jnp.float64) for k, v in hp.items()}
    common = {"X": Xa, "y": ya, "retained": res.state.retained, "hp": hp}
    smp = _sampler(variant, T, batch, clip_grad)
    name = cert.mechanism if s == 1.0 else f"{cert.mechanism}[twin: sigma x{s:g}]"
    return Worlds(name, cert.adjacency,
                  {"n": int(Xa.shape[0]), "d": d, "K": K, "variant": variant, "steps": T,
                   "init_clip": float(init_clip), "starts": "+-C_0 e_1 (antipodal)"},
                  float(cert.epsilon), float(cert.delta), smp, smp,
                  dict(common, start=start_in), dict(common, start=start_out),
                  runs_are_training=True,
                  details={"sigma": float(pi["sigma"]) * s,
                           "init_sigma": float(pi["init_sigma"]) * s, "steps": T,
                           "sigma_scale": s, "certificate_status": cert.status,
                           "api_published_in": np.asarray(res.params["W"]).reshape(-1)})


# --------------------------------------------------------------------------- DP-SGD

#: the canary's target: its per-example gradient ``-x y^T = -4 C e_1`` has norm ``4 C``, so
#: clipping scales it by exactly ``1/4`` (``C / (4 C)`` is exact in floating point)
_DP_CANARY_TARGET = 4.0


def _dp_linear_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    """``-mean_i <logits_i, y_i>``: linear in the parameters, a constant gradient per row."""
    return -jnp.mean(jnp.sum(logits * y, axis=-1))


@functools.lru_cache(maxsize=32)
def _dp_optimizer(lr: float) -> Any:
    # one optax object per learning rate: the API call and the sampler share the compiled
    # program of ``certun.nn.dp._train`` (keyed on the optimizer's identity)
    import optax

    return optax.sgd(lr)


@functools.lru_cache(maxsize=32)
def _dp_sampler(lr: float, steps: int, buffer: int, chunk: int):
    from certun.nn.dp import _train

    opt = _dp_optimizer(lr)

    def sample(k: jax.Array, a: dict) -> jax.Array:
        out = _train(a["params"], a["X"], a["y"], a["eligible"], k, a["hp"],
                     apply=_linear_apply, loss=_dp_linear_loss, optimizer=opt, steps=steps,
                     buffer=buffer, chunk=chunk)
        return out["W"].reshape(-1)

    return sample


def dp_sgd_worlds(*, epsilon: float, delta: float, steps: int = 4, n: int = 8, d: int = 2,
                  group_size: int = 1, clip: float = 1.0, lr: float = 0.1,
                  sigma_scale: float = 1.0, accountant: str = "pld") -> Worlds:
    r"""DP-SGD trained with a group of ``k`` canary rows (world "in") vs without them ("out").

    Every output is one whole run of :func:`certun.nn.dp.dp_sgd_train`'s jitted training core
    (``certun.nn.dp._train``), with the noise multiplier ``z`` the accountant prescribes for
    ``(epsilon, delta)`` on a group of ``k`` rows (:func:`certun.nn.dp.dpsgd_noise_multiplier`)
    and the run's other public quantities; ``details["api_published_in"]`` keeps the API's
    own trained parameters for ``jax.random.key(0)`` (the tests compare them with the
    sampler). ``sigma_scale`` multiplies the noise only (``z`` in the run; the claimed epsilon
    is kept): ``sigma_scale=0.5`` is the half-noise twin an audit must catch.

    **The worst case, where the accounting is attained.** Full batches (``batch_size = n``,
    sampling rate 1: a final-iterate audit cannot attain the amplification by subsampling, so
    it is left out), ``optax.sgd(lr)`` (the final iterate is ``W_0 - lr sum_t g_t``), the
    linear model ``x @ W`` (``W`` of shape ``(d, 1)``) and the linear loss
    ``-<x @ W, y>``, whose per-example gradient ``-x y^T`` does not depend on ``W``:

    * the ``k`` canary rows (the last ones) are ``x = e_1``, ``y = 4``: each gradient is
      ``-4 C e_1``, clipped to exactly ``-C e_1`` at every step;
    * the other ``n - k`` rows are zero and contribute nothing.

    The two worlds differ only in ``eligible`` (the canaries are absent from world "out": the
    add/remove adjacency of the accountant, and the same normaliser ``B = n`` in both). With
    the same key both runs draw the same noise, and
    ``W_in - W_out = lr T k C / n e_1`` exactly, while each run's noise is
    ``N(0, (lr sqrt(T) z C / n)^2 I)``: the outputs are two Gaussians whose mean shift over
    noise is ``k sqrt(T) / z``, the composed Gaussian mechanism the PLD accountant certifies
    (``T`` Gaussian steps of sensitivity ``k C`` at full batch compose to one Gaussian of
    multiplier ``z / (k sqrt(T))``, ``details["exact_epsilon"]``, Balle & Wang's analytic
    epsilon of that shift; PLD's pessimistic discretisation certifies a little more). The
    ``d - 1`` other coordinates are pure noise.

    Args:
      epsilon: the target epsilon (the certified one is the accountant's, ``<= epsilon``).
      delta: the target delta.
      steps: ``T``.
      n: rows, the canaries included (``> group_size``).
      d: dimension (the canaries are ``e_1``).
      group_size: ``k`` canary rows (1: the accounting is tight; ``k > 1`` at full batch is
        exact too, see :func:`certun.nn.dp.dpsgd_epsilon`).
      clip: per-example clipping norm ``C``.
      lr: SGD step size.
      sigma_scale: factor on the noise multiplier of the run (the claimed epsilon is kept).
      accountant: ``"pld"`` or ``"rdp"``.

    Returns:
      :class:`~certun.audits.adversary.Worlds` (``runs_are_training``).
    """
    from certun.accounting.gaussian import analytic_epsilon
    from certun.nn.dp import dp_sgd_train

    s = _validate.positive(sigma_scale=sigma_scale)
    N = _validate.integer(n=n, minimum=2)
    k = _validate.integer(group_size=group_size, minimum=1, maximum=N - 1)
    dim = _validate.integer(d=d, minimum=1)
    T = _validate.integer(steps=steps, minimum=1)
    C = _validate.positive(clip=clip)
    eta = _validate.positive(lr=lr)
    X = np.zeros((N, dim))
    X[N - k:, 0] = 1.0
    y = np.zeros((N, 1))
    y[N - k:, 0] = _DP_CANARY_TARGET * C
    Xa, ya = jnp.asarray(X), jnp.asarray(y)
    params = {"W": jnp.zeros((dim, 1), jnp.float64)}
    opt = _dp_optimizer(eta)
    published, cfg = dp_sgd_train(_linear_apply, params, X, y, jax.random.key(0),
                                  epsilon=epsilon, delta=delta, steps=T, batch_size=N, clip=C,
                                  optimizer=opt, loss=_dp_linear_loss, group_size=k,
                                  accountant=accountant)
    z = cfg.noise_multiplier
    hp = {"rate": 1.0, "clip": C, "z": z * s, "B": float(N)}
    hp = {key: jnp.asarray(v, jnp.float64) for key, v in hp.items()}
    eligible_in = jnp.ones(N, bool)
    eligible_out = eligible_in.at[N - k:].set(False)
    common = {"params": params, "X": Xa, "y": ya, "hp": hp}
    smp = _dp_sampler(eta, T, cfg.buffer, min(256, cfg.buffer))
    name = "dp_sgd" if s == 1.0 else f"dp_sgd[twin: sigma x{s:g}]"
    shift = k * math.sqrt(T) / (z * s)
    return Worlds(name, f"add/remove {k} row{'s' if k > 1 else ''}",
                  {"n": N, "d": dim, "steps": T, "group_size": k, "clip": C, "lr": eta,
                   "rate": 1.0, "optimizer": "optax.sgd", "accountant": cfg.accountant,
                   "canaries": "k rows e_1 with target 4 C (gradient clipped to C e_1); "
                               "other rows zero"},
                  float(cfg.epsilon), float(cfg.delta), smp, smp,
                  dict(common, eligible=eligible_in), dict(common, eligible=eligible_out),
                  runs_are_training=True,
                  details={"noise_multiplier": z * s, "certified_noise_multiplier": z,
                           "steps": T, "sigma_scale": s, "shift_over_noise": shift,
                           "exact_epsilon": analytic_epsilon(1.0 / shift, float(cfg.delta)),
                           "mean_shift": eta * T * k * C / N,
                           "noise_std": eta * math.sqrt(T) * z * s * C / N,
                           "api_published_in": np.asarray(published["W"]).reshape(-1)})
