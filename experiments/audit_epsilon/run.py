#!/usr/bin/env python
"""Empirical epsilon audits of certun's mechanisms, and the Hard-to-Forget attack.

    python experiments/audit_epsilon/run.py            # all parts (~9 min on 2 CPU cores)
    python experiments/audit_epsilon/run.py --smoke    # small run counts (CI)

Part A audits the Gaussian output mechanism (honest and 10x under-noised), part B Guo et
al.'s certified removal on digits 3-vs-8 with the worst-case canaries (and a budget-check
bug as negative control), part C attacks every certified mechanism in certun (Gaussian
output, private release, Sekhari et al., Descent-to-Delete, Zhang et al., Langevin, Guo et
al.) under its stated adjacency with several statistics (mean shift, noise-scale norm,
coordinate maximum, Gaussian likelihood ratio; Bonferroni) on hard configurations, and
each mechanism's mis-calibrated twins at the same sample count (sigma halved or as low as
the certified bound's measured looseness requires, sigma following n_t, the release
before the fix of issue 14), part D replays
Marchant et al.'s crafted deletion requests against Guo et al.'s budget with and without
the influence-based defence, part E measures the distance to retraining (parameters,
predictions, KLoM per split, U-LiRA) over ensembles of each mechanism's randomness. Every
run samples through certun's own code under ``vmap``; bounds are two-sided 95 %
Clopper-Pearson with the test chosen on a separate split. An honest mechanism whose bound
exceeded its certificate would make this script exit 1. Writes ``results.json``
(atomically) and PNG plots.
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from certun.provenance import (  # noqa: E402
    git_info,
    json_ready,
    package_versions,
    utc_now,
    write_results,
)


def _load_config():
    spec = importlib.util.spec_from_file_location("certun_experiments_audit_epsilon_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()


def _log(msg: str) -> None:
    print(msg, flush=True)


def _audit_row(a) -> dict:
    b = a.bound
    return {"mechanism": a.mechanism, "epsilon_claimed": a.epsilon_claimed, "delta": a.delta,
            "epsilon_lower": a.epsilon_lower, "verdict": a.verdict,
            "below_claim": a.epsilon_lower <= a.epsilon_claimed,
            "ratio_to_claim": a.epsilon_lower / a.epsilon_claimed,
            "point_estimate": a.point_estimate, "gdp_estimate": a.gdp_estimate,
            "runs_per_world": a.runs_per_world, "evaluated_in": b.n_in, "evaluated_out": b.n_out,
            "tp": b.tp, "fp": b.fp, "tpr_lower": b.tpr_lower, "fpr_upper": b.fpr_upper,
            "direction": b.direction, "threshold": a.threshold, "sign": a.sign,
            "test_rule": a.rule, "details": a.details}


# --------------------------------------------------------------------------- parts


def part_gaussian(eps_list, runs: int) -> list[dict]:
    """Part A: audit the Gaussian output mechanism at each claimed epsilon (and under-noised)."""
    from certun.audits import epsilon as ea

    f_out = {"w": jnp.asarray([0.3, -0.2, 0.1]), "b": jnp.asarray([[0.5, 0.0], [0.0, -0.4]])}
    z = {"w": jnp.asarray([0.6, 0.0, 0.0]), "b": jnp.asarray([[0.0, 0.8], [0.0, 0.0]])}
    f_in = jax.tree_util.tree_map(jnp.add, f_out, z)  # ||f_in - f_out|| = 1 = the sensitivity
    rows = []
    for i, eps in enumerate(eps_list):
        for scale in (1.0, cfg.UNDER_NOISE):
            t0 = time.perf_counter()
            a = ea.gaussian_output_audit(f_in, f_out, epsilon=eps, delta=cfg.GAUSSIAN_DELTA,
                                         sensitivity=1.0, key=jax.random.key(100 + i),
                                         num_runs=runs, noise_scale=scale, alpha=cfg.ALPHA,
                                         raise_on_violation=(scale == 1.0))
            r = _audit_row(a)
            r.update(noise_scale=scale, seconds=time.perf_counter() - t0,
                     within_factor_2=a.epsilon_lower >= eps / 2)
            rows.append(r)
            _log(f"  A gaussian eps={eps:g} noise x{scale:g}: LB {a.epsilon_lower:.3f} "
                 f"({a.verdict}; {r['seconds']:.1f}s)")
    return rows


def part_guo(X, y, sigmas, canaries, runs: int, bug_runs: int) -> dict:
    """Part B: audit Guo et al.'s certified removal with worst-case canaries (and a budget bug)."""
    from certun.audits import epsilon as ea

    rows = []
    cans = {s: ea.worst_case_canary(X, y, lam=cfg.GUO_LAM, surrogate=s) for s in canaries}
    for sigma in sigmas:
        for s, c in cans.items():
            t0 = time.perf_counter()
            a = ea.guo_removal_audit(X, y, c, lam=cfg.GUO_LAM, sigma=sigma,
                                     epsilon=cfg.GUO_EPSILON, delta=cfg.GUO_DELTA,
                                     key=jax.random.key(7), num_runs=runs, alpha=cfg.ALPHA)
            r = _audit_row(a)
            r.update(canary=s, sigma=sigma, seconds=time.perf_counter() - t0)
            rows.append(r)
            _log(f"  B guo sigma={sigma:g} canary={s}: LB {a.epsilon_lower:.3f} served "
                 f"{a.details['served_fraction']:.3f} ({r['seconds']:.1f}s)")
    c = cans[canaries[0]]
    t0 = time.perf_counter()
    bug = ea.guo_removal_audit(X, y, c, lam=cfg.GUO_LAM, sigma=cfg.BUG_SIGMA,
                               epsilon=cfg.GUO_EPSILON, delta=cfg.GUO_DELTA,
                               key=jax.random.key(8), num_runs=bug_runs, enforce_budget=False,
                               alpha=cfg.ALPHA, raise_on_violation=False)
    br = _audit_row(bug)
    br.update(canary=canaries[0], sigma=cfg.BUG_SIGMA, seconds=time.perf_counter() - t0)
    _log(f"  B negative control (budget unchecked, sigma={cfg.BUG_SIGMA:g}): LB "
         f"{bug.epsilon_lower:.3f} ({bug.verdict})")
    return {"audits": rows, "negative_control": br,
            "canaries": {s: {"y": c.y, "value": c.value, "influence_norm": c.influence_norm}
                         for s, c in cans.items()}}


