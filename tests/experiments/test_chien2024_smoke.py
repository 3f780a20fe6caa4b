"""Smoke test of experiments/chien2024/run.py (Langevin unlearning comparison), in-process.

Runs ``--smoke`` on digits 3-vs-8 into ``tmp_path`` and checks properties the results must
have: certificates hold, the accounting's calibration is met, the published MNIST anchors
are reproduced, steps grow with the number of removed rows, files are written atomically.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from certun.accounting import langevin as acct
from certun.accounting.gaussian import calibrate

# In the slow tier (`pytest -m slow`) for the default suite's time budget (issue 15-19 merges).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "chien2024" / "run.py"


def _load_run_module():
    spec = importlib.util.spec_from_file_location("certun_experiments_chien2024_run", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run_mod():
    return _load_run_module()


@pytest.fixture(scope="module")
def smoke(run_mod, tmp_path_factory):
    out = tmp_path_factory.mktemp("chien2024_smoke")
    assert run_mod.main(["--smoke", "--out", str(out), "--seed", "0"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_metadata_and_files(smoke):
    out, res = smoke
    for k in ("config", "seed", "versions", "git", "timestamps", "dataset", "reference",
              "accuracy_table", "steps_vs_removed", "sequential", "clip_diagnostic", "plots"):
        assert k in res, k
    c = res["config"]
    assert c["smoke"] is True and c["adjacency"] == "removal" and c["dataset"] == "digits_3v8"
    assert c["lam"] == 0.1 and c["delta"] == 1e-5 and c["epsilons"] == [0.5, 1.0, 2.0, 5.0]
    assert c["lam_paper"] == pytest.approx(0.1 / 267)
    for pkg in ("certun", "jax", "numpy", "dp-accounting", "python"):
        assert res["versions"].get(pkg), pkg
    for name in res["plots"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 1000, name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_accuracy_table_is_certified_and_calibrated(smoke):
    _, res = smoke
    cfg = res["config"]
    n, lam, dlt = res["dataset"]["n_train"], cfg["lam"], cfg["delta"]
    cells = res["accuracy_table"]["cells"]
    assert len(cells) == len(cfg["K_list"]) * 4
    z = {e: calibrate(e, dlt, 1.0).sigma for e in cfg["epsilons"]}
    for cell in cells:
        K, eps = cell["K"], cell["epsilon"]
        lg = cell["langevin"]
        assert set(lg["certificates"]) == {"holds"} and set(lg["steps"]) == {K}
        assert lg["epsilon_simple"] <= eps and lg["epsilon_tight"] <= lg["epsilon_simple"]
        # sigma is the smallest that makes exactly K steps enough (accounting, removal)
        assert acct.steps_needed(eps, sigma=lg["sigma"], m=lam, eta=1 / (0.25 + lam), n=n,
                                 delta=dlt) == K
        assert cell["langevin_tight"]["sigma"] <= lg["sigma"]
        d = cell["d2d"]
        assert set(d["certificates"]) == {"holds"} and d["steps"] == K
        assert d["sigma"] > 0 and d["sigma"] / z[eps] > 0
        for m in ("langevin", "langevin_tight", "langevin_reference", "d2d", "guo", "retrain"):
            a = cell[m]["accuracy"]
            assert a is not None and 0.0 <= a["mean"] <= 1.0, m
        assert cell["retrain"]["accuracy"]["mean"] >= 0.9
        assert cell["guo"]["certified_trials"] == res["accuracy_table"]["trials"]
    # more privacy costs accuracy for the noisy methods at K = 1 (epsilon 0.5 vs 5)
    k1 = {c["epsilon"]: c for c in cells if c["K"] == 1}
    for m in ("langevin", "d2d"):
        assert k1[5.0][m]["accuracy"]["mean"] > k1[0.5][m]["accuracy"]["mean"], m
    # with 50 steps D2D's contraction makes its noise negligible: retraining accuracy
    k50 = [c for c in cells if c["K"] == 50]
    for c in k50:
        assert c["d2d"]["accuracy"]["mean"] == pytest.approx(c["retrain"]["accuracy"]["mean"],
                                                             abs=0.02)


def test_steps_grow_with_removed_points(smoke):
    _, res = smoke
    sv = res["steps_vs_removed"]
    curve = sv["curve"]
    for key in ("langevin_simple", "langevin_tight", "d2d"):
        v = curve[key]
        assert all(a <= b for a, b in zip(v, v[1:], strict=False)), key
        assert v[-1] > v[0], key
    assert all(t <= s for s, t in zip(curve["langevin_simple"], curve["langevin_tight"],
                                      strict=True))
    for r in sv["runs"]:
        assert r["langevin_certificate"] == "holds" and r["d2d_certificate"] == "holds"
        assert r["langevin_K"] == curve["langevin_simple"][curve["S"].index(r["S"])]
        assert r["d2d_steps"] == curve["d2d"][curve["S"].index(r["S"])]
        assert r["langevin_epsilon"] <= 1.0


def test_sequential_and_clip(smoke):
    _, res = smoke
    sq = res["sequential"]
    for name in ("langevin", "langevin_tight", "d2d"):
        assert set(sq[name]["certificates"]) == {"holds"}, name
        assert len(sq[name]["steps"]) == res["config"]["sequential_requests"]
    # the weak triangle recursion makes later requests cost more steps
    assert sq["langevin"]["steps"][-1] > sq["langevin"]["steps"][0]
    assert all(t <= s for s, t in zip(sq["langevin"]["steps"], sq["langevin_tight"]["steps"],
                                      strict=True))
    cd = res["clip_diagnostic"]
    if cd["clipped_steps_in_training"] > 0:
        assert cd["certificate"] == "fails" and "clip_inactive" in cd["reason"]
        assert cd["max_per_example_grad_norm"] > 1.0
    else:
        assert cd["certificate"] == "holds"


def test_reference_reproduces_the_published_calibration(smoke):
    _, res = smoke
    r = res["reference"]
    assert r["epsilon_k1"]["simple"] == pytest.approx(1.0, rel=0.01)
    assert r["epsilon_k1"]["tight"] == pytest.approx(0.78, abs=0.01)
    for k, k_pub in zip(r["fig5"]["K"], r["fig5"]["K_published"], strict=True):
        assert k_pub - 10 < k <= k_pub
    assert r["K10_loose_L"]["K"] == pytest.approx(779, rel=0.02)
    for row in r["d2d_paper_sigma"]:
        assert row["sigma"] == pytest.approx(row["published"], abs=0.006)


def test_cli_errors(run_mod, tmp_path, capsys):
    rc = run_mod.main(["--dataset", "mnist_3v8", "--mnist-path", str(tmp_path / "nope"),
                       "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "not found" in err and len(err.splitlines()) == 1
    assert run_mod.main(["--dataset", "mnist_3v8", "--out", str(tmp_path / "o")]) == 2
    assert run_mod.main(["--trials", "0", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
