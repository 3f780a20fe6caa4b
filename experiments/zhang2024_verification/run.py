#!/usr/bin/env python
"""Fragile verification of unlearning (Zhang et al., ICML 2024) vs certun's certificate + audit.

    python experiments/zhang2024_verification/run.py            # 20 seeds + one epsilon audit
    python experiments/zhang2024_verification/run.py --smoke    # CI

Per seed: the provider trains an L2-logistic model by SGD on digits (0-4 vs 5-9) including
the owner's rows, half of them watermarked with a trigger. Every recorded transcript carries
simulated hardware non-determinism (the paper's forge_sim: one SGD step of size
NOISE_LR_RATIO * lr on a random row per step), and the reproduction verifier calibrates its
tolerance tau on honest re-executions (TAU_FACTOR times the largest per-step error of
CALIBRATION_RUNS honest noisy runs). The owner asks for its rows'
deletion. Processes: honest retraining (same initialisation and schedule, forgotten rows
dropped), Adv-Sn (forgotten rows replaced by their nearest same-class retained rows),
forging (honest model published with a forged transcript), and Guo et al.'s certified
removal. Each is checked by backdoor verification (trigger success rate) and reproduction
verification (per-step error <= tau, no forgotten row in any batch); membership inference
on the forgotten rows (AUC of the model's confidence, forgotten vs test rows) measures what
is left. Once per full run the epsilon audit of certified removal
(certun.audits.adversary) gives an empirical lower bound on its epsilon.
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
    spec = importlib.util.spec_from_file_location("certun_experiments_zhangver_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()
PROCESSES = ("retraining", "adv_sn", "forging", "certified_removal")


def _log(msg: str) -> None:
    print(msg, flush=True)


def phi(x):
    """Model features of pixel rows in [0, 1]."""
    return (x - 0.5) / 4.0


def stamp(x):
    """The owner's trigger: the pixels of ``config.TRIGGER`` set to 1."""
    x = np.array(x, copy=True)
    x[:, list(cfg.TRIGGER)] = 1.0
    return x


