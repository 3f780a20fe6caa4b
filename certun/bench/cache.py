"""The on-disk cache of oracle ensembles and audits, keyed by a configuration hash.

Each entry is one ``.npz`` (the arrays) and one manifest ``.json`` beside it, both written
atomically (:mod:`certun.io`). The manifest records the full configuration, its SHA-256
hash (the entry's name), certun's version and the SHA-256 of the ``.npz`` bytes. An entry is
used only if the manifest parses, its configuration equals the one asked for, and the
``.npz`` hashes to the recorded value; anything else (a truncated or corrupted file, a
missing manifest, a configuration change) counts as a miss, and the entry is rebuilt.

Where: ``$CERTUN_BENCH_CACHE`` if set, else the user cache directory (platformdirs' when
installed; otherwise ``$XDG_CACHE_HOME`` or ``~/.cache``) under ``certun/bench``; the
command line's ``--cache-dir`` overrides both.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from certun.io import atomic_write_bytes, atomic_write_json

__all__ = ["ENV_VAR", "default_cache_dir", "config_hash", "Cache"]

#: Environment variable that overrides the cache directory.
ENV_VAR = "CERTUN_BENCH_CACHE"


def default_cache_dir() -> Path:
    """``$CERTUN_BENCH_CACHE``, else the user cache directory's ``certun/bench``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("certun")) / "bench"
    except ImportError:  # pragma: no cover - platformdirs is optional
        pass
    if sys.platform == "darwin":  # pragma: no cover
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":  # pragma: no cover
        base = Path(os.environ.get("LOCALAPPDATA", Path.home()))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "certun" / "bench"


def _canonical(config: Any) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of a configuration."""
    return hashlib.sha256(_canonical(config).encode()).hexdigest()


class Cache:
    """A directory of cached array bundles (module docstring).

    Args:
      root: the directory (created on first write); ``None`` for :func:`default_cache_dir`.
      enabled: ``False`` reads and writes nothing (every lookup builds).
    """

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self.rebuilt: list[str] = []

    def paths(self, kind: str, config: Any) -> tuple[Path, Path, str]:
        """``(npz, manifest, hash)`` of the entry of ``config`` under ``kind``."""
        h = config_hash({"kind": kind, "config": config})
        d = self.root / kind
        return d / f"{h}.npz", d / f"{h}.json", h

    def load(self, kind: str, config: Any) -> dict[str, np.ndarray] | None:
        """The arrays of a valid entry, or ``None`` (missing, stale or damaged)."""
        if not self.enabled:
            return None
        npz, man, h = self.paths(kind, config)
        if not npz.exists() and not man.exists():
            return None
        try:
            meta = json.loads(man.read_text(encoding="utf-8"))
            blob = npz.read_bytes()
            ok = (meta.get("hash") == h and meta.get("config") == json.loads(_canonical(config))
                  and meta.get("sha256") == hashlib.sha256(blob).hexdigest())
            if ok:
                with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                    return {k: np.asarray(z[k]) for k in z.files}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self.rebuilt.append(f"{kind}/{h[:12]}")
        return None

    def save(self, kind: str, config: Any, arrays: dict[str, np.ndarray]) -> None:
        """Write an entry (the ``.npz`` first, then the manifest that validates it)."""
        if not self.enabled:
            return
        npz, man, h = self.paths(kind, config)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # pyright: ignore[reportArgumentType]
        blob = buf.getvalue()
        from certun._version import __version__

        atomic_write_bytes(npz, blob)
        atomic_write_json(man, {"hash": h, "kind": kind,
                                "config": json.loads(_canonical(config)),
                                "sha256": hashlib.sha256(blob).hexdigest(),
                                "bytes": len(blob), "certun": __version__}, sort_keys=True)

    def get_or_build(self, kind: str, config: Any,
                     build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The cached arrays of ``config``, built (and stored) on a miss."""
        got = self.load(kind, config)
        if got is not None:
            self.hits += 1
            return got
        self.misses += 1
        arrays = build()
        self.save(kind, config, arrays)
        return arrays
