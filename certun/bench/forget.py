"""Forget-set selectors: random rows, a whole class, the rows nearest a target.

Each selector returns sorted, distinct training-row positions. ``nearest`` is the hard case
of Data-Unlearn-Bench (the forget set is a tight cluster around one example, so the retained
data hold few rows like it): the ``size`` training rows closest in Euclidean distance to the
training row ``target`` (the target included).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from certun import _validate

__all__ = ["ForgetSpec", "SELECTORS", "select_forget", "parse_forget"]

#: The selector kinds.
SELECTORS = ("random", "class", "nearest")


class ForgetSpec(NamedTuple):
    """Which rows to forget.

    Attributes:
      kind: ``"random"``, ``"class"`` or ``"nearest"``.
      size: rows to forget (``class``: at most this many of the class, ``None`` for all).
      label: the class (``class`` only; a ``+-1`` label for binary tasks).
      target: the training row the ``nearest`` set surrounds.
      seed: the seed of ``random`` (and of the subsample of ``class``).
    """

    kind: str = "random"
    size: int | None = 10
    label: float | None = None
    target: int = 0
    seed: int = 0

    def describe(self) -> dict:
        """JSON-ready form."""
        return self._asdict()


def select_forget(spec: ForgetSpec, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The training rows ``spec`` selects (sorted positions into ``X``)."""
    kind = _validate.choice(SELECTORS, kind=spec.kind)
    n = int(np.shape(X)[0])
    if kind == "class":
        if spec.label is None:
            raise _validate.ValidationError("forget: kind 'class' needs a label (--forget-class)")
        rows = np.flatnonzero(np.asarray(y) == spec.label)
        if rows.size == 0:
            raise _validate.ValidationError(
                f"forget: no training row has label {spec.label!r}; labels present: "
                f"{sorted(set(np.asarray(y).tolist()))[:20]}")
        if spec.size is not None and spec.size < rows.size:
            rows = np.random.default_rng(spec.seed).choice(rows, size=spec.size, replace=False)
        out = np.sort(rows)
    else:
        size = _validate.integer(size=spec.size, minimum=1, maximum=n - 2)
        if kind == "random":
            out = np.sort(np.random.default_rng(spec.seed).choice(n, size=size, replace=False))
        else:
            t = _validate.integer(target=spec.target, minimum=0, maximum=n - 1)
            dist = np.linalg.norm(np.asarray(X) - np.asarray(X)[t], axis=1)
            dist[t] = -1.0  # the target first, whatever the ties
            out = np.sort(np.argsort(dist, kind="stable")[:size])
    if out.size >= n - 1:
        raise _validate.ValidationError(
            f"forget: the set holds {out.size} of {n} rows; at least 2 must remain")
    return out.astype(np.int64)


def parse_forget(text: str, seed: int = 0) -> ForgetSpec:
    """Parse the command line's ``--forget`` into a :class:`ForgetSpec`.

    Forms: ``random:SIZE``, ``class:LABEL[:SIZE]``, ``nearest:SIZE[@TARGET]``.
    """
    kind, _, rest = text.partition(":")
    try:
        if kind == "random":
            return ForgetSpec("random", int(rest or 10), seed=seed)
        if kind == "class":
            lab, _, size = rest.partition(":")
            return ForgetSpec("class", int(size) if size else None, float(lab), seed=seed)
        if kind == "nearest":
            size, _, tgt = rest.partition("@")
            return ForgetSpec("nearest", int(size or 10), target=int(tgt or 0), seed=seed)
    except ValueError:
        pass
    raise _validate.ValidationError(
        f"forget: {text!r} is not random:SIZE, class:LABEL[:SIZE] or nearest:SIZE[@TARGET]")
