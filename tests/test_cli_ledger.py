"""`certun train / forget / status`: the ledger from the command line."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from certun.cli import main
from certun.ledger import Ledger

PRIVATE_KEYS = {"bounds", "solver", "indices", "b", "b_norm", "train_grad_norm", "true_residual",
                "diagnostics", "view", "key", "W", "X"}


def _leaks(obj, path=""):
    """Private fields in a JSON object.

    Private keys, a ``private`` section (a bool flag of a public assumption is fine), or a
    value of an assumption marked private.
    """
    found = []
    if isinstance(obj, dict):
        if obj.get("private") is True and ("value" in obj or "limit" in obj):
            found.append(path + "/value")
        for k, v in obj.items():
            if k in PRIVATE_KEYS or (k == "private" and not isinstance(v, bool)):
                found.append(f"{path}/{k}")
            found += _leaks(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for v in obj:
            found += _leaks(v, path)
    return found


def _keys(obj):
    """Every key of a JSON object, recursively."""
    if isinstance(obj, dict):
        return set(obj) | set().union(*(_keys(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_keys(v) for v in obj))
    return set()


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "led"
    assert main(["train", "--dataset", "digits_3v8", "--lam", "0.01", "--sigma", "10",
                 "--epsilon", "8", "--delta", "1e-5", "--out", str(path), "--seed", "3",
                 "--json"]) == 0
    return path


def _copy(trained, tmp_path):
    dst = tmp_path / "led"
    shutil.copytree(trained, dst)
    return dst


def test_train_forget_status_json(trained, tmp_path, capsys):
    led = _copy(trained, tmp_path)
    code, out, _ = _run(capsys, "status", str(led), "--json")
    st = json.loads(out)
    assert code == 0 and st["requests"] == 0 and st["removed"] == 0
    assert (st["epsilon"], st["delta"]) == (8.0, 1e-5) and st["model"] == "logistic"
    assert 0.5 < st["test_accuracy"] <= 1.0
    code, out, _ = _run(capsys, "forget", str(led), "--index", "4", "7", "--json")
    rec = json.loads(out)
    assert code == 0 and rec["removed_in_request"] == 2 and "outcome" not in rec
    assert rec["certificate"]["status"] == "holds" and set(rec["budget"]) == {"total"}
    assert Ledger.open(led).records[-1]["private"]["outcome"] == "unlearned"
    idx_file = tmp_path / "idx.txt"
    idx_file.write_text("10, 11\n12\n")
    code, out, _ = _run(capsys, "forget", str(led), "--index-file", str(idx_file), "--json")
    assert code == 0 and json.loads(out)["removed_total"] == 5
    code, out, _ = _run(capsys, "status", str(led), "--json")
    st = json.loads(out)
    assert st["requests"] == 2 and st["removed"] == 5 and st["certificate_status"] == "holds"
    assert set(st["budget"]) == {"total"} and "retrains" not in st
    # the ledger itself holds the private parts, the printed status none of them
    assert _leaks(st) == [], _leaks(st)
    assert "indices" in Ledger.open(led).records[-1]["private"]
    code, out, _ = _run(capsys, "status", str(led))
    assert code == 0 and "budget" in out and "removed 5" in out


def test_status_json_has_no_private_field_after_retrain(tmp_path, capsys):
    led = tmp_path / "led"
    code, _, _ = _run(capsys, "train", "--dataset", "breast_cancer", "--sigma", "0.01",
                      "--out", str(led))
    assert code == 0
    code, out, _ = _run(capsys, "forget", str(led), "--index", "0", "1", "2", "3", "--json")
    assert code == 0 and "outcome" not in json.loads(out)
    assert Ledger.open(led).records[-1]["private"]["outcome"] == "retrained"
    for argv in (("status", str(led), "--json"), ("forget", str(led), "--index", "9", "--json")):
        code, out, _ = _run(capsys, *argv)
        assert code == 0 and _leaks(json.loads(out)) == []
        assert not _keys(json.loads(out)) & {"outcome", "retrains", "used", "left"}


def test_train_remeasure_serves_what_the_bounds_would_retrain(tmp_path, capsys):
    used = {}
    for flag in ((), ("--remeasure", "--factor", "cholesky")):
        led = tmp_path / f"led{len(flag)}"
        code, _, _ = _run(capsys, "train", "--dataset", "breast_cancer", "--sigma", "0.05",
                          "--out", str(led), *flag)
        cfg = Ledger.open(led).config
        assert code == 0 and cfg.get("remeasure", False) == bool(flag)
        assert cfg.get("factor", "eigh") == ("cholesky" if flag else "eigh")
        code, out, _ = _run(capsys, "forget", str(led), "--index", "0", "1", "2", "3", "--json")
        rec = json.loads(out)
        assert code == 0 and rec["certificate"]["status"] == "holds" and _leaks(rec) == []
        priv = Ledger.open(led).records[-1]["private"]
        used[bool(flag)] = (priv["outcome"], priv["budget"]["used"])
        diag = priv["diagnostics"]
        assert ("residual_remeasured" in diag) == bool(flag)
    # the accumulated bound exceeds the budget; the measured residual fits
    assert used[False][0] == "retrained" and used[True][0] == "unlearned"
    assert diag["residual_bound_accumulated"] > rec["budget"]["total"] >= used[True][1]
    assert used[True][1] == pytest.approx(diag["residual_remeasured"], rel=1e-12)


def test_ridge_ledger(tmp_path, capsys):
    led = tmp_path / "led"
    code, out, _ = _run(capsys, "train", "--dataset", "diabetes", "--model", "ridge",
                        "--sigma", "0.1", "--out", str(led), "--json")
    assert code == 0 and json.loads(out)["test_rmse"] > 0
    code, out, _ = _run(capsys, "forget", str(led), "--index", "5", "--json")
    assert code == 0 and json.loads(out)["certificate"]["status"] == "holds"


@pytest.mark.parametrize("argv, arg", [
    (["forget", "{led}", "--index", "3", "--index", "3"], None),  # argparse: last wins (3 only)
    (["forget", "{led}", "--index", "100000"], "--index"),
    (["forget", "{led}", "--index", "4", "4"], "--index"),
    (["forget", "{led}", "--index-file", "{missing}"], "--index-file"),
    (["forget", "{led}", "--index-file", "{bad}"], "--index-file"),
    (["forget", "{empty}", "--index", "1"], "DIR"),
    (["status", "{empty}"], "DIR"),
    (["train", "--dataset", "digits_3v8", "--out", "{led}"], "--out"),
    (["train", "--dataset", "diabetes", "--out", "{new}"], "--model"),
    (["train", "--dataset", "digits_3v8", "--model", "ridge", "--out", "{new}"], "--model"),
    (["train", "--dataset", "digits_3v8", "--update", "pcg", "--factor", "cholesky", "--out",
      "{new}"], "--factor"),
    (["train", "--dataset", "digits_3v8", "--epsilon", "20", "--out", "{new}"], "--epsilon"),
])
def test_bad_arguments_exit_2_with_one_line(trained, tmp_path, capsys, argv, arg):
    led = _copy(trained, tmp_path)
    (tmp_path / "bad.txt").write_text("1 2 x\n")
    (tmp_path / "empty").mkdir()
    subs = dict(led=str(led), missing=str(tmp_path / "nope.txt"), bad=str(tmp_path / "bad.txt"),
                empty=str(tmp_path / "empty"), new=str(tmp_path / "new"))
    argv = [a.format(**subs) for a in argv]
    code, out, err = _run(capsys, *argv)
    if arg is None:
        assert code == 0
        return
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and arg in lines[0], err
    assert Ledger.open(led).generation == 0  # nothing was written
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())


@pytest.mark.parametrize("argv, arg", [
    (["forget", "X", "--index", "-1"], "--index"),
    (["forget", "X"], "--index"),
    (["forget", "X", "--index", "1", "--index-file", "f"], "--index-file"),
    (["train", "--dataset", "digits_3v8", "--lam", "0", "--out", "o"], "--lam"),
    (["train", "--dataset", "digits_3v8", "--delta", "1.5", "--out", "o"], "--delta"),
    (["train", "--dataset", "nope", "--out", "o"], "--dataset"),
    (["train", "--dataset", "digits_3v8"], "--out"),
    (["status"], "DIR"),
])
def test_argparse_errors_exit_2_with_one_line(capsys, argv, arg):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and arg in err[0], err


_DRIVER = """
import os, sys, time
import certun.ledger as L
step = sys.argv[1]
def pause(name):
    if name == step:
        sys.stdout.write("paused\\n"); sys.stdout.flush(); time.sleep(120)