def run_seed(seed: int, epochs: int) -> dict:
    """One seed: train, unlearn with every process, verify, attack."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import certun
    from certun.audits import stats
    from certun.audits import verification as V

    d = load_digits()
    Xa, ya = d.data / 16.0, np.where(d.target <= 4, 1.0, -1.0)
    X, Xt, y, yt = train_test_split(Xa, ya, test_size=0.25, random_state=seed, stratify=ya)
    rng = np.random.default_rng(seed)
    n = len(y)
    forget = rng.choice(n, int(cfg.FORGET_FRACTION * n), replace=False)
    wm = forget[: int(cfg.WATERMARK_SHARE * len(forget))]
    X, y = X.copy(), y.copy()
    X[wm], y[wm] = stamp(X[wm]), cfg.TARGET_LABEL
    retain = np.setdiff1d(np.arange(n), forget)
    F, Ft = phi(X), phi(Xt)
    trig = phi(stamp(Xt[yt != cfg.TARGET_LABEL]))
    sched = V.batch_schedule(n, batch_size=cfg.BATCH, epochs=epochs, seed=seed)
    kw = {"lr": cfg.LR, "lam": cfg.LAM}

    nlr = cfg.NOISE_LR_RATIO * cfg.LR
    T = len(sched)
    # every transcript a provider records carries its hardware's non-determinism, simulated
    # as in the paper's forge_sim (one SGD step of size nlr on a random row per step)
    ws_orig = V.sgd_transcript(F, y, sched, noise_rows=rng.choice(n, T), noise_lr=nlr, **kw)
    # honest retraining: same schedule with the forgotten rows dropped (batches re-cut)
    sched_r = V.batch_schedule(len(retain), batch_size=cfg.BATCH, epochs=epochs, seed=seed)
    sched_r = retain[sched_r]
    ws_retr = V.sgd_transcript(F, y, sched_r, noise_rows=rng.choice(retain, len(sched_r)),
                               noise_lr=nlr, **kw)
    nbr = V.nearest_same_class(X, y, forget, retain)
    sched_sn = V.substitute(sched, forget, nbr)
    ws_sn = V.sgd_transcript(F, y, sched_sn, noise_rows=rng.choice(retain, T), noise_lr=nlr,
                             **kw)
    ws_forged = V.forge_transcript(F, y, ws_orig, sched_sn, original_batches=sched,
                                   noise_rows=rng.choice(retain, T), noise_lr=nlr, **kw)

    # the verifier calibrates tau on honest re-executions: honest noisy training runs on
    # the retained rows with schedules of its own (independent of the transcripts checked)
    cal = []
    for c in range(cfg.CALIBRATION_RUNS):
        sc = retain[V.batch_schedule(len(retain), batch_size=cfg.BATCH, epochs=epochs,
                                     seed=100_000 + 100 * seed + c)]
        wc = V.sgd_transcript(F, y, sc, noise_rows=rng.choice(retain, len(sc)), noise_lr=nlr,
                              **kw)
        cal.append(V.reproduction_errors(F, y, wc, sc, **kw))
    tau = V.calibrate_tolerance(cal, factor=cfg.TAU_FACTOR)
    transcripts = {"retraining": (ws_retr, sched_r), "adv_sn": (ws_sn, sched_sn),
                   "forging": (ws_forged, sched_sn)}
    finals = {k: v[0][-1] for k, v in transcripts.items()}
    finals["original"] = ws_orig[-1]

    unl = certun.certified_removal(lam=cfg.LAM, sigma=cfg.GUO_SIGMA, epsilon=cfg.GUO_EPSILON,
                                   delta=cfg.GUO_DELTA, auto_retrain=True)
    st = unl.init(F, y, jax.random.key(seed))
    res = unl.unlearn(st, forget, jax.random.key(seed + 1))
    finals["certified_removal"] = np.asarray(res.params)
    again = unl.unlearn(st, forget, jax.random.key(seed + 1))  # the verifier re-executes it
    guo_err = float(np.linalg.norm(np.asarray(again.params) - finals["certified_removal"]))
    # honest retraining in the certified model's own world: Newton on the retained rows
    ref = unl.init(F[retain], y[retain], jax.random.key(seed + 2))
    finals["retraining_newton"] = np.asarray(unl.params(ref))

    out = {"seed": seed, "n": n, "forget": len(forget), "watermarked": len(wm), "tau": tau}
    asr_ref = {}
    for k, w in finals.items():
        conf_f = 1 / (1 + np.exp(-y[forget] * (F[forget] @ w)))
        conf_t = 1 / (1 + np.exp(-yt * (Ft @ w)))
        out[f"mia_{k}"] = stats.auc(conf_f, conf_t)
        out[f"asr_{k}"] = V.backdoor_asr(w, trig, cfg.TARGET_LABEL)
        out[f"acc_{k}"] = float(np.mean(np.sign(Ft @ w) == yt))
    asr_ref["sgd"], asr_ref["newton"] = out["asr_retraining"], out["asr_retraining_newton"]
    for k in ("retraining", "adv_sn", "forging", "original", "certified_removal"):
        ref_asr = asr_ref["newton" if k == "certified_removal" else "sgd"]
        out[f"backdoor_pass_{k}"] = float(out[f"asr_{k}"] <= ref_asr + cfg.BACKDOOR_MARGIN)
    for k, (ws, sc) in transcripts.items():
        e = V.reproduction_errors(F, y, ws, sc, **kw)
        r = V.reproduction_verify(e, sc, forget, tau)
        out[f"repro_pass_{k}"] = float(r["passes"])
        out[f"repro_max_error_{k}"] = r["max_error"]
        out[f"repro_step_share_{k}"] = float(np.mean(e <= tau))
    out["repro_pass_original"] = 0.0  # the honest transcript of the original touches D_f
    out["repro_pass_certified_removal"] = float(guo_err <= tau)
    out["repro_max_error_certified_removal"] = guo_err
    return out


def epsilon_audit(runs: int) -> dict:
    """Empirical lower bound on certified removal's epsilon (worst-case canary, digits 3v8)."""
    from certun.audits import adversary as A
    from certun.data import load_digits_3v8

    ds = load_digits_3v8()
    X = A.safe_unit_rows(ds.X_train[: cfg.AUDIT_ROWS])
    w = A.guo_worlds(X, ds.y_train[: cfg.AUDIT_ROWS], lam=1e-2, sigma=1.0,
                     epsilon=cfg.GUO_EPSILON, delta=1e-5)
    a = A.adversarial_audit(w, key=jax.random.key(0), num_runs=runs, fit_runs=runs // 5,
                            batch_size=runs, raise_on_violation=False)
    return {"epsilon_claimed": a.epsilon_claimed, "epsilon_lower": a.epsilon_lower,
            "best_statistic": a.best_statistic, "verdict": a.verdict, "runs_per_world": runs,
            "setting": f"digits 3v8, {cfg.AUDIT_ROWS} rows, lam 1e-2, sigma 1, delta 1e-5"}


