"""certun.audits.verification: SGD transcripts, reproduction and forging against numpy."""

from __future__ import annotations

import numpy as np

from certun.audits import verification as V

LR, LAM = 0.5, 1e-3


def _np_step(w, Xb, yb):
    s = 1 / (1 + np.exp(yb * (Xb @ w)))
    return w - LR * (Xb.T @ (-yb * s) / len(yb) + LAM * w)


def _problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)) / 2
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    return X, y, V.batch_schedule(40, batch_size=8, epochs=2, seed=0)


def test_transcript_reproduces_and_forging_errors_are_the_substitution_effect():
    X, y, B = _problem()
    ws = V.sgd_transcript(X, y, B, lr=LR, lam=LAM)
    w = np.zeros(3)
    for t, b in enumerate(B):
        w = _np_step(w, X[b], y[b])
        np.testing.assert_allclose(ws[t + 1], w, rtol=1e-12, atol=1e-14)
    e = V.reproduction_errors(X, y, ws, B, lr=LR, lam=LAM)
    assert e.max() < 1e-12
    forget = np.array([3, 17])
    retain = np.setdiff1d(np.arange(40), forget)
    nb = V.nearest_same_class(X, y, forget, retain)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    for f, m in zip(forget, nb, strict=True):
        same = retain[y[retain] == y[f]]
        assert m == same[np.argmax(U[same] @ U[f])]
    Bf = V.substitute(B, forget, nb)
    assert not np.isin(Bf, forget).any() and (Bf[~np.isin(B, forget)] == B[~np.isin(B, forget)]
                                             ).all()
    wf = V.forge_transcript(X, y, ws, Bf, lr=LR, lam=LAM)
    ef = V.reproduction_errors(X, y, wf, Bf, lr=LR, lam=LAM)
    # recorded theta'_{t+1} = step(theta_t, B'_t); the verifier steps from theta'_t
    want = [np.linalg.norm(_np_step(ws[t], X[b], y[b]) - _np_step(wf[t], X[b], y[b]))
            for t, b in enumerate(Bf)]
    np.testing.assert_allclose(ef, want, rtol=1e-9, atol=1e-14)
    v = V.reproduction_verify(ef, Bf, forget, tau=ef.max())
    assert v["passes"] and not V.reproduction_verify(e, B, forget, 1.0)["passes"]


def test_backdoor_asr_counts():
    w = np.array([1.0, 0.0])
    assert V.backdoor_asr(w, np.array([[1.0, 0], [-1.0, 0], [2.0, 1]]), 1.0) == 2 / 3


def test_noisy_transcript_forging_noise_and_calibrated_tolerance():
    """The simulated hardware noise is one extra SGD step on the named row (numpy)."""
    X, y, B = _problem()
    rows = np.arange(len(B)) % 40
    ws = V.sgd_transcript(X, y, B, lr=LR, lam=LAM, noise_rows=rows, noise_lr=0.05)
    w = np.zeros(3)
    for t, b in enumerate(B):
        w = _np_step(w, X[b], y[b])
        s = 1 / (1 + np.exp(y[rows[t]] * (X[rows[t]] @ w)))
        w = w - 0.05 * (X[rows[t]] * (-y[rows[t]] * s) + LAM * w)
        np.testing.assert_allclose(ws[t + 1], w, rtol=1e-12, atol=1e-14)
    e = V.reproduction_errors(X, y, ws, B, lr=LR, lam=LAM)
    assert e.min() > 0
    assert V.calibrate_tolerance([e, e / 2], factor=1.5) == 1.5 * e.max()
    for bad in ({"factor": 0.5}, {"factor": float("nan")}):
        with np.testing.assert_raises(V._validate.ValidationError):
            V.calibrate_tolerance(e, **bad)
    with np.testing.assert_raises(V._validate.ValidationError):
        V.sgd_transcript(X, y, B, lr=LR, lam=LAM, noise_lr=0.1)
    # forging: unchanged batches carry the noise, rewritten ones are the plain forged step
    forged = B.copy()
    forged[0, 0] = (B[0, 0] + 1) % 40
    wf = V.forge_transcript(X, y, ws, forged, lr=LR, lam=LAM, original_batches=B,
                            noise_rows=rows, noise_lr=0.05)
    np.testing.assert_allclose(wf[1], _np_step(ws[0], X[forged[0]], y[forged[0]]), rtol=1e-12)
    w2 = _np_step(ws[1], X[B[1]], y[B[1]])
    s = 1 / (1 + np.exp(y[rows[1]] * (X[rows[1]] @ w2)))
    w2 = w2 - 0.05 * (X[rows[1]] * (-y[rows[1]] * s) + LAM * w2)
    np.testing.assert_allclose(wf[2], w2, rtol=1e-12)
