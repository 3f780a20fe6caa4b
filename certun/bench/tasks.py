"""Benchmark tasks: a dataset, its model family and the regularisation every method shares.

A :class:`Task` is a bundled dataset (:mod:`certun.data`) or local files, with the loss
(``logistic`` for classification, binary or one-vs-rest, ``squared`` for ridge) and the
mean-scale L2 regularisation ``lam`` that all methods use on it, so that they are compared
on one objective. Names:

* ``digits_3v8``, ``digits``, ``breast_cancer``, ``diabetes``, ``mnist_5k`` -- the bundled
  datasets (``mnist_5k`` needs ``certun[mnist]``);
* ``synthetic`` -- a small random linear-teacher problem (tests, smoke runs);
* ``npz:PATH`` -- a local ``.npz`` with ``X_train, y_train, X_test, y_test`` (rows with
  ``||x|| <= 1``; labels ``+-1``, class ids, or real targets with ``regression=1``);
* ``mnist:PATH`` / ``fashion_mnist:PATH`` -- the IDX files (or keras ``.npz``) you have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from certun import _validate

__all__ = ["Task", "TASKS", "DEFAULT_LAM", "load_task"]

#: The bundled task names (``npz:PATH``, ``mnist:PATH`` and ``fashion_mnist:PATH`` also work).
TASKS = ("digits_3v8", "digits", "breast_cancer", "diabetes", "mnist_5k", "synthetic")

#: Mean-scale L2 regularisation per task (0.1 keeps the certified noise of the output-
#: perturbation methods, which shrinks like ``1 / (lam n)``, usable on a few hundred rows).
DEFAULT_LAM = {"digits_3v8": 0.1, "digits": 0.05, "breast_cancer": 0.1, "diabetes": 0.1,
               "mnist_5k": 0.05, "synthetic": 0.1}


class Task(NamedTuple):
    """A benchmark task.

    Attributes:
      name: the task name (as given).
      X_train, y_train, X_test, y_test: the data (rows with ``||x|| <= 1``).
      kind: ``"binary"`` (labels ``+-1``), ``"multiclass"`` (class ids) or ``"regression"``.
      num_classes: the number of classes (``None`` for binary and regression).
      loss: ``"logistic"`` or ``"squared"``.
      lam: the mean-scale L2 regularisation every method uses.
      label_bound: ``B`` with ``|y| <= B`` (regression), else ``None``.
      info: the dataset's description (source, preprocessing, split).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    kind: str
    num_classes: int | None
    loss: str
    lam: float
    label_bound: float | None
    info: dict

    @property
    def n_train(self) -> int:
        """Number of training rows."""
        return int(self.X_train.shape[0])

    def describe(self) -> dict:
        """JSON-ready description (no data)."""
        return {"name": self.name, "kind": self.kind, "num_classes": self.num_classes,
                "loss": self.loss, "lam": self.lam, "label_bound": self.label_bound,
                "n_train": self.n_train, "n_test": int(self.X_test.shape[0]),
                "dim": int(self.X_train.shape[1]),
                "source": str(self.info.get("source", self.name))}


def _from_dataset(name: str, ds: Any, lam: float | None) -> Task:
    kind = ds.task
    K = int(np.max(ds.y_train)) + 1 if kind == "multiclass" else None
    loss = "squared" if kind == "regression" else "logistic"
    bound = None
    if kind == "regression":
        bound = float(ds.info.get("label_bound", np.max(np.abs(ds.y_train))))
    lam_v = DEFAULT_LAM.get(name.split(":")[0], 0.1) if lam is None else lam
    return Task(name, np.asarray(ds.X_train, np.float64), np.asarray(ds.y_train),
                np.asarray(ds.X_test, np.float64), np.asarray(ds.y_test), kind, K, loss,
                _validate.positive(lam=lam_v), bound, dict(ds.info))


def _npz(name: str, path: Path, lam: float | None) -> Task:
    from certun.data.bundled import Dataset

    if not path.is_file():
        raise _validate.ValidationError(f"task: no file {path}; give npz:PATH of an existing .npz")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("X_train", "y_train", "X_test", "y_test") if k not in z]
        if missing:
            raise _validate.ValidationError(
                f"task: {path} lacks {missing}; save X_train, y_train, X_test, y_test")
        arrs = {k: np.asarray(z[k]) for k in ("X_train", "y_train", "X_test", "y_test")}
        regression = bool(z["regression"]) if "regression" in z else False
    for k in ("X_train", "X_test"):
        X = _validate.finite_array(**{k: arrs[k]}, ndim=2)
        if np.any(np.linalg.norm(X, axis=1) > 1 + 1e-12):
            raise _validate.ValidationError(
                f"task: {k} of {path} has rows with ||x|| > 1; scale them with "
                "certun.data.normalize_rows before saving")
    y = arrs["y_train"]
    if regression:
        kind = "regression"
    elif np.all(np.isin(y, (-1, 1))):
        kind = "binary"
    else:
        kind = "multiclass"
    info = {"source": str(path), "n_train": int(y.size)}
    if kind == "regression":
        info["label_bound"] = float(max(np.max(np.abs(y)), np.max(np.abs(arrs["y_test"]))))
    ds = Dataset(arrs["X_train"].astype(np.float64),
                 y.astype(np.int64 if kind == "multiclass" else np.float64),
                 arrs["X_test"].astype(np.float64),
                 arrs["y_test"].astype(np.int64 if kind == "multiclass" else np.float64),
                 name, kind, info)
    return _from_dataset(name, ds, lam)


def load_task(name: str, *, lam: float | None = None, seed: int = 0) -> Task:
    """Load a benchmark task by name (see the module docstring for the names).

    Args:
      name: a bundled name, ``synthetic``, ``npz:PATH``, ``mnist:PATH`` or
        ``fashion_mnist:PATH``.
      lam: override the task's regularisation (:data:`DEFAULT_LAM`).
      seed: the train/test split seed of the bundled datasets.
    """
    from certun import data

    if not isinstance(name, str) or not name:
        raise _validate.ValidationError(f"task must be a non-empty string, got {name!r}")
    head, _, rest = name.partition(":")
    if rest:
        if head == "npz":
            return _npz(name, Path(rest), lam)
        if head in ("mnist", "fashion_mnist"):
            return _from_dataset(name, data.load_mnist(rest, kind=head), lam)
        raise _validate.ValidationError(
            f"task {name!r}: the prefix must be npz:, mnist: or fashion_mnist:")
    if name == "synthetic":
        return _from_dataset(name, data.synthetic_logistic(120, 8, seed=seed, n_test=60), lam)
    if name not in TASKS:
        raise _validate.ValidationError(
            f"task must be one of {list(TASKS)} or npz:PATH / mnist:PATH, got {name!r}")
    return _from_dataset(name, data.load(name, seed=seed), lam)
