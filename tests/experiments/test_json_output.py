"""``experiments/*/run.py --json``: one JSON object on stdout, the log on stderr, clean errors.

Every runner takes ``--json``. On success stdout holds exactly the ``results.json`` it wrote
(plus ``results_file``) and nothing else; a usage error exits 2 with nothing on stdout. The
success path runs the quickest smoke run (bertran2024); the others share the same wrapper,
which the structural test checks.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNERS = sorted(p.parent.name for p in (REPO / "experiments").glob("*/run.py"))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"certun_experiments_{name}_run_json",
                                                  REPO / "experiments" / name / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module", params=RUNNERS)
def runner(request):
    """(name, loaded run.py module) for each experiment."""
    return request.param, _load(request.param)


def test_every_runner_has_json_and_the_shared_wrapper(runner):
    """``--json`` parses, and ``main`` redirects the log and prints results.json once."""
    name, mod = runner
    assert len(RUNNERS) >= 6
    assert mod.build_parser().parse_args(["--json"]).json is True
    src = inspect.getsource(mod.main)
    assert "run_with_json(args.json" in src, name  # the shared wrapper in certun.commands._args


@pytest.mark.parametrize("argv", [["--seed", "-1"], ["--no-such-option"]])
def test_usage_error_with_json_prints_nothing_on_stdout(runner, argv, capsys, tmp_path):
    """Exit status 2, a message on stderr, an empty stdout (``--seed`` where a runner has it)."""
    name, mod = runner
    has_seed = "--seed" in mod.build_parser()._option_string_actions
    if argv[0] == "--seed" and not has_seed:
        pytest.skip(f"{name} has no --seed")
    try:
        code = mod.main([*argv, "--json", "--smoke", "--out", str(tmp_path / "out")])
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    assert code == 2 and out.out == "" and "error" in out.err, (name, out)
    assert len(out.err.strip().splitlines()) == 1, (name, out.err)  # one line, no usage block
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.slow  # every experiment's smoke test writes its JSON; this checks stdout only
def test_smoke_run_with_json_prints_exactly_results_json(capsys, tmp_path):
    """bertran2024 --smoke --json: stdout is one JSON object equal to the file it wrote."""
    mod = _load("bertran2024")
    assert mod.main(["--smoke", "--json", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out.count("\n") == 1, out.out[:500]  # one line
    printed = json.loads(out.out)
    written = json.loads((tmp_path / "results.json").read_text())
    assert printed.pop("results_file") == str(tmp_path / "results.json")
    assert printed == written
    assert "bertran2024" in out.err  # the log went to stderr
