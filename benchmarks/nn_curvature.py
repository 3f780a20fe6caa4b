"""Curvature products, LiSSA and Zhang et al.'s unlearning on a 784-256-256-10 MLP, as ratios.

One run measures, on ``n`` = 12,000 MNIST-like synthetic rows (10 class templates plus noise,
rows normalised to unit norm; the network's fixed input factor is sqrt(784) = 28), float32:

1. **HVP / gradient**: jitted ``jax.grad`` of the mean objective (cross-entropy plus
   ``(kappa/2)||w||^2``) on all rows -- the unit -- against a jitted forward-over-reverse
   HVP (:func:`certun.primitives.hvp`), a jitted Gauss-Newton-vector product
   (:func:`certun.primitives.ggn_vp`) and the same on a 512-row minibatch. Target: HVP
   within 3 gradients.
2. **LiSSA loop overhead**: :func:`certun.primitives.lissa_solver` with 100 steps (one chain)
   in one jitted call, against 100 separate jitted HVP calls (same batch), and against a
   bare ``lax.fori_loop`` of 100 linearised products (what the recursion cannot avoid).
   Full batch and 512-row minibatches sampled with replacement. Target: < 10% overhead.
3. **Unlearning / retraining**: :func:`certun.unlearners.zhang_unlearning` (CG on the damped
   Hessian, at most 100 steps, plus the Lanczos ``lambda_min`` estimate and the certificate)
   and its LiSSA variant at the paper's defaults (s1 = 10, s2 = 1000, scale 1000, batch 10),
   removing 10% of the rows, against :func:`certun.nn.train` from the same initialisation on
   the remaining rows (the same ``--epochs`` as the original training).
4. **Peak resident memory**: three child processes (``--rss-child``) build the same data and
   model, compile and run their operation once (nothing, a gradient, an HVP), reset the
   high-water mark (``/proc/self/clear_refs``), run it 20 times and report the peak resident
   set (``VmHWM`` of ``/proc/self/status``; ``resource.getrusage`` keeps the parent's peak
   across ``fork``/``exec`` on Linux, so it is only the fallback). Reported: the ratio of the
   HVP child's peak to the gradient child's, and of their excess over the idle child's.

Round-robin timing (every operation once per round, rotated), medians and IQR, every call
ends in ``block_until_ready``; compilation and a warm-up call precede timing.

Usage::

    python benchmarks/nn_curvature.py                       # ~3-6 min on 2 loaded cores
    python benchmarks/nn_curvature.py --json /tmp/nn.json --rounds 7
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve()
try:
    import certun  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without installing
    sys.path.insert(0, str(HERE.parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

WIDTHS = (256, 256)
WEIGHT_DECAY = 5e-4


def mnist_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """10 random non-negative 28x28 templates plus noise, rows normalised to unit norm."""
    rng = np.random.default_rng(seed)
    templates = np.clip(rng.normal(0.3, 0.4, size=(10, 784)), 0.0, 1.0)
    y = rng.integers(0, 10, size=n)
    from certun.data import unit_row_scale

    X = np.clip(templates[y] + rng.normal(0.0, 0.35, size=(n, 784)), 0.0, 1.0) - 0.5
    # norm <= 1 in float32 in any summation order (proofs/unit_rows.md)
    return unit_row_scale(X, dtype=np.float32), y.astype(np.int64)


def build(n: int, seed: int):
    """Data, network, objective and initial parameters (float32)."""
    from certun.nn import mlp, objective

    X, y = mnist_like(n, seed)
    net = mlp(784, WIDTHS, 10, "relu", input_scale=28.0)
    params = net.init(jax.random.key(seed), jnp.float32)
    return net, objective(net, WEIGHT_DECAY), jnp.asarray(X), jnp.asarray(y), params


def summarize(ts: list[float]) -> dict:
    """Median and IQR of a list of seconds, in ms."""
    a = np.asarray(ts) * 1e3
    return {"median_ms": float(np.median(a)), "q25_ms": float(np.percentile(a, 25)),
            "q75_ms": float(np.percentile(a, 75)), "n": int(a.size)}


def time_round_robin(ops: dict, rounds: int, warmup: int = 2) -> dict:
    """Time each zero-argument callable once per round, order rotated every round."""
    names = list(ops)
    for name in names:  # compile + warm up
        for _ in range(warmup):
            jax.block_until_ready(ops[name]())
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            jax.block_until_ready(ops[name]())
            samples[name].append(time.perf_counter() - t0)
    return {k: summarize(v) for k, v in samples.items()}


def rss_child(kind: str, n: int, seed: int) -> int:
    """Build data and model, compile ``kind``, reset the peak, run it 20 times, print peaks (KiB).

    Prints the process's lifetime peak and the peak *during the 20 calls*: after compilation
    and one call the high-water mark is reset (``echo 5 > /proc/self/clear_refs``), so data
    generation and compilation do not mask the operation's own transient memory.
    """
    from certun.primitives import hvp

    net, F, X, y, p = build(n, seed)
    v = jax.tree.map(jnp.ones_like, p)
    if kind == "grad":
        f = jax.jit(lambda p, v: jax.grad(F)(p, X, y))
    elif kind == "hvp":
        f = jax.jit(lambda p, v: hvp(F, p, v, X, y))
    else:
        f = jax.jit(lambda p, v: p)
    jax.block_until_ready(f(p, v))
    lifetime_setup = peak_rss_kib()
    reset = reset_peak_rss()
    for _ in range(20):
        jax.block_until_ready(f(p, v))
    print(json.dumps({"kind": kind, "maxrss_kib": peak_rss_kib(), "setup_peak_kib": lifetime_setup,
                      "peak_reset": reset}))
    return 0


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_kib() -> int:
    """This process's peak resident set: ``VmHWM`` from ``/proc/self/status``.

    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is the fallback; on Linux it survives
    ``execve`` and so reports the parent's peak at ``fork`` when that was larger.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure_rss(n: int, seed: int) -> dict:
    """Peak RSS (MiB) of three child processes: idle, 20 gradients, 20 HVPs."""
    out, raw = {}, {}
    for kind in ("none", "grad", "hvp"):
        r = subprocess.run([sys.executable, str(HERE), "--rss-child", kind, "--n", str(n),
                            "--seed", str(seed)], capture_output=True, text=True, check=True,
                           env={**os.environ, "JAX_PLATFORMS": "cpu"})
        raw[kind] = json.loads(r.stdout.strip().splitlines()[-1])
        out[kind] = raw[kind]["maxrss_kib"] / 1024.0
    return {"peak_rss_mib": out, "children": raw, "hvp_over_grad": out["hvp"] / out["grad"],
            "hvp_over_grad_above_baseline": (out["hvp"] - out["none"])
            / max(out["grad"] - out["none"], 1e-9),
            "peak_reset_after_setup": all(v["peak_reset"] for v in raw.values())}


