r"""Epsilon-audit worlds for the network unlearners (noisy fine-tuning, Koloskova et al. 2025).

Builders of :class:`certun.audits.adversary.Worlds` for :func:`certun.unlearners.noisy_finetuning`
on a configuration small enough to run many times, for
:func:`certun.audits.adversary.adversarial_audit`:

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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.audits.adversary import Worlds

__all__ = ["noisy_finetuning_worlds"]


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
