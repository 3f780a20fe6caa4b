"""Composition of Gaussian releases (docs/bibliography.md §8.5)."""

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant

from certun import accounting as acc

DELTA = 1e-5
Z = 3.7306316348159374  # the (1, 1e-5) analytic noise multiplier


def _exact_composed_epsilon(zs, delta):
    """Exact composition: k Gaussians are one Gaussian with z = (sum z_i^-2)^-1/2 (mu-GDP)."""
    z = 1.0 / math.sqrt(sum(1.0 / z_i**2 for z_i in zs))
    return acc.analytic_epsilon(z, delta)


def test_single_release_matches_analytic_epsilon():
    for z in [0.8, Z, 12.0]:
        c = acc.compose_gaussian(z, DELTA)
        exact = acc.analytic_epsilon(z, DELTA)
        assert c.epsilon == pytest.approx(exact, rel=1e-4, abs=1e-4)
        assert c.epsilon >= exact - 1e-9  # PLD discretisation is pessimistic
        assert c == acc.Composition(c.epsilon, DELTA, 1, "pld", "removal")
    assert acc.compose_gaussian(Z, DELTA).epsilon == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("zs", [[Z] * 7, [1.5, 3.0, 3.0, 8.0], [2.0, 5.0]])
def test_pld_matches_exact_gaussian_composition(zs):
    c = acc.compose_gaussian(zs, DELTA)
    assert c.releases == len(zs)
    exact = _exact_composed_epsilon(zs, DELTA)
    assert c.epsilon == pytest.approx(exact, rel=1e-3)
    assert c.epsilon >= exact - 1e-9
    # RDP is a valid but looser upper bound
    r = acc.compose_gaussian(zs, DELTA, accountant="rdp")
    assert r.epsilon > exact


def test_scalar_with_count_equals_sequence():
    a = acc.compose_gaussian(Z, DELTA, count=5)
    b = acc.compose_gaussian([Z] * 5, DELTA)
    assert a.releases == b.releases == 5
    assert a.epsilon == pytest.approx(b.epsilon, rel=1e-9)
    for accountant in ("pld", "rdp"):
        assert acc.compose_gaussian(Z, DELTA, accountant=accountant).releases == 1


@pytest.mark.parametrize("k", [2, 5, 10, 50])
def test_pld_le_rdp_le_basic(k):
    """Same total delta for all three: basic gives each release delta/k.

    Basic composition then spends k * analytic_epsilon(z, delta/k). For k = 1 it is
    exact and beats RDP (see the next test); from k = 2 on RDP wins.
    """
    pld = acc.compose_gaussian(Z, DELTA, count=k).epsilon
    rdp = acc.compose_gaussian(Z, DELTA, count=k, accountant="rdp").epsilon
    eps_each = acc.analytic_epsilon(Z, DELTA / k)
    basic_eps, basic_delta = acc.compose_basic(eps_each, DELTA / k, k)
    assert basic_delta == pytest.approx(DELTA, rel=1e-12)
    assert pld < rdp < basic_eps
    # advanced composition at the same total delta is a valid bound too, so above PLD
    adv_eps, adv_delta = acc.compose_advanced(
        acc.analytic_epsilon(Z, DELTA / (2 * k)), DELTA / (2 * k), k, DELTA / 2
    )
    assert adv_delta == pytest.approx(DELTA, rel=1e-12)
    assert pld < adv_eps


def test_single_release_ordering():
    # one release: basic is the exact analytic epsilon, PLD ~ equal, RDP strictly looser
    pld = acc.compose_gaussian(Z, DELTA).epsilon
    rdp = acc.compose_gaussian(Z, DELTA, accountant="rdp").epsilon
    basic = acc.compose_basic(acc.analytic_epsilon(Z, DELTA), DELTA, 1)[0]
    assert basic <= pld + 1e-6 < rdp
    assert basic == pytest.approx(pld, rel=1e-6)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_monotone_in_k(accountant):
    eps = [acc.compose_gaussian(Z, DELTA, count=k, accountant=accountant).epsilon
           for k in [1, 2, 3, 5, 8, 13, 40]]
    assert all(np.diff(eps) > 0)
    # adding a release to a heterogeneous sequence also increases epsilon
    a = acc.compose_gaussian([2.0, 4.0], DELTA, accountant=accountant).epsilon
    b = acc.compose_gaussian([2.0, 4.0, 9.0], DELTA, accountant=accountant).epsilon
    assert b > a


