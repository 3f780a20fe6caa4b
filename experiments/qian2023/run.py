#!/usr/bin/env python
"""Malicious deletion requests that flip chosen test points, and a gradient-influence defence.

    python experiments/qian2023/run.py            # 20 seeds x 50 targets (a few minutes, 2 cores)
    python experiments/qian2023/run.py --smoke    # 2 seeds x 10 targets (CI)

Qian et al. (KDD 2023), implemented from a description (see certun/audits/targeted.py). For
every seed: train a one-vs-rest logistic model on digits; draw targets among correctly
classified test points; the attacker crafts at most 1% of n deletions per target
(influence relaxation); deletions are honoured by exact retraining (and by certified removal
for a few targets); the defence screens requests by their gradient influence on a public
reference set. Reports attack success with and without the defence, random-deletion
success, clean accuracy, and the defence's false-positive rate on honest requests, each as
a mean over seeds with a 95% t-interval. Writes ``results.json`` and ``qian2023.png``.
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

from certun.commands._args import experiment_out, experiment_seeds  # noqa: E402
from certun.provenance import git_info, json_ready, package_versions, utc_now, write_results  # noqa: E402,E501


def _load_config():
    spec = importlib.util.spec_from_file_location("certun_experiments_qian2023_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()


def _log(msg: str) -> None:
    print(msg, flush=True)


_FIT = []


def _fit_jit():
    """One compiled exact-retraining fit for every seed (same shapes)."""
    if not _FIT:
        from certun.models import glm

        _FIT.append(jax.jit(lambda X, Y, m: glm.fit("logistic", X, Y, cfg.LAM, None, m,
                                                    tol=1e-8).params))
    return _FIT[0]


def run_seed(seed: int, num_targets: int, guo_targets: int) -> dict:
    """One seed: split, train, attack ``num_targets`` targets with and without the defence."""
    import jax.numpy as jnp

    import certun
    from certun.audits import targeted
    from certun.data import load_digits
    from certun.models import glm

    ds = load_digits(seed=seed)
    X, y, Xte, yte = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    n, K = X.shape[0], 10
    rng = np.random.default_rng(1000 + seed)
    perm = rng.permutation(len(yte))
    n_ref = int(cfg.REFERENCE_FRACTION * len(yte))
    X_ref, (Xt, yt) = Xte[perm[:n_ref]], (Xte[perm[n_ref:]], yte[perm[n_ref:]])
    Xj, Yj = jnp.asarray(X), glm.one_vs_rest_targets(jnp.asarray(y), K)
    tm = time.perf_counter()

    def fit(mask):
        return np.asarray(_fit_jit()(Xj, Yj, jnp.asarray(mask, jnp.float64)))

    W = fit(np.ones(n))
    model = targeted.influence_model(W, X, y, lam=cfg.LAM)
    budget = max(1, int(cfg.BUDGET_FRACTION * n))
    ok = np.flatnonzero((Xt @ W).argmax(1) == yt)
    targets = rng.choice(ok, size=num_targets, replace=False)

    honest = rng.permutation(n)
    cal, ev = honest[:cfg.HONEST_CALIBRATION], honest[cfg.HONEST_CALIBRATION:
                                                       cfg.HONEST_CALIBRATION +
                                                       cfg.HONEST_EVALUATION]
    thr = targeted.influence_threshold(targeted.request_influence(model, cal, X_ref),
                                       false_positive_rate=cfg.DEFENCE_FPR)
    fpr = float(np.mean(targeted.request_influence(model, ev, X_ref) > thr))

    def acc(Wm):
        return float(np.mean((Xt @ Wm).argmax(1) == yt))

    flips, flips_def, flips_rand, acc_att, acc_def, caught = [], [], [], [], [], []
    honest_batch_flagged = []
    for i, t in enumerate(targets):
        xt, ytt = Xt[t], int(yt[t])
        S = targeted.craft_deletions(model, xt, ytt, budget=budget,
                                     competitors=cfg.COMPETITORS)
        m = np.ones(n)
        m[S] = 0
        Wa = fit(m)
        flips.append(float((xt @ Wa).argmax() != ytt))
        acc_att.append(acc(Wa))
        accepted, discarded = targeted.screen(model, S, X_ref, thr)
        caught.append(len(discarded) / len(S))
        m = np.ones(n)
        m[accepted] = 0
        Wd = W if not len(accepted) else (Wa if not len(discarded) else fit(m))
        flips_def.append(float((xt @ Wd).argmax() != ytt))
        acc_def.append(acc(Wd))
        R = rng.choice(n, size=budget, replace=False)
        honest_batch_flagged.append(float(len(targeted.screen(model, R, X_ref, thr)[1]) > 0))
        if i < cfg.RANDOM_TARGETS:
            m = np.ones(n)
            m[R] = 0
            flips_rand.append(float((xt @ fit(m)).argmax() != ytt))

    t_attack = time.perf_counter() - tm
    guo_flips = []
    if guo_targets:
        unl = certun.certified_removal(lam=cfg.LAM, sigma=cfg.GUO_SIGMA, epsilon=cfg.GUO_EPSILON,
                                       delta=cfg.GUO_DELTA, auto_retrain=True)
        st = unl.init(X, y, jax.random.key(seed), num_classes=K)
        for t in targets[:guo_targets]:
            xt, ytt = Xt[t], int(yt[t])
            S = targeted.craft_deletions(model, xt, ytt, budget=budget,
                                         competitors=cfg.COMPETITORS)
            r = unl.unlearn(st, S, jax.random.key(seed + 7))
            Wg = np.asarray(r.params).reshape(X.shape[1], K)
            guo_flips.append(float((xt @ Wg).argmax() != ytt))
    return {
        "seed": seed, "n": int(n), "budget": budget, "threshold": thr,
        "clean_accuracy": acc(W), "success": float(np.mean(flips)),
        "success_defended": float(np.mean(flips_def)),
        "success_random_deletions": float(np.mean(flips_rand)),
        "accuracy_after_attack": float(np.mean(acc_att)),
        "accuracy_after_defended": float(np.mean(acc_def)),
        "malicious_requests_discarded": float(np.mean(caught)),
        "false_positive_rate": fpr,
        "honest_batch_flag_rate": float(np.mean(honest_batch_flagged)),
        "success_certified_removal": float(np.mean(guo_flips)) if guo_flips else None,
        "seconds_attack": t_attack, "seconds_total": time.perf_counter() - tm,
    }


def make_plot(pooled: dict, out: Path) -> list[str]:
    """Bar chart of the pooled rates with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["success", "success_defended", "success_random_deletions",
            "false_positive_rate", "malicious_requests_discarded"]
    labels = ["attack\n(no defence)", "attack\n(defence)", "random\ndeletions",
              "defence FPR\n(honest)", "malicious\ndiscarded"]
    means = [pooled[k]["mean"] for k in keys]
    err = np.array([[pooled[k]["mean"] - pooled[k]["ci"][0], pooled[k]["ci"][1] -
                     pooled[k]["mean"]] for k in keys]).T
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(labels, means, yerr=np.maximum(err, 0), capsize=4,
           color=["C3", "C2", "C7", "C1", "C0"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("rate (mean over seeds, 95% CI)")
    ax.set_title("Malicious deletion requests on digits (<= 1% of n per target)")
    fig.tight_layout()
    fig.savefig(out / "qian2023.png", dpi=120)
    plt.close(fig)
    return ["qian2023.png"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import seeded_experiment_parser

    return seeded_experiment_parser(
        "Qian et al. (2023) malicious deletion requests.", "qian2023", "digits",
        "2 seeds x 10 targets (CI)")


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    jax.config.update("jax_enable_x64", True)
    from certun.audits.stats import mean_ci

    t0, started = time.perf_counter(), utc_now()
    seeds = experiment_seeds(args, cfg.SEEDS, cfg.SMOKE_SEEDS)
    T = cfg.SMOKE_NUM_TARGETS if args.smoke else cfg.NUM_TARGETS
    G = cfg.SMOKE_GUO_TARGETS if args.smoke else cfg.GUO_TARGETS
    out = experiment_out(args, HERE, "digits")
    _log(f"qian2023: digits, seeds {list(seeds)}, {T} targets per seed")
    per_seed = []
    for s in seeds:
        r = run_seed(s, T, G if s in cfg.GUO_SEEDS else 0)
        per_seed.append(r)
        _log(f"  seed {s}: success {r['success']:.2f} defended {r['success_defended']:.2f} "
             f"random {r['success_random_deletions']:.2f} FPR {r['false_positive_rate']:.3f} "
             f"guo {r['success_certified_removal']} acc {r['clean_accuracy']:.3f} "
             f"({r['seconds_attack']:.0f}s/{r['seconds_total']:.0f}s)")
    keys = ["success", "success_defended", "success_random_deletions", "clean_accuracy",
            "accuracy_after_attack", "accuracy_after_defended", "false_positive_rate",
            "honest_batch_flag_rate", "malicious_requests_discarded"]
    pooled = {k: mean_ci([r[k] for r in per_seed]) for k in keys}
    guo = [r["success_certified_removal"] for r in per_seed
           if r["success_certified_removal"] is not None]
    pooled["success_certified_removal"] = {"mean": float(np.mean(guo)) if guo else None,
                                           "seeds": len(guo),
                                           "targets_per_seed": G}
    pooled["success_minus_defended"] = mean_ci([r["success"] - r["success_defended"]
                                                for r in per_seed])
    pooled["success_minus_random"] = mean_ci([r["success"] - r["success_random_deletions"]
                                              for r in per_seed])
    sa, sd, fp = (pooled["success"]["mean"], pooled["success_defended"]["mean"],
                  pooled["false_positive_rate"]["mean"])
    acceptance = {
        "budget_at_most_1pct": {"budget": per_seed[0]["budget"], "n": per_seed[0]["n"],
                                "pass": per_seed[0]["budget"] <= 0.01 * per_seed[0]["n"]},
        "success_above_half": {"value": sa, "pass": sa > 0.5},
        "defended_at_most_half_of_undefended": {"value": sd, "pass": sd <= 0.5 * sa and
                                                pooled["success_minus_defended"][
                                                    "excludes_zero"]},
        "false_positive_rate_at_most_10pct": {"value": fp, "pass": fp <= 0.10},
    }
    results = {
        "experiment": "qian2023", "seeds": list(seeds), "versions": package_versions(),
        "git": git_info(REPO), "timestamps": {"started": started, "finished": None},
        "command": [sys.executable, str(Path(__file__).resolve()),
                    *(argv if argv is not None else sys.argv[1:])],
        "dataset": {"name": "digits", "classes": 10},
        "config": {"smoke": bool(args.smoke), "lam": cfg.LAM, "targets": T,
                   "budget_fraction": cfg.BUDGET_FRACTION, "competitors": cfg.COMPETITORS,
                   "defence_fpr": cfg.DEFENCE_FPR, "guo_targets": G,
                   "guo": {"sigma": cfg.GUO_SIGMA, "epsilon": cfg.GUO_EPSILON,
                           "delta": cfg.GUO_DELTA},
                   "unlearner": "exact retraining (certun.exact_retraining's fit); "
                                "certified removal for guo_targets targets"},
        "provenance": "implemented from a description of Qian et al. (KDD 2023); not checked "
                      "against the paper's text",
        "threat": "deletion requests chosen to flip a target; exact retraining honours them, "
                  "so certification does not protect against this",
        "pooled": pooled, "per_seed": per_seed, "acceptance": acceptance,
    }
    results["plots"] = make_plot(json_ready(pooled), out)
    results["timestamps"]["finished"] = utc_now()
    results["seconds"] = time.perf_counter() - t0
    write_results(out / "results.json", results)
    for k in keys + ["success_minus_defended"]:
        p = pooled[k]
        _log(f"{k:34s} {p['mean']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}]")
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
