#!/usr/bin/env python
"""Deletion requests that raise a group-fairness gap, and a screening defence (diabetes, sex).

    python experiments/fairness_deletion/run.py            # 30 seeds
    python experiments/fairness_deletion/run.py --smoke    # CI

Per seed: split the diabetes data, train a binary L2-logistic model, let the adversary
delete 5% of the training rows chosen by the influence of each row on the demographic-parity
gap (certun/audits/fairness.py), retrain exactly (what certified unlearners imitate), and
measure the demographic-parity and equalised-odds gaps on the test split. Baselines: as
many random deletions; the defence holds requests whose predicted gap change exceeds a
threshold calibrated on honest random requests. Reports means over seeds with 95%
t-intervals of the paired differences.
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

import jax  # noqa: E402
import numpy as np  # noqa: E402

from certun.commands._args import experiment_out, experiment_seeds, finish_experiment  # noqa: E402
from certun.provenance import git_info, json_ready, package_versions, utc_now  # noqa: E402,E501


def _load_config():
    spec = importlib.util.spec_from_file_location("certun_experiments_fairness_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()


def _log(msg: str) -> None:
    print(msg, flush=True)


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diabetes features (certun's fixed scales, bias, unit rows), +-1 labels, sex group."""
    from sklearn.datasets import load_diabetes

    from certun.data import normalize_rows
    from certun.data.bundled import DIABETES_FEATURE_SCALES

    d = load_diabetes(scaled=False)
    raw = np.asarray(d.data, np.float64)
    X = np.concatenate([raw / np.asarray(DIABETES_FEATURE_SCALES), np.ones((len(raw), 1))], 1)
    y = np.where(np.asarray(d.target) > cfg.TARGET_THRESHOLD, 1.0, -1.0)
    return normalize_rows(X), y, (raw[:, 1] == 2).astype(np.int64)


_FIT = []


