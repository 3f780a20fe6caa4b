"""Loaders for datasets the user already has on disk (certun never downloads).

* :func:`read_idx` parses one IDX file (the format of MNIST and Fashion-MNIST),
  plain or gzip-compressed.
* :func:`load_mnist` / :func:`load_fashion_mnist` read either a directory with
  the four standard IDX files or a keras-style ``mnist.npz`` and return a
  :class:`~certun.data.Dataset` with the official train/test split and the
  preprocessing of Guo et al. (2020): ``pixels / 255 - 0.5`` followed by
  per-row L2 normalisation (no dataset-wide statistic; see
  :mod:`certun.data.preprocessing`).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from certun import _validate
from certun.data.bundled import (
    _MNIST_PREPROCESSING,
    Dataset,
    _check_classes,
    _make,
    _mnist_task,
)

__all__ = ["read_idx", "load_mnist", "load_fashion_mnist", "MNIST_FILES"]

# IDX type code -> big-endian NumPy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

#: The standard file names (each may also end in ``.gz``; the variant with a
#: dot, ``train-images.idx3-ubyte``, found in some archives, is accepted too).
MNIST_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

_KINDS = ("mnist", "fashion_mnist")


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{path}: corrupt or truncated gzip data ({exc}); re-extract or re-copy the file"
            ) from None
    return raw


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (MNIST / Fashion-MNIST format), plain or gzip-compressed.

    The header is a 4-byte magic number ``0x00 0x00 <type> <ndim>`` followed by
    ``ndim`` big-endian ``uint32`` dimensions, then the data in big-endian
    C order. gzip compression is detected from the content (not the name).

    Args:
      path: path to the file.

    Returns:
      The array, with its native-endian dtype (``uint8`` for MNIST images and
      labels) and the shape given in the header.

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: naming ``path``, if the magic number is invalid, or the file is
        truncated or has trailing bytes (its size does not match the header), or
        the gzip stream is corrupt.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"IDX file not found: {p}")
    raw = _read_bytes(p)
    if len(raw) < 4:
        raise ValueError(f"{p}: file is {len(raw)} bytes, too short for an IDX header")
    zero, code, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{p}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000 then a type code in "
            f"{[hex(c) for c in _IDX_DTYPES]} and ndim >= 1); is this really an IDX file?"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{p}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(
            f"{p}: IDX file {what}: the header says shape {dims} of {dtype.name} "
            f"({expected} bytes in all) but the data holds {len(raw)} bytes; "
            "re-download or re-extract it"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _find_file(directory: Path, base: str) -> Path | None:
    dotted = base.replace("-idx", ".idx")
    for cand in (base, base + ".gz", dotted, dotted + ".gz"):
        p = directory / cand
        if p.is_file():
            return p
    return None


def _load_dir(directory: Path, test: bool) -> dict[str, np.ndarray]:
    keys = list(MNIST_FILES) if test else ["x_train", "y_train"]
    found = {k: _find_file(directory, MNIST_FILES[k]) for k in keys}
    missing = [MNIST_FILES[k] for k, v in found.items() if v is None]
    if missing:
        raise FileNotFoundError(
            f"{directory} lacks the MNIST-format file(s) {missing} (each may end in .gz); "
            f"expected {[MNIST_FILES[k] for k in keys]}. Put the IDX files there or pass "
            "a keras-style .npz file with keys x_train, y_train, x_test, y_test"
        )
    return {k: read_idx(p) for k, p in found.items() if p is not None}


def _load_npz(path: Path, test: bool) -> dict[str, np.ndarray]:
    keys = list(MNIST_FILES) if test else ["x_train", "y_train"]
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise ValueError(
                    f"{path}: .npz lacks the key(s) {missing}; expected the keras mnist.npz "
                    f"layout with keys {keys}, found {sorted(z.files)}"
                )
            return {k: np.asarray(z[k]) for k in keys}
    except ValueError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, OSError, ...
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None


def _check_split(src: Path, x: np.ndarray, y: np.ndarray, which: str) -> None:
    if x.ndim not in (2, 3) or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{src}: {which} images have shape {x.shape} and labels shape {y.shape}; "
            "expected images (N, 28, 28) or (N, 784) and labels (N,)"
        )
    if int(np.prod(x.shape[1:])) != 784:
        raise ValueError(f"{src}: {which} images have shape {x.shape}; expected 28x28 = 784 pixels")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9):
        raise ValueError(
            f"{src}: {which} labels must be integers 0..9, got dtype {y.dtype} "
            f"and range {y.min()}..{y.max()}"
        )


def load_mnist(
    path: str | os.PathLike[str],
    classes: tuple[int, int] | None = None,
    kind: str = "mnist",
    test: bool = True,
) -> Dataset:
    """Load MNIST (or Fashion-MNIST) from local files, with the official split.

    Preprocessing (Guo et al. 2020): :func:`~certun.data.pixel_shift` with the
    fixed range 255 (``pixels / 255 - 0.5``), then
    :func:`~certun.data.normalize_rows`; images are flattened to 784 features.
    With ``classes=(3, 8)`` the real MNIST gives the 3-vs-8 task of Guo et al.
    with 11,982 training and 1,984 test rows.

    Args:
      path: a directory holding ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``), or an ``.npz``
        file with keys ``x_train, y_train, x_test, y_test`` (keras layout).
      classes: ``None`` for all 10 classes (``int64`` labels), or a pair
        ``(a, b)`` for a binary task with ``a -> +1`` and ``b -> -1``.
      kind: ``"mnist"`` or ``"fashion_mnist"``; only changes ``name`` and ``info``
        (the format is the same).
      test: if False, skip the test files (they need not exist) and return an
        empty test set of shape ``(0, 784)``.

    Returns:
      A :class:`~certun.data.Dataset` named ``kind`` (plus ``_3v8`` style suffix
      for a class pair); ``info["train_idx"]``/``info["test_idx"]`` index the
      kept rows of the official train/test files.

    Raises:
      FileNotFoundError: if ``path`` does not exist or a directory lacks a file
        (the message lists the expected names and where).
      ValueError: if a file is corrupt or truncated, the arrays have the wrong
        shapes, or ``classes`` / ``kind`` is invalid.
    """
    kind = _validate.choice(_KINDS, kind=kind)
    if classes is not None:
        _check_classes(classes, range(10))
    src = Path(path)
    if src.is_dir():
        arrays = _load_dir(src, bool(test))
    elif src.is_file():
        if src.suffix.lower() != ".npz":
            raise ValueError(
                f"path={str(src)!r} is a file but not an .npz; pass the directory holding the "
                "four IDX files, or a keras-style .npz (keys x_train, y_train, x_test, y_test)"
            )
        arrays = _load_npz(src, bool(test))
    else:
        raise FileNotFoundError(
            f"path={str(src)!r} does not exist; pass a directory holding "
            f"{list(MNIST_FILES.values())} (optionally .gz) or a keras-style .npz file "
            "(certun never downloads data)"
        )

    _check_split(src, arrays["x_train"], arrays["y_train"], "train")
    Xtr, ytr, rtr, task, info = _mnist_task(arrays["x_train"], arrays["y_train"], classes)
    if test:
        _check_split(src, arrays["x_test"], arrays["y_test"], "test")
        Xte, yte, rte, _, _ = _mnist_task(arrays["x_test"], arrays["y_test"], classes)
    else:
        Xte = np.zeros((0, 784))
        yte = np.zeros((0,))
        rte = np.zeros((0,), np.int64)

    name = kind if classes is None else f"{kind}_{info['classes'][0]}v{info['classes'][1]}"
    info.update(
        source=f"local files: {src}",
        preprocessing=_MNIST_PREPROCESSING,
        split="official train/t10k split" if test else "official train split only (test=False)",
        train_idx=rtr,
        test_idx=rte,
    )
    return _make(Xtr, ytr, Xte, yte, name=name, task=task, info=info)


def load_fashion_mnist(
    path: str | os.PathLike[str], classes: tuple[int, int] | None = None, test: bool = True
) -> Dataset:
    """Load Fashion-MNIST from local files: ``load_mnist(path, classes, "fashion_mnist")``.

    Args:
      path: directory with the four IDX files (optionally ``.gz``) or a
        keras-style ``.npz``; see :func:`load_mnist`.
      classes: ``None`` for all 10 classes, or a pair ``(a, b)`` (``a -> +1``,
        ``b -> -1``).
      test: if False, skip the test files and return an empty test set.

    Returns:
      A :class:`~certun.data.Dataset` named ``"fashion_mnist"`` (or e.g.
      ``"fashion_mnist_0v6"``).

    Raises:
      FileNotFoundError: if ``path`` or an expected file is missing.
      ValueError: if a file is corrupt or ``classes`` is invalid.
    """
    return load_mnist(path, classes=classes, kind="fashion_mnist", test=test)
