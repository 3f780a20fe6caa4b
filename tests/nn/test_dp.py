"""DP-SGD transform and accounting against direct computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from certun.accounting.gaussian import analytic_epsilon
from certun.nn import dp


def test_dp_aggregate_matches_numpy():
    rng = np.random.default_rng(0)
    g = {"a": rng.normal(size=(5, 3)) * 3, "b": rng.normal(size=(5, 2, 2))}
    mask = np.array([1, 0, 1, 1, 0.0])
    out = dp.dp_aggregate(jax.tree.map(jnp.asarray, g), jax.random.key(0), clip=1.5,
                          noise_multiplier=0.0, expected_batch_size=4.0, mask=jnp.asarray(mask))
    flat = np.concatenate([g["a"], g["b"].reshape(5, -1)], axis=1)
    scale = np.minimum(1.0, 1.5 / np.linalg.norm(flat, axis=1))
    ref = (mask * scale) @ flat / 4.0
    np.testing.assert_allclose(np.concatenate([out["a"], out["b"].ravel()]), ref, rtol=1e-12)
    # the noise: std z C / B per coordinate (10k draws, 5 sigma band on the std)
    draws = jax.vmap(lambda k: dp.dp_aggregate(jax.tree.map(jnp.zeros_like, g), k, clip=1.5,
                                               noise_multiplier=2.0, expected_batch_size=4.0,
                                               mask=jnp.asarray(mask))["a"])(
        jax.random.split(jax.random.key(1), 1000))
    sd = float(np.std(np.asarray(draws)))
    assert abs(sd - 2.0 * 1.5 / 4.0) < 5 * 0.75 / math.sqrt(2 * draws.size)


@pytest.mark.parametrize("steps", [1, 10])
def test_full_batch_pld_is_the_exact_gaussian(steps):
    # T Gaussian steps of multiplier z compose to one Gaussian of multiplier z / sqrt(T)
    e = dp.dpsgd_epsilon(noise_multiplier=3.0, rate=1.0, steps=steps, delta=1e-5)
    assert e == pytest.approx(analytic_epsilon(3.0 / math.sqrt(steps), 1e-5), rel=1e-4)
    assert e >= analytic_epsilon(3.0 / math.sqrt(steps), 1e-5) * (1 - 1e-9)


def test_group_privacy_full_batch_exact_and_the_lemma_on_a_grid():
    z, k, dlt = 30.0, 4, 1e-5
    # full batches: a group of k moves the sum by k C, exactly a Gaussian of multiplier z / k
    got = dp.dpsgd_epsilon(noise_multiplier=z, rate=1.0, steps=3, delta=dlt, group_size=k)
    assert got == pytest.approx(analytic_epsilon(z / (k * math.sqrt(3)), dlt), rel=1e-12)
    # the group lemma (used under subsampling), against a dense grid evaluated independently
    lemma = dp.group_epsilon(lambda d1: analytic_epsilon(z, d1), k, dlt)
    grid = np.linspace(0.05, 0.6, 300)
    ok = [k * analytic_epsilon(z, dlt / (k * math.exp((k - 1) * e))) for e in grid
          if analytic_epsilon(z, dlt / (k * math.exp((k - 1) * e))) <= e]
    assert analytic_epsilon(z / k, dlt) <= lemma <= min(ok) * (1 + 1e-6)
    assert lemma == pytest.approx(min(ok), rel=1e-2)


def test_noise_multiplier_calibration_meets_target():
    kw = dict(rate=0.1, steps=20, delta=1e-5, accountant="rdp")
    z = dp.dpsgd_noise_multiplier(epsilon=2.0, **kw)
    assert dp.dpsgd_epsilon(noise_multiplier=z, **kw) <= 2.0
    assert dp.dpsgd_epsilon(noise_multiplier=z * 0.99, **kw) > 2.0


def test_poisson_batch_and_overflow_bound():
    idx, valid = dp.poisson_batch(jax.random.key(0), 50, 0.2, 30)
    take = np.asarray(jax.random.bernoulli(jax.random.key(0), 0.2, (50,)))
    np.testing.assert_array_equal(np.asarray(idx)[np.asarray(valid)], np.nonzero(take)[0])
    assert dp.overflow_probability(1000, 0.05, 80, 10) == pytest.approx(
        10 * stats.binom.sf(80, 1000, 0.05), rel=1e-12)


@pytest.mark.slow
def test_dp_sgd_train_runs_with_its_guarantee():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}

    def apply(p, x):
        return x @ p["w"] + p["b"]

    out, cfg = dp.dp_sgd_train(apply, params, X, y, jax.random.key(0), epsilon=8.0, delta=1e-5,
                               steps=30, batch_size=10, clip=1.0, accountant="rdp")
    assert cfg.epsilon <= 8.0 and cfg.buffer < 40
    assert cfg.epsilon == pytest.approx(
        dp.dpsgd_epsilon(noise_multiplier=cfg.noise_multiplier, rate=0.25, steps=30,
                         accountant="rdp",
                         delta=1e-5 - dp.overflow_probability(40, 0.25, cfg.buffer, 30)))
    acc = float(jnp.mean(jnp.argmax(apply(out, jnp.asarray(X)), -1) == y))
    assert acc > 0.7  # a weakly private linear model still learns the sign of x_0
