"""Smoke test of experiments/chen2021/targets.py (Chen et al. extended), in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "chen2021" / "targets.py"


def test_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("certun_experiments_chen2021_targets", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--smoke", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    t = res["table"]
    assert set(t) == {"digits/lr/single", "digits/lr/group"}
    # group deletion (120 target rows in the smoke run): the two-version attack beats the
    # classical MIA on a logistic target; single deletion has only 12 rows here
    g = t["digits/lr/group"]
    assert g["two_version_auc"]["auc"] > g["classical_auc"]["auc"] + 0.15
    assert all(v["accuracy"] > 0.85 for v in t.values())
    m = res["mitigations"]
    assert abs(m["digits/lr/label_only"]["two_version_auc"]["auc"] - 0.5) < 0.1
    assert m["digits/lr/dp"]["status"].startswith("not run")
    assert (tmp_path / "chen2021_targets.png").stat().st_size > 1000
