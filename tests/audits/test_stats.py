"""Audit statistics against published anchors, exact references and jax-privacy."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from certun.audits import stats
from certun.audits.distance import klom

HAS_JAX_PRIVACY = importlib.util.find_spec("jax_privacy") is not None


def test_clopper_pearson_anchor_3_242():
    """docs/bibliography.md §17.5 row A / erratum 7: 1000/1000, TP 500, FP 10, two-sided 95 %."""
    b = stats.epsilon_lower_bound(500, 1000, 10, 1000, alpha=0.05, delta=1e-5)
    assert b.epsilon == pytest.approx(3.242, abs=1e-3)
    assert b.tpr_lower == pytest.approx(0.4685, abs=1e-4)
    assert b.fpr_upper == pytest.approx(0.0183, abs=1e-4)
    assert b.point_estimate == pytest.approx(math.log(0.5 / 0.01), abs=1e-3)  # 3.912
    assert b.direction == "tpr/fpr"
    # one-sided 5 % per rate (alpha = 0.10 in this convention) gives the erratum's 3.333
    assert stats.epsilon_lower_bound(500, 1000, 10, 1000, alpha=0.10,
                                     delta=1e-5).epsilon == pytest.approx(3.333, abs=1e-3)


@pytest.mark.parametrize("n, expected", [(100, 3.281), (1000, 5.601), (10000, 7.905)])
def test_perfect_separation_caps(n, expected):
    assert stats.epsilon_lower_bound(n, n, 0, n, alpha=0.05).epsilon == pytest.approx(
        expected, abs=1e-3)


def test_gdp_estimate_anchor():
    b = stats.epsilon_lower_bound(500, 1000, 10, 1000, alpha=0.05, delta=1e-5)
    mu = scipy.stats.norm.ppf(1 - b.fpr_upper) - scipy.stats.norm.ppf(b.fnr_upper)
    assert mu == pytest.approx(2.011, abs=1e-3)
    assert stats.gdp_epsilon_estimate(b, 1e-5) == pytest.approx(10.07, abs=0.02)


@pytest.mark.parametrize("m, r, v, expected", [(1000, 100, 100, 3.465), (1000, 200, 180, 1.796),
                                               (1000, 1000, 700, 0.732),
                                               (10000, 1000, 950, 2.691)])
def test_one_run_anchors(m, r, v, expected):
    assert stats.one_run_epsilon(m, r, v, delta=1e-5) == pytest.approx(expected, abs=1e-3)


def test_clopper_pearson_matches_scipy_exact_interval():
    for k, n in [(0, 10), (3, 10), (10, 10), (500, 1000), (7, 12345)]:
        lo, hi = stats.clopper_pearson(k, n, 0.05)
        ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert float(lo) == pytest.approx(ci.low, abs=1e-12)
        assert float(hi) == pytest.approx(ci.high, abs=1e-12)


def test_second_direction_is_used():
    # many in-world runs below the threshold, few out-world: TNR / FNR dominates
    b = stats.epsilon_lower_bound(990, 1000, 900, 1000, alpha=0.05)
    assert b.direction == "tnr/fnr"
    assert b.epsilon > 0
    one = stats.epsilon_lower_bound(990, 1000, 900, 1000, both_directions=False)
    assert one.direction == "tpr/fpr" and one.epsilon < b.epsilon


def test_bad_counts_raise():
    with pytest.raises(ValueError, match="tp"):
        stats.epsilon_lower_bound(11, 10, 0, 10)
    with pytest.raises(ValueError, match="alpha"):
        stats.epsilon_lower_bound(1, 10, 0, 10, alpha=0.7)


def test_split_threshold_evaluates_only_held_out_runs(rng):
    i, o = rng.normal(1, 1, 4000), rng.normal(0, 1, 3000)
    tb = stats.epsilon_from_scores(i, o, threshold="split", split_fraction=0.25, seed=1)
    assert tb.bound.n_in == 3000 and tb.bound.n_out == 2250
    assert "separate split" in tb.rule
    fixed = stats.epsilon_from_scores(i, o, threshold=2.0)
    tp, fp = stats.counts_at_threshold(i, o, 2.0)
    assert (fixed.bound.tp, fixed.bound.fp, fixed.bound.n_in) == (tp, fp, 4000)
    assert fixed.rule == "threshold fixed in advance"
    # orientation chosen on the search split: reversed worlds give the same bound
    a = stats.epsilon_from_scores(i, o, orientation="either", seed=3)
    b = stats.epsilon_from_scores(-i, -o, orientation="either", seed=3)
    assert a.bound.epsilon == pytest.approx(b.bound.epsilon) and a.sign == -b.sign


def test_split_bound_has_its_coverage():
    """Under the null (identical worlds) the bound is 0 in at least 1 - alpha of repetitions."""
    rng = np.random.default_rng(5)
    pos = [stats.epsilon_from_scores(rng.normal(size=2000), rng.normal(size=2000),
                                     seed=s).bound.epsilon > 0 for s in range(60)]
    assert np.mean(pos) <= 0.15  # alpha = 0.05; generous for 60 repetitions


def test_auc_and_delong_against_brute_force(rng):
    x = np.round(rng.normal(0.7, 1, 60), 1)  # ties on purpose
    y = np.round(rng.normal(0.0, 1, 45), 1)
    a = stats.auc_with_ci(x, y)
    lab = np.r_[np.ones(60), np.zeros(45)]
    assert a.auc == pytest.approx(roc_auc_score(lab, np.r_[x, y]), abs=1e-12)
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    var = v10.var(ddof=1) / 60 + v01.var(ddof=1) / 45
    assert a.se == pytest.approx(math.sqrt(var), rel=1e-10)
    assert a.lower < a.auc < a.upper
    pooled = stats.pooled_auc([a, a])
    assert pooled.se == pytest.approx(a.se / math.sqrt(2))


def test_tpr_at_fpr_brute_force(rng):
    x, y = rng.normal(1, 1, 300), rng.normal(0, 1, 400)
    best = max(np.mean(x >= t) for t in np.r_[x, y, np.inf] if np.mean(y >= t) <= 0.05)
    assert stats.tpr_at_fpr(x, y, 0.05) == pytest.approx(best)


def test_klom_gaussian_anchor(rng):
    """KLoM of N(0,1) vs N(1,1) margins, 10,000 per side: KL = 0.5 within 0.05."""
    k = klom(rng.normal(0, 1, 10000), rng.normal(1, 1, 10000))
    assert abs(float(k[0]) - 0.5) < 0.05


@pytest.mark.skipif(not HAS_JAX_PRIVACY, reason="jax-privacy (the `audit` extra) not installed")
def test_matches_jax_privacy(rng):
    from jax_privacy import auditing as ja

    i, o = rng.normal(1.0, 1, 3000), rng.normal(0, 1, 2500)
    aud = ja.CanaryScoreAuditor(i, o)
    for t in (0.5, 1.7, 2.9):
        for both in (True, False):
            ref = aud.epsilon_clopper_pearson(0.05, 1e-5, one_sided=not both,
                                              threshold_strategy=ja.Explicit(t))
            mine = stats.epsilon_from_scores(i, o, delta=1e-5, threshold=t,
                                             both_directions=both).bound.epsilon
            assert mine == pytest.approx(ref, abs=1e-9)
    # (jax-privacy's attack_auroc and tpr_at_given_fpr allow randomised threshold rules --
    # the ROC convex hull, interpolated -- so they are not the deterministic quantities here;
    # they can only be larger)
    assert aud.attack_auroc() >= stats.auc(i, o) - 1e-12
    assert aud.tpr_at_given_fpr(0.01) >= stats.tpr_at_fpr(i, o, 0.01) - 1e-12
    # the anchor through jax-privacy's own code path
    ins = np.r_[np.ones(500), np.zeros(500)]
    outs = np.r_[np.ones(10), np.zeros(990)]
    ref = ja.CanaryScoreAuditor(ins, outs).epsilon_clopper_pearson(
        0.05, 1e-5, one_sided=False, threshold_strategy=ja.Explicit(0.5))
    assert ref == pytest.approx(3.242, abs=1e-3)
