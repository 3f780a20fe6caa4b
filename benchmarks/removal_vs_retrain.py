"""Certified single-point removal vs. retraining from scratch, as ratios measured in one run.

L2-regularised logistic regression (certun's mean-scale objective, lambda = 1e-3) on
``certun.data.synthetic_logistic(n, d)`` (unit-norm rows), float64 throughout (the certificate
of :func:`certun.unlearners.guo.certified_removal` requires float64 and certun refuses
float32, so there is no ``--float32``). Every operation is timed in the same process,
interleaved round-robin, and reported in units of one gradient of the objective:

1. one gradient (jitted ``jax.grad`` of the mean objective) -- the unit -- and ``glm.gradient_sum``;
2. one Hessian-vector product (jitted ``glm.hvp_sum`` and forward-over-reverse
   ``certun.primitives.hvp``);
3. one certified removal through the public API ``unl.unlearn(state0, [i])`` (validation,
   the jitted eigh + Woodbury step, the data-dependent bound, the certificate), each
   repetition removing a different row from the same trained state; and the jitted core
   step alone (the factory's ``_exact_step`` closure, reached by introspection; if it is
   not reachable the row is omitted and ``diagnostics["seconds_step"]`` is still reported);
4. retraining from scratch on the remaining rows (same ``b``, same mask), cold start from
   zero, jitted optax L-BFGS to the unlearner's ``train_tol``; jitted Newton for reference.

Usage::

    python benchmarks/removal_vs_retrain.py                 # defaults: n=12000, d=784
    python benchmarks/removal_vs_retrain.py --json out.json --profile

``OPENBLAS_NUM_THREADS`` is set to 1 unless already set in the environment (see
``benchmarks/README.md``: multi-threaded OpenBLAS made NumPy's 784x784 norm inside
``unlearn`` and the LAPACK calls of Newton retraining several times slower on a loaded
2-core machine).
"""

from __future__ import annotations

import os

# Must happen before NumPy / jaxlib load OpenBLAS. An explicit environment value wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
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

from certun import io as certun_io  # noqa: E402
from certun.data import normalize_rows, synthetic_logistic  # noqa: E402
from certun.models import glm  # noqa: E402
from certun.primitives import hvp as fwd_over_rev_hvp  # noqa: E402
from certun.results import RESULTS  # noqa: E402
from certun.unlearners.guo import certified_removal  # noqa: E402

# --------------------------------------------------------------------------- helpers

def machine_info() -> dict:
    """CPU model, core counts, Python/JAX/NumPy versions, backend, thread settings, load."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
        "loadavg_start": load,
    }


def summarize(ts: list[float]) -> dict:
    """Median, quartiles, IQR and minimum in ms of wall-clock samples ``ts`` in seconds."""
    a = np.asarray(ts) * 1e3
    q25, q50, q75 = np.percentile(a, [25, 50, 75])
    return {"median_ms": float(q50), "q25_ms": float(q25), "q75_ms": float(q75),
            "iqr_ms": float(q75 - q25), "min_ms": float(a.min()), "n": int(a.size),
            "samples_ms": [float(x) for x in a]}


def closure_fn(fn, name: str):
    """A function a factory closed over (e.g. guo's jitted ``_exact_step``), or None."""
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None)
    if code is None or cells is None:
        return None
    for var, cell in zip(code.co_freevars, cells, strict=True):
        if var == name:
            try:
                return cell.cell_contents
            except ValueError:
                return None
    return None


def atomic_write_json(path: str, obj: dict) -> None:
    """Write ``obj`` to ``path`` as JSON atomically, keys in insertion order."""
    certun_io.atomic_write_json(path, obj, sort_keys=False)


# --------------------------------------------------------------------------- benchmark

