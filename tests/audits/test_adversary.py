"""Adversarial multi-statistic epsilon audit: statistics, Bonferroni, every mechanism, twins.

A test per mechanism fails if a lower bound exceeds the certified epsilon (the audit raises
``AuditViolation``); a test per twin fails if the audit does NOT catch the deliberately
mis-calibrated twin at the same sample count. Default tier: 20,000 outputs per world (model
plus noise); slow tier: 1,000,000, and the mechanisms whose outputs are training runs.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun.audits import adversary as A
from certun.audits.epsilon import AuditViolation
from certun.audits.stats import epsilon_lower_bound
from certun.primitives.noise import gaussian_like
from certun.release import private_release

RUNS = 20_000
#: the release before the fix of issue 14 (sigma from the data's own n_t, add/remove)
OLD_RELEASE = "adjacency" not in inspect.signature(private_release).parameters


def _audit(w, runs=RUNS, **kw):
    return A.adversarial_audit(w, key=jax.random.key(7), num_runs=runs, **kw)


def _caught(w, runs=RUNS, **kw):
    r = _audit(w, runs, raise_on_violation=False, **kw)
    assert r.verdict == "violated" and r.epsilon_lower > r.epsilon_claimed, r.per_statistic
    return r


# --------------------------------------------------------------------------- the audit itself


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    d = 7
    c_in, c_out = rng.standard_normal(d), rng.standard_normal(d)
    s_in, s_out = 0.7, 1.3
    w = A.Worlds("t", "removal", {}, 1.0, 1e-5, A._noised, A._noised, A._gargs(c_in, s_in),
                 A._gargs(c_out, s_out), c_in, c_out, s_in, s_out)
    p, _ = A._statistic_params(w, None, None, 0.0)
    x = rng.standard_normal(d)
    got = np.asarray(A._scores(jnp.asarray(x), p))
    mid, u = (c_in + c_out) / 2, (c_in - c_out) / np.linalg.norm(c_in - c_out)

    def logpdf(c, s):
        return -np.sum((x - c) ** 2) / (2 * s * s) - d * np.log(s)

    want = [(x - mid) @ u, np.sum((x - mid) ** 2), np.max(np.abs(x - mid)),
            logpdf(c_in, s_in) - logpdf(c_out, s_out)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_outputs_are_certuns_noise():
    w = A.gaussian_output_worlds(d=5)
    k = jax.random.key(3)
    out = A._noised(k, w.args_in)
    ref = jnp.asarray(w.center_in) + gaussian_like(k, jnp.asarray(w.center_in), w.sigma_in)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))


def test_bonferroni_and_splits():
    r = _audit(A.gaussian_output_worlds(d=100), alpha=0.05)
    assert r.split["fit"] == 0 and r.split["select"] + r.split["evaluate"] == RUNS
    assert len(r.per_statistic) == len(A.STATISTICS)
    for s in r.per_statistic:  # each bound at alpha / m on the evaluation counts
        ref = epsilon_lower_bound(s.tp, s.n_in, s.fp, s.n_out, alpha=0.05 / 4, delta=1e-5)
        assert s.epsilon_lower == pytest.approx(ref.epsilon, abs=1e-12)
        assert s.n_in == r.split["evaluate"]
    assert r.epsilon_lower == max(s.epsilon_lower for s in r.per_statistic)


def test_violation_raises():
    with pytest.raises(AuditViolation, match="exceeds the certified"):
        _audit(A.twin(A.gaussian_output_worlds(d=100), 0.2))


def test_bad_input_is_one_clear_error():
    from certun import ValidationError

    w = A.gaussian_output_worlds(d=3)
    with pytest.raises(ValidationError, match="num_runs"):
        _audit(w, runs=10)
    with pytest.raises(ValidationError, match="sigma_scale"):
        A.twin(w, (0.5, -1.0))
    with pytest.raises(ValidationError, match="steps"):
        A.twin(w, steps=3)
    with pytest.raises(ValidationError, match="per-world"):
        A.twin(w._replace(sampler_in=A._guo_sample_in), (1.0, 2.0))


# --------------------------------------------------------------------------- Gaussian output


def test_gaussian_output_and_twin():
    """Sigma halved (true epsilon about 2.4 at delta 1e-5) needs 100,000 runs per world."""
    w = A.gaussian_output_worlds(d=100)
    r = _audit(w, 100_000)
    assert r.epsilon_lower <= 1.0
    assert _caught(A.twin(w, 0.5), 100_000).best_statistic in ("mean_shift", "gaussian_lr")


# --------------------------------------------------------------------------- private release


@pytest.fixture(scope="module")
def release_worlds():
    X, y = A.audit_problem(10, 100)
    return X, y, A.private_release_worlds(X, y, lam=0.1, epsilon=1.0, delta=1e-5)


def test_release_worlds_are_the_api(release_worlds):
    """The sampler reproduces private_release's own release 0 (same noise key), both worlds."""
    w = release_worlds[2]
    nk = jax.random.key(A._API_NOISE_SEED)
    for args, pub in ((w.args_in, "api_published_in"), (w.args_out, "api_published_out")):
        np.testing.assert_array_equal(np.asarray(A._noised(nk, args)), w.details[pub])
    assert w.sigma_in != w.sigma_out if OLD_RELEASE else w.sigma_in == w.sigma_out


