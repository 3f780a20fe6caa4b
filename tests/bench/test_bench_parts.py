"""certun.bench's parts and the metrics it added to certun.audits, against direct computations."""

import numpy as np
import pytest
import scipy.stats

from certun import ValidationError
from certun.audits import distance, lira, utility
from certun.bench import ForgetSpec, forget, load_task
from certun.bench.cache import Cache, config_hash


def test_forget_selectors_against_brute_force():
    """random: distinct seeded rows; class: exactly the class; nearest: brute-force neighbours."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = rng.integers(0, 4, size=50)
    r = forget.select_forget(ForgetSpec("random", 7, seed=2), X, y)
    assert r.size == 7 and np.unique(r).size == 7
    np.testing.assert_array_equal(r, forget.select_forget(ForgetSpec("random", 7, seed=2), X, y))
    c = forget.select_forget(ForgetSpec("class", None, 2), X, y)
    np.testing.assert_array_equal(c, np.flatnonzero(y == 2))
    c3 = forget.select_forget(ForgetSpec("class", 3, 2, seed=1), X, y)
    assert c3.size == 3 and set(c3) <= set(np.flatnonzero(y == 2))
    nn = forget.select_forget(ForgetSpec("nearest", 5, target=11), X, y)
    d = [np.sum((X[i] - X[11]) ** 2) for i in range(50)]
    np.testing.assert_array_equal(nn, np.sort(np.argsort(d)[:5]))
    assert 11 in nn
    with pytest.raises(ValidationError, match="label"):
        forget.select_forget(ForgetSpec("class", None, 9), X, y)
    with pytest.raises(ValidationError, match="size"):
        forget.select_forget(ForgetSpec("random", 49), X, y)
    assert forget.parse_forget("nearest:20@5") == ForgetSpec("nearest", 20, target=5)
    assert forget.parse_forget("class:-1:4", seed=3) == ForgetSpec("class", 4, -1.0, seed=3)


def test_tasks_and_local_npz(tmp_path):
    """Bundled tasks load with their loss; an npz task is read and its rows checked."""
    t = load_task("diabetes")
    assert t.kind == "regression" and t.loss == "squared" and t.label_bound > 0
    d = load_task("digits")
    assert d.kind == "multiclass" and d.num_classes == 10
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 4))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.where(rng.random(30) > 0.5, 1.0, -1.0)
    np.savez(tmp_path / "d.npz", X_train=X[:20], y_train=y[:20], X_test=X[20:], y_test=y[20:])
    t = load_task(f"npz:{tmp_path / 'd.npz'}", lam=0.3)
    assert t.kind == "binary" and t.n_train == 20 and t.lam == 0.3
    np.savez(tmp_path / "big.npz", X_train=2 * X[:20], y_train=y[:20], X_test=X[20:],
             y_test=y[20:])
    with pytest.raises(ValidationError, match="normalize_rows"):
        load_task(f"npz:{tmp_path / 'big.npz'}")
    with pytest.raises(ValidationError, match="task"):
        load_task("nope")


def test_cache_integrity(tmp_path):
    """Hits return the arrays; corrupted bytes, a lost manifest or another config rebuild."""
    c = Cache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(5.0), "s": np.asarray("text")}

    cfg = {"x": 1, "y": [1, 2]}
    a = c.get_or_build("k", cfg, build)
    b = c.get_or_build("k", {"y": [1, 2], "x": 1}, build)  # key order does not matter
    assert len(calls) == 1 and c.hits == 1 and str(b["s"]) == "text"
    np.testing.assert_array_equal(a["a"], b["a"])
    npz, man, h = c.paths("k", cfg)
    assert h == config_hash({"kind": "k", "config": cfg}) and npz.name.startswith(h)
    raw = bytearray(npz.read_bytes())
    raw[-10] ^= 0xFF  # one flipped byte
    npz.write_bytes(bytes(raw))
    c.get_or_build("k", cfg, build)
    assert len(calls) == 2 and len(c.rebuilt) == 1
    man.unlink()
    c.get_or_build("k", cfg, build)
    assert len(calls) == 3
    c.get_or_build("k", {"x": 2, "y": [1, 2]}, build)
    assert len(calls) == 4
    off = Cache(tmp_path, enabled=False)
    off.get_or_build("k", cfg, build)
    assert len(calls) == 5


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    """$CERTUN_BENCH_CACHE wins over the user cache directory."""
    monkeypatch.setenv("CERTUN_BENCH_CACHE", str(tmp_path / "here"))
    assert Cache().root == tmp_path / "here"


def test_mean_ci_accuracy_and_relative_cost():
    """mean_ci is the Student-t interval; accuracy reads scores, 2-column and K-column logits."""
    v = np.array([1.0, 2.0, 4.0, 7.0])
    iv = utility.mean_ci(v, 0.1)
    lo, hi = scipy.stats.t.interval(0.9, 3, loc=v.mean(), scale=scipy.stats.sem(v))
    assert iv.value == pytest.approx(3.5) and iv.lower == pytest.approx(lo)
    assert iv.upper == pytest.approx(hi) and iv.n == 4
    assert utility.mean_ci([2.0]) == (2.0, 2.0, 2.0, 1)
    s = np.array([0.3, -0.1, 2.0, -4.0])
    yb = np.array([1.0, 1.0, -1.0, -1.0])
    assert utility.accuracy(s, yb) == 0.5
    assert utility.accuracy(np.stack([np.zeros(4), s], 1), yb) == 0.5
    z = np.array([[0.0, 1.0, 0.5], [2.0, 1.0, 0.0]])
    assert utility.accuracy(z, np.array([1, 2])) == 0.5
    assert utility.neg_rmse([1.0, 3.0], [1.0, 1.0]) == pytest.approx(-np.sqrt(2.0))
    assert utility.relative_cost(2.0, 4.0) == 0.5 and np.isnan(utility.relative_cost(1.0, 0.0))
    with pytest.raises(ValidationError, match="labels"):
        utility.accuracy(s, yb[:3])


def test_percentile_ci_and_ulira_audit():
    """percentile_ci brackets np.percentile; U-LiRA is ~0.5 for one law and 1 when separated."""
    rng = np.random.default_rng(0)
    v = rng.exponential(size=400)
    est, lo, hi = distance.percentile_ci(v, 95.0, num_bootstrap=500)
    assert est == pytest.approx(np.percentile(v, 95)) and lo < est < hi
    same = lira.ulira_audit(rng.normal(size=(40, 30)), rng.normal(size=(40, 30)))
    assert same.lower <= 0.5 <= same.upper and same.shadow == 20 and same.target == 20
    far = lira.ulira_audit(rng.normal(size=(16, 5)) + 10, rng.normal(size=(16, 5)))
    assert far.auc == 1.0 and far.per_example.shape == (5,)
    with pytest.raises(ValidationError, match="at least 8"):
        lira.ulira_audit(np.zeros((4, 3)), np.zeros((4, 3)))


def test_statistic_is_the_klom_margin():
    """The runner's host-side statistic equals certun.audits.distance.margins (and y * score)."""
    from certun.bench import runner

    rng = np.random.default_rng(3)
    z = rng.normal(size=(7, 4)) * 3
    y = rng.integers(0, 4, size=7)
    task = load_task("synthetic")._replace(kind="multiclass")
    np.testing.assert_allclose(runner._statistic(task, z, y), distance.margins(z, y), rtol=1e-12)
    s = rng.normal(size=7)
    yb = np.where(rng.random(7) > 0.5, 1.0, -1.0)
    zb = np.stack([np.zeros(7), s], 1)
    np.testing.assert_allclose(runner._statistic(task._replace(kind="binary"), zb, yb), yb * s,
                               rtol=1e-12)


