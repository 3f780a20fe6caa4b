r"""Fragile verification of unlearning (Zhang, Chen, Shen, Li, ICML 2024), on an SGD-trained GLM.

Two families of verification a data owner or auditor can run against a model provider:

* **Backdoor / watermark verification.** The owner stamps a trigger on some of its rows
  (with a chosen label) before training; after its deletion request it queries triggered
  inputs. A high attack success rate (:func:`backdoor_asr`) means "not unlearned".
* **Reproduction (proof-of-learning) verification.** The provider publishes a transcript of
  checkpoints ``theta_t`` and batch indices ``B_t``; the verifier recomputes every step and
  checks ``||theta_{t+1} - SGDstep(theta_t, B_t)|| <= tau`` and that no ``B_t`` touches
  the forgotten rows (:func:`reproduction_errors`, :func:`reproduction_verify`).

The paper's two adversarial unlearning processes, implemented after its code's description:

* **Adv-Sn** (retraining-based): retrain from the same initialisation with the same batch
  schedule, replacing each forgotten row in a batch by its nearest *same-class* retained row
  (cosine similarity of raw inputs; :func:`nearest_same_class`, :func:`substitute`). The
  transcript touches only retained rows, so it is genuine and passes reproduction.
* **Forging**: train honestly on everything, then publish a transcript whose batches are
  the substituted ones and whose recorded states are one SGD step on the forged batch from
  the *original* trajectory's previous state (:func:`forge_transcript`). The verification
  error per step is the effect of the substitution, small when neighbours are close.

Neither verification measures what unlearning is for -- the influence of the forgotten rows
-- which membership inference on them does. certun's certified unlearners come with a
certificate whose claim can be *audited* (:mod:`certun.audits.adversary`): an empirical
lower bound on epsilon that a process keeping the data's influence would push above the
claimed epsilon.

References:
  B. Zhang, Z. Chen, C. Shen, J. Li, "Verification of Machine Unlearning is Fragile",
  ICML 2024.
  H. Jia et al., "Proof-of-Learning: Definitions and Practice", IEEE S&P 2021.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate

__all__ = ["batch_schedule", "sgd_transcript", "reproduction_errors", "reproduction_verify",
           "nearest_same_class", "substitute", "forge_transcript", "backdoor_asr",
           "calibrate_tolerance"]


def batch_schedule(n: int, *, batch_size: int, epochs: int, seed: int) -> np.ndarray:
    """``(T, batch_size)`` row indices: one random permutation per epoch, cut into batches."""
    rng = np.random.default_rng(seed)
    nb = n // batch_size
    return np.concatenate([rng.permutation(n)[: nb * batch_size].reshape(nb, batch_size)
                           for _ in range(epochs)])


def _step(w, Xb, yb, lr, lam):
    a = yb * (Xb @ w)
    g = Xb.T @ (-yb * jax.nn.sigmoid(-a)) / Xb.shape[0] + lam * w
    return w - lr * g


def _noise(w, X, y, r, noise_lr, lam):
    """The paper's simulated numerical noise: one SGD step of size ``noise_lr`` on row ``r``."""
    return _step(w, X[r][None], y[r][None], noise_lr, lam)


@jax.jit
def _run(w0, X, y, batches, lr, lam, noise_rows, noise_lr):
    def body(w, bn):
        b, r = bn
        w2 = _step(w, X[b], y[b], lr, lam)
        w2 = jnp.where(noise_lr > 0, _noise(w2, X, y, r, noise_lr, lam), w2)
        return w2, w2

    _, ws = jax.lax.scan(body, w0, (batches, noise_rows))
    return jnp.concatenate([w0[None], ws])


@jax.jit
def _errors(ws, X, y, batches, lr, lam):
    rec = jax.vmap(lambda w, b: _step(w, X[b], y[b], lr, lam))(ws[:-1], batches)
    return jnp.linalg.norm(ws[1:] - rec, axis=1)


@jax.jit
def _forge(ws_orig, X, y, batches, lr, lam, noise_rows, noise_lr, changed):
    def one(w, b, r, c):
        w2 = _step(w, X[b], y[b], lr, lam)
        return jnp.where((noise_lr > 0) & ~c, _noise(w2, X, y, r, noise_lr, lam), w2)

    return jnp.concatenate([ws_orig[:1], jax.vmap(one)(ws_orig[:-1], batches, noise_rows,
                                                        changed)])


def _noise_args(batches: Any, noise_rows: Any | None, noise_lr: float) -> tuple[Any, float]:
    T = np.asarray(batches).shape[0]
    noise_lr = _validate.non_negative(noise_lr=noise_lr)
    if noise_rows is None:
        if noise_lr > 0:
            raise _validate.ValidationError("noise_lr > 0 needs noise_rows (one row per step)")
        return jnp.zeros(T, jnp.int32), 0.0
    r = np.asarray(noise_rows, np.int64)
    if r.shape != (T,):
        raise _validate.ValidationError(
            f"noise_rows must have one row index per step, shape ({T},), got {r.shape}")
    return jnp.asarray(r), noise_lr


