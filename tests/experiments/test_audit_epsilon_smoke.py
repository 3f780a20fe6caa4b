"""Smoke test of experiments/audit_epsilon/run.py (epsilon audits, Hard to Forget), in-process."""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path

import pytest

from certun.release import private_release

# In the slow tier (`pytest -m slow`) for the default suite's time budget (issue 15-19 merges).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "audit_epsilon" / "run.py"
#: the release before the fix of issue 14 (sigma from the data's own n_t, add/remove)
OLD_RELEASE = "adjacency" not in inspect.signature(private_release).parameters


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("certun_experiments_audit_epsilon_run", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("audit_epsilon_smoke")
    # exit 1 exactly when an honest mechanism exceeds its certificate: the old release does
    assert mod.main(["--smoke", "--out", str(out)]) == (1 if OLD_RELEASE else 0)
    return out, json.loads((out / "results.json").read_text())


def test_audits(smoke):
    out, res = smoke
    assert res["config"]["smoke"] is True and res["versions"]["certun"]
    for name in res["plots"]:
        assert (out / name).stat().st_size > 1000
    honest = [r for r in res["gaussian"] if r["noise_scale"] == 1.0]
    under = [r for r in res["gaussian"] if r["noise_scale"] != 1.0]
    assert all(r["verdict"] == "consistent" and 0.2 < r["epsilon_lower"] <= 1.0 for r in honest)
    assert all(r["verdict"] == "violated" and r["epsilon_lower"] > 1.0 for r in under)
    assert all("separate split" in r["test_rule"] for r in res["gaussian"])
    assert all(r["epsilon_lower"] <= r["epsilon_claimed"] for r in res["guo"]["audits"])
    assert res["guo"]["negative_control"]["verdict"] == "violated"


def test_adversarial_table(smoke):
    """Every mechanism within its certificate (but the old release), every twin caught."""
    _, res = smoke
    table = res["adversarial"]["table"]
    labels = " ".join(r["label"] for r in table)
    for name in ("Gaussian", "private release", "Sekhari", "Descent-to-Delete"):
        assert name in labels  # Zhang, Langevin, Guo: full run and the slow tier
    for r in table:
        assert r["runs_per_world"] >= 20000
        assert set(r["per_statistic"]) == {"mean_shift", "norm_sq", "max_abs", "gaussian_lr"}
        assert r["epsilon_lower"] == max(r["per_statistic"].values())
        assert any(t["caught"] and t["epsilon_lower"] > t["epsilon_claimed"]
                   for t in r["twins"]), r["label"]
        if OLD_RELEASE and r["label"].startswith("private release"):
            assert r["verdict"] == "violated" and r["best_statistic"] in ("norm_sq", "gaussian_lr")
        else:
            assert r["verdict"] == "consistent" and r["epsilon_lower"] <= r["epsilon_claimed"]
    rel = next(r for r in table if r["label"].startswith("private release"))
    old = next(t for t in rel["twins"] if t["twin"].startswith("old"))
    assert old["caught"] and old["per_statistic"]["norm_sq"] > 1.0
    assert old["per_statistic"]["mean_shift"] < 1.0   # invisible along the mean shift
    assert res["acceptance"]["old_release_caught"]["pass"]


def test_hard_to_forget(smoke):
    _, res = smoke
    s = res["hard_to_forget"]["influence_norm"]["summary"]
    assert s["attack"]["first_forced_retrain"] < s["clean"]["first_forced_retrain"]
    assert s["attack_defended"]["first_forced_retrain"] >= 0.8 * s["clean"]["first_forced_retrain"]
    assert s["attack"]["budget_per_request"] > 2 * s["clean"]["budget_per_request"]
    assert s["attack_defended"]["flagged"] > 0 and s["clean_defended"]["flagged"] == 0
    assert res["acceptance"]["hard_to_forget"]["pass"]


def test_distance_to_retraining(smoke):
    _, res = smoke
    d = res["distance_to_retraining"]["methods"]
    for name in ("certified_removal", "do_nothing"):
        k = d[name]["klom"]
        assert set(k) == {"forget", "retain", "val"}
        assert all("null_p95" in v and v["p95"] >= 0 for v in k.values())
    assert 0 <= d["certified_removal"]["ulira_auc_forget_mean"] <= 1
    # certified removal is much closer to retraining with the same b than doing nothing
    assert (d["certified_removal"]["parameter_distance_same_b"]
            < 0.1 * d["do_nothing"]["parameter_distance_same_b"])


def test_bad_input_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    # a ValidationError raised inside the run (here: rows above norm 1 reaching the audit)
    # prints one line on stderr and exits 2, instead of a traceback and exit 1
    spec = importlib.util.spec_from_file_location("certun_experiments_audit_epsilon_run2", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from certun._validate import unit_rows

    def bad(*_a, **_k):
        unit_rows(X=[[1.0 + 2.0**-52, 0.0]], tol=0.0)

    monkeypatch.setattr(mod, "part_gaussian", bad)
    assert mod.main(["--smoke", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("audit_epsilon: error: X row 0 has L2 norm 1 + ")