def _adv_row(a, seconds: float) -> dict:
    return {"mechanism": a.mechanism, "adjacency": a.adjacency, "config": a.config,
            "runs_per_world": a.runs_per_world, "split": a.split,
            "epsilon_claimed": a.epsilon_claimed, "delta": a.delta,
            "epsilon_lower": a.epsilon_lower, "best_statistic": a.best_statistic,
            "verdict": a.verdict,
            "per_statistic": {s.statistic: s.epsilon_lower for s in a.per_statistic},
            "details": {k: v for k, v in a.details.items() if not k.startswith("api_")},
            "seconds": seconds}


def part_adversarial(sm: bool) -> dict:
    """Part F: the adversarial multi-statistic audit of every certified mechanism and its twins.

    Every honest row must stay within its certificate; every twin (the same mechanism with a
    mis-calibrated noise scale) should be caught at the same sample count.
    """
    from certun.audits import adversary as A
    from certun.nn import TrainConfig, mlp

    runs = cfg.SMOKE_ADV_RUNS if sm else cfg.ADV_RUNS
    truns = cfg.SMOKE_ADV_TRAINING_RUNS if sm else cfg.ADV_TRAINING_RUNS
    todo = cfg.SMOKE_ADV_MECHANISMS if sm else cfg.ADV_MECHANISMS
    eps, dlt = cfg.ADV_EPSILON, cfg.ADV_DELTA
    key = jax.random.key(cfg.SEED + 17)
    table = []

    def audit(w, n_runs, batch):
        t0 = time.perf_counter()
        a = A.adversarial_audit(w, key=key, num_runs=n_runs, alpha=cfg.ALPHA, batch_size=batch,
                                raise_on_violation=False)
        return _adv_row(a, time.perf_counter() - t0)

    def mechanism(label, w, twins, n_runs, batch=8192):
        row = audit(w, n_runs, batch)
        row["label"] = label
        row["twins"] = []
        for name, tw in twins:
            t = audit(tw, n_runs, batch)
            t.update(twin=name, caught=t["verdict"] == "violated")
            row["twins"].append(t)
        table.append(row)
        tw_txt = "; ".join(f"{t['twin']}: {t['epsilon_lower']:.2f}"
                           f"{' caught' if t['caught'] else ' NOT caught'}" for t in row["twins"])
        _log(f"  F {label} ({row['adjacency']}): {row['runs_per_world']} runs/world, claim "
             f"{row['epsilon_claimed']:.3g}, LB {row['epsilon_lower']:.3f} "
             f"({row['best_statistic']}, {row['verdict']}); twins: {tw_txt}")

    def half_and_loose(w):
        f = A.loose_scale(w)
        out = [("sigma halved", A.twin(w, 0.5, "sigma halved"))]
        if f < 0.5:
            out.append((f"sigma x{f:.3g} (certified bound loose)",
                        A.twin(w, f, f"sigma x{f:.3g}")))
        return out

    def n_t(w, n_in, n_out):
        return ("sigma following n_t", A.twin(w, (1.0, n_in / n_out), "sigma following n_t"))

    if "gaussian" in todo:
        w = A.gaussian_output_worlds(d=100, epsilon=eps, delta=dlt)
        mechanism("Gaussian output mechanism", w,
                  [("sigma halved", A.twin(w, 0.5, "sigma halved"))], max(runs, 100_000))

    if "release" in todo:
        c = cfg.ADV_RELEASE
        X, y = A.audit_problem(c["n"], c["d"])
        w = A.private_release_worlds(X, y, lam=c["lam"], epsilon=eps, delta=dlt)
        old = A.private_release_worlds(X, y, lam=c["lam"], epsilon=eps, delta=dlt,
                                       old_release_calibration=True)
        mechanism("private release (certun.release)", w,
                  [*half_and_loose(w), ("old release: sigma from n_t (add/remove)", old)], runs)

    c = cfg.ADV_UNLEARN
    X, y = A.audit_problem(c["n"], c["d"])
    for label, fn in (("Sekhari et al. Newton unlearning", A.sekhari_worlds),
                      ("Descent-to-Delete", A.descent_to_delete_worlds)):
        if ("sekhari" if fn is A.sekhari_worlds else "d2d") not in todo:
            continue
        w = fn(X, y, lam=c["lam"], epsilon=eps, delta=dlt)
        mechanism(label, w, [*half_and_loose(w), n_t(w, c["n"] + 1, c["n"])], runs)

    if "zhang" in todo:
        c = cfg.ADV_ZHANG
        Xz, ypm = A.audit_problem(c["n"], c["d"])
        net = mlp(c["d"], (c["width"],), 2, "tanh", input_scale=3.0)
        tc = TrainConfig(epochs=c["epochs"], batch_size=None, learning_rate=1e-2,
                         weight_decay=1e-3, radius=c["radius"], log_every=c["epochs"],
                         dtype="float64")
        w = A.zhang_worlds(Xz, (ypm > 0).astype(int), net, tc, [0], epsilon=eps, delta=dlt,
                           key=jax.random.key(0), lam=c["lam"], lam_min="none")
        mechanism("Zhang et al. network unlearning", w, half_and_loose(w), runs)

    if "langevin" in todo:
        c = cfg.ADV_LANGEVIN
        X, y = A.audit_problem(c["n"], c["d"])
        w = A.langevin_worlds(X, y, lam=c["lam"], sigma=c["sigma"], epsilon=eps, delta=dlt,
                              burn_in=c["burn_in"])
        mechanism("Langevin unlearning", w,
                  [("sigma halved", A.twin(w, 0.5, "sigma halved")),
                   ("no unlearning steps (K = 0)", A.twin(w, steps=0, tag="K = 0"))],
                  truns["langevin"], 2000)

    if "guo" in todo:
        c = cfg.ADV_GUO
        X, y = A.audit_problem(c["n"], c["d"])
        w = A.guo_worlds(X, y, lam=c["lam"], sigma=c["sigma"], epsilon=eps, delta=dlt)
        wb = A.guo_worlds(X, y, lam=c["lam"], sigma=c["sigma"], epsilon=eps, delta=dlt,
                          enforce_budget=False)
        f = c["bug_sigma_scale"]
        mechanism("Guo et al. certified removal", w,
                  [("sigma halved", A.twin(w, 0.5, "sigma halved")),
                   (f"budget unchecked, sigma x{f:g}", A.twin(wb, f, f"unchecked, x{f:g}"))],
                  truns["guo"], truns["guo"])
    honest_ok = all(r["verdict"] == "consistent" for r in table)
    return {"table": table, "honest_within_certificate": honest_ok,
            "statistics": list(A.STATISTICS),
            "bound": "max over the statistics of Clopper-Pearson bounds at alpha/m each "
                     "(Bonferroni), tests chosen on a separate selection split"}


