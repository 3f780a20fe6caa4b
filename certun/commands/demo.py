"""``certun demo``: certified unlearning on digits 3-vs-8, end to end (see :mod:`certun.demo`).

``--method guo`` (the default) is Guo et al.'s certified removal; ``--method langevin`` and
``--method d2d`` run Langevin unlearning and Descent-to-Delete with their own defaults
(:data:`certun.demo.METHOD_DEFAULTS`).
"""

from __future__ import annotations

import argparse

from certun.commands._args import count, emit, fail, positive, unit_interval

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run"]

#: The subcommand (``certun demo``).
NAME = "demo"
#: One line for ``certun --help``.
HELP = "certified unlearning on digits 3-vs-8 (Guo et al. 2020; --method langevin, d2d)"
#: The description ``certun demo --help`` prints.
DESCRIPTION = ("Train certified logistic regression on digits 3-vs-8, remove k rows one at a "
               "time, retrain without them, compare. --method picks the unlearner: guo "
               "(certified removal, default), langevin (Chien et al. 2024) or d2d "
               "(Descent-to-Delete, Neel et al. 2021).")


def add_arguments(d: argparse.ArgumentParser) -> None:
    """Options of ``certun demo``."""
    from certun._demo_defaults import METHOD_DEFAULTS, METHODS

    g, lg, dd = METHOD_DEFAULTS["guo"], METHOD_DEFAULTS["langevin"], METHOD_DEFAULTS["d2d"]

    def dflt(name: str) -> str:
        return f"(default guo {g[name]}, langevin {lg[name]}, d2d {dd[name]})"

    d.add_argument("--method", choices=METHODS, default="guo",
                   help="unlearner: guo (certified removal), langevin or d2d (default guo)")
    d.add_argument("--k", type=count(1), default=None, help="rows to remove " + dflt("k"))
    d.add_argument("--lam", type=positive, default=None,
                   help="mean-scale L2 regularisation " + dflt("lam"))
    d.add_argument("--sigma", type=positive, default=None,
                   help="guo: std of the objective perturbation b; langevin: the Langevin "
                        "noise; d2d: the noise of every release " + dflt("sigma"))
    d.add_argument("--epsilon", type=positive, default=None,
                   help="target epsilon " + dflt("epsilon"))
    d.add_argument("--delta", type=unit_interval, default=None, help="delta " + dflt("delta"))
    d.add_argument("--seed", type=count(0), default=None,
                   help="seed for the noise and the removed rows " + dflt("seed"))
    d.add_argument("--burn-in", type=count(0), default=None,
                   help=f"langevin: training steps (default {lg['burn_in']})")
    d.add_argument("--bound", choices=("data_dependent", "worst_case"), default="data_dependent",
                   help="bound charged to the budget (default %(default)s)")
    d.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its report."""
    from certun._validate import ValidationError
    from certun.demo import format_report, run_demo

    try:
        report = run_demo(k=args.k, lam=args.lam, sigma=args.sigma, epsilon=args.epsilon,
                          delta=args.delta, seed=args.seed, bound=args.bound,
                          method=args.method, burn_in=args.burn_in)
    except ValidationError as exc:
        return fail(NAME, str(exc))
    emit(report, args.json, "" if args.json else format_report(report))
    return 0
