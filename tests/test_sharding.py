"""Data-parallel runs over 8 forced host devices equal single-device runs (float64, 1e-6 relative).

The checks run in a subprocess: ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be
set before JAX starts. On a 2-core CPU this proves correctness, not speed-up.
"""

import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r"""
import json, os
import numpy as np
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from certun.data import synthetic_logistic, synthetic_regression
from certun.models import glm
from certun.sharding import data_mesh, shard_rows, replicate, shard_info
from certun.unlearners import certified_removal

out = {"devices": jax.device_count()}
mesh = data_mesh(8)
ds = synthetic_logistic(640, 12, seed=0)
X, y = ds.X_train, ds.y_train
Y = y[:, None]
n = X.shape[0]
L = glm.LOGISTIC
lam = 1e-2
rng = np.random.default_rng(0)
W = rng.standard_normal((12, 1)) * 0.3
V = rng.standard_normal((12, 1))
b = rng.standard_normal((12, 1))
mask = np.ones(n); mask[::7] = 0.0

def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))

fns = {
    "gradient": jax.jit(lambda W, X, Y, m: glm.gradient_sum(L, W, X, Y, lam, b, m)),
    "hvp": jax.jit(lambda W, X, Y, m: glm.hvp_sum(L, W, V, X, Y, lam, m)),
    "hessian": jax.jit(lambda W, X, Y, m: glm.hessian_sum(L, W, X, Y, lam, m)),
    "gram": jax.jit(lambda W, X, Y, m: (X * m[:, None]).T @ X),
}
dev0 = jax.devices()[0]
single = [jax.device_put(a, dev0) for a in (W, X, Y, mask)]
Xs, Ys, ms = (shard_rows(a, mesh) for a in (X, Y, mask))
Ws = replicate(W, mesh)
out["X_sharding"] = shard_info(Xs)
out["single_devices"] = len(single[1].sharding.device_set)
out["rel"] = {k: rel(f(Ws, Xs, Ys, ms), f(*single)) for k, f in fns.items()}

def run(unl, Xa, ya, mesh_, reqs):
    st = unl.init(Xa, ya, jax.random.key(0), mesh=mesh_)
    info = shard_info(st.X)
    res = []
    for r in reqs:
        o = unl.unlearn(st, r)
        st = o.state
        res.append((np.asarray(o.params), o.certificate.budget.used, o.outcome,
                    o.diagnostics["solver"]["path"], o.certificate.budget.total))
    return st, info, res

reqs = [[3], [10, 11], [40], [41, 42, 43]]
cases = {
    "cached": (certified_removal(lam=lam, sigma=5.0, epsilon=8.0, delta=1e-4, update="cached",
                                 max_rank=4), X, y),
    "pcg": (certified_removal(lam=lam, sigma=5.0, epsilon=8.0, delta=1e-4, update="pcg"), X, y),
    "cholesky": (certified_removal(lam=lam, sigma=5.0, epsilon=8.0, delta=1e-4, update="cached",
                                   max_rank=4, factor="cholesky", remeasure=True), X, y),
}
reg = synthetic_regression(640, 12, seed=1)
cases["ridge"] = (certified_removal(lam=lam, sigma=0.1, epsilon=1.0, delta=1e-4, loss="squared",
                                    max_rank=4), reg.X_train, reg.y_train)
out["unlearn"] = {}
wanted = os.environ["CERTUN_SHARD_CASES"].split(",")
for name, (unl, Xa, ya) in cases.items():
    if name not in wanted:
        continue
    st8, info8, r8 = run(unl, Xa, ya, mesh, reqs)
    st1, info1, r1 = run(unl, Xa, ya, None, reqs)
    out["unlearn"][name] = {
        "sharding": info8, "single": info1,
        "mask_devices": len(st8.mask.sharding.device_set),
        "params_rel": max(rel(a[0], b_[0]) for a, b_ in zip(r8, r1)),
        # relative to the budget: for ridge the used budget is the ~1e-12 training gradient
        "budget_rel": max(abs(a[1] - b_[1]) / max(b_[1], 1e-3 * b_[4]) for a, b_ in zip(r8, r1)),
        "outcomes": [a[2] for a in r8], "paths": [a[3] for a in r8],
        "paths_single": [a[3] for a in r1],
    }
try:
    shard_rows(X[:-1], mesh, name="X")
except ValueError as e:
    out["indivisible_error"] = str(e)
print(json.dumps(out))
"""


DEFAULT_CASES = ("cholesky",)  # the logistic default; the eigh factor, PCG and ridge: slow tier
MORE_CASES = ("cached", "pcg", "ridge")


def _report(cases):
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "")
                                        + " --xla_force_host_platform_device_count=8").strip(),
               JAX_PLATFORMS="cpu", OPENBLAS_NUM_THREADS="1",
               CERTUN_SHARD_CASES=",".join(cases))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def report():
    return _report(DEFAULT_CASES)


@pytest.fixture(scope="module")
def report_more():
    return _report(MORE_CASES)


def test_data_really_is_sharded_over_8_devices(report):
    assert report["devices"] == 8 and report["single_devices"] == 1
    sh = report["X_sharding"]
    assert sh["num_devices"] == 8 and sh["shard_rows"] == [80] * 8
    for case in report["unlearn"].values():
        assert case["sharding"]["num_devices"] == 8 and case["sharding"]["shard_rows"] == [80] * 8
        assert case["single"]["num_devices"] == 1
        assert case["mask_devices"] == 8


def test_gradient_hvp_hessian_match_single_device(report):
    for name, r in report["rel"].items():
        assert r <= 1e-6, (name, r)


@pytest.mark.parametrize("case", list(DEFAULT_CASES)
                         + [pytest.param(c, marks=pytest.mark.slow) for c in MORE_CASES])
def test_removal_steps_match_single_device(request, case):
    fixture = "report" if case in DEFAULT_CASES else "report_more"
    r = request.getfixturevalue(fixture)["unlearn"][case]
    assert r["params_rel"] <= 1e-6 and r["budget_rel"] <= 1e-6, r
    assert r["outcomes"] == ["unlearned"] * 4
    assert r["paths"] == r["paths_single"]


def test_indivisible_rows_are_refused_with_the_argument_name(report):
    assert "X has 639 rows" in report["indivisible_error"]
