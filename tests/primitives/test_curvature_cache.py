"""The curvature cache (factor once; downdate, uprate, fold, solve) against dense solves."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from certun.primitives import curvature_cache as cc
from certun.results import RESULTS

LAM, N, D, K = 0.05, 60, 8, 2


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, D)) / np.sqrt(D)
    H = rng.uniform(0.05, 0.25, size=(N, K))
    curv = np.einsum("ik,ij,il->kjl", H, X, X)
    return X, H, curv, rng.normal(size=(D, K))


def _dense(curv, X, H, rows, n):
    T = curv - np.einsum("ik,ij,il->kjl", H[rows], X[rows], X[rows]) + LAM * n * np.eye(D)
    return T


@pytest.mark.parametrize("method", cc.METHODS)
def test_downdate_fold_uprate_solve_match_dense(problem, method):
    X, H, curv, V = problem
    c = cc.init(jnp.asarray(curv), LAM, N, method=method, max_rank=8)
    sol = cc.solve(c, jnp.asarray(V), LAM, N)
    ref = np.stack([np.linalg.solve(curv[k] + LAM * N * np.eye(D), V[:, k]) for k in range(K)], 1)
    np.testing.assert_allclose(np.asarray(sol.value), ref, rtol=1e-11, atol=1e-12)
    assert int(sol.result) == RESULTS.successful and float(sol.residual) < 1e-12
    rows = [3, 9, 17]
    n = N - len(rows)
    c2, st = cc.downdate(c, jnp.asarray(X[rows]), jnp.asarray(H[rows]), LAM, n, kb=8)
    assert int(st.result) == RESULTS.successful and int(c2.filled) == 3
    terms = cc.neumann_terms_for(N, n)[0] if method == "cholesky" else 0
    sol = cc.solve(c2, jnp.asarray(V), LAM, n, neumann_terms=terms)
    T = _dense(curv, X, H, rows, n)
    ref = np.stack([np.linalg.solve(T[k], V[:, k]) for k in range(K)], 1)
    np.testing.assert_allclose(np.asarray(sol.value), ref, rtol=1e-10, atol=1e-12)
    # the residual it reports is the one a dense product measures
    dense_res = np.linalg.norm(np.einsum("kde,ek->dk", T, np.asarray(sol.value)) - V)
    assert float(sol.residual) == pytest.approx(dense_res, rel=1e-6, abs=1e-14)
    c3, st = cc.fold(c2, LAM, n)
    assert int(c3.filled) == 0 and int(st.result) == RESULTS.successful
    sol3 = cc.solve(c3, jnp.asarray(V), LAM, n, neumann_terms=terms)
    np.testing.assert_allclose(np.asarray(sol3.value), ref, rtol=1e-10, atol=1e-12)
    c4, st = cc.uprate(c3, jnp.asarray(X[rows]), jnp.asarray(H[rows]), LAM, N)
    sol4 = cc.solve(c4, jnp.asarray(V), LAM, N)
    ref0 = np.stack([np.linalg.solve(curv[k] + LAM * N * np.eye(D), V[:, k]) for k in range(K)],
                    1)
    np.testing.assert_allclose(np.asarray(sol4.value), ref0, rtol=1e-10, atol=1e-12)


def test_a_downdate_past_definiteness_is_reported(problem):
    X, H, curv, _ = problem
    c = cc.init(jnp.asarray(curv), LAM, N, method="eigh", max_rank=8)
    big = np.full((2, K), 1e6)
    _, st = cc.downdate(c, jnp.asarray(X[:2]), jnp.asarray(big), LAM, N - 2, kb=8)
    assert int(st.result) in (RESULTS.not_positive_definite, RESULTS.nonfinite)
