"""Tests for certun.data.files: IDX parsing and local MNIST / Fashion-MNIST loaders."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from certun.data import Dataset, load_fashion_mnist, load_mnist, read_idx

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
          np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(arr: np.ndarray) -> bytes:
    """Independent IDX writer: magic 0x0000<type><ndim>, big-endian dims, big-endian data."""
    arr = np.asarray(arr)
    header = bytes([0, 0, _CODES[arr.dtype], arr.ndim])
    header += struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def fake_mnist(seed: int, n_train: int = 60, n_test: int = 20):
    rng = np.random.default_rng(seed)
    xtr = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    xte = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    ytr = np.resize(np.arange(10, dtype=np.uint8), n_train)
    yte = np.resize(np.arange(10, dtype=np.uint8)[::-1], n_test)
    rng.shuffle(ytr)
    return xtr, ytr, xte, yte


def write_mnist_dir(directory: Path, arrays, gz: bool) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in zip(NAMES, (arrays[0], arrays[1], arrays[2], arrays[3]), strict=True):
        write_idx(directory / name, arr, gz=gz)
    return directory


# normalize_rows scales to an exact norm in [1 - (3d + 10) u, 1 - (d + 2) u]
# (proofs/unit_rows.md): entries (all <= 1) differ from x / ||x|| by at most (3d + 10) u
TOL = (3 * 784 + 10) * 2.0**-53


def expected_features(images: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), 784).astype(np.float64) / 255.0 - 0.5
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip_uint8(tmp_path, gz):
    images, labels, _, _ = fake_mnist(0, n_train=7)
    pi = write_idx(tmp_path / "img-idx3-ubyte", images, gz=gz)
    pl = write_idx(tmp_path / "lab-idx1-ubyte", labels, gz=gz)
    got_i, got_l = read_idx(pi), read_idx(str(pl))
    assert got_i.dtype == np.uint8 and got_i.shape == (7, 28, 28)
    assert got_l.dtype == np.uint8 and got_l.shape == (7,)
    np.testing.assert_array_equal(got_i, images)
    np.testing.assert_array_equal(got_l, labels)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_multibyte_big_endian(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) * 37 - 300).astype(dtype)
    if dtype == np.int8:
        arr = (np.arange(24).reshape(2, 3, 4) - 12).astype(dtype)
    got = read_idx(write_idx(tmp_path / "a.idx", arr))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_names_file(tmp_path, gz):
    images = np.zeros((3, 28, 28), np.uint8)
    data = idx_bytes(images)[:-5]
    p = tmp_path / ("short-idx3-ubyte" + (".gz" if gz else ""))
    p.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match="truncated") as err:
        read_idx(p)
    assert str(p) in str(err.value)


def test_read_idx_truncated_gzip_stream(tmp_path):
    p = tmp_path / "cut.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))[:40])
    with pytest.raises(ValueError, match="gzip") as err:
        read_idx(p)
    assert str(p) in str(err.value)


def test_read_idx_trailing_bytes(tmp_path):
    p = tmp_path / "long"
    p.write_bytes(idx_bytes(np.zeros(4, np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match="trailing bytes"):
        read_idx(p)


@pytest.mark.parametrize("magic", [b"\x00\x01\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00",
                                   b"PK\x03\x04"])
def test_read_idx_bad_magic_names_file(tmp_path, magic):
    p = tmp_path / "bad-idx1-ubyte"
    p.write_bytes(magic + struct.pack(">I", 2) + b"\x01\x02")
    with pytest.raises(ValueError, match="bad IDX magic number") as err:
        read_idx(p)
    assert str(p) in str(err.value)


def test_read_idx_tiny_and_missing(tmp_path):
    p = tmp_path / "tiny"
    p.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short"):
        read_idx(p)
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_idx(tmp_path / "nothere")


# ---------------------------------------------------------------- load_mnist


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_directory(tmp_path, gz):
    arrays = fake_mnist(1)
    d = write_mnist_dir(tmp_path / "mnist", arrays, gz=gz)
    ds = load_mnist(d)
    assert isinstance(ds, Dataset)
    assert ds.name == "mnist" and ds.task == "multiclass"
    assert (ds.n_train, ds.n_test, ds.dim) == (60, 20, 784)
    np.testing.assert_allclose(ds.X_train, expected_features(arrays[0]), rtol=0, atol=TOL)
    np.testing.assert_allclose(ds.X_test, expected_features(arrays[2]), rtol=0, atol=TOL)
    assert ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, arrays[1])
    np.testing.assert_array_equal(ds.y_test, arrays[3])
    assert np.linalg.norm(ds.X_train, axis=1).max() <= 1.0 + 1e-12


def test_load_mnist_binary_classes(tmp_path):
    xtr, ytr, xte, yte = fake_mnist(2)
    d = write_mnist_dir(tmp_path / "m", (xtr, ytr, xte, yte), gz=True)
    ds = load_mnist(d, classes=(3, 8))
    assert ds.name == "mnist_3v8" and ds.task == "binary"
    keep = (ytr == 3) | (ytr == 8)
    assert ds.n_train == int(keep.sum())
    np.testing.assert_array_equal(ds.info["train_idx"], np.flatnonzero(keep))
    np.testing.assert_array_equal(ds.y_train, np.where(ytr[keep] == 3, 1.0, -1.0))
    assert ds.y_train.dtype == np.float64
    np.testing.assert_allclose(ds.X_train, expected_features(xtr[keep]), rtol=0, atol=TOL)
    keep_te = (yte == 3) | (yte == 8)
    np.testing.assert_array_equal(ds.y_test, np.where(yte[keep_te] == 3, 1.0, -1.0))
    # Order of the pair sets the sign.
    rev = load_mnist(d, classes=(8, 3))
    np.testing.assert_array_equal(rev.y_train, -ds.y_train)
    with pytest.raises(ValueError, match="classes"):
        load_mnist(d, classes=(3, 10))


def test_load_mnist_npz_matches_directory(tmp_path):
    arrays = fake_mnist(3)
    d = write_mnist_dir(tmp_path / "m", arrays, gz=False)
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
    a, b = load_mnist(d, classes=(3, 8)), load_mnist(npz, classes=(3, 8))
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=arrays[0], y_train=arrays[1])
    with pytest.raises(ValueError, match="x_test"):
        load_mnist(bad)
    assert load_mnist(bad, test=False).n_test == 0


def test_load_mnist_test_false_skips_test_files(tmp_path):
    xtr, ytr, _, _ = fake_mnist(4)
    d = tmp_path / "m"
    d.mkdir()
    write_idx(d / NAMES[0], xtr)
    write_idx(d / NAMES[1], ytr)
    ds = load_mnist(d, test=False)
    assert ds.X_test.shape == (0, 784) and ds.n_test == 0 and ds.n_train == 60
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_mnist(d)


def test_load_mnist_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        load_mnist(tmp_path / "no_such_dir")
    assert "train-images-idx3-ubyte" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(empty)
    msg = str(err.value)
    assert str(empty) in msg
    for name in NAMES:
        assert name in msg


def test_load_mnist_corrupt_file_in_directory(tmp_path):
    arrays = fake_mnist(5)
    d = write_mnist_dir(tmp_path / "m", arrays, gz=False)
    p = d / NAMES[0]
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated") as err:
        load_mnist(d)
    assert NAMES[0] in str(err.value)


def test_load_mnist_mismatched_lengths(tmp_path):
    xtr, ytr, xte, yte = fake_mnist(6)
    d = write_mnist_dir(tmp_path / "m", (xtr, ytr[:-1], xte, yte), gz=False)
    with pytest.raises(ValueError, match="shape"):
        load_mnist(d)


def test_load_mnist_rejects_bad_kind_and_file(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        load_mnist(tmp_path, kind="cifar")
    f = tmp_path / "x.txt"
    f.write_text("hi")
    with pytest.raises(ValueError, match="npz"):
        load_mnist(f)


def test_load_fashion_mnist_name_only(tmp_path):
    arrays = fake_mnist(7)
    d = write_mnist_dir(tmp_path / "f", arrays, gz=True)
    f = load_fashion_mnist(d, classes=(0, 6))
    m = load_mnist(d, classes=(0, 6))
    assert f.name == "fashion_mnist_0v6" and m.name == "mnist_0v6"
    np.testing.assert_array_equal(f.X_train, m.X_train)
    np.testing.assert_array_equal(f.y_train, m.y_train)
