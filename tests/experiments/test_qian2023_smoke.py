"""Smoke test of experiments/qian2023/run.py (malicious deletion requests), in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "qian2023" / "run.py"


def _mod():
    spec = importlib.util.spec_from_file_location("certun_experiments_qian2023_run", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("qian2023_smoke")
    assert _mod().main(["--smoke", "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_smoke_results(smoke):
    out, res = smoke
    assert (out / "qian2023.png").stat().st_size > 1000
    p, a = res["pooled"], res["acceptance"]
    assert a["budget_at_most_1pct"]["pass"] and res["config"]["smoke"] is True
    assert res["config"]["unlearner"].startswith("gradient ascent")
    # crafted deletions flip targets through gradient ascent; random deletions of the same
    # size flip none of them
    assert p["success"]["mean"] > p["success_random_deletions"]["mean"]
    assert p["success_random_deletions"]["mean"] == 0.0
    # a held request is not honoured: the defended model is the deployed one for it
    assert p["success_defended"]["mean"] <= p["success"]["mean"]
    assert p["false_positive_rate"]["mean"] <= 0.2  # calibrated for 5% on 40 other requests
    assert p["clean_accuracy"]["mean"] > 0.9
    assert "recalled" in res["provenance"]


@pytest.mark.slow
def test_full_run_acceptance(tmp_path):
    """20 seeds x 50 targets: the issue's acceptance statements, as measured (see README)."""
    assert _mod().main(["--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    a, p = res["acceptance"], res["pooled"]
    assert len(res["seeds"]) >= 20 and a["budget_at_most_1pct"]["pass"]
    assert a["false_positive_rate_at_most_10pct"]["pass"]
    assert a["success_above_half"]["pass"]
    assert a["defended_at_most_half_of_undefended"]["pass"]
    assert p["success_minus_random"]["excludes_zero"]