def test_klom_null_covers_same_law_and_excludes_a_shift():
    """KLoM between two halves of one law lies in klom_null's range; a shifted ensemble not."""
    rng = np.random.default_rng(5)
    pool = rng.normal(size=(40, 60))
    splits = {"all": np.arange(60)}
    med, lo, hi = distance.klom_null(pool, 20, splits, num_partitions=100)["all"]
    assert lo <= med <= hi
    fresh = float(np.percentile(distance.klom(rng.normal(size=(20, 60)), pool[:20]), 95))
    assert lo <= fresh <= hi
    shifted = float(np.percentile(distance.klom(rng.normal(size=(20, 60)) + 3, pool[:20]), 95))
    assert shifted > hi


def test_deterministic_epsilon_lower_bound_is_the_closed_form_clopper_pearson(tmp_path):
    """A deterministic method that differs from retraining: TP = n, FP = 0 at n runs.

    The two-sided Clopper-Pearson ends at alpha / 2 per rate are closed-form there:
    TPR_lb = (alpha / 2)^(1/n), FPR_ub = 1 - (alpha / 2)^(1/n); the bound is
    log((TPR_lb - delta) / FPR_ub). No bound when one seed's model equals retraining;
    exact unlearning is 0; a regression task has no audit.
    """
    from certun.bench import BenchConfig, methods, runner

    task = load_task("synthetic")
    model = methods.get_method("newton_noiseless").build(task, 3)
    assert model.deterministic and model.audit is None
    cfg, F = BenchConfig(audit_runs=500), np.arange(3)
    ens = {"param_distance": np.array([0.3, 0.1])}
    got = runner._audit(model, "newton_noiseless", task, F, cfg, Cache(tmp_path), {}, ens)
    q = 0.025 ** (1.0 / 500)
    assert got["n"] == 500
    assert got["value"] == pytest.approx(np.log((q - 1e-5) / (1.0 - q)), rel=1e-9)
    none = runner._audit(model, "newton_noiseless", task, F, cfg, Cache(tmp_path), {},
                         {"param_distance": np.array([0.3, 0.0])})
    assert np.isnan(none["value"]) and none["reason"]
    exact = runner._audit(methods.get_method("sisa").build(task, 3), "sisa", task, F, cfg,
                          Cache(tmp_path), {}, ens)
    assert exact["value"] == 0.0 and "exact" in exact["reason"]
    reg = runner._audit(model, "newton_noiseless", load_task("diabetes"), F, cfg,
                        Cache(tmp_path), {}, ens)
    assert np.isnan(reg["value"]) and "binary" in reg["reason"]


