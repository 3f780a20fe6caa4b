"""Smoke test of experiments/fairness_deletion/run.py (diabetes, sex), in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "fairness_deletion" / "run.py"


def _mod():
    spec = importlib.util.spec_from_file_location("certun_experiments_fairness_run", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_smoke(tmp_path):
    assert _mod().main(["--smoke", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    p = res["pooled"]
    assert (tmp_path / "fairness_deletion.png").stat().st_size > 1000
    assert p["dp_attack"]["mean"] > p["dp_random"]["mean"]
    assert p["dp_attack"]["mean"] > p["dp_defended"]["mean"]
    assert 0.0 <= p["false_positive_rate"]["mean"] <= 0.2
    assert res["dataset"]["sensitive_attribute"].startswith("sex")


@pytest.mark.slow
def test_full_run_acceptance(tmp_path):
    """30 seeds: the gap rises (CI excludes 0), the defence lowers it, FPR <= 10%."""
    assert _mod().main(["--out", str(tmp_path)]) == 0
    a = json.loads((tmp_path / "results.json").read_text())["acceptance"]
    assert all(v["pass"] for v in a.values()), a
