"""certun.provenance: what every results.json records, and JSON-ready values."""

import json
import subprocess

import jax.numpy as jnp
import numpy as np
import pytest

from certun import provenance


def test_json_ready_converts_scalars_and_non_finite_values():
    x = {1: np.float64(2.5), "a": [np.int64(3), (jnp.asarray(1.5), None)], "b": float("nan"),
         "c": np.inf, "d": True, "e": object}
    out = provenance.json_ready(x)
    assert out == {"1": 2.5, "a": [3, [1.5, None]], "b": None, "c": None, "d": True,
                   "e": str(object)}
    assert type(out["a"][0]) is int and type(out["1"]) is float
    json.dumps(out, allow_nan=False)  # raises if a non-finite float were left


def test_write_results_is_atomic_and_standard_json(tmp_path):
    p = tmp_path / "r.json"
    provenance.write_results(p, {"a": float("nan"), "b": [1, 2.5], "c": float("inf")})
    assert json.loads(p.read_text()) == {"a": None, "b": [1, 2.5], "c": None}
    assert [q.name for q in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_package_versions_names_certun_python_and_every_distribution():
    import certun

    v = provenance.package_versions()
    assert v["certun"] == certun.__version__ and v["jax"] is not None
    assert set(v) == {"certun", "python", *provenance.DISTRIBUTIONS}


def test_git_info_matches_git_and_is_none_outside_a_checkout(tmp_path):
    info = provenance.git_info(tmp_path)  # not a checkout
    assert info == {"commit": None, "dirty": None}
    try:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, capture_output=True)
        (tmp_path / "f").write_text("x")
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
        subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True, env=env)
        subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "m"], check=True, env=env)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    sha = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert provenance.git_info(tmp_path) == {"commit": sha, "dirty": False}
    (tmp_path / "f").write_text("y")
    assert provenance.git_info(tmp_path) == {"commit": sha, "dirty": True}


def test_utc_now_is_iso_utc_to_the_second():
    t = provenance.utc_now()
    assert t.endswith("+00:00") and len(t) == len("2026-11-23T22:31:42+00:00")
