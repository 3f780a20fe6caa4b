#!/usr/bin/env python
"""Chen et al. (CCS 2021)'s two-version membership inference against certun's unlearners.

    python experiments/chen2021/run.py            # 5 seeds, 8 methods (~10 min on 2 CPU cores)
    python experiments/chen2021/run.py --smoke    # 1 seed, 4 methods, small pipeline (CI)

The attacker sees the model before and after one deletion and guesses whether a queried
record was the deleted one or was never in the training set (docs/bibliography.md §11).
For every method of ``config.METHODS`` -- exact retraining, Guo et al.'s certified removal,
Sekhari et al.'s Newton unlearning, certun's private release (on top of retraining and of
certified removal), and three uncertified shortcuts -- the same sets, deletions and
negatives are used (paired comparison), the shadow pipeline trains a random-forest attack
on each posterior-pair feature and the target pipeline measures its AUC (DeLong interval,
and a cluster bootstrap over training sets: rows of one set share a model), Chen et al.'s
degradation count and rate against the classical MIA on the original model, and the test
accuracy of the published models. Retraining is also attacked under the label-only,
top-1 and temperature mitigations. Writes ``results.json`` (atomically) and PNG plots.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import math
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
    spec = importlib.util.spec_from_file_location("certun_experiments_chen2021_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()


def _log(msg: str) -> None:
    print(msg, flush=True)


def load_data() -> tuple[np.ndarray, np.ndarray, dict]:
    """Digits 3-vs-8, centred by the mean image of the other classes (see config.py)."""
    from sklearn.datasets import load_digits

    from certun.data import normalize_rows

    d = load_digits()
    Xr, t = np.asarray(d.data, np.float64) / 16.0, np.asarray(d.target)
    public_mean = Xr[~np.isin(t, cfg.CLASSES)].mean(0)
    sel = np.isin(t, cfg.CLASSES)
    X = normalize_rows(Xr[sel] - public_mean)
    y = np.where(t[sel] == cfg.CLASSES[0], 1.0, -1.0)
    info = {"name": cfg.DATASET, "n": int(X.shape[0]), "dim": int(X.shape[1]),
            "preprocessing": "pixels/16 minus the mean image of digits other than 3 and 8 "
                             "(disjoint public data), then normalize_rows",
            "label_map": {"3": 1.0, "8": -1.0}}
    return X, y, info


def make_method(name: str):
    """The unlearner of a table row (all with ``lam = config.LAM``)."""
    import certun
    from certun.audits import baselines
    from certun.release import private_release

    lam = cfg.LAM
    if name.startswith("release:"):
        inner = make_method(name.split(":", 1)[1])
        return private_release(inner, lam=lam, epsilon=cfg.RELEASE_EPSILON,
                               delta=cfg.RELEASE_DELTA)
    return {
        "retraining": lambda: certun.exact_retraining(lam=lam),
        "certified_removal": lambda: certun.certified_removal(
            lam=lam, sigma=cfg.GUO_SIGMA, epsilon=cfg.GUO_EPSILON, delta=cfg.GUO_DELTA,
                                                              update="pcg"),
        "newton_unlearning": lambda: certun.newton_unlearning(
            lam=lam, epsilon=cfg.SEKHARI_EPSILON, delta=cfg.SEKHARI_DELTA, max_removals=1),
        "newton_noiseless": lambda: baselines.newton_shortcut(lam=lam),
        "finetune_retained": lambda: baselines.finetune_shortcut(lam=lam,
                                                                 steps=cfg.FINETUNE_STEPS),
        "gradient_ascent_forget": lambda: baselines.gradient_ascent_shortcut(
            lam=lam, steps=cfg.ASCENT_STEPS),
    }[name]()


CERTIFIED = {"retraining": "reference (epsilon = 0 against retraining)",
             "certified_removal": "certified removal (indistinguishable from retraining)",
             "newton_unlearning": "certified (Sekhari et al.; vs noised retraining)",
             "newton_noiseless": "NOT certified", "finetune_retained": "NOT certified",
             "gradient_ascent_forget": "NOT certified"}


def certificate_summary(name: str, unl: Any, X: np.ndarray, y: np.ndarray) -> dict:
    """Threat and epsilons of one deletion with this method (the public certificate view)."""
    st = unl.init(X[: cfg.SET_SIZE], y[: cfg.SET_SIZE], jax.random.key(0))
    res = unl.unlearn(st, [0])
    if res.certificate is None:
        return {"status": "not certified", "threat": "none"}
    c = res.certificate
    return {"mechanism": c.mechanism, "status": c.status, "threat": c.threat,
            "adjacency": c.adjacency, "epsilon": c.epsilon, "delta": c.delta,
            "epsilon_composed": c.epsilon_composed, "releases": c.releases,
            "sigma": c.sigma, "sensitivity": c.sensitivity}


def attack_method(name: str, X, y, split, seed: int, S: int, U: int, temps, n_boot: int
                  ) -> dict:
    """Chen et al.'s two-version attack on one unlearner (and mitigations, for retraining)."""
    from certun.audits import mia
    from certun.audits.stats import auc_cluster_bootstrap

    unl = make_method(name)
    kw = dict(num_sets=S, deletions_per_set=U, set_size=cfg.SET_SIZE)
    base_key = jax.random.fold_in(jax.random.key(seed), 17)
    t0 = time.perf_counter()
    shadow = mia.collect_pairs(unl, X, y, split.shadow_positive, split.shadow_negative,
                               key=jax.random.fold_in(base_key, 1), seed=1000 * seed + 1, **kw)
    target = mia.collect_pairs(unl, X, y, split.target_positive, split.target_negative,
                               key=jax.random.fold_in(base_key, 2), seed=1000 * seed + 2, **kw)
    t_pipe = time.perf_counter() - t0

    def summarise(res) -> dict:
        out = {"auc": {}, "accuracy_attack": res.accuracy,
               "degradation_count": res.degradation_count,
               "degradation_rate": res.degradation_rate}
        yt = target.member
        for f, a in res.auc.items():
            row = {"auc": a.auc, "delong_ci": [a.lower, a.upper], "delong_se": a.se}
            if f in (cfg.HEADLINE_FEATURE, "basic_mia"):
                sc = res.scores[f]
                b = auc_cluster_bootstrap(sc[yt == 1], sc[yt == 0], target.set_id[yt == 1],
                                          target.set_id[yt == 0], num_resamples=n_boot,
                                          seed=seed)
                row.update(cluster_ci=[b.lower, b.upper], cluster_se=b.se)
            out["auc"][f] = row
        return out

    res = summarise(mia.chen_attack(shadow, target, classifier=cfg.CLASSIFIER, seed=seed))
    res.update(seconds_pipeline=t_pipe, n_target_rows=int(target.member.size),
               n_target_deletions=int(target.member.sum()),
               accuracy_original_mean=float(np.mean(target.accuracy)),
               accuracy_original_min=float(np.min(target.accuracy)),
               accuracy_unlearned_mean=float(np.mean(target.accuracy_unlearned)),
               accuracy_unlearned_min=float(np.min(target.accuracy_unlearned)))
    if name == "retraining":
        mits = {"label_only": lambda lg: mia.label_only(mia.posteriors(lg)),
                "top_1": lambda lg: mia.top_k(mia.posteriors(lg), 1)}
        for T in temps:
            mits[f"temperature_{T:g}"] = (lambda lg, T=T: mia.temperature(lg, T))
        res["mitigations"] = {
            k: summarise(mia.chen_attack(shadow, target, classifier=cfg.CLASSIFIER, seed=seed,
                                         mitigation=f, features=(cfg.HEADLINE_FEATURE,)))
            for k, f in mits.items()}
    return res


