"""The convex core's default path against the baselines a practitioner would pick.

L2-regularised logistic regression (certun's mean-scale objective), float64, on
``synthetic_logistic(n, d)`` with MNIST-like conditioning (feature ``j`` scaled by
``(j+1)^-decay``, rows re-normalised; as ``sequential_removal.py``). For one sequence of
single-row deletion requests, each **round** measures, interleaved:

* **certun default** (``certified_removal(...)`` with its defaults, ``auto_retrain=True``):
  every request through the public ``unlearn``, all-in (folds, remeasures, refreshes and
  retrains included), per request;
* **unlearn_sequence**: the same requests from the same state in one call, per request;
* **L-BFGS from zero** and **warm-started** from the current model, jitted (``glm.fit``), on
  the remaining rows to the mean-scale gradient tolerance ``--train-tol``;
* **Newton from zero** and **warm-started**, jitted, same tolerance;
* **scikit-learn** ``LogisticRegression(C = 1/(n lambda), fit_intercept=False)`` (L-BFGS;
  without the perturbation ``b``, which it cannot take: a lower bound on its cost);
* **recomputing the Hessian per removal** (Guo et al.'s reference algorithm): form
  ``X^T D X + lambda n I`` on the remaining rows at the current model and solve, jitted;
* **PCG** (``update="pcg"``), per request; **SISA** (8 shards x 4 slices), per deletion.

Each ratio is also printed against ``unlearn_sequence`` (``*_vs_sequence``): the same default
path, the same requests and certificates, served in scans.

Baselines are timed on a sample of the requests (their cost does not depend on the
request). Ratios are baseline / certun per request; each is the median over ``--rounds``
rounds. The 1-minute load average is printed beside every figure (the machine is shared).

Usage::

    python benchmarks/convex_core.py --n 12000 --d 784 --k 1000 --json a.json
    python benchmarks/convex_core.py --n 1500 --d 784 --k 1000 --only hessian --json b.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

try:
    import certun  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certun.data import normalize_rows, synthetic_logistic  # noqa: E402
from certun.models import glm  # noqa: E402
from certun.unlearners.guo import certified_removal  # noqa: E402

LOSS = glm.LOGISTIC


def load() -> float:
    """The 1-minute load average (the machine is shared)."""
    return float(os.getloadavg()[0])


def problem(n: int, d: int, seed: int, decay: float):
    """MNIST-like conditioned synthetic rows (unit norm) and +-1 labels."""
    ds = synthetic_logistic(n, d, seed=seed, n_test=10)
    X = np.asarray(ds.X_train, np.float64)
    if decay > 0:
        X = normalize_rows(X * (np.arange(1, d + 1, dtype=np.float64) ** -decay)[None, :])
    return np.asarray(X), np.asarray(ds.y_train)


def _fit_fn(lam: float, method: str, tol: float):
    @jax.jit
    def f(X, Y, b, mask, W0):
        return glm.fit(LOSS, X, Y, lam, b, mask, W0, method=method, tol=tol)
    return f


@jax.jit
def _hessian_step(X, Y, W, mask, idx, lam):
    """Guo et al.'s reference step: form the Hessian of the remaining rows, solve (Cholesky)."""
    mask = mask.at[idx].set(0.0)
    xu, yu = X[idx], Y[idx]
    Delta = xu.T @ LOSS.d1(xu @ W, yu) + lam * W
    G = glm.curvature_gram(LOSS, W, X, Y, mask)[0]
    H = G + lam * jnp.sum(mask) * jnp.eye(X.shape[1], dtype=X.dtype)
    return W + jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(H), True), Delta)


def _time(fn, *a) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*a))
    return time.perf_counter() - t0


def certun_round(args, X, y, order) -> dict:
    """All-in per request through ``unlearn``, then the same through ``unlearn_sequence``."""
    kw = dict(lam=args.lam, sigma=args.sigma, epsilon=args.epsilon, delta=args.delta,
              train_tol=args.train_tol, auto_retrain=True)
    unl = certified_removal(**kw)
    st0 = unl.init(X, y, jax.random.key(args.seed))
    unl.warmup(st0)
    reqs = [[int(i)] for i in order[:args.k]]
    # compile the scan's widths once (a different state object; discarded)
    unl.unlearn_sequence(st0, reqs[:40])
    l0 = load()
    t0 = time.perf_counter()
    st, outs = st0, {}
    for r in reqs:
        res = unl.unlearn(st, r)
        outs[res.outcome] = outs.get(res.outcome, 0) + 1
        st = res.state
    jax.block_until_ready(st.W)
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    seq = unl.unlearn_sequence(st0, reqs)
    jax.block_until_ready(seq.state.W)
    t_seq = time.perf_counter() - t0
    same = float(np.max(np.abs(np.asarray(seq.state.W) - np.asarray(st.W))))
    return {"ms_per_request": t_one / len(reqs) * 1e3, "ms_per_request_sequence":
            t_seq / len(reqs) * 1e3, "outcomes": outs, "scans": seq.dispatches,
            "max_abs_param_diff_sequence": same, "load": [l0, load()],
            "state_mid": st0, "unl": unl}


