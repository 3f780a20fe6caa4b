"""Argument types for the command line: errors become one-line messages (exit status 2)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["positive", "unit_interval", "count", "OneLineParser", "emit", "fail", "run_with_json"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:  # noqa: D102
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


def run_with_json(as_json: bool, run: Callable[[], tuple[int, Path | None]]) -> int:
    """Run an experiment, the ``--json`` way when asked; returns the exit status.

    ``run()`` does the work, logs to stdout, writes ``results.json`` and returns
    ``(exit status, path of results.json)``. Without ``as_json`` that is all. With it the
    log goes to stderr instead, and stdout receives exactly one JSON object: the
    ``results.json`` just written, plus its path as ``results_file`` (nothing when the run
    failed). Every ``experiments/*/run.py`` ``main`` goes through here.

    Args:
      as_json: the ``--json`` flag.
      run: the experiment, as a function of no arguments.
    """
    if not as_json:
        return run()[0]
    with contextlib.redirect_stdout(sys.stderr):
        code, path = run()
    if code == 0 and path is not None:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
        print(json.dumps({**results, "results_file": str(path)}, sort_keys=True))
    return code


def seeded_experiment_parser(description: str, name: str, dataset: str,
                             smoke_help: str) -> OneLineParser:
    """The options every seeded experiment takes: ``--out``, ``--smoke``, ``--seed``, ``--json``.

    Args:
      description: the experiment's one-line description.
      name: its folder under ``experiments/`` (for the default output directory's help).
      dataset: the dataset the results directory is named after.
      smoke_help: what ``--smoke`` runs.
    """
    ap = OneLineParser(description=description)
    ap.add_argument("--out", default=None, help="output directory "
                    f"(default experiments/{name}/results/{dataset}[-smoke])")
    ap.add_argument("--smoke", action="store_true", help=smoke_help)
    ap.add_argument("--seed", type=count(0), default=None,
                    help="run this seed and the next (an interval needs two repetitions)")
    ap.add_argument("--json", action="store_true",
                    help="log to stderr; print results.json as one JSON object on stdout")
    return ap


def experiment_seeds(args: argparse.Namespace, seeds: tuple[int, ...],
                     smoke_seeds: tuple[int, ...]) -> tuple[int, ...]:
    """The seeds a run of :func:`seeded_experiment_parser`'s options covers."""
    if args.seed is not None:
        return (args.seed, args.seed + 1)
    return tuple(smoke_seeds if args.smoke else seeds)


def experiment_out(args: argparse.Namespace, here: Path, dataset: str) -> Path:
    """The results directory (``--out``, else ``here/results/dataset[-smoke]``), created."""
    out = Path(args.out) if args.out else here / "results" / (dataset + ("-smoke" if args.smoke
                                                                         else ""))
    out.mkdir(parents=True, exist_ok=True)
    return out


def finish_experiment(out: Path, results: dict, t0: float) -> Path:
    """Stamp ``results`` (finish time, ``seconds`` since ``t0``) and write ``out/results.json``.

    The file is written atomically (:func:`certun.provenance.write_results`); returns its path.
    """
    import time

    from certun.provenance import utc_now, write_results

    results["timestamps"]["finished"] = utc_now()
    results["seconds"] = time.perf_counter() - t0
    return write_results(out / "results.json", results)
