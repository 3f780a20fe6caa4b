"""Convex models against scikit-learn and dense derivatives (float64)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from certun import scale
from certun.data import load_digits
from certun.models import glm, multinomial
from certun.results import RESULTS

SK_TOL = 1e-6  # acceptance: logistic regression matches scikit-learn to 1e-6


def _sk(**kw):
    return LogisticRegression(fit_intercept=False, tol=1e-13, max_iter=100_000, **kw)


@pytest.mark.parametrize("lam", [1e-3, 1e-2, 1e-1])
def test_binary_logistic_matches_sklearn(digits38, lam):
    X, y = digits38.X_train, digits38.y_train
    n = X.shape[0]
    r = glm.fit("logistic", X, y, lam, tol=1e-12)
    assert int(r.result) == RESULTS.successful and float(r.grad_norm) <= 1e-12
    clf = _sk(C=scale.sklearn_C(lam, n)).fit(X, y)
    np.testing.assert_allclose(np.asarray(r.params[:, 0]), clf.coef_.ravel(), atol=SK_TOL)


def test_one_vs_rest_matches_sklearn_per_head():
    ds = load_digits()
    X, y = ds.X_train, ds.y_train
    lam = 1e-2
    Y = glm.one_vs_rest_targets(y, 10)
    r = glm.fit("logistic", X, Y, lam, tol=1e-12)
    for k in (0, 3, 9):
        clf = _sk(C=scale.sklearn_C(lam, X.shape[0])).fit(X, np.where(y == k, 1, -1))
        np.testing.assert_allclose(np.asarray(r.params[:, k]), clf.coef_.ravel(), atol=SK_TOL)


def test_multinomial_matches_sklearn():
    ds = load_digits()
    X, y = ds.X_train, ds.y_train
    lam = 1e-2
    r = multinomial.fit(X, y, 10, lam, tol=1e-11)
    assert int(r.result) == RESULTS.successful
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = _sk(C=scale.sklearn_C(lam, X.shape[0])).fit(X, y)
    np.testing.assert_allclose(np.asarray(r.params), clf.coef_.T, atol=SK_TOL)
    assert multinomial.accuracy(r.params, ds.X_test, ds.y_test) == pytest.approx(
        clf.score(ds.X_test, ds.y_test), abs=1e-12)


def test_multinomial_derivatives_are_exact(rng):
    X = jnp.asarray(rng.normal(size=(40, 5)))
    y = jnp.asarray(rng.integers(0, 3, 40))
    W = jnp.asarray(rng.normal(size=(5, 3)))
    V = jnp.asarray(rng.normal(size=(5, 3)))
    b = jnp.asarray(rng.normal(size=(5, 3)))
    f = lambda w: multinomial.objective(w, X, y, 0.1, b)  # noqa: E731
    np.testing.assert_allclose(multinomial.gradient_mean(W, X, y, 0.1, b), jax.grad(f)(W),
                               atol=1e-13)
    H = jax.hessian(f)(W).reshape(15, 15)
    np.testing.assert_allclose(multinomial.hessian_mean(W, X, 0.1), H, atol=1e-13)
    np.testing.assert_allclose(multinomial.hvp_mean(W, V, X, 0.1).reshape(-1), H @ V.reshape(-1),
                               atol=1e-13)


def test_ridge_matches_sklearn(rng):
    X = rng.normal(size=(120, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.normal(size=120)
    lam = 0.05
    r = glm.fit("squared", X, y, lam, tol=1e-13)
    ref = Ridge(alpha=X.shape[0] * lam, fit_intercept=False, tol=1e-15).fit(X, y).coef_
    np.testing.assert_allclose(np.asarray(r.params[:, 0]), ref, atol=1e-12)
    assert int(r.num_steps) == 1  # one Newton step solves a quadratic exactly


@pytest.mark.parametrize("loss", ["logistic", "squared"])
def test_sum_and_mean_scale_derivatives(rng, loss):
    n, d, K = 30, 4, 2
    X = jnp.asarray(rng.normal(size=(n, d)) / 2)
    Y = jnp.asarray(np.sign(rng.normal(size=(n, K))))
    W = jnp.asarray(rng.normal(size=(d, K)))
    b = jnp.asarray(rng.normal(size=(d, K)))
    mask = jnp.asarray((rng.random(n) > 0.3).astype(float))
    L = glm.get_loss(loss)
    m = float(mask.sum())
    J = lambda w: glm.objective(L, w, X, Y, 0.3, b, mask)  # noqa: E731
    # sum scale = n * mean scale (certun.scale conversion)
    g_sum = glm.gradient_sum(L, W, X, Y, 0.3, b, mask)
    np.testing.assert_allclose(g_sum, scale.mean_to_sum_gradient(jax.grad(J)(W), m), atol=1e-12)
    np.testing.assert_allclose(glm.gradient_mean(L, W, X, Y, 0.3, b, mask), jax.grad(J)(W),
                               atol=1e-13)
    H = jax.hessian(J)(W).reshape(d * K, d * K) * m
    Hb = glm.hessian_sum(L, W, X, Y, 0.3, mask)
    for k in range(K):
        np.testing.assert_allclose(Hb[k], H[k::K, k::K], atol=1e-11)
    V = jnp.asarray(rng.normal(size=(d, K)))
    np.testing.assert_allclose(glm.hvp_sum(L, W, V, X, Y, 0.3, mask).reshape(-1),
                               H @ V.reshape(-1), atol=1e-11)


def test_mask_equals_dropping_rows(digits38):
    X, y = digits38.X_train, digits38.y_train
    keep = np.ones(len(y))
    keep[[3, 17, 40]] = 0
    a = glm.fit("logistic", X, y, 1e-2, mask=jnp.asarray(keep), tol=1e-12).params
    b = glm.fit("logistic", X[keep > 0], y[keep > 0], 1e-2, tol=1e-12).params
    np.testing.assert_allclose(a, b, atol=1e-11)


def test_perturbed_optimum_and_lbfgs_agree(digits38):
    X, y = digits38.X_train, digits38.y_train
    b = jnp.asarray(np.random.default_rng(1).normal(size=(X.shape[1], 1)))
    newton = glm.fit("logistic", X, y, 1e-2, b=b, tol=1e-12)
    lbfgs = glm.fit("logistic", X, y, 1e-2, b=b, tol=1e-9, method="lbfgs")
    assert int(lbfgs.result) == RESULTS.successful
    np.testing.assert_allclose(lbfgs.params, newton.params, atol=1e-7)
    # at the optimum the sum-scale gradient including b vanishes
    g = glm.gradient_sum(glm.LOGISTIC, newton.params, jnp.asarray(X), jnp.asarray(y)[:, None],
                         1e-2, b)
    assert float(jnp.linalg.norm(g)) < 1e-9


def test_loss_constants_are_correct():
    a = np.linspace(-20, 20, 200001)
    s = 1 / (1 + np.exp(-a))
    d2 = s * (1 - s)
    d3 = d2 * (1 - 2 * s)
    assert np.abs(np.asarray(glm.LOGISTIC.d2(jnp.asarray(a), 1.0)) - d2).max() < 1e-15
    assert d2.max() <= glm.LOGISTIC.d2_bound + 1e-15
    assert abs(np.abs(d3).max() - glm.LOGISTIC.gamma) < 1e-9  # 1/(6 sqrt 3)
    assert glm.LOGISTIC.gamma <= glm.LOGISTIC.gamma_paper
    assert np.abs(np.asarray(glm.LOGISTIC.d1(jnp.asarray(a), 1.0))).max() <= glm.LOGISTIC.d1_bound


def test_predict_accepts_the_published_one_head_form():
    """``(d,)`` (what unlearners publish) and ``(d, 1)`` predict alike; K heads use argmax."""
    rng = np.random.default_rng(0)
    X, w = rng.normal(size=(30, 4)), rng.normal(size=4)
    want = np.where(X @ w >= 0, 1.0, -1.0)
    for W in (w, w[:, None]):
        np.testing.assert_array_equal(np.asarray(glm.predict("logistic", W, X)), want)
        np.testing.assert_allclose(np.asarray(glm.predict("squared", W, X)), X @ w, rtol=1e-12)
    W3 = rng.normal(size=(4, 3))
    np.testing.assert_array_equal(np.asarray(glm.predict("logistic", W3, X)),
                                  np.argmax(X @ W3, axis=1))
    assert glm.accuracy("logistic", w, X, want) == 1.0
