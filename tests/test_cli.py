"""The README's main job: `certun demo` (acceptance criteria of the core issue)."""

import json
import os
import subprocess
import sys

import pytest

from certun.cli import main


@pytest.fixture(scope="module")
def demo_json():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "certun", "demo", "--json"], capture_output=True,
                         text=True, env=env, timeout=600, check=True)
    return json.loads(out.stdout)


def test_demo_json_meets_acceptance(demo_json):
    r = demo_json
    for key in ("dataset", "n_train", "n_test", "dim", "lam", "epsilon", "delta", "sigma", "removed",
                "scale", "test_accuracy", "param_distance_to_retrained", "gradient_residual",
                "certificate", "seconds"):
        assert key in r
    assert r["dataset"] == "digits_3v8" and r["removed"] == 10 and r["scale"] == "sum"
    assert (r["epsilon"], r["delta"]) == (1.0, 1e-4)
    c = r["certificate"]
    assert c["valid"] is True and c["status"] == "holds"
    assert c["budget_used"] <= c["budget_total"]
    acc = r["test_accuracy"]
    assert acc["unlearned"] >= 0.9
    assert abs(acc["unlearned"] - acc["retrained"]) <= 0.02
    g = r["gradient_residual"]
    assert g["true"] <= g["data_dependent_bound"] <= g["worst_case_bound"]
    assert set(r["seconds"]) >= {"unlearn", "retrain"}
    assert "bounds" not in c and "private" not in c  # only the public view is printed


@pytest.mark.parametrize(
    "argv, name",
    [
        (["demo", "--epsilon", "0"], "--epsilon"),
        (["demo", "--delta", "1.5"], "--delta"),
        (["demo", "--k", "0"], "--k"),
        (["demo", "--lam", "abc"], "--lam"),
        (["demo", "--sigma", "-1"], "--sigma"),
        (["demo", "--bound", "loose"], "--bound"),
        (["demo", "--method", "sgd"], "--method"),
        (["demo", "--method", "langevin", "--burn-in", "-1"], "--burn-in"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, name, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err


def test_k_larger_than_the_data_is_a_clean_error(capsys):
    assert main(["demo", "--k", "100000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "k=" in err


@pytest.mark.parametrize("method", ["langevin", "d2d"])
def test_demo_first_order_methods(method, capsys):
    """``certun demo --method langevin|d2d --json``: certified, accurate, scale stated."""
    assert main(["demo", "--method", method, "--k", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["method"] == method and r["dataset"] == "digits_3v8"
    assert r["removed"] == 3 and r["scale"] == "mean" and r["adjacency"] == "removal"
    assert (r["lam"], r["epsilon"], r["delta"]) == (0.1, 1.0, 1e-5)
    c = r["certificate"]
    assert c["valid"] is True and c["status"] == "holds" and c["scale"] == "mean"
    assert c["threat"] == "indistinguishable_from_retraining" and c["epsilon"] <= 1.0
    assert "bounds" not in c and "private" not in c
    acc = r["test_accuracy"]
    assert acc["retrained"] >= 0.9 and acc["unlearned"] >= 0.85
    assert [s["steps"] for s in r["steps"]] and all(s["steps"] >= 1 for s in r["steps"])
    if method == "langevin":
        assert c["conversion"] == "mironov_simple" and r["epsilon_tight"] <= c["epsilon"]
        assert r["steps_total"] == r["burn_in"] + sum(s["steps"] for s in r["steps"])
    else:
        assert r["steps_total"] == r["train_steps"] + sum(s["steps"] for s in r["steps"])
        assert c["epsilon_composed"] >= c["epsilon"]