def sgd_transcript(X: Any, y: Any, batches: Any, *, lr: float, lam: float,
                   w0: Any | None = None, noise_rows: Any | None = None,
                   noise_lr: float = 0.0) -> np.ndarray:
    """Mini-batch SGD on the L2-logistic loss; the ``(T + 1, d)`` checkpoints.

    Step: ``w <- w - lr (mean_{i in B} grad l_i(w) + lam w)``; labels ``+-1``. With
    ``noise_lr > 0`` every recorded state also carries the paper's simulated numerical noise
    (Zhang et al. 2024's ``forge_sim``: one extra SGD step of size ``noise_lr`` on the row
    ``noise_rows[t]``), standing in for the non-determinism of the provider's hardware that a
    verifier re-executing the step cannot reproduce.
    """
    Xj = jnp.asarray(_validate.finite_array(X=X, ndim=2))
    w = jnp.zeros(Xj.shape[1], Xj.dtype) if w0 is None else jnp.asarray(w0, Xj.dtype)
    rows, nlr = _noise_args(batches, noise_rows, noise_lr)
    return np.asarray(_run(w, Xj, jnp.asarray(y, Xj.dtype), jnp.asarray(batches),
                           _validate.positive(lr=lr), _validate.non_negative(lam=lam),
                           rows, nlr))


def calibrate_tolerance(honest_errors: Any, *, factor: float = 1.0) -> float:
    """The verifier's tolerance ``tau``: ``factor`` times the largest honest re-execution error.

    Re-execution is not bitwise reproducible across hardware, so a reproduction verifier must
    accept the errors of honest transcripts (the fragile-verification paper's argument; the
    proof-of-learning verifier of Jia et al. (IEEE S&P 2021) sets its threshold from honest
    reproduction errors too): it re-executes honest training runs, records the per-step
    errors, and sets ``tau`` so that all of them pass.

    Args:
      honest_errors: per-step errors of one or more honest transcripts (any shape).
      factor: safety factor (>= 1) against honest runs noisier than the calibration's.
    """
    e = _validate.finite_array(honest_errors=np.ravel(np.asarray(honest_errors, np.float64)),
                               ndim=1)
    factor = _validate.positive(factor=factor)
    if factor < 1.0:
        raise _validate.ValidationError(f"factor must be >= 1, got {factor}")
    return float(factor * e.max())


def reproduction_errors(X: Any, y: Any, checkpoints: Any, batches: Any, *, lr: float,
                        lam: float) -> np.ndarray:
    """The verifier's per-step errors ``||theta_{t+1} - SGDstep(theta_t, B_t)||``."""
    Xj = jnp.asarray(X)
    return np.asarray(_errors(jnp.asarray(checkpoints, Xj.dtype), Xj,
                              jnp.asarray(y, Xj.dtype), jnp.asarray(batches), lr, lam))


def reproduction_verify(errors: Any, batches: Any, forget: Any, tau: float) -> dict:
    """Pass when every step reproduces within ``tau`` and no batch contains a forgotten row."""
    e = np.asarray(errors, np.float64)
    touches = bool(np.isin(np.asarray(batches), np.asarray(forget)).any())
    return {"max_error": float(e.max()), "tau": float(tau), "touches_forget": touches,
            "passes": bool(e.max() <= tau and not touches)}


def nearest_same_class(X: Any, y: Any, forget: Any, retain: Any) -> np.ndarray:
    """For each forgotten row, the retained row of the same label with the largest cosine."""
    Xn = np.asarray(X, np.float64)
    U = Xn / np.maximum(np.linalg.norm(Xn, axis=1, keepdims=True), 1e-12)
    f, r = np.asarray(forget, np.int64), np.asarray(retain, np.int64)
    sim = U[f] @ U[r].T
    same = np.asarray(y)[f][:, None] == np.asarray(y)[r][None, :]
    sim = np.where(same, sim, -np.inf)
    return r[np.argmax(sim, axis=1)]


def substitute(batches: Any, forget: Any, neighbours: Any) -> np.ndarray:
    """Batches with every forgotten index replaced by its neighbour (same order as ``forget``)."""
    B = np.array(batches, np.int64, copy=True)
    lut = dict(zip(np.asarray(forget).tolist(), np.asarray(neighbours).tolist(), strict=True))
    flat = B.reshape(-1)
    for i, v in enumerate(flat):
        if v in lut:
            flat[i] = lut[v]
    return flat.reshape(B.shape)


def forge_transcript(X: Any, y: Any, checkpoints_orig: Any, forged_batches: Any, *, lr: float,
                     lam: float, original_batches: Any | None = None,
                     noise_rows: Any | None = None, noise_lr: float = 0.0) -> np.ndarray:
    """Forged checkpoints: ``theta'_{t+1} = SGDstep(theta_t^orig, B'_t)`` (the paper's forging).

    With ``noise_lr > 0`` (and ``original_batches``), the steps whose batch was *not*
    rewritten also get the simulated numerical noise of :func:`sgd_transcript`, as the
    paper's ``forge_sim`` does, so that they look like honest noisy steps.
    """
    Xj = jnp.asarray(X)
    rows, nlr = _noise_args(forged_batches, noise_rows, noise_lr)
    fb = np.asarray(forged_batches)
    changed = (np.zeros(fb.shape[0], bool) if original_batches is None else
               (np.asarray(original_batches) != fb).any(axis=1))
    return np.asarray(_forge(jnp.asarray(checkpoints_orig, Xj.dtype), Xj,
                             jnp.asarray(y, Xj.dtype), jnp.asarray(fb), lr, lam, rows, nlr,
                             jnp.asarray(changed)))


def backdoor_asr(w: Any, X_triggered: Any, target_label: float) -> float:
    """Share of triggered inputs (of other classes) classified as ``target_label`` (``+-1``)."""
    s = np.asarray(X_triggered, np.float64) @ np.asarray(w, np.float64)
    return float(np.mean(np.sign(s) == target_label))
