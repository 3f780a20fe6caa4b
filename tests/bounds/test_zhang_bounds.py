"""Zhang et al.'s bound: formula, noise figure, min(bound, 2C) rule, numerical check.

Erratum 3's noise figure, and a check that the distance bound bounds the true distance on a
strongly convex problem.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun.accounting import analytic_sigma, classic_sigma
from certun.bounds import zhang as zb
from certun.data import load_digits_3v8


def test_formula_and_the_papers_example():
    assert zb.approximation_bound(2.0, 0.5, 0.1, 0.3) == pytest.approx(2 * 2 * (1.0 + 0.1) / 0.4)
    d = zb.paper_example_sensitivity()
    assert d == pytest.approx(80040.0, rel=1e-12)  # C = 20, M = 1, lambda = 0.01, lambda_min = 0
    # docs/bibliography.md §4.4 and erratum 3: classic ~3.9e5 (invalid at epsilon = 1),
    # analytic ~2.99e5
    assert classic_sigma(1 - 1e-12, 1e-5, d) == pytest.approx(3.88e5, rel=2e-3)
    assert analytic_sigma(1.0, 1e-5, d) == pytest.approx(2.99e5, rel=2e-3)


def test_refuses_an_indefinite_damped_hessian():
    with pytest.raises(ValueError, match="lam \\+ lam_min"):
        zb.approximation_bound(1.0, 1.0, 0.01, -0.01)
    with pytest.raises(ValueError, match="lam \\+ lam_min"):
        zb.distance_bound(1.0, 1.0, 0.0, -1e-9)
    with pytest.raises(ValueError, match="hessian_lipschitz"):
        zb.approximation_bound(1.0, -1.0, 0.1, 0.0)


def test_min_rule_and_when_the_bound_can_win(rng):
    assert zb.sensitivity(3.0, 2.0) == (3.0, "bound")
    assert zb.sensitivity(5.0, 2.0) == (4.0, "2C")
    assert zb.sensitivity(None, 2.0) == (4.0, "2C")
    assert zb.sensitivity(math.inf, 2.0) == (4.0, "2C")
    assert zb.ball_sensitivity(2.5) == 5.0
    # bound < 2C  iff  M C < lambda_min, for every lambda
    for _ in range(500):
        C, M = rng.uniform(0.1, 5), rng.uniform(0, 2)
        lam_min = rng.uniform(-1, 3)
        lam = rng.uniform(max(0.0, -lam_min) + 1e-3, 5)
        below = zb.approximation_bound(C, M, lam, lam_min) < 2 * C
        assert below == zb.bound_can_beat_ball(C, M, lam_min)
    # a network (lambda_min <= 0) never beats 2C
    assert not zb.bound_can_beat_ball(1.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def logistic():
    """L2 logistic regression on digits 3-vs-8 (unit rows): M = 1/(6 sqrt 3) exactly."""
    ds = load_digits_3v8()
    X, y = jnp.asarray(ds.X_train), jnp.asarray(ds.y_train)
    kappa = 0.05

    def F(w, mask):
        loss = jnp.logaddexp(0.0, -y * (X @ w))
        return jnp.sum(mask * loss) / jnp.sum(mask) + 0.5 * kappa * w @ w

    def newton_min(mask):
        w = jnp.zeros(X.shape[1])
        for _ in range(30):
            w = w - jnp.linalg.solve(jax.hessian(F)(w, mask), jax.grad(F)(w, mask))
        return w

    n = X.shape[0]
    full = jnp.ones(n)
    mask_r = full.at[np.arange(0, n, 9)].set(0.0)  # remove ~11%
    return F, newton_min, full, mask_r, kappa


@pytest.mark.parametrize("form", [pytest.param("retained", marks=pytest.mark.slow), "forget"])
def test_distance_bound_bounds_the_true_distance(logistic, form):
    F, newton_min, full, mask_r, kappa = logistic
    M = 1.0 / (6.0 * math.sqrt(3.0))  # sup |l'''| ||x||^3 for ||x|| <= 1
    w_star = newton_min(full)
    w_r = newton_min(mask_r)
    C = float(max(jnp.linalg.norm(w_star), jnp.linalg.norm(w_r))) * 1.01
    H = jax.hessian(F)(w_star, mask_r)
    lam_min = float(jnp.linalg.eigvalsh(H)[0])
    g_r = jax.grad(F)(w_star, mask_r)
    g_full = jax.grad(F)(w_star, full)
    c = float(jnp.sum(full) / jnp.sum(mask_r))
    rhs = g_r - c * g_full if form == "forget" else g_r
    base = c * float(jnp.linalg.norm(g_full)) if form == "forget" else 0.0
    for lam in (0.0, 0.01, 0.3):
        A = H + lam * jnp.eye(H.shape[0])
        x = jnp.linalg.solve(A, rhs)
        # an inexact solve: its residual enters the bound
        x_bad = x + 1e-3 * jnp.ones_like(x)
        for xx in (x, x_bad):
            res = float(jnp.linalg.norm(A @ xx - rhs))
            w_t = w_star - xx
            w_t = w_t * min(1.0, C / float(jnp.linalg.norm(w_t)))
            true = float(jnp.linalg.norm(w_t - w_r))
            bound = zb.distance_bound(C, M, lam, lam_min, solve_residual=res, base_grad_term=base,
                                      retrained_grad_norm=float(jnp.linalg.norm(
                                          jax.grad(F)(w_r, mask_r))))
            assert true <= bound, (lam, true, bound)
            # the derivation's first line, with the true ||w* - w_r|| in place of 2C: sharper
            D = float(jnp.linalg.norm(w_star - w_r))
            sharp = zb.distance_bound(C, M, lam, lam_min, solve_residual=res, base_grad_term=base,
                                      retrained_grad_norm=0.0, distance=D)
            assert true <= sharp < bound, (lam, true, sharp)
            if lam == 0.0 and xx is x and form == "retained":  # Sekhari's M D^2 / (2 lam_min)
                assert sharp == pytest.approx(0.5 * M * D * D / lam_min, rel=1e-12)
                assert true <= sharp <= 1e3 * true
    # strongly convex (lambda_min >= kappa): the bound beats 2C when M C < lambda_min
    assert lam_min >= kappa - 1e-12
    assert zb.bound_can_beat_ball(C, M, lam_min) == (M * C < lam_min)
