"""certun.audits.targeted: the influence relaxation against exact refits (numpy Newton)."""

from __future__ import annotations

import numpy as np
import pytest

from certun.audits import stats, targeted

LAM = 0.05


def _fit(X, y, K, mask):
    """Independent reference: per-head Newton on sum_i m_i l + (lam n_m / 2)||w||^2."""
    n_m = mask.sum()
    W = np.zeros((X.shape[1], K))
    for k in range(K):
        yk = np.where(y == k, 1.0, -1.0)
        w = np.zeros(X.shape[1])
        for _ in range(50):
            s = 1.0 / (1.0 + np.exp(yk * (X @ w)))
            g = X.T @ (mask * -yk * s) + LAM * n_m * w
            H = (X * (mask * s * (1 - s))[:, None]).T @ X + LAM * n_m * np.eye(X.shape[1])
            w = w - np.linalg.solve(H, g)
        W[:, k] = w
    return W


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    n, d, K = 120, 5, 3
    y = rng.integers(0, K, n)
    X = rng.normal(size=(n, d)) * 0.5 + np.eye(d)[y % d]
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    W = _fit(X, y, K, np.ones(n))
    return X, y, K, W, targeted.influence_model(W, X, y, lam=LAM)


def test_margin_influence_matches_exact_refits(problem):
    """First-order margin change of deleting one row vs refitting without it."""
    X, y, K, W, model = problem
    x = X[3] * 0.9
    pred = margin_influence = targeted.margin_influence(model, x, 0, 1)
    exact = []
    for i in range(0, 120, 10):
        m = np.ones(120)
        m[i] = 0
        W2 = _fit(X, y, K, m)
        exact.append((x @ W2[:, 0] - x @ W2[:, 1]) - (x @ W[:, 0] - x @ W[:, 1]))
    exact = np.array(exact)
    np.testing.assert_allclose(pred[::10], exact, rtol=0.1, atol=0.02 * np.abs(exact).max())
    assert np.sign(margin_influence[::10]).tolist() == np.sign(exact).tolist()


def test_crafted_deletions_lower_the_margin_more_than_random(problem):
    X, y, K, W, model = problem
    x, yt = X[7], int(y[7])
    S = targeted.craft_deletions(model, x, yt, budget=6)
    assert len(set(S.tolist())) == 6
    c = [k for k in np.argsort(-(x @ W)) if k != yt][0]

    def margin_after(idx):
        m = np.ones(120)
        m[idx] = 0
        W2 = _fit(X, y, K, m)
        s = x @ W2
        return s[yt] - np.max(np.delete(s, yt))

    rnd = np.random.default_rng(1).choice(120, 6, replace=False)
    assert margin_after(S) < margin_after(rnd) - 0.05
    del c


def test_request_influence_is_the_relative_margin_drop(problem):
    """request_influence equals max_r of -margin_influence / margin, computed row by row."""
    X, y, K, W, model = problem
    R = X[:9] * 0.8
    req = np.array([2, 50, 77])
    got = targeted.request_influence(model, req, R)
    S = R @ W
    want = np.zeros(3)
    for r in range(9):
        p, c = np.argsort(-S[r])[:2]
        mi = targeted.margin_influence(model, R[r], int(p), int(c))[req]
        want = np.maximum(want, np.maximum(-mi, 0) / (S[r, p] - S[r, c]))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    thr = targeted.influence_threshold(got, false_positive_rate=0.4)
    acc, disc = targeted.screen(model, req, R, thr)
    assert sorted([*acc, *disc]) == sorted(req) and len(disc) >= 1


def test_mean_ci_matches_scipy():
    import scipy.stats

    v = np.array([0.2, 0.5, 0.4, 0.3, 0.6])
    r = stats.mean_ci(v)
    lo, hi = scipy.stats.t.interval(0.95, 4, loc=v.mean(), scale=scipy.stats.sem(v))
    np.testing.assert_allclose(r["ci"], [lo, hi], rtol=1e-12)
    assert r["excludes_zero"] and not stats.mean_ci([-1.0, 1.0])["excludes_zero"]
    with pytest.raises(Exception, match="values"):
        stats.mean_ci([1.0])
