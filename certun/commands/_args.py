"""Argument types for the command line: errors become one-line messages (exit status 2)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["positive", "unit_interval", "count", "OneLineParser", "emit", "fail"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive(text: str) -> float:
    """A finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (v > 0) or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


def unit_interval(text: str) -> float:
    """A number strictly between 0 and 1."""
    v = positive(text)
    if not v < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text!r}")
    return v


def count(minimum: int):
    """An integer >= ``minimum``."""

    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v

    return conv


def emit(obj: Any, as_json: bool, text: str) -> None:
    """Print ``obj`` as one JSON object on one line (``--json``, keys sorted) or ``text``."""
    if as_json:
        print(json.dumps(obj, sort_keys=True))
    else:
        print(text)


def fail(command: str, message: str) -> int:
    """Print a one-line error for ``certun <command>`` on stderr and return exit status 2.

    Line breaks inside ``message`` are folded into spaces, so the error is always one line;
    nothing is printed on stdout, with or without ``--json``.
    """
    print(f"certun {command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2
