"""Smoke test of experiments/jia2023/run.py (sparsity-aware unlearning, convex), in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "jia2023" / "run.py"


def _mod():
    spec = importlib.util.spec_from_file_location("certun_experiments_jia2023_run", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_smoke(tmp_path):
    assert _mod().main(["--smoke", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    p = res["pooled"]
    assert (tmp_path / "jia2023.png").stat().st_size > 1000
    # the Newton step is exact enough on a convex model that its gap to retraining is ~0
    for sp in res["config"]["sparsities"]:
        assert p[f"Newton_{sp}_avg_gap"]["mean"] < 0.01
        assert p[f"retrain_{sp}_RA"]["mean"] > 0.85


@pytest.mark.slow
def test_full_run(tmp_path):
    """20 seeds x 4 sparsities: the statements of the README (GA's gap shrinks with sparsity)."""
    assert _mod().main(["--out", str(tmp_path)]) == 0
    a = json.loads((tmp_path / "results.json").read_text())["acceptance"]
    assert a["any_method_two_metrics_shrink"], a