def test_rdp_accountant_equals_gaussian_rdp_curve():
    k = 6
    orders = np.asarray(rdp_privacy_accountant.DEFAULT_RDP_ORDERS, dtype=float)
    curve = k * acc.gaussian_rdp(orders, Z)
    eps_tight, _ = acc.rdp_to_dp_tight(curve, orders, DELTA)
    got = acc.compose_gaussian(Z, DELTA, count=k, accountant="rdp").epsilon
    assert got == pytest.approx(eps_tight, rel=1e-9)


def test_replacement_adjacency():
    """With z measured against the replace-one sensitivity the curve is the same.

    dp-accounting's PLD accountant, given REPLACE_ONE, instead treats z as relative to
    the removal sensitivity and doubles the shift; 2z under REPLACE_ONE equals z under
    ADD_OR_REMOVE_ONE. This pins the convention certun documents.
    """
    for accountant in ("pld", "rdp"):
        r = acc.compose_gaussian(Z, DELTA, count=3, accountant=accountant, adjacency="replacement")
        m = acc.compose_gaussian(Z, DELTA, count=3, accountant=accountant, adjacency="removal")
        assert r.adjacency == "replacement" and m.adjacency == "removal"
        assert r.epsilon == pytest.approx(m.epsilon, rel=1e-12)
    pld = dp_accounting.pld.PLDAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    pld.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(2 * Z), 3))
    assert pld.get_epsilon(DELTA) == pytest.approx(
        acc.compose_gaussian(Z, DELTA, count=3, adjacency="replacement").epsilon, rel=1e-6
    )


def test_compose_gaussian_validation():
    with pytest.raises(ValueError, match="count"):
        acc.compose_gaussian([1.0, 2.0], DELTA, count=3)
    with pytest.raises(ValueError, match="count"):
        acc.compose_gaussian(1.0, DELTA, count=0)
    with pytest.raises(ValueError, match="noise_multipliers"):
        acc.compose_gaussian([1.0, 0.0], DELTA)
    with pytest.raises(ValueError, match="noise_multipliers"):
        acc.compose_gaussian(-1.0, DELTA)
    with pytest.raises(ValueError, match="noise_multipliers"):
        acc.compose_gaussian([], DELTA)
    with pytest.raises(ValueError, match="noise_multipliers"):
        acc.compose_gaussian("abc", DELTA)
    with pytest.raises(ValueError, match="delta"):
        acc.compose_gaussian(1.0, 0.0)
    with pytest.raises(ValueError, match="accountant"):
        acc.compose_gaussian(1.0, DELTA, accountant="moments")
    with pytest.raises(ValueError, match="adjacency"):
        acc.compose_gaussian(1.0, DELTA, adjacency="add")


def test_basic_and_advanced_formulas():
    assert acc.compose_basic(0.5, 1e-6, 4) == pytest.approx((2.0, 4e-6))
    eps, delta = acc.compose_advanced(0.1, 1e-6, 100, 1e-5)
    expected = math.sqrt(2 * 100 * math.log(1e5)) * 0.1 + 100 * 0.1 * (math.exp(0.1) - 1)
    assert eps == pytest.approx(expected, rel=1e-12)
    assert delta == pytest.approx(100 * 1e-6 + 1e-5, rel=1e-12)
    # advanced beats basic for many small-epsilon releases
    assert eps < acc.compose_basic(0.1, 1e-6, 100)[0]
    with pytest.raises(ValueError, match="k"):
        acc.compose_basic(0.5, 1e-6, 0)
    with pytest.raises(ValueError, match="delta_prime"):
        acc.compose_advanced(0.1, 1e-6, 10, 0.0)
    with pytest.raises(ValueError, match="epsilon"):
        acc.compose_basic(0.0, 1e-6, 3)


