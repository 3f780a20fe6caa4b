"""Tests for certun.data.preprocessing: per-row maps, fixed maps, deterministic splits."""

from __future__ import annotations

import numpy as np
import pytest

from certun.data import normalize_rows, pixel_shift, stratified_split


def test_normalize_rows_unit_norm_and_direction(rng):
    X = rng.standard_normal((50, 7)) * rng.uniform(0.01, 100.0, size=(50, 1))
    Z = normalize_rows(X)
    assert Z.dtype == np.float64 and Z.shape == X.shape
    norms = np.linalg.norm(Z, axis=1)
    assert np.all(norms <= 1.0)
    np.testing.assert_allclose(norms, 1.0, rtol=0, atol=1e-14)
    # Same direction: Z is a positive multiple of X row by row.
    np.testing.assert_allclose(Z * np.linalg.norm(X, axis=1)[:, None], X, rtol=1e-13)


def test_normalize_rows_zero_rows_stay_zero_and_ints_accepted():
    X = np.array([[0, 0, 0], [3, 0, 4], [0, 0, 0]], dtype=np.int32)
    Z = normalize_rows(X)
    assert Z.dtype == np.float64
    np.testing.assert_array_equal(Z[0], 0.0)
    np.testing.assert_array_equal(Z[2], 0.0)
    # exact norm in [1 - (3d + 10) u, 1 - (d + 2) u] (proofs/unit_rows.md), d = 3
    np.testing.assert_allclose(Z[1], [0.6, 0.0, 0.8], rtol=0, atol=19 * 2.0**-53)


def test_normalize_rows_extreme_scales_do_not_overflow():
    X = np.array([[1e300, 1e300], [1e-300, -1e-300], [5e-324, 0.0]])
    Z = normalize_rows(X)
    assert np.all(np.isfinite(Z))
    np.testing.assert_allclose(np.abs(Z[:2]), np.sqrt(0.5), rtol=16 * 2.0**-53)
    np.testing.assert_allclose(Z[2], [1.0, 0.0])


def test_normalize_rows_never_above_one(rng):
    X = rng.standard_normal((5000, 13))
    assert np.linalg.norm(normalize_rows(X), axis=1).max() <= 1.0


def test_normalize_rows_no_leak(rng):
    """Deleting rows before or after preprocessing gives identical arrays."""
    X = rng.standard_normal((30, 5))
    keep = np.setdiff1d(np.arange(30), [0, 4, 17, 29])
    np.testing.assert_array_equal(normalize_rows(X[keep]), normalize_rows(X)[keep])
    np.testing.assert_array_equal(pixel_shift(X[keep], 3.0), pixel_shift(X, 3.0)[keep])


def test_normalize_rows_rejects_bad_input():
    with pytest.raises(ValueError, match="X must be a 2-D array"):
        normalize_rows(np.ones(3))
    with pytest.raises(ValueError, match="X contains 1 NaN/Inf"):
        normalize_rows(np.array([[1.0, np.nan]]))


def test_pixel_shift_values():
    X = np.array([[0, 255, 51]], dtype=np.uint8)
    np.testing.assert_allclose(pixel_shift(X, 255), [[-0.5, 0.5, 0.2 - 0.5]], rtol=0, atol=1e-15)
    assert pixel_shift(X, 255).dtype == np.float64
    with pytest.raises(ValueError, match="max_value"):
        pixel_shift(X, 0.0)


def test_stratified_split_partition_and_proportions():
    y = np.array([0] * 60 + [1] * 20 + [2] * 40)
    tr, te = stratified_split(y, 0.25, seed=0)
    assert tr.dtype == np.int64 and te.dtype == np.int64
    assert len(te) == 30 and len(tr) == 90
    assert np.intersect1d(tr, te).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(120))
    np.testing.assert_array_equal(np.bincount(y[te]), [15, 5, 10])
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(te) > 0)


def test_stratified_split_matches_sklearn_and_is_deterministic():
    from sklearn.model_selection import train_test_split

    y = np.tile([0, 1, 1, 2], 25)
    tr, te = stratified_split(y, 0.3, seed=7)
    ref_tr, ref_te = train_test_split(np.arange(100), test_size=0.3, random_state=7, stratify=y)
    np.testing.assert_array_equal(tr, np.sort(ref_tr))
    np.testing.assert_array_equal(te, np.sort(ref_te))
    tr2, te2 = stratified_split(y, 0.3, seed=7)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(te, te2)
    _, te3 = stratified_split(y, 0.3, seed=8)
    assert not np.array_equal(te, te3)


def test_stratified_split_unstratified_for_regression(rng):
    y = rng.standard_normal(40)
    tr, te = stratified_split(y, 0.25, seed=0, stratify=False)
    assert len(te) == 10 and len(tr) == 30


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_fraction": 0.0, "seed": 0}, "test_fraction"),
        ({"test_fraction": 1.0, "seed": 0}, "test_fraction"),
        ({"test_fraction": 0.25, "seed": -1}, "seed"),
        ({"test_fraction": 0.25, "seed": 1.5}, "seed"),
        ({"test_fraction": 0.01, "seed": 0}, "test_fraction"),
    ],
)
def test_stratified_split_errors_name_the_argument(kwargs, match):
    y = np.array([0, 1] * 10)
    with pytest.raises(ValueError, match=match):
        stratified_split(y, **kwargs)
