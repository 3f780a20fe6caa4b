#!/usr/bin/env python
"""Bertran et al. (NeurIPS 2024)'s reconstruction of deleted records, against certun's unlearners.

    python experiments/bertran2024/run.py            # diabetes ridge + 2 logistic data sets
    python experiments/bertran2024/run.py --smoke    # 12 deletions, diabetes, 4 methods (CI)

For every training row ``z`` (one deletion at a time, from the original model) and every
method -- exact retraining, Guo et al.'s certified removal (shared ``b``), certun's private
release on top of retraining, and the uncertified shortcuts -- the attacker takes the model
before and after, computes ``g = H (theta' - theta) - lambda theta`` with the exact Hessian
of the remaining rows (an oracle upper bound) or a public-data estimate, and is scored by
the cosine between ``g`` and ``x_z`` (oriented by the bias coordinate for diabetes; up to
sign for the logistic models). The averaging baseline (mean of the public rows) and the
private release's test error are reported next to it. Writes ``results.json`` and plots.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if importlib.util.find_spec("certun") is None:  # running from a checkout without installing
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from certun.provenance import (  # noqa: E402
    git_info,
    json_ready,
    package_versions,
    utc_now,
    write_results,
)


def _load_config():
    spec = importlib.util.spec_from_file_location("certun_experiments_bertran2024_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()


def _log(msg: str) -> None:
    print(msg, flush=True)


def public_standardise(X_priv: np.ndarray, X_pub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise with the *public* rows' statistics, append a bias of 1, normalise rows."""
    from certun.data import normalize_rows

    mu, sd = X_pub.mean(0), X_pub.std(0)
    live = sd > 1e-12

    def f(A):
        Z = np.zeros_like(A)
        Z[:, live] = (A[:, live] - mu[live]) / sd[live]
        return normalize_rows(np.concatenate([Z, np.ones((A.shape[0], 1))], 1))

    return f(X_priv), f(X_pub)


def load(name: str):
    """A dataset split in two, standardised with statistics of the public half only."""
    from certun import data

    ds = {"diabetes": data.load_diabetes, "breast_cancer": data.load_breast_cancer,
          "digits_3v8": data.load_digits_3v8}[name](seed=0)
    X, Xp = public_standardise(ds.X_train, ds.X_test)
    return X, ds.y_train, Xp, ds.y_test, ds.info


def make_method(name: str, loss: str, lam: float):
    """The unlearner (or uncertified shortcut) called ``name``."""
    import certun
    from certun.audits import baselines
    from certun.release import private_release

    if name == "retraining":
        return certun.exact_retraining(lam=lam, loss=loss, tol=1e-12)
    if name == "certified_removal":
        return certun.certified_removal(lam=lam, sigma=cfg.GUO_SIGMA, epsilon=cfg.GUO_EPSILON,
                                        delta=cfg.GUO_DELTA, loss=loss,
                                        update="pcg" if loss == "logistic" else "auto")
    if name == "private_release":
        return private_release(certun.exact_retraining(lam=lam, loss=loss, tol=1e-12), lam=lam,
                               epsilon=cfg.RELEASE_EPSILON, delta=cfg.RELEASE_DELTA, loss=loss,
                               label_bound=cfg.LABEL_BOUND if loss == "squared" else None)
    if name == "newton_noiseless":
        return baselines.newton_shortcut(lam=lam, loss=loss)
    if name == "finetune_retained":
        return baselines.finetune_shortcut(lam=lam, loss=loss, steps=cfg.FINETUNE_STEPS)
    return baselines.gradient_ascent_shortcut(lam=lam, loss=loss, steps=cfg.ASCENT_STEPS)


METHODS = ("retraining", "certified_removal", "private_release", "newton_noiseless",
           "finetune_retained", "gradient_ascent_forget")
NEWTON_TYPE = ("certified_removal", "newton_noiseless")  # H at theta (exact for a Newton step)


def _stats(v: list[float]) -> dict:
    """Mean, median, 10th percentile and minimum of the cosines over deletions."""
    a = np.asarray(v)
    return {"mean": float(a.mean()), "median": float(np.median(a)),
            "p10": float(np.quantile(a, 0.1)), "min": float(a.min()), "n": int(a.size)}