def test_sisa_gradient_count_replays_its_refits():
    """SISA's count: 2 x rows x Newton iterations per refit slice (as exact retraining's).

    The replayed fits reproduce SISA's new checkpoints (so the iterations counted are those of
    the refit) and the rows summed equal SISA's own ``rows_refit`` (``certun.sisa.delete``).
    """
    import jax
    import jax.numpy as jnp

    from certun.bench import methods

    task = load_task("synthetic")
    F = np.array([5, 6])
    model = methods.get_method("sisa").build(task, F.size)
    u = model.unlearner
    st = u.init(task.X_train, task.y_train, jax.random.key(0), **model.init_kwargs)
    res = u.unlearn(st, F)
    got = model.grad_evals(res, task.n_train, F.size)
    S = res.state
    total, rows = 0.0, 0
    for s, start in res.diagnostics["refits"]:
        for r in range(start, model.hyperparameters["slices"]):
            mk = S.mask[s] * (S.slice_id[s] <= r)
            W0 = jnp.zeros_like(S.checkpoints[s, 0]) if r == 0 else S.checkpoints[s, r - 1]
            params, steps = methods._sisa_fit_steps(task.loss)(S.X[s], S.Y[s],
                                                               jnp.asarray(task.lam), mk, W0)
            np.testing.assert_allclose(params, S.checkpoints[s, r], atol=1e-10)
            total += 2.0 * float(mk.sum()) * int(steps)
            rows += int(mk.sum())
    assert rows == res.diagnostics["rows_refit"] and total > 0
    assert got == total


def test_network_post_processing_reads_only_the_released_model_and_retained_rows():
    """The noiseless fine-tuning after a certified network release is post-processing.

    Changing the forgotten rows (features and labels) leaves its output bit-identical;
    changing the mask does not; the output lies in the training ball ``||w|| <= C``.
    """
    import jax
    import jax.numpy as jnp

    from certun import nn
    from certun.bench import methods

    task = load_task("synthetic")
    net, cfg, labels = methods._net_parts(task)
    ft = methods._finetune_fn(net, cfg, 3)
    p = jax.tree.map(lambda a: 40.0 * a, net.init(jax.random.key(0), jnp.float64))  # "noisy"
    X = jnp.asarray(task.X_train)
    y = jnp.asarray(labels(task.y_train), jnp.int32)
    keep = jnp.ones(X.shape[0]).at[:5].set(0.0)
    a = ft(p, X, y, keep)
    b = ft(p, X.at[:5].set(3.0), y.at[:5].set(1 - y[:5]), keep)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)
    c = ft(p, X.at[:5].set(3.0), y.at[:5].set(1 - y[:5]), jnp.ones(X.shape[0]))
    assert any(not np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(c),
                                                        strict=True))
    assert nn.check_params_in_ball(a, cfg.radius)[0]