def part_h2f(ds, surrogates, n_poisons: int, seeds) -> dict:
    """Part D: Hard-to-Forget deletions vs random ones, with and without the influence defence."""
    import certun
    from certun.audits import malicious as mal
    from certun.models import glm

    X, y, Xt, yt = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    lam, sigma = cfg.H2F_LAM, cfg.H2F_SIGMA
    theta = np.asarray(glm.fit("logistic", jnp.asarray(X), jnp.asarray(y)[:, None],
                               lam).params[:, 0])
    unl = certun.certified_removal(lam=lam, sigma=sigma, epsilon=1.0, delta=1e-4,
                                   auto_retrain=True, update="pcg")
    out: dict[str, Any] = {}
    for sur in surrogates:
        per_seed = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            ref = rng.choice(len(Xt), n_poisons, replace=False)
            P = mal.craft_poisons(Xt[ref], yt[ref], theta, X, y, lam=lam, surrogate=sur,
                                  radius=cfg.H2F_RADIUS)
            Xa, ya = np.concatenate([X, P]), np.concatenate([y, yt[ref]])
            st = unl.init(Xa, ya, jax.random.key(seed))
            n = len(X)
            poisons = rng.permutation(np.arange(n, n + n_poisons))
            clean = rng.choice(n, n_poisons, replace=False)
            mixed = rng.permutation(np.concatenate([poisons, clean]))
            refs = mal.influence_scores(st.W[:, 0], st.X, st.Y[:, 0], st.mask, (Xt, yt), lam=lam)
            thr = mal.influence_threshold(refs, cfg.H2F_QUANTILE)
            row = {"threshold": thr}
            for name, req, th in (("clean", clean, None), ("attack", poisons, None),
                                  ("attack_defended", poisons, thr), ("clean_defended", clean, thr),
                                  ("mixed", mixed, None), ("mixed_defended", mixed, thr)):
                r = mal.run_requests(unl, st, req, threshold=th, lam=lam)
                honoured = len(req) - r.pending
                row[name] = {"requests": len(req), "forced_retrains": r.forced_retrains,
                             "scheduled_retrains": r.scheduled_retrains,
                             "requests_per_forced_retrain":
                                 honoured / r.forced_retrains if r.forced_retrains else None,
                             "first_forced_retrain": r.first_retrain,
                             "budget_per_request": float(np.mean(r.budget_burnt)),
                             "flagged": r.flagged, "pending_at_end": r.pending}
            per_seed.append(row)
            first = {k: row[k]["first_forced_retrain"] for k in ("clean", "attack",
                                                                 "attack_defended")}
            _log(f"  D {sur} seed {seed}: first forced retrain {first}")

        def agg(rows: list, stream: str, key: str) -> float:
            # a stream without a forced retrain counts as its length + 1 (a lower bound)
            return float(np.mean([r[stream][key] if r[stream][key] is not None
                                  else r[stream]["requests"] + 1 for r in rows]))

        summary = {}
        for stream in ("clean", "attack", "attack_defended", "clean_defended", "mixed",
                       "mixed_defended"):
            summary[stream] = {
                "forced_retrains": float(np.mean([r[stream]["forced_retrains"]
                                                  for r in per_seed])),
                "first_forced_retrain": agg(per_seed, stream, "first_forced_retrain"),
                "budget_per_request": float(np.mean([r[stream]["budget_per_request"]
                                                     for r in per_seed])),
                "flagged": float(np.mean([r[stream]["flagged"] for r in per_seed]))}
        out[sur] = {"per_seed": per_seed, "summary": summary,
                    "note": "first_forced_retrain counts requests up to the first forced retrain "
                            "(stream length + 1 when none happened)"}
    return out