def run_setting(name: str, loss: str, lam_bertran: float, max_del: int | None, seed: int,
                methods: tuple[str, ...] = METHODS) -> dict:
    """Reconstruct every deleted row of one dataset at one lambda, for each method."""
    from certun.audits import reconstruction as rc

    X, y, Xp, yp, info = load(name)
    n, d = X.shape
    lam = lam_bertran / n
    order = np.random.default_rng(seed).permutation(n)
    dels = order if max_del is None else order[:max_del]
    ebias = np.eye(d)[-1]
    avg = rc.averaging_baseline(Xp)
    out: dict[str, Any] = {"dataset": name, "loss": loss, "lambda_bertran": lam_bertran,
                           "lam": lam, "n": n, "m_public": int(Xp.shape[0]), "d": d,
                           "deletions": int(dels.size), "methods": {}}

    def sim(g, x):
        return rc.cosine(rc.orient(g, ebias), x) if loss == "squared" else rc.abs_cosine(g, x)

    out["averaging_baseline"] = _stats([sim(avg, X[z]) for z in dels])
    for m in methods:
        t0 = time.perf_counter()
        unl = make_method(m, loss, lam)
        st = unl.init(X, y, jax.random.fold_in(jax.random.key(seed), 1))
        th0 = np.asarray(unl.params(st))
        cos = {"exact_hessian": [], "public_hessian": []}
        err, cert, refused = [], None, 0
        for z in dels:
            res = unl.unlearn(st, [int(z)])
            if res.params is None:  # certified removal refused (budget): nothing published
                refused += 1
                continue
            th1 = np.asarray(res.params)
            keep = np.delete(np.arange(n), z)
            at = th0 if (m in NEWTON_TYPE or loss == "squared") else th1
            He = rc.exact_hessian(loss, at, X[keep], y[keep], lam)
            Hp = rc.public_hessian(loss, at, Xp, lam, n - 1)
            cos["exact_hessian"].append(sim(rc.reconstruct(th0, th1, He, lam), X[z]))
            cos["public_hessian"].append(sim(rc.reconstruct(th0, th1, Hp, lam), X[z]))
            if m == "private_release":
                err.append(_test_error(loss, th1, Xp, yp))
                cert = res.certificate
        row = {k: _stats(v) if v else None for k, v in cos.items()}
        row["refused"] = refused
        row["hessian_at"] = "theta (before)" if (m in NEWTON_TYPE or loss == "squared") \
            else "theta' (after)"
        row["test_error_original"] = _test_error(loss, th0, Xp, yp)
        row["seconds"] = time.perf_counter() - t0
        if m == "private_release":
            row["test_error_released_mean"] = float(np.mean(err))
            row["test_error_noiseless"] = _test_error(loss, np.asarray(st.noiseless), Xp, yp)
            row["certificate"] = {"threat": cert.threat, "adjacency": cert.adjacency,
                                  "epsilon": cert.epsilon, "delta": cert.delta,
                                  "epsilon_composed": cert.epsilon_composed,
                                  "releases": cert.releases, "sigma": cert.sigma,
                                  "sensitivity": cert.sensitivity}
        out["methods"][m] = row
        ex, pu = row["exact_hessian"], row["public_hessian"]
        _log(f"  {name} lambda={lam_bertran:g} {m:24s} exact "
             f"{ex['mean'] if ex else float('nan'):.4f} public "
             f"{pu['mean'] if pu else float('nan'):.4f} refused {refused} "
             f"({row['seconds']:.1f}s)")
    return out


