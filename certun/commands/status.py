"""``certun status DIR``: the public view of a ledger (:meth:`certun.ledger.Ledger.status`)."""

from __future__ import annotations

import argparse
from typing import Any

from certun.commands._args import emit, fail

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run"]

#: The subcommand (``certun status``).
NAME = "status"
#: One line for ``certun --help``.
HELP = "show a ledger's public status: configuration, removals, certificate status"
#: The description ``certun status --help`` prints.
DESCRIPTION = ("Print the public view of a deletion ledger: configuration, epsilon, delta, "
               "sigma, the numbers of requests, removed and remaining rows, the budget total, "
               "the certificate's public view, timestamps and the held-out test metrics of the "
               "current published model (and of the model at training). Nothing "
               "that depends on the training data beyond what the certificate covers (budget "
               "used, retrains, bounds, noise, indices) is shown.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``certun status``."""
    p.add_argument("dir", metavar="DIR", help="ledger directory (from `certun train`)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def current_metrics(led: Any) -> dict[str, float]:
    """Held-out metrics of the ledger's **current** published model.

    The test split of a bundled dataset is public and deterministic (``certun.data.load``),
    so it is reloaded by name and the published model evaluated on it; ``{}`` for a dataset
    that cannot be reloaded (the status then shows the training-time metrics only).
    """
    import numpy as np

    from certun.data import load
    from certun.models import glm

    ds_info = led.dataset or {}
    name = ds_info.get("name")
    if not name:
        return {}
    try:
        ds = load(name)
    except Exception:  # noqa: BLE001 - not a bundled name, or its optional package is missing
        return {}
    if int(ds.X_test.shape[0]) != int(ds_info.get("n_test", -1)):
        return {}
    unl, state = led.unlearner, led.state
    params = np.asarray(unl.params(state))
    W = params[:, None] if params.ndim == 1 else params
    if ds.task == "regression":
        pred = np.asarray(glm.predict("squared", W, ds.X_test))
        return {"test_rmse": float(np.sqrt(np.mean((pred - ds.y_test) ** 2)))}
    return {"test_accuracy": glm.accuracy("logistic", W, ds.X_test, ds.y_test)}


def run(args: argparse.Namespace) -> int:
    """Print the ledger's public status."""
    from certun.ledger import Ledger, LedgerError

    try:
        led = Ledger.open(args.dir)
        st = led.status()
    except LedgerError as exc:
        return fail(NAME, f"DIR: {exc}")
    current = current_metrics(led)
    for k, v in current.items():  # the current model's; the training-time value is kept
        if k in st:
            st[f"{k}_at_training"] = st[k]
        st[k] = v
    ds = st["dataset"]
    text = (f"ledger {args.dir}: {st['mechanism']} ({st['model']}) on {ds.get('name', '?')}, "
            f"({st['epsilon']:g}, {st['delta']:g}), sigma {st['sigma']:g}\n"
            f"requests {st['requests']}, removed {st['removed']}, remaining {st['remaining']}\n"
            f"budget total {st['budget']['total']:.4g}; certificate: {st['certificate_status']}")
    for k in ("test_accuracy", "test_rmse"):
        if k in st:
            then = st.get(f"{k}_at_training")
            text += (f"\n{k.replace('_', ' ')} of the current model {st[k]:.4f}"
                     + ("" if then is None else f" (at training {then:.4f})"))
    emit(st, args.json, text)
    return 0
