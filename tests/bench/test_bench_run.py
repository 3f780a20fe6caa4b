"""certun bench end to end on a tiny task: ranks, sanity checks, outputs, cache, resume, CLI."""

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from certun import bench
from certun.bench import BenchConfig, Cache, ForgetSpec, runner
from certun.bench import methods as bench_methods
from certun.progress import progress_bar

DOCS = Path(__file__).resolve().parents[2] / "docs"

#: The reduced run of the default tier: the tiny synthetic task, N = 8, no epsilon audit.
SMALL = BenchConfig(task="synthetic", methods=("d2d", "newton_noiseless", "identity"),
                    forget=ForgetSpec("random", 6, seed=1), ensemble=8, audit_runs=0, attack="lr",
                    retain_eval=40, val_eval=40)


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """One cold run (empty cache) with a results directory, and its wall time."""
    root = tmp_path_factory.mktemp("bench")
    cache = Cache(root / "cache")
    t0 = time.perf_counter()
    rep = bench.run(SMALL, cache=cache, results_dir=root / "res")
    return rep, time.perf_counter() - t0, root


def _rec(rep, name):
    (r,) = [r for r in rep["methods"] if r["name"] == name]
    assert r["status"] == "ok", r
    return r


def test_newton_noiseless_is_near_retraining_but_uncertified(cold):
    """Newton without noise: distance to retraining ~0, no finite certified epsilon."""
    rep = cold[0]
    newton, ident = _rec(rep, "newton_noiseless"), _rec(rep, "identity")
    assert newton["metrics"]["param_distance"]["value"] < 2e-3 * ident["metrics"][
        "param_distance"]["value"]
    assert newton["metrics"]["epsilon_certified"]["status"] == "none"
    assert newton["metrics"]["epsilon_certified"]["value"] == float("inf")
    assert rep["ranking"]["epsilon_certified"][-2:] in (["newton_noiseless", "identity"],
                                                       ["identity", "newton_noiseless"])


def test_identity_distance_matches_scikit_learn(cold):
    """The distance of identity is ||w(D) - w(D minus F)|| of L2 logistic regression (sklearn)."""
    from sklearn.linear_model import LogisticRegression

    rep = cold[0]
    task = bench.load_task("synthetic")
    F = np.asarray(rep["forget"]["rows"])
    keep = np.setdiff1d(np.arange(task.n_train), F)

    def fit(X, y):  # mean-scale lam <-> C = 1 / (lam n), no intercept
        m = LogisticRegression(C=1.0 / (task.lam * len(y)), fit_intercept=False, tol=1e-12,
                               max_iter=10_000).fit(X, y)
        return m.coef_[0]

    ref = np.linalg.norm(fit(task.X_train, task.y_train) - fit(task.X_train[keep],
                                                                task.y_train[keep]))
    got = _rec(rep, "identity")["metrics"]["param_distance"]
    np.testing.assert_allclose(got["value"], ref, rtol=1e-5)
    assert got["lower"] == pytest.approx(got["value"]) == pytest.approx(got["upper"])


def test_identity_ranks_below_certified_and_exact(cold):
    """The identity method ranks below the certified method on distance and KLoM."""
    rep = cold[0]
    ident, cert = _rec(rep, "identity"), _rec(rep, "d2d")
    for key in ("param_distance", "prediction_distance", "klom_forget"):
        assert ident["ranks"][key] > cert["ranks"][key], key
        assert ident["metrics"][key]["value"] >= cert["metrics"][key]["value"], key
    # a deterministic method that differs from retraining: KLoM at its maximum, log(1 / floor)
    assert ident["metrics"]["klom_forget"]["value"] == pytest.approx(np.log(1e5))
    # Descent-to-Delete matches its oracle (its own noised retraining): on every split its KLoM
    # is not above the null range (KLoM between independent halves of the oracle models)
    for s in ("forget", "retain", "val"):
        g = cert["metrics"][f"klom_{s}"]
        assert g["value"] <= g["null"]["upper"], s
        assert ident["metrics"][f"klom_{s}"]["value"] > ident["metrics"][f"klom_{s}"]["null"][
            "upper"], s


def test_report_outputs_are_complete_and_self_contained(cold):
    """Markdown rows, results.json, a plot per metric with values, a page without URLs."""
    rep, _, root = cold
    md = bench.markdown(rep)
    for name in SMALL.methods:
        assert re.search(rf"^\| {name} \|", md, flags=re.M), name
    page = bench.write_results(rep, root / "out")
    html = page.read_text()
    assert "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") >= 10
    assert "jaxlib" in html and "fold_in(key(0)" in html
    saved = json.loads((root / "out" / "results.json").read_text())
    assert saved["ranking"] == rep["ranking"]
    assert {m.key for m in bench.METRICS} == set(saved["ranking"])
    assert (root / "out" / "plots" / "klom_forget.png").stat().st_size > 1000
    r = _rec(rep, "d2d")["metrics"]
    for key in ("test_accuracy", "klom_forget", "mia_auc", "ulira_auc", "param_distance"):
        assert r[key]["lower"] <= r[key]["value"] <= r[key]["upper"], key


