"""Certified removal at a million rows: init, 100 sequential requests, vs one L-BFGS retraining.

``X`` (``n x d`` float64, unit rows) is generated on the device block by block into one
buffer (never a second copy, never on the host); ``init`` validates it and accumulates
``X^T X``, ``||X||_F^2`` and ``X^T diag(l'') X`` over row blocks
(:mod:`certun.primitives.row_blocks`); training is jitted L-BFGS (gradients only). Then
``--requests`` single-row requests go through the public ``unlearn`` (all-in), and one jitted
L-BFGS retraining from zero on the remaining rows is timed for the ratio. Peak resident
memory (``ru_maxrss``) is printed with the load average.

Usage::

    python benchmarks/million_rows.py --n 100000 --d 1024            # memory check first
    python benchmarks/million_rows.py --n 1000000 --d 1024 --json one.json
    # with XLA_FLAGS=--xla_force_host_platform_device_count=8 in the environment:
    python benchmarks/million_rows.py --n 1000000 --d 1024 --devices 8 --json eight.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

try:
    import certun  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certun.models import glm  # noqa: E402
from certun.primitives.spectral import UNIT_ROUNDOFF  # noqa: E402
from certun.sharding import data_mesh  # noqa: E402
from certun.unlearners.guo import certified_removal  # noqa: E402

#: Rows generated per block (divides 10^5 and 10^6 into a multiple of 8 blocks): block ``i``
#: is drawn from ``fold_in(key, i)`` whatever the device count, so 1 and 8 devices see one X.
BLOCK = 2500


def rss_gib() -> float:
    """Peak resident set size of this process so far (GiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _gen_local(key, first_block, n: int, d: int, w_true):
    """Unit rows (``normalize_rows``' scale ``1 - (d + 2) u``) and margins, block by block."""
    scale = 1.0 - (d + 2) * UNIT_ROUNDOFF

    def body(i, carry):
        X, a = carry
        k = jax.random.fold_in(key, first_block + i)
        Xb = jax.random.normal(k, (BLOCK, d), jnp.float64) * (
            jnp.arange(1, d + 1, dtype=jnp.float64) ** -0.5)
        Xb = Xb * (scale / jnp.linalg.norm(Xb, axis=1))[:, None]
        X = lax.dynamic_update_slice_in_dim(X, Xb, i * BLOCK, 0)
        a = lax.dynamic_update_slice_in_dim(a, Xb @ w_true, i * BLOCK, 0)
        return X, a

    X0 = jnp.zeros((n, d), jnp.float64)
    return lax.fori_loop(0, n // BLOCK, body, (X0, jnp.zeros(n, jnp.float64)))


def generate(n: int, d: int, seed: int, mesh):
    """``X`` in place (sharded over ``mesh`` when it has several devices) and ``+-1`` labels."""
    key = jax.random.key(seed)
    w_true = jax.random.normal(jax.random.key(seed + 1), (d,), jnp.float64) * 3.0 / np.sqrt(d)
    if mesh is None:
        X, a = jax.jit(functools.partial(_gen_local, n=n, d=d))(key, 0, w_true=w_true)
    else:
        from jax.sharding import PartitionSpec as P

        nd = len(mesh.devices.ravel())
        axis = mesh.axis_names[0]

        def local(w):
            first = lax.axis_index(axis) * (n // nd // BLOCK)
            return _gen_local(key, first, n // nd, d, w)

        X, a = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P(),
                                     out_specs=(P(axis, None), P(axis)),
                                     check_vma=False))(w_true)
    noise = jax.random.logistic(jax.random.key(seed + 2), (n,), jnp.float64)
    y = np.where(np.asarray(jax.device_get(a + noise)) >= 0, 1.0, -1.0)
    return X, y


def main(argv=None) -> int:
    """Run and print the timings, the ratio, the peak memory and the load."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--lam", type=float, default=1e-3)
    p.add_argument("--sigma", type=float, default=10.0)
    p.add_argument("--train-tol", type=float, default=1e-10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--params-out", metavar="NPY")
    args = p.parse_args(argv)
    n = (args.n // (BLOCK * 8)) * BLOCK * 8  # the same rows for 1 and 8 devices
    out: dict = {"n": n, "d": args.d, "devices": args.devices, "load_start": os.getloadavg()[0]}
    mesh = data_mesh(args.devices) if args.devices > 1 else None
    t0 = time.perf_counter()
    X, y = generate(n, args.d, args.seed, mesh)
    jax.block_until_ready(X)
    out["seconds_generate"] = time.perf_counter() - t0
    out["rss_after_generate_gib"] = rss_gib()
    out["x_gib"] = n * args.d * 8 / 2**30
    print(json.dumps(out), flush=True)
    unl = certified_removal(lam=args.lam, sigma=args.sigma, epsilon=1.0, delta=1e-4,
                            train_tol=args.train_tol, train_method="lbfgs")
    t0 = time.perf_counter()
    st = unl.init(X, y, jax.random.key(args.seed), mesh=mesh)
    jax.block_until_ready(st.W)
    out["seconds_init"] = time.perf_counter() - t0  # training, validation, Gram, curvature
    out["rss_after_init_gib"] = rss_gib()
    print(json.dumps(out), flush=True)
    unl.warmup(st)
    order = np.random.default_rng(args.seed).permutation(n)[:args.requests]
    ts, outcomes = [], {}
    t_all = time.perf_counter()
    for i in order:
        t0 = time.perf_counter()
        res = unl.unlearn(st, [int(i)])
        jax.block_until_ready(res.state.W)
        ts.append(time.perf_counter() - t0)
        outcomes[res.outcome] = outcomes.get(res.outcome, 0) + 1
        st = res.state
    out["seconds_requests_total"] = time.perf_counter() - t_all
    out["ms_per_request_all_in"] = out["seconds_requests_total"] / len(order) * 1e3
    out["ms_per_request_median"] = float(np.median(ts)) * 1e3
    out["outcomes"] = outcomes
    out["rss_after_requests_gib"] = rss_gib()
    print(json.dumps(out), flush=True)
    if args.params_out:
        np.save(args.params_out, np.asarray(st.W))
    if not args.no_baseline:
        # one jitted L-BFGS retraining from zero on the remaining rows (compilation included:
        # seconds against minutes of passes over X)
        fit = jax.jit(lambda X, Y, b, m: glm.fit(glm.LOGISTIC, X, Y, args.lam, b, m,
                                                 method="lbfgs", tol=args.train_tol))
        t0 = time.perf_counter()
        r = fit(st.X, st.Y, st.b, st.mask)
        jax.block_until_ready(r.params)
        out["seconds_lbfgs_retrain"] = time.perf_counter() - t0
        out["lbfgs_steps"] = int(r.num_steps)
        out["lbfgs_result"] = int(r.result)
        out["ratio_lbfgs_vs_request"] = (out["seconds_lbfgs_retrain"] * 1e3
                                         / out["ms_per_request_all_in"])
    out["rss_peak_gib"] = rss_gib()
    out["load_end"] = os.getloadavg()[0]
    print(json.dumps(out), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
