"""Flax models as pure functions, the projected Adam training loop and the ball's rounding bound."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun._tree import tree_norm
from certun.data import load_digits
from certun.nn import (
    TrainConfig,
    check_params_in_ball,
    cnn,
    mlp,
    num_params,
    objective,
    project_ball,
    radius_bound,
    train,
)
from certun.nn.objective import cross_entropy, minibatch_objective, sample_retained
from certun.nn.train import unit_roundoff


@pytest.fixture(scope="module")
def small():
    ds = load_digits()
    return ds.X_train[:150], ds.y_train[:150]


def test_paper_mlp_has_26506_parameters():
    """784-32-32-10: 26,506 parameters, counted from the authors' model.py.

    Source: docs/bibliography.md §4.5.
    """
    net = mlp(784, (32, 32), 10, "relu")
    shapes = jax.eval_shape(net.init, jax.random.key(0))
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == 26506
    assert net.name == "mlp-784-32-32-10-relu" and not net.smooth
    assert mlp(64, (8,), 10, "softplus").smooth


@pytest.mark.parametrize("shape", [(8, 8), pytest.param((28, 28), marks=pytest.mark.slow)])
def test_cnn_shapes_and_purity(shape):
    net = cnn(shape, (4, 8), 10, "tanh")
    p = net.init(jax.random.key(1))
    X = jax.random.normal(jax.random.key(2), (3, shape[0] * shape[1]))
    out = net.apply(p, X)
    assert out.shape == (3, 10)
    # pure: same params and inputs, same outputs, jitted or not
    assert np.allclose(jax.jit(net.apply)(p, X), out, atol=1e-5)
    dense = 8 * (shape[0] // 4) * (shape[1] // 4)
    assert num_params(p) == (9 * 4 + 4) + (9 * 4 * 8 + 8) + (dense * 10 + 10)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="activation"):
        mlp(64, (8,), 10, "sigmoidish")
    with pytest.raises(ValueError, match="widths"):
        mlp(64, (0,), 10)
    with pytest.raises(ValueError, match="divisible by 4"):
        cnn((10, 10))
    with pytest.raises(ValueError, match="input_scale"):
        mlp(64, (8,), 10, input_scale=-1.0)
    with pytest.raises(ValueError, match="radius"):
        TrainConfig(radius=0.0)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


def test_project_ball_exact(rng):
    p = {"a": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=5))}
    nrm = float(tree_norm(p))
    inside = project_ball(p, 2 * nrm)
    assert all(np.array_equal(inside[k], p[k]) for k in p)
    out = project_ball(p, 0.5 * nrm)
    assert float(tree_norm(out)) == pytest.approx(0.5 * nrm, rel=1e-14)
    assert np.allclose(out["a"], 0.5 * p["a"], rtol=1e-14)


def test_radius_bound_and_check():
    assert radius_bound(10.0, 100, np.float64) == pytest.approx(
        10.0 * (1 + 104 * unit_roundoff(np.float64) / (1 - 104 * unit_roundoff(np.float64))),
        rel=1e-15)
    assert radius_bound(10.0, 100, np.float32) > radius_bound(10.0, 100, np.float64) > 10.0
    # float32 projections of many random vectors never exceed the float32 bound
    for s in range(20):
        v = {"w": jax.random.normal(jax.random.key(s), (500,), jnp.float32) * 3.0}
        ok, nrm, bound = check_params_in_ball(project_ball(v, 1.0), 1.0)
        assert ok and nrm <= bound
    ok, _, _ = check_params_in_ball({"w": jnp.ones(4) * 0.6}, 1.0)  # norm 1.2 > 1
    assert not ok


def test_train_projects_and_is_reproducible(small):
    X, y = small
    net = mlp(64, (8,), 10, "tanh", input_scale=8.0)
    cfg = TrainConfig(epochs=6, batch_size=32, learning_rate=1e-2, weight_decay=1e-3,
                      radius=1.5, log_every=2, dtype="float64")
    seen = []
    r1 = train(net, X, y, jax.random.key(0), cfg, progress=lambda e, loss: seen.append((e, loss)))
    r2 = train(net, X, y, jax.random.key(0), cfg)
    assert [e for e, _ in seen] == [2, 4, 6]
    assert r1.losses.shape == (6,) and np.all(np.isfinite(r1.losses))
    for a, b in zip(jax.tree.leaves(r1.params), jax.tree.leaves(r2.params), strict=True):
        assert np.array_equal(a, b)  # same key, same model
    ok, nrm, bound = check_params_in_ball(r1.params, cfg.radius)
    assert ok and nrm <= bound and nrm == pytest.approx(1.5, rel=1e-6)  # the constraint binds
    # the initialisation depends on the key only (retraining on a subset starts from it too)
    p0 = net.init(jax.random.fold_in(jax.random.key(0), 0), jnp.float64)
    for a, b in zip(jax.tree.leaves(r1.init_params), jax.tree.leaves(p0), strict=True):
        assert np.array_equal(a, b)
    # the reported gradient norm is that of the full objective at the result
    g = jax.grad(objective(net, cfg.weight_decay))(r1.params, jnp.asarray(X), jnp.asarray(y))
    assert r1.grad_norm == pytest.approx(float(tree_norm(g)), rel=1e-10)


def test_train_decreases_the_objective(small):
    X, y = small
    net = mlp(64, (8,), 10, "tanh", input_scale=8.0)
    cfg = TrainConfig(epochs=40, batch_size=None, learning_rate=1e-2, weight_decay=1e-3,
                      radius=20.0, log_every=40, dtype="float64")
    r = train(net, X, y, jax.random.key(1), cfg)
    F = objective(net, cfg.weight_decay)
    f0 = float(F(r.init_params, jnp.asarray(X), jnp.asarray(y)))
    f1 = float(F(r.params, jnp.asarray(X), jnp.asarray(y)))
    assert f1 < 0.5 * f0
    assert r.losses[-1] < r.losses[0]


def test_train_rejects_bad_data(small):
    X, y = small
    net = mlp(64, (8,), 10)
    cfg = TrainConfig(epochs=1)
    Xb = X.copy()
    Xb[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train(net, Xb, y, jax.random.key(0), cfg)
    with pytest.raises(ValueError, match="class ids"):
        train(net, X, y + 10, jax.random.key(0), cfg)
    with pytest.raises(ValueError, match="input_dim"):
        train(net, X[:, :10], y, jax.random.key(0), cfg)
    with pytest.raises(ValueError, match="mismatched"):
        train(net, X, y[:-1], jax.random.key(0), cfg)


def test_masked_objective_and_minibatch_sampling(small):
    X, y = small
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    net = mlp(64, (8,), 10, "tanh")
    p = net.init(jax.random.key(0), jnp.float64)
    mask = jnp.asarray((np.arange(150) >= 50).astype(np.float64))
    F = objective(net, 0.1)
    # the masked objective equals the objective on the kept rows, jitted and eager
    ref = float(objective(net, 0.1)(p, Xj[50:], yj[50:]))
    assert float(jax.jit(F)(p, Xj, yj, mask)) == pytest.approx(ref, rel=1e-13)
    with jax.disable_jit():
        assert float(F(p, Xj, yj, mask)) == pytest.approx(ref, rel=1e-13)
    # sampling with replacement only ever picks retained rows, uniformly
    idx = np.asarray(sample_retained(jax.random.key(3), mask, 20000))
    assert idx.min() >= 50 and idx.max() < 150
    counts = np.bincount(idx - 50, minlength=100)
    assert counts.min() > 130 and counts.max() < 275  # ~200 each (binomial sd ~14)
    # the minibatch objective is unbiased for F: average over many batches
    f = jax.jit(jax.vmap(minibatch_objective(net, 0.1, Xj, yj, mask, 5), in_axes=(0, None)))
    vals = np.asarray(f(jax.random.split(jax.random.key(4), 2000), p))
    assert abs(vals.mean() - ref) < 4 * vals.std() / math.sqrt(vals.size)
    assert float(cross_entropy(net.apply(p, Xj), yj)) == pytest.approx(
        float(objective(net, 0.0)(p, Xj, yj)), rel=1e-14)