# ----------------------------------------------------------------------------- RDP


def test_gaussian_rdp():
    assert acc.gaussian_rdp(2.0, 1.0) == pytest.approx(1.0)
    a = np.array([1.5, 2.0, 10.0])
    np.testing.assert_allclose(acc.gaussian_rdp(a, 2.0), a / 8.0, rtol=1e-15)
    with pytest.raises(ValueError, match="noise_multiplier"):
        acc.gaussian_rdp(2.0, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        acc.gaussian_rdp(1.0, 1.0)


@pytest.mark.parametrize("z,k,delta", [(Z, 1, 1e-5), (2.0, 10, 1e-5), (10.0, 3, 1e-3)])
def test_rdp_to_dp_simple_closed_form(z, k, delta):
    log_inv_delta = math.log(1.0 / delta)
    orders = np.linspace(1.0005, 400.0, 800_000)
    eps, best = acc.rdp_to_dp_simple(k * acc.gaussian_rdp(orders, z), orders, delta)
    # independent evaluation on the same grid
    brute = np.min(k * orders / (2 * z * z) + log_inv_delta / (orders - 1))
    assert eps == pytest.approx(brute, rel=1e-12)
    # continuous optimum: alpha* = 1 + (z/sqrt k) sqrt(2 ln(1/delta)),
    # eps* = k/(2 z^2) + sqrt(2 k ln(1/delta)) / z
    zk = z / math.sqrt(k)
    assert best == pytest.approx(1 + zk * math.sqrt(2 * log_inv_delta), rel=1e-3)
    closed = 1 / (2 * zk * zk) + math.sqrt(2 * log_inv_delta) / zk
    assert eps == pytest.approx(closed, rel=1e-8)


def test_rdp_to_dp_tight_le_simple():
    orders = np.asarray(rdp_privacy_accountant.DEFAULT_RDP_ORDERS, dtype=float)
    rng = np.random.default_rng(1)
    curves = [acc.gaussian_rdp(orders, z) * k for z in [0.5, 1.0, Z, 20.0] for k in [1, 10]]
    # non-Gaussian curves (convex, increasing), as for Langevin unlearning
    curves += [0.01 * orders**1.5 * s for s in rng.uniform(0.1, 3, size=4)]
    for curve in curves:
        for delta in [1e-3, 1e-5, 1e-8]:
            tight, _ = acc.rdp_to_dp_tight(curve, orders, delta)
            simple, _ = acc.rdp_to_dp_simple(curve, orders, delta)
            assert 0 <= tight <= simple
    # on the Gaussian curve it is dp-accounting's conversion, strictly tighter
    curve = 5 * acc.gaussian_rdp(orders, Z)
    tight, order = acc.rdp_to_dp_tight(curve, orders, DELTA)
    ref, ref_order = rdp_privacy_accountant.compute_epsilon(orders, curve, DELTA)
    assert tight == pytest.approx(ref, rel=1e-12) and order == ref_order
    assert tight < acc.rdp_to_dp_simple(curve, orders, DELTA)[0] - 0.05


def test_rdp_conversion_validation():
    with pytest.raises(ValueError, match="rdp_curve"):
        acc.rdp_to_dp_simple([0.1, 0.2], [2.0, 3.0, 4.0], 1e-5)
    with pytest.raises(ValueError, match="rdp_curve"):
        acc.rdp_to_dp_tight([0.1, float("nan")], [2.0, 3.0], 1e-5)
    with pytest.raises(ValueError, match="rdp_curve"):
        acc.rdp_to_dp_tight([0.1, -0.2], [2.0, 3.0], 1e-5)
    with pytest.raises(ValueError, match="orders"):
        acc.rdp_to_dp_simple([0.1, 0.2], [1.0, 3.0], 1e-5)
    with pytest.raises(ValueError, match="delta"):
        acc.rdp_to_dp_simple([0.1], [2.0], 1.0)
    # an infinite RDP value at some order is allowed (that order is just unusable)
    eps, order = acc.rdp_to_dp_tight([float("inf"), 0.5], [2.0, 3.0], 1e-5)
    assert math.isfinite(eps) and order == 3.0
