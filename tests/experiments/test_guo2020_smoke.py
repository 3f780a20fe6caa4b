"""Smoke test of experiments/guo2020/run.py (Guo et al. 2020 reproduction), in-process.

Runs ``--smoke`` (2x2 grid, 10 removals on digits 3-vs-8) into ``tmp_path`` and checks
properties the results must have, not just that files exist.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from certun.accounting.gaussian import guo_budget, guo_c
from certun.bounds.guo import worst_case_bound_printed

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "guo2020" / "run.py"

# Relative slack for comparing bounds computed in float64 by different code paths.
RTOL = 1e-9


def _load_run_module():
    spec = importlib.util.spec_from_file_location("certun_experiments_guo2020_run", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run_mod():
    return _load_run_module()


@pytest.fixture(scope="module")
def smoke(run_mod, tmp_path_factory):
    out = tmp_path_factory.mktemp("guo2020_smoke")
    rc = run_mod.main(["--smoke", "--out", str(out), "--seed", "0"])
    assert rc == 0
    path = out / "results.json"
    assert path.is_file()
    return out, json.loads(path.read_text())


def test_results_metadata(smoke, run_mod):
    out, res = smoke
    for k in ("config", "seed", "versions", "git", "timestamps", "grid", "reference", "dataset"):
        assert k in res, k
    assert res["seed"] == 0
    for pkg in ("certun", "jax", "numpy", "scikit-learn", "dp-accounting", "python"):
        assert res["versions"].get(pkg), pkg
    cfg = res["config"]
    assert cfg["smoke"] is True
    assert cfg["epsilon"] == 1.0 and cfg["delta"] == 1e-4
    assert len(cfg["lams"]) == 2 and len(cfg["sigmas"]) == 2
    assert len(res["grid"]) == 4
    assert res["timestamps"]["started"] and res["timestamps"]["finished"]
    assert "commit" in res["git"]
    for name in res["plots"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 1000, name
    # no temp files left behind by the atomic write
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_budget_chain_per_step(smoke):
    """Each served step: true residual <= charged (data-dependent) budget used <= budget total."""
    _, res = smoke
    n_checked = 0
    for p in res["grid"]:
        assert p["status"] == "ok"
        assert p["budget_total"] == pytest.approx(guo_budget(p["sigma"], 1.0, 1e-4), rel=1e-12)
        served = [s for s in p["steps"] if s["supported"]]
        assert len(served) == p["supported_removals"]
        prev_used = p["train_grad_norm_charged"]
        for s in served:
            assert s["outcome"] == "unlearned"
            assert s["true_residual"] <= s["budget_used"] * (1 + RTOL)
            assert s["budget_used"] <= p["budget_total"]
            # the charge of a step is its data-dependent bound + solver residual + rounding
            assert s["charged"] >= s["data_dependent_bound"] * (1 - RTOL)
            assert s["budget_used"] == pytest.approx(prev_used + s["charged"], rel=1e-9)
            prev_used = s["budget_used"]
            # the per-step bound really bounds the exact change of the residual vector
            assert s["true_increment"] is not None
            assert s["true_increment"] <= s["charged"] * (1 + RTOL)
            n_checked += 1
        refused = [s for s in p["steps"] if not s["supported"]]
        if refused:  # a refusal happens exactly when the charge would exceed the budget
            assert len(refused) == 1 and refused[0] is p["steps"][-1]
            assert refused[0]["outcome"] == "retrain_required"
            assert refused[0]["budget_used"] > p["budget_total"]
            assert not p["capped"]
        else:
            assert p["capped"] and p["supported_removals"] == res["config"]["removals"]
    assert n_checked > 0


def test_data_dependent_below_corrected_worst_case(smoke):
    _, res = smoke
    for p in res["grid"]:
        for s in p["steps"]:
            assert s["data_dependent_bound"] <= s["worst_case_bound"] * (1 + RTOL)
            assert s["worst_case_bound_printed"] <= s["worst_case_bound"] * (1 + RTOL)


def test_larger_sigma_supports_at_least_as_many(smoke):
    """Same lambda, larger sigma -> at least as many removals.

    Holds while ||b||/n stays below the gradient bound C = 1: the budget grows like sigma
    while the Newton step's Delta = grad l + lambda w carries lambda ||w|| <= C + ||b||/n
    (erratum 1), so for sigma sqrt(d) / n >> C the data-dependent bound grows like sigma^2
    and the trend reverses (digits, sigma = 100). The smoke grid stays in the first regime.
    """
    _, res = smoke
    d, n = res["dataset"]["dim"], res["dataset"]["n_train"]
    by_lam: dict[float, list] = {}
    for p in res["grid"]:
        by_lam.setdefault(p["lam"], []).append(p)
    nontrivial = 0
    for lam, pts in by_lam.items():
        pts.sort(key=lambda p: p["sigma"])
        for lo, hi in zip(pts, pts[1:], strict=False):
            assert hi["sigma"] * math.sqrt(d) / n < 1.0  # the regime the claim is made for
            assert hi["supported_removals"] >= lo["supported_removals"], lam
            nontrivial += hi["supported_removals"] > lo["supported_removals"]
    assert nontrivial >= 1


def test_reference_point(smoke):
    _, res = smoke
    ref = res["reference"]
    assert ref["mnist_worst_case_printed"] == pytest.approx(83.47, abs=1e-2)
    assert ref["c"] == pytest.approx(4.3854, abs=1e-4)
    assert ref["budget"] == pytest.approx(2.2803, abs=1e-4)
    # digits (n = 267) at the paper's lambda = 1e-3, sigma = 10: not even one removal
    assert ref["lam"] == 1e-3 and ref["sigma"] == 10.0
    assert ref["supported_removals"] == 0 and ref["one_removal_supported"] is False
    assert ref["data_dependent_first_request"] > ref["budget"]
    # printed worst case at n = 267 and the corrected one (adds ||b||/n) for the same request
    assert ref["worst_case_printed_first_request"] == pytest.approx(
        worst_case_bound_printed(0.25, 1.0, 1e-3, 267, 1), rel=1e-12)
    assert ref["worst_case_printed_first_request_from_certun"] == pytest.approx(
        ref["worst_case_printed_first_request"], rel=1e-12)
    assert ref["worst_case_corrected_first_request"] > ref["worst_case_printed_first_request"]


def test_published_constants():
    assert worst_case_bound_printed(0.25, 1, 1e-3, 11982, 1) == pytest.approx(83.47, abs=1e-2)
    assert guo_c(1e-4) == pytest.approx(4.3854, abs=1e-4)
    assert guo_budget(10.0, 1.0, 1e-4) == pytest.approx(2.2803, abs=1e-4)


def test_cli_errors(run_mod, tmp_path, capsys):
    missing = tmp_path / "no_such_mnist"
    rc = run_mod.main(["--dataset", "mnist_3v8", "--mnist-path", str(missing),
                       "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "not found" in err and len(err.splitlines()) == 1
    assert run_mod.main(["--dataset", "mnist_3v8", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