def run(args) -> dict:
    """Every measurement of the module docstring; returns a JSON-ready dict."""
    from certun.nn import TrainConfig, minibatch_objective, num_params, train
    from certun.primitives import ggn_vp, hessian_operator, hvp, lissa_solver
    from certun.unlearners import zhang_unlearning

    net, F, X, y, p0 = build(args.n, args.seed)
    n = int(X.shape[0])
    # a trained model (the original training run; its time is the retraining baseline's scale)
    tcfg = TrainConfig(epochs=args.epochs, batch_size=128, learning_rate=1e-3,
                       weight_decay=WEIGHT_DECAY, radius=args.radius, log_every=args.epochs,
                       dtype="float32")
    t0 = time.perf_counter()
    tr = train(net, np.asarray(X), np.asarray(y), jax.random.key(args.seed), tcfg)
    t_train = time.perf_counter() - t0
    p = tr.params
    v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(1), a.shape, a.dtype), p)
    mb = args.batch
    Xb, yb = X[:mb], y[:mb]

    def ce(out, yy):
        from certun.nn import cross_entropy

        return cross_entropy(out, yy)

    grad_full = jax.jit(lambda p: jax.grad(F)(p, X, y))
    hvp_full = jax.jit(lambda p, v: hvp(F, p, v, X, y))
    ggn_full = jax.jit(lambda p, v: ggn_vp(net.apply, ce, p, v, X, y))
    grad_mb = jax.jit(lambda p: jax.grad(F)(p, Xb, yb))
    hvp_mb = jax.jit(lambda p, v: hvp(F, p, v, Xb, yb))
    mask = jnp.ones((n,), jnp.float32)
    sample_f = minibatch_objective(net, WEIGHT_DECAY, X, y, mask, mb)
    hvp_sampled = jax.jit(lambda p, v, k: hvp(lambda q: sample_f(k, q), p, v))
    s = 50.0
    lis = lissa_solver(scale=s, depth=100, repeats=1)

    @jax.jit
    def lissa_full(p, v):
        op = hessian_operator(F, p, X, y, damping=0.1)
        return lis.solve(lis.init(op), v).value

    @jax.jit
    def lissa_mb(p, v, k):
        op = hessian_operator(F, p, X, y, sample_f=sample_f, damping=0.1)
        return lis.solve(lis.init(op), v, k).value

    @jax.jit
    def bare_loop(p, v):  # linearise once, then 100 products: the floor of the recursion
        op = hessian_operator(F, p, X, y, damping=0.1)
        return lax.fori_loop(0, 100, lambda i, u: jax.tree.map(
            lambda vi, ui, hi: vi + ui - hi / s, v, u, op.mv(u)), v)

    def hundred(f, *a):
        def go():
            out = None
            for _ in range(100):
                out = f(*a)
            return out
        return go

    keys = jax.random.split(jax.random.key(2), 100)

    def hundred_sampled():
        out = None
        for i in range(100):
            out = hvp_sampled(p, v, keys[i])
        return out

    ops = {
        "grad_full": lambda: grad_full(p), "hvp_full": lambda: hvp_full(p, v),
        "ggn_full": lambda: ggn_full(p, v), "grad_mb": lambda: grad_mb(p),
        "hvp_mb": lambda: hvp_mb(p, v),
    }
    t_unit = time_round_robin(ops, args.rounds)
    loops = {
        "lissa100_full": lambda: lissa_full(p, v), "hvp_full_x100": hundred(hvp_full, p, v),
        "bare_loop100_full": lambda: bare_loop(p, v),
        "lissa100_mb": lambda: lissa_mb(p, v, keys[0]), "hvp_mb_sampled_x100": hundred_sampled,
    }
    t_loops = time_round_robin(loops, max(3, args.rounds // 3), warmup=1)

    # unlearning 10% vs retraining from the same initialisation on the remaining rows
    rng = np.random.default_rng(args.seed)
    forget = np.sort(rng.choice(n, n // 10, replace=False))
    unl_cg = zhang_unlearning(net, tcfg, lam=args.lam, solver="cg", gradient="forget",
                              epsilon=1.0, cg_max_steps=100, cg_rtol=1e-4, lanczos_steps=32)
    unl_lissa = zhang_unlearning(net, tcfg, lam=args.lam, solver="lissa", gradient="forget",
                                 epsilon=1.0, lanczos_steps=32)  # the paper's LiSSA defaults
    st0 = unl_cg.init(np.asarray(X), np.asarray(y), jax.random.key(args.seed))
    res = {}
    for name, unl in (("cg", unl_cg), ("lissa_paper", unl_lissa)):
        times, diag = [], None
        for _ in range(2):  # the first call compiles
            t0 = time.perf_counter()
            r = unl.unlearn(st0, forget)
            jax.block_until_ready(jax.tree.leaves(r.diagnostics["params_noiseless"]))
            times.append(time.perf_counter() - t0)
            diag = r
        res[name] = {"first_call_s": times[0], "warm_s": times[1],
                     "solve_s": diag.diagnostics["seconds_solve"],
                     "lam_min_s": diag.diagnostics["seconds_lam_min"],
                     "status": diag.certificate.status, "which": diag.certificate.bounds["which"],
                     "outcome": diag.outcome, "solver": dict(diag.certificate.solver),
                     "lam_min": diag.diagnostics["lam_min"]}
    retrain_times = []
    for _ in range(2):
        t0 = time.perf_counter()
        rt = unl_cg.retrain(st0._replace(removed=st0.removed.at[forget].set(1.0)))
        jax.block_until_ready(jax.tree.leaves(rt.params))
        retrain_times.append(time.perf_counter() - t0)
    t_retrain = retrain_times[1]

    g = t_unit["grad_full"]["median_ms"]
    gm = t_unit["grad_mb"]["median_ms"]
    hvp100 = t_loops["hvp_full_x100"]["median_ms"]
    out = {
        "config": {"n": n, "widths": WIDTHS, "params": num_params(p), "batch": mb,
                   "epochs": args.epochs, "rounds": args.rounds, "lam": args.lam,
                   "dtype": "float32", "seed": args.seed},
        "train_s": t_train, "train_grad_norm": tr.grad_norm, "unit": t_unit, "loops": t_loops,
        "ratios": {
            "hvp_over_grad_full": t_unit["hvp_full"]["median_ms"] / g,
            "ggn_over_grad_full": t_unit["ggn_full"]["median_ms"] / g,
            "hvp_over_grad_mb": t_unit["hvp_mb"]["median_ms"] / gm,
            "lissa100_over_100_hvp_calls_full": t_loops["lissa100_full"]["median_ms"] / hvp100,
            "lissa100_over_bare_loop_full": t_loops["lissa100_full"]["median_ms"]
            / t_loops["bare_loop100_full"]["median_ms"],
            "lissa100_over_100_hvp_calls_mb": t_loops["lissa100_mb"]["median_ms"]
            / t_loops["hvp_mb_sampled_x100"]["median_ms"],
            "unlearn_cg_over_retrain": res["cg"]["warm_s"] / t_retrain,
            "unlearn_cg_solve_only_over_retrain": res["cg"]["solve_s"] / t_retrain,
            "unlearn_lissa_paper_over_retrain": res["lissa_paper"]["warm_s"] / t_retrain,
            "unlearn_lissa_paper_solve_only_over_retrain": res["lissa_paper"]["solve_s"]
            / t_retrain,
        },
        "unlearning": res, "retrain_s": retrain_times,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "jax": jax.__version__, "cpus": os.cpu_count(),
                    "loadavg": os.getloadavg()},
    }
    if not args.no_rss:
        out["memory"] = measure_rss(args.n, args.seed)
    return out


def report(r: dict) -> str:
    """Human-readable summary."""
    u, lo, q = r["unit"], r["loops"], r["ratios"]
    lines = [f"MLP 784-{'-'.join(map(str, WIDTHS))}-10 ({r['config']['params']:,} params), "
             f"n = {r['config']['n']:,}, float32, load {r['machine']['loadavg'][0]:.2f}",
             "op                               median ms   [IQR]          ratio"]
    for k in ("grad_full", "hvp_full", "ggn_full", "grad_mb", "hvp_mb"):
        base = u["grad_full" if k.endswith("full") else "grad_mb"]["median_ms"]
        lines.append(f"  {k:<30} {u[k]['median_ms']:9.2f}   [{u[k]['q25_ms']:.1f}, "
                     f"{u[k]['q75_ms']:.1f}]   {u[k]['median_ms'] / base:5.2f} x gradient")
    for k in ("lissa100_full", "hvp_full_x100", "bare_loop100_full", "lissa100_mb",
              "hvp_mb_sampled_x100"):
        lines.append(f"  {k:<30} {lo[k]['median_ms']:9.1f}   [{lo[k]['q25_ms']:.0f}, "
                     f"{lo[k]['q75_ms']:.0f}]")
    lines.append("ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in q.items()))
    for k, v in r["unlearning"].items():
        lines.append(f"unlearn {k}: warm {v['warm_s']:.2f} s (solve {v['solve_s']:.2f}, "
                     f"lambda_min {v['lam_min_s']:.2f}; first call {v['first_call_s']:.2f}); "
                     f"{v['outcome']}, {v['status']} at {v['which']}; solver "
                     f"{v['solver']['result']} in {v['solver']['num_steps']} steps, rel. residual "
                     f"{v['solver']['relative_residual']:.2e}; lambda_min ~ {v['lam_min']:.3g}")
    lines.append(f"retrain: {r['retrain_s'][1]:.2f} s (first {r['retrain_s'][0]:.2f} s); "
                 f"original training {r['train_s']:.2f} s")
    if "memory" in r:
        m = r["memory"]
        lines.append(f"peak RSS MiB: idle {m['peak_rss_mib']['none']:.0f}, gradient "
                     f"{m['peak_rss_mib']['grad']:.0f}, HVP {m['peak_rss_mib']['hvp']:.0f}; "
                     f"HVP/gradient {m['hvp_over_grad']:.3f} (above idle "
                     f"{m['hvp_over_grad_above_baseline']:.2f})")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the benchmark (or one memory child) and print / save the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=12000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--radius", type=float, default=40.0)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--rss-child", choices=("none", "grad", "hvp"), default=None)
    args = ap.parse_args(argv)
    if args.rss_child:
        return rss_child(args.rss_child, args.n, args.seed)
    r = run(args)
    print(report(r), flush=True)
    if args.json:
        from certun import io as certun_io

        certun_io.atomic_write_json(args.json, r, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
