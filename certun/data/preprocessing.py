"""Leak-free preprocessing for certified unlearning.

The no-leak rule
----------------
certun's certified bounds (Guo et al. 2020, "Certified Data Removal from
Machine Learning Models") assume every feature vector satisfies
``||x_i||_2 <= 1``. The certificate covers the *model*; it does not cover the
preprocessing. So:

**No dataset-wide statistic (mean, standard deviation, min/max, PCA basis,
vocabulary, ...) may ever be fitted on data that includes points that may later
be deleted.** A ``StandardScaler`` fitted on the training set, for example,
stores a function of every training row; after a deletion the scaler still
remembers the deleted row, and no certificate on the model parameters covers
that.

The only transforms allowed here are therefore

* fixed-in-advance maps chosen without looking at the data
  (:func:`pixel_shift`: ``X / max_value - 0.5`` with ``max_value`` the known
  range of the sensor, e.g. 255 for 8-bit pixels), and
* per-row maps, where the output for row ``i`` depends only on row ``i``
  (:func:`normalize_rows`).

Both commute with deleting rows: preprocessing a dataset and then deleting rows
gives exactly the same arrays as deleting the rows and then preprocessing.

:func:`stratified_split` only picks row indices (it fits nothing on the
features), so it is safe too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from certun import _validate

__all__ = ["normalize_rows", "pixel_shift", "stratified_split"]

_EPS = float(np.finfo(np.float64).eps)


def _as_float_matrix(name: str, X: Any) -> np.ndarray:
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise _validate.ValidationError(
            f"{name} must be a numeric 2-D array (rows = examples), could not convert "
            f"a value of type {type(X).__name__}"
        ) from None
    if arr.ndim != 2:
        raise _validate.ValidationError(
            f"{name} must be a 2-D array of shape (n_examples, n_features), got shape "
            f"{arr.shape}; reshape it, e.g. X.reshape(len(X), -1)"
        )
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise _validate.ValidationError(
            f"{name} contains {bad} NaN/Inf value(s); remove or impute them (with a "
            "fixed value, not a dataset statistic) before calling"
        )
    return arr


def normalize_rows(X: Any) -> np.ndarray:
    """Scale every row to L2 norm 1 (rows that are all zero stay zero).

    This is a per-row map: the output row ``i`` depends only on input row
    ``i``, so it leaks nothing about other (possibly deleted) rows. The result
    satisfies ``||x_i||_2 <= 1`` as computed in float64 (a row whose computed
    norm would round to just above 1 is shrunk by a few ulps), which is what
    the certified bounds require.

    Args:
      X: array-like of shape ``(n, d)`` with finite entries (``n`` may be 0).

    Returns:
      A new ``float64`` NumPy array of shape ``(n, d)`` whose nonzero rows have
      unit L2 norm (to within float64 rounding, never above 1).

    Raises:
      ValidationError: if ``X`` is not a 2-D numeric array or holds NaN/Inf.
    """
    arr = _as_float_matrix("X", X)
    out = np.zeros_like(arr)
    if arr.size == 0:
        return out
    # Pre-scale by the row's max |x| so that squaring cannot overflow/underflow.
    scale = np.max(np.abs(arr), axis=1)
    nz = scale > 0.0
    y = arr[nz] / scale[nz, None]
    y /= np.linalg.norm(y, axis=1)[:, None]
    over = np.linalg.norm(y, axis=1) > 1.0
    if np.any(over):
        y[over] *= 1.0 - 4.0 * _EPS
    out[nz] = y
    return out


def pixel_shift(X: Any, max_value: float) -> np.ndarray:
    """Apply the fixed affine map ``X / max_value - 0.5``.

    ``max_value`` must be a constant known *a priori* (the range of the sensor,
    e.g. 255 for 8-bit images, 16 for scikit-learn's 8x8 digits), never a
    statistic of the data. Values in ``[0, max_value]`` land in
    ``[-0.5, 0.5]``. This is the preprocessing of Guo et al. (2020) for MNIST
    (``pixels / 255 - 0.5``), which they follow with per-row L2 normalisation
    (:func:`normalize_rows`).

    Args:
      X: array-like of shape ``(n, d)`` with finite entries.
      max_value: the fixed, a-priori maximum value of a feature; > 0.

    Returns:
      A new ``float64`` NumPy array of shape ``(n, d)``.

    Raises:
      ValidationError: if ``X`` is not a finite 2-D array or ``max_value`` is not
        a finite number > 0.
    """
    m = _validate.positive(max_value=max_value)
    arr = _as_float_matrix("X", X)
    return arr / m - 0.5


def stratified_split(
    y: Any, test_fraction: float, seed: int, *, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into train and test, preserving class proportions.

    A thin wrapper around :func:`sklearn.model_selection.train_test_split` with
    ``stratify=y`` and ``random_state=seed``: the same ``(y, test_fraction,
    seed)`` always gives the same split. Only indices are chosen; nothing is
    fitted on the features.

    Args:
      y: 1-D array of labels used for stratification (length ``n``).
      test_fraction: fraction of rows that go to the test set, in ``(0, 1)``.
      seed: integer seed in ``[0, 2**32 - 1]``.
      stratify: if False, make a plain random split (use this for regression
        targets, which cannot be stratified).

    Returns:
      ``(train_idx, test_idx)``: disjoint, sorted ``int64`` index arrays whose
      union is ``0..n-1``.

    Raises:
      ValidationError: if ``y`` is not 1-D with at least 2 entries, if
        ``test_fraction`` is outside ``(0, 1)``, if ``seed`` is not a non-negative
        integer, or if the fraction leaves the train or test set too small to
        hold every class.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] < 2:
        raise _validate.ValidationError(
            f"y must be a 1-D array of at least 2 labels, got shape {labels.shape}"
        )
    frac = _validate.in_range(0.0, 1.0, test_fraction=test_fraction)
    s = _validate.integer(minimum=0, maximum=2**32 - 1, seed=seed)
    n = labels.shape[0]
    n_test = int(np.ceil(frac * n))
    if n_test < 1 or n - n_test < 1:
        raise _validate.ValidationError(
            f"test_fraction={test_fraction!r} leaves {n_test} test and {n - n_test} train "
            f"rows out of {n}; choose a fraction that keeps both sets non-empty"
        )
    if stratify:
        n_classes = np.unique(labels).shape[0]
        if n_test < n_classes or n - n_test < n_classes:
            raise _validate.ValidationError(
                f"test_fraction={test_fraction!r} gives {n_test} test and {n - n_test} train "
                f"rows, fewer than the {n_classes} classes a stratified split needs in each; "
                "choose a fraction closer to 0.5"
            )
    idx = np.arange(n, dtype=np.int64)
    try:
        train_idx, test_idx = train_test_split(
            idx, test_size=frac, random_state=s, stratify=labels if stratify else None
        )
    except ValueError as exc:
        raise _validate.ValidationError(
            f"cannot make a stratified split with test_fraction={test_fraction!r}: {exc}; "
            "every class needs at least 2 rows (or pass stratify=False)"
        ) from None
    return np.sort(train_idx).astype(np.int64), np.sort(test_idx).astype(np.int64)
