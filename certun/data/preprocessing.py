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
  (:func:`normalize_rows`, :func:`unit_row_scale`).

Both commute with deleting rows: preprocessing a dataset and then deleting rows
gives exactly the same arrays as deleting the rows and then preprocessing.

:func:`stratified_split` only picks row indices (it fits nothing on the
features), so it is safe too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from certun import _validate

__all__ = ["normalize_rows", "pixel_shift", "stratified_split", "unit_row_factor",
           "unit_row_scale"]


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


def unit_row_factor(d: int, dtype: Any = np.float64) -> float:
    """The target norm ``1 - (2d + 6) u`` of :func:`unit_row_scale` for ``d`` features.

    ``u = eps / 2`` is the unit roundoff of ``dtype`` (``2**-53`` for float64, ``2**-24`` for
    float32). Dividing a row by its *computed* norm and multiplying by this factor leaves
    an exact norm of at most ``1 - (d + 2) u``, the margin under which every summation order
    computes a norm ``<= 1`` (``proofs/unit_rows.md``, sections 2 and 3). The factor is
    exactly representable in ``dtype``.

    Args:
      d: number of features, ``>= 1``.
      dtype: ``float64`` or ``float32``.

    Returns:
      The factor as a Python float.

    Raises:
      ValidationError: if ``dtype`` is not float32/float64, or ``(2d + 6) u > 1/4`` (the
        proof's premise; only float32 with more than about two million features).
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise _validate.ValidationError(
            f"dtype must be float64 or float32, got {dt.name}; unit-norm rows are built in "
            "one of those")
    d = _validate.integer(d=d, minimum=1)
    u = float(np.finfo(dt).eps) / 2.0
    if (2 * d + 6) * u > 0.25:
        raise _validate.ValidationError(
            f"d={d} features are too many for unit-norm rows in {dt.name} (the rounding "
            "margin (2d + 6) u exceeds 1/4); use dtype=float64")
    return 1.0 - (2 * d + 6) * u


def unit_row_scale(X: Any, *, dtype: Any = np.float64) -> np.ndarray:
    """Scale every nonzero row to an L2 norm just below 1, safe under any summation order.

    Each row ``x`` (``d`` entries) is first scaled by a power of two so that its largest
    ``|x_j|`` lies in ``[1/2, 1)`` (exact; no overflow or underflow of the squares), cast to
    ``dtype``, and then multiplied by ``c = fl((1 - (2d + 6) u) / n)`` with ``n`` its
    computed norm (all in ``dtype``; ``u`` its unit roundoff). The stored row ``z`` then has

        ``1 - (3d + 10) u  <=  ||z||_2  <=  1 - (d + 2) u``   (exactly, not just as computed),

    and under that upper bound *every* way of computing the norm in ``dtype`` -- the
    squares summed in any order, pairwise or with fused multiply-adds, then a square
    root -- returns a value ``<= 1`` (``proofs/unit_rows.md``: the margin ``(d + 2) u`` is
    Higham's ``gamma_d`` for the sum of squares plus one rounding each for the square and
    the square root). So a row this function made passes every ``||x_i||_2 <= 1`` check,
    certun's (:func:`certun._validate.unit_rows`, tolerance 0) or a user's in JAX. Rows
    that are all zero stay zero.

    This is a per-row map: output row ``i`` depends only on input row ``i``. It is the one
    place certun builds unit-norm rows (:func:`normalize_rows`, the synthetic datasets and
    the audits' canaries call it).

    Args:
      X: array-like of shape ``(n, d)`` with finite entries (``n`` may be 0).
      dtype: ``float64`` (default) or ``float32``: the dtype of the result and of every
        step of the computation (so the guarantee holds for that dtype's ``u``).

    Returns:
      A new array of shape ``(n, d)`` and dtype ``dtype``.

    Raises:
      ValidationError: if ``X`` is not a 2-D numeric array, holds NaN/Inf, or ``dtype``
        is not float32/float64 (see :func:`unit_row_factor`).
    """
    arr = _as_float_matrix("X", X)
    dt = np.dtype(dtype)
    d = max(arr.shape[1], 1)
    f = dt.type(unit_row_factor(d, dt))
    out = np.zeros(arr.shape, dt)
    if arr.size == 0:
        return out
    big = np.max(np.abs(arr), axis=1)
    nz = big > 0.0
    # power-of-two prescale: max |a_j| in [1/2, 1) (exact in float64 but for entries that
    # underflow, which is harmless: the guarantee is about the normalised vector a)
    _, e = np.frexp(big[nz])
    a = np.ldexp(arr[nz], -e[:, None]).astype(dt)
    n_hat = np.linalg.norm(a, axis=1)          # computed in dt, any order would do
    c = f / n_hat                               # one rounding in dt
    out[nz] = a * c[:, None]                    # one rounding per entry in dt
    return out


def normalize_rows(X: Any) -> np.ndarray:
    """Scale every row to L2 norm 1 (just below; rows that are all zero stay zero).

    This is a per-row map: the output row ``i`` depends only on input row
    ``i``, so it leaks nothing about other (possibly deleted) rows. It is
    :func:`unit_row_scale` in float64: each nonzero row ends with an exact norm in
    ``[1 - (3d + 10) u, 1 - (d + 2) u]`` (``u = 2**-53``; for ``d = 784`` that is within
    ``3e-13`` of 1), so that ``||x_i||_2`` computed in float64 in any summation order is
    ``<= 1`` -- what the certified bounds require and what every certun unlearner checks
    with zero tolerance (``proofs/unit_rows.md``).

    Args:
      X: array-like of shape ``(n, d)`` with finite entries (``n`` may be 0).

    Returns:
      A new ``float64`` NumPy array of shape ``(n, d)``.

    Raises:
      ValidationError: if ``X`` is not a 2-D numeric array or holds NaN/Inf.
    """
    return unit_row_scale(X, dtype=np.float64)


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
