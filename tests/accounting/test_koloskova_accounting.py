"""Koloskova et al. accounting against independent numerical evaluations.

The references here never call certun's closed forms: the amplification-by-iteration bound is
evaluated by unrolling the shift recursion step by step
(``proofs/koloskova2025_noisy_finetuning.md`` §2, eq. (2.2)) with the optimal shift
allocation, and the order-dependent conversion by a dense grid over the order refined with
scipy's bounded scalar minimiser.
"""

import math

import numpy as np
import pytest
from scipy import optimize, stats

from certun import ValidationError
from certun.accounting import koloskova as k


def _ref_mu(sigma, steps, c0, c1, lr, lam, s0):
    """Unrolled shifted-divergence recursion (step by step, optimal shift split, feasibility)."""
    rho = 1.0 - lr * lam
    s = 2 * lr * c1
    # noise injections: the initial one (followed by T maps), then one per step t (T-1-t maps)
    sig = [s0] + [sigma] * steps
    after = [rho ** steps] + [rho ** (steps - 1 - t) for t in range(steps)]
    Z = 2 * c0
    for _ in range(steps):
        Z = rho * Z + s
    cands = []
    if sigma > 0:
        cands.append(Z * Z / (2 * sigma * sigma * sum(w * w for w in after[1:])))
    if s0 > 0:
        cands.append((2 * c0) ** 2 / (2 * s0 * s0))
    if sigma > 0 and s0 > 0:
        denom = sum((w * x) ** 2 for w, x in zip(after, sig, strict=True))
        a = [Z * w * x * x / denom for w, x in zip(after, sig, strict=True)]
        z, ok = 2 * c0 - a[0], True
        ok = z >= -1e-12
        for t in range(steps):
            z = rho * z + s - a[t + 1]
            ok = ok and z >= -1e-9 * Z
        assert abs(z) < 1e-8 * Z  # the shift is fully absorbed
        if ok:
            cands.append(0.5 * sum(x * x / (q * q) for x, q in zip(a, sig, strict=True)))
    return min(cands)


def _ref_conv(mu, delta):
    def f(la):
        a = 1.0 + math.exp(la)
        return a * mu + math.log(1 - 1 / a) - (math.log(delta) + math.log(a)) / (a - 1)

    grid = np.linspace(-12, 16, 20001)
    vals = np.array([f(x) for x in grid])
    i = int(np.argmin(vals))
    r = optimize.minimize_scalar(f, bounds=(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]),
                                 method="bounded", options={"xatol": 1e-13})
    return min(float(r.fun), float(vals[i]))


@pytest.mark.parametrize("mu", [1e-3, 0.03, 1.0, 5.4])
def test_conversion_matches_direct_minimisation(mu):
    assert k.mu_to_epsilon(mu, 1e-5)[0] == pytest.approx(_ref_conv(mu, 1e-5), rel=1e-6)


def test_reference_code_epsilon_and_what_it_really_is():
    # the authors' accountant with eps_R = 1 held constant in the order: about 1
    assert k.reference_code_epsilon(1.0, 1e-5) == pytest.approx(1.0036, abs=1e-3)
    # the same noise with D_alpha <= alpha * 1: epsilon about 7
    assert k.mu_to_epsilon(1.0, 1e-5)[0] == pytest.approx(_ref_conv(1.0, 1e-5), rel=1e-6)
    assert 6.5 < k.mu_to_epsilon(1.0, 1e-5)[0] < 7.5
    # zCDP textbook bound rho + 2 sqrt(rho ln(1/delta)) is looser (an upper bound)
    assert k.mu_to_epsilon(1.0, 1e-5)[0] <= 1 + 2 * math.sqrt(math.log(1e5))


@pytest.mark.parametrize("lam,s0,steps", [(0.0, 0.0, None), (0.01, 0.0, None), (0.05, 3.0, 37),
                                          (0.0, 1.0, 5)])
