#!/usr/bin/env python
"""Compare Langevin unlearning with D2D, certified removal and retraining, in one command.

    python experiments/chien2024/run.py                       # digits 3-vs-8 (bundled)
    python experiments/chien2024/run.py --smoke               # small version (CI, < 2 min)
    python experiments/chien2024/run.py --mnist-path ~/data/mnist   # MNIST 3-vs-8, local files

The protocol of Chien et al. (NeurIPS 2024, "Langevin unlearning") on 3-vs-8, with one
adjacency for all methods (**removal**) and ``lam``, ``delta`` chosen for the data set size
(``config.py``):

1. **Accuracy vs epsilon** (their Fig. 3a): for each ``epsilon`` in {0.5, 1, 2, 5} and each
   step budget ``K``, one random training row is removed per trial, and the test accuracy
   of the published model is recorded for
   Langevin unlearning (``sigma`` calibrated so that exactly ``K`` noisy-GD steps reach
   ``epsilon``; also a draw from its reference, noisy GD from scratch), Descent-to-Delete
   (``K`` projected GD steps, noise calibrated to its contraction bound), Guo et al.'s
   certified removal (the smallest ``sigma`` of a grid whose certificate holds) and exact
   retraining (the optimum without the row).
2. **Steps needed vs removed points** (their Fig. 5): one batch request of ``S`` rows at
   ``epsilon = 1`` with fixed noise: Langevin's ``K`` (both RDP-to-DP conversions) and
   D2D's steps, computed by the accounting and run.
3. **Sequential requests** (their Fig. 3b): single-row removals one after another.
4. **Reference**: the paper's MNIST calibration recomputed by certun's accounting, and the
   authors' clip (``M = 1``, regulariser inside) measured on this data.

Writes ``results.json`` (atomically) and PNG plots into ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
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
    spec = importlib.util.spec_from_file_location("certun_experiments_chien2024_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()

METHODS = ("langevin", "langevin_tight", "langevin_reference", "d2d", "guo", "retrain")


class UsageError(Exception):
    """A problem with the command line or the local data (exit status 2, one-line message)."""


def _log(msg: str) -> None:
    print(msg, flush=True)


def load_dataset(name: str, mnist_path: str | None):
    """Load the requested dataset or raise :class:`UsageError` with a one-line message."""
    from certun.data import load_digits_3v8, load_mnist

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
    raise UsageError(f"unknown dataset {name!r}; choose from {', '.join(cfg.DATASETS)}")


# --------------------------------------------------------------------------- helpers


class Ctx:
    """The data and the fixed settings every part of the experiment shares."""

    def __init__(self, ds, lam: float, delta: float, burn_in: int):
        import jax.numpy as jnp

        from certun.models import glm

        self.ds, self.lam, self.delta, self.burn_in = ds, lam, delta, burn_in
        self.n = ds.n_train
        self.L = 0.25 + lam  # loose smoothness (data-independent): eta = 1/L
        self.eta = 1.0 / self.L
        self._X, self._y = jnp.asarray(ds.X_train), jnp.asarray(ds.y_train)
        self._fit = jax.jit(lambda mask: glm.fit("logistic", self._X, self._y, lam,
                                                 mask=mask, tol=1e-10).params)

    def acc(self, W) -> float:
        """Test accuracy of the parameters ``W``."""
        from certun.models import glm

        W = np.asarray(W, np.float64)
        return glm.accuracy("logistic", W.reshape(W.shape[0], -1), self.ds.X_test,
                            self.ds.y_test)

    def optimum(self, removed) -> np.ndarray:
        """The exact optimum on the training rows without ``removed``."""
        mask = np.ones(self.n)
        mask[np.asarray(removed, int)] = 0.0
        return np.asarray(self._fit(jax.numpy.asarray(mask)))


def _stats(v: list[float]) -> dict[str, float]:
    a = np.asarray(v, np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "n": int(a.size)}


# --------------------------------------------------------------------------- part 1: table


def guo_runs(ctx: Ctx, sigmas, rows, key_base: int) -> dict:
    """Certified removal of ``rows[t]`` (trial t) for each sigma of the grid.

    One unlearner per sigma, built at the largest epsilon of the table: the residual bound R
    after the request and the model do not depend on epsilon, and the certificate holds at
    epsilon exactly when R <= sigma epsilon / c (its budget test); a request refused at the
    largest epsilon is refused at every smaller one.
    """
    from certun.unlearners.guo import certified_removal

    eps_max = max(cfg.EPSILONS)
    out = {}
    for s in sigmas:
        unl = certified_removal(lam=ctx.lam, sigma=s, epsilon=eps_max, delta=ctx.delta,
                                update="pcg")
        per = []
        for t, row in enumerate(rows):
            st = unl.init(ctx.ds.X_train, ctx.ds.y_train, jax.random.key(key_base + t))
            res = unl.unlearn(st, [int(row)])
            ok = res.certificate.status != "fails" or "budget" in res.certificate.reason
            solver_ok = all(a.state != "failed" for a in res.certificate.assumptions)
            per.append({"R": res.diagnostics["residual_bound_after"],
                        "served": res.outcome == "unlearned", "solver_ok": bool(ok and solver_ok),
                        "acc": ctx.acc(res.params) if res.params is not None else None})
        out[s] = per
    return out


def accuracy_table(ctx: Ctx, K_list, trials: int, guo_sigmas, seed: int) -> dict:
    """Test accuracy vs epsilon for Langevin, D2D, Guo et al. and retraining (one removal)."""
    from certun.accounting import langevin as acct
    from certun.accounting.gaussian import guo_budget
    from certun.progress import progress_bar
    from certun.unlearners.descent_to_delete import descent_to_delete
    from certun.unlearners.langevin import langevin_unlearning

    rng = np.random.default_rng(seed)
    rows = rng.choice(ctx.n, size=trials, replace=False)
    retrain_acc = [ctx.acc(ctx.optimum([r])) for r in rows]
    t0 = time.perf_counter()
    guo = guo_runs(ctx, guo_sigmas, rows, 10_000 * (seed + 1))
    t_guo = time.perf_counter() - t0
    guo_cells = {}
    for eps in cfg.EPSILONS:
        accs, chosen = [], []
        for t in range(trials):
            pick = None
            for s in guo_sigmas:
                p = guo[s][t]
                if p["served"] and p["solver_ok"] and p["R"] <= guo_budget(s, eps, ctx.delta):
                    pick = (s, p["acc"])
                    break
            chosen.append(None if pick is None else pick[0])
            if pick is not None:
                accs.append(pick[1])
        guo_cells[eps] = {"accuracy": _stats(accs) if accs else None, "sigmas": chosen,
                          "certified_trials": len(accs)}

    cells = []
    # a bar on stderr when it is a terminal (CERTUN_PROGRESS=0 turns it off); host loop only
    with progress_bar(len(K_list) * len(cfg.EPSILONS), "accuracy table (K x epsilon)") as bar:
        for K in K_list:
            for eps in cfg.EPSILONS:
                t1 = time.perf_counter()
                sig = acct.sigma_needed(eps, K, m=ctx.lam, eta=ctx.eta, n=ctx.n, delta=ctx.delta,
                                        changed=1, adjacency="removal")
                lu = langevin_unlearning(lam=ctx.lam, sigma=sig, epsilon=eps, delta=ctx.delta,
                                         burn_in=ctx.burn_in)
                # the same, calibrated with dp-accounting's conversion (smaller sigma for K steps)
                sig_t = acct.sigma_needed(eps, K, m=ctx.lam, eta=ctx.eta, n=ctx.n, delta=ctx.delta,
                                          changed=1, adjacency="removal", conversion="tight")
                lt = langevin_unlearning(lam=ctx.lam, sigma=sig_t, epsilon=eps, delta=ctx.delta,
                                         burn_in=ctx.burn_in, conversion="tight")
                du = descent_to_delete(lam=ctx.lam, epsilon=eps, delta=ctx.delta, steps=K)
                acc_t, certs_t = [], []
                acc_l, acc_lr, acc_d, certs_l, certs_d = [], [], [], [], []
                ks, eps_l, eps_t = [], [], []
                d2d_sig = None
                for t, row in enumerate(rows):
                    key = jax.random.key(seed * 1_000_003 + 7919 * t + K)
                    st = lu.init(ctx.ds.X_train, ctx.ds.y_train, key)
                    res = lu.unlearn(st, [int(row)])
                    certs_l.append(res.certificate.status)
                    ks.append(res.diagnostics["K"])
                    eps_l.append(res.certificate.epsilon)
                    eps_t.append(res.diagnostics["epsilon_tight"])
                    if res.params is not None:
                        acc_l.append(ctx.acc(res.params))
                        ref = lu.retrain(res.state, jax.random.fold_in(key, 1))
                        acc_lr.append(ctx.acc(ref.params))
                    rt_ = lt.unlearn(lt.init(ctx.ds.X_train, ctx.ds.y_train, key), [int(row)])
                    certs_t.append(rt_.certificate.status)
                    if rt_.params is not None:
                        acc_t.append(ctx.acc(rt_.params))
                    sd = du.init(ctx.ds.X_train, ctx.ds.y_train, key)
                    rd = du.unlearn(sd, [int(row)])
                    certs_d.append(rd.certificate.status)
                    d2d_sig = rd.certificate.sigma
                    if rd.params is not None:
                        acc_d.append(ctx.acc(rd.params))
                cell = {
                    "K": K, "epsilon": eps,
                    "langevin": {"sigma": sig, "steps": ks, "certificates": certs_l,
                                 "epsilon_simple": float(max(eps_l)),
                                 "epsilon_tight": float(max(eps_t)),
                                 "accuracy": _stats(acc_l) if acc_l else None},
                    "langevin_tight": {"sigma": sig_t, "certificates": certs_t,
                                       "conversion": "dp_accounting_tight",
                                       "accuracy": _stats(acc_t) if acc_t else None},
                    "langevin_reference": {"accuracy": _stats(acc_lr) if acc_lr else None,
                                           "steps": ctx.burn_in + K},
                    "d2d": {"steps": K, "sigma": d2d_sig, "certificates": certs_d,
                            "accuracy": _stats(acc_d) if acc_d else None},
                    "guo": guo_cells[eps],
                    "retrain": {"accuracy": _stats(retrain_acc)},
                    "seconds": time.perf_counter() - t1,
                }
                cells.append(cell)
                bar.advance(1, info=f"K={K} eps={eps:g}")
                _log(f"  K={K:<4} eps={eps:<4g} langevin sigma={sig:.4g} acc "
                     f"{_fmt_acc(cell['langevin'])} (ref {_fmt_acc(cell['langevin_reference'])}, "
                     f"tight conv. sigma={sig_t:.4g} {_fmt_acc(cell['langevin_tight'])}) | "
                     f"d2d sigma={d2d_sig:.3g} acc {_fmt_acc(cell['d2d'])} | guo "
                     f"{_fmt_acc(guo_cells[eps])} | retrain {_fmt_acc(cell['retrain'])} "
                     f"({cell['seconds']:.1f} s)")
    return {"rows_removed": [int(r) for r in rows], "trials": trials, "cells": cells,
            "guo_sigma_grid": list(guo_sigmas), "guo_seconds": t_guo,
            "guo_residual_bounds": {str(s): [p["R"] for p in guo[s]] for s in guo_sigmas}}


def _fmt_acc(c: dict) -> str:
    a = c.get("accuracy")
    return "  n/a " if not a else f"{a['mean']:.3f}"


# --------------------------------------------------------------------------- part 2: steps


def steps_vs_removed(ctx: Ctx, S_list, sigma_l: float, sigma_d: float, seed: int) -> dict:
    """Unlearning steps needed at a fixed epsilon as the number of removed rows grows."""
    from certun.accounting import langevin as acct
    from certun.bounds import descent_to_delete as d2db
    from certun.unlearners.descent_to_delete import descent_to_delete
    from certun.unlearners.langevin import langevin_unlearning

    eps = cfg.STEPS_EPSILON
    common = dict(sigma=sigma_l, m=ctx.lam, eta=ctx.eta, delta=ctx.delta, adjacency="removal")
    curve = {"S": [], "langevin_simple": [], "langevin_tight": [], "d2d": []}
    d2d_unl = descent_to_delete(lam=ctx.lam, epsilon=eps, delta=ctx.delta, sigma=sigma_d)
    d_state = d2d_unl.init(ctx.ds.X_train, ctx.ds.y_train, jax.random.key(seed))
    from certun.accounting.gaussian import calibrate

    z = calibrate(eps, ctx.delta, 1.0).sigma
    gamma = d2db.contraction(ctx.L, ctx.lam)
    for S in cfg.S_CURVE:
        if S >= ctx.n:
            break
        curve["S"].append(S)
        for conv in ("simple", "tight"):
            curve[f"langevin_{conv}"].append(acct.steps_needed(
                eps, n=ctx.n, changed=S, conversion=conv, **common))
        curve["d2d"].append(d2db.steps_for(gamma, d_state.error,
                                           d2db.optimum_shift(ctx.lam, ctx.n, S),
                                           sigma_d / z - d_state.reference_error))
    lu = langevin_unlearning(lam=ctx.lam, sigma=sigma_l, epsilon=eps, delta=ctx.delta,
                             burn_in=ctx.burn_in)
    l_state = lu.init(ctx.ds.X_train, ctx.ds.y_train, jax.random.key(seed + 1))
    order = np.random.default_rng(seed + 2).permutation(ctx.n)
    runs = []
    for S in S_list:
        rows = order[:S]
        rl = lu.unlearn(l_state, rows)
        rd = d2d_unl.unlearn(d_state, rows)
        ref = lu.retrain(rl.state, jax.random.key(seed + 3)) if rl.params is not None else None
        runs.append({
            "S": S, "langevin_K": rl.diagnostics["K"],
            "langevin_epsilon": rl.certificate.epsilon,
            "langevin_epsilon_tight": rl.diagnostics["epsilon_tight"],
            "langevin_certificate": rl.certificate.status,
            "langevin_accuracy": ctx.acc(rl.params) if rl.params is not None else None,
            "langevin_reference_accuracy": ctx.acc(ref.params) if ref is not None else None,
            "d2d_steps": rd.diagnostics["I"], "d2d_certificate": rd.certificate.status,
            "d2d_accuracy": ctx.acc(rd.params) if rd.params is not None else None,
            "retrain_accuracy": ctx.acc(ctx.optimum(rows)),
        })
        r = runs[-1]
        _log(f"  S={S:<3} langevin K={r['langevin_K']:<5} acc {r['langevin_accuracy']:.3f} "
             f"(ref {r['langevin_reference_accuracy']:.3f}) | d2d I={r['d2d_steps']:<3} acc "
             f"{r['d2d_accuracy']:.3f} | retrain {r['retrain_accuracy']:.3f}")
    return {"epsilon": eps, "langevin_sigma": sigma_l, "d2d_sigma": sigma_d,
            "d2d_train_steps": int(d_state.steps[0]), "curve": curve, "runs": runs}


# --------------------------------------------------------------------------- part 3: sequential


def sequential(ctx: Ctx, requests: int, sigma_l: float, sigma_d: float, seed: int) -> dict:
    """Steps per request over a sequence of single-row requests (Langevin and D2D)."""
    from certun.unlearners.descent_to_delete import descent_to_delete
    from certun.unlearners.langevin import langevin_unlearning

    eps = cfg.STEPS_EPSILON
    order = np.random.default_rng(seed + 5).permutation(ctx.n)[:requests]
    out: dict[str, Any] = {"epsilon": eps, "rows": [int(r) for r in order]}
    for name, unl in (
            ("langevin", langevin_unlearning(lam=ctx.lam, sigma=sigma_l, epsilon=eps,
                                             delta=ctx.delta, burn_in=ctx.burn_in)),
            ("langevin_tight", langevin_unlearning(lam=ctx.lam, sigma=sigma_l, epsilon=eps,
                                                   delta=ctx.delta, burn_in=ctx.burn_in,
                                                   conversion="tight", recursion="tight")),
            ("d2d", descent_to_delete(lam=ctx.lam, epsilon=eps, delta=ctx.delta,
                                      sigma=sigma_d))):
        st = unl.init(ctx.ds.X_train, ctx.ds.y_train, jax.random.key(seed + 6))
        steps, statuses, epsilons = [], [], []
        for r in order:
            res = unl.unlearn(st, [int(r)])
            steps.append(res.diagnostics["K" if name.startswith("langevin") else "I"])
            statuses.append(res.certificate.status)
            epsilons.append(res.certificate.epsilon)
            if res.params is None:
                break
            st = res.state
        out[name] = {"steps": steps, "certificates": statuses, "epsilon": epsilons,
                     "accuracy": ctx.acc(st.W if name.startswith("langevin") else st.published)}
        _log(f"  {name}: steps per request {steps}, final accuracy {out[name]['accuracy']:.3f}")
    out["retrain_accuracy"] = ctx.acc(ctx.optimum(order))
    return out


# --------------------------------------------------------------------------- part 4: reference


def reference_block() -> dict:
    """The paper's MNIST calibration recomputed from certun's accounting (no data needed)."""
    from certun.accounting import langevin as acct
    from certun.bounds import descent_to_delete as d2db
    from certun.scale import lam_from_langevin, logistic_smoothness

    P = cfg.PAPER
    n = P["n"]
    m = lam_from_langevin(P["lam_paper"], n)
    dlt = 1.0 / n
    kw = dict(m=m, delta=dlt, M=P["M"], adjacency="replacement")
    req = [acct.Request(1, 1, n)]
    e_s = acct.langevin_epsilon(req, sigma=P["sigma_k1"], eta=1 / P["L_data"], **kw)
    e_t = acct.langevin_epsilon(req, sigma=P["sigma_k1"], eta=1 / P["L_data"],
                                conversion="tight", **kw)
    K_fig5 = [acct.steps_needed(1.0, sigma=P["fig5_sigma"], eta=1 / P["L_data"], n=n, changed=S,
                                **kw) for S in P["fig5_S"]]
    K_fig5_tight = [acct.steps_needed(1.0, sigma=P["fig5_sigma"], eta=1 / P["L_data"], n=n,
                                      changed=S, conversion="tight", **kw) for S in P["fig5_S"]]
    K10_loose = acct.steps_needed(1.0, sigma=P["fig5_sigma"], eta=1 / logistic_smoothness(m), n=n,
                                  changed=10, **kw)
    K_fig5_removal = [acct.steps_needed(1.0, sigma=P["fig5_sigma"], eta=1 / P["L_data"], n=n,
                                        changed=S, **dict(kw, adjacency="removal"))
                      for S in P["fig5_S"]]
    d2d_sig = [(iters, d2db.sigma_paper(0.25 + m, m, n, iters, 1.0, dlt), s)
               for iters, s in P["d2d_sigma_I"]]
    return {
        "setting": {"n": n, "lam_paper": P["lam_paper"], "m": m, "L_data": P["L_data"],
                    "L_loose": logistic_smoothness(m), "delta": dlt, "M": P["M"],
                    "adjacency": "replacement (the paper's)"},
        "epsilon_k1": {"sigma": P["sigma_k1"], "simple": e_s.epsilon, "simple_order": e_s.order,
                       "tight": e_t.epsilon, "tight_order": e_t.order,
                       "published_simple": P["epsilon_k1"],
                       "published_tight": P["epsilon_k1_tight"]},
        "fig5": {"sigma": P["fig5_sigma"], "S": list(P["fig5_S"]), "K": K_fig5,
                 "K_published": list(P["fig5_K_eps1"]), "K_tight_conversion": K_fig5_tight,
                 "K_removal_adjacency": K_fig5_removal,
                 "note": ("published K were searched on the grid 1, 11, 21, ...; certun's are "
                          "exact")},
        "K10_loose_L": {"K": K10_loose, "published": P["K10_loose"]},
        "d2d_paper_sigma": [{"I": iters, "sigma": s, "published": p}
                            for iters, s, p in d2d_sig],
        "accuracy_published_eps1_k1": P["accuracy_eps1_k1"],
        "source": "docs/bibliography.md §6, errata 6 and 11, section 5",
    }


def clip_diagnostic(ctx: Ctx, seed: int) -> dict:
    """The authors' clip (M = 1 on grad l_i + lam w) at the epsilon = 1, K = 1 noise."""
    from certun.accounting import langevin as acct
    from certun.unlearners.langevin import langevin_unlearning

    sig = acct.sigma_needed(1.0, 1, m=ctx.lam, eta=ctx.eta, n=ctx.n, delta=ctx.delta)
    unl = langevin_unlearning(lam=ctx.lam, sigma=sig, epsilon=1.0, delta=ctx.delta,
                              burn_in=ctx.burn_in, clip_norm=1.0)
    st = unl.init(ctx.ds.X_train, ctx.ds.y_train, jax.random.key(seed + 9))
    res = unl.unlearn(st, [0])
    return {"sigma": sig, "clip_norm": 1.0, "burn_in": ctx.burn_in,
            "max_per_example_grad_norm": st.max_grad_norm,
            "clipped_steps_in_training": st.clipped_steps,
            "certificate": res.certificate.status, "reason": res.certificate.reason}


