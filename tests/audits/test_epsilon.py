"""Empirical epsilon audits of certun's mechanisms.

Honest mechanisms pass, under-noised ones are caught.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun.accounting import guo_budget
from certun.audits import epsilon as ea
from certun.data import load_digits_3v8
from certun.models import glm
from certun.unlearners import certified_removal

# A clipped-sum query over a pytree (sensitivity C = 1 under add/remove-one) on a pair that
# attains it: D' = D + {z} with ||z|| = 1, so ||f(D') - f(D)|| = 1.
F_OUT = {"w": jnp.asarray([0.3, -0.2, 0.1]), "b": jnp.asarray([[0.5, 0.0], [0.0, -0.4]])}
Z = {"w": jnp.asarray([0.6, 0.0, 0.0]), "b": jnp.asarray([[0.0, 0.8], [0.0, 0.0]])}
F_IN = jax.tree_util.tree_map(jnp.add, F_OUT, Z)


@pytest.mark.slow
def test_gaussian_output_audit_is_tight_and_catches_under_noise():
    """Acceptance: >= 1e6 runs per world, epsilon 1, delta 1e-5; test chosen on a split."""
    key = jax.random.key(0)
    honest = ea.gaussian_output_audit(F_IN, F_OUT, epsilon=1.0, delta=1e-5, sensitivity=1.0,
                                      key=key, num_runs=2_000_000)
    assert honest.bound.n_in >= 1_000_000 and honest.bound.n_out >= 1_000_000
    assert "separate split" in honest.rule
    assert honest.details["pair_distance"] == pytest.approx(1.0, abs=1e-12)
    assert honest.verdict == "consistent"
    assert 0.5 < honest.epsilon_lower < 1.0  # below the claim, within a factor 2 of it
    bad = ea.gaussian_output_audit(F_IN, F_OUT, epsilon=1.0, delta=1e-5, sensitivity=1.0,
                                   key=key, num_runs=2_000_000, noise_scale=0.1,
                                   raise_on_violation=False)
    assert bad.verdict == "violated" and bad.epsilon_lower > 1.0
    assert bad.epsilon_lower <= bad.details["epsilon_of_actual_noise_for_pair"]


def test_violation_fails_loudly():
    with pytest.raises(ea.AuditViolation, match="exceeds the certified epsilon"):
        ea.gaussian_output_audit(F_IN, F_OUT, epsilon=1.0, delta=1e-5, sensitivity=1.0,
                                 key=jax.random.key(1), num_runs=20000, noise_scale=0.1)
    with pytest.raises(ValueError, match="exceeds the sensitivity"):
        ea.gaussian_output_audit(F_IN, F_OUT, epsilon=1.0, delta=1e-5, sensitivity=0.5,
                                 key=jax.random.key(1), num_runs=100)


def test_sample_scores_draws_certun_noise():
    """Each run is gaussian_like with its own key: scores have the calibrated law."""
    f = {"a": jnp.zeros(2), "b": jnp.zeros((1,))}
    s = ea.sample_scores(lambda k: ea.gaussian_like(k, f, 2.0), lambda t: t["a"][0] + t["b"][0],
                         jax.random.key(3), 50000, batch_size=20000)
    assert s.shape == (50000,)
    assert abs(s.mean()) < 0.05 and s.std() == pytest.approx(2.0 * np.sqrt(2), rel=0.02)
    k0 = jax.random.split(jax.random.fold_in(jax.random.key(3), 0), 20000)[0]
    ref = ea.gaussian_like(k0, f, 2.0)
    assert s[0] == pytest.approx(float(ref["a"][0] + ref["b"][0]), rel=1e-12)


@pytest.fixture(scope="module")
def digits():
    ds = load_digits_3v8()
    return ds.X_train, ds.y_train


def test_worst_case_canary(digits):
    X, y = digits
    c = ea.worst_case_canary(X, y, lam=0.01)
    assert np.linalg.norm(c.x) == pytest.approx(1.0, abs=1e-12)
    W = glm.fit("logistic", jnp.asarray(X), jnp.asarray(y)[:, None], 0.01).params[:, 0]
    assert c.y * float(np.asarray(W) @ c.x) <= 0  # labelled against the model
    # worse than every training row on the same surrogate
    H = np.asarray(glm.hessian_sum(glm.LOGISTIC, W[:, None], jnp.asarray(X),
                                   jnp.asarray(y)[:, None], 0.01)[0])
    g = np.asarray(glm.LOGISTIC.d1(jnp.asarray(X) @ W, jnp.asarray(y)))[:, None] * X
    D = np.linalg.solve(H, g.T)
    rows = np.linalg.norm(D, axis=0) * np.linalg.norm(X @ D, axis=0)
    assert c.value > rows.max()


def test_guo_worlds_are_certuns_mechanism(digits):
    """The vmapped worlds reproduce certified_removal's init + unlearn and its budget charge."""
    X, y = digits[0][:120], digits[1][:120]
    c = ea.worst_case_canary(X, y, lam=0.05)
    w = ea.guo_removal_worlds(X, y, c, lam=0.05, sigma=2.0, budget=guo_budget(2.0, 1.0, 1e-4))
    unl = certified_removal(lam=0.05, sigma=2.0, epsilon=1.0, delta=1e-4,
                            update="pcg")
    Xz, yz = np.concatenate([X, c.x[None]]), np.concatenate([y, [c.y]])
    for s in range(2):
        k = jax.random.key(s)
        res = unl.unlearn(unl.init(Xz, yz, k), [len(X)])
        Wi, served, charged, ok = w.world_in(k)
        assert res.outcome == "unlearned" and bool(served) and bool(ok)
        np.testing.assert_allclose(np.asarray(Wi), np.asarray(res.params), atol=1e-9)
        assert float(charged) == pytest.approx(res.certificate.budget.used, rel=1e-6)
        W0 = unl.init(X, y, k).W[:, 0]
        np.testing.assert_allclose(np.asarray(w.world_out(k)[0]), np.asarray(W0), atol=1e-9)


@pytest.mark.slow  # 10 s; the default tier keeps test_guo_worlds_are_certuns_mechanism
def test_guo_audit_with_worst_case_canary(digits):
    """Acceptance: the bound stays below the certified epsilon; a budget bug is caught."""
    X, y = digits
    c = ea.worst_case_canary(X, y, lam=0.01)
    res = ea.guo_removal_audit(X, y, c, lam=0.01, sigma=4.0, epsilon=1.0, delta=1e-4,
                               key=jax.random.key(0), num_runs=1200)
    assert res.verdict == "consistent" and res.epsilon_lower <= 1.0
    assert res.details["served_fraction"] > 0.95
    bug = ea.guo_removal_audit(X, y, c, lam=0.01, sigma=1e-4, epsilon=1.0, delta=1e-4,
                               key=jax.random.key(0), num_runs=1200, enforce_budget=False,
                               raise_on_violation=False)
    assert bug.verdict == "violated" and bug.epsilon_lower > 1.0
    assert bug.details["max_charged_residual"] > bug.details["budget"]