def test_cache_reuse_and_resume(cold, monkeypatch):
    """A second run reads every ensemble from the cache (builds none); resume skips methods."""
    rep1, _, root = cold
    cache = Cache(root / "cache")

    def rebuilt(total, desc, *args, **kwargs):  # every ensemble and oracle build opens one
        assert not desc.endswith((": unlearn", ": oracle")), f"rebuilt from the cache: {desc}"
        return progress_bar(total, desc, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(runner, "progress_bar", rebuilt)
        rep2 = bench.run(SMALL, cache=cache)
    assert cache.misses == 0 and cache.hits == 2 * len(SMALL.methods)
    for a, b in zip(rep1["methods"], rep2["methods"], strict=True):
        assert a["metrics"]["klom_forget"] == b["metrics"]["klom_forget"]
    rep3 = bench.run(SMALL, cache=Cache(enabled=False), results_dir=root / "res", resume=True)
    assert all(r.get("resumed") for r in rep3["methods"])
    assert rep3["ranking"] == rep1["ranking"]


def test_cache_rebuilt_after_truncation_and_config_change(tmp_path):
    """A truncated entry and a changed configuration are rebuilt (one cheap method)."""
    cfg = SMALL._replace(methods=("identity",))
    cache = Cache(tmp_path)
    rep = bench.run(cfg, cache=cache)
    assert cache.misses == 2
    npz = sorted((tmp_path / "oracle").glob("*.npz"))
    assert len(npz) == 1
    npz[0].write_bytes(npz[0].read_bytes()[:100])  # truncated
    cache2 = Cache(tmp_path)
    rep2 = bench.run(cfg, cache=cache2)
    assert cache2.misses == 1 and cache2.hits == 1 and len(cache2.rebuilt) == 1
    assert rep2["methods"][0]["metrics"]["klom_val"] == rep["methods"][0]["metrics"]["klom_val"]
    cache3 = Cache(tmp_path)
    bench.run(cfg._replace(seed=3), cache=cache3)  # a new configuration: new entries
    assert cache3.misses == 2 and cache3.hits == 0 and not cache3.rebuilt


def test_docs_plugin_example_runs(tmp_path, monkeypatch, capsys):
    """The ten-line plug-in example of docs/bench.md runs and ranks the new method."""
    text = (DOCS / "bench.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", text, flags=re.S)
               if "bench.register" in c]
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 12
    monkeypatch.setenv("CERTUN_BENCH_CACHE", str(tmp_path))
    try:
        exec(compile(code, "docs/bench.md", "exec"), {})
        out = capsys.readouterr().out
        row = [ln for ln in out.splitlines() if ln.startswith("| my_refit |")]
        ident = [ln for ln in out.splitlines() if ln.startswith("| identity |")]
        assert row and ident
        # exact refitting of a deterministic model: KLoM exactly 0 on every split, ranked first
        assert len(re.findall(r"\| 0 \[0, 0\] \(#1\)", row[0])) >= 3
        assert "11.5" in ident[0]
    finally:
        bench_methods._REGISTRY.pop("my_refit", None)


def test_cli_json_module_function_plugin_and_errors(tmp_path, monkeypatch, capsys):
    """``certun bench --json`` with a module:function plug-in: one object; bad input: exit 2."""
    from certun.cli import main

    (tmp_path / "mymethods.py").write_text(
        "from certun.audits import baselines\n"
        "def shortcut(task):\n"
        "    return baselines.newton_shortcut(lam=task.lam)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["bench", "--task", "synthetic", "--method", "identity", "--method",
            "mymethods:shortcut", "--ensemble", "8", "--forget", "nearest:5@3",
            "--audit-runs", "0", "--no-plots", "--results", str(tmp_path / "r"),
            "--cache-dir", str(tmp_path / "c"), "--json"]
    try:
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.count("\n") == 1
        rep = json.loads(out)
        assert [r["name"] for r in rep["methods"]] == ["identity", "mymethods:shortcut"]
        assert rep["forget"]["kind"] == "nearest" and 3 in rep["forget"]["rows"]
        sc = rep["methods"][1]["metrics"]
        assert sc["param_distance"]["value"] < 1e-2 and sc["epsilon_certified"]["value"] is None
        assert (tmp_path / "r" / "index.html").exists()
    finally:
        bench_methods._REGISTRY.pop("mymethods:shortcut", None)
    for bad, arg in ((["--task", "nope"], "task"), (["--forget", "sideways:3"], "forget"),
                     (["--method", "no_such_method"], "method"),
                     (["--method", "no_such_module_xyz:f"], "method")):
        code = main(["bench", *bad, "--json", "--results", str(tmp_path / "x"),
                     "--cache-dir", str(tmp_path / "c")])
        err = capsys.readouterr()
        assert code == 2 and err.out == ""
        lines = err.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("certun bench: error: ") and arg in lines[0]


def test_bad_config_is_one_clear_error():
    """Argument checks name the argument."""
    from certun import ValidationError

    with pytest.raises(ValidationError, match="ensemble"):
        bench.run(SMALL._replace(ensemble=3))
    with pytest.raises(ValidationError, match="methods"):
        bench.run(SMALL._replace(methods=()))
    with pytest.raises(ValidationError, match="already registered"):
        bench.register("retrain", lambda task: None)


def test_ranking_directions():
    """rank: lower, higher, closest to 0.5 and closest to the oracle, NaN left out."""
    recs = [{"name": n, "status": "ok", "metrics": {
        "param_distance": {"value": d}, "test_accuracy": {"value": a},
        "mia_auc": {"value": u}, "forget_accuracy": {"value": f, "oracle": 0.8}}}
        for n, d, a, u, f in (("a", 0.3, 0.9, 0.9, 0.8), ("b", 0.1, 0.7, 0.45, 1.0),
                              ("c", float("nan"), 0.8, 0.55, 0.7))]
    r = runner.rank(recs)
    assert r["param_distance"] == ["b", "a"]
    assert r["test_accuracy"] == ["a", "c", "b"]
    assert r["mia_auc"] == ["b", "c", "a"]
    assert r["forget_accuracy"] == ["a", "c", "b"]
    assert recs[2]["ranks"]["param_distance"] is None
