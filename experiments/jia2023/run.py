#!/usr/bin/env python
"""Sparsity-aware unlearning (Jia et al., NeurIPS 2023), convex analogue on digits.

    python experiments/jia2023/run.py            # 20 seeds x 4 sparsities
    python experiments/jia2023/run.py --smoke    # CI

Per seed and sparsity: prune the trained model (one-shot magnitude, then retrain inside the
mask), forget 10% of the training rows with fine-tuning (FT), gradient ascent (GA), one
Newton step and, from the dense model, l1-sparse unlearning; compare with retraining inside
the same mask on UA, RA, TA and MIA-efficacy (Jia et al.'s metrics). Reports the average
absolute gap to retraining, dense vs sparse, with 95% t-intervals of the paired differences.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if importlib.util.find_spec("certun") is None:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from certun.commands._args import experiment_out, experiment_seeds, finish_experiment  # noqa: E402
from certun.provenance import git_info, json_ready, package_versions, utc_now  # noqa: E402,E501


def _load_config():
    spec = importlib.util.spec_from_file_location("certun_experiments_jia2023_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()
METRICS = ("UA", "RA", "TA", "MIA")
METHODS = ("FT", "GA", "Newton", "l1_sparse")


def _log(msg: str) -> None:
    print(msg, flush=True)


def run_seed(seed: int, sparsities) -> dict:
    """Gaps to retraining of every method at every sparsity, for one seed."""
    from certun.audits import sparsity as S
    from certun.data import load_digits

    ds = load_digits(seed=seed)
    X, y, Xt, yt, K = ds.X_train, ds.y_train, ds.X_test, ds.y_test, 10
    rng = np.random.default_rng(seed)
    f = rng.choice(len(y), int(cfg.FORGET_FRACTION * len(y)), replace=False)
    r = np.setdiff1d(np.arange(len(y)), f)
    Xr, yr, Xf, yf = X[r], y[r], X[f], y[f]
    dense = S.fit_masked(X, y, K, cfg.LAM)
    out = {"seed": seed}
    for sp in sparsities:
        M = S.magnitude_mask(dense, sp)
        Wo = S.fit_masked(X, y, K, cfg.LAM, M)
        ref = S.jia_metrics(S.fit_masked(Xr, yr, K, cfg.LAM, M), Xr, yr, Xf, yf, Xt, yt)
        models = {
            "FT": S.finetune(Wo, Xr, yr, cfg.LAM, M, steps=cfg.FT_STEPS, lr=cfg.FT_LR),
            "GA": S.gradient_ascent(Wo, Xf, yf, M, steps=cfg.GA_STEPS, lr=cfg.GA_LR),
            "Newton": S.newton_step(Wo, Xr, yr, cfg.LAM, M),
            "l1_sparse": S.finetune(Wo, Xr, yr, cfg.LAM, M, steps=cfg.FT_STEPS, lr=cfg.FT_LR,
                                    l1=cfg.L1),
        }
        for name, W in models.items():
            m = S.jia_metrics(W, Xr, yr, Xf, yf, Xt, yt)
            for k in METRICS:
                out[f"{name}_{sp}_{k}"] = m[k]
                out[f"{name}_{sp}_{k}_gap"] = abs(m[k] - ref[k])
            out[f"{name}_{sp}_avg_gap"] = float(np.mean([abs(m[k] - ref[k]) for k in METRICS]))
        for k in METRICS:
            out[f"retrain_{sp}_{k}"] = ref[k]
        out[f"original_{sp}_TA"] = S.accuracy(Wo, Xt, yt)
    return out


def make_plot(pooled: dict, sparsities, out: Path) -> list[str]:
    """Average gap to retraining vs sparsity, per method (95% CIs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in METHODS:
        mu = [pooled[f"{name}_{sp}_avg_gap"]["mean"] for sp in sparsities]
        lo = [pooled[f"{name}_{sp}_avg_gap"]["ci"][0] for sp in sparsities]
        hi = [pooled[f"{name}_{sp}_avg_gap"]["ci"][1] for sp in sparsities]
        ax.plot(sparsities, mu, marker="o", label=name)
        ax.fill_between(sparsities, lo, hi, alpha=0.2)
    ax.set_xlabel("sparsity (share of weights pruned)")
    ax.set_ylabel("avg |gap| to retraining (UA, RA, TA, MIA)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "jia2023.png", dpi=120)
    plt.close(fig)
    return ["jia2023.png"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import seeded_experiment_parser

    return seeded_experiment_parser(
        "Jia et al. (2023) sparsity-aware unlearning (convex).", "jia2023", "digits",
        "2 seeds, 2 sparsities (CI)")


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    from certun.audits.stats import mean_ci

    t0, started = time.perf_counter(), utc_now()
    seeds = experiment_seeds(args, cfg.SEEDS, cfg.SMOKE_SEEDS)
    sps = cfg.SMOKE_SPARSITIES if args.smoke else cfg.SPARSITIES
    out = experiment_out(args, HERE, "digits")
    _log(f"jia2023: digits, seeds {list(seeds)}, sparsities {list(sps)}")
    per_seed = [run_seed(s, sps) for s in seeds]
    pooled = {k: mean_ci([r[k] for r in per_seed]) for k in per_seed[0] if k != "seed"}
    dense, sparse = sps[0], sps[-1]
    shrink = {}
    for name in METHODS:
        for k in (*METRICS, "avg"):
            key = f"{k}_gap" if k != "avg" else "avg_gap"
            dl = mean_ci([r[f"{name}_{dense}_{key}"] - r[f"{name}_{sparse}_{key}"]
                          for r in per_seed])
            pooled[f"{name}_{key}_dense_minus_sparse"] = dl
            shrink[f"{name}_{k}"] = dl["ci"][0] > 0
    acceptance = {f"{m}_metrics_whose_gap_shrinks": [k for k in METRICS if shrink[f"{m}_{k}"]]
                  for m in METHODS}
    acceptance["any_method_two_metrics_shrink"] = any(
        len(v) >= 2 for v in acceptance.values())
    results = {
        "experiment": "jia2023", "seeds": list(seeds), "versions": package_versions(),
        "git": git_info(REPO), "timestamps": {"started": started, "finished": None},
        "command": [sys.executable, str(Path(__file__).resolve()),
                    *(argv if argv is not None else sys.argv[1:])],
        "dataset": {"name": "digits", "classes": 10},
        "config": {"smoke": bool(args.smoke), "lam": cfg.LAM, "sparsities": list(sps),
                   "forget_fraction": cfg.FORGET_FRACTION, "ft": [cfg.FT_STEPS, cfg.FT_LR],
                   "ga": [cfg.GA_STEPS, cfg.GA_LR], "l1": cfg.L1},
        "note": "convex analogue (one-vs-rest logistic), not the paper's ResNet-18/CIFAR-10",
        "pooled": pooled, "per_seed": per_seed, "acceptance": acceptance,
    }
    results["plots"] = make_plot(json_ready(pooled), sps, out)
    finish_experiment(out, results, t0)
    for name in METHODS:
        for sp in sps:
            p = pooled[f"{name}_{sp}_avg_gap"]
            _log(f"{name:10s} sparsity {sp:.1f}: avg gap {p['mean']:.4f} "
                 f"[{p['ci'][0]:.4f}, {p['ci'][1]:.4f}] " + " ".join(
                     f"{k} {pooled[f'{name}_{sp}_{k}_gap']['mean']:.4f}" for k in METRICS))
        p = pooled[f"{name}_avg_gap_dense_minus_sparse"]
        _log(f"{name:10s} dense - sparse avg gap {p['mean']:.4f} [{p['ci'][0]:.4f}, "
             f"{p['ci'][1]:.4f}]")
    _log(f"acceptance: {json_ready(acceptance)}")
    _log(f"wrote {out / 'results.json'} ({results['seconds']:.0f}s)")
    return 0, out / "results.json"


def main(argv: list[str] | None = None) -> int:
    """Run from the command line (``--json``: see ``run_with_json``); returns the exit status."""
    from certun.commands._args import run_with_json

    args = build_parser().parse_args(argv)
    return run_with_json(args.json, lambda: _run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