def build_problem(n: int, d: int, seed: int, decay: float):
    """Unit-norm ``(n, d)`` rows and ``+-1`` labels of ``synthetic_logistic``.

    With ``decay > 0`` feature ``j`` is scaled by ``(j+1)^-decay`` and the rows are
    re-normalised (harder conditioning).
    """
    ds = synthetic_logistic(n, d, seed=seed, n_test=1)
    X = ds.X_train
    if decay > 0:
        # Optional harder conditioning: scale feature j by (j+1)^-decay, re-normalise rows.
        # (The labels stay a linear teacher's: sign is preserved under the column scaling.)
        X = normalize_rows(X * (np.arange(1, d + 1, dtype=np.float64) ** -decay)[None, :])
    return X, ds.y_train


def run(args) -> dict:
    """Time removal against retraining for the parsed ``args``; return the results dict.

    Trains once with ``certified_removal``, compiles every operation, then measures the
    gradient, Hessian-vector products, the certified removal (public ``unlearn`` and, where
    the factory exposes it, the jitted core) and L-BFGS / Newton retraining round-robin,
    one different row per repetition.
    """
    info = machine_info()
    t_setup = time.perf_counter()
    lam = args.lam
    lossf = glm.LOGISTIC
    X_np, y_np = build_problem(args.n, args.d, args.seed, args.decay)
    n, d = X_np.shape

    unl = certified_removal(lam=lam, sigma=args.sigma, epsilon=args.epsilon, delta=args.delta,
                            train_tol=args.train_tol, update="pcg")
    t0 = time.perf_counter()
    state0 = unl.init(X_np, y_np, jax.random.key(args.seed))
    jax.block_until_ready(state0)
    t_init = time.perf_counter() - t0
    X, Y, b, mask_full, W = state0.X, state0.Y, state0.b, state0.mask, state0.W
    assert X.dtype == jnp.float64, "float64 required"

    R = args.repeats
    RR = args.retrain_repeats
    n_warm = 3
    rng = np.random.default_rng(args.seed + 1)
    rows = rng.permutation(n)[: R + n_warm + 2]
    warm_rows, rows = rows[:n_warm], rows[n_warm:]
    idx_dev = [jnp.asarray([int(i)], jnp.int32) for i in rows]
    masks = [mask_full.at[int(i)].set(0.0) for i in rows]
    jax.block_until_ready(masks)
    V = jnp.asarray(rng.standard_normal((d, 1)))

    # ---- jitted functions (data are arguments, never closed-over constants)
    def objective(W, X, Y, b, mask):
        return glm.objective(lossf, W, X, Y, lam, b, mask)

    grad_fn = jax.jit(jax.grad(objective))
    grad_sum_fn = jax.jit(lambda W, X, Y, b, mask: glm.gradient_sum(lossf, W, X, Y, lam, b, mask))
    hvp_sum_fn = jax.jit(lambda W, V, X, Y, mask: glm.hvp_sum(lossf, W, V, X, Y, lam, mask))
    hvp_fr_fn = jax.jit(
        lambda W, V, X, Y, b, mask: fwd_over_rev_hvp(objective, W, V, X, Y, b, mask))

    def make_fit(method, tol):
        return jax.jit(lambda X, Y, b, mask: glm.fit(lossf, X, Y, lam, b, mask, None,
                                                     method=method, tol=tol))

    core = unl.unlearn.ctx.steps.request["eigh_woodbury"]  # the jitted exact request

    # ---- warm-up (compile) everything; find the tolerance L-BFGS reaches
    jax.block_until_ready(grad_fn(W, X, Y, b, mask_full))
    jax.block_until_ready(grad_sum_fn(W, X, Y, b, mask_full))
    jax.block_until_ready(hvp_sum_fn(W, V, X, Y, mask_full))
    jax.block_until_ready(hvp_fr_fn(W, V, X, Y, b, mask_full))
    for i in warm_rows:
        r = unl.unlearn(state0, [int(i)])
        jax.block_until_ready(r.params)
        if core is not None:
            jax.block_until_ready(core(state0, jnp.asarray([int(i)], jnp.int32)))
    lbfgs_tol = args.train_tol
    lbfgs_note = "reached train_tol"
    while True:
        lbfgs_fn = make_fit("lbfgs", lbfgs_tol)
        fr = jax.block_until_ready(lbfgs_fn(X, Y, b, masks[-1]))
        if int(fr.result) == RESULTS.successful:
            break
        if lbfgs_tol >= 1e-4:
            raise RuntimeError("L-BFGS does not reach even 1e-4")
        lbfgs_note = (f"L-BFGS could not reach train_tol={args.train_tol:g} "
                      f"(grad norm {float(fr.grad_norm):.3g}); using the tightest reached")
        lbfgs_tol *= 10
    newton_fn = make_fit("newton", args.train_tol)
    frn = jax.block_until_ready(newton_fn(X, Y, b, masks[-1]))
    if int(frn.result) != RESULTS.successful:
        print(f"warning: Newton retraining did not reach tol {args.train_tol:g}", file=sys.stderr)
    t_warm = time.perf_counter() - t_setup

    # ---- the interleaved (round-robin) measurements
    times = {k: [] for k in ("grad", "grad_sum", "hvp_sum", "hvp_fwd_rev", "removal_core",
                             "removal_api", "retrain_lbfgs", "retrain_newton")}
    if core is None:
        del times["removal_core"]
    removal_diag, lbfgs_info, newton_info = [], [], []
    W_unl, W_lb, W_nt = {}, {}, {}

    def op_grad(r):
        return grad_fn(W, X, Y, b, mask_full)

    def op_grad_sum(r):
        return grad_sum_fn(W, X, Y, b, mask_full)

    def op_hvp_sum(r):
        return hvp_sum_fn(W, V, X, Y, mask_full)

    def op_hvp_fr(r):
        return hvp_fr_fn(W, V, X, Y, b, mask_full)

    def op_core(r):
        return core(state0, idx_dev[r])

    def op_api(r):
        res = unl.unlearn(state0, [int(rows[r])])
        jax.block_until_ready(res.params)
        return res

    def op_lbfgs(r):
        return lbfgs_fn(X, Y, b, masks[r])

    def op_newton(r):
        return newton_fn(X, Y, b, masks[r])

    ops = [("grad", op_grad, R), ("grad_sum", op_grad_sum, R), ("hvp_sum", op_hvp_sum, R),
           ("hvp_fwd_rev", op_hvp_fr, R)]
    if core is not None:
        ops.append(("removal_core", op_core, R))
    ops += [("removal_api", op_api, R), ("retrain_lbfgs", op_lbfgs, R),
            ("retrain_newton", op_newton, RR)]

    t_meas = time.perf_counter()
    for r in range(R):
        k = r % len(ops)
        for name, fn, reps in ops[k:] + ops[:k]:  # rotate the order every round
            if r >= reps:
                continue
            t = time.perf_counter()
            out = fn(r)
            jax.block_until_ready(out)
            times[name].append(time.perf_counter() - t)
            if name == "removal_api":
                dg = out.diagnostics
                removal_diag.append({
                    "row": int(rows[r]), "outcome": out.outcome,
                    "status": out.certificate.status,
                    "data_dependent_bound": float(dg["step_data_dependent_bound"]),
                    "remainder_bound_charged": float(dg["step_remainder_bound"]),
                    "solver_residual": float(dg["step_solver_residual"]),
                    "rounding_allowance": float(dg["step_rounding_allowance"]),
                    "budget_used": float(out.certificate.budget.used),
                    "budget_total": float(out.certificate.budget.total),
                    "seconds_step": float(dg["seconds_step"]),
                    "seconds_total": float(dg.get("seconds_total", float("nan"))),
                    "solver_path": dg["solver"]["path"],
                })
                if r < 3 and out.params is not None:  # a refused removal releases no model
                    W_unl[r] = np.asarray(out.params)
            elif name == "retrain_lbfgs":
                lbfgs_info.append((int(out.num_steps), float(out.grad_norm), int(out.result)))
                if r < 3:
                    W_lb[r] = np.asarray(out.params)[:, 0]
            elif name == "retrain_newton":
                newton_info.append((int(out.num_steps), float(out.grad_norm), int(out.result)))
                if r < 3:
                    W_nt[r] = np.asarray(out.params)[:, 0]
    t_meas = time.perf_counter() - t_meas

    stats = {k: summarize(v) for k, v in times.items()}
    unit = stats["grad"]["median_ms"]
    for s in stats.values():
        s["ratio_to_grad"] = s["median_ms"] / unit

    def paired(num: str, den: str) -> dict:
        k = min(len(times[num]), len(times[den]))
        q = np.asarray(times[num][:k]) / np.asarray(times[den][:k])
        q25, q50, q75 = np.percentile(q, [25, 50, 75])
        return {"ratio_of_medians": stats[num]["median_ms"] / stats[den]["median_ms"],
                "median_paired": float(q50), "q25_paired": float(q25), "q75_paired": float(q75),
                "pairs": int(k)}

    headline = {
        "lbfgs_over_removal_api": paired("retrain_lbfgs", "removal_api"),
        "newton_over_removal_api": paired("retrain_newton", "removal_api"),
    }
    if core is not None:
        headline["lbfgs_over_removal_core"] = paired("retrain_lbfgs", "removal_core")
        headline["newton_over_removal_core"] = paired("retrain_newton", "removal_core")
        headline["removal_api_over_core"] = paired("removal_api", "removal_core")

    # conditioning of the mean-scale Hessian at the trained model (from init's eigh)
    ev = np.asarray(state0.eigvals[0]) / n + lam
    cond = float(ev.max() / ev.min())

    # distance between the certified removal and exact retraining (same b, same rows)
    dist = []
    for r in sorted(set(W_unl) & set(W_nt)):
        dist.append({"row": int(rows[r]),
                     "unlearned_vs_newton_retrain": float(np.linalg.norm(W_unl[r] - W_nt[r])),
                     "lbfgs_vs_newton_retrain": float(np.linalg.norm(W_lb[r] - W_nt[r]))
                     if r in W_lb else None,
                     "trained_vs_newton_retrain":
                         float(np.linalg.norm(np.asarray(W)[:, 0] - W_nt[r]))})

    outcomes = sorted({x["outcome"] for x in removal_diag})
    bounds = np.asarray([x["data_dependent_bound"] for x in removal_diag])
    used = np.asarray([x["budget_used"] for x in removal_diag])
    result = {
        "benchmark": "removal_vs_retrain",
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "config": {"n": n, "d": d, "lam": lam, "sigma": args.sigma, "epsilon": args.epsilon,
                   "delta": args.delta, "train_tol": args.train_tol, "seed": args.seed,
                   "decay": args.decay, "repeats": R, "retrain_repeats": RR,
                   "dtype": "float64", "loss": "logistic", "bound": "data_dependent"},
        "machine": info,
        "timing": stats,
        "headline": headline,
        "removal": {
            "outcomes": outcomes,
            "statuses": sorted({x["status"] for x in removal_diag}),
            "solver_path": sorted({x["solver_path"] for x in removal_diag}),
            "data_dependent_bound_median": float(np.median(bounds)),
            "data_dependent_bound_max": float(bounds.max()),
            "budget_used_median": float(np.median(used)),
            "budget_total": removal_diag[0]["budget_total"],
            "train_residual_bound": float(state0.residual_bound),
            "diag_seconds_step_median_ms": 1e3 * float(np.median(
                [x["seconds_step"] for x in removal_diag])),
            "diag_seconds_total_median_ms": 1e3 * float(np.median(
                [x["seconds_total"] for x in removal_diag])),
            "per_request": removal_diag,
        },
        "retrain": {
            "lbfgs_tol": lbfgs_tol, "lbfgs_note": lbfgs_note,
            "lbfgs_iterations_median": float(np.median([x[0] for x in lbfgs_info])),
            "lbfgs_grad_norm_max": float(max(x[1] for x in lbfgs_info)),
            "lbfgs_all_successful": all(x[2] == RESULTS.successful for x in lbfgs_info),
            "newton_tol": args.train_tol,
            "newton_iterations_median": float(np.median([x[0] for x in newton_info])),
            "newton_grad_norm_max": float(max(x[1] for x in newton_info)),
            "newton_all_successful": all(x[2] == RESULTS.successful for x in newton_info),
        },
        "hessian_condition_number": cond,
        "distances": dist,
        "seconds": {"init": t_init, "setup_and_warmup": t_warm, "measurement": t_meas},
    }
    try:
        result["machine"]["loadavg_end"] = os.getloadavg()
    except OSError:
        pass

    if args.profile:
        result["profile"] = profile_unlearn(unl, state0, rows, core, idx_dev, args.profile_calls)
    return result


