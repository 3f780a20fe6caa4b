"""unit_row_scale: rows whose norm is <= 1 in every summation order (proofs/unit_rows.md)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from certun import _validate
from certun.data import normalize_rows, unit_row_factor, unit_row_scale

U64 = 2.0 ** -53
U32 = 2.0 ** -24


def _hard_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Rows of dimension ``d`` that make naive normalisation land above 1."""
    k = n // 5
    parts = []
    # columns of an orthogonal matrix from eigh (the worst-case canary is one)
    m = min(d, k)
    A = rng.standard_normal((d, d)) if d <= 800 else None
    if A is not None:
        _, Q = np.linalg.eigh(A + A.T)
        parts.append(Q.T[:m])
    else:  # eigh of a d x d matrix is too slow at d = 4,096: rows of a Householder matrix
        v = rng.standard_normal(d)
        v /= np.linalg.norm(v)
        H = np.eye(d)[:m] - 2.0 * v[:m, None] * v[None, :]
        parts.append(H)
    # near-axis rows: one big entry, tiny others
    ax = np.zeros((k, d))
    ax[np.arange(k), rng.integers(0, d, k)] = 1.0
    ax += rng.standard_normal((k, d)) * 10.0 ** rng.uniform(-17, -7, (k, 1))
    parts.append(ax)
    # huge and tiny magnitudes
    g = rng.standard_normal((k, d))
    parts.append(g * 10.0 ** rng.uniform(-300, 300, (k, 1)))
    # heavy-tailed entries within a row
    parts.append(rng.standard_cauchy((k, d)))
    rest = n - sum(p.shape[0] for p in parts)
    parts.append(rng.standard_normal((rest, d)))
    return np.concatenate(parts)


def _norms_every_order(Z: np.ndarray) -> dict[str, np.ndarray]:
    """The computed norm of each row of ``Z`` (its own dtype) in several summation orders."""
    sq = Z * Z
    srt = np.sort(sq, axis=1)
    out = {
        "np.linalg.norm": np.linalg.norm(Z, axis=1),
        "pairwise np.sum": np.sqrt(np.sum(sq, axis=1)),
        "ascending": np.sqrt(np.cumsum(srt, axis=1)[:, -1]),     # sequential, small first
        "descending": np.sqrt(np.cumsum(srt[:, ::-1], axis=1)[:, -1]),
        "jnp.linalg.norm": np.asarray(jnp.linalg.norm(jnp.asarray(Z), axis=1)),
        "einsum dot": np.sqrt(np.einsum("ij,ij->i", Z, Z)),
    }
    return out


def _check(Z: np.ndarray, d: int, u: float) -> None:
    for order, nrm in _norms_every_order(Z).items():
        assert nrm.dtype == Z.dtype, order
        assert nrm.max() <= 1.0, (order, float(nrm.max()) - 1.0)
    # exact norms (fsum of the exactly squared float64 entries; float32 squares are exact
    # in float64): within [1 - (3d + 10) u, 1 - (d + 2) u] for nonzero rows
    Z64 = Z.astype(np.float64)
    rows = Z64[: min(len(Z64), 400)]
    for z in rows:
        if not np.any(z):
            continue
        ex = math.sqrt(math.fsum((z * z).tolist()))
        assert 1.0 - (3 * d + 10) * u <= ex <= 1.0 - (d + 2) * u, (d, ex - 1.0)


# 100,000 rows in total: ~94,000 at small and medium d, fewer at d = 4,096
DIMS = [(1, 20_000), (2, 20_000), (3, 15_000), (17, 15_000), (64, 10_000), (300, 8_000),
        (784, 6_000), (1_500, 3_000), (4_096, 3_000)]


def test_property_100k_rows_every_order_at_most_one():
    assert sum(n for _, n in DIMS) == 100_000
    rng = np.random.default_rng(20261207)
    for d, n in DIMS:
        X = _hard_rows(rng, n, d)
        Z = unit_row_scale(X)
        assert Z.dtype == np.float64 and Z.shape == X.shape
        _check(Z, d, U64)
        # the direction is kept (relative error a few ulps of the row's largest entry)
        i = rng.integers(0, n, 50)
        ref = X[i] / np.linalg.norm(X[i] / np.abs(X[i]).max(1, keepdims=True), axis=1,
                                    keepdims=True) / np.abs(X[i]).max(1, keepdims=True)
        np.testing.assert_allclose(Z[i], ref, rtol=0, atol=(3 * d + 10) * U64 * 4)


def test_float32_rows_every_order_at_most_one():
    rng = np.random.default_rng(7)
    for d, n in [(2, 5_000), (50, 5_000), (1_024, 1_000), (4_096, 500)]:
        X = _hard_rows(rng, n, d)
        Z = unit_row_scale(X, dtype=np.float32)
        assert Z.dtype == np.float32
        _check(Z, d, U32)


def test_naive_normalisation_goes_above_one_so_the_test_can_fail():
    # x / ||x|| computed naively leaves many rows whose computed norm exceeds 1 in some order
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20_000, 300))
    naive = X / np.linalg.norm(X, axis=1, keepdims=True)
    worst = max(float(v.max()) for v in _norms_every_order(naive).values())
    assert worst > 1.0
    with pytest.raises(AssertionError):
        _check(naive, 300, U64)


def test_factor_exact_and_premise_checked():
    assert unit_row_factor(784) == 1.0 - 1574 * U64
    assert np.float64(unit_row_factor(784)) == 1.0 - 1574 * U64  # representable
    assert np.float32(unit_row_factor(10, np.float32)) == 1.0 - 26 * U32
    with pytest.raises(_validate.ValidationError, match="dtype=float64"):
        unit_row_factor(3_000_000, np.float32)
    with pytest.raises(_validate.ValidationError, match="dtype"):
        unit_row_scale(np.ones((2, 2)), dtype=np.float16)


def test_zero_rows_empty_and_per_row():
    X = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    Z = unit_row_scale(X)
    np.testing.assert_array_equal(Z[[0, 2]], 0.0)
    np.testing.assert_allclose(Z[1], [0.6, 0.8], rtol=1e-14)
    assert unit_row_scale(np.zeros((0, 3))).shape == (0, 3)
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((30, 9))
    np.testing.assert_array_equal(unit_row_scale(Y)[5:9], unit_row_scale(Y[5:9]))
    np.testing.assert_array_equal(normalize_rows(Y), unit_row_scale(Y))


def test_unit_rows_check_names_row_and_excess():
    X = np.array([[0.6, 0.8], [1.0 + 2.0 ** -52, 0.0], [0.0, 1.0]])
    with pytest.raises(_validate.ValidationError, match=r"X row 1 has L2 norm 1 \+ 2\.2e-16 > 1"):
        _validate.unit_rows(X=X, tol=0.0)
    with pytest.raises(_validate.ValidationError, match=r"row 0 has L2 norm 5 > 1 \(and 1 more"):
        _validate.unit_rows(X=np.array([[3.0, 4.0], [0.0, 2.0]]), tol=0.0)
    # a real violation of 1e-12 is rejected at tol=0, and rows built by the helper accepted
    with pytest.raises(_validate.ValidationError, match=r"1 \+ 1e-12"):
        _validate.unit_rows(X=np.array([[1.0 + 1e-12, 0.0]]), tol=0.0)
    _validate.unit_rows(X=unit_row_scale(np.random.default_rng(2).standard_normal((100, 7))),
                        tol=0.0)
