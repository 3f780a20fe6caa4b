"""What-if for ``certun.unlearners.guo``: how much of ``unlearn``'s host-side overhead is avoidable.

NOT part of certun and not a supported API: this script rebuilds the first-request
(eigh + Woodbury) path of :func:`certun.unlearners.guo.certified_removal`'s ``unlearn``
from the factory's own closures (``_exact_step``, ``_assumptions``, ``_cert``), changed in
the ways proposed in ``benchmarks/README.md``:

1. one jitted call returns everything: ``n_prev`` (no op-by-op ``float(jnp.sum(mask))``),
   the published ``params`` (no op-by-op ``W[:, 0]``) and the updated counters;
2. only the small outputs (norms, residual, code) go to the host; ``W_new``, ``mask_new``
   and the 784x784 ``gram_new`` stay on the device (no ``device_get`` + ``jnp.asarray``
   round trip of ``gram_new``);
3. the host uses the in-jit ``gram_fro`` instead of ``np.linalg.norm(gram_new)`` (a
   multi-threaded OpenBLAS call that alone cost ~8 ms under load with default threads).

The bound arithmetic, the certificate and the validation are the same as in certun.
It times the real ``unl.unlearn(state0, [i])`` against this lean path, interleaved, and
checks that both give the same model and the same residual bound.

Usage::

    python benchmarks/unlearn_overhead_prototype.py [--n 12000 --d 784 --repeats 40]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import certun  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from removal_vs_retrain import closure_fn  # noqa: E402

from certun import _validate  # noqa: E402
from certun.bounds import guo as guo_bounds  # noqa: E402
from certun.data import synthetic_logistic  # noqa: E402
from certun.primitives.spectral import UNIT_ROUNDOFF as U  # noqa: E402
from certun.results import RESULTS  # noqa: E402
from certun.unlearners.guo import certified_removal  # noqa: E402


def make_lean_unlearn(unl):
    cl = {k: closure_fn(unl.unlearn, k) for k in
          ("_exact_step", "_assumptions", "_cert", "gamma", "lam", "lossf", "bound")}
    missing = [k for k, v in cl.items() if v is None]
    if missing:
        raise SystemExit(f"certun's guo factory changed; closures not found: {missing}")
    ex, assumptions, cert = cl["_exact_step"], cl["_assumptions"], cl["_cert"]
    gamma, lam, lossf = cl["gamma"], cl["lam"], cl["lossf"]

    @jax.jit
    def lean_step(state, idx):
        out = ex(state, idx)  # the unchanged certun core, inlined
        m = idx.shape[0]
        W_new = out["W_new"]
        small = {k: out[k] for k in ("delta_norms", "Delta_norms", "x_delta_sq",
                                     "solver_residual", "code", "gram_fro")}
        small["n_prev"] = jnp.sum(state.mask)
        big = dict(W=W_new, mask=out["mask_new"], gram=out["gram_new"],
                   params=W_new[:, 0] if W_new.shape[1] == 1 else W_new,
                   n_removed=state.n_removed + m, requests=state.requests + 1,
                   steps_since_factor=state.steps_since_factor + 1)
        return small, big

    def lean_unlearn(state, indices):
        n_total = int(state.X.shape[0])
        idx_np = _validate.forget_indices(indices, n_total,
                                          already_removed=np.asarray(state.mask) == 0)
        m = int(idx_np.size)
        assert int(state.steps_since_factor) == 0, "prototype covers the first request only"
        small, big = lean_step(state, jnp.asarray(idx_np, jnp.int32))
        s = jax.device_get(small)
        n_prev = int(round(float(s["n_prev"])))
        n_rem = n_prev - m
        d, K = state.W.shape
        x_spec = guo_bounds.spectral_cap(float(state.x_spectral), n_rem)
        gram_fro = float(s["gram_fro"])
        gram_err = float(state.gram_err) + (m + 2) * U * (m + gram_fro)
        dn = np.asarray(s["delta_norms"], np.float64) * (1 + 4 * d * U)
        xdn = np.sqrt(np.maximum(np.asarray(s["x_delta_sq"], np.float64), 0.0)
                      + (gram_err + 4 * (d + 1) * U * gram_fro) * dn ** 2)
        b_norms = np.linalg.norm(np.asarray(state.b, np.float64), axis=0)
        R_prev = float(state.residual_bound)
        dd = [guo_bounds.data_dependent_bound(gamma, x_spec, dn[k], xdn[k]) for k in range(K)]
        wc = [guo_bounds.worst_case_bound(gamma, lossf.d1_bound, lam, n_prev, m, b_norms[k],
                                          R_prev) for k in range(K)]
        rho = float(sum(dd))
        Dn = float(np.linalg.norm(np.asarray(s["Delta_norms"])))
        rounding = ((n_total + d + m + 4) * U
                    * (lossf.d2_bound * float(state.fro2) + lam * n_prev + m) * float(np.sum(dn))
                    + (d + 2) * U * Dn)
        solver_res = float(s["solver_residual"])
        R_new = R_prev + rho + solver_res + rounding
        code = int(s["code"])
        bounds = {"residual_bound_before": R_prev, "step_remainder_bound": rho,
                  "step_data_dependent_bound": rho, "step_worst_case_bound": float(sum(wc)),
                  "step_solver_residual": solver_res, "step_rounding_allowance": rounding,
                  "residual_bound_after": R_new}
        solver = {"path": "eigh_woodbury", "iterations": 0, "residual": solver_res,
                  "result": RESULTS(code).name}
        new_state = state._replace(
            mask=big["mask"], W=big["W"], gram=big["gram"], gram_err=jnp.asarray(gram_err),
            residual_bound=jnp.asarray(R_new), n_removed=big["n_removed"],
            requests=big["requests"], steps_since_factor=big["steps_since_factor"])
        c = cert(new_state, R_new, assumptions(new_state, True, True, code), bounds, solver,
                 {"b_norm": float(np.linalg.norm(b_norms))})
        return big["params"], new_state, c, bounds

    return lean_unlearn


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="lean unlearn path vs certun's unlearn (what-if)")
    p.add_argument("--n", type=int, default=12000)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    ds = synthetic_logistic(a.n, a.d, seed=a.seed, n_test=1)
    unl = certified_removal(lam=1e-3, sigma=1.0, epsilon=1.0, delta=1e-4)
    state0 = unl.init(ds.X_train, ds.y_train, jax.random.key(a.seed))
    core = closure_fn(unl.unlearn, "_exact_step")
    lean = make_lean_unlearn(unl)
    rows = np.random.default_rng(a.seed + 2).permutation(a.n)[: a.repeats + 3]
    for i in rows[:3]:  # warm-up / compile
        jax.block_until_ready(unl.unlearn(state0, [int(i)]).params)
        jax.block_until_ready(lean(state0, [int(i)])[0])
        jax.block_until_ready(core(state0, jnp.asarray([int(i)], jnp.int32)))
    t_api, t_lean, t_core, maxdiff, maxrel = [], [], [], 0.0, 0.0
    for r, i in enumerate(rows[3:]):
        i = int(i)
        idx = jnp.asarray([i], jnp.int32)
        order = [0, 1, 2] if r % 2 == 0 else [2, 1, 0]
        for o in order:
            t = time.perf_counter()
            if o == 0:
                res = unl.unlearn(state0, [i])
                jax.block_until_ready(res.params)
                t_api.append(time.perf_counter() - t)
            elif o == 1:
                prm, st, c, bd = lean(state0, [i])
                jax.block_until_ready(prm)
                t_lean.append(time.perf_counter() - t)
            else:
                jax.block_until_ready(core(state0, idx))
                t_core.append(time.perf_counter() - t)
        assert res.outcome == "unlearned" and c.status == res.certificate.status
        maxdiff = max(maxdiff, float(np.max(np.abs(np.asarray(prm) - np.asarray(res.params)))))
        R_api = res.diagnostics["residual_bound_after"]
        maxrel = max(maxrel, abs(bd["residual_bound_after"] - R_api) / R_api)

    def q(ts):
        x = np.asarray(ts) * 1e3
        return np.percentile(x, [50, 25, 75])

    print(f"n={a.n}, d={a.d}, float64, {a.repeats} removals of different rows from one state, "
          f"interleaved; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    for name, ts in (("certun unl.unlearn (public API)", t_api),
                     ("lean path (same core, same bound/certificate)", t_lean),
                     ("jitted core _exact_step alone", t_core)):
        m, lo, hi = q(ts)
        print(f"  {name:<48} median {m:7.3f} ms  IQR [{lo:.3f}, {hi:.3f}]")
    print(f"  host overhead: API - core = {q(t_api)[0] - q(t_core)[0]:.3f} ms, "
          f"lean - core = {q(t_lean)[0] - q(t_core)[0]:.3f} ms")
    print(f"  agreement: max |params_lean - params_api| = {maxdiff:.2e}, "
          f"max rel. diff of residual bound = {maxrel:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
