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


# ------------------------------------------------------------------ networks (numpy softmax)


def _np_softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def net_problem():
    """A linear softmax 'network' theta -> X @ theta.reshape(d, K): gradients in closed form."""
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    n, d, K = 30, 4, 3
    y = rng.integers(0, K, n)
    X = rng.normal(size=(n, d)) * 0.6 + np.eye(d)[y]
    theta = rng.normal(size=d * K) * 0.3

    def logits(th, Q):
        return Q @ jnp.reshape(th, (d, K))

    return X, y, K, theta, logits


def _np_row_grads(X, y, K, theta):
    P = _np_softmax(X @ theta.reshape(X.shape[1], K))
    R = P - np.eye(K)[y]
    return np.einsum("nd,nk->ndk", X, R).reshape(len(y), -1)   # (n, d*K)


def _np_margin_grad(x, t, K, theta):
    z = x @ theta.reshape(len(x), K)
    c = int(np.argmax(np.where(np.arange(K) == t, -np.inf, z)))
    e = np.zeros(K)
    e[t], e[c] = 1.0, -1.0
    return np.outer(x, e).reshape(-1)


def test_gradient_ascent_unlearner_matches_numpy(net_problem):
    X, y, K, theta, logits = net_problem
    un = targeted.gradient_ascent_unlearner(logits, X, y, lr=0.3, steps=4)
    S = np.array([2, 5, 11])
    w = np.zeros(len(y))
    w[S] = 1.0
    th = theta.copy()
    for _ in range(4):
        th = th + 0.3 * _np_row_grads(X[S], y[S], K, th).mean(0)
    np.testing.assert_allclose(np.asarray(un(theta, w)), th, rtol=1e-10, atol=1e-12)
    with pytest.raises(targeted._validate.ValidationError, match="lr"):
        targeted.gradient_ascent_unlearner(logits, X, y, lr=0.0, steps=1)


def test_network_scores_and_influence_match_closed_form(net_problem):
    X, y, K, theta, logits = net_problem
    G = _np_row_grads(X, y, K, theta)
    x_t, t = X[0] * 0.9, int(y[0])
    ref = G @ _np_margin_grad(x_t, t, K, theta)
    np.testing.assert_allclose(targeted.network_margin_scores(logits, theta, X, y, x_t, t), ref,
                               rtol=1e-9, atol=1e-12)
    Xr = X[:7] + 0.1
    pred = (Xr @ theta.reshape(-1, K)).argmax(1)
    Gm = np.stack([_np_margin_grad(Xr[r], pred[r], K, theta) for r in range(len(Xr))])
    Z = Xr @ theta.reshape(-1, K)
    M = np.array([Z[r, pred[r]] - np.max(np.delete(Z[r], pred[r])) for r in range(len(Xr))])
    S = np.array([1, 4, 9])
    per_row = np.max(np.maximum(-(G[S] @ Gm.T), 0) / M[None], axis=1)
    np.testing.assert_allclose(targeted.network_request_influence(logits, theta, X, y, S, Xr),
                               per_row, rtol=1e-9)
    batch = np.max(np.maximum(-(Gm @ G[S].mean(0)), 0))
    assert targeted.batch_request_influence(logits, theta, X, y, S, Xr) == pytest.approx(
        batch, rel=1e-9)


def test_greedy_lookahead_picks_the_true_best_first_row(net_problem):
    """With every row as a candidate, the first choice is the brute-force best single row."""
    import jax.numpy as jnp

    X, y, K, theta, logits = net_problem
    un = targeted.gradient_ascent_unlearner(logits, X, y, lr=0.5, steps=3)
    x_t, t = X[3] * 0.8, int(y[3])

    def margin(th):
        z = np.asarray(logits(jnp.asarray(th), x_t[None]))[0]
        return z[t] - np.max(np.delete(z, t))

    brute = []
    for j in range(len(y)):
        w = np.zeros(len(y))
        w[j] = 1.0
        brute.append(margin(np.asarray(un(theta, w))))
    S = targeted.greedy_deletions(logits, un, theta, X, y, x_t, t, budget=2,
                                  lookahead=len(y))
    assert S[0] == int(np.argmin(brute)) and len(set(S.tolist())) == 2
    # first-order greedy: the first row is the most negative closed-form score
    S1 = targeted.greedy_deletions(logits, un, theta, X, y, x_t, t, budget=1)
    ref = _np_row_grads(X, y, K, theta) @ _np_margin_grad(x_t, t, K, theta)
    assert S1[0] == int(np.argmin(ref))
