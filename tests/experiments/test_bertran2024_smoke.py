"""Smoke test of experiments/bertran2024/run.py (reconstruction of deleted records), in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "bertran2024" / "run.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("certun_experiments_bertran2024_run", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("bertran2024_smoke")
    assert mod.main(["--smoke", "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_reconstruction_results(smoke):
    out, res = smoke
    assert res["config"]["smoke"] is True and res["versions"]["certun"]
    for name in res["plots"]:
        assert (out / name).stat().st_size > 1000
    ridge = {s["lambda_bertran"]: s for s in res["settings"] if s["dataset"] == "diabetes"}
    assert set(ridge) == {1.0, 100.0}
    for s in ridge.values():
        assert s["deletions"] == 12
        for m in ("retraining", "certified_removal", "newton_noiseless"):
            assert s["methods"][m]["exact_hessian"]["min"] > 0.99, m
        assert s["methods"]["private_release"]["exact_hessian"]["mean"] < 0.5
        assert s["averaging_baseline"]["mean"] < 0.6
    assert ridge[100.0]["methods"]["retraining"]["public_hessian"]["mean"] >= 0.95
    rel = ridge[100.0]["methods"]["private_release"]
    assert rel["certificate"]["threat"] == "private_release"
    assert rel["test_error_released_mean"] < 2 * rel["test_error_noiseless"]
    acc = res["acceptance"]
    assert all(v["pass"] for v in acc.values())
