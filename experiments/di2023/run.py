#!/usr/bin/env python
"""Camouflaged poisoning switched on by unlearning (Di et al., NeurIPS 2023) on digits.

    python experiments/di2023/run.py            # 20 seeds x 3 targets
    python experiments/di2023/run.py --smoke    # CI

Per target: poisons (adversarial-class rows, gradient-matched to ``grad l(x_t, y_adv)`` at
the clean model) and camouflages (true-class rows, matched to ``grad l(x_t, y_true)`` at the
model retrained on clean + poisons) are added to the training set; the model is trained on
clean + poisons + camouflages; then the camouflages are deleted by (a) exact retraining,
(b) Guo et al.'s certified removal, (c) SISA. Reports the target misclassification rate
before and after the deletion (and with poisons only), clean accuracy, and the per-seed
difference after - before with a 95% t-interval over 20 seeds.
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from certun.commands._args import experiment_out, experiment_seeds, finish_experiment  # noqa: E402
from certun.provenance import git_info, json_ready, package_versions, utc_now  # noqa: E402,E501


def _load_config():
    spec = importlib.util.spec_from_file_location("certun_experiments_di2023_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()
K = 10


def _log(msg: str) -> None:
    print(msg, flush=True)


def phi(x):
    """Model features of pixel rows in [0, 1]: ``(x - 0.5) / 4``."""
    return (x - 0.5) / 4.0


_FIT = []


def fit(Xp: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact (re)training on pixel rows ``Xp`` with labels ``y`` (one-vs-rest, Newton)."""
    from certun.models import glm

    if not _FIT:
        _FIT.append(jax.jit(lambda F, Y: glm.fit("logistic", F, Y, cfg.LAM, None, None,
                                                 tol=1e-8).params))
    F = jnp.asarray(phi(Xp))
    return np.asarray(_FIT[0](F, glm.one_vs_rest_targets(jnp.asarray(y), K)))


def wrong(W: np.ndarray, x: np.ndarray, y: int) -> float:
    """1.0 when the model misclassifies ``x`` (true class ``y``)."""
    return float(np.argmax(phi(x) @ W) != y)


