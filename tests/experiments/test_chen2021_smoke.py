"""Smoke test of experiments/chen2021/run.py (Chen et al. two-version MIA), in-process.

Runs ``--smoke`` (1 seed, 4 sets x 5 deletions per side, 4 methods) into ``tmp_path`` and
checks properties of the results: the attack beats retraining and certified removal alike,
the private release brings it to chance while keeping accuracy, files and metadata exist.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "chen2021" / "run.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("certun_experiments_chen2021_run", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("chen2021_smoke")
    assert mod.main(["--smoke", "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_metadata_and_files(smoke):
    out, res = smoke
    for k in ("config", "seeds", "versions", "git", "timestamps", "dataset", "pooled",
              "per_seed", "acceptance", "threat"):
        assert k in res, k
    assert res["config"]["smoke"] is True and res["seeds"] == [0]
    assert res["versions"]["certun"] and res["timestamps"]["finished"]
    for name in res["plots"]:
        assert (out / name).stat().st_size > 1000, name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_two_version_attack_and_release(smoke):
    _, res = smoke
    p = res["pooled"]
    f = res["config"]["headline_feature"]
    assert p["retraining"][f]["auc_mean"] > 0.85
    assert p["retraining"][f]["auc_mean"] > p["retraining"]["basic_mia"]["auc_mean"] + 0.2
    assert p["retraining"]["degradation_count"] > 0.7
    assert abs(p["certified_removal"][f]["auc_mean"] - p["retraining"][f]["auc_mean"]) < 0.05
    assert p["newton_noiseless"]["guarantee"] == "NOT certified"
    rel = p["release:retraining"]
    assert abs(rel[f]["auc_mean"] - 0.5) < 0.2
    lo, hi = rel[f]["cluster_ci"]
    assert lo <= rel[f]["auc_mean"] <= hi
    assert rel["accuracy_original_mean"] > 0.8
    c = rel["certificate"]
    assert c["threat"] == "private_release" and c["epsilon"] == 1.0
    assert c["epsilon_composed"] > 1.0 and c["releases"] == 2
    assert p["retraining"]["mitigations"]["label_only"]["auc_mean"] < 0.7
