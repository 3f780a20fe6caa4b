"""Smoke test of experiments/chen2021/targets.py (Chen et al. extended), in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "chen2021" / "targets.py"


def test_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("certun_experiments_chen2021_targets", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--smoke", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    t = res["table"]
    assert set(t) == {"digits/lr/group", "digits/lr/multi_version"}
    # group deletion (120 target rows in the smoke run): the two-version attack beats the
    # classical MIA on a logistic target; single deletion has only 12 rows here
    g = t["digits/lr/group"]
    assert g["two_version_auc"]["auc"] > g["classical_auc"]["auc"] + 0.15
    assert all(v["accuracy"] > 0.85 for v in t.values())
    m = res["mitigations"]
    assert abs(m["digits/lr/label_only"]["two_version_auc"]["auc"] - 0.5) < 0.1
    # DP training (full-batch DP-GD, epsilon 4 per record): the classical MIA and the
    # two-version attack both run on its posteriors; its noise multiplier is the analytic
    # Gaussian one for 100 composed steps
    dp = m["digits/lr/dp_epsilon_4"]
    assert 0.0 <= dp["two_version_auc"]["auc"] <= 1.0 and dp["accuracy"] > 0.5
    from certun.accounting.gaussian import analytic_epsilon
    z, steps = res["config"]["dp"]["noise_multiplier"], res["config"]["dp"]["steps"]
    assert abs(analytic_epsilon(z / steps ** 0.5, res["config"]["dp"]["delta"]) - 4.0) < 1e-6
    assert (tmp_path / "chen2021_targets.png").stat().st_size > 1000


@pytest.mark.slow
def test_seeded_findings_runs_small():
    """--seeds: paired per-seed differences (2 seeds, tiny pipeline; the 20-seed run is slow)."""
    spec = importlib.util.spec_from_file_location("certun_experiments_chen2021_targets2", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.NUM_SETS, mod.DELETIONS = 1, 2
    r = mod.seeded_findings(2)
    assert len(r["per_seed"]) == 2 and r["label_only"]["mean"] == 0.5
    d = [p["two_version"] - p["classical"] for p in r["per_seed"]]
    assert r["two_version_minus_classical"]["mean"] == pytest.approx(sum(d) / 2, rel=1e-12)


@pytest.mark.slow
def test_seeded_findings_20_seeds():
    """The measured findings (README): two-version > classical, label-only and DP lower it."""
    spec = importlib.util.spec_from_file_location("certun_experiments_chen2021_targets3", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.seeded_findings(20)
    for k in ("two_version_minus_classical", "two_version_minus_label_only",
              "two_version_minus_dp"):
        assert r[k]["ci"][0] > 0, (k, r[k])
