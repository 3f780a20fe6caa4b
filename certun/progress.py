"""Progress bars for host-side loops a user waits on (training epochs, experiment grids).

Where they are drawn: :func:`certun.nn.train` (``progress=True``, also through
``zhang_unlearning(progress=True)``), the grids of every ``experiments/*/run.py``, the
shadow model pairs of :func:`certun.audits.mia.collect_pairs`, the batches of
:func:`certun.audits.epsilon.sample_scores` and :func:`certun.audits.epsilon.guo_removal_audit`,
and the shards of :func:`certun.sisa.sisa` training.

One helper, one library (`rich <https://rich.readthedocs.io>`_, installed with flax), used
the same way everywhere:

* bars are drawn on **stderr**, and only when it is a terminal; set ``CERTUN_PROGRESS=0``
  to turn them off everywhere (``1`` forces them on, e.g. in a notebook); a ``progress=``
  or ``enable=`` argument (``--quiet`` in ``experiments/zhang2024``) wins over both;
* they wrap **host** loops only -- the Python loop between two compiled calls -- and never
  run inside ``jit``: the loop already waits for each call's result, so a bar adds no
  synchronisation and no cost to the compiled code. Loops that live inside one compiled
  call get no bar, because reporting from inside would need a host callback per step:
  LiSSA's ``repeats`` chains and ``depth`` steps (``lax.map`` over ``lax.scan`` in
  :func:`certun.primitives.lissa_solver`), the noisy gradient descent of Langevin
  unlearning and Descent-to-Delete (``lax.fori_loop``), CG/PCG (``lax.while_loop``) and the
  epochs inside one chunk of :func:`certun.nn.train` (a ``lax.scan``; the bar advances
  between chunks of ``log_every`` epochs);
* without ``rich`` (or with bars off) every helper is a no-op.

Example::

    from certun.progress import progress_bar

    with progress_bar(total=len(grid), description="grid") as bar:
        for point in grid:
            run(point)
            bar.advance(1, info=f"lambda={point.lam:g}")
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["ENV_VAR", "enabled", "progress_bar", "track", "ProgressBar"]

#: Environment variable: ``0``/``false``/``off`` disables bars, ``1``/``true``/``on`` forces them.
ENV_VAR = "CERTUN_PROGRESS"

T = TypeVar("T")

_LIVE: list[Any] = []  # the live rich display, if any (nested bars become tasks of it)


def enabled(flag: bool | None = None) -> bool:
    """Whether to draw a bar: ``flag`` if given, else ``$CERTUN_PROGRESS``, else stderr is a TTY."""
    if flag is not None:
        return bool(flag)
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


class ProgressBar:
    """A handle on one bar: :meth:`advance` it; a no-op when bars are off."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def active(self) -> bool:
        """Whether a bar is actually drawn."""
        return self._progress is not None

    def advance(self, steps: float = 1, info: str | None = None) -> None:
        """Move the bar ``steps`` forward and show ``info`` (e.g. the current loss) beside it."""
        if self._progress is None:
            return
        fields = {} if info is None else {"info": info}
        self._progress.update(self._task, advance=steps, **fields)


@contextlib.contextmanager
def progress_bar(total: float | None, description: str, *,
                 enable: bool | None = None, transient: bool = False) -> Iterator[ProgressBar]:
    """A context manager yielding a :class:`ProgressBar` on stderr (see the module docstring).

    Args:
      total: number of steps (``None``: unknown, the bar pulses).
      description: text before the bar.
      enable: force the bar on or off (default: :func:`enabled`).
      transient: remove the bar when the loop ends.

    Inside another bar's ``with`` block the new bar is drawn under it (one display) and
    removed when its own block ends.
    """
    if not enabled(enable):
        yield ProgressBar()
        return
    if _LIVE:  # rich draws one live display at a time: nest as another task of it
        prog = _LIVE[-1]
        task = prog.add_task(description, total=total, info="")
        try:
            yield ProgressBar(prog, task)
        finally:
            prog.remove_task(task)
        return
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
    except ImportError:  # rich is optional: no bar
        yield ProgressBar()
        return
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    # Lines printed to stdout while the bar is live go above it -- but only when stdout is the
    # same terminal; stdout redirected to a file stays in the file.
    try:
        redirect = sys.stdout.isatty()
    except (AttributeError, ValueError):
        redirect = False
    with Progress(*columns, console=Console(stderr=True), transient=transient,
                  redirect_stdout=redirect, redirect_stderr=False) as prog:
        task = prog.add_task(description, total=total, info="")
        _LIVE.append(prog)
        try:
            yield ProgressBar(prog, task)
        finally:
            _LIVE.pop()


def track(items: Iterable[T], description: str, *, total: float | None = None,
          enable: bool | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a bar (``total`` defaults to ``len(items)`` when defined)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, description, enable=enable) as bar:
        for item in items:
            yield item
            bar.advance(1)
