"""Row-block reductions against dense numpy, and init on a device-resident ``X``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun import ValidationError
from certun.data import synthetic_logistic
from certun.primitives import row_blocks
from certun.unlearners import _guo_steps, certified_removal


def test_weighted_gram_and_row_stats_match_numpy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(53, 6))
    w = rng.uniform(size=(53, 2))
    for block in (7, 53, 100):  # a remainder, one block, a block larger than n
        G = np.asarray(row_blocks.weighted_gram(jnp.asarray(X), jnp.asarray(w), block=block))
        ref = np.einsum("ik,ij,il->kjl", w, X, X)
        np.testing.assert_allclose(G, ref, rtol=1e-13, atol=1e-13)
        G1 = np.asarray(row_blocks.weighted_gram(jnp.asarray(X), block=block))[0]
        np.testing.assert_allclose(G1, X.T @ X, rtol=1e-13, atol=1e-13)
        s = np.asarray(row_blocks.row_stats(jnp.asarray(X), block=block))
        np.testing.assert_allclose(s[:2], [np.sum(X * X), np.linalg.norm(X, axis=1).max()],
                                   rtol=1e-14)
        assert s[2] == 0
    X[5, 2] = np.nan
    assert float(row_blocks.row_stats(jnp.asarray(X), block=7)[2]) == 1


def test_init_on_a_device_array_equals_the_host_path(monkeypatch):
    ds = synthetic_logistic(200, 6, seed=4)
    kw = dict(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4)
    host = certified_removal(**kw)
    sh = host.init(ds.X_train, ds.y_train, jax.random.key(0))
    monkeypatch.setattr(_guo_steps, "BLOCKWISE_ELEMENTS", 0)  # every device array goes there
    dev = certified_removal(**kw)
    sd = dev.init(jnp.asarray(ds.X_train, jnp.float64), ds.y_train, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(sd.W), np.asarray(sh.W))
    np.testing.assert_allclose(np.asarray(sd.gram), np.asarray(sh.gram), rtol=1e-13,
                               atol=1e-14)
    for f in ("x_spectral", "fro2", "gram_err", "residual_bound"):
        assert float(getattr(sd, f)) == pytest.approx(float(getattr(sh, f)), rel=1e-12), f
    a, b = dev.unlearn(sd, [3]), host.unlearn(sh, [3])
    assert a.outcome == b.outcome == "unlearned"
    assert a.certificate.budget.used == pytest.approx(b.certificate.budget.used, rel=1e-10)
    bad = np.array(ds.X_train, np.float64)
    bad[7] *= 1.5
    with pytest.raises(ValidationError, match="X row 7 has L2 norm"):
        dev.init(jnp.asarray(bad), ds.y_train, jax.random.key(0))
    with pytest.raises(ValidationError, match="float64"):
        dev.init(jnp.asarray(ds.X_train, jnp.float32), ds.y_train, jax.random.key(0))
