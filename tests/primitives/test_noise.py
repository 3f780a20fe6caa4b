"""Gaussian noise over pytrees: distribution, key discipline, dtypes, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from certun.primitives import noise

SIGMA = 0.7


def _tree64():
    return {
        "w": jnp.zeros((100, 50), jnp.float64),
        "b": jnp.zeros((50,), jnp.float64),
        "layers": [jnp.zeros((40, 50), jnp.float64), jnp.zeros((7,), jnp.float64)],
    }


def _flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def test_ks_accepts_claimed_sigma_and_rejects_wrong_one(key):
    draws = _flat(noise.gaussian_like(key, _tree64(), SIGMA))
    assert draws.size > 7000
    more = _flat(noise.gaussian_like(key, _tree64(), SIGMA, release=1))
    more2 = _flat(noise.gaussian_like(key, _tree64(), SIGMA, release=2))
    draws = np.concatenate([draws, more, more2])
    assert draws.size >= 20_000
    assert stats.kstest(draws, "norm", args=(0.0, SIGMA)).pvalue > 0.01
    assert stats.kstest(draws, "norm", args=(0.0, 1.5 * SIGMA)).pvalue < 1e-6
    assert stats.kstest(draws, "norm", args=(0.0, SIGMA / 1.5)).pvalue < 1e-6
    assert abs(draws.mean()) < 4 * SIGMA / np.sqrt(draws.size)


def test_ks_float32_leaf(key):
    # Fixed seed; under the null the p-value is uniform, so any fixed seed fails
    # the p > 0.01 check with probability 1%: this one (release 5) does not.
    x = noise.gaussian_like(key, jnp.zeros((20_000,), jnp.float32), 2.0, release=5)
    assert x.dtype == jnp.float32
    assert stats.kstest(np.asarray(x, np.float64), "norm", args=(0.0, 2.0)).pvalue > 0.01
    assert stats.kstest(np.asarray(x, np.float64), "norm", args=(0.0, 3.0)).pvalue < 1e-6


def test_leaves_are_independent(key):
    tree = {"a": jnp.zeros((20_000,)), "b": jnp.zeros((20_000,))}
    out = noise.gaussian_like(key, tree, 1.0)
    a, b = np.asarray(out["a"]), np.asarray(out["b"])
    assert not np.any(a == b)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05
    # leaf i uses fold_in(fold_in(key, release), i)
    rk = noise.release_key(key, 0)
    np.testing.assert_array_equal(a, jax.random.normal(jax.random.fold_in(rk, 0), (20_000,)))
    np.testing.assert_array_equal(b, jax.random.normal(jax.random.fold_in(rk, 1), (20_000,)))


def test_leaf_correlation_across_many_draws(key):
    """The same coordinate of two same-shaped leaves, over many keys: uncorrelated."""
    tree = [jnp.zeros((3,)), jnp.zeros((3,))]
    f = jax.jit(jax.vmap(lambda k: noise.gaussian_like(k, tree, 1.0)))
    keys = jax.random.split(key, 5000)
    x, y = f(keys)
    for j in range(3):
        assert abs(np.corrcoef(np.asarray(x[:, j]), np.asarray(y[:, j]))[0, 1]) < 0.05


def test_releases_differ_and_are_uncorrelated(key):
    tree = _tree64()
    r0 = _flat(noise.gaussian_like(key, tree, 1.0, release=0))
    r1 = _flat(noise.gaussian_like(key, tree, 1.0, release=1))
    assert not np.any(r0 == r1)
    assert abs(np.corrcoef(r0, r1)[0, 1]) < 0.05
    # same release reproduces exactly
    np.testing.assert_array_equal(r0, _flat(noise.gaussian_like(key, tree, 1.0, release=0)))
    # release_key is fold_in
    assert jnp.array_equal(
        jax.random.key_data(noise.release_key(key, 3)),
        jax.random.key_data(jax.random.fold_in(key, 3)),
    )


def test_mixed_dtypes_preserved(key):
    tree = {
        "f32": jnp.ones((4, 3), jnp.float32),
        "f64": jnp.ones((5,), jnp.float64),
        "bf16": jnp.ones((2,), jnp.bfloat16),
        "scalar": jnp.ones((), jnp.float32),
    }
    for fn in (noise.gaussian_like, noise.perturb):
        out = fn(key, tree, 0.5)
        assert jax.tree.structure(out) == jax.tree.structure(tree)
        for k in tree:
            assert out[k].dtype == tree[k].dtype, (fn.__name__, k)
            assert out[k].shape == tree[k].shape
    pert = noise.perturb(key, tree, 0.5)
    eps = noise.gaussian_like(key, tree, 0.5)
    # equal up to rounding (XLA may fuse the scale-and-add into an FMA)
    np.testing.assert_allclose(np.asarray(pert["f64"]), 1.0 + np.asarray(eps["f64"]), rtol=1e-14)


def test_jit_matches_eager_with_traced_sigma(key):
    tree = {"w": jnp.zeros((6, 4), jnp.float32), "b": jnp.arange(4.0)}
    eager = noise.perturb(key, tree, 0.3, release=2)
    jitted = jax.jit(lambda k, t, s: noise.perturb(k, t, s, release=2))(key, tree, 0.3)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # traced release counter too
    jr = jax.jit(lambda k, r: noise.gaussian_like(k, tree, 0.3, release=r))(key, 2)
    ge = noise.gaussian_like(key, tree, 0.3, release=2)
    for a, b in zip(jax.tree.leaves(ge), jax.tree.leaves(jr), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sigma_zero_gives_exact_zero(key):
    tree = _tree64()
    z = noise.gaussian_like(key, tree, 0.0)
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(z))
    p = noise.perturb(key, {"a": jnp.arange(5.0)}, 0.0)
    np.testing.assert_array_equal(np.asarray(p["a"]), np.arange(5.0))
    zj = jax.jit(lambda s: noise.gaussian_like(key, tree, s))(0.0)
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(zj))


def test_objective_perturbation(key):
    b1 = noise.objective_perturbation(key, (30,), 2.0)
    b2 = noise.objective_perturbation(key, (30,), 2.0)
    b3 = noise.objective_perturbation(jax.random.fold_in(key, 1), (30,), 2.0)
    assert b1.shape == (30,) and b1.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(b1), np.asarray(b2))
    assert not np.any(np.asarray(b1) == np.asarray(b3))
    # int shape, dtype override, and the same folding as gaussian_like
    b4 = noise.objective_perturbation(key, 30, 2.0, dtype=jnp.float32)
    assert b4.shape == (30,) and b4.dtype == jnp.float32
    like = noise.gaussian_like(key, jnp.zeros((30,)), 2.0)
    np.testing.assert_array_equal(np.asarray(b1), np.asarray(like))
    # a pytree (arrays or ShapeDtypeStructs) gives b of that structure
    params = {"w": jax.ShapeDtypeStruct((3, 2), jnp.float32), "b": jnp.zeros((2,))}
    bt = noise.objective_perturbation(key, params, 1.0)
    assert bt["w"].shape == (3, 2) and bt["w"].dtype == jnp.float32
    assert bt["b"].dtype == jnp.float64
    bt64 = noise.objective_perturbation(key, params, 1.0, dtype=jnp.float64)
    assert bt64["w"].dtype == jnp.float64
    # distribution
    big = noise.objective_perturbation(key, (20_000,), 3.0)
    assert stats.kstest(np.asarray(big), "norm", args=(0.0, 3.0)).pvalue > 0.01


@pytest.mark.parametrize("sigma", [-1.0, float("nan"), float("inf")])
def test_bad_sigma_rejected(key, sigma):
    with pytest.raises(ValueError, match="sigma"):
        noise.gaussian_like(key, {"a": jnp.zeros(3)}, sigma)
    with pytest.raises(ValueError, match="sigma"):
        noise.objective_perturbation(key, (3,), sigma)


def test_other_bad_inputs(key):
    with pytest.raises(ValueError, match="tree"):
        noise.gaussian_like(key, {"a": jnp.zeros(3, jnp.int32)}, 1.0)
    with pytest.raises(ValueError, match="tree"):
        noise.perturb(key, {}, 1.0)
    with pytest.raises(ValueError, match="release"):
        noise.gaussian_like(key, jnp.zeros(3), 1.0, release=-1)
    with pytest.raises(ValueError, match="release"):
        noise.gaussian_like(key, jnp.zeros(3), 1.0, release=1.5)
    with pytest.raises(ValueError, match="key"):
        noise.gaussian_like(42, jnp.zeros(3), 1.0)
    with pytest.raises(ValueError, match="dtype"):
        noise.objective_perturbation(key, (3,), 1.0, dtype=jnp.int32)
    with pytest.raises(ValueError, match="sigma"):
        noise.gaussian_like(key, jnp.zeros(3), jnp.ones(2))


def test_legacy_uint32_key_works():
    k = jax.random.PRNGKey(0)
    out = noise.gaussian_like(k, jnp.zeros(4), 1.0)
    assert out.shape == (4,)
