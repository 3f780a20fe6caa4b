"""The issue's sanity checks of certun bench on digits 3-vs-8 (slow tier: minutes)."""

import pytest

from certun import bench
from certun.bench import BenchConfig, Cache, ForgetSpec

pytestmark = pytest.mark.slow


def _ok(rep, name):
    (r,) = [r for r in rep["methods"] if r["name"] == name]
    assert r["status"] == "ok", r
    return r["metrics"]


def test_exact_retraining_within_an_independently_seeded_ensemble(tmp_path):
    """Exact retraining's KLoM and two-version AUC lie in another seed's intervals."""
    cfg = BenchConfig(task="digits_3v8", methods=("retrain",), ensemble=16, audit_runs=0)
    a = _ok(bench.run(cfg, cache=Cache(tmp_path)), "retrain")
    b = _ok(bench.run(cfg._replace(seed=5), cache=Cache(tmp_path)), "retrain")
    # KLoM: inside the range of the statistic between two independently seeded retraining
    # ensembles of the other run (random halves of its 2N oracle models), every split
    for key in ("klom_forget", "klom_retain", "klom_val"):
        nb = b[key]["null"]
        assert nb["lower"] <= a[key]["value"] <= nb["upper"], (key, a[key], nb)
    # the AUCs: inside the other run's intervals (bootstrap over its seeds / models)
    for key in ("mia_auc", "ulira_auc"):
        assert b[key]["lower"] <= a[key]["value"] <= b[key]["upper"], (key, a[key], b[key])


def test_private_release_hides_the_deletion_from_two_versions(tmp_path):
    """At 50 target seeds x 20 members (1000 + 1000 rows) the release's AUC upper bound <= 0.55.

    Exact retraining under the same attack and trial count is far above 0.5: the attack has
    the power to see a deletion, and the release's noise takes it away.
    """
    cfg = BenchConfig(task="digits_3v8", methods=("release", "retrain"), ensemble=100,
                      forget=ForgetSpec("random", 20, seed=0), audit_runs=0,
                      retain_eval=50, val_eval=50)
    rep = bench.run(cfg, cache=Cache(tmp_path))
    rel, ret = _ok(rep, "release")["mia_auc"], _ok(rep, "retrain")["mia_auc"]
    assert rel["n"] == 2000 and ret["n"] == 2000
    assert rel["upper"] <= 0.55, rel
    assert ret["lower"] >= 0.6, ret


def test_identity_ranks_below_every_certified_method(tmp_path):
    """The default run (``certun bench --task digits_3v8``): the acceptance sentences.

    * ``identity`` (the original model, unchanged) ranks below **every** certified method --
      the convex ones and the network ones (``zhang``, ``koloskova``, whose releases are
      followed by noiseless fine-tuning on the retained rows) -- on parameter and prediction
      distance to retraining and on KLoM (every split);
    * ``identity_net`` (the original network) is further from retraining than ``zhang`` and
      ``koloskova`` on both coupled distances (same training key); on KLoM it lies inside the
      network oracle's null range at this forget set, like the network methods (whose KLoM
      against their certificate's reference is inside it too): KLoM cannot order them;
    * every certified mechanism has an empirical epsilon lower bound, not above its certified
      epsilon; every metric ranks at least ten methods.
    """
    rep = bench.run(BenchConfig(task="digits_3v8"), cache=Cache(tmp_path))
    by = {r["name"]: r for r in rep["methods"]}
    ident = _ok(rep, "identity")
    certified = [r for r in rep["methods"] if r["family"] == "certified"]
    assert {r["name"] for r in certified} == {"guo", "sekhari", "d2d", "langevin", "zhang",
                                              "koloskova", "release"}
    keys = ("param_distance", "prediction_distance", "klom_forget", "klom_retain", "klom_val")
    for r in certified:
        assert r["status"] == "ok", r
        for key in keys:
            assert r["metrics"][key]["value"] < ident[key]["value"], (r["name"], key)
            assert r["ranks"][key] < by["identity"]["ranks"][key], (r["name"], key)
        lb = r["metrics"]["epsilon_lower"]
        assert lb["n"] >= 200 and 0.0 <= lb["value"] <= r["metrics"]["epsilon_certified"][
            "value"], (r["name"], lb)
    inet = _ok(rep, "identity_net")
    for name in ("zhang", "koloskova"):
        z = _ok(rep, name)
        for key in ("param_distance", "prediction_distance"):
            assert z[key]["value"] < inet[key]["value"], (name, key)
        for s in ("forget", "retain", "val"):
            assert z[f"klom_{s}"]["value"] <= z[f"klom_{s}"]["null"]["upper"], (name, s)
    assert inet["klom_forget"]["value"] <= inet["klom_forget"]["null"]["upper"]
    # Newton without noise: near-zero distance, no finite certificate, a large audited bound
    newton = _ok(rep, "newton_noiseless")
    assert newton["param_distance"]["value"] < 1e-3 * ident["param_distance"]["value"]
    assert newton["epsilon_certified"]["status"] == "none"
    assert newton["epsilon_lower"]["value"] > 6.0
    assert _ok(rep, "sisa")["grad_evals_relative"]["value"] > 0
    for key, ranked in rep["ranking"].items():
        assert len(ranked) >= 10, (key, ranked)
