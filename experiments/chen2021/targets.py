#!/usr/bin/env python
"""Chen et al. (CCS 2021) extended: several target models, scenarios and mitigations.

    python experiments/chen2021/targets.py          # digits + breast cancer, 4 x 4
    python experiments/chen2021/targets.py --smoke  # CI

Targets: decision tree, random forest, logistic regression, MLP (scikit-learn, as in the
paper's code). Scenarios: single deletion, group deletion (10 records), online learning
(deleted records replaced by fresh ones), SISA (5 shards; posteriors averaged; the shard
holding the record retrained), and several intermediate unlearned models
(``multi_version``: each original model is followed by a chain of single deletions, each
released; the attacker gets every consecutive pair of versions and the record deleted
between them). For
each, the attacker trains Chen et al.'s random-forest attack on shadow pairs
(``sorted_diff`` feature) and is evaluated on target pairs; the classical MIA on the
original model is evaluated on the same rows (``basic_mia``). Mitigations on the
single-deletion scenario: label-only release, top-1 posterior, temperature scaling of the
released posteriors (``softmax(log p / T)``), and, for the logistic and MLP targets,
retrained in JAX (:func:`jax_trainer`) so that training can be changed: temperature scaling
*during training* (the loss and the release both use ``softmax(logits / T)``, as the paper
does), and differentially private training (full-batch DP-GD with per-example clipping and
Gaussian noise, ``certun.nn.dp.dp_gradient``, calibrated by
the analytic Gaussian mechanism for ``(DP_EPSILON, DP_DELTA)`` per record), each
beside the same JAX trainer without the mitigation (``jax`` row) and plugged in through the
``pairs(dp_train=...)`` seam.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if importlib.util.find_spec("certun") is None:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from certun.provenance import git_info, json_ready, package_versions, utc_now, write_results  # noqa: E402,E501

TARGETS = ("dt", "rf", "lr", "mlp")
SCENARIOS = ("single", "group", "online", "sisa", "multi_version")
DATASETS = ("digits", "breast_cancer")
SET_SIZE, NUM_SETS, DELETIONS, GROUP, SHARDS = 200, 3, 5, 10, 5
TEMPERATURE = 8.0
JAX_TARGETS = ("lr", "mlp")          # targets retrained in JAX for the training mitigations
TRAIN_TEMPERATURE = 8.0
JAX_STEPS, JAX_LR, JAX_WEIGHT_DECAY = 300, 0.05, 1e-4
DP_EPSILON, DP_DELTA, DP_CLIP, DP_STEPS = 4.0, 1e-5, 1.0, 100


@functools.lru_cache(maxsize=8)
def _dp_noise(epsilon: float, steps: int) -> float:
    """Noise multiplier of ``steps`` full-batch Gaussian steps for ``(epsilon, DP_DELTA)``.

    Full batches (no subsampling): ``steps`` Gaussian mechanisms of multiplier ``z`` on a sum
    of sensitivity ``DP_CLIP`` (add/remove one record; ``n`` in the normaliser treated as
    public) compose exactly to one of multiplier ``z / sqrt(steps)``, calibrated by the
    analytic Gaussian mechanism (``certun.accounting.gaussian.analytic_sigma``).
    """
    import math

    from certun.accounting.gaussian import analytic_sigma

    return float(math.sqrt(steps) * analytic_sigma(epsilon, DP_DELTA, 1.0))


@functools.lru_cache(maxsize=32)
def _jax_fit(kind: str, n: int, d: int, C: int, t_train: float, dp: bool, steps: int):
    """Compiled full-batch Adam (or DP-GD) fit of a softmax regression or 32-tanh MLP."""
    import jax
    import jax.numpy as jnp
    import optax

    from certun.nn.dp import dp_gradient

    def init(key):
        k1, k2 = jax.random.split(key)
        if kind == "lr":
            return {"W": jnp.zeros((d, C)), "b": jnp.zeros(C)}
        return {"W1": jax.random.normal(k1, (d, 32)) / jnp.sqrt(d), "b1": jnp.zeros(32),
                "W2": jax.random.normal(k2, (32, C)) / jnp.sqrt(32.0), "b2": jnp.zeros(C)}

    def apply(p, X):
        if kind == "lr":
            return (X @ p["W"] + p["b"]) / t_train
        return (jnp.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]) / t_train

    def row_loss(p, x, t):
        return optax.softmax_cross_entropy_with_integer_labels(apply(p, x[None])[0], t)

    opt = optax.adam(JAX_LR)
    private = dp_gradient(row_loss, clip=DP_CLIP, noise_multiplier=_dp_noise(DP_EPSILON, steps),
                          expected_batch_size=float(n)) if dp else None

    @jax.jit
    def fit(X, y, key):
        p0 = init(key)

        def step(c, k):
            p, st = c
            if private is None:
                g = jax.grad(lambda q: jnp.mean(jax.vmap(row_loss, (None, 0, 0))(q, X, y)))(p)
            else:
                g = private(p, X, y, jnp.ones(n), k)
            g = jax.tree.map(lambda a, b: a + JAX_WEIGHT_DECAY * b, g, p)
            u, st = opt.update(g, st, p)
            return (optax.apply_updates(p, u), st), None

        (p, _), _ = jax.lax.scan(step, (p0, opt.init(p0)), jax.random.split(key, steps))
        return p

    return fit, apply


def jax_trainer(train_temperature: float = 1.0, dp: bool = False) -> Callable:
    """A ``dp_train`` seam for :func:`pairs`: logistic / MLP targets trained in JAX.

    ``train_temperature`` divides the logits in training *and* release (the paper's
    temperature scaling); ``dp`` trains with full-batch DP-GD (per-example clipping at
    ``DP_CLIP``, Gaussian noise calibrated for ``(DP_EPSILON, DP_DELTA)`` per record over
    ``DP_STEPS`` steps; the guarantee covers the original model and each unlearned model
    separately, by retraining).
    """

    def seam(_train: Callable) -> Callable:
        def trainer(kind, X, y, seed, C, temperature=1.0):
            import jax
            import jax.numpy as jnp

            steps = DP_STEPS if dp else JAX_STEPS
            fit, apply = _jax_fit(kind, X.shape[0], X.shape[1], C, float(train_temperature),
                                  bool(dp), steps)
            p = fit(jnp.asarray(X), jnp.asarray(y), jax.random.key(seed))

            def logits(Q):
                L = np.asarray(jax.nn.log_softmax(apply(p, jnp.asarray(Q)), axis=1))
                return L / temperature
            return logits
        return trainer
    return seam


def _log(msg: str) -> None:
    print(msg, flush=True)


def load(name: str):
    """Bundled scikit-learn data, standardised with fixed per-feature constants (max abs)."""
    from sklearn import datasets

    d = datasets.load_digits() if name == "digits" else datasets.load_breast_cancer()
    X = np.asarray(d.data, np.float64)
    return X / np.maximum(np.abs(X).max(0), 1e-12), np.asarray(d.target)


def make_model(kind: str, seed: int):
    """A fresh target model of ``kind``."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.tree import DecisionTreeClassifier

    return {"dt": lambda: DecisionTreeClassifier(random_state=seed),
            "rf": lambda: RandomForestClassifier(n_estimators=20, random_state=seed),
            "lr": lambda: LogisticRegression(C=10.0, max_iter=500),
            "mlp": lambda: MLPClassifier((32,), max_iter=100, random_state=seed)}[kind]()