# --------------------------------------------------------------------------- plots


def make_plots(results: dict, out: Path) -> list[str]:
    """Write the PNG figures; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    ds = results["dataset"]["name"]
    cells = results["accuracy_table"]["cells"]
    Ks = sorted({c["K"] for c in cells})
    fig, axes = plt.subplots(1, len(Ks), figsize=(4.2 * len(Ks), 3.6), sharey=True,
                             squeeze=False)
    styles = {"langevin": ("Langevin", "o-"),
              "langevin_tight": ("Langevin (tight conversion)", "o--"),
              "langevin_reference": ("Langevin retrain (ref.)", "o:"),
              "d2d": ("D2D", "s-"), "guo": ("Guo et al.", "^-"),
              "retrain": ("exact retrain", "k--")}
    for ax, K in zip(axes[0], Ks, strict=False):
        cs = sorted((c for c in cells if c["K"] == K), key=lambda c: c["epsilon"])
        eps = [c["epsilon"] for c in cs]
        for key, (label, st) in styles.items():
            m = [c[key]["accuracy"]["mean"] if c[key]["accuracy"] else np.nan for c in cs]
            s = [c[key]["accuracy"]["std"] if c[key]["accuracy"] else np.nan for c in cs]
            ax.errorbar(eps, m, yerr=s, fmt=st, label=label, capsize=3, ms=4)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(eps, [f"{e:g}" for e in eps])
        ax.set_xlabel(f"epsilon (removal, delta = {results['config']['delta']:g})")
        ax.set_title(f"K = {K} steps per request")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{ds}: accuracy after one removal (mean ± std over "
                 f"{results['accuracy_table']['trials']} trials)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_epsilon.png", dpi=110)
    plt.close(fig)
    files.append("accuracy_vs_epsilon.png")

    sv = results["steps_vs_removed"]
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    c = sv["curve"]
    ax.plot(c["S"], c["langevin_simple"], "-", label="Langevin K (Mironov conversion)")
    ax.plot(c["S"], c["langevin_tight"], "--", label="Langevin K (dp-accounting conversion)")
    ax.plot(c["S"], c["d2d"], "-.", label="D2D steps")
    runs = sv["runs"]
    ax.plot([r["S"] for r in runs], [r["langevin_K"] for r in runs], "o", color="C0")
    ax.plot([r["S"] for r in runs], [r["d2d_steps"] for r in runs], "s", color="C2")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows removed in one request (S)")
    ax.set_ylabel("gradient steps needed")
    ax.set_title(f"{ds}: epsilon = {sv['epsilon']:g}, Langevin sigma = {sv['langevin_sigma']:g}, "
                 f"D2D sigma = {sv['d2d_sigma']:g}", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "steps_vs_removed.png", dpi=110)
    plt.close(fig)
    files.append("steps_vs_removed.png")

    sq = results["sequential"]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, st in (("langevin", "o-"), ("langevin_tight", "o--"), ("d2d", "s-")):
        ax.plot(range(1, len(sq[name]["steps"]) + 1), sq[name]["steps"], st, label=name, ms=4)
    ax.set_xlabel("request (one row each)")
    ax.set_ylabel("steps for this request")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(f"{ds}: sequential removals at epsilon = {sq['epsilon']:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "sequential_steps.png", dpi=110)
    plt.close(fig)
    files.append("sequential_steps.png")
    return files


def format_table(results: dict) -> str:
    """The accuracy-vs-epsilon table as Markdown (mean ± std over trials)."""
    cells = results["accuracy_table"]["cells"]
    eps = sorted({c["epsilon"] for c in cells})
    lines = ["| K | method | " + " | ".join(f"eps = {e:g}" for e in eps) + " |",
             "|---|---|" + "---|" * len(eps)]
    names = {"langevin": "Langevin unlearning",
             "langevin_tight": "Langevin, tight RDP conversion",
             "langevin_reference": "Langevin retrain (reference)",
             "d2d": "Descent-to-Delete", "guo": "Guo et al. certified removal",
             "retrain": "exact retraining"}
    for K in sorted({c["K"] for c in cells}):
        row = {c["epsilon"]: c for c in cells if c["K"] == K}
        for key, label in names.items():
            vals = []
            for e in eps:
                a = row[e][key]["accuracy"]
                vals.append("n/a" if not a else f"{a['mean']:.3f} ± {a['std']:.3f}")
            lines.append(f"| {K} | {label} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import OneLineParser  # usage errors: one line, exit 2

    ap = OneLineParser(
        description="Langevin unlearning vs Descent-to-Delete vs certified removal vs retraining.")
    ap.add_argument("--dataset", choices=cfg.DATASETS, default=None,
                    help="digits_3v8 (bundled, default; mnist_3v8 if --mnist-path is given)")
    ap.add_argument("--mnist-path", default=None,
                    help="directory with the MNIST idx files, or a keras mnist.npz")
    ap.add_argument("--out", default=None,
                    help="output directory (default "
                         "experiments/chien2024/results/<dataset>[-smoke])")
    ap.add_argument("--smoke", action="store_true", help="small version (CI, < 2 min)")
    ap.add_argument("--trials", type=int, default=None, help="removal trials per table cell")
    ap.add_argument("--seed", type=int, default=0, help="seed of rows and noise (default 0)")
    ap.add_argument("--burn-in", type=int, default=None,
                    help="Langevin training steps (default from config.py: 2000 digits, "
                         "10000 MNIST; 500 with --smoke)")
    ap.add_argument("--json", action="store_true",
                    help="log to stderr; print results.json as one JSON object on stdout")
    return ap


def _run(args: argparse.Namespace, argv: list[str] | None) -> tuple[int, Path | None]:
    """The experiment: ``(exit status, path of results.json)``; logs on stdout."""
    jax.config.update("jax_enable_x64", True)
    t_start = time.perf_counter()
    started = utc_now()
    dataset = args.dataset or ("mnist_3v8" if args.mnist_path else cfg.DEFAULT_DATASET)
    try:
        if args.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {args.seed}")
        ds = load_dataset(dataset, args.mnist_path)
        s = cfg.SETTINGS[dataset]
        lam = s["lam"] if s["lam"] is not None else s["lam_paper"] * ds.n_train
        smoke = bool(args.smoke)
        K_list = cfg.SMOKE_K_LIST if smoke else cfg.K_LIST
        trials = (args.trials if args.trials is not None
                  else cfg.SMOKE_TRIALS if smoke else cfg.TRIALS[dataset])
        if not 1 <= trials < ds.n_train:
            raise UsageError(f"--trials must be in [1, {ds.n_train - 1}], got {trials}")
        guo_sigmas = cfg.SMOKE_GUO_SIGMAS if smoke else cfg.GUO_SIGMAS
        S_list = [S for S in (cfg.SMOKE_S_LIST if smoke else cfg.S_LIST) if S < ds.n_train]
        requests = cfg.SMOKE_SEQUENTIAL_REQUESTS if smoke else cfg.SEQUENTIAL_REQUESTS
        burn_in = (args.burn_in if args.burn_in is not None
                   else cfg.SMOKE_BURN_IN if smoke else s["burn_in"])
        if burn_in < 0:
            raise UsageError(f"--burn-in must be >= 0, got {burn_in}")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None

    out = Path(args.out) if args.out else HERE / "results" / (dataset + ("-smoke" if smoke
                                                                          else ""))
    out.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(ds, lam, s["delta"], burn_in)
    sig_l, sig_d = cfg.LANGEVIN_SIGMA[dataset], cfg.D2D_SIGMA[dataset]
    _log(f"chien2024: {dataset} n_train={ds.n_train} n_test={ds.n_test} d={ds.dim}; "
         f"lam={lam:g} (lambda_paper = {lam / ds.n_train:.3g}), delta={s['delta']:g}, removal "
         f"adjacency; K {list(K_list)}, {trials} trials; burn-in {burn_in}; out {out}")
    config = {
        "dataset": dataset, "smoke": smoke, "seed": args.seed, "lam": lam,
        "lam_paper": lam / ds.n_train, "delta": s["delta"], "adjacency": "removal",
        "epsilons": list(cfg.EPSILONS), "K_list": list(K_list), "trials": trials,
        "burn_in": burn_in, "smoothness": "loose: L = 1/4 + lam, eta = 1/L (Langevin), "
        "eta = 2/(L + m) (D2D)", "L": ctx.L, "scale": "mean (m = lam; the paper's lambda n)",
        "langevin_conversion": "mironov_simple (the paper's); tight reported too",
        "langevin_clip": "none (see clip_diagnostic for the authors' M = 1 clip)",
        "langevin_init": "N(0, 2 sigma^2/m I)", "d2d_calibration": "analytic Gaussian",
        "guo_sigma_grid": list(guo_sigmas), "S_list": S_list,
        "steps_epsilon": cfg.STEPS_EPSILON, "langevin_sigma_steps": sig_l,
        "d2d_sigma_steps": sig_d, "sequential_requests": requests,
        "mnist_path": args.mnist_path,
    }
    results: dict[str, Any] = {
        "experiment": "chien2024",
        "description": ("Langevin unlearning (Chien et al. 2024) vs Descent-to-Delete, Guo et "
                        "al.'s certified removal and retraining on 3-vs-8, removal adjacency"),
        "config": config, "seed": args.seed, "versions": package_versions(), "git": git_info(REPO),
        "platform": {"machine": platform.machine(), "system": platform.system(),
                     "jax_backend": jax.default_backend()},
        "command": ["python", "experiments/chien2024/run.py",
                    *(argv if argv is not None else sys.argv[1:])],
        "timestamps": {"started": started},
        "dataset": {"name": ds.name, "n_train": ds.n_train, "n_test": ds.n_test, "dim": ds.dim,
                    "source": ds.info.get("source"), "preprocessing": ds.info.get("preprocessing")},
    }
    t0 = time.perf_counter()
    results["reference"] = reference_block()
    r = results["reference"]
    _log(f"[reference] MNIST sigma=0.0096, K=1: epsilon {r['epsilon_k1']['simple']:.4f} "
         f"(paper 0.998), tight {r['epsilon_k1']['tight']:.4f} (0.777); Fig. 5 K "
         f"{r['fig5']['K']} vs {r['fig5']['K_published']}; loose-L K(10) "
         f"{r['K10_loose_L']['K']} (779)")
    _log("[1/4] accuracy vs epsilon (one removal per trial)")
    results["accuracy_table"] = accuracy_table(ctx, K_list, trials, guo_sigmas, args.seed)
    _log("[2/4] steps needed vs removed points")
    results["steps_vs_removed"] = steps_vs_removed(ctx, S_list, sig_l, sig_d, args.seed)
    _log("[3/4] sequential requests")
    results["sequential"] = sequential(ctx, requests, sig_l, sig_d, args.seed)
    _log("[4/4] the authors' clip")
    results["clip_diagnostic"] = clip_diagnostic(ctx, args.seed)
    cd = results["clip_diagnostic"]
    _log(f"  clip at 1.0: max per-example norm {cd['max_per_example_grad_norm']:.3f}, clipped "
         f"on {cd['clipped_steps_in_training']}/{burn_in} training steps; certificate "
         f"{cd['certificate']}")
    results["plots"] = make_plots(results, out)
    results["table_markdown"] = format_table(results)
    results["timestamps"]["finished"] = utc_now()
    results["seconds_total"] = time.perf_counter() - t_start
    write_results(out / "results.json", results)
    _log("")
    _log(results["table_markdown"])
    _log(f"\nwrote {out / 'results.json'} and {', '.join(results['plots'])} "
         f"({results['seconds_total']:.1f} s; experiment {time.perf_counter() - t0:.1f} s)")
    return 0, out / "results.json"


def main(argv: list[str] | None = None) -> int:
    """Run from the command line (``--json``: see ``run_with_json``); returns the exit status."""
    from certun.commands._args import run_with_json

    args = build_parser().parse_args(argv)
    return run_with_json(args.json, lambda: _run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