def fit(X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Exact (re)training: Newton on the present rows (certun's glm.fit, compiled once)."""
    import jax.numpy as jnp

    from certun.models import glm

    if not _FIT:
        _FIT.append(jax.jit(lambda X, Y, m: glm.fit("logistic", X, Y, cfg.LAM, None, m,
                                                    tol=1e-10).params))
    W = _FIT[0](jnp.asarray(X), jnp.asarray(y)[:, None], jnp.asarray(mask, jnp.float64))
    return np.asarray(W)[:, 0]


def run_seed(seed: int, X, y, A) -> dict:
    """One seed: attack, random deletions and the defence on one split."""
    from certun.audits import fairness, targeted

    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    ntr = int(0.75 * len(y))
    tr, te = perm[:ntr], perm[ntr:]
    Xtr, ytr, Atr, Xte, yte, Ate = X[tr], y[tr], A[tr], X[te], y[te], A[te]
    k = max(1, int(cfg.BUDGET_FRACTION * ntr))
    w = fit(Xtr, ytr, np.ones(ntr))

    def gaps(wv):
        pred = (Xte @ wv > 0).astype(float)
        return (abs(fairness.demographic_parity_gap(pred, Ate)),
                fairness.equalized_odds_gap(pred, yte, Ate), float(np.mean((2 * pred - 1) == yte)))

    infl = fairness.gap_influence(w, Xtr, ytr, cfg.LAM, Xtr, Atr)
    g0 = fairness.demographic_parity_gap(1 / (1 + np.exp(-(Xtr @ w))), Atr)
    S = fairness.craft_fairness_deletions(infl, g0, k)

    def without(idx):
        m = np.ones(ntr)
        m[np.asarray(idx, np.int64)] = 0
        return fit(Xtr, ytr, m)

    honest = rng.permutation(ntr)
    cal, ev = honest[:cfg.HONEST_CALIBRATION], honest[cfg.HONEST_CALIBRATION:]
    thr = targeted.influence_threshold(np.abs(infl[cal]), false_positive_rate=cfg.DEFENCE_FPR)
    fpr = float(np.mean(np.abs(infl[ev]) > thr))
    kept = S[np.abs(infl[S]) <= thr]
    R = rng.choice(ntr, k, replace=False)
    base, att, rnd = gaps(w), gaps(without(S)), gaps(without(R))
    dfd = gaps(without(kept)) if len(kept) else base
    out = {"seed": seed, "n_train": ntr, "budget": k, "threshold": thr,
           "false_positive_rate": fpr, "discarded": float(1 - len(kept) / len(S))}
    for name, v in (("before", base), ("attack", att), ("random", rnd), ("defended", dfd)):
        out[f"dp_{name}"], out[f"eo_{name}"], out[f"acc_{name}"] = v
    return out


def make_plot(pooled: dict, out: Path) -> list[str]:
    """DP and EO gaps before / after each deletion policy (95% CIs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["before", "random", "attack", "defended"]
    fig, axs = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, m in zip(axs, ("dp", "eo"), strict=True):
        ks = [f"{m}_{n}" for n in names]
        mu = [pooled[k]["mean"] for k in ks]
        e = np.array([[pooled[k]["mean"] - pooled[k]["ci"][0], pooled[k]["ci"][1] -
                       pooled[k]["mean"]] for k in ks]).T
        ax.bar(names, mu, yerr=np.maximum(e, 0), capsize=4, color=["C7", "C0", "C3", "C2"])
        ax.set_title({"dp": "demographic-parity gap", "eo": "equalised-odds gap"}[m])
    axs[0].set_ylabel("test gap by sex (mean, 95% CI)")
    fig.suptitle("Diabetes (sex): 5% deletions chosen to raise the gap")
    fig.tight_layout()
    fig.savefig(out / "fairness_deletion.png", dpi=120)
    plt.close(fig)
    return ["fairness_deletion.png"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import seeded_experiment_parser

    return seeded_experiment_parser(
        "Fairness manipulation through deletion requests.", "fairness_deletion", "diabetes",
        "3 seeds (CI)")


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    jax.config.update("jax_enable_x64", True)
    from certun.audits.stats import mean_ci

    t0, started = time.perf_counter(), utc_now()
    seeds = experiment_seeds(args, cfg.SEEDS, cfg.SMOKE_SEEDS)
    out = experiment_out(args, HERE, "diabetes")
    X, y, A = load()
    _log(f"fairness_deletion: diabetes n={len(y)}, sex groups {np.bincount(A).tolist()}, "
         f"seeds {list(seeds)}")
    per_seed = [run_seed(s, X, y, A) for s in seeds]
    keys = [k for k in per_seed[0] if k not in ("seed", "n_train", "budget")]
    pooled = {k: mean_ci([r[k] for r in per_seed]) for k in keys}
    for m in ("dp", "eo"):
        pooled[f"{m}_rise_attack"] = mean_ci([r[f"{m}_attack"] - r[f"{m}_before"]
                                              for r in per_seed])
        pooled[f"{m}_attack_minus_random"] = mean_ci([r[f"{m}_attack"] - r[f"{m}_random"]
                                                      for r in per_seed])
        pooled[f"{m}_attack_minus_defended"] = mean_ci([r[f"{m}_attack"] - r[f"{m}_defended"]
                                                        for r in per_seed])
    acceptance = {
        "dp_gap_rises": {"ci": pooled["dp_rise_attack"]["ci"],
                         "pass": pooled["dp_rise_attack"]["ci"][0] > 0},
        "defence_lowers_it": {"ci": pooled["dp_attack_minus_defended"]["ci"],
                              "pass": pooled["dp_attack_minus_defended"]["ci"][0] > 0},
        "defence_fpr_at_most_10pct": {"value": pooled["false_positive_rate"]["mean"],
                                      "pass": pooled["false_positive_rate"]["mean"] <= 0.10},
    }
    results = {
        "experiment": "fairness_deletion", "seeds": list(seeds),
        "versions": package_versions(), "git": git_info(REPO),
        "timestamps": {"started": started, "finished": None},
        "command": [sys.executable, str(Path(__file__).resolve()),
                    *(argv if argv is not None else sys.argv[1:])],
        "dataset": {"name": "diabetes", "sensitive_attribute": "sex (raw value 2 = group 1)",
                    "label": f"progression > {cfg.TARGET_THRESHOLD}"},
        "config": {"smoke": bool(args.smoke), "lam": cfg.LAM,
                   "budget_fraction": cfg.BUDGET_FRACTION, "defence_fpr": cfg.DEFENCE_FPR},
        "threat": "deletion requests chosen to raise a fairness gap; exact retraining honours "
                  "them, so certification does not protect against it",
        "pooled": pooled, "per_seed": per_seed, "acceptance": acceptance,
    }
    results["plots"] = make_plot(json_ready(pooled), out)
    finish_experiment(out, results, t0)
    for k, p in pooled.items():
        _log(f"{k:30s} {p['mean']:.4f} [{p['ci'][0]:.4f}, {p['ci'][1]:.4f}]")
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