@pytest.mark.xfail(OLD_RELEASE, strict=True, raises=AuditViolation,
                   reason="issue 14: the release's sigma follows n_t under add/remove adjacency")
def test_private_release_is_within_its_certificate(release_worlds):
    r = _audit(release_worlds[2])
    assert r.epsilon_lower <= r.epsilon_claimed


def test_private_release_old_calibration_is_caught_by_the_noise_scale(release_worlds):
    """The regression test of issue 14: sigma following n_t is caught, not by the mean shift."""
    X, y, _ = release_worlds
    w = A.private_release_worlds(X, y, lam=0.1, epsilon=1.0, delta=1e-5,
                                 old_release_calibration=True)
    assert w.sigma_in < w.sigma_out
    r = _caught(w)
    stats = {s.statistic: s.epsilon_lower for s in r.per_statistic}
    assert stats["norm_sq"] > 2.0 and stats["mean_shift"] < 1.0
    assert r.best_statistic in ("norm_sq", "gaussian_lr")


def test_private_release_under_noised_twin(release_worlds):
    w = release_worlds[2]
    _caught(A.twin(w, A.loose_scale(w)))


# --------------------------------------------------------------------------- Sekhari, D2D


@pytest.fixture(scope="module")
def problem20():
    return A.audit_problem(8, 20)


def _n_t_twin(w):
    n = w.config["n"]
    return A.twin(w, (1.0, n / (n - 1)), "sigma following n_t")


@pytest.mark.parametrize("builder", ["sekhari", "d2d"])
def test_output_perturbation_unlearners_and_twins(problem20, builder):
    X, y = problem20
    fn = A.sekhari_worlds if builder == "sekhari" else A.descent_to_delete_worlds
    w = fn(X, y, lam=0.1, epsilon=1.0, delta=1e-5)
    assert _audit(w).epsilon_lower <= 1.0
    assert _caught(_n_t_twin(w)).best_statistic in ("norm_sq", "gaussian_lr")
    _caught(A.twin(w, A.loose_scale(w)))


# --------------------------------------------------------------------------- slow tier


@pytest.mark.slow
def test_gaussian_output_and_release_million():
    w = A.gaussian_output_worlds(d=100)
    assert _audit(w, 1_000_000, batch_size=65536).epsilon_lower <= 1.0
    X, y = A.audit_problem(10, 100)
    wr = A.private_release_worlds(X, y, lam=0.1, epsilon=1.0, delta=1e-5,
                                  old_release_calibration=True)
    _caught(wr, 1_000_000, batch_size=65536)


@pytest.mark.slow
def test_guo_and_twin(digits38):
    X, y = digits38.X_train[:60], digits38.y_train[:60]
    X = A.safe_unit_rows(X)
    w = A.guo_worlds(X, y, lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-5)
    assert _audit(w, 4000, batch_size=4000).epsilon_lower <= 1.0
    wt = A.guo_worlds(X, y, lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-5, enforce_budget=False)
    _caught(A.twin(wt, 1e-3), 4000, batch_size=4000)


