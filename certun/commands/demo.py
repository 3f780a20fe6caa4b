"""``certun demo``: certified removal on digits 3-vs-8, end to end (see :mod:`certun.demo`)."""

from __future__ import annotations

import argparse

from certun.commands._args import count, emit, fail, positive, unit_interval

NAME = "demo"
HELP = "certified removal on digits 3-vs-8 (Guo et al. 2020)"
DESCRIPTION = ("Train certified logistic regression on digits 3-vs-8, remove k rows one at a "
               "time, retrain without them, compare.")


def add_arguments(d: argparse.ArgumentParser) -> None:
    """Options of ``certun demo``."""
    from certun.demo import DEFAULTS

    d.add_argument("--k", type=count(1), default=DEFAULTS["k"],
                   help="rows to remove (default %(default)s)")
    d.add_argument("--lam", type=positive, default=DEFAULTS["lam"],
                   help="mean-scale L2 regularisation (default %(default)s)")
    d.add_argument("--sigma", type=positive, default=DEFAULTS["sigma"],
                   help="std of the objective perturbation b (default %(default)s)")
    d.add_argument("--epsilon", type=positive, default=DEFAULTS["epsilon"],
                   help="certified-removal epsilon (default %(default)s)")
    d.add_argument("--delta", type=unit_interval, default=DEFAULTS["delta"],
                   help="certified-removal delta (default %(default)s)")
    d.add_argument("--seed", type=count(0), default=DEFAULTS["seed"],
                   help="seed for b and the removed rows (default %(default)s)")
    d.add_argument("--bound", choices=("data_dependent", "worst_case"), default="data_dependent",
                   help="bound charged to the budget (default %(default)s)")
    d.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its report."""
    from certun._validate import ValidationError
    from certun.demo import format_report, run_demo

    try:
        report = run_demo(k=args.k, lam=args.lam, sigma=args.sigma, epsilon=args.epsilon,
                          delta=args.delta, seed=args.seed, bound=args.bound)
    except ValidationError as exc:
        return fail(NAME, str(exc))
    emit(report, args.json, "" if args.json else format_report(report))
    return 0
