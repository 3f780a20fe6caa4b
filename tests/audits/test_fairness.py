"""certun.audits.fairness: gaps against direct counts, gap influence against exact refits."""

from __future__ import annotations

import numpy as np
import pytest

from certun.audits import fairness

LAM = 0.01


def _fit(X, y, mask):
    w = np.zeros(X.shape[1])
    n_m = mask.sum()
    for _ in range(40):
        s = 1.0 / (1.0 + np.exp(y * (X @ w)))
        g = X.T @ (mask * -y * s) + LAM * n_m * w
        H = (X * (mask * s * (1 - s))[:, None]).T @ X + LAM * n_m * np.eye(X.shape[1])
        w = w - np.linalg.solve(H, g)
    return w


def test_gaps_against_counts():
    pred = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    grp = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    y = np.array([1, -1, 1, -1, 1, -1, 1, -1])
    assert fairness.demographic_parity_gap(pred, grp) == pytest.approx(0.5 - 0.25)
    # TPR: group1 1/2, group0 1/2 -> 0; FPR: group1 1/2, group0 0/2 -> 0.5
    assert fairness.equalized_odds_gap(pred, y, grp) == pytest.approx(0.5)
    with pytest.raises(Exception, match="group"):
        fairness.demographic_parity_gap(pred, np.ones(8))


def test_gap_influence_matches_refits_and_the_attack_raises_the_gap():
    rng = np.random.default_rng(0)
    n, d = 150, 4
    A = rng.integers(0, 2, n)
    X = np.c_[rng.normal(size=(n, d - 1)) + 0.5 * A[:, None], np.ones(n)]
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=n) > 0.1, 1.0, -1.0)
    w = _fit(X, y, np.ones(n))

    def G(wv):
        s = 1 / (1 + np.exp(-(X @ wv)))
        return s[A == 1].mean() - s[A == 0].mean()

    infl = fairness.gap_influence(w, X, y, LAM, X, A)
    exact = []
    for i in range(0, n, 15):
        m = np.ones(n)
        m[i] = 0
        exact.append(G(_fit(X, y, m)) - G(w))
    np.testing.assert_allclose(infl[::15], exact, rtol=0.15, atol=0.05 * np.abs(exact).max())
    S = fairness.craft_fairness_deletions(infl, G(w), 8)
    m = np.ones(n)
    m[S] = 0
    assert abs(G(_fit(X, y, m))) > abs(G(w)) + 0.005