def test_gradient_clipping_sigma_matches_unrolled_bound(lam, s0, steps):
    cal = k.gradient_clipping_sigma(epsilon=1.0, delta=1e-5, init_clip=10.0, grad_clip=1.0,
                                    lr=0.1, weight_decay=lam, steps=steps, init_sigma=s0)
    mu_ref = _ref_mu(cal.sigma, cal.steps, 10.0, 1.0, 0.1, lam, s0)
    eps_ref = _ref_conv(mu_ref, 1e-5)
    assert eps_ref == pytest.approx(1.0, rel=1e-6)
    assert cal.epsilon <= 1.0 + 1e-12
    # the prescribed sigma is the smallest: 1e-6 less noise breaks the target
    if cal.sigma > 0:
        mu_less = _ref_mu(cal.sigma * (1 - 1e-5), cal.steps, 10.0, 1.0, 0.1, lam, s0)
        assert _ref_conv(mu_less, 1e-5) > 1.0
    if steps is None and lam == 0.0:
        assert cal.steps == 100  # C_0 / (eta C_1), the authors' count


def test_sigma_is_minimal_over_steps():
    cal = k.gradient_clipping_sigma(epsilon=2.0, delta=1e-5, init_clip=5.0, grad_clip=1.0,
                                    lr=0.1, weight_decay=0.02, max_steps=400)
    for T in (cal.steps - 1, cal.steps + 1, 10, 399):
        other = k.gradient_clipping_sigma(epsilon=2.0, delta=1e-5, init_clip=5.0, grad_clip=1.0,
                                          lr=0.1, weight_decay=0.02, steps=T)
        assert other.sigma >= cal.sigma * (1 - 1e-12)


def test_theta_is_the_gaussian_privacy_profile():
    for eps, r in [(0.5, 0.3), (1.0, 1.0), (3.0, 2.0), (20.0, 1.5)]:
        ref = stats.norm.cdf(-eps / r + r / 2) - math.exp(eps) * stats.norm.cdf(-eps / r - r / 2)
        assert k.theta(eps, r) == pytest.approx(ref, rel=1e-9, abs=1e-300)
        assert k.theta(eps, r) == pytest.approx(float(_mp_theta(eps, r)), rel=1e-9)


def _mp_theta(eps, r):
    """theta_eps(r) in 60-digit arithmetic (mpmath's ncdf; no cancellation)."""
    import mpmath as mp

    with mp.workdps(60):
        eps, r = mp.mpf(eps), mp.mpf(r)
        return mp.ncdf(-eps / r + r / 2) - mp.exp(eps) * mp.ncdf(-eps / r - r / 2)


def test_model_clipping_recursion_and_steps():
    import mpmath as mp

    d = k.model_clipping_deltas(epsilon=1.0, init_clip=1.0, init_sigma=2.0, model_clip=1.0,
                                sigma=1.5, steps=3)
    with mp.workdps(60):
        ref = [_mp_theta(1, mp.mpf(2) / 2)]
        for _ in range(3):
            e_t = mp.log(1 + (mp.e - 1) / ref[-1])
            ref.append(ref[-1] * _mp_theta(e_t, mp.mpf(2) / mp.mpf("1.5")))
    np.testing.assert_allclose(d, [float(x) for x in ref], rtol=1e-8)
    T = k.model_clipping_steps(epsilon=1.0, delta=1e-5, init_clip=1.0, init_sigma=2.0,
                               model_clip=1.0, sigma=1.5)
    dd = k.model_clipping_deltas(epsilon=1.0, init_clip=1.0, init_sigma=2.0, model_clip=1.0,
                                 sigma=1.5, steps=T)
    assert dd[-1] <= 1e-5 < dd[-2]
    with pytest.raises(ValidationError, match="raise sigma"):
        k.model_clipping_steps(epsilon=1.0, delta=1e-5, init_clip=1.0, init_sigma=2.0,
                               model_clip=10.0, sigma=0.01, max_steps=50)


def test_bad_input_names_the_argument():
    with pytest.raises(ValidationError, match="lr \\* weight_decay"):
        k.gradient_clipping_sigma(epsilon=1.0, delta=1e-5, init_clip=1.0, grad_clip=1.0, lr=2.0,
                                  weight_decay=1.0)
    with pytest.raises(ValidationError, match="init_clip"):
        k.pabi_mu(sigma=1.0, steps=3, init_clip=-1.0, grad_clip=1.0, lr=0.1)
