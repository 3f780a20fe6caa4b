"""certun.audits.sparsity: pruning masks, masked fits (scikit-learn), Newton step, metrics."""

from __future__ import annotations

import numpy as np

from certun.audits import sparsity as S


def _problem():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    X = rng.normal(size=(90, 4)) * 0.4 + np.eye(4)[y]
    return X, y


def test_mask_and_masked_fit_against_sklearn():
    from sklearn.linear_model import LogisticRegression

    X, y = _problem()
    lam = 0.05
    W = S.fit_masked(X, y, 3, lam)
    for k in range(3):  # sklearn: C = 1 / (lam n) on the sum loss, no intercept
        ref = LogisticRegression(C=1 / (lam * 90), fit_intercept=False, tol=1e-12,
                                 max_iter=10_000).fit(X, (y == k).astype(int))
        np.testing.assert_allclose(W[:, k], ref.coef_[0], rtol=1e-5, atol=1e-7)
    M = S.magnitude_mask(W, 0.5)
    assert M.sum() == 6 and np.all(np.abs(W[M == 1]).min() >= np.abs(W[M == 0]).max())
    Wm = S.fit_masked(X, y, 3, lam, M)
    assert np.all(Wm[M == 0] == 0)
    # one Newton step from the masked optimum on fewer rows approaches the masked refit
    Wr = S.fit_masked(X[:80], y[:80], 3, lam, M)
    Wn = S.newton_step(Wm, X[:80], y[:80], lam, M)
    assert np.linalg.norm(Wn - Wr) < 0.1 * np.linalg.norm(Wm - Wr)


def test_metrics():
    X, y = _problem()
    W = S.fit_masked(X, y, 3, 0.05)
    m = S.jia_metrics(W, X[:60], y[:60], X[60:70], y[60:70], X[70:], y[70:])
    assert m["UA"] == 1 - S.accuracy(W, X[60:70], y[60:70])
    assert 0.0 <= m["MIA"] <= 1.0 and m["RA"] > 0.8
