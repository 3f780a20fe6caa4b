"""The README's main job (`certun demo`) and the contract of every subcommand (--json, errors)."""

import importlib
import json
import os
import subprocess
import sys

import pytest

from certun.cli import COMMANDS, build_parser, main


@pytest.fixture(scope="module")
def demo_json():
    """``certun demo --json`` run as the README runs it (a subprocess)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "certun", "demo", "--json"], capture_output=True,
                         text=True, env=env, timeout=600, check=True)
    return json.loads(out.stdout)


def test_demo_json_meets_acceptance(demo_json):
    """The demo's JSON has every field, a valid certificate and the claimed accuracy."""
    r = demo_json
    for key in ("dataset", "n_train", "n_test", "dim", "lam", "epsilon", "delta", "sigma",
                "removed", "scale", "test_accuracy", "param_distance_to_retrained",
                "gradient_residual",
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
    """Each bad demo option exits 2 with one line naming it."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err


def test_k_larger_than_the_data_is_a_clean_error(capsys):
    """Asking to remove more rows than exist is a one-line error, not a traceback."""
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


# --------------------------------------------------------------------------- the CLI contract
# Every subcommand: --json prints exactly one JSON object on stdout; an error prints one line
# on stderr (``certun <command>: error: ...``), nothing on stdout, and exits with status 2.


def _subparsers():
    import argparse

    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_every_command_takes_json():
    """Every registered subcommand has a ``--json`` option."""
    names = [importlib.import_module(m).NAME for m in COMMANDS]
    subs = _subparsers()
    assert sorted(names) == sorted(subs) and {"demo", "train", "forget", "status"} <= set(names)
    for name, sub in subs.items():
        assert any("--json" in a.option_strings for a in sub._actions), name


def _call(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors
        return exc.code


@pytest.mark.parametrize("argv, command, arg", [
    (["demo", "--k", "100000", "--json"], "demo", "k="),
    (["demo", "--epsilon", "0", "--json"], "demo", "--epsilon"),
    (["train", "--dataset", "digits_3v8", "--out", "{file}", "--json"], "train", "--out"),
    (["train", "--dataset", "digits_3v8", "--out", "{file}/sub", "--json"], "train", "--out"),
    (["train", "--dataset", "nope", "--out", "{new}", "--json"], "train", "--dataset"),
    (["forget", "{empty}", "--index", "1", "--json"], "forget", "DIR"),
    (["forget", "{missing}", "--index", "1", "--json"], "forget", "DIR"),
    (["forget", "{empty}", "--json"], "forget", "--index"),
    (["status", "{empty}", "--json"], "status", "DIR"),
    (["status", "{missing}", "--json"], "status", "DIR"),
])
def test_errors_with_json_are_one_stderr_line_and_no_stdout(argv, command, arg, tmp_path,
                                                            capsys):
    """An error under ``--json``: exit 2, one line on stderr naming the argument, no stdout."""
    (tmp_path / "file").write_text("not a directory\n")
    (tmp_path / "empty").mkdir()
    subs = dict(file=str(tmp_path / "file"), empty=str(tmp_path / "empty"),
                missing=str(tmp_path / "missing"), new=str(tmp_path / "new"))
    code = _call([a.format(**subs) for a in argv])
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2, out
    assert out.out == "", out.out
    assert len(lines) == 1 and lines[0].startswith(f"certun {command}: error: "), out.err
    assert arg in lines[0], lines[0]
    assert "Traceback" not in out.err


def test_json_success_is_exactly_one_object(tmp_path, capsys):
    """train, forget and status with ``--json`` print one line holding one JSON object."""
    led = str(tmp_path / "led")
    for argv in (["train", "--dataset", "digits_3v8", "--sigma", "10", "--epsilon", "8",
                  "--out", led, "--json"],
                 ["forget", led, "--index", "3", "--json"],
                 ["status", led, "--json"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.endswith("\n") and out.count("\n") == 1, out  # one line
        assert isinstance(json.loads(out), dict)


def test_fail_folds_a_multiline_message_into_one_line(capsys):
    """``fail`` keeps even a multi-line message on one line."""
    from certun.commands._args import fail

    assert fail("status", "first line\n  second line") == 2
    assert capsys.readouterr().err == "certun status: error: first line second line\n"
