r"""Atomic, durable file writes: nothing a user saved is ever half-overwritten.

:func:`atomic_write_bytes` writes to a temporary file in the destination's
directory, flushes and ``fsync``\ s it, renames it over the destination with
``os.replace`` (atomic on POSIX and Windows) and ``fsync``\ s the directory so the
rename itself survives a crash. A reader therefore sees either the old file or the
new one, never a mixture; on any error the temporary file is removed and the old
file is untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "fsync_dir"]


def fsync_dir(path: str | os.PathLike) -> None:
    """``fsync`` a directory so a rename inside it is durable (best effort where unsupported)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data`` (temp file, fsync, rename, directory fsync).

    Args:
      path: destination file; its parent directory is created if needed.
      data: the new content.

    Returns:
      The destination as a :class:`pathlib.Path`.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(p.parent)
    return p


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace ``path`` with ``text`` (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> Path:
    """Atomically write ``obj`` as JSON (``indent=2`` and a trailing newline by default).

    The JSON is fully serialised before the destination is touched, so an object
    that cannot be serialised leaves the old file as it was.
    """
    dumps_kwargs.setdefault("indent", 2)
    text = json.dumps(obj, **dumps_kwargs) + "\n"
    return atomic_write_text(path, text)
