"""``certun verify DIR``: check a ledger's checksums and replay its journal.

See :func:`certun.ledger.verify`. A damaged ledger is the command's verdict, not a usage
error: with ``--json`` the report is printed on stdout in both cases (``"ok": false`` and
exit status 2 when damaged, with the first problem on stderr as one line).
"""

from __future__ import annotations

import argparse

from certun.commands._args import emit, fail

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run"]

#: The subcommand (``certun verify``).
NAME = "verify"
#: One line for ``certun --help``.
HELP = "check a ledger: every checksum, and the journal replayed against the state"
#: The description ``certun verify --help`` prints.
DESCRIPTION = ("Check every SHA-256 of a deletion ledger (CURRENT, manifest, arrays, row chunks, "
               "the journal's hash chain), replay the journal against the stored state (removed "
               "rows, counters, zeroed rows, folded factor) and print a one-line verdict. Exit "
               "status 0 if the ledger is intact, 2 otherwise (the first problem on stderr).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``certun verify``."""
    p.add_argument("dir", metavar="DIR", help="ledger directory (from `certun train`)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (ok, generation, problems, what was checked)")


def run(args: argparse.Namespace) -> int:
    """Verify the ledger and print the verdict."""
    from certun.ledger import verify

    rep = verify(args.dir)
    if rep["ok"]:
        c = rep["checked"]
        emit(rep, args.json, f"ledger {args.dir}: intact (generation {rep['generation']}; "
                             f"{c['files']} files, {c['records']} journal records, "
                             f"{c['rows']} rows checked)")
        return 0
    if args.json:
        emit(rep, True, "")
    more = len(rep["problems"]) - 1
    return fail(NAME, f"DIR: {rep['problems'][0]}" + (f" (and {more} more problems; --json lists "
                                                       "them)" if more > 0 else ""))
