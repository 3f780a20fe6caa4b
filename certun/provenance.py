"""What a results file records about how it was made: versions, commit, time, JSON-ready values.

Every ``experiments/*/run.py`` writes its ``results.json`` through these helpers, so that a
reproduction says which certun, JAX and NumPy produced it, from which commit (and whether the
tree had uncommitted changes), and when; and so that NumPy/JAX scalars and non-finite floats
never make a file that standard JSON readers reject.

Example::

    from certun import provenance
    record = {"versions": provenance.package_versions(), "git": provenance.git_info("."),
              "started": provenance.utc_now(), "gap": np.float64("nan")}
    provenance.write_results("out/results.json", record)   # "gap": null, atomically
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DISTRIBUTIONS", "json_ready", "utc_now", "package_versions", "git_info",
           "write_results"]

#: Distributions whose installed versions :func:`package_versions` records (``None`` if absent).
DISTRIBUTIONS = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "scikit-learn",
                 "dp-accounting", "jax-privacy", "matplotlib")


def json_ready(x: Any) -> Any:
    """A copy of ``x`` that :func:`json.dumps` writes as standard JSON.

    Dicts (keys made strings), lists and tuples are copied recursively; ``None``, booleans and
    strings are kept; integers (Python or NumPy) become ``int``; anything ``float()`` accepts
    (NumPy/JAX scalars, 0-d arrays) becomes ``float``, with NaN and infinities as ``None``;
    anything else becomes its ``str``.

    Args:
      x: a nest of results.

    Returns:
      The JSON-ready copy.
    """
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return v if math.isfinite(v) else None


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (e.g. ``2026-11-23T22:31:42+00:00``)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Installed versions of certun, of :data:`DISTRIBUTIONS` and of Python.

    Returns:
      ``{"certun": ..., "jax": ..., ..., "python": ...}``; a distribution that is not
      installed maps to ``None``.
    """
    from certun._version import __version__

    out: dict[str, str | None] = {"certun": __version__}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["python"] = platform.python_version()
    return out


def git_info(repo: str | os.PathLike) -> dict[str, Any]:
    """The commit checked out in ``repo`` and whether its tree has uncommitted changes.

    Args:
      repo: a directory inside a git checkout.

    Returns:
      ``{"commit": sha or None, "dirty": bool or None}``; both ``None`` when git is missing
      or ``repo`` is not a checkout.
    """
    info: dict[str, Any] = {"commit": None, "dirty": None}
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
            timeout=10, check=True).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain"], cwd=repo,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        info["dirty"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):  # git missing, not a checkout, timeout
        pass
    return info


def write_results(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``json_ready(obj)`` to ``path`` atomically (:func:`certun.io.atomic_write_json`).

    Args:
      path: the file to write (its directory must exist).
      obj: the results.

    Returns:
      ``path`` as a :class:`~pathlib.Path`.
    """
    from certun.io import atomic_write_json

    return atomic_write_json(path, json_ready(obj), sort_keys=False, allow_nan=False)