def profile_unlearn(unl, state0, rows, core, idx_dev, calls: int) -> dict:
    """Profile (cProfile) ``calls`` public ``unlearn`` requests, plus the jitted core's share."""
    n = len(rows)
    rws = [int(rows[i % n]) for i in range(calls)]
    pr = cProfile.Profile()
    t = time.perf_counter()
    pr.enable()
    for i in rws:
        jax.block_until_ready(unl.unlearn(state0, [i]).params)
    pr.disable()
    wall = (time.perf_counter() - t) / calls
    s = io.StringIO()
    st = pstats.Stats(pr, stream=s)
    st.sort_stats("tottime").print_stats(15)
    top = []
    for (fname, line, func), (_cc, nc, tt, ct, _) in sorted(
            st.stats.items(), key=lambda kv: -kv[1][2])[:15]:
        top.append({"function": f"{Path(fname).name}:{line}({func})", "calls": nc,
                    "tottime_ms_per_request": 1e3 * tt / calls,
                    "cumtime_ms_per_request": 1e3 * ct / calls})
    core_ms = None
    if core is not None:
        ts = []
        for i in range(calls):
            t = time.perf_counter()
            jax.block_until_ready(core(state0, idx_dev[i % len(idx_dev)]))
            ts.append(time.perf_counter() - t)
        core_ms = 1e3 * float(np.median(ts))
    return {"calls": calls, "wall_ms_per_request_under_cprofile": 1e3 * wall,
            "core_step_median_ms": core_ms, "top_tottime": top, "text": s.getvalue()}


