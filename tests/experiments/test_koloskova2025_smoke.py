"""experiments/koloskova2025: the summary's acceptance logic (default tier) and a --fast run (slow).

The default-tier checks feed :func:`summarize` hand-made per-seed results whose acceptance
figures are known (ratios, crossover, near-chance flags, the frozen head's gap); the slow test
runs ``--fast`` end to end and checks properties of the results.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "experiments" / "koloskova2025" / "run.py"


@pytest.fixture(scope="module")
def run_mod():
    spec = importlib.util.spec_from_file_location("certun_experiments_koloskova2025_run", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _method(acc, grads, noisy=0.1, reached=True):
    return {"test_acc": acc, "test_acc_noisy": noisy, "grads": grads, "reached_target": reached,
            "near_chance_noisy": noisy <= 0.15}


def _seed(retrain_grads, gc, mc):
    eps = {}
    for e, (g1, g2) in zip(("1", "20"), zip(gc, mc, strict=True), strict=True):
        eps[e] = {"gradient_clipping": _method(0.9, g1), "model_clipping": _method(0.9, g2),
                  "output_perturbation": _method(0.9, 5000),
                  "dp_sgd_group": _method(0.9, 5000, noisy=0.5)}
    return {"classes": 10, "retrain": {"grads_to_target": retrain_grads, "test_acc": 0.92},
            "target_val_acc": 0.89, "methods": eps,
            "frozen_head": {"test_acc": 0.86, "test_acc_noiseless_head": 0.87, "gap": 0.01,
                            "status": "holds"}}


def test_summary_acceptance_logic(run_mod):
    seeds = [_seed(1000, (1200, 400), (1500, 600)), _seed(1000, (1100, 500), (900, 700))]
    s = run_mod.summarize(seeds, (1.0, 20.0))
    e1 = s["per_epsilon"]["1"]
    # gradient clipping: ratios 1.2 and 1.1 (mean 1.15); model clipping 1.5 and 0.9 (1.2)
    assert e1["chosen_variant"] == "gradient_clipping"
    assert e1["gradient_clipping"]["grads_ratio"]["mean"] == pytest.approx(1.15)
    assert e1["gradient_clipping"]["grads_ratio"]["std"] == pytest.approx(0.0707107, rel=1e-5)
    acc = s["acceptance"]
    assert acc["eps1_holds"] is True and acc["eps1_variant"] == "gradient_clipping"
    # at 20 both variants need at most half of retraining: the crossover is 20
    assert acc["crossover_epsilon"] == 20.0
    assert acc["frozen_head_holds"] is True
    assert acc["frozen_head_gap"]["mean"] == pytest.approx(0.01)
    # every noisy release at 0.1 accuracy (chance 0.1 + 0.05) is flagged; dp-sgd's 0.5 is not
    assert any("gradient_clipping" in f and "near chance" in f for f in s["flags"])
    assert not any("dp_sgd_group" in f for f in s["flags"])
    # no crossover, and a ratio above 1.25: the acceptance reports that it does not hold
    seeds = [_seed(1000, (1400, 900), (1500, 900))]
    acc = run_mod.summarize(seeds, (1.0, 20.0))["acceptance"]
    assert acc["eps1_holds"] is False and acc["crossover_epsilon"] == "none up to 20"
    # the variant chosen on the tuning seed is the one reported (not the cheaper mean)
    seeds = [_seed(1000, (1200, 400), (1500, 600)), _seed(1000, (1100, 500), (900, 700))]
    tuned = {"per_epsilon": {"1": {"chosen_variant": "model_clipping"},
                             "20": {"chosen_variant": "model_clipping"}}}
    acc = run_mod.summarize(seeds, (1.0, 20.0), tuned)["acceptance"]
    assert acc["eps1_variant"] == "model_clipping"
    assert acc["eps1_grads_ratio"]["mean"] == pytest.approx(1.2) and acc["eps1_holds"] is True
    assert run_mod.main(["--epsilons", "1,x", "--fast"]) == 2


def test_ratio_of_means_and_its_spread(run_mod):
    """The ratio of mean gradients, its delta-method error and bootstrap interval, vs numpy."""
    import numpy as np

    a = np.array([8000.0, 9000.0, 7000.0, 30000.0, 4500.0])
    b = np.array([8640.0, 8320.0, 8000.0, 25472.0, 4096.0])
    r = run_mod.ratio_of_means(list(a), list(b), resamples=2000, seed=3)
    R = a.sum() / b.sum()
    assert r["value"] == pytest.approx(R, rel=1e-12)
    # the delta method written as the variance expansion of mean(a)/mean(b)
    C = np.cov(a, b, ddof=1)
    ma, mb, n = a.mean(), b.mean(), a.size
    var = (C[0, 0] / mb**2 - 2 * ma * C[0, 1] / mb**3 + ma**2 * C[1, 1] / mb**4) / n
    assert r["se"] == pytest.approx(np.sqrt(var), rel=1e-10)
    # the bootstrap interval: an explicit loop over the same resamples
    idx = np.random.default_rng(3).integers(0, n, (2000, n))
    boot = [a[i].mean() / b[i].mean() for i in idx]
    assert r["ci95_bootstrap"] == pytest.approx(list(np.percentile(boot, [2.5, 97.5])))
    assert r["ci95_bootstrap"][0] < R < r["ci95_bootstrap"][1]
    assert run_mod.ratio_of_means([5.0], [4.0])["se"] is None
    # in the summary: beside the mean of per-seed ratios; the decision uses the latter
    seeds = [_seed(1000, (1200, 400), (1500, 600)), _seed(3000, (1100, 500), (900, 700))]
    acc = run_mod.summarize(seeds, (1.0, 20.0))["acceptance"]
    assert acc["eps1_grads_ratio_of_means"]["value"] == pytest.approx(2300 / 4000)
    assert acc["eps1_grads_ratio_per_seed"] == pytest.approx([1.2, 1100 / 3000])
    assert acc["eps1_grads_ratio"]["mean"] == pytest.approx((1.2 + 1100 / 3000) / 2)


def test_langevin_head_is_chosen_on_validation(run_mod):
    """Per epsilon the best validation accuracy wins (ties: fewer gradients); refused: None."""
    def run(ci, acc, grads):
        return {"candidate": ci, "val_acc": acc, "grads": grads, "K": grads // 10}

    head = {"per_epsilon": {
        "1": {"candidates": [run(0, 0.80, 500), run(1, 0.85, 900), run(2, 0.85, 700)]},
        "20": {"candidates": [run(0, 0.80, 500), {"candidate": 1, "status": "fails"}]},
        "0.1": {"candidates": [{"candidate": 0, "status": "fails"}]}}}
    got = run_mod.tune_langevin(head)
    assert got["1"]["candidate"] == 2 and got["1"]["val_acc"] == [0.80, 0.85, 0.85]
    assert got["20"]["candidate"] == 0 and got["20"]["val_acc"] == [0.80, None]
    assert got["0.1"]["candidate"] is None
    assert run_mod.cfg.LANGEVIN_CANDIDATES[0] == {"lam": 0.01, "sigma": 0.03}


def test_cli_usage_errors(run_mod, capsys, tmp_path):
    assert run_mod.main(["--dataset", "cifar10", "--out", str(tmp_path)]) == 2
    assert "cifar-path" in capsys.readouterr().err
    assert run_mod.main(["--dataset", "cifar10", "--cifar-path", str(tmp_path), "--json"]) == 2
    out = capsys.readouterr()
    assert "data_batch_1" in out.err and out.out == ""
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_fast_run(run_mod, tmp_path):
    assert run_mod.main(["--fast", "--quiet", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "koloskova2025.png").stat().st_size > 1000
    for k in ("config", "seed", "versions", "git", "timestamps", "summary", "per_seed"):
        assert k in res
    r = res["per_seed"][0]
    # training accuracy never enters the results
    assert "train_acc" not in json.dumps(res)
    for e, row in r["methods"].items():
        for name, m in row.items():
            if name == "zhang_2C":
                assert m["status"] == "holds" and m["epsilon_certified"] <= float(e) * (1 + 1e-9)
                continue
            if name == "dp_sgd_group":
                assert m["dpsgd_epsilon"] <= float(e) + 1e-9
                assert m["group_size"] == r["forget"]
                continue
            cert = m["certificate"]
            assert cert["status"] == "holds" and cert["epsilon"] <= float(e) + 1e-9
            assert cert["removed"] == r["forget"]
            assert m["grads"] == m["grads_noisy"] + m["grads_finetune"]
    assert r["frozen_head"]["status"] == "holds"
    # the Langevin head of each epsilon is the candidate chosen on the tuning seed
    for e, v in res["tuning"]["langevin"].items():
        if v["candidate"] is not None:
            assert v["val_acc"][v["candidate"]] == max(a for a in v["val_acc"] if a is not None)
            assert r["langevin_head"]["per_epsilon"][e]["candidate"] == v["candidate"]
    for e, m in r["langevin_head"]["per_epsilon"].items():
        assert m["status"] == "holds" and m["epsilon"] <= float(e) + 1e-9


def _fake_cifar(d: Path, rows: int = 40) -> tuple:
    """CIFAR-10's python-pickle layout (``data_batch_1..5``, ``test_batch``), random pixels."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (rows, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, rows)]
        (d / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
        batches[name] = (data, labels)
    return batches


def test_cifar_loader_reads_the_pickle_batches(run_mod, tmp_path):
    """Rows in file order, pixels to [-0.5, 0.5] then unit rows, labels as class ids."""
    import numpy as np

    b = _fake_cifar(tmp_path)
    Xtr, ytr, Xte, yte = run_mod.load_data("cifar10", str(tmp_path), fast=False)
    assert Xtr.shape == (200, 3072) and Xte.shape == (40, 3072)
    np.testing.assert_array_equal(ytr, np.concatenate([b[f"data_batch_{i}"][1]
                                                       for i in range(1, 6)]))
    np.testing.assert_array_equal(yte, b["test_batch"][1])
    raw = b["data_batch_3"][0][5] / 255.0 - 0.5
    np.testing.assert_allclose(Xtr[85], raw / np.linalg.norm(raw), rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(Xte, axis=1), 1.0, rtol=1e-12)


@pytest.mark.slow
def test_fast_run_on_cifar_format_files(run_mod, tmp_path):
    """The whole --fast run from CIFAR-10 files the user points to (random pixels here)."""
    data = tmp_path / "cifar"
    data.mkdir()
    _fake_cifar(data, rows=120)
    out = tmp_path / "out"
    assert run_mod.main(["--dataset", "cifar10", "--cifar-path", str(data), "--fast", "--quiet",
                         "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["dataset"] == "cifar10" and res["per_seed"][0]["classes"] == 10


def test_cifar_loader_refuses_corrupted_and_code_carrying_files(run_mod, tmp_path):
    """A corrupted batch and a pickle that names a function: one clear error, nothing run."""
    import os
    import pickle

    _fake_cifar(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(b"garbage")
    with pytest.raises(run_mod.UsageError, match="data_batch_2: not a CIFAR-10"):
        run_mod.load_data("cifar10", str(tmp_path), fast=False)

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    (tmp_path / "data_batch_2").write_bytes(pickle.dumps({b"data": Payload(), b"labels": [0]}))
    with pytest.raises(run_mod.UsageError, match="is not allowed in a CIFAR batch"):
        run_mod.load_data("cifar10", str(tmp_path), fast=False)
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps({b"data": [[0] * 5], b"labels": [0]}))
    with pytest.raises(run_mod.UsageError, match=r"shape \(rows, 3072\)"):
        run_mod.load_data("cifar10", str(tmp_path), fast=False)
