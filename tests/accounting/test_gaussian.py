"""Gaussian-mechanism calibration against docs/bibliography.md §8.4 and errata item 2."""

import math

import dp_accounting
import numpy as np
import pytest
from scipy.stats import norm

from certun import accounting as acc
from certun.accounting import gaussian as g


def _naive_delta(sigma, eps, sens=1.0):
    """Direct (overflow-prone) Balle-Wang formula, for moderate epsilon only."""
    a = sens / (2 * sigma) - eps * sigma / sens
    b = -sens / (2 * sigma) - eps * sigma / sens
    return norm.cdf(a) - math.exp(eps) * norm.cdf(b)


# ----------------------------------------------------------------------------- analytic


def test_analytic_sigma_anchor_and_dp_accounting():
    z = acc.analytic_sigma(1.0, 1e-5)
    assert z == pytest.approx(3.7306, abs=1e-4)
    assert z == pytest.approx(dp_accounting.get_sigma_gaussian(1.0, 1e-5), rel=1e-12)
    # scales linearly with the sensitivity
    assert acc.analytic_sigma(1.0, 1e-5, sensitivity=2.5) == pytest.approx(2.5 * z, rel=1e-12)


# docs/bibliography.md §8.4 table: (eps, delta, classic, analytic); classic None where refused.
TABLE = [
    (0.1, 1e-5, 48.45, 30.75),
    (0.5, 1e-5, 9.690, 7.032),
    (1.0, 1e-5, 4.845, 3.731),
    (1.0, 1e-4, 4.344, 3.186),
    (2.0, 1e-5, 2.422, 1.994),
    (5.0, 1e-5, 0.969, 0.892),
    (10.0, 1e-5, 0.4845, 0.4999),
]


@pytest.mark.parametrize("eps,delta,classic,analytic", TABLE)
def test_reference_table(eps, delta, classic, analytic):
    assert acc.analytic_sigma(eps, delta) == pytest.approx(analytic, rel=1e-3)
    # the classic formula itself (evaluated by hand, since classic_sigma refuses eps >= 1)
    raw = math.sqrt(2 * math.log(1.25 / delta)) / eps
    assert raw == pytest.approx(classic, rel=1e-3)
    if eps < 1:
        assert acc.classic_sigma(eps, delta) == pytest.approx(classic, rel=1e-3)
        assert acc.classic_sigma(eps, delta, sensitivity=3.0) == pytest.approx(3 * raw, rel=1e-12)
        assert acc.analytic_sigma(eps, delta) < acc.classic_sigma(eps, delta)
    else:
        with pytest.raises(ValueError, match="epsilon"):
            acc.classic_sigma(eps, delta)


def test_classic_under_noises_at_large_epsilon():
    raw = math.sqrt(2 * math.log(1.25 / 1e-5)) / 10.0
    assert acc.gaussian_delta(raw, 10.0) > 1e-5  # the reason it is refused


@pytest.mark.parametrize("eps", [1.0, 10.0, 1.5])
def test_classic_refused_at_and_above_one(eps):
    with pytest.raises(ValueError, match="analytic"):
        acc.classic_sigma(eps, 1e-5)
    with pytest.raises(ValueError, match="epsilon"):
        acc.calibrate(eps, 1e-5, method="classic")


@pytest.mark.parametrize(
    "eps,delta", [(0.1, 1e-5), (1.0, 1e-5), (1.0, 1e-4), (5.0, 1e-6), (30.0, 1e-5)]
)
def test_gaussian_delta_at_analytic_sigma_equals_delta(eps, delta):
    s = acc.analytic_sigma(eps, delta, sensitivity=0.7)
    assert acc.gaussian_delta(s, eps, sensitivity=0.7) == pytest.approx(delta, rel=1e-6)
    # slightly less noise is no longer enough, slightly more is
    assert acc.gaussian_delta(s * (1 - 1e-4), eps, sensitivity=0.7) > delta
    assert acc.gaussian_delta(s * (1 + 1e-4), eps, sensitivity=0.7) < delta


def test_gaussian_delta_matches_naive_formula():
    for s, e in [(1.0, 0.5), (3.0, 1.0), (0.5, 2.0), (10.0, 0.1)]:
        assert acc.gaussian_delta(s, e) == pytest.approx(_naive_delta(s, e), rel=1e-9)
        assert acc.gaussian_delta(2 * s, e, sensitivity=2.0) == pytest.approx(
            _naive_delta(s, e), rel=1e-9
        )