LABELS = {
    "grad": "gradient, jax.grad of mean objective (UNIT)",
    "grad_sum": "gradient, glm.gradient_sum",
    "hvp_sum": "HVP, glm.hvp_sum (closed form)",
    "hvp_fwd_rev": "HVP, primitives.hvp (fwd-over-rev)",
    "removal_core": "certified removal, jitted core step only",
    "removal_api": "certified removal, public unl.unlearn",
    "retrain_lbfgs": "retrain from zero, L-BFGS (jit)",
    "retrain_newton": "retrain from zero, Newton (jit)",
}


def report(res: dict) -> str:
    """The human-readable report of a :func:`run` result (config, timings, headline)."""
    c, m, tm = res["config"], res["machine"], res["timing"]
    rt, rm = res["retrain"], res["removal"]
    L = []
    L.append(f"certified removal vs retraining: logistic, n={c['n']}, d={c['d']}, "
             f"lambda={c['lam']:g} (mean scale), float64, synthetic_logistic(seed={c['seed']})"
             + (f", column decay {c['decay']:g}" if c["decay"] else ""))
    L.append(f"machine: {m['cpu_model']}, nproc={m['nproc']}, jax {m['jax']} ({m['backend']}), "
             f"OPENBLAS_NUM_THREADS={m['OPENBLAS_NUM_THREADS']}, "
             f"load avg start {fmt_load(m.get('loadavg_start'))} "
             f"end {fmt_load(m.get('loadavg_end'))}")
    L.append(f"guarantee: epsilon={c['epsilon']:g}, delta={c['delta']:g}, sigma={c['sigma']:g}; "
             f"train_tol={c['train_tol']:g}; mean-scale Hessian condition number "
             f"{res['hessian_condition_number']:.3g}")
    L.append(f"repeats: {c['repeats']} (Newton retraining: {c['retrain_repeats']}), interleaved "
             "round-robin with rotating order, after warm-up; time = wall clock incl. dispatch")
    L.append("")
    w = max(len(v) for v in LABELS.values())
    L.append(f"{'operation':<{w}}  {'median ms':>10}  {'IQR ms':>17}  {'x gradient':>10}")
    L.append("-" * (w + 44))
    for k, lab in LABELS.items():
        if k not in tm:
            continue
        s = tm[k]
        iqr = f"[{s['q25_ms']:.3f}, {s['q75_ms']:.3f}]"
        L.append(f"{lab:<{w}}  {s['median_ms']:>10.3f}  {iqr:>17}  {s['ratio_to_grad']:>10.3f}")
    L.append("")
    L.append(f"L-BFGS retraining: tol {rt['lbfgs_tol']:g} ({rt['lbfgs_note']}), "
             f"median {rt['lbfgs_iterations_median']:.0f} iterations, max grad norm "
             f"{rt['lbfgs_grad_norm_max']:.2e}, all successful: {rt['lbfgs_all_successful']}")
    L.append(f"Newton retraining: tol {rt['newton_tol']:g}, median "
             f"{rt['newton_iterations_median']:.0f} iterations, max grad norm "
             f"{rt['newton_grad_norm_max']:.2e}, all successful: {rt['newton_all_successful']}")
    L.append(f"removal: outcomes {rm['outcomes']}, certificate {rm['statuses']}, path "
             f"{rm['solver_path']}; data-dependent bound median "
             f"{rm['data_dependent_bound_median']:.4g}"
             f" (max {rm['data_dependent_bound_max']:.4g}); budget used "
             f"{rm['budget_used_median']:.4g} of {rm['budget_total']:.4g} "
             f"({100 * rm['budget_used_median'] / rm['budget_total']:.2f}%, of which training "
             f"residual {rm['train_residual_bound']:.3g}); sum-scale ||grad L_b|| units")
    L.append(f"removal diagnostics: seconds_step median "
             f"{rm['diag_seconds_step_median_ms']:.3f} ms, "
             f"seconds_total median {rm['diag_seconds_total_median_ms']:.3f} ms")
    for dd in res["distances"][:1]:
        L.append(f"||w_unlearned - w_retrained(Newton)|| = "
                 f"{dd['unlearned_vs_newton_retrain']:.3e}, "
                 f"||w_lbfgs - w_newton|| = {dd['lbfgs_vs_newton_retrain']:.3e}, "
                 f"||w_trained - w_retrained|| = {dd['trained_vs_newton_retrain']:.3e} "
                 f"(row {dd['row']})")
    L.append("")
    L.append("HEADLINE (ratio of medians; median [IQR] of per-round paired ratios):")
    names = {
        "lbfgs_over_removal_api": "retrain L-BFGS / certified removal (public API)",
        "newton_over_removal_api": "retrain Newton / certified removal (public API)",
        "lbfgs_over_removal_core": "retrain L-BFGS / certified removal (jitted core)",
        "newton_over_removal_core": "retrain Newton / certified removal (jitted core)",
        "removal_api_over_core": "public API / jitted core (host-side overhead factor)",
    }
    for k, lab in names.items():
        if k in res["headline"]:
            h = res["headline"][k]
            L.append(f"  {lab:<52} {h['ratio_of_medians']:8.1f}x   {h['median_paired']:.1f}x "
                     f"[{h['q25_paired']:.1f}, {h['q75_paired']:.1f}]")
    tgt = res["headline"]["lbfgs_over_removal_api"]["ratio_of_medians"]
    L.append(f"  target >= 50x (L-BFGS / public API): {'MET' if tgt >= 50 else 'MISSED'}")
    if "profile" in res:
        p = res["profile"]
        L.append("")
        core_ms = p["core_step_median_ms"]
        L.append(f"cProfile of {p['calls']} unlearn calls: "
                 f"{p['wall_ms_per_request_under_cprofile']:.3f}"
                 " ms/request under the profiler; jitted core alone "
                 + ("n/a" if core_ms is None else f"{core_ms:.3f} ms"))
        L.append(f"  {'tottime ms/req':>14}  {'cumtime ms/req':>14}  {'calls':>6}  function")
        for t in p["top_tottime"]:
            L.append(f"  {t['tottime_ms_per_request']:>14.3f}  {t['cumtime_ms_per_request']:>14.3f}"
                     f"  {t['calls']:>6}  {t['function']}")
        sec = p.get("sections")
        if sec:
            L.append("")
            L.append(f"phases of unlearn (reconstructed with the factory's closures, "
                     f"{sec['calls']} calls, medians): total {sec['total_median_ms']:.3f} ms "
                     f"(public call in the table: "
                     f"{res['timing']['removal_api']['median_ms']:.3f} ms)")
            for ph, v in sec["phases_median_ms"].items():
                L.append(f"  {v:>8.3f} ms  {ph}")
    L.append("")
    s = res["seconds"]
    L.append(f"wall: init {s['init']:.1f} s, setup+warm-up {s['setup_and_warmup']:.1f} s, "
             f"measurement {s['measurement']:.1f} s")
    return "\n".join(L)


