"""certun.audits.poisoning: gradients against numpy, gradient matching's constraints and gain."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from certun.audits import poisoning


def _phi(x):
    return (x - 0.5) / 4.0


def test_ovr_loss_grad_matches_numpy():
    rng = np.random.default_rng(0)
    W, F, lab = rng.normal(size=(4, 3)), rng.normal(size=(6, 4)), np.array([0, 1, 2, 2, 1, 0])
    Y = np.where(np.arange(3)[None] == lab[:, None], 1.0, -1.0)
    s = 1.0 / (1.0 + np.exp(Y * (F @ W)))
    want = F.T @ (-Y * s)
    got = poisoning.ovr_loss_grad(jnp.asarray(W), jnp.asarray(F), jnp.asarray(lab))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)


def _cos(W, X, lab, xt, yt):
    g = np.asarray(poisoning.ovr_loss_grad(jnp.asarray(W), jnp.asarray(_phi(X)),
                                           jnp.asarray(lab)))
    gt = np.asarray(poisoning.ovr_loss_grad(jnp.asarray(W), jnp.asarray(_phi(xt[None])),
                                            jnp.asarray([yt])))
    return float(np.sum(g * gt) / np.linalg.norm(g) / np.linalg.norm(gt))


def test_gradient_matching_respects_the_ball_and_raises_alignment():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(8, 3))
    B, lab, xt = rng.uniform(size=(5, 8)), np.full(5, 1), rng.uniform(size=8)
    P = poisoning.gradient_matching(W, B, lab, xt, 1, feature_map=_phi, eps=0.2, steps=60,
                                    restarts=1, key=jax.random.key(0))
    assert np.all(np.abs(P - B) <= 0.2 + 1e-12) and P.min() >= 0.0 and P.max() <= 1.0
    assert _cos(W, P, lab, xt, 1) > _cos(W, B, lab, xt, 1) + 0.05