def part_distance(ds, N: int, T: int, methods) -> dict:
    """Distance to retraining over ensembles of each mechanism's randomness (REFERENCES 15, 18)."""
    import certun
    from certun.audits import distance as dist
    from certun.audits import lira
    from certun.release import private_release

    X, y, Xt, yt = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    n, lam = X.shape[0], cfg.DIST_LAM
    rng = np.random.default_rng(cfg.SEED)
    forget = rng.choice(n, cfg.DIST_FORGET, replace=False)
    keep = np.setdiff1d(np.arange(n), forget)
    retain = rng.choice(keep, cfg.DIST_RETAIN_SAMPLE, replace=False)
    Q = np.concatenate([X[forget], X[retain], Xt])
    yq = np.concatenate([y[forget], y[retain], yt])
    F, R = forget.size, retain.size
    splits = {"forget": np.arange(F), "retain": np.arange(F, F + R),
              "val": np.arange(F + R, Q.shape[0])}

    def margins(W):
        return np.asarray(dist.binary_margins(Q @ np.asarray(W).reshape(-1), yq))

    guo = certun.certified_removal(lam=lam, sigma=cfg.DIST_GUO_SIGMA, epsilon=1.0, delta=1e-4,
                                   auto_retrain=True, update="pcg")
    sek = certun.newton_unlearning(lam=lam, epsilon=1.0, delta=1e-4, max_removals=F)
    rel = private_release(certun.exact_retraining(lam=lam), lam=lam, epsilon=1.0, delta=1e-5)
    mechs = {"certified_removal": guo, "newton_unlearning": sek, "private_release": rel,
             "do_nothing": guo}

    def unlearned(name, k):
        u = mechs[name]
        st = u.init(X, y, k)
        if name == "do_nothing":
            return u.params(st), 0
        retrained = 0
        for i in forget:  # one request per row
            r = u.unlearn(st, [int(i)])
            st = r.state
            retrained += r.outcome == "retrained"
        return r.params, retrained

    def oracle(name, k):
        if name == "newton_unlearning":  # Sekhari et al.'s reference: A(S minus U) + noise
            st = sek.init(X, y, k)
            st = st._replace(removed=st.removed.at[jnp.asarray(forget)].set(1.0))
            return sek.retrain(st, jax.random.fold_in(k, 99), noised=True).params
        u = rel if name == "private_release" else guo
        return u.params(u.init(X[keep], y[keep], k))

    out = {}
    for name in methods:
        t0 = time.perf_counter()
        ku = [jax.random.fold_in(jax.random.key(11), i) for i in range(N + T)]
        ko = [jax.random.fold_in(jax.random.key(12), i) for i in range(2 * N + T)]
        U = [unlearned(name, k) for k in ku]
        Wu = [w for w, _ in U]
        Wo = [oracle(name, k) for k in ko]
        mu, mo = np.stack([margins(w) for w in Wu]), np.stack([margins(w) for w in Wo])
        rep = dist.klom_report(mu[:N], mo[:N], splits, oracle_reference=mo[N:2 * N])
        fs = splits["forget"]
        su = lira.ulira_scores(mu[N:, fs], mu[:N, fs], mo[:N, fs], fix_variance=True)
        so = lira.ulira_scores(mo[2 * N:, fs], mu[:N, fs], mo[:N, fs], fix_variance=True)
        auc = lira.per_example_auc(su, so)
        # paired distance to the retrained model with the same randomness (Guo: same b)
        pd, agree = [], []
        for k, w in zip(ku[:T], Wu[:T], strict=False):
            if name in ("certified_removal", "do_nothing"):
                st = guo.init(X, y, k)
                st = st._replace(mask=st.mask.at[jnp.asarray(forget)].set(0.0))
                ref = guo.retrain(st).params
                pd.append(dist.parameter_distance(w, ref))
                agree.append(dist.prediction_agreement(np.sign(Xt @ np.asarray(w)),
                                                       np.sign(Xt @ np.asarray(ref))))
        out[name] = {"klom": rep, "ulira_auc_forget_mean": float(np.mean(auc)),
                     "ulira_auc_forget_max": float(np.max(auc)),
                     "retrained_requests_mean": float(np.mean([r for _, r in U])),
                     "parameter_distance_same_b": float(np.mean(pd)) if pd else None,
                     "prediction_agreement_same_b": float(np.mean(agree)) if agree else None,
                     "models_per_ensemble": N, "target_models_per_side": T,
                     "seconds": time.perf_counter() - t0}
        _log(f"  E {name}: KLoM p95 forget {rep['forget']['p95']:.3f} (null "
             f"{rep['forget']['null_p95']:.3f}), retain {rep['retain']['p95']:.3f}, val "
             f"{rep['val']['p95']:.3f}; U-LiRA AUC {np.mean(auc):.3f}")
    return {"forget_rows": forget.tolist(), "lam": lam, "guo_sigma": cfg.DIST_GUO_SIGMA,
            "methods": out,
            "note": "oracle = the mechanism's own reference: retraining with a fresh b (Guo), "
                    "A(D minus F) + noise (Sekhari), release of retraining (private release); "
                    "'do_nothing' publishes the original model"}