def test_gaussian_delta_monotone_and_stable():
    sigmas = np.geomspace(0.05, 50, 60)
    d = [acc.gaussian_delta(s, 1.0) for s in sigmas]
    assert all(np.diff(d) <= 0)  # saturates at 1 (tiny sigma) and 0 (huge sigma)
    logd = [acc.log_gaussian_delta(s, 1.0) for s in np.geomspace(0.3, 30, 60)]
    assert all(np.diff(logd) < 0)
    epss = np.linspace(0.05, 40, 60)
    d = [acc.gaussian_delta(0.3, e) for e in epss]
    assert all(np.diff(d) <= 0)
    # large epsilon: no overflow, finite and in [0, 1)
    for e in [50.0, 200.0, 800.0, 1e4]:
        v = acc.gaussian_delta(0.2, e)
        assert math.isfinite(v) and 0.0 <= v < 1.0
    # at eps = 50 the naive formula still works (e^50 is finite): agree
    assert acc.gaussian_delta(0.2, 50.0) == pytest.approx(_naive_delta(0.2, 50.0), rel=1e-6)
    # at eps = 800, e^eps overflows the naive formula; the log-space one stays finite
    with np.errstate(over="ignore", invalid="ignore"):
        naive = norm.cdf(2.5 - 160.0) - np.exp(np.float64(800.0)) * norm.cdf(-2.5 - 160.0)
    assert not np.isfinite(naive) or naive <= 0
    assert -math.inf < acc.log_gaussian_delta(0.2, 800.0) < math.log(1e-300)


@pytest.mark.parametrize("sigma,delta", [(3.7306, 1e-5), (1.0, 1e-5), (0.5, 1e-3), (20.0, 1e-6)])
def test_analytic_epsilon_inverts_gaussian_delta(sigma, delta):
    e = acc.analytic_epsilon(sigma, delta)
    assert e == pytest.approx(dp_accounting.get_epsilon_gaussian(sigma, delta), rel=1e-12)
    assert acc.gaussian_delta(sigma, e) == pytest.approx(delta, rel=1e-6)
    assert acc.analytic_epsilon(2 * sigma, delta, sensitivity=2.0) == pytest.approx(e, rel=1e-9)
    assert acc.analytic_sigma(e, delta) == pytest.approx(sigma, rel=1e-8)


# ----------------------------------------------------------------------------- Guo et al.


def test_guo_c_values():
    assert acc.guo_c(1e-4) == pytest.approx(4.3854, abs=1e-4)
    assert acc.guo_c(1e-5) == pytest.approx(4.8823, abs=1e-4)
    assert 1.5 * math.exp(-acc.guo_c(1e-5) ** 2 / 2) == pytest.approx(1e-5, rel=1e-12)


def test_guo_max_epsilon_values():
    e4, e5 = acc.guo_max_epsilon(1e-4), acc.guo_max_epsilon(1e-5)
    assert 8.3 <= e4 <= 8.45
    assert 8.7 <= e5 <= 8.85
    # it is a root: Guo's sigma meets the exact requirement with equality
    for d, e in [(1e-4, e4), (1e-5, e5)]:
        assert acc.gaussian_delta(acc.guo_c(d) / e, e) == pytest.approx(d, rel=1e-8)


@pytest.mark.parametrize("delta", [1e-4, 1e-5])
def test_guo_sigma_refused_above_threshold(delta):
    emax = acc.guo_max_epsilon(delta)
    with pytest.raises(ValueError, match="epsilon"):
        acc.guo_sigma(emax * (1 + 1e-6), delta)
    with pytest.raises(ValueError, match="epsilon"):
        acc.guo_budget(10.0, emax * (1 + 1e-6), delta)
    with pytest.raises(ValueError, match="epsilon"):
        acc.calibrate(emax + 0.01, delta, method="guo")
    s = acc.guo_sigma(emax * (1 - 1e-6), delta)
    assert s == pytest.approx(acc.guo_c(delta) / (emax * (1 - 1e-6)), rel=1e-12)
    # below the threshold Guo's sigma over-noises relative to the analytic one
    for e in [0.1, 1.0, 5.0, emax * (1 - 1e-3)]:
        assert acc.guo_sigma(e, delta) >= acc.analytic_sigma(e, delta)
        assert acc.gaussian_delta(acc.guo_sigma(e, delta), e) <= delta
    # just above it the formula would under-noise (why it is refused)
    e = emax * 1.01
    assert acc.guo_c(delta) / e < acc.analytic_sigma(e, delta)


@pytest.mark.parametrize("delta", [1e-4, 1e-5])
def test_guo_sigma_equals_analytic_at_threshold(delta):
    emax = acc.guo_max_epsilon(delta)
    assert acc.guo_sigma(emax, delta, sensitivity=3.0) == pytest.approx(
        acc.analytic_sigma(emax, delta, sensitivity=3.0), rel=1e-6
    )


