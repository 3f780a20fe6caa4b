r"""Reconstruction of a deleted record from two model versions (Bertran et al., NeurIPS 2024).

**Threat** (docs/bibliography.md §12.1, erratum 9): the attacker sees the parameters
``theta`` before and ``theta'`` after one deletion, knows the hyperparameters (``lambda``,
``n``) and has public samples from the same distribution. Certified removal does not
defend against it: the identity below holds for exact retraining, and Guo et al.'s
perturbation ``b`` cancels from it. The defence is a private release (:mod:`certun.release`).

**Identity** (certun's mean scale, derived in ``proofs/audit_reconstruction.md``). With the
sum-scale objective ``L_b(w; D) = sum_D l(w.x_i, y_i) + (lambda |D| / 2)||w||^2 + b.w``
stationary at ``theta`` on ``D`` and at ``theta'`` on ``D' = D \ {z}``,

.. math:: \bar H\,(\theta'-\theta) = \nabla_w \ell(\theta^\top x_z, y_z) + \lambda\theta
          = \ell'(\theta^\top x_z, y_z)\,x_z + \lambda\theta,

where ``H_bar`` is the Hessian of ``L(.; D')`` integrated along the segment (``b`` cancels:
it is the same linear term in both objectives). It is exact with ``H_bar = H_{D'}(theta)``
when ``theta'`` is a Newton step from ``theta`` (Guo et al., the noiseless Newton shortcut),
and for ridge regression (constant Hessian ``X'^T X' + lambda (n-1) I``) with exact
retraining. So the attacker computes

.. math:: \hat g = \hat H\,(\theta'-\theta) - \lambda\theta \ \propto\ x_z ,

with the **exact** Hessian of the remaining data (an oracle upper bound) or a **public-data**
estimate ``H_hat = ((n-1)/m) X_pub^T D_pub X_pub + lambda (n-1) I`` from ``m`` public rows.
For ``K`` heads (one-vs-rest) each column of ``G_hat`` is a multiple of ``x_z``: the
reconstruction is its top left singular vector. The sign is not identified (it is the
sign of ``l'``); :func:`orient` fixes it with a known feature (e.g. a positive bias
coordinate) and :func:`abs_cosine` ignores it.

**Baseline** (section 12.4): the mean of the public data (:func:`averaging_baseline`).
All numbers are float64; the reconstruction is a few host-side linear-algebra calls.

References:
  M. Bertran, S. Tang, M. Kearns, J. Morgenstern, A. Roth, Z. S. Wu, "Reconstruction
  Attacks on Machine Unlearning: Simple Models are Vulnerable", NeurIPS 2024, arXiv:2405.20272.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.models import glm

__all__ = ["exact_hessian", "public_hessian", "reconstruct", "cosine", "abs_cosine", "orient",
           "averaging_baseline"]


def _W(theta: Any) -> np.ndarray:
    W = np.asarray(theta, np.float64)
    return W[:, None] if W.ndim == 1 else W


def exact_hessian(loss: str, theta: Any, X_rem: Any, y_rem: Any, lam: float) -> np.ndarray:
    """Sum-scale Hessian blocks ``(K, d, d)`` of the remaining rows at ``theta`` (attacker oracle).

    ``X_rem^T diag(l''(X_rem w_k)) X_rem + lambda n_rem I`` (for ridge ``l'' = 1``).
    """
    lossf = glm.get_loss(_validate.choice(("logistic", "squared"), loss=loss))
    lam = _validate.positive(lam=lam)
    W = _W(theta)
    X = _validate.finite_array(X_rem=X_rem, ndim=2).astype(np.float64)
    Y = np.asarray(y_rem, np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if lossf.name == "logistic" and Y.shape[1] != W.shape[1]:
        Y = np.broadcast_to(Y[:, :1], (Y.shape[0], W.shape[1]))
    return np.asarray(glm.hessian_sum(lossf, jnp.asarray(W), jnp.asarray(X), jnp.asarray(Y), lam),
                      np.float64)


def public_hessian(loss: str, theta: Any, X_pub: Any, lam: float, n_rem: int) -> np.ndarray:
    """Public-data Hessian estimate ``(n_rem / m) X_pub^T D X_pub + lambda n_rem I`` (sum scale).

    Args:
      loss: ``"logistic"`` or ``"squared"``.
      theta: the model the curvature is taken at (``(d,)`` or ``(d, K)``).
      X_pub: ``(m, d)`` public rows (labels are not needed: ``l''`` of these losses does not
        depend on them).
      lam: mean-scale regularisation.
      n_rem: number of rows remaining after the deletion (known or guessed).
    """
    lossf = glm.get_loss(_validate.choice(("logistic", "squared"), loss=loss))
    lam = _validate.positive(lam=lam)
    n_rem = _validate.integer(n_rem=n_rem, minimum=1)
    W = _W(theta)
    X = _validate.finite_array(X_pub=X_pub, ndim=2).astype(np.float64)
    m = X.shape[0]
    Dw = np.asarray(lossf.d2(jnp.asarray(X @ W), jnp.ones((m, W.shape[1]))), np.float64)
    G = np.einsum("ik,ij,il->kjl", Dw, X, X) * (n_rem / m)
    return G + lam * n_rem * np.eye(X.shape[1])[None]


def reconstruct(theta_before: Any, theta_after: Any, H: Any, lam: float) -> np.ndarray:
    """The attack: ``g_hat = H (theta_after - theta_before) - lambda theta_before`` (per head).

    Args:
      theta_before: published parameters before the deletion, ``(d,)`` or ``(d, K)``.
      theta_after: published parameters after deleting the one row ``z``, same shape.
      H: ``(K, d, d)`` (or ``(d, d)``) sum-scale Hessian of the remaining data, exact or public.
      lam: mean-scale regularisation.

    Returns:
      ``(d,)`` the reconstructed direction of ``x_z`` (unit norm; sign not identified).
    """
    lam = _validate.positive(lam=lam)
    W0, W1 = _W(theta_before), _W(theta_after)
    if W0.shape != W1.shape:
        raise _validate.ValidationError("theta_before and theta_after must have the same shape")
    Hs = np.asarray(H, np.float64)
    Hs = Hs[None] if Hs.ndim == 2 else Hs
    if Hs.shape[0] == 1 and W0.shape[1] > 1:
        Hs = np.broadcast_to(Hs, (W0.shape[1],) + Hs.shape[1:])
    G = np.einsum("kjl,lk->jk", Hs, W1 - W0) - lam * W0
    if G.shape[1] == 1:
        g = G[:, 0]
    else:
        g = np.linalg.svd(G, full_matrices=False)[0][:, 0]
    nrm = np.linalg.norm(g)
    return g / nrm if nrm > 0 else g


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two vectors (0 if either is zero)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def abs_cosine(a: Any, b: Any) -> float:
    """``|cosine(a, b)|``: similarity up to the unidentified sign."""
    return abs(cosine(a, b))


def orient(x_hat: Any, reference: Any) -> np.ndarray:
    """Flip ``x_hat`` to have a non-negative inner product with ``reference``.

    The attacker's sign rule from public knowledge, e.g. ``reference = e_bias`` when every
    record has a positive bias feature.
    """
    x = np.asarray(x_hat, np.float64)
    return -x if float(x @ np.asarray(reference, np.float64)) < 0 else x


def averaging_baseline(X_pub: Any) -> np.ndarray:
    """Bertran et al.'s "Avg" baseline: the mean of the public rows."""
    return np.mean(_validate.finite_array(X_pub=X_pub, ndim=2).astype(np.float64), axis=0)
