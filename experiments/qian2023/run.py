#!/usr/bin/env python
"""Malicious deletion requests that flip chosen test points, and a gradient-influence defence.

    python experiments/qian2023/run.py            # 20 seeds x 50 targets (~12 min, 2 cores)
    python experiments/qian2023/run.py --linear   # also the linear model (+6 min)
    python experiments/qian2023/run.py --smoke    # 2 seeds x 2 targets (CI)

Qian et al. (KDD 2023), implemented from a recalled description (see
certun/audits/targeted.py). For every seed: train a 64-32-10 tanh MLP on digits; draw
targets among correctly classified test points; the attacker crafts at most 1% of n
deletions per target, greedily through the deployed unlearner (gradient ascent on the
requested rows); the defence screens requests by their gradient influence on a public
reference set. The same requests are also honoured by retraining for a few targets, and
``--linear`` repeats last round's attack on a one-vs-rest logistic model honoured by exact
retraining (and certified removal). Reports attack success with and without the defence,
random-deletion success, clean accuracy, and the defence's false-positive rate on honest
requests, each as a mean over seeds with a 95% t-interval. Writes ``results.json`` and
``qian2023.png``.
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
    """Linear target, one seed: split, train, attack ``num_targets`` targets (+/- defence)."""
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


_NET: dict = {}


def _net_fns(train_steps: int):
    """The MLP as ``logits(theta, X)`` on flat params, and a compiled masked L-BFGS fit."""
    key = ("net", train_steps)
    if key not in _NET:
        import jax.numpy as jnp
        import optax
        from jax.flatten_util import ravel_pytree

        from certun.nn import models

        net = models.mlp(64, cfg.NET_WIDTHS, 10, "tanh", input_scale=8.0)
        _, unravel = ravel_pytree(net.init(jax.random.key(0), jnp.float64))

        def logits(theta, Xq):
            return net.apply(unravel(theta), Xq)

        def objective(theta, X, y, mask):
            losses = optax.softmax_cross_entropy_with_integer_labels(logits(theta, X), y)
            return (jnp.sum(mask * losses) / jnp.sum(mask)
                    + 0.5 * cfg.NET_WEIGHT_DECAY * theta @ theta)

        def lbfgs(steps):
            @jax.jit
            def fit(theta, X, y, mask):
                def f(t):
                    return objective(t, X, y, mask)

                opt = optax.lbfgs()
                vg = optax.value_and_grad_from_state(f)

                def body(c, _):
                    t, st = c
                    v, g = vg(t, state=st)
                    u, st = opt.update(g, st, t, value=v, grad=g, value_fn=f)
                    return (optax.apply_updates(t, u), st), None

                t, _ = jax.lax.scan(body, (theta, opt.init(theta)), None, length=steps)[0]
                return t, jnp.linalg.norm(jax.grad(f)(t))

            return fit

        def init(seed):
            return ravel_pytree(net.init(jax.random.key(seed), jnp.float64))[0]

        _NET[key] = (net.name, logits, init, lbfgs(train_steps), lbfgs(cfg.NET_RETRAIN_STEPS))
    return _NET[key]


def run_seed_network(seed: int, num_targets: int, retrain_targets: int,
                     train_steps: int, honest_batches: tuple[int, int] = (
                         cfg.HONEST_BATCH_CALIBRATION, cfg.HONEST_BATCH_EVALUATION)) -> dict:
    """One seed against the MLP unlearned by gradient ascent (the headline)."""
    import jax.numpy as jnp

    from certun.audits import targeted
    from certun.data import load_digits

    name, logits, init, fit, refit = _net_fns(train_steps)
    ds = load_digits(seed=seed)
    X, y, Xte, yte = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    n = X.shape[0]
    rng = np.random.default_rng(1000 + seed)
    perm = rng.permutation(len(yte))
    n_ref = int(cfg.REFERENCE_FRACTION * len(yte))
    X_ref, (Xt, yt) = Xte[perm[:n_ref]], (Xte[perm[n_ref:]], yte[perm[n_ref:]])
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    tm = time.perf_counter()
    theta, gnorm = fit(init(seed), Xj, yj, jnp.ones(n))
    unlearn = targeted.gradient_ascent_unlearner(logits, X, y, lr=cfg.GA_LR,
                                                 steps=cfg.GA_STEPS)
    predict = jax.jit(lambda t, Q: jnp.argmax(logits(t, Q), axis=1))

    def acc(t):
        return float(np.mean(np.asarray(predict(t, jnp.asarray(Xt))) == yt))

    def flipped(t, x, c):
        return float(int(predict(t, jnp.asarray(x[None]))[0]) != c)

    def weights(rows):
        w = np.zeros(n)
        w[np.asarray(rows, np.int64)] = 1.0
        return jnp.asarray(w)

    budget = max(1, int(cfg.BUDGET_FRACTION * n))
    ok = np.flatnonzero(np.asarray(predict(theta, jnp.asarray(Xt))) == yt)
    targets = rng.choice(ok, size=num_targets, replace=False)
    honest = rng.permutation(n)
    cal = honest[:cfg.HONEST_CALIBRATION]
    ev = honest[cfg.HONEST_CALIBRATION:cfg.HONEST_CALIBRATION + cfg.HONEST_EVALUATION]
    thr = targeted.influence_threshold(
        [targeted.batch_request_influence(logits, theta, X, y,
                                          rng.choice(n, size=budget, replace=False), X_ref)
         for _ in range(honest_batches[0])], false_positive_rate=cfg.DEFENCE_FPR)
    fpr = float(np.mean([targeted.batch_request_influence(
        logits, theta, X, y, rng.choice(n, size=budget, replace=False), X_ref) > thr
        for _ in range(honest_batches[1])]))
    row_thr = targeted.influence_threshold(
        targeted.network_request_influence(logits, theta, X, y, cal, X_ref),
        false_positive_rate=cfg.DEFENCE_FPR)
    row_fpr = float(np.mean(targeted.network_request_influence(logits, theta, X, y, ev, X_ref)
                            > row_thr))
    honest_acc, honest_forget_acc = [], []
    for _ in range(cfg.HONEST_BATCHES):
        R = rng.choice(n, size=budget, replace=False)
        tR = unlearn(theta, weights(R))
        honest_acc.append(acc(tR))
        honest_forget_acc.append(float(np.mean(np.asarray(predict(tR, jnp.asarray(X[R])))
                                               == y[R])))
    flips, flips_def, flips_rand, flips_retrain, acc_att, acc_def, caught, flips_row = (
        [] for _ in range(8))
    retrain_gnorm = []
    for i, t in enumerate(targets):
        xt, ytt = Xt[t], int(yt[t])
        S = targeted.greedy_deletions(logits, unlearn, theta, X, y, xt, ytt, budget=budget,
                                      lookahead=cfg.LOOKAHEAD)
        ta = unlearn(theta, weights(S))
        flips.append(flipped(ta, xt, ytt))
        acc_att.append(acc(ta))
        # batch-level gradient-influence defence: a flagged request is held for review
        held = targeted.batch_request_influence(logits, theta, X, y, S, X_ref) > thr
        caught.append(float(held))
        td = theta if held else ta
        flips_def.append(flipped(td, xt, ytt))
        acc_def.append(acc(td))
        # per-row screening (discard rows above a row threshold), for comparison
        accepted = S[targeted.network_request_influence(logits, theta, X, y, S, X_ref)
                     <= row_thr]
        tr_ = theta if not len(accepted) else unlearn(theta, weights(accepted))
        flips_row.append(flipped(tr_, xt, ytt))
        if i < cfg.RANDOM_TARGETS:
            R = rng.choice(n, size=budget, replace=False)
            flips_rand.append(flipped(unlearn(theta, weights(R)), xt, ytt))
        if i < retrain_targets:
            m = np.ones(n)
            m[S] = 0.0
            tr, gn = refit(theta, Xj, yj, jnp.asarray(m))
            flips_retrain.append(flipped(tr, xt, ytt))
            retrain_gnorm.append(float(gn))
    return {
        "seed": seed, "n": int(n), "budget": budget, "threshold": thr, "network": name,
        "train_grad_norm": float(gnorm), "clean_accuracy": acc(theta),
        "success": float(np.mean(flips)), "success_defended": float(np.mean(flips_def)),
        "success_random_deletions": float(np.mean(flips_rand)),
        "success_retraining": float(np.mean(flips_retrain)) if flips_retrain else None,
        "retrain_grad_norm_max": max(retrain_gnorm) if retrain_gnorm else None,
        "accuracy_after_attack": float(np.mean(acc_att)),
        "accuracy_after_defended": float(np.mean(acc_def)),
        "accuracy_after_honest": float(np.mean(honest_acc)),
        "honest_forget_accuracy": float(np.mean(honest_forget_acc)),
        "malicious_requests_discarded": float(np.mean(caught)),
        "false_positive_rate": fpr, "success_row_screening": float(np.mean(flips_row)),
        "row_screening_false_positive_rate": row_fpr, "seconds": time.perf_counter() - tm,
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
    ax.set_title("Malicious deletion requests, MLP + gradient ascent, digits (<= 1% of n)")
    fig.tight_layout()
    fig.savefig(out / "qian2023.png", dpi=120)
    plt.close(fig)
    return ["qian2023.png"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import seeded_experiment_parser

    ap = seeded_experiment_parser(
        "Qian et al. (2023) malicious deletion requests.", "qian2023", "digits",
        "2 seeds x 2 targets against the network (CI)")
    ap.add_argument("--linear", action="store_true",
                    help="also attack the linear model honoured by exact retraining")
    return ap


NET_KEYS = ["success", "success_defended", "success_random_deletions", "clean_accuracy",
            "accuracy_after_attack", "accuracy_after_defended", "accuracy_after_honest",
            "honest_forget_accuracy", "false_positive_rate", "malicious_requests_discarded",
            "success_row_screening", "row_screening_false_positive_rate"]
LIN_KEYS = ["success", "success_defended", "success_random_deletions", "clean_accuracy",
            "accuracy_after_attack", "accuracy_after_defended", "false_positive_rate",
            "honest_batch_flag_rate", "malicious_requests_discarded"]


def _pool(per_seed: list[dict], keys: list[str]) -> dict:
    from certun.audits.stats import mean_ci

    pooled = {k: mean_ci([r[k] for r in per_seed]) for k in keys}
    pooled["success_minus_defended"] = mean_ci([r["success"] - r["success_defended"]
                                                for r in per_seed])
    pooled["success_minus_random"] = mean_ci([r["success"] - r["success_random_deletions"]
                                              for r in per_seed])
    pooled["half_success_minus_defended"] = mean_ci([0.5 * r["success"] - r["success_defended"]
                                                     for r in per_seed])
    return pooled


def _acceptance(pooled: dict, first: dict) -> dict:
    sa, sd, fp = (pooled["success"]["mean"], pooled["success_defended"]["mean"],
                  pooled["false_positive_rate"]["mean"])
    return {
        "budget_at_most_1pct": {"budget": first["budget"], "n": first["n"],
                                "pass": first["budget"] <= 0.01 * first["n"]},
        "success_above_half": {"value": sa, "ci": pooled["success"]["ci"],
                               "pass": pooled["success"]["ci"][0] > 0.5},
        "defended_at_most_half_of_undefended": {
            "value": sd, "half_minus_defended_ci": pooled["half_success_minus_defended"]["ci"],
            "pass": sd <= 0.5 * sa and pooled["success_minus_defended"]["excludes_zero"]},
        "false_positive_rate_at_most_10pct": {"value": fp, "ci": pooled["false_positive_rate"][
            "ci"], "pass": fp <= 0.10},
    }


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    jax.config.update("jax_enable_x64", True)

    t0, started = time.perf_counter(), utc_now()
    seeds = experiment_seeds(args, cfg.SEEDS, cfg.SMOKE_NET_SEEDS)
    T = cfg.SMOKE_NET_TARGETS if args.smoke else cfg.NUM_TARGETS
    RT = cfg.SMOKE_NET_RETRAIN_TARGETS if args.smoke else cfg.NET_RETRAIN_TARGETS
    steps = cfg.SMOKE_NET_TRAIN_STEPS if args.smoke else cfg.NET_TRAIN_STEPS
    out = experiment_out(args, HERE, "digits")
    _log(f"qian2023: digits, network, seeds {list(seeds)}, {T} targets per seed")
    per_seed = []
    for s in seeds:
        r = run_seed_network(s, T, RT, steps, cfg.SMOKE_HONEST_BATCHES if args.smoke else (
            cfg.HONEST_BATCH_CALIBRATION, cfg.HONEST_BATCH_EVALUATION))
        per_seed.append(r)
        _log(f"  seed {s}: success {r['success']:.2f} defended {r['success_defended']:.2f} "
             f"random {r['success_random_deletions']:.2f} retrain {r['success_retraining']} "
             f"FPR {r['false_positive_rate']:.3f} acc {r['clean_accuracy']:.3f} -> "
             f"{r['accuracy_after_attack']:.3f} ({r['seconds']:.0f}s)")
    pooled = _pool(per_seed, NET_KEYS)
    rt = [r["success_retraining"] for r in per_seed if r["success_retraining"] is not None]
    pooled["success_retraining"] = {"mean": float(np.mean(rt)) if rt else None,
                                    "targets": RT * len(rt)}
    acceptance = _acceptance(pooled, per_seed[0])
    linear = None
    if args.linear:
        LT = cfg.SMOKE_NUM_TARGETS if args.smoke else cfg.NUM_TARGETS
        G = cfg.SMOKE_GUO_TARGETS if args.smoke else cfg.GUO_TARGETS
        lin_seeds = experiment_seeds(args, cfg.SEEDS, cfg.SMOKE_SEEDS)
        lin = [run_seed(s, LT, G if s in cfg.GUO_SEEDS else 0) for s in lin_seeds]
        lp = _pool(lin, LIN_KEYS)
        guo = [r["success_certified_removal"] for r in lin
               if r["success_certified_removal"] is not None]
        lp["success_certified_removal"] = {"mean": float(np.mean(guo)) if guo else None,
                                           "seeds": len(guo), "targets_per_seed": G}
        linear = {"unlearner": "exact retraining (certified removal for guo_targets targets)",
                  "model": f"one-vs-rest L2-logistic, lam={cfg.LAM}", "seeds": list(lin_seeds),
                  "targets": LT, "pooled": lp, "per_seed": lin,
                  "acceptance": _acceptance(lp, lin[0])}
    results = {
        "experiment": "qian2023", "seeds": list(seeds), "versions": package_versions(),
        "git": git_info(REPO), "timestamps": {"started": started, "finished": None},
        "command": [sys.executable, str(Path(__file__).resolve()),
                    *(argv if argv is not None else sys.argv[1:])],
        "dataset": {"name": "digits", "classes": 10},
        "config": {"smoke": bool(args.smoke), "targets": T, "train_steps": steps,
                   "budget_fraction": cfg.BUDGET_FRACTION, "defence_fpr": cfg.DEFENCE_FPR,
                   "network": per_seed[0]["network"], "weight_decay": cfg.NET_WEIGHT_DECAY,
                   "ga_lr": cfg.GA_LR, "ga_steps": cfg.GA_STEPS, "retrain_targets": RT,
                   "retrain_steps": cfg.NET_RETRAIN_STEPS,
                   "unlearner": "gradient ascent on the requested rows "
                                "(certun.audits.targeted.gradient_ascent_unlearner)",
                   "attack": "greedy_deletions: greedy, scores recomputed through the "
                             "unlearner as the set grows",
                   "lookahead": cfg.LOOKAHEAD,
                   "defence": "batch_request_influence: a request whose gradient influence on "
                              "the reference margins exceeds the "
                              f"{1 - cfg.DEFENCE_FPR:.0%} quantile of honest requests of the "
                              "same size is held for review (not honoured); per-row "
                              "screening (network_request_influence) reported beside it"},
        "provenance": "implemented from a description of Qian et al. (KDD 2023), recalled; "
                      "not checked against the paper's text (not found)",
        "threat": "deletion requests chosen to flip a target through an approximate "
                  "unlearner; see README for what certification does and does not cover",
        "pooled": pooled, "per_seed": per_seed, "acceptance": acceptance, "linear": linear,
    }
    results["plots"] = make_plot(json_ready(pooled), out)
    finish_experiment(out, results, t0)
    for k in NET_KEYS + ["success_minus_defended", "half_success_minus_defended"]:
        p = pooled[k]
        _log(f"{k:34s} {p['mean']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}]")
    _log(f"success_retraining {pooled['success_retraining']}")
    _log(f"acceptance: {json_ready(acceptance)}")
    if linear:
        _log(f"linear: {json_ready({k: linear['pooled'][k] for k in LIN_KEYS})}")
        _log(f"linear acceptance: {json_ready(linear['acceptance'])}")
    _log(f"wrote {out / 'results.json'} ({results['seconds']:.0f}s)")
    return 0, out / "results.json"


def main(argv: list[str] | None = None) -> int:
    """Run from the command line (``--json``: see ``run_with_json``); returns the exit status."""
    from certun.commands._args import run_with_json

    args = build_parser().parse_args(argv)
    return run_with_json(args.json, lambda: _run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
