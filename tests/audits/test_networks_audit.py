"""Epsilon audits of noisy fine-tuning (Koloskova et al. 2025) on a tiny configuration.

Each world is a whole run of certun's jitted fine-tuning from one of two antipodal starts
``+-C_0 e_1`` (the guarantee covers any two starts in the ball). The honest mechanisms' lower
bounds stay below the certified epsilon; the half-noise twins are caught (slow tier).
"""

import dp_accounting
import jax
import numpy as np
import pytest

from certun.audits.adversary import adversarial_audit
from certun.audits.networks import dp_sgd_worlds, noisy_finetuning_worlds

CONFIGS = {
    "output_perturbation": {},
    "gradient_clipping": dict(lr=1e-3, steps=4, grad_clip=1.0, batch_size=4),
    "model_clipping": dict(lr=1e-3, steps=4, model_clip=1.0, init_sigma=2.0, batch_size=4),
}


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2)) / 2
    return X, (X[:, 0] > 0).astype(int)


def _worlds(problem, variant, scale=1.0):
    X, y = problem
    return noisy_finetuning_worlds(X, y, [0, 1], variant=variant, epsilon=1.0, delta=1e-5,
                                   sigma_scale=scale, **CONFIGS[variant])


def test_sampler_replays_the_published_release(problem):
    w = _worlds(problem, "gradient_clipping")
    out = np.asarray(w.sampler_in(jax.random.key(0), w.args_in))
    np.testing.assert_array_equal(out, w.details["api_published_in"])
    assert w.details["certificate_status"] == "holds" and w.epsilon <= 1.0
    # the two worlds differ only in the start: antipodal points of the ball
    np.testing.assert_array_equal(np.asarray(w.args_in["start"]["W"]),
                                  -np.asarray(w.args_out["start"]["W"]))


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(CONFIGS))
def test_honest_below_and_half_noise_twin_caught(problem, variant):
    honest = adversarial_audit(_worlds(problem, variant), key=jax.random.key(1), num_runs=40_000)
    assert honest.verdict == "consistent" and honest.epsilon_lower < 1.0
    twin = adversarial_audit(_worlds(problem, variant, 0.5), key=jax.random.key(2),
                             num_runs=200_000, raise_on_violation=False)
    assert twin.verdict == "violated" and twin.epsilon_lower > 1.0


# --------------------------------------------------------------------------- DP-SGD

DP = dict(epsilon=1.0, delta=1e-5, steps=4, n=4, d=2)


def test_dp_sgd_sampler_replays_the_published_run_and_the_shift_is_the_accountants():
    # RDP here (the PLD calibration's bisection alone takes ~2 s; the slow audits use PLD)
    w = dp_sgd_worlds(**DP, accountant="rdp")
    key = jax.random.key(0)
    out_in = np.asarray(w.sampler_in(key, w.args_in))
    np.testing.assert_array_equal(out_in, w.details["api_published_in"])
    z, T, n, lr = w.details["noise_multiplier"], DP["steps"], DP["n"], 0.1
    # world "out" (no canary, zero rows only) is pure noise: lr z C / n times the sum of the
    # run's T standard normal draws (step key t -> (batch key, noise key) -> one leaf's key)
    draws = [np.asarray(jax.random.normal(jax.random.split(jax.random.split(
        jax.random.split(key, T)[t])[1], 1)[0], (2, 1), np.float64)).ravel() for t in range(T)]
    out_out = np.asarray(w.sampler_out(key, w.args_out))
    np.testing.assert_allclose(out_out, -lr * z / n * np.sum(draws, 0), rtol=1e-12)
    # with one key both worlds draw the same noise: the difference is the clipped canary's
    # whole contribution lr T C / n along e_1 (its raw gradient has norm 4 C)
    np.testing.assert_allclose(out_in - out_out, [lr * T / n, 0.0], rtol=1e-12, atol=1e-15)
    assert w.details["shift_over_noise"] == pytest.approx(np.sqrt(T) / z, rel=1e-12)
    # the certified epsilon bounds the exact Gaussian epsilon of that shift (Balle & Wang)
    exact = float(dp_accounting.get_epsilon_gaussian(z / np.sqrt(T), DP["delta"]))
    assert exact == pytest.approx(w.details["exact_epsilon"], rel=1e-12)
    assert exact <= w.epsilon <= DP["epsilon"]
    assert w.adjacency == "add/remove 1 row"


@pytest.mark.slow
@pytest.mark.parametrize("group_size", [1, 2])
def test_dp_sgd_honest_below_and_half_noise_twin_caught(group_size):
    """DP-SGD's worst case (full batch, a canary group clipped to ``k C e_1``, plain SGD).

    The outputs are Gaussians with mean shift over noise ``k sqrt(T) / z``; the certified
    epsilon (PLD for ``k = 1``, the exact full-batch group epsilon for ``k = 2``) is within
    1e-6 of the exact Gaussian epsilon of that shift, so the audit can be tight. Measured
    (k = 1): honest bound 0.40 at 40,000 runs, certified 0.9993; the twin's exact epsilon is
    2.15 and its bound 1.37 at 200,000 runs. ``k = 2`` doubles both the shift and ``z`` (the
    same statistics of the same keys, up to scale: the same bounds), which checks the group
    calibration at full batch.
    """
    kw = dict(DP, group_size=group_size)
    w = dp_sgd_worlds(**kw)
    assert w.epsilon == pytest.approx(w.details["exact_epsilon"], rel=1e-6)
    assert w.details["shift_over_noise"] == pytest.approx(
        group_size * np.sqrt(DP["steps"]) / w.details["noise_multiplier"], rel=1e-12)
    honest = adversarial_audit(w, key=jax.random.key(1), num_runs=40_000)
    assert honest.verdict == "consistent" and honest.epsilon_lower < w.epsilon
    tw = dp_sgd_worlds(**kw, sigma_scale=0.5)
    assert tw.epsilon == w.epsilon and tw.details["exact_epsilon"] > 2.0
    twin = adversarial_audit(tw, key=jax.random.key(2), num_runs=200_000,
                             raise_on_violation=False)
    assert twin.verdict == "violated" and twin.epsilon_lower > w.epsilon