def train(kind: str, X, y, seed: int, C: int, temperature: float = 1.0):
    """Train; return ``logits(X)``: log posteriors over all ``C`` classes, divided by ``T``.

    ``temperature`` scales the *released* posteriors (softmax(log p / T)); temperature
    scaling inside the training loss, as the paper does, is not implemented here.
    """
    m = make_model(kind, seed)
    m.fit(X, y)

    def logits(Q):
        P = np.full((len(Q), C), 1e-6)
        P[:, m.classes_] = np.clip(m.predict_proba(Q), 1e-6, 1.0)
        L = np.log(P / P.sum(1, keepdims=True))
        return L / temperature
    return logits


def pairs(kind, scenario, X, y, pos_pool, neg_pool, seed, C, temperature=1.0,
          dp_train: Callable | None = None):
    """Chen et al.'s (original, unlearned) posterior pairs for one side (shadow or target)."""
    from certun.audits.mia import PosteriorPairs

    rng = np.random.default_rng(seed)
    trainer = train if dp_train is None else dp_train(train)
    lo, lu, mem, sid, acc, accu = [], [], [], [], [], []
    for s in range(NUM_SETS):
        tr = rng.choice(pos_pool, SET_SIZE, replace=False)
        if scenario == "sisa":
            shard = np.arange(SET_SIZE) % SHARDS
            models = [trainer(kind, X[tr[shard == k]], y[tr[shard == k]], seed + k, C,
                              temperature) for k in range(SHARDS)]

            def f_o(Q, models=models):
                return np.log(np.mean([np.exp(m(Q)) for m in models], 0))
        else:
            f_o = trainer(kind, X[tr], y[tr], seed + s, C, temperature)
        alive = np.arange(SET_SIZE)          # multi_version: rows still in the chain
        for _ in range(DELETIONS):
            k = GROUP if scenario == "group" else 1
            if scenario == "multi_version":
                dpos = rng.choice(alive, 1, replace=False)
                alive = np.setdiff1d(alive, dpos)
                keep = alive
            else:
                dpos = rng.choice(SET_SIZE, k, replace=False)
                keep = np.setdiff1d(np.arange(SET_SIZE), dpos)
            if scenario == "sisa":
                ms = list(models)
                sh = int(shard[dpos[0]])
                rows = keep[shard[keep] == sh]
                ms[sh] = trainer(kind, X[tr[rows]], y[tr[rows]], seed + sh + 100, C, temperature)

                def f_u(Q, ms=ms):
                    return np.log(np.mean([np.exp(m(Q)) for m in ms], 0))
            else:
                new = tr[keep]
                if scenario == "online":
                    new = np.r_[new, rng.choice(neg_pool, k, replace=False)]
                f_u = trainer(kind, X[new], y[new], seed + s + 1000, C, temperature)
            q_pos = X[tr[dpos]]
            q_neg = X[rng.choice(neg_pool, k, replace=False)]
            Q = np.r_[q_pos, q_neg]
            lo.append(f_o(Q))
            lu.append(f_u(Q))
            if scenario == "multi_version":    # the next pair starts from this version
                f_o = f_u
            mem.append(np.r_[np.ones(k), np.zeros(k)])
            sid.append(np.full(2 * k, s))
        acc.append(float(np.mean(f_o(X[neg_pool]).argmax(1) == y[neg_pool])))
        accu.append(acc[-1])
    return PosteriorPairs(np.concatenate(lo), np.concatenate(lu), np.concatenate(mem).astype(int),
                          np.concatenate(sid), acc, accu)