def pool(per_seed: list[dict], feature: str) -> dict:
    """AUC of ``feature`` pooled over seeds, with DeLong (and cluster bootstrap) intervals."""
    a = np.array([r["auc"][feature]["auc"] for r in per_seed])
    se_d = math.sqrt(sum(r["auc"][feature]["delong_se"] ** 2 for r in per_seed)) / len(a)
    out = {"auc_mean": float(a.mean()), "auc_per_seed": a.tolist(),
           "delong_ci": [float(a.mean() - 1.96 * se_d), float(a.mean() + 1.96 * se_d)]}
    if "cluster_se" in per_seed[0]["auc"][feature]:
        se_c = math.sqrt(sum(r["auc"][feature]["cluster_se"] ** 2 for r in per_seed)) / len(a)
        out["cluster_ci"] = [float(a.mean() - 1.96 * se_c), float(a.mean() + 1.96 * se_c)]
    return out


def make_plots(results: dict, out: Path) -> list[str]:
    """Draw the figures into ``out``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    methods = list(results["pooled"])
    f = results["config"]["headline_feature"]
    fig, ax = plt.subplots(figsize=(1.1 * len(methods) + 3, 4.2))
    xs = np.arange(len(methods))
    for off, feat, col, lab in ((-0.18, f, "C0", f"two-version attack ({f})"),
                                (0.18, "basic_mia", "C7", "classical MIA (one model)")):
        m = [results["pooled"][k][feat]["auc_mean"] for k in methods]
        ci = [results["pooled"][k][feat].get("cluster_ci",
                                             results["pooled"][k][feat]["delong_ci"])
              for k in methods]
        err = np.abs(np.array(ci).T - np.array(m))
        ax.bar(xs + off, m, 0.36, yerr=err, color=col, label=lab, capsize=3)
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set_xticks(xs, [k.replace("release:", "release/\n").replace("_", "\n") for k in methods],
                  fontsize=7)
    ax.set_ylabel("attack AUC (mean over seeds, 95% CI)")
    ax.set_ylim(0.3, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("Chen et al. two-version MIA on digits 3-vs-8 (target rows: "
                 f"{results['pooled'][methods[0]]['n_target_rows_per_seed']} per seed)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "auc_by_method.png", dpi=120)
    plt.close(fig)
    files.append("auc_by_method.png")

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, k in enumerate(methods):
        p = results["pooled"][k]
        ax.scatter(p["accuracy_original_mean"], p[f]["auc_mean"], color=f"C{i}", label=k)
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set_xlabel("test accuracy of the published original model")
    ax.set_ylabel(f"attack AUC ({f})")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_auc.png", dpi=120)
    plt.close(fig)
    files.append("accuracy_vs_auc.png")
    return files


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import OneLineParser  # usage errors: one line, exit 2

    ap = OneLineParser(description="Chen et al. (2021) two-version MIA audit.")
    ap.add_argument("--out", default=None,
                    help="output directory (default "
                         "experiments/chen2021/results/<dataset>[-smoke])")
    ap.add_argument("--smoke", action="store_true", help="1 seed, 4 methods (CI; < 1 minute)")
    ap.add_argument("--seed", type=int, default=None, help="run this one seed")
    ap.add_argument("--json", action="store_true",
                    help="log to stderr; print results.json as one JSON object on stdout")
    return ap


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    """The experiment: ``(exit status, path of results.json)``; logs on stdout."""
    jax.config.update("jax_enable_x64", True)
    t_start, started = time.perf_counter(), utc_now()
    from certun.audits import mia
    from certun.progress import progress_bar

    if args.seed is not None and args.seed < 0:
        print(f"error: --seed must be >= 0, got {args.seed}", file=sys.stderr)
        return 2, None
    if args.smoke:
        seeds, S, U = cfg.SMOKE_SEEDS, cfg.SMOKE_NUM_SETS, cfg.SMOKE_DELETIONS_PER_SET
        methods, temps, n_boot = cfg.SMOKE_METHODS, cfg.SMOKE_TEMPERATURES, \
            cfg.SMOKE_BOOTSTRAP_RESAMPLES
    else:
        seeds, S, U = cfg.SEEDS, cfg.NUM_SETS, cfg.DELETIONS_PER_SET
        methods, temps, n_boot = cfg.METHODS, cfg.TEMPERATURES, cfg.BOOTSTRAP_RESAMPLES
    if args.seed is not None:
        seeds = (args.seed,)
    out = Path(args.out) if args.out else HERE / "results" / (cfg.DATASET + ("-smoke" if
                                                                             args.smoke else ""))
    out.mkdir(parents=True, exist_ok=True)
    X, y, data_info = load_data()
    _log(f"chen2021: {data_info['name']} n={data_info['n']} d={data_info['dim']}; seeds "
         f"{list(seeds)}; {S} sets x {U} deletions per side; methods {list(methods)}")

    per_method: dict[str, list] = {m: [] for m in methods}
    # a bar on stderr when it is a terminal (CERTUN_PROGRESS=0 turns it off); host loop only
    with progress_bar(len(seeds) * len(methods), "chen2021 seeds x methods") as bar:
        for seed in seeds:
            split = mia.record_split(X.shape[0], seed=seed, disjoint=False)
            for m in methods:
                t0 = time.perf_counter()
                r = attack_method(m, X, y, split, seed, S, U, temps, n_boot)
                per_method[m].append(dict(r, seed=seed))
                bar.advance(1, info=f"seed {seed} {m}")
                a = r["auc"][cfg.HEADLINE_FEATURE]
                _log(f"  seed {seed} {m:26s} AUC {a['auc']:.3f} classical "
                     f"{r['auc']['basic_mia']['auc']:.3f} acc {r['accuracy_original_mean']:.3f} "
                     f"({time.perf_counter() - t0:.1f}s)")

    pooled = {}
    for m in methods:
        rs = per_method[m]
        p = {f: pool(rs, f) for f in rs[0]["auc"]}
        p.update(
            n_target_rows_per_seed=rs[0]["n_target_rows"],
            n_target_deletions_per_seed=rs[0]["n_target_deletions"],
            degradation_count=float(np.mean([r["degradation_count"] for r in rs])),
            degradation_rate=float(np.mean([r["degradation_rate"] for r in rs])),
            accuracy_original_mean=float(np.mean([r["accuracy_original_mean"] for r in rs])),
            accuracy_original_min=float(np.min([r["accuracy_original_min"] for r in rs])),
            accuracy_unlearned_mean=float(np.mean([r["accuracy_unlearned_mean"] for r in rs])),
            accuracy_unlearned_min=float(np.min([r["accuracy_unlearned_min"] for r in rs])),
            guarantee=CERTIFIED.get(m, "private release (DP of every published model)"),
            certificate=certificate_summary(m, make_method(m), X, y))
        if "mitigations" in rs[0]:
            p["mitigations"] = {k: pool([r["mitigations"][k] for r in rs], cfg.HEADLINE_FEATURE)
                                for k in rs[0]["mitigations"]}
        pooled[m] = p

    f = cfg.HEADLINE_FEATURE
    acc = {}
    if "retraining" in pooled and "certified_removal" in pooled:
        d = abs(pooled["certified_removal"][f]["auc_mean"] - pooled["retraining"][f]["auc_mean"])
        acc["certified_vs_retraining_auc_gap"] = {"value": d, "pass": d <= 0.05}
    if "release:retraining" in pooled:
        p = pooled["release:retraining"]
        ci = p[f]["cluster_ci"]
        acc["release_auc"] = {"value": p[f]["auc_mean"], "ci": ci,
                              "pass": abs(p[f]["auc_mean"] - 0.5) <= 0.05
                              and ci[0] <= 0.5 <= ci[1]}
        acc["release_accuracy"] = {"mean": p["accuracy_original_mean"],
                                   "unlearned_mean": p["accuracy_unlearned_mean"],
                                   "min": p["accuracy_original_min"],
                                   "pass": min(p["accuracy_original_mean"],
                                               p["accuracy_unlearned_mean"]) >= 0.85}
    acc["target_points_per_seed"] = {"value": pooled[methods[0]]["n_target_rows_per_seed"],
                                     "deletions": pooled[methods[0]]["n_target_deletions_per_seed"]}

    results = {
        "experiment": "chen2021", "seeds": list(seeds), "versions": package_versions(),
        "git": git_info(REPO), "timestamps": {"started": started, "finished": None},
        "command": [sys.executable, str(Path(__file__).resolve()),
                    *(argv if argv is not None else sys.argv[1:])],
        "dataset": data_info,
        "config": {"smoke": bool(args.smoke), "lam": cfg.LAM, "set_size": cfg.SET_SIZE,
                   "num_sets": S, "deletions_per_set": U, "methods": list(methods),
                   "classifier": cfg.CLASSIFIER, "headline_feature": f,
                   "temperatures": list(temps), "bootstrap_resamples": n_boot,
                   "guo": {"sigma": cfg.GUO_SIGMA, "epsilon": cfg.GUO_EPSILON,
                           "delta": cfg.GUO_DELTA},
                   "release": {"epsilon": cfg.RELEASE_EPSILON, "delta": cfg.RELEASE_DELTA},
                   "record_split": "shadow pools overlap the target's (disjoint=False)"},
        "threat": "an observer of the model before and after one deletion (Chen et al.); "
                  "certified removal and retraining do not cover it, the private release does",
        "pooled": pooled, "per_seed": per_method, "acceptance": acc,
    }
    results["plots"] = make_plots(json_ready(results), out)
    results["timestamps"]["finished"] = utc_now()
    results["seconds"] = time.perf_counter() - t_start
    write_results(out / "results.json", results)
    _log(f"\n{'method':28s} {'AUC ' + f:>18s} {'CI (cluster)':>16s} {'classical':>9s} "
         f"{'DegCount':>8s} {'acc':>6s}")
    for m, p in pooled.items():
        ci = p[f].get("cluster_ci", p[f]["delong_ci"])
        _log(f"{m:28s} {p[f]['auc_mean']:18.3f} [{ci[0]:.3f}, {ci[1]:.3f}] "
             f"{p['basic_mia']['auc_mean']:9.3f} {p['degradation_count']:8.2f} "
             f"{p['accuracy_original_mean']:6.3f}")
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