def _test_error(loss: str, th: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    s = X @ np.asarray(th).reshape(-1)
    if loss == "squared":
        return float(np.mean((s - y) ** 2))  # mean squared error
    return float(np.mean(np.where(s >= 0, 1.0, -1.0) != y))  # error rate


def make_plots(results: dict, out: Path) -> list[str]:
    """Draw the figures into ``out``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    sets = results["settings"]
    fig, axes = plt.subplots(1, len(sets), figsize=(3.3 * len(sets), 3.8), squeeze=False,
                             sharey=True)
    for ax, s in zip(axes[0], sets, strict=False):
        ms = list(s["methods"])
        xs = np.arange(len(ms))
        for off, att, col in ((-0.2, "exact_hessian", "C0"), (0.2, "public_hessian", "C1")):
            ax.bar(xs + off, [(s["methods"][k][att] or {"mean": 0.0})["mean"] for k in ms], 0.4,
                   color=col,
                   label=att.replace("_", " "))  # refused-only rows drawn as 0
        ax.axhline(s["averaging_baseline"]["mean"], color="k", ls=":", lw=1,
                   label="averaging baseline")
        ax.set_xticks(xs, [k.replace("_", "\n") for k in ms], fontsize=6)
        ax.set_title(f"{s['dataset']} ({s['loss']}), lambda={s['lambda_bertran']:g}", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("mean cosine(reconstruction, deleted x)")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "cosine_by_method.png", dpi=120)
    plt.close(fig)
    files.append("cosine_by_method.png")
    return files


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import OneLineParser  # usage errors: one line, exit 2

    ap = OneLineParser(description="Bertran et al. (2024) reconstruction audit.")
    ap.add_argument("--out", default=None,
                    help="output directory (default experiments/bertran2024/results/all[-smoke])")
    ap.add_argument("--smoke", action="store_true",
                    help="12 deletions, diabetes only, 4 methods (CI)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the deletion order")
    ap.add_argument("--json", action="store_true",
                    help="log to stderr; print results.json as one JSON object on stdout")
    return ap


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    """The experiment: ``(exit status, path of results.json)``; logs on stdout."""
    jax.config.update("jax_enable_x64", True)
    t_start, started = time.perf_counter(), utc_now()

    seed = cfg.SEED if args.seed is None else args.seed
    if seed < 0:
        print(f"error: --seed must be >= 0, got {seed}", file=sys.stderr)
        return 2, None
    max_del = cfg.SMOKE_MAX_DELETIONS if args.smoke else cfg.MAX_DELETIONS
    log_sets = cfg.SMOKE_LOGISTIC_DATASETS if args.smoke else cfg.LOGISTIC_DATASETS
    out = Path(args.out) if args.out else HERE / "results" / ("all-smoke" if args.smoke else "all")
    out.mkdir(parents=True, exist_ok=True)
    _log(f"bertran2024: seed {seed}; deletions per setting: {max_del or 'all'}")
    methods = cfg.SMOKE_METHODS if args.smoke else METHODS
    from certun.progress import progress_bar

    todo = ([("diabetes", "squared", lb) for lb in cfg.RIDGE_LAMBDAS]
            + [(name, "logistic", lb) for name in log_sets for lb in cfg.LOGISTIC_LAMBDAS])
    settings = []
    # a bar on stderr when it is a terminal (CERTUN_PROGRESS=0 turns it off); host loop only
    with progress_bar(len(todo), "bertran2024 settings") as bar:
        for name, loss, lb in todo:
            settings.append(run_setting(name, loss, lb, max_del, seed, methods))
            bar.advance(1, info=f"{name} lambda={lb:g}")

    ridge = [s for s in settings if s["dataset"] == "diabetes"]
    best = max(ridge, key=lambda s: s["methods"]["retraining"]["public_hessian"]["mean"])
    acc = {
        "exact_hessian_retraining": {
            "value": min(s["methods"]["retraining"]["exact_hessian"]["mean"] for s in ridge),
            "pass": all(s["methods"]["retraining"]["exact_hessian"]["mean"] > 0.99 for s in ridge)},
        "exact_hessian_certified_removal": {
            "value": min(s["methods"]["certified_removal"]["exact_hessian"]["mean"]
                         for s in ridge),
            "pass": all(s["methods"]["certified_removal"]["exact_hessian"]["mean"] > 0.99
                        for s in ridge)},
        "public_hessian_best_lambda": {
            "lambda": best["lambda_bertran"],
            "value": best["methods"]["retraining"]["public_hessian"]["mean"],
            "pass": best["methods"]["retraining"]["public_hessian"]["mean"] >= 0.95},
        "private_release": {
            "lambda": best["lambda_bertran"],
            "exact_hessian": best["methods"]["private_release"]["exact_hessian"]["mean"],
            "public_hessian": best["methods"]["private_release"]["public_hessian"]["mean"],
            "test_mse_released": best["methods"]["private_release"]["test_error_released_mean"],
            "test_mse_noiseless": best["methods"]["private_release"]["test_error_noiseless"],
            "pass": max(best["methods"]["private_release"]["exact_hessian"]["mean"],
                        best["methods"]["private_release"]["public_hessian"]["mean"]) < 0.5},
    }
    results = {
        "experiment": "bertran2024", "seed": seed, "versions": package_versions(),
        "git": git_info(REPO), "timestamps": {"started": started, "finished": None},
        "command": [sys.executable, str(Path(__file__).resolve()),
                    *(argv if argv is not None else sys.argv[1:])],
        "config": {"smoke": bool(args.smoke), "ridge_lambdas": list(cfg.RIDGE_LAMBDAS),
                   "logistic_lambdas": list(cfg.LOGISTIC_LAMBDAS),
                   "logistic_datasets": list(log_sets), "max_deletions": max_del,
                   "methods": list(methods),
                   "guo": {"sigma": cfg.GUO_SIGMA, "epsilon": cfg.GUO_EPSILON,
                           "delta": cfg.GUO_DELTA},
                   "release": {"epsilon": cfg.RELEASE_EPSILON, "delta": cfg.RELEASE_DELTA,
                               "label_bound": cfg.LABEL_BOUND},
                   "similarity": "diabetes: cosine after orienting by the bias coordinate; "
                                 "logistic: |cosine| (the sign of l' is not identified)",
                   "preprocessing": "standardised with the public split's statistics, bias 1 "
                                    "appended, rows normalised"},
        "threat": "an observer of the parameters before and after one deletion with public "
                  "data (Bertran et al.); retraining and certified removal do not cover it",
        "settings": settings, "acceptance": acc,
    }
    results["plots"] = make_plots(json_ready(results), out)
    results["timestamps"]["finished"] = utc_now()
    results["seconds"] = time.perf_counter() - t_start
    write_results(out / "results.json", results)
    _log(f"acceptance: {json_ready(acc)}")
    _log(f"wrote {out / 'results.json'} ({results['seconds']:.0f}s)")
    return 0, out / "results.json"


def main(argv: list[str] | None = None) -> int:
    """Run from the command line (``--json``: see ``run_with_json``); returns the exit status."""
    from certun.commands._args import run_with_json

    args = build_parser().parse_args(argv)
    return run_with_json(args.json, lambda: _run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