def attack(kind, scenario, X, y, split, C, mitigation=None, temperature=1.0, dp_train=None,
           seed=0):
    """Shadow and target pairs, then the attack; ``{feature: AUC dict}`` and accuracy."""
    from certun.audits import mia

    sh = pairs(kind, scenario, X, y, split["shadow_pos"], split["shadow_neg"], 1 + 10 * seed, C,
               temperature, dp_train)
    tg = pairs(kind, scenario, X, y, split["target_pos"], split["target_neg"], 2 + 10 * seed, C,
               temperature, dp_train)
    kw = {} if mitigation is None else {"mitigation": mitigation}
    r = mia.chen_attack(sh, tg, features=("sorted_diff",), **kw)
    return {"two_version_auc": r.auc["sorted_diff"]._asdict(),
            "classical_auc": r.auc["basic_mia"]._asdict(),
            "degradation_count": r.degradation_count,
            "accuracy": float(np.mean(tg.accuracy))}


def _split(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    h = n // 2
    sh, tg = perm[:h], perm[h:]
    return {"shadow_pos": sh[: int(0.8 * h)], "shadow_neg": sh[int(0.8 * h):],
            "target_pos": tg[: int(0.8 * len(tg))], "target_neg": tg[int(0.8 * len(tg)):]}


def seeded_findings(num_seeds: int) -> dict:
    """The paper's qualitative findings as paired differences over seeds (digits, JAX LR).

    Per seed (a fresh shadow/target split and fresh sets and deletions): the two-version
    attack and the classical MIA on the same rows, then the same pipeline under label-only
    release and under DP training. Returns mean differences with 95% t-intervals.
    """
    from certun.audits.mia import label_only, posteriors
    from certun.audits.stats import mean_ci

    X, y = load("digits")
    C = int(y.max()) + 1
    rows = []
    for seed in range(num_seeds):
        split = _split(len(y), 100 + seed)
        base = attack("lr", "single", X, y, split, C, dp_train=jax_trainer(), seed=seed)
        lab = attack("lr", "single", X, y, split, C, lambda L: label_only(posteriors(L)),
                     dp_train=jax_trainer(), seed=seed)
        dpr = attack("lr", "single", X, y, split, C, dp_train=jax_trainer(dp=True), seed=seed)
        rows.append({"seed": seed, "two_version": base["two_version_auc"]["auc"],
                     "classical": base["classical_auc"]["auc"],
                     "label_only": lab["two_version_auc"]["auc"],
                     "dp": dpr["two_version_auc"]["auc"], "accuracy": base["accuracy"],
                     "accuracy_dp": dpr["accuracy"]})
        _log(f"  seeded {seed}: {rows[-1]}")
    col = {k: [r[k] for r in rows] for k in rows[0] if k != "seed"}
    return {"setting": "digits, JAX logistic target, single deletion", "per_seed": rows,
            **{k: mean_ci(v) for k, v in col.items()},
            "two_version_minus_classical": mean_ci(np.subtract(col["two_version"],
                                                               col["classical"])),
            "two_version_minus_label_only": mean_ci(np.subtract(col["two_version"],
                                                                col["label_only"])),
            "two_version_minus_dp": mean_ci(np.subtract(col["two_version"], col["dp"]))}


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import OneLineParser

    ap = OneLineParser(description="Chen et al. (2021) extended: targets x scenarios.")
    ap.add_argument("--out", default=None, help="output directory "
                    "(default experiments/chen2021/results/targets[-smoke])")
    ap.add_argument("--smoke", action="store_true", help="digits, lr, 2 scenarios, DP row (CI)")
    ap.add_argument("--seeds", type=int, default=0,
                    help="also repeat the headline comparisons (digits, JAX logistic target, "
                         "single deletion) over this many seeds (20 for the issue's statistics)")
    ap.add_argument("--json", action="store_true",
                    help="log to stderr; print results.json as one JSON object on stdout")
    return ap


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    import jax

    jax.config.update("jax_enable_x64", True)
    from certun.audits.mia import label_only, posteriors, top_k

    t0, started = time.perf_counter(), utc_now()
    dsets = ("digits",) if args.smoke else DATASETS
    targets = ("lr",) if args.smoke else TARGETS
    global NUM_SETS, DELETIONS
    if args.smoke:
        NUM_SETS, DELETIONS = 2, 3
    scenarios = ("group", "multi_version") if args.smoke else SCENARIOS
    out = Path(args.out) if args.out else HERE / "results" / ("targets" + ("-smoke" if
                                                                           args.smoke else ""))
    out.mkdir(parents=True, exist_ok=True)
    table, mitig = {}, {}
    for ds in dsets:
        X, y = load(ds)
        C = int(y.max()) + 1
        rng = np.random.default_rng(100)
        perm = rng.permutation(len(y))
        h = len(y) // 2
        sh, tg = perm[:h], perm[h:]
        split = {"shadow_pos": sh[: int(0.8 * h)], "shadow_neg": sh[int(0.8 * h):],
                 "target_pos": tg[: int(0.8 * len(tg))], "target_neg": tg[int(0.8 * len(tg)):]}
        for kind in targets:
            for sc in scenarios:
                r = attack(kind, sc, X, y, split, C)
                table[f"{ds}/{kind}/{sc}"] = r
                _log(f"  {ds:13s} {kind:4s} {sc:7s} two-version AUC "
                     f"{r['two_version_auc']['auc']:.3f} classical "
                     f"{r['classical_auc']['auc']:.3f} acc {r['accuracy']:.3f}")
            mm = {"label_only": lambda L: label_only(posteriors(L)),
                  "top1": lambda L: top_k(posteriors(L), 1)}
            for name, f in (list(mm.items())[:1] if args.smoke else mm.items()):
                mitig[f"{ds}/{kind}/{name}"] = attack(kind, "single", X, y, split, C, f)
            if not args.smoke:
                mitig[f"{ds}/{kind}/temperature_{TEMPERATURE:g}"] = attack(
                    kind, "single", X, y, split, C, temperature=TEMPERATURE)
            if kind in JAX_TARGETS:
                jx = {"jax": jax_trainer(),
                      f"train_temperature_{TRAIN_TEMPERATURE:g}": jax_trainer(TRAIN_TEMPERATURE),
                      f"dp_epsilon_{DP_EPSILON:g}": jax_trainer(dp=True)}
                for name, seam in jx.items():
                    if args.smoke and not name.startswith("dp"):
                        continue
                    mitig[f"{ds}/{kind}/{name}"] = attack(kind, "single", X, y, split, C,
                                                          dp_train=seam)
    seeded = seeded_findings(args.seeds) if args.seeds else None
    results = {
        "seeded_findings": seeded,
        "experiment": "chen2021_targets", "versions": package_versions(), "git": git_info(REPO),
        "timestamps": {"started": started, "finished": None},
        "command": [sys.executable, str(Path(__file__).resolve()),
                    *(argv if argv is not None else sys.argv[1:])],
        "config": {"smoke": bool(args.smoke), "set_size": SET_SIZE, "num_sets": NUM_SETS,
                   "deletions": DELETIONS, "group": GROUP, "shards": SHARDS,
                   "temperature": TEMPERATURE, "targets": list(targets),
                   "jax_targets": list(JAX_TARGETS), "train_temperature": TRAIN_TEMPERATURE,
                   "jax": {"steps": JAX_STEPS, "lr": JAX_LR, "weight_decay": JAX_WEIGHT_DECAY},
                   "dp": {"epsilon": DP_EPSILON, "delta": DP_DELTA, "clip": DP_CLIP,
                          "steps": DP_STEPS, "mechanism": "full-batch DP-GD, certun.nn.dp",
                          "noise_multiplier": _dp_noise(DP_EPSILON, DP_STEPS)},
                   "scenarios": list(scenarios), "datasets": list(dsets)},
        "table": table, "mitigations": mitig,
    }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(table)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(keys)), 3.8))
    x = np.arange(len(keys))
    ax.bar(x - 0.2, [table[k]["two_version_auc"]["auc"] for k in keys], 0.4, label="two-version")
    ax.bar(x + 0.2, [table[k]["classical_auc"]["auc"] for k in keys], 0.4, label="classical")
    ax.axhline(0.5, color="k", lw=0.8)
    ax.set_xticks(x, keys, rotation=90, fontsize=6)
    ax.set_ylabel("attack AUC")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "chen2021_targets.png", dpi=120)
    plt.close(fig)
    results["plots"] = ["chen2021_targets.png"]
    results["timestamps"]["finished"] = utc_now()
    results["seconds"] = time.perf_counter() - t0
    write_results(out / "results.json", json_ready(results))
    for k, v in mitig.items():
        if "two_version_auc" in v:
            _log(f"  mitigation {k:40s} AUC {v['two_version_auc']['auc']:.3f}")
    _log(f"wrote {out / 'results.json'} ({results['seconds']:.0f}s)")
    return 0, out / "results.json"


def main(argv: list[str] | None = None) -> int:
    """Run from the command line (``--json``: see ``run_with_json``); returns the exit status."""
    from certun.commands._args import run_with_json

    args = build_parser().parse_args(argv)
    return run_with_json(args.json, lambda: _run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
