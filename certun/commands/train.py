"""``certun train``: train a certified model and start its ledger (:mod:`certun.ledger`)."""

from __future__ import annotations

import argparse

from certun.commands._args import count, emit, fail, positive, unit_interval

__all__ = ["NAME", "HELP", "DESCRIPTION", "DATASETS", "REGRESSION", "DEFAULTS", "add_arguments",
           "run"]

#: The subcommand (``certun train``).
NAME = "train"
#: One line for ``certun --help``.
HELP = "train a certified model (Guo et al. 2020) and create its deletion ledger"
#: The description ``certun train --help`` prints.
DESCRIPTION = ("Train L2-regularised logistic regression (one-vs-rest for multiclass data) or "
               "ridge regression with objective perturbation on a bundled dataset, and write a "
               "deletion ledger to --out (then use `certun forget` and `certun status`).")

#: The bundled datasets ``--dataset`` accepts.
DATASETS = ("digits_3v8", "breast_cancer", "digits", "diabetes", "mnist_5k")
#: The regression datasets (``--model ridge``); the others are classification.
REGRESSION = ("diabetes",)
#: Default hyperparameters of ``certun train``.
DEFAULTS = dict(lam=1e-2, sigma=1.5, epsilon=1.0, delta=1e-4, seed=0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``certun train``."""
    p.add_argument("--dataset", required=True, choices=DATASETS,
                   help="bundled dataset (diabetes is regression: use --model ridge)")
    p.add_argument("--model", choices=("logistic", "ridge"), default="logistic",
                   help="loss: logistic or ridge (squared) (default %(default)s)")
    p.add_argument("--lam", type=positive, default=DEFAULTS["lam"],
                   help="mean-scale L2 regularisation lambda (default %(default)s)")
    p.add_argument("--epsilon", type=positive, default=DEFAULTS["epsilon"],
                   help="certified-removal epsilon per released model (default %(default)s)")
    p.add_argument("--delta", type=unit_interval, default=DEFAULTS["delta"],
                   help="certified-removal delta (default %(default)s)")
    p.add_argument("--sigma", type=positive, default=DEFAULTS["sigma"],
                   help="std of the objective perturbation b; fixes the removal budget "
                        "sigma*epsilon/c (default %(default)s)")
    p.add_argument("--out", required=True,
                   help="new ledger directory (must not exist or be empty; built beside it and "
                        "renamed into place, never written into)")
    p.add_argument("--seed", type=count(0), default=DEFAULTS["seed"],
                   help="seed of the perturbation b (default %(default)s)")
    p.add_argument("--update", choices=("cached", "pcg"), default="cached",
                   help="how removals are solved: cached factor (O(d^2)) or PCG on the exact "
                        "Hessian (default %(default)s)")
    p.add_argument("--factor", choices=("eigh", "cholesky"), default="eigh",
                   help="factorisation of the cached path: eigh (exact shift) or cholesky "
                        "(fixed shift + Neumann series; ~4x cheaper folds) (default %(default)s)")
    p.add_argument("--remeasure", action="store_true",
                   help="when the accumulated bound would exceed the budget, measure the "
                        "residual exactly (one gradient pass) before refusing or retraining")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Train, write the ledger and print its public status (:meth:`Ledger.status`)."""
    import jax
    import numpy as np

    from certun._validate import ValidationError
    from certun.data import load
    from certun.ledger import Ledger
    from certun.models import glm

    regression = args.dataset in REGRESSION
    if regression and args.model != "ridge":
        return fail(NAME, f"--model logistic needs a classification dataset; {args.dataset!r} is "
                          "regression: use --model ridge")
    if not regression and args.model == "ridge":
        return fail(NAME, f"--model ridge needs a regression dataset ({', '.join(REGRESSION)}); "
                          f"{args.dataset!r} is classification: use --model logistic")
    try:
        ds = load(args.dataset)
    except ImportError as exc:
        return fail(NAME, f"--dataset {args.dataset}: {exc}")
    loss = "squared" if regression else "logistic"
    multiclass = ds.task == "multiclass"
    num_classes = int(np.max(ds.y_train)) + 1 if multiclass else None
    config = dict(lam=args.lam, sigma=args.sigma, epsilon=args.epsilon, delta=args.delta,
                  loss=loss, update=args.update)
    if args.remeasure:
        config["remeasure"] = True
    if args.factor != "eigh":
        if args.update != "cached":
            return fail(NAME, "--factor cholesky needs --update cached")
        config["factor"] = args.factor
    dataset = {"name": args.dataset, "task": ds.task, "n_train": int(ds.X_train.shape[0]),
               "n_test": int(ds.X_test.shape[0]), "d": int(ds.X_train.shape[1])}
    def metrics(params):
        if regression:
            pred = np.asarray(glm.predict(loss, params[:, None], ds.X_test))
            return {"test_rmse": float(np.sqrt(np.mean((pred - ds.y_test) ** 2)))}
        W = params if multiclass else params[:, None]
        return {"test_accuracy": glm.accuracy(loss, W, ds.X_test, ds.y_test)}

    try:
        led = Ledger.create(args.out, ds.X_train, ds.y_train, jax.random.key(args.seed),
                            config=config, num_classes=num_classes, dataset=dataset,
                            metrics=metrics)
    except ValidationError as exc:
        msg = str(exc)
        arg = "--out" if "out directory" in msg else ("--epsilon" if "epsilon" in msg else "")
        return fail(NAME, f"{arg}: {msg}" if arg else msg)
    except OSError as exc:
        return fail(NAME, f"--out: cannot write the ledger to {args.out!r} ({exc.strerror or exc}"
                          f"{': ' + str(exc.filename) if exc.filename else ''}); choose a "
                          "writable directory")
    st = led.status()
    st["ledger"] = str(led.path)
    metric = {k: st[k] for k in ("test_accuracy", "test_rmse") if k in st}
    text = (f"trained {args.model} on {args.dataset} (n={dataset['n_train']}, d={dataset['d']}), "
            f"ledger {led.path}\n"
            + ", ".join(f"{k} {v:.4f}" for k, v in metric.items())
            + f"\nbudget total {st['budget']['total']:.4g} (sum-scale gradient residual); "
              f"certificate: {st['certificate_status']}")
    emit(st, args.json, text)
    return 0
