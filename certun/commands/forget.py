"""``certun forget DIR``: serve one deletion request and commit it (:mod:`certun.ledger`)."""

from __future__ import annotations

import argparse
import re

from certun.commands._args import emit, fail

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run"]

#: The subcommand (``certun forget``).
NAME = "forget"
#: One line for ``certun --help``.
HELP = "remove training rows from a ledger's model (one certified request, committed durably)"
#: The description ``certun forget --help`` prints.
DESCRIPTION = ("Remove the given rows (positions in the original training set) in one summed "
               "Newton step, certify it, and commit model, state and journal record atomically. "
               "When the request would exceed the removal budget the model is retrained on the "
               "remaining rows with fresh noise and a new budget (recorded in the private "
               "part). The rows leave the directory when the request commits. Prints the "
               "record's public part only (see `certun status`).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``certun forget``."""
    p.add_argument("dir", metavar="DIR", help="ledger directory (from `certun train`)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--index", type=_row_index, nargs="+", metavar="I",
                   help="row indices to remove (positions in the original training set)")
    g.add_argument("--index-file", metavar="F",
                   help="file of row indices (separated by spaces, commas or newlines)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (the record's public part)")


def _row_index(text: str) -> int:
    """A row index: an integer >= 0 (any size; the ledger checks it against 0..n-1)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer row index 0..n-1 (n rows in the training set), got {text!r}"
        ) from None
    if v < 0:
        raise argparse.ArgumentTypeError(
            f"must be a row index in 0..n-1 (n rows in the training set), got {v}")
    return v


def _read_indices(path: str) -> list[int]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror}") from None
    tokens = [t for t in re.split(r"[\s,\[\]]+", text) if t]
    out = []
    for t in tokens:
        if not re.fullmatch(r"\d+", t):
            raise ValueError(f"{path!r} holds {t!r}, not a non-negative integer row index")
        out.append(int(t))
    return out


def run(args: argparse.Namespace) -> int:
    """Serve the request and print its record's public part."""
    from certun._validate import ValidationError
    from certun.ledger import Ledger, LedgerError
    from certun.unlearners.base import RetrainRequired

    if args.index_file is not None:
        try:
            indices = _read_indices(args.index_file)
        except ValueError as exc:
            return fail(NAME, f"--index-file: {exc}")
        arg = "--index-file"
    else:
        indices, arg = args.index, "--index"
    try:
        led = Ledger.open(args.dir)
    except LedgerError as exc:
        return fail(NAME, f"DIR: {exc}")
    try:
        rec, _ = led.forget(indices)
    except ValidationError as exc:
        return fail(NAME, f"{arg}: {exc}")
    except RetrainRequired as exc:
        return fail(NAME, f"{arg}: {exc}")
    except LedgerError as exc:
        return fail(NAME, f"DIR: {exc}")
    except OSError as exc:
        return fail(NAME, f"DIR: cannot commit the request to {args.dir!r} ({exc.strerror or exc}"
                          f"{': ' + str(exc.filename) if exc.filename else ''}); the ledger holds "
                          "the state before or after it: see `certun verify DIR`")
    pub = dict(rec["public"])
    pub["ledger"] = str(led.path)
    text = (f"request {pub['record']}: committed ({pub['removed_in_request']} rows; "
            f"{pub['removed_total']} removed in total, {pub['n_remaining']} remain)\n"
            f"certificate: {pub['certificate']['status']}; budget total "
            f"{pub['budget']['total']:.4g}")
    emit(pub, args.json, text)
    return 0
