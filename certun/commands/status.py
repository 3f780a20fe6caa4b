"""``certun status DIR``: the public view of a ledger (:meth:`certun.ledger.Ledger.status`)."""

from __future__ import annotations

import argparse

from certun.commands._args import emit, fail

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run"]

#: The subcommand (``certun status``).
NAME = "status"
#: One line for ``certun --help``.
HELP = "show a ledger's public status: configuration, removals, certificate status"
#: The description ``certun status --help`` prints.
DESCRIPTION = ("Print the public view of a deletion ledger: configuration, epsilon, delta, "
               "sigma, the numbers of requests, removed and remaining rows, the budget total, "
               "the certificate's public view, timestamps and held-out test metrics. Nothing "
               "that depends on the training data beyond what the certificate covers (budget "
               "used, retrains, bounds, noise, indices) is shown.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``certun status``."""
    p.add_argument("dir", metavar="DIR", help="ledger directory (from `certun train`)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Print the ledger's public status."""
    from certun.ledger import Ledger, LedgerError

    try:
        st = Ledger.open(args.dir).status()
    except LedgerError as exc:
        return fail(NAME, f"DIR: {exc}")
    ds = st["dataset"]
    text = (f"ledger {args.dir}: {st['mechanism']} ({st['model']}) on {ds.get('name', '?')}, "
            f"({st['epsilon']:g}, {st['delta']:g}), sigma {st['sigma']:g}\n"
            f"requests {st['requests']}, removed {st['removed']}, remaining {st['remaining']}\n"
            f"budget total {st['budget']['total']:.4g}; certificate: {st['certificate_status']}")
    emit(st, args.json, text)
    return 0
