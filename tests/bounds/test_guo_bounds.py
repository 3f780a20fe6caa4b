"""Guo et al.'s residual bounds, checked step by step on random removals (float64, NumPy oracle).

Independent of the unlearner: each case trains the perturbed objective exactly,
takes the Newton removal step with a dense solve, and evaluates every quantity of
the proof (``certun.bounds.guo.remainder_chain``). See proofs/guo2020_residual_bounds.md.
"""

import numpy as np
import pytest
from scipy.special import expit

from certun.bounds import guo as gb

GAMMA = 0.25  # Guo et al.'s constant for the logistic loss (>= the exact 1/(6 sqrt 3))
C = 1.0


def sig(a):
    return expit(a)


def d1(a, y):
    return -y * sig(-y * a)


def d2(a, y):
    return sig(a) * sig(-a)


def grad_sum(w, X, y, lam, b):
    return X.T @ d1(X @ w, y) + lam * X.shape[0] * w + b


def hess_sum(w, X, y, lam):
    return (X * d2(X @ w, y)[:, None]).T @ X + lam * X.shape[0] * np.eye(X.shape[1])


def train(X, y, lam, b):
    w = np.zeros(X.shape[1])
    for _ in range(100):
        g = grad_sum(w, X, y, lam, b)
        if np.linalg.norm(g) < 1e-11 * X.shape[0]:
            break
        step = np.linalg.solve(hess_sum(w, X, y, lam), g)
        t = 1.0
        f = lambda v: np.sum(np.logaddexp(0, -y * (X @ v))) + lam * X.shape[0] / 2 * v @ v + b @ v  # noqa: E731
        while f(w - t * step) > f(w) - 1e-4 * t * g @ step and t > 1e-10:
            t /= 2
        w = w - t * step
    return w


def make_case(rng, sigma):
    n = int(rng.integers(40, 250))
    d = int(rng.integers(2, 16))
    lam = float(rng.choice([1e-3, 1e-2, 1e-1]))
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X *= rng.uniform(0.5, 1.0, size=(n, 1))  # rows with norm <= 1
    teacher = rng.normal(size=d) * 3
    y = np.sign(X @ teacher + 0.3 * rng.normal(size=n))
    y[y == 0] = 1
    b = rng.normal(size=d) * sigma
    return X, y, lam, b


def removal_case(rng, sigma, m):
    X, y, lam, b = make_case(rng, sigma)
    n = X.shape[0]
    w = train(X, y, lam, b)
    r0 = grad_sum(w, X, y, lam, b)
    U = rng.choice(n, size=m, replace=False)
    keep = np.setdiff1d(np.arange(n), U)
    Delta = X[U].T @ d1(X[U] @ w, y[U]) + m * lam * w
    Xr, yr = X[keep], y[keep]
    H = hess_sum(w, Xr, yr, lam)
    delta = np.linalg.solve(H, Delta)
    w_new = w + delta
    true_res = np.linalg.norm(grad_sum(w_new, Xr, yr, lam, b))
    chain = gb.remainder_chain(d1, d2, GAMMA, C, lam, Xr, yr, w, delta, Delta, n, m,
                               float(np.linalg.norm(b)), float(np.linalg.norm(r0)))
    return chain, true_res, float(np.linalg.norm(r0)), n, lam


SIGMAS = [0.1, 1.0, 10.0, 100.0]


def test_remainder_chain_over_random_removals():
    rng = np.random.default_rng(2020)
    count, ratios = 0, []
    for trial in range(64):
        for m in (1, 1, 3, 10):
            sigma = SIGMAS[trial % 4]
            ch, true_res, r0, n, lam = removal_case(rng, sigma, m)
            tol = 1e-9 * max(1.0, ch.data_dependent)
            # the residual decomposition r_new = r0 + rho (s = 0 for an exact solve)
            assert true_res <= r0 + ch.rho + tol
            assert abs(true_res - ch.rho) <= r0 + tol
            # every intermediate quantity of the proof, in order
            assert ch.rho <= ch.q1 + tol
            assert ch.q1 <= ch.q2 + tol
            assert ch.q2 <= ch.q3 + tol
            assert ch.q3 <= ch.data_dependent + tol
            assert true_res <= r0 + ch.data_dependent + tol
            assert ch.data_dependent <= ch.q5 + tol
            assert ch.q5 <= ch.q6 * (1 + 1e-12) + tol
            assert ch.q6 <= ch.worst_case * (1 + 1e-12)
            ratios.append(ch.data_dependent / max(true_res, 1e-300))
            count += 1
    assert count >= 200
    assert min(ratios) >= 1.0


def test_printed_worst_case_fails_at_large_sigma():
    # docs/bibliography.md erratum 1: with a large perturbation the printed
    # 4 gamma C^2/(lambda^2(n-1))
    # falls below the data-dependent bound (and the true residual can exceed it), while the
    # corrected worst case always stays above.
    rng = np.random.default_rng(7)
    below = 0
    for _ in range(30):
        ch, true_res, r0, n, lam = removal_case(rng, 1e3, 1)
        assert ch.data_dependent <= ch.worst_case
        below += ch.worst_case_printed < ch.data_dependent
    assert below >= 25


def test_worst_case_formulas():
    # Guo et al. MNIST 3v8 (lambda 1e-3, gamma 1/4, C 1, n 11982): printed bound 83.47
    assert gb.worst_case_bound_printed(0.25, 1.0, 1e-3, 11982, 1) == pytest.approx(83.47, abs=0.01)
    # batch of 10: 8353
    assert gb.worst_case_bound_printed(0.25, 1.0, 1e-3, 11982, 10) == pytest.approx(8353, rel=1e-3)
    # the corrected bound reduces to the printed one without perturbation or residual
    assert gb.worst_case_bound(0.25, 1.0, 1e-3, 11982, 3) == pytest.approx(
        gb.worst_case_bound_printed(0.25, 1.0, 1e-3, 11982, 3), rel=1e-14)
    assert gb.worst_case_bound(0.25, 1.0, 1e-3, 100, 1, b_norm=50.0) > gb.worst_case_bound(
        0.25, 1.0, 1e-3, 100, 1)
    assert 10.0 <= gb.spectral_cap(30.0, 100) <= 10.0 * (1 + 1e-15)
    assert gb.spectral_cap(3.0, 100) == 3.0
    with pytest.raises(ValueError):
        gb.worst_case_bound(0.25, 1.0, 1e-3, 5, 5)


def test_weight_and_step_norm_bounds_hold():
    rng = np.random.default_rng(3)
    for _ in range(20):
        X, y, lam, b = make_case(rng, 5.0)
        w = train(X, y, lam, b)
        n = X.shape[0]
        r = np.linalg.norm(grad_sum(w, X, y, lam, b))
        b_norm = np.linalg.norm(b)
        assert lam * np.linalg.norm(w) <= gb.weight_norm_bound(C, lam, n, b_norm, r) + 1e-12
        Delta = X[:1].T @ d1(X[:1] @ w, y[:1]) + lam * w
        delta = np.linalg.solve(hess_sum(w, X[1:], y[1:], lam), Delta)
        assert np.linalg.norm(delta) <= gb.step_norm_bound(C, lam, n, 1, b_norm, r) + 1e-12
