"""The ``certun`` command line.

Subcommands live in :mod:`certun.commands` (one module each, listed in
``COMMANDS`` below). ``certun demo [--json]`` is the main job.

Every subcommand follows one contract:

* ``--json`` prints exactly **one JSON object** on stdout (keys sorted) and nothing else;
  progress and log lines, if any, go to stderr;
* an error -- a bad argument, a missing or corrupt ledger, a request the data cannot
  serve, a file that cannot be read or written -- prints **one line** on stderr,
  ``certun <command>: error: <argument>: <what is wrong and the fix>``, writes nothing
  on stdout (with or without ``--json``) and exits with status **2**;
* success exits with status 0.

``certun verify DIR --json`` is the one exception to "nothing on stdout": its verdict on a
damaged ledger (exit status 2, one line on stderr) is also printed as its JSON report.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from certun.commands._args import OneLineParser, fail

__all__ = ["main", "build_parser", "COMMANDS"]

#: The subcommand modules, in ``certun --help`` order. Add a command: write
#: ``certun/commands/<name>.py`` (``NAME``, ``HELP``, ``add_arguments``, ``run``) and list it.
COMMANDS = (
    "certun.commands.demo",
    "certun.commands.train",
    "certun.commands.forget",
    "certun.commands.status",
    "certun.commands.verify",
    "certun.commands.bench",
)


def _modules():
    return [importlib.import_module(m) for m in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``certun`` command."""
    p = OneLineParser(prog="certun", description="certun: certified machine unlearning in JAX")
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser)
    sub.required = True
    for mod in _modules():
        sp = sub.add_parser(mod.NAME, help=mod.HELP,
                            description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``certun`` console script.

    Returns the exit status: 0 on success, 2 on an error (one line on stderr). An
    operating-system error a command does not handle itself (a file that cannot be
    written, a full disk) is reported the same way instead of as a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from certun import x64

    try:
        with x64():  # float64 for the command, without changing JAX's global configuration
            return int(args._run(args))
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        return fail(args.command, f"{exc.strerror or exc}{where}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