L._FAULT = pause
from certun.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_sigkill_real_cli_process_inside_write_window(trained, tmp_path):
    """A real `certun forget` process paused at each step of the write path and SIGKILLed."""
    led = _copy(trained, tmp_path)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    steps = ["arrays_written", "record_written", "manifest_written", "committed", "cleanup",
             "bundle"]
    idx, gen = 20, 0
    for trial in range(12):
        step = steps[trial % len(steps)]
        before = Ledger.open(led)
        p = subprocess.Popen([sys.executable, "-c", _DRIVER, step, "forget", str(led), "--index",
                              str(idx)], stdout=subprocess.PIPE, text=True, env=env)
        t0 = time.time()
        line = p.stdout.readline()
        assert line.strip() == "paused", (step, line)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        assert time.time() - t0 < 300
        after = Ledger.open(led)
        committed = step in ("committed", "cleanup")
        assert after.generation == before.generation + int(committed), step
        assert len(after.records) == after.generation + 1
        mask = np.asarray(after.state.mask)
        assert (mask[idx] == 0) == committed
        if committed:
            idx += 1
        gen = after.generation
    assert gen >= 4


def test_verify_and_corruption_exit_codes(trained, tmp_path, capsys):
    led = _copy(trained, tmp_path)
    assert _run(capsys, "forget", str(led), "--index", "4")[0] == 0
    code, out, err = _run(capsys, "verify", str(led), "--json")
    rep = json.loads(out)
    assert code == 0 and rep["ok"] and rep["generation"] == 1 and err == ""
    code, out, _ = _run(capsys, "verify", str(led))
    assert code == 0 and "intact" in out
    rec = led / "records" / "00000001.json"
    obj = json.loads(rec.read_text())
    obj["private"]["indices"] = [5]  # other valid JSON
    rec.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    for argv in (("status", str(led), "--json"), ("forget", str(led), "--index", "9"),
                 ("verify", str(led))):
        code, out, err = _run(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "records/00000001.json" in lines[0], err
        assert "Traceback" not in err and "certun verify" in lines[0]
        assert "train --out" not in lines[0]
    code, out, err = _run(capsys, "verify", str(led), "--json")
    assert code == 2 and json.loads(out)["ok"] is False and len(err.strip().splitlines()) == 1


def test_train_never_rebuilds_over_a_ledger_whose_current_was_deleted(trained, tmp_path,
                                                                      capsys):
    led = _copy(trained, tmp_path)
    assert _run(capsys, "forget", str(led), "--index", "4")[0] == 0
    (led / "CURRENT").unlink()
    before = {f: f.read_bytes() for f in led.rglob("*") if f.is_file()}
    code, out, err = _run(capsys, "status", str(led))
    assert code == 2 and "CURRENT" in err and "train --out" not in err
    code, out, err = _run(capsys, "train", "--dataset", "digits_3v8", "--out", str(led))
    assert code == 2 and "--out" in err and "not empty" in err and out == ""
    assert {f: f.read_bytes() for f in led.rglob("*") if f.is_file()} == before


@pytest.mark.slow
def test_two_train_processes_racing_for_one_directory(tmp_path):
    """Two real `certun train --out DIR` at once: one exits 0, the other 2 with one line."""
    out = tmp_path / "led"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "certun.cli", "train", "--dataset", "digits_3v8", "--out",
           str(out)]
    procs = [subprocess.Popen(cmd + ["--seed", str(s)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for s in (0, 1)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    err = [e for c, e in results if c == 2][0].strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "not empty" in err[0]
    assert Ledger.open(out).generation == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["led"]
