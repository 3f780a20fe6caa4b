"""The ``certun`` command line.

``certun demo [--k K] [--lam L] [--sigma S] [--epsilon E] [--delta D] [--seed N] [--json]``
runs :func:`certun.demo.run_demo`. Bad arguments exit with status 2 and one line
naming the argument.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(name: str):
    def conv(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (v > 0) or v == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
        return v

    return conv


def _unit_interval(name: str):
    def conv(text: str) -> float:
        v = _positive(name)(text)
        if not v < 1:
            raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text!r}")
        return v

    return conv


def _count(name: str, minimum: int):
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v

    return conv


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``certun`` command."""
    from certun.demo import DEFAULTS

    p = _OneLineParser(prog="certun", description="certun: certified machine unlearning in JAX")
    sub = p.add_subparsers(dest="command", parser_class=_OneLineParser)
    sub.required = True
    d = sub.add_parser("demo", help="certified removal on digits 3-vs-8 (Guo et al. 2020)",
                       description="Train certified logistic regression on digits 3-vs-8, remove k "
                                   "rows one at a time, retrain without them, compare.")
    d.add_argument("--k", type=_count("--k", 1), default=DEFAULTS["k"],
                   help="rows to remove (default %(default)s)")
    d.add_argument("--lam", type=_positive("--lam"), default=DEFAULTS["lam"],
                   help="mean-scale L2 regularisation (default %(default)s)")
    d.add_argument("--sigma", type=_positive("--sigma"), default=DEFAULTS["sigma"],
                   help="std of the objective perturbation b (default %(default)s)")
    d.add_argument("--epsilon", type=_positive("--epsilon"), default=DEFAULTS["epsilon"],
                   help="certified-removal epsilon (default %(default)s)")
    d.add_argument("--delta", type=_unit_interval("--delta"), default=DEFAULTS["delta"],
                   help="certified-removal delta (default %(default)s)")
    d.add_argument("--seed", type=_count("--seed", 0), default=DEFAULTS["seed"],
                   help="seed for b and the removed rows (default %(default)s)")
    d.add_argument("--bound", choices=("data_dependent", "worst_case"), default="data_dependent",
                   help="bound charged to the budget (default %(default)s)")
    d.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``certun`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import jax

    jax.config.update("jax_enable_x64", True)
    from certun._validate import ValidationError
    from certun.demo import format_report, run_demo

    if args.command == "demo":
        try:
            report = run_demo(k=args.k, lam=args.lam, sigma=args.sigma, epsilon=args.epsilon,
                              delta=args.delta, seed=args.seed, bound=args.bound)
        except ValidationError as exc:
            print(f"certun demo: error: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(report, sort_keys=True))
        else:
            print(format_report(report))
        return 0
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