@pytest.mark.slow
def test_langevin_and_twin():
    X, y = A.audit_problem(10, 20)
    w = A.langevin_worlds(X, y, lam=0.1, sigma=0.05, epsilon=1.0, delta=1e-5, burn_in=200)
    k0 = jax.random.key(0)  # the samplers replay the API's unlearning and retraining
    np.testing.assert_allclose(np.asarray(A._langevin_sample_in(k0, w.args_in)),
                               w.details["api_published_in"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(A._langevin_sample_out(k0, w.args_out)),
                               w.details["api_published_out"], rtol=1e-10, atol=1e-12)
    assert _audit(w, 10_000, batch_size=2000).epsilon_lower <= 1.0
    _caught(A.twin(w, steps=0), 10_000, batch_size=2000)


PNSGD = dict(lam=0.3, sigma=0.05, epsilon=1.0, delta=1e-5, batch_size=8, epochs=6)


def test_pnsgd_samplers_replay_the_api():
    X, y = A.audit_problem(7, 3)
    w = A.pnsgd_worlds(X, y, **PNSGD)
    k0 = jax.random.key(0)
    assert w.details["certificate_status"] == "holds" and w.epsilon <= 1.0
    np.testing.assert_array_equal(np.asarray(w.sampler_in(k0, w.args_in)),
                                  w.details["api_published_in"])
    np.testing.assert_array_equal(np.asarray(w.sampler_out(k0, w.args_out)),
                                  w.details["api_published_out"])


#: the bound-attaining configuration (proofs/pnsgd_unlearning.md §5): 39 zero rows and the
#: canary e_1, one batch per epoch, lam = 1 (c = 0.2), projection radius 0.03 (M = 0.5075)
PNSGD_TIGHT = dict(lam=1.0, sigma=0.0016, epsilon=1.0, delta=1e-5, batch_size=40, epochs=5,
                   radius=0.03)


def test_pnsgd_audit_problem_replays_the_api():
    X, y, iz = A.pnsgd_audit_problem(40)
    assert iz == 39 and np.count_nonzero(X) == 1 and X[iz, 0] <= 1.0 and y[iz] == 1.0
    w = A.pnsgd_worlds(X, y, canary=iz, **PNSGD_TIGHT)
    # K = 2 epochs; the tracking bound Z with M = sigmoid(R) over b lam = 40
    assert w.details["K"] == 2 and w.epsilon <= 1.0
    assert w.details["shift"] == pytest.approx(1 / (1 + np.exp(-0.03)) / 40, rel=1e-12)
    k0 = jax.random.key(0)
    np.testing.assert_array_equal(np.asarray(w.sampler_in(k0, w.args_in)),
                                  w.details["api_published_in"])
    np.testing.assert_array_equal(np.asarray(w.sampler_out(k0, w.args_out)),
                                  w.details["api_published_out"])


@pytest.mark.slow
def test_pnsgd_half_noise_twin_is_caught_where_the_bound_is_attained():
    """Honest below its epsilon, the half-noise twin caught (400,000 runs per world).

    On :func:`pnsgd_audit_problem` the worlds' output distributions differ by a shift of
    0.98 times what the bound allows (mean shift over the standard deviation against
    ``sqrt(2 mu)``; measured here on 40,000 runs, required >= 0.95), so halving the noise
    raises the real Renyi slope to about 3.9 ``mu``: measured 0.55 honest (certified 0.994),
    1.29 for the twin.
    """
    X, y, iz = A.pnsgd_audit_problem(40)
    w = A.pnsgd_worlds(X, y, canary=iz, **PNSGD_TIGHT)
    a = np.asarray(A._draw(w.sampler_in, w.args_in, jax.random.key(5), 40_000, 8192))[:, 0]
    b = np.asarray(A._draw(w.sampler_out, w.args_out, jax.random.key(6), 40_000, 8192))[:, 0]
    rho = (a.mean() - b.mean()) / b.std() / np.sqrt(2 * w.details["mu"])
    assert 0.95 <= rho <= 1.05, rho
    r = _audit(w, 400_000)
    assert r.epsilon_lower <= w.epsilon
    t = _caught(A.pnsgd_worlds(X, y, canary=iz, sigma_scale=0.5, **PNSGD_TIGHT), 400_000)
    assert t.best_statistic in ("mean_shift", "gaussian_lr")


@pytest.mark.slow
def test_pnsgd_and_twins():
    """Honest below epsilon; the twin that unlearns 1 epoch instead of K = 4 is caught.

    On this random problem the half-noise twin is not caught (0.0 at 40,000 runs, 0.305 at a
    tenth of the noise): the bound is far from attained. Measured (40,000 coupled runs): at
    the start of unlearning the chains are 0.19 apart, 0.47 of the tracking bound
    ``Z = 0.417`` (the canary's derivative stays near 1/2 of ``M = 1``); after the ``K = 4``
    unlearning steps the mean outputs are 0.0021 apart against ``Z c^T = 0.0178`` (the other
    rows' logistic curvature contracts faster than ``c = 1 - eta lam``), so the real shift is
    0.125 of what the bound allows and the real Renyi slope 0.016 ``mu``: even a tenth of the
    noise stays below the certificate. :func:`pnsgd_audit_problem` removes both gaps
    (the test above).
    """
    X, y = A.audit_problem(7, 3)
    w = A.pnsgd_worlds(X, y, **PNSGD)
    assert w.details["K"] == 4
    assert _audit(w, 40_000).epsilon_lower <= 1.0
    _caught(A.pnsgd_worlds(X, y, unlearn_epochs=1, **PNSGD), 40_000)


@pytest.mark.slow
def test_zhang_and_twin():
    from certun.nn import TrainConfig, mlp

    X, ypm = A.audit_problem(30, 8)
    y = (ypm > 0).astype(int)
    net = mlp(8, (4,), 2, "tanh", input_scale=3.0)
    cfg = TrainConfig(epochs=100, batch_size=None, learning_rate=1e-2, weight_decay=1e-3,
                      radius=5.0, log_every=100, dtype="float64")
    w = A.zhang_worlds(X, y, net, cfg, [0], epsilon=1.0, delta=1e-5, key=jax.random.key(0),
                       lam=0.5, lam_min="none")
    assert _audit(w).epsilon_lower <= 1.0
    _caught(A.twin(w, A.loose_scale(w)))
