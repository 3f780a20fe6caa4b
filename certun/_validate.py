"""Host-side validation shared by every public entry point.

Every validator takes the value(s) as keyword arguments so that the error names
the argument the user passed, says what was wrong, and says how to fix it. They
run eagerly on the host, before anything is traced or jit-compiled (the pattern
of ``jax_privacy/_validate.py``); inside ``jit`` certun reports problems through
result codes (:mod:`certun.results`) instead.

All validators raise :class:`ValueError` (or :class:`TypeError` for a wrong
type) and return the validated value(s) converted to a convenient host type.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

__all__ = [
    "ValidationError",
    "epsilon",
    "delta",
    "positive",
    "non_negative",
    "in_range",
    "integer",
    "finite_array",
    "finite_tree",
    "matching_rows",
    "forget_indices",
    "unit_rows",
    "choice",
    "labels_pm1",
    "class_ids",
    "targets",
]


class ValidationError(ValueError):
    """A user-supplied argument is invalid; the message names it and the fix."""


def _one(kwargs: dict[str, Any]) -> tuple[str, Any]:
    if len(kwargs) != 1:
        raise TypeError("validators take exactly one keyword argument: name=value")
    return next(iter(kwargs.items()))


def _scalar(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{name} must be a real number, got {value!r} of type {type(value).__name__}"
        ) from None
    if math.isnan(out):
        raise ValidationError(f"{name} is NaN; pass a finite number")
    return out


def epsilon(**kwargs: Any) -> float:
    """Validate a privacy parameter epsilon: finite and > 0."""
    name, value = _one(kwargs)
    x = _scalar(name, value)
    if not (x > 0.0) or math.isinf(x):
        raise ValidationError(
            f"{name} must be a finite number > 0 (the privacy loss), got {value!r}; "
            "typical values are 0.1 to 10"
        )
    return x


def delta(**kwargs: Any) -> float:
    """Validate a privacy parameter delta: strictly inside (0, 1)."""
    name, value = _one(kwargs)
    x = _scalar(name, value)
    if not (0.0 < x < 1.0):
        raise ValidationError(
            f"{name} must lie strictly between 0 and 1, got {value!r}; "
            "a common choice is 1/n or smaller (e.g. 1e-5)"
        )
    return x


def positive(**kwargs: Any) -> float:
    """Validate a finite, strictly positive scalar (e.g. ``lam``, ``sigma``)."""
    name, value = _one(kwargs)
    x = _scalar(name, value)
    if not (x > 0.0) or math.isinf(x):
        raise ValidationError(f"{name} must be a finite number > 0, got {value!r}")
    return x


def non_negative(**kwargs: Any) -> float:
    """Validate a finite scalar >= 0."""
    name, value = _one(kwargs)
    x = _scalar(name, value)
    if not (x >= 0.0) or math.isinf(x):
        raise ValidationError(f"{name} must be a finite number >= 0, got {value!r}")
    return x


def in_range(lo: float, hi: float, *, inclusive: bool = False, **kwargs: Any) -> float:
    """Validate ``lo < x < hi`` (or ``lo <= x <= hi`` with ``inclusive=True``)."""
    name, value = _one(kwargs)
    x = _scalar(name, value)
    ok = (lo <= x <= hi) if inclusive else (lo < x < hi)
    if not ok:
        br = ("[", "]") if inclusive else ("(", ")")
        raise ValidationError(f"{name} must lie in {br[0]}{lo}, {hi}{br[1]}, got {value!r}")
    return x


def integer(*, minimum: int | None = None, maximum: int | None = None, **kwargs: Any) -> int:
    """Validate an integer within optional bounds (bools are rejected)."""
    name, value = _one(kwargs)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValidationError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValidationError(f"{name} must be <= {maximum}, got {v}")
    return v


def choice(options: Sequence[str], **kwargs: Any) -> str:
    """Validate that a string is one of ``options``."""
    name, value = _one(kwargs)
    if value not in options:
        raise ValidationError(f"{name} must be one of {list(options)}, got {value!r}")
    return value


def finite_array(*, ndim: int | Sequence[int] | None = None, **kwargs: Any) -> np.ndarray:
    """Validate a numeric array with no NaN or Inf (and optionally its rank).

    Returns the array as a NumPy array (no copy when possible).
    """
    name, value = _one(kwargs)
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValidationError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValidationError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ValidationError(
                f"{name} must have {' or '.join(map(str, allowed))} dimension(s), "
                f"got shape {arr.shape}"
            )
    if arr.size == 0:
        raise ValidationError(f"{name} is empty (shape {arr.shape}); pass at least one row")
    if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValidationError(
            f"{name} contains {bad} NaN/Inf value(s); remove or impute them before calling"
        )
    return arr


def finite_tree(**kwargs: Any) -> Any:
    """Validate that every leaf of a pytree (e.g. model parameters) is finite."""
    name, tree = _one(kwargs)
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    if not leaves:
        raise ValidationError(f"{name} is an empty pytree")
    for path, leaf in leaves:
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
            where = jax.tree_util.keystr(path) or "<root>"
            raise ValidationError(
                f"{name}{where} contains NaN/Inf; the parameters are corrupt "
                "(check the training run that produced them)"
            )
    return tree


def matching_rows(**kwargs: Any) -> int:
    """Validate that all arrays have the same number of rows; return it."""
    if len(kwargs) < 2:
        raise TypeError("matching_rows needs at least two named arrays")
    rows = {k: np.shape(v)[0] if np.ndim(v) > 0 else None for k, v in kwargs.items()}
    vals = set(rows.values())
    if None in vals or len(vals) != 1:
        desc = ", ".join(f"{k} has {v} rows" for k, v in rows.items())
        raise ValidationError(f"mismatched shapes: {desc}; they must have the same first dimension")
    return next(v for v in vals if v is not None)


def forget_indices(indices: Any, n: int, *, name: str = "indices",
                   already_removed: np.ndarray | None = None) -> np.ndarray:
    """Validate a deletion request against a dataset of ``n`` rows.

    Args:
      indices: integer indices into the *original* training set (Python ints of any size,
        NumPy integers, or integral floats; each must lie in ``0..n-1``).
      n: number of rows of the original training set.
      name: argument name used in error messages.
      already_removed: optional boolean mask of rows removed by earlier requests.

    Returns:
      The indices as a sorted ``int64`` NumPy array.

    Raises:
      ValidationError: if the request is empty, non-integer, out of range (the message
        names the value and the valid range ``0..n-1``; values beyond int64 included),
        contains duplicates, or names a row that was already removed.
    """
    if already_removed is None and type(indices) in (list, tuple) and 0 < len(indices) <= 64 \
            and all(type(v) is int for v in indices):
        # the common request, a few Python ints: answered without NumPy's conversions (any
        # problem falls through to the checks below, which name it)
        vals = sorted(indices)
        if 0 <= vals[0] and vals[-1] < n and len(set(vals)) == len(vals):
            return np.asarray(vals, np.int64)
    valid = f"valid range 0..{n - 1} into the original training set"
    try:
        arr = np.asarray(indices)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError(
            f"{name} must be a 1-D list of integer row indices ({valid}), got {indices!r}"
        ) from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be a 1-D list of row indices, got shape {arr.shape}")
    if arr.size == 0:
        raise ValidationError(f"{name} is empty: a deletion request must name at least one row")

    def out_of_range(v: Any) -> ValidationError:
        return ValidationError(f"{name} holds out-of-range index {v} ({valid})")

    def not_integer(v: Any) -> ValidationError:
        return ValidationError(f"{name} must hold integer row indices ({valid}), got {v!r}")

    if arr.dtype == object:  # Python ints beyond int64 (or mixed objects): check one by one
        vals = []
        for v in arr.tolist():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise not_integer(v)
            if not 0 <= int(v) < n:
                raise out_of_range(int(v))
            vals.append(int(v))
        arr = np.asarray(vals, np.int64)
    elif arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                   or np.issubdtype(arr.dtype, np.floating)):
        vals = arr.tolist()
        if arr.dtype.kind in "US":  # name the entry that is not a number, else the first
            vals = [v for v in vals if not str(v).lstrip("-").isdigit()] or vals
        raise not_integer(vals[0])
    elif np.issubdtype(arr.dtype, np.floating):
        fin = np.isfinite(arr)
        frac = np.zeros_like(fin)
        frac[fin] = np.mod(arr[fin], 1) != 0
        bad = ~fin | frac
        if np.any(bad):
            raise not_integer(float(arr[bad][0]))
        oor = arr[(arr < 0) | (arr >= n)]
        if oor.size:
            raise out_of_range(int(oor[0]))
        arr = arr.astype(np.int64)
    else:  # an integer dtype (uint64 beyond int64 included): range-check before the cast
        oor = arr[(arr < 0) | (arr >= n)]
        if oor.size:
            raise out_of_range(int(oor[0]))
        arr = arr.astype(np.int64)
    uniq = np.sort(arr)  # sort + neighbour test: ~10x cheaper than np.unique on tiny requests
    rep = uniq[1:][uniq[1:] == uniq[:-1]]
    if rep.size:
        raise ValidationError(
            f"{name} repeats index {int(rep[0])}; each row can be forgotten once"
        )
    if already_removed is not None:
        again = uniq[np.asarray(already_removed)[uniq]]
        if again.size:
            raise ValidationError(
                f"{name} holds index {int(again[0])}, which an earlier request already removed"
            )
    return uniq


def unit_rows(*, tol: float = 1e-6, **kwargs: Any) -> np.ndarray:
    """Validate that every row of a 2-D array has L2 norm <= 1 (+tol).

    The certified convex bounds (Guo et al. 2020) assume ``||x_i||_2 <= 1``; the unlearners
    check it with ``tol=0``. The norm is computed in float64; the error names the first
    row above ``1 + tol`` and by how much it exceeds 1. Use
    :func:`certun.data.normalize_rows` (a per-row map that leaks nothing) to enforce it: its
    rows have norm at most ``1 - (d + 2) u``, under which every summation order computes a
    norm ``<= 1`` (``proofs/unit_rows.md``).
    """
    name, value = _one(kwargs)
    arr = finite_array(ndim=2, **{name: value})
    norms = np.linalg.norm(np.asarray(arr, dtype=np.float64), axis=1)
    over = np.flatnonzero(norms > 1.0 + tol)
    if over.size:
        i = int(over[0])
        excess = float(norms[i]) - 1.0
        shown = f"1 + {excess:.2g}" if excess < 1e-3 else f"{float(norms[i]):.6g}"
        more = f" (and {over.size - 1} more row(s))" if over.size > 1 else ""
        raise ValidationError(
            f"{name} row {i} has L2 norm {shown} > 1{more}; the certified bounds assume "
            "||x_i|| <= 1: apply certun.data.normalize_rows first (a per-row map, no "
            "dataset-wide statistic)"
        )
    return arr


def labels_pm1(**kwargs: Any) -> np.ndarray:
    """Validate binary labels in {-1, +1}."""
    name, value = _one(kwargs)
    arr = finite_array(ndim=1, **{name: value})
    vals = np.unique(arr)
    if not np.all(np.isin(vals, (-1, 1))):
        raise ValidationError(
            f"{name} must hold binary labels in {{-1, +1}}, got values {vals[:5].tolist()}"
        )
    return arr


def class_ids(y: Any, num_classes: int | None = None, *, name: str = "y",
              complete: bool = True) -> tuple[np.ndarray, int]:
    """Validate integer class ids ``0..K-1``; return them as ``int64`` and ``K``.

    Args:
      y: 1-D labels.
      num_classes: ``K`` (``>= 2``); ``None`` infers ``K = max(y) + 1``.
      name: argument name used in error messages.
      complete: require every class ``0..K-1`` to occur (training sets); ``False`` for a
        few replacement rows.

    Raises:
      ValidationError: for non-integer or negative ids, an id ``>= num_classes``,
        ``num_classes < 2``, or (``complete``) a single class or ids with gaps.
    """
    arr = finite_array(ndim=1, **{name: y})
    vals = np.unique(arr)
    if not np.all(np.mod(vals, 1) == 0) or vals.min() < 0:
        raise ValidationError(
            f"{name} must hold integer class ids 0..K-1 (or binary labels in {{-1, +1}} "
            f"without num_classes), got values {vals[:5].tolist()}")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise ValidationError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if num_classes < 2:
            raise ValidationError(
                f"num_classes={num_classes} is not a classifier: pass num_classes >= 2 for "
                "one-vs-rest over class ids 0..K-1, or leave it unset for binary labels in "
                "{-1, +1}")
    K = int(num_classes) if num_classes is not None else int(vals.max()) + 1
    if vals.max() >= K:
        raise ValidationError(
            f"{name} holds class id {int(vals.max())} >= num_classes={K}; class ids run "
            f"0..{K - 1}: raise num_classes or relabel")
    if complete:
        if vals.size < 2:
            raise ValidationError(
                f"{name} holds a single class ({vals[0]:g}); a classifier needs at least two "
                "classes among its training labels")
        missing = np.setdiff1d(np.arange(K), vals)
        if missing.size:
            raise ValidationError(
                f"{name} has no row of class id(s) {missing[:5].tolist()} of 0..{K - 1}: class "
                "ids must be consecutive with every class present (gaps would train empty "
                "heads); relabel, e.g. y = np.unique(y, return_inverse=True)[1]")
    return arr.astype(np.int64), K


def targets(loss: Any, y: Any, num_classes: int | None = None, *, name: str = "y",
            complete: bool = True) -> np.ndarray:
    """``(n, K)`` float64 targets of a GLM: the one place certun normalises labels.

    The rules (every unlearner's ``init``, :func:`certun.release.targets` and
    :func:`certun.sisa.sisa` go through here):

    * ``loss="squared"`` (ridge): real-valued ``y`` of shape ``(n,)`` (one head) or
      ``(n, K)`` (``K`` heads); ``num_classes`` must be unset.
    * ``loss="logistic"``, ``num_classes`` unset: ``y`` of shape ``(n,)`` with binary labels
      in ``{-1, +1}`` gives one model (both labels must occur); integer class ids
      ``0..K-1`` with ``K >= 3`` give ``K`` one-vs-rest heads. Labels ``{0, 1}`` are
      **refused**, not guessed: pass ``2 * y - 1`` (1 -> +1, 0 -> -1) for one binary model
      or ``num_classes=2`` for two one-vs-rest heads.
    * ``loss="logistic"`` with ``num_classes=K >= 2``: class ids ``0..K-1``, ``K`` heads.
    * Always refused for a logistic model: a 2-D ``y`` (``(n, 1)``, one-hot ``(n, K)``),
      ``num_classes < 2``, and (``complete=True``, training sets) a single class or class
      ids with gaps (``{0, 2}``, ``{5, 7}``), which would train heads with no positive row.

    Args:
      loss: ``"logistic"`` or ``"squared"`` (or a loss object with that ``name``).
      y: labels or targets.
      num_classes: number of one-vs-rest heads for class ids.
      name: argument name used in error messages.
      complete: see above; ``False`` for replacement rows.

    Returns:
      ``(n, K)`` float64 targets (``+-1`` for logistic heads).

    Raises:
      ValidationError: as listed above; the message names ``y`` (or ``num_classes``) and
        the fix.
    """
    lname = getattr(loss, "name", loss)
    arr = finite_array(ndim=(1, 2), **{name: y})
    if lname == "squared":
        if num_classes is not None:
            raise ValidationError(
                f"num_classes={num_classes!r} applies to classification only; ridge (loss "
                f"'squared') takes real-valued {name}: leave num_classes unset")
        return np.asarray(arr, np.float64).reshape(arr.shape[0], -1)
    if arr.ndim != 1:
        fix = (f"pass {name}[:, 0] (labels in {{-1, +1}}, or class ids with num_classes)"
               if arr.shape[1] == 1 else
               f"pass class ids 0..K-1 (e.g. {name}.argmax(axis=1)) with num_classes=K")
        raise ValidationError(
            f"{name} must be 1-D labels of shape (n,) for a {lname} model, got shape "
            f"{arr.shape}; {fix}")
    if num_classes is None:
        vals = np.unique(arr)
        if np.all(np.isin(vals, (-1.0, 1.0))):
            if complete and vals.size < 2:
                raise ValidationError(
                    f"{name} holds the single label {vals[0]:+g}; a binary classifier needs "
                    "both -1 and +1 among its training labels")
            return np.asarray(arr, np.float64)[:, None]
        if np.all(np.isin(vals, (0.0, 1.0))):
            raise ValidationError(
                f"{name} holds labels {{0, 1}}, which certun does not guess: pass binary "
                f"labels in {{-1, +1}} (e.g. 2 * {name} - 1, so 1 -> +1 and 0 -> -1) for one "
                "model, or num_classes=2 for two one-vs-rest heads")
    ids, K = class_ids(arr, num_classes, name=name, complete=complete)
    return np.where(ids[:, None] == np.arange(K)[None, :], 1.0, -1.0)