def baseline_round(args, X, y, order, st0, unl, which: set) -> dict:
    """Each baseline's seconds per retraining / removal on a sample of the requests."""
    out: dict = {}
    Xj, Yj = st0.X, st0.Y
    n = X.shape[0]
    samples = order[:args.samples]
    fits = {"lbfgs": _fit_fn(args.lam, "lbfgs", args.train_tol),
            "newton": _fit_fn(args.lam, "newton", args.train_tol)}
    zero = jnp.zeros_like(st0.W)
    for meth in ("lbfgs", "newton"):
        if meth not in which:
            continue
        f = fits[meth]
        f(Xj, Yj, st0.b, st0.mask, zero).params.block_until_ready()  # compile
        tz, tw = [], []
        for i in samples:
            mask = st0.mask.at[int(i)].set(0.0)
            l0 = load()
            tz.append(_time(f, Xj, Yj, st0.b, mask, zero))
            tw.append(_time(f, Xj, Yj, st0.b, mask, st0.W))
        out[f"{meth}_zero_s"] = float(np.median(tz))
        out[f"{meth}_warm_s"] = float(np.median(tw))
        out[f"{meth}_load"] = [l0, load()]
    if "sklearn" in which:
        from sklearn.linear_model import LogisticRegression

        ts = []
        l0 = load()
        for i in samples[:3]:
            keep = np.ones(n, bool)
            keep[int(i)] = False
            clf = LogisticRegression(C=1.0 / (keep.sum() * args.lam), fit_intercept=False,
                                     tol=1e-10, max_iter=10_000)
            t0 = time.perf_counter()
            clf.fit(X[keep], y[keep])
            ts.append(time.perf_counter() - t0)
        out["sklearn_s"], out["sklearn_load"] = float(np.median(ts)), [l0, load()]
    if "hessian" in which:
        idx = np.asarray([int(samples[0])], np.int32)
        _hessian_step(Xj, Yj, st0.W, st0.mask, idx, args.lam).block_until_ready()
        l0 = load()
        ts = [_time(_hessian_step, Xj, Yj, st0.W, st0.mask, np.asarray([int(i)], np.int32),
                    args.lam) for i in samples]
        out["hessian_s"], out["hessian_load"] = float(np.median(ts)), [l0, load()]
    if "pcg" in which:
        pcg = certified_removal(lam=args.lam, sigma=args.sigma, epsilon=args.epsilon,
                                delta=args.delta, train_tol=args.train_tol, update="pcg")
        sp = pcg.init(X, y, jax.random.key(args.seed))
        pcg.warmup(sp)
        sp = pcg.unlearn(sp, [int(order[-1])]).state  # later requests take the PCG path
        l0 = load()
        ts = []
        for i in samples:
            t0 = time.perf_counter()
            r = pcg.unlearn(sp, [int(i)])
            jax.block_until_ready(r.state.W)
            ts.append(time.perf_counter() - t0)
        out["pcg_s"], out["pcg_load"] = float(np.median(ts)), [l0, load()]
    if "sisa" in which:
        from certun.sisa import sisa

        ens = sisa(shards=8, slices=4, lam=args.lam, method="lbfgs", tol=1e-6)
        ss = ens.init(X, y, jax.random.key(args.seed))
        ens.delete(ss, [int(order[-2])])  # compile
        l0 = load()
        ts = []
        for i in samples:
            o = ens.delete(ss, [int(i)])
            jax.block_until_ready(o.state.checkpoints)
            ts.append(o.seconds)
        out["sisa_s"], out["sisa_load"] = float(np.median(ts)), [l0, load()]
    return out


def main(argv=None) -> int:
    """Run the rounds and print the ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=12000)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--decay", type=float, default=1.0)
    p.add_argument("--lam", type=float, default=1e-3)
    p.add_argument("--sigma", type=float, default=10.0)
    p.add_argument("--epsilon", type=float, default=1.0)
    p.add_argument("--delta", type=float, default=1e-4)
    p.add_argument("--train-tol", type=float, default=1e-10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--only", default="lbfgs,newton,sklearn,hessian,pcg,sisa",
                   help="comma-separated baselines")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    which = set(args.only.split(","))
    X, y = problem(args.n, args.d, args.seed, args.decay)
    order = np.random.default_rng(args.seed + 1).permutation(args.n)
    rounds = []
    for r in range(args.rounds):
        c = certun_round(args, X, y, order)
        b = baseline_round(args, X, y, order, c.pop("state_mid"), c.pop("unl"), which)
        ms = c["ms_per_request"]
        ratios = {k[:-2]: v * 1e3 / ms for k, v in b.items() if k.endswith("_s")}
        ratios["sequence_speedup"] = ms / c["ms_per_request_sequence"]
        for k in [k for k in ratios if k != "sequence_speedup"]:  # the same, through the scan
            ratios[f"{k}_vs_sequence"] = ratios[k] * ratios["sequence_speedup"]
        rounds.append({"certun": c, "baselines": b, "ratios": ratios})
        print(f"round {r}: {ms:.3f} ms/request (load {c['load'][0]:.1f}-{c['load'][1]:.1f}), "
              f"sequence {c['ms_per_request_sequence']:.3f} ms, outcomes {c['outcomes']}, "
              f"scans {c['scans']}", flush=True)
        for k, v in sorted(ratios.items()):
            lk = b.get(f"{k}_load", c["load"])
            print(f"  {k:>16}: {v:10.1f}x  (load {lk[0]:.1f}-{lk[1]:.1f})", flush=True)
    keys = rounds[0]["ratios"].keys()
    medians = {k: float(np.median([r["ratios"][k] for r in rounds])) for k in keys}
    print("medians over rounds:", json.dumps({k: round(v, 2) for k, v in medians.items()}))
    print("ms/request per round:", [round(r["certun"]["ms_per_request"], 3) for r in rounds],
          "sequence:", [round(r["certun"]["ms_per_request_sequence"], 3) for r in rounds])
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": rounds,
                                               "medians": medians}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