def run_seed(seed: int, targets: int, steps: int, methods: tuple[str, ...]) -> dict:
    """Targets of one seed: craft, train, delete the camouflages with each method."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import certun
    from certun.audits import poisoning

    d = load_digits()
    Xa, ya = d.data / 16.0, d.target
    X, Xt, y, yt = train_test_split(Xa, ya, test_size=0.25, random_state=seed, stratify=ya)
    n = len(y)
    nP, nC = int(cfg.POISON_FRACTION * n), int(cfg.CAMOUFLAGE_FRACTION * n)
    rng = np.random.default_rng(seed)
    W0 = fit(X, y)
    ok = np.flatnonzero((phi(Xt) @ W0).argmax(1) == yt)
    rows = {k: [] for k in ("poison_only", "before", *[f"after_{m}" for m in methods])}
    acc = {k: [] for k in rows}
    for j, t in enumerate(rng.choice(ok, size=targets, replace=False)):
        xt, ytr = Xt[t], int(yt[t])
        s = phi(xt) @ W0
        yadv = int([c for c in np.argsort(-s) if c != ytr][0])
        key = jax.random.key(seed * 100 + j)
        bP = rng.choice(np.flatnonzero(y == yadv), nP, replace=False)
        P = poisoning.gradient_matching(W0, X[bP], y[bP], xt, yadv, feature_map=phi,
                                        eps=cfg.EPS, steps=steps, restarts=cfg.RESTARTS,
                                        lr=cfg.LR, key=key)
        XP, yP = np.vstack([X, P]), np.concatenate([y, y[bP]])
        WP = fit(XP, yP)
        bC = rng.choice(np.flatnonzero(y == ytr), nC, replace=False)
        C = poisoning.gradient_matching(WP, X[bC], y[bC], xt, ytr, feature_map=phi,
                                        eps=cfg.EPS, steps=steps, restarts=cfg.RESTARTS,
                                        lr=cfg.LR, key=jax.random.fold_in(key, 1))
        XPC, yPC = np.vstack([XP, C]), np.concatenate([yP, y[bC]])
        WPC = fit(XPC, yPC)
        cam = np.arange(len(yP), len(yPC))

        def record(name, W, xt=xt, ytr=ytr):
            rows[name].append(wrong(W, xt, ytr))
            acc[name].append(float(np.mean((phi(Xt) @ W).argmax(1) == yt)))

        record("poison_only", WP)
        record("before", WPC)
        if "retraining" in methods:
            record("after_retraining", fit(XP, yP))
        if "certified_removal" in methods:
            unl = certun.certified_removal(lam=cfg.LAM, sigma=cfg.GUO_SIGMA,
                                           epsilon=cfg.GUO_EPSILON, delta=cfg.GUO_DELTA,
                                           auto_retrain=True)
            st = unl.init(phi(XPC), yPC, jax.random.fold_in(key, 2), num_classes=K)
            r = unl.unlearn(st, cam, jax.random.fold_in(key, 3))
            record("after_certified_removal", np.asarray(r.params).reshape(-1, K))
        if "sisa" in methods:
            sis = certun.sisa.sisa(shards=cfg.SISA_SHARDS, slices=1, lam=cfg.LAM)
            st = sis.init(phi(XPC), yPC, jax.random.fold_in(key, 4), num_classes=K)
            pred_b = int(np.asarray(sis.predict(st, phi(xt)[None]))[0])
            st2 = sis.delete(st, cam).state
            pred_a = int(np.asarray(sis.predict(st2, phi(xt)[None]))[0])
            rows.setdefault("before_sisa", []).append(float(pred_b != ytr))
            rows["after_sisa"].append(float(pred_a != ytr))
            acc["after_sisa"].append(float(np.mean(np.asarray(sis.predict(st2, phi(Xt)))
                                                   == yt)))
    out = {k: float(np.mean(v)) for k, v in rows.items()}
    out.update({f"accuracy_{k}": float(np.mean(v)) for k, v in acc.items() if v})
    out.update(seed=seed, n=n, poisons=nP, camouflages=nC,
               clean_accuracy=float(np.mean((phi(Xt) @ W0).argmax(1) == yt)))
    return out


def make_plot(pooled: dict, methods, out: Path) -> list[str]:
    """Misclassification before/after deleting the camouflages, per method (95% CIs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["before", "poison_only", *[f"after_{m}" for m in methods]]
    if "before_sisa" in pooled:
        keys.insert(1, "before_sisa")
    m = [pooled[k]["mean"] for k in keys]
    e = np.array([[pooled[k]["mean"] - pooled[k]["ci"][0], pooled[k]["ci"][1] - pooled[k]["mean"]]
                  for k in keys]).T
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.bar([k.replace("_", "\n") for k in keys], m, yerr=np.maximum(e, 0), capsize=4,
           color=["C2", "C2", "C7", "C3", "C3", "C3"][:len(keys)])
    ax.set_ylim(0, 1)
    ax.set_ylabel("target misclassified (mean, 95% CI)")
    ax.set_title("Camouflaged poisoning: deleting the camouflages unleashes the poisons")
    fig.tight_layout()
    fig.savefig(out / "di2023.png", dpi=120)
    plt.close(fig)
    return ["di2023.png"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import seeded_experiment_parser

    return seeded_experiment_parser(
        "Di et al. (2023) camouflaged poisoning.", "di2023", "digits",
        "2 seeds x 1 target (CI)")


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    jax.config.update("jax_enable_x64", True)
    from certun.audits.stats import mean_ci

    t0, started = time.perf_counter(), utc_now()
    seeds = experiment_seeds(args, cfg.SEEDS, cfg.SMOKE_SEEDS)
    T = cfg.SMOKE_TARGETS_PER_SEED if args.smoke else cfg.TARGETS_PER_SEED
    steps = cfg.SMOKE_STEPS if args.smoke else cfg.STEPS
    methods = ("retraining", "certified_removal", "sisa")
    out = experiment_out(args, HERE, "digits")
    _log(f"di2023: digits, seeds {list(seeds)}, {T} targets per seed")
    per_seed = []
    for s in seeds:
        r = run_seed(s, T, steps, methods)
        per_seed.append(r)
        _log(f"  seed {s}: " + " ".join(f"{k} {r[k]:.2f}" for k in
                                         ("before", "poison_only", "after_retraining",
                                          "after_certified_removal", "after_sisa")))
    keys = [k for k in per_seed[0] if k not in ("seed", "n", "poisons", "camouflages")]
    pooled = {k: mean_ci([r[k] for r in per_seed]) for k in keys}
    acceptance = {}
    for m in methods:
        base = "before_sisa" if m == "sisa" else "before"
        dlt = mean_ci([r[f"after_{m}"] - r[base] for r in per_seed])
        pooled[f"rise_{m}"] = dlt
        acceptance[f"misclassification_rises_{m}"] = {"value": dlt["mean"], "ci": dlt["ci"],
                                                      "pass": dlt["ci"][0] > 0}
    results = {
        "experiment": "di2023", "seeds": list(seeds), "versions": package_versions(),
        "git": git_info(REPO), "timestamps": {"started": started, "finished": None},
        "command": [sys.executable, str(Path(__file__).resolve()),
                    *(argv if argv is not None else sys.argv[1:])],
        "dataset": {"name": "digits", "classes": K, "features": "(pixels/16 - 0.5)/4"},
        "config": {"smoke": bool(args.smoke), "lam": cfg.LAM, "targets_per_seed": T,
                   "poison_fraction": cfg.POISON_FRACTION,
                   "camouflage_fraction": cfg.CAMOUFLAGE_FRACTION, "eps": cfg.EPS,
                   "steps": steps, "restarts": cfg.RESTARTS, "sisa_shards": cfg.SISA_SHARDS,
                   "guo": {"sigma": cfg.GUO_SIGMA, "epsilon": cfg.GUO_EPSILON,
                           "delta": cfg.GUO_DELTA}},
        "threat": "poisons + camouflages at training; deleting the camouflages (a legitimate "
                  "request) unleashes the poisons under exact retraining, certified removal "
                  "and SISA alike: certification does not protect against it",
        "pooled": pooled, "per_seed": per_seed, "acceptance": acceptance,
    }
    results["plots"] = make_plot(json_ready(pooled), methods, out)
    finish_experiment(out, results, t0)
    for k, p in pooled.items():
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