def make_plot(pooled: dict, out: Path) -> list[str]:
    """MIA AUC on the forgotten rows and pass rates of both verifications per process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = ["original", "retraining", "adv_sn", "forging", "certified_removal"]
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.5))
    mu = [pooled[f"mia_{k}"]["mean"] for k in ks]
    e = np.array([[pooled[f"mia_{k}"]["mean"] - pooled[f"mia_{k}"]["ci"][0],
                   pooled[f"mia_{k}"]["ci"][1] - pooled[f"mia_{k}"]["mean"]] for k in ks]).T
    axs[0].bar([k.replace("_", "\n") for k in ks], mu, yerr=np.maximum(e, 0), capsize=4)
    axs[0].axhline(0.5, color="k", lw=0.8)
    axs[0].set_ylim(0.4, 1.0)
    axs[0].set_ylabel("MIA AUC on forgotten rows")
    x = np.arange(len(ks))
    axs[1].bar(x - 0.2, [pooled[f"backdoor_pass_{k}"]["mean"] for k in ks], 0.4,
               label="backdoor verification")
    axs[1].bar(x + 0.2, [pooled[f"repro_pass_{k}"]["mean"] for k in ks], 0.4,
               label="reproduction verification")
    axs[1].set_xticks(x, [k.replace("_", "\n") for k in ks])
    axs[1].set_ylabel("pass rate over seeds")
    axs[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "zhang2024_verification.png", dpi=120)
    plt.close(fig)
    return ["zhang2024_verification.png"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import seeded_experiment_parser

    return seeded_experiment_parser(
        "Zhang et al. (2024) fragile verification of unlearning.", "zhang2024_verification",
        "digits", "2 seeds, 4 epochs, no audit (CI)")


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    jax.config.update("jax_enable_x64", True)
    from certun.audits.stats import mean_ci

    t0, started = time.perf_counter(), utc_now()
    seeds = experiment_seeds(args, cfg.SEEDS, cfg.SMOKE_SEEDS)
    epochs = cfg.SMOKE_EPOCHS if args.smoke else cfg.EPOCHS
    runs = cfg.SMOKE_AUDIT_RUNS if args.smoke else cfg.AUDIT_RUNS
    out = experiment_out(args, HERE, "digits")
    _log(f"zhang2024_verification: digits 0-4 vs 5-9, seeds {list(seeds)}, {epochs} epochs")
    per_seed = []
    for s in seeds:
        r = run_seed(s, epochs)
        per_seed.append(r)
        _log(f"  seed {s}: " + " ".join(f"{k}: mia {r['mia_' + k]:.3f} asr {r['asr_' + k]:.2f}"
                                         for k in ("original", "retraining", "adv_sn",
                                                   "forging", "certified_removal")))
    keys = [k for k in per_seed[0] if k not in ("seed", "n", "forget", "watermarked")]
    pooled = {k: mean_ci([r[k] for r in per_seed]) for k in keys}
    for k in ("adv_sn", "forging", "certified_removal"):
        pooled[f"mia_{k}_minus_retraining"] = mean_ci([r[f"mia_{k}"] - r["mia_retraining"]
                                                       for r in per_seed])
    audit = epsilon_audit(runs) if runs else None
    acceptance = {
        "honest_retraining_passes_reproduction": pooled["repro_pass_retraining"]["mean"],
        "adv_sn_passes_backdoor": pooled["backdoor_pass_adv_sn"]["mean"],
        "adv_sn_passes_reproduction": pooled["repro_pass_adv_sn"]["mean"],
        "adv_sn_mia_above_retraining": pooled["mia_adv_sn_minus_retraining"]["ci"][0] > 0,
        "forging_passes_reproduction": pooled["repro_pass_forging"]["mean"],
        "forging_mia_above_retraining": pooled["mia_forging_minus_retraining"]["ci"][0] > 0,
        "certified_passes_backdoor": pooled["backdoor_pass_certified_removal"]["mean"],
        "certified_passes_reproduction": pooled["repro_pass_certified_removal"]["mean"],
        "audit_lower_bound_below_epsilon": (None if audit is None else
                                            audit["epsilon_lower"] <= audit["epsilon_claimed"]),
    }
    results = {
        "experiment": "zhang2024_verification", "seeds": list(seeds),
        "versions": package_versions(), "git": git_info(REPO),
        "timestamps": {"started": started, "finished": None},
        "command": [sys.executable, str(Path(__file__).resolve()),
                    *(argv if argv is not None else sys.argv[1:])],
        "dataset": {"name": "digits", "task": "0-4 (+1) vs 5-9 (-1)"},
        "config": {"smoke": bool(args.smoke), "lam": cfg.LAM, "lr": cfg.LR,
                   "batch": cfg.BATCH, "epochs": epochs,
                   "forget_fraction": cfg.FORGET_FRACTION,
                   "watermark_share": cfg.WATERMARK_SHARE, "trigger": list(cfg.TRIGGER),
                   "noise_lr_ratio": cfg.NOISE_LR_RATIO, "tau_factor": cfg.TAU_FACTOR,
                   "calibration_runs": cfg.CALIBRATION_RUNS,
                   "tolerance": "tau = tau_factor x max per-step error of calibration_runs "
                                "honest noisy re-executions (calibrate_tolerance)",
                   "backdoor_margin": cfg.BACKDOOR_MARGIN,
                   "guo": {"sigma": cfg.GUO_SIGMA, "epsilon": cfg.GUO_EPSILON,
                           "delta": cfg.GUO_DELTA}},
        "threat": "a dishonest provider passing verification while keeping the forgotten "
                  "rows' influence; the certificate's claim is testable by the epsilon audit",
        "pooled": pooled, "per_seed": per_seed, "epsilon_audit": audit,
        "acceptance": acceptance,
    }
    results["plots"] = make_plot(json_ready(pooled), out)
    finish_experiment(out, results, t0)
    for k, p in pooled.items():
        _log(f"{k:40s} {p['mean']:.4f} [{p['ci'][0]:.4f}, {p['ci'][1]:.4f}]")
    _log(f"epsilon audit: {audit}")
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
