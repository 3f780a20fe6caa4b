"""The ``certun`` command line.

Subcommands live in :mod:`certun.commands` (one module each, listed in
``COMMANDS`` below). ``certun demo [--json]`` is the main job. Bad arguments exit
with status 2 and one line naming the argument.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from certun.commands._args import OneLineParser

__all__ = ["main", "build_parser", "COMMANDS"]

# Add a command: write certun/commands/<name>.py (NAME, HELP, add_arguments, run) and list it.
COMMANDS = (
    "certun.commands.demo",
    "certun.commands.train",
    "certun.commands.forget",
    "certun.commands.status",
)


def _modules():
    return [importlib.import_module(m) for m in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``certun`` command."""
    p = OneLineParser(prog="certun", description="certun: certified machine unlearning in JAX")
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser)
    sub.required = True
    for mod in _modules():
        sp = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``certun`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import jax

    jax.config.update("jax_enable_x64", True)
    return int(args._run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
