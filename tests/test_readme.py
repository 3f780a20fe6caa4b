"""Every README example, run as a new user runs it (slow tier).

A fresh virtual environment gets certun from this checkout (``pip install ".[test]"``), then
``tools/readme_run.py --check`` runs each command of the README's console blocks in a
temporary directory and compares what it prints with what the README shows (timings and
the temporary directory normalised), and recounts the tests the README states.
``python3 tools/readme_run.py --write`` regenerates the README after a change.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("readme_run", ROOT / "tools" / "readme_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_normalisation_and_block_parsing():
    """Cheap: the runner parses console blocks and normalises only what varies."""
    rr = _tool()
    text = "x\n```console\n$ echo a\na\n$ certun demo\nlong\n```\n"
    (block,) = rr._BLOCK.findall(text)
    assert rr.commands(block) == ["echo a", "certun demo"]
    assert rr.normalise("took 28.5 ms and 1 s at /tmp/d/x\n", "/tmp/d") == \
        "took <TIME> and <TIME> at <DIR>/x"
    assert rr.normalise("accuracy 0.9222") == "accuracy 0.9222"  # numbers are compared
    readme = (ROOT / "README.md").read_text()
    assert len(rr._BLOCK.findall(readme)) >= 2 and rr._TESTS.search(readme)


@pytest.mark.slow
def test_readme_commands_print_what_the_readme_shows(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", f"{ROOT}[test]"], check=True,
                   timeout=1800, env=env)
    out = subprocess.run([str(py), str(ROOT / "tools" / "readme_run.py"), "--check",
                          "--python", str(py)], cwd=tmp_path, env=env, text=True,
                         capture_output=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