def test_guo_budget():
    assert acc.guo_budget(10.0, 1.0, 1e-4) == pytest.approx(2.2803, abs=1e-4)
    # budget = sigma * eps / c, i.e. guo_sigma(eps, delta, budget) == sigma
    assert acc.guo_sigma(1.0, 1e-4, sensitivity=acc.guo_budget(10.0, 1.0, 1e-4)) == pytest.approx(
        10.0, rel=1e-12
    )


# ----------------------------------------------------------------------------- calibrate


def test_calibrate_methods_and_names():
    c = acc.calibrate(1.0, 1e-5, 2.0)
    assert isinstance(c, acc.Calibration)
    assert c.method == "analytic_gaussian" == acc.ANALYTIC_GAUSSIAN
    assert c.sigma == pytest.approx(2 * 3.7306316, rel=1e-6)
    assert (c.epsilon, c.delta, c.sensitivity) == (1.0, 1e-5, 2.0)
    c = acc.calibrate(0.5, 1e-5, method="classic")
    assert c.method == "classic_gaussian" and c.sigma == pytest.approx(9.690, rel=1e-3)
    c = acc.calibrate(1.0, 1e-4, 1.0, method="guo")
    assert c.method == "guo_c" and c.sigma == pytest.approx(4.3854, abs=1e-4)
    assert acc.calibrate(1.0, 1e-4, method="guo_c").sigma == c.sigma
    with pytest.raises(ValueError, match="method"):
        acc.calibrate(1.0, 1e-5, method="laplace")


# ----------------------------------------------------------------------------- validation

BAD_EPS = [0.0, -1.0, float("nan"), float("inf")]
BAD_DELTA = [0.0, 1.0, 1.5, -1e-5, float("nan")]


def _calls_with(arg, value):
    """Every public function called with ``arg`` set to ``value`` (others valid)."""
    e, d, s, sig = 1.0 if arg != "epsilon" else value, 1e-5, 1.0, 4.0
    if arg == "delta":
        d = value
    if arg == "sensitivity":
        s = value
    if arg == "sigma":
        sig = value
    eps_small = 0.5 if arg != "epsilon" else value
    calls = {
        "epsilon": [
            lambda: acc.classic_sigma(eps_small, d, s),
            lambda: acc.analytic_sigma(e, d, s),
            lambda: acc.gaussian_delta(sig, e, s),
            lambda: acc.guo_sigma(e, d, s),
            lambda: acc.guo_budget(sig, e, d),
            lambda: acc.calibrate(e, d, s),
        ],
        "delta": [
            lambda: acc.classic_sigma(eps_small, d, s),
            lambda: acc.guo_c(d),
            lambda: acc.analytic_sigma(e, d, s),
            lambda: acc.analytic_epsilon(sig, d, s),
            lambda: acc.guo_max_epsilon(d),
            lambda: acc.guo_sigma(e, d, s),
            lambda: acc.guo_budget(sig, e, d),
            lambda: acc.calibrate(e, d, s, method="guo"),
        ],
        "sensitivity": [
            lambda: acc.classic_sigma(eps_small, d, s),
            lambda: acc.analytic_sigma(e, d, s),
            lambda: acc.gaussian_delta(sig, e, s),
            lambda: acc.analytic_epsilon(sig, d, s),
            lambda: acc.guo_sigma(e, d, s),
            lambda: acc.calibrate(e, d, s),
        ],
        "sigma": [
            lambda: acc.gaussian_delta(sig, e, s),
            lambda: acc.analytic_epsilon(sig, d, s),
            lambda: acc.guo_budget(sig, e, d),
        ],
    }
    return calls[arg]


@pytest.mark.parametrize("value", BAD_EPS)
def test_bad_epsilon(value):
    for call in _calls_with("epsilon", value):
        with pytest.raises(ValueError, match="epsilon"):
            call()


@pytest.mark.parametrize("value", BAD_DELTA)
def test_bad_delta(value):
    for call in _calls_with("delta", value):
        with pytest.raises(ValueError, match="delta"):
            call()


@pytest.mark.parametrize("value", [0.0, -2.0, float("nan"), float("inf")])
def test_bad_sensitivity(value):
    for call in _calls_with("sensitivity", value):
        with pytest.raises(ValueError, match="sensitivity"):
            call()


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_sigma(value):
    for call in _calls_with("sigma", value):
        with pytest.raises(ValueError, match="sigma"):
            call()


def test_non_numeric_argument_named():
    with pytest.raises(ValueError, match="epsilon"):
        acc.analytic_sigma("one", 1e-5)
    with pytest.raises(ValueError, match="delta"):
        g.guo_c(None)