def fmt_load(x) -> str:
    """Load averages as ``a/b/c`` (``n/a`` when unknown)."""
    return "n/a" if not x else "/".join(f"{v:.2f}" for v in x)


def main(argv=None) -> int:
    """Command line: parse ``argv``, run, print the report, optionally write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=12000, help="training rows")
    p.add_argument("--d", type=int, default=784, help="features")
    p.add_argument("--repeats", type=int, default=30,
                   help="repetitions of each cheap op, the removals and L-BFGS retraining")
    p.add_argument("--retrain-repeats", type=int, default=5,
                   help="repetitions of Newton retraining (<= --repeats)")
    p.add_argument("--lam", type=float, default=1e-3, help="L2 regularisation (mean scale)")
    p.add_argument("--sigma", type=float, default=1.0, help="objective-perturbation std")
    p.add_argument("--epsilon", type=float, default=1.0)
    p.add_argument("--delta", type=float, default=1e-4)
    p.add_argument("--train-tol", type=float, default=1e-10,
                   help="mean-scale gradient-norm tolerance of training and retraining")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decay", type=float, default=1.0,
                   help="scale feature j by (j+1)^-decay before re-normalising rows "
                        "(default 1: MNIST-like conditioning; 0 = isotropic rows)")
    p.add_argument("--profile", action="store_true",
                   help="also cProfile the public unlearn call")
    p.add_argument("--profile-calls", type=int, default=50)
    p.add_argument("--json", metavar="PATH", help="write all results as JSON (atomically)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.retrain_repeats < 1:
        p.error("--repeats and --retrain-repeats must be >= 1")
    args.retrain_repeats = min(args.retrain_repeats, args.repeats)
    if args.n < args.repeats + 10:
        p.error("--n must exceed --repeats + 10 (each repetition removes a different row)")
    res = run(args)
    print(report(res))
    if args.json:
        if "profile" in res:
            res["profile"].pop("text", None)
        atomic_write_json(args.json, res)
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