# --------------------------------------------------------------------------- plots


def make_plots(results: dict, out: Path) -> list[str]:
    """Draw the figures into ``out``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(5.5, 4))
    g = results["gaussian"]
    for scale, col, lab in ((1.0, "C0", "honest"), (cfg.UNDER_NOISE, "C3", "10x under-noised")):
        pts = [(r["epsilon_claimed"], r["epsilon_lower"]) for r in g if r["noise_scale"] == scale]
        ax.plot(*zip(*pts, strict=False), "o-", color=col, label=f"lower bound, {lab}")
    e = np.array(sorted({r["epsilon_claimed"] for r in g}))
    ax.plot(e, e, "k--", lw=1, label="certified epsilon")
    ax.plot(e, e / 2, "k:", lw=1, label="half the certified epsilon")
    ax.set_xlabel("certified epsilon (delta = 1e-5)")
    ax.set_ylabel("empirical lower bound (95%)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ax.set_title("Gaussian output mechanism, pair attaining the sensitivity", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "gaussian_audit.png", dpi=120)
    plt.close(fig)
    files.append("gaussian_audit.png")

    h = results["hard_to_forget"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    streams = ["clean", "attack", "attack_defended", "mixed", "mixed_defended"]
    for i, (sur, d) in enumerate(h.items()):
        xs = np.arange(len(streams)) + 0.38 * i
        axes[0].bar(xs, [d["summary"][s]["first_forced_retrain"] for s in streams], 0.36,
                    label=sur)
        axes[1].bar(xs, [d["summary"][s]["budget_per_request"] for s in streams], 0.36,
                    label=sur)
    for ax, t in zip(axes, ("requests until the first forced retrain",
                            "budget burnt per request (sum scale)"), strict=False):
        ax.set_xticks(np.arange(len(streams)) + 0.19, [s.replace("_", "\n") for s in streams],
                      fontsize=7)
        ax.set_title(t, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Hard to Forget on digits 3-vs-8 (Guo et al., lambda = 0.01, sigma = 1.5)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "hard_to_forget.png", dpi=120)
    plt.close(fig)
    files.append("hard_to_forget.png")

    table = results["adversarial"]["table"]
    fig, ax = plt.subplots(figsize=(9, 4))
    seen = set()

    def lab(text):
        if text in seen:
            return None
        seen.add(text)
        return text

    for i, r in enumerate(table):
        ax.bar(i - 0.3, max(r["epsilon_lower"], 1e-3), 0.2, color="C0",
               label=lab("honest (max over statistics)"))
        for j, t in enumerate(r["twins"]):
            ax.bar(i - 0.1 + 0.2 * j, max(t["epsilon_lower"], 1e-3), 0.2,
                   color="C3" if t["caught"] else "C7",
                   label=lab("twin (caught)" if t["caught"] else "twin (not caught)"))
        ax.hlines(r["epsilon_claimed"], i - 0.4, i + 0.6, colors="k", lw=1)
    ax.set_xticks(range(len(table)), [r["label"].replace(" ", "\n", 2) for r in table],
                  fontsize=6)
    ax.set_yscale("log")
    ax.set_ylabel("empirical epsilon lower bound (95%)")
    ax.set_title("Adversarial audit of every mechanism (black: certified epsilon)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y", which="both")
    fig.tight_layout()
    fig.savefig(out / "adversarial_audit.png", dpi=120)
    plt.close(fig)
    files.append("adversarial_audit.png")
    return files


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import OneLineParser  # usage errors: one line, exit 2

    ap = OneLineParser(description="Empirical epsilon audits and Hard to Forget.")
    ap.add_argument("--out", default=None,
                    help="output directory (default experiments/audit_epsilon/results/"
                         "digits_3v8[-smoke])")
    ap.add_argument("--smoke", action="store_true", help="small run counts (CI; < 1 minute)")
    ap.add_argument("--json", action="store_true",
                    help="log to stderr; print results.json as one JSON object on stdout")
    return ap


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    """The experiment: ``(exit status, path of results.json)``; logs on stdout."""
    jax.config.update("jax_enable_x64", True)
    t_start, started = time.perf_counter(), utc_now()
    from certun.audits.epsilon import AuditViolation
    from certun.data import load_digits_3v8
    from certun.progress import progress_bar

    sm = args.smoke
    out = Path(args.out) if args.out else HERE / "results" / ("digits_3v8" + ("-smoke" if sm
                                                                              else ""))
    out.mkdir(parents=True, exist_ok=True)
    ds = load_digits_3v8()
    _log(f"audit_epsilon: {'smoke' if sm else 'full'} run; out {out}")
    # a bar over the five parts on stderr when it is a terminal (CERTUN_PROGRESS=0 turns it
    # off); host side only
    with progress_bar(5, "audit_epsilon parts") as bar:
        try:
            gauss = part_gaussian(cfg.SMOKE_GAUSSIAN_EPSILONS if sm else cfg.GAUSSIAN_EPSILONS,
                                  cfg.SMOKE_GAUSSIAN_RUNS if sm else cfg.GAUSSIAN_RUNS)
            bar.advance(1, info="A: Gaussian mechanism")
            guo = part_guo(ds.X_train, ds.y_train,
                           cfg.SMOKE_GUO_SIGMAS if sm else cfg.GUO_SIGMAS,
                           cfg.SMOKE_GUO_CANARIES if sm else cfg.GUO_CANARIES,
                           cfg.SMOKE_GUO_RUNS if sm else cfg.GUO_RUNS,
                           cfg.SMOKE_BUG_RUNS if sm else cfg.BUG_RUNS)
            bar.advance(1, info="B: certified removal")
        except AuditViolation as exc:
            print(f"AUDIT FAILED: {exc}", file=sys.stderr)
            return 1, None
        h2f = part_h2f(ds, cfg.SMOKE_H2F_SURROGATES if sm else cfg.H2F_SURROGATES,
                       cfg.SMOKE_H2F_POISONS if sm else cfg.H2F_POISONS,
                       cfg.SMOKE_H2F_SEEDS if sm else cfg.H2F_SEEDS)
        bar.advance(1, info="D: Hard to Forget")
        dist = part_distance(ds, cfg.SMOKE_DIST_MODELS if sm else cfg.DIST_MODELS,
                             cfg.SMOKE_DIST_TARGETS if sm else cfg.DIST_TARGETS,
                             cfg.SMOKE_DIST_METHODS if sm else cfg.DIST_METHODS)
        bar.advance(1, info="E: distance to retraining")
        adv = part_adversarial(sm)
        bar.advance(1, info="C: adversarial audit of every mechanism")

    rel = next(r for r in adv["table"] if r["label"].startswith("private release"))
    g1 = [r for r in gauss if r["epsilon_claimed"] == 1.0]
    honest = next(r for r in g1 if r["noise_scale"] == 1.0)
    under = next(r for r in g1 if r["noise_scale"] != 1.0)
    s0 = h2f[next(iter(h2f))]["summary"]
    acc = {
        "gaussian_honest_eps1": {"lower": honest["epsilon_lower"],
                                 "evaluated_runs_per_world": honest["evaluated_in"],
                                 "pass": honest["below_claim"] and honest["within_factor_2"]},
        "gaussian_under_noised_caught": {"lower": under["epsilon_lower"],
                                         "pass": under["verdict"] == "violated"},
        "guo_below_claim": {"lowers": [r["epsilon_lower"] for r in guo["audits"]],
                            "pass": all(r["below_claim"] for r in guo["audits"])},
        "guo_bug_caught": {"lower": guo["negative_control"]["epsilon_lower"],
                           "pass": guo["negative_control"]["verdict"] == "violated"},
        "release_below_claim": {"lower": rel["epsilon_lower"], "statistic": rel["best_statistic"],
                                "pass": rel["verdict"] == "consistent"},
        "every_mechanism_below_claim": {
            "lowers": {r["label"]: r["epsilon_lower"] for r in adv["table"]},
            "pass": adv["honest_within_certificate"]},
        "every_twin_caught": {
            "twins": {f"{r['label']}: {t['twin']}": t["epsilon_lower"]
                      for r in adv["table"] for t in r["twins"]},
            "pass_per_mechanism": {r["label"]: any(t["caught"] for t in r["twins"])
                                   for r in adv["table"]}},
        "old_release_caught": {
            "lower": next(t["epsilon_lower"] for t in rel["twins"] if t["twin"].startswith("old")),
            "pass": next(t["caught"] for t in rel["twins"] if t["twin"].startswith("old"))},
        "hard_to_forget": {
            "first_retrain": {k: s0[k]["first_forced_retrain"]
                              for k in ("clean", "attack", "attack_defended")},
            "pass": (s0["attack"]["first_forced_retrain"] < s0["clean"]["first_forced_retrain"]
                     <= 1.25 * s0["attack_defended"]["first_forced_retrain"])},
    }
    results = {
        "experiment": "audit_epsilon", "seed": cfg.SEED, "versions": package_versions(),
        "git": git_info(REPO), "timestamps": {"started": started, "finished": None},
        "command": [sys.executable, str(Path(__file__).resolve()),
                    *(argv if argv is not None else sys.argv[1:])],
        "config": {"smoke": bool(sm), "alpha": cfg.ALPHA,
                   "bound": "two-sided 95% Clopper-Pearson (2.5% per rate); test (threshold "
                            "and orientation) chosen on a separate half of the runs",
                   "guo": {"lam": cfg.GUO_LAM, "epsilon": cfg.GUO_EPSILON,
                           "delta": cfg.GUO_DELTA},
                   "hard_to_forget": {"lam": cfg.H2F_LAM, "sigma": cfg.H2F_SIGMA,
                                      "radius": cfg.H2F_RADIUS, "quantile": cfg.H2F_QUANTILE}},
        "gaussian": gauss, "guo": guo, "release": rel, "hard_to_forget": h2f,
        "distance_to_retraining": dist, "adversarial": adv,
        "acceptance": acc,
    }
    results["plots"] = make_plots(json_ready(results), out)
    results["timestamps"]["finished"] = utc_now()
    results["seconds"] = time.perf_counter() - t_start
    write_results(out / "results.json", results)
    _log(f"acceptance: {json_ready(acc)}")
    _log(f"wrote {out / 'results.json'} ({results['seconds']:.0f}s)")
    if not adv["honest_within_certificate"]:
        bad = [r["mechanism"] for r in adv["table"] if r["verdict"] != "consistent"]
        print(f"AUDIT FAILED: empirical epsilon above the certificate for {', '.join(bad)}",
              file=sys.stderr)
        return 1, out / "results.json"
    return 0, out / "results.json"


def main(argv: list[str] | None = None) -> int:
    """Run from the command line (``--json``: see ``run_with_json``); returns the exit status."""
    from certun._validate import ValidationError
    from certun.commands._args import run_with_json

    args = build_parser().parse_args(argv)

    def run() -> tuple[int, Path | None]:
        try:
            return _run(args, argv)
        except ValidationError as exc:  # bad input: one line on stderr, exit status 2
            print(f"audit_epsilon: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2, None

    return run_with_json(args.json, run)


if __name__ == "__main__":
    sys.exit(main())
