"""Distances to retraining, margins and KLoM against direct computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun.audits import distance, lira


def test_parameter_distance_and_agreement(rng):
    a = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=4)}
    b = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=4)}
    ref = np.sqrt(np.sum((a["w"] - b["w"]) ** 2) + np.sum((a["b"] - b["b"]) ** 2))
    assert distance.parameter_distance(a, b) == pytest.approx(ref, rel=1e-14)
    with pytest.raises(ValueError, match="structure"):
        distance.parameter_distance(a, {"w": a["w"]})
    assert distance.prediction_agreement([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75


def test_margins_match_log_odds(rng):
    z = rng.normal(size=(50, 5)) * 3
    c = rng.integers(0, 5, 50)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pc = p[np.arange(50), c]
    ref = np.log(pc) - np.log1p(-pc)
    for fn in (distance.margins, jax.jit(distance.margins)):
        np.testing.assert_allclose(np.asarray(fn(jnp.asarray(z), jnp.asarray(c))), ref,
                                   rtol=1e-9, atol=1e-9)
    with jax.disable_jit():
        np.testing.assert_allclose(np.asarray(distance.margins(z, c)), ref, rtol=1e-9, atol=1e-9)
    # binary logistic: logits (0, a) with class 1 <-> label +1
    a = rng.normal(size=20)
    y = np.where(rng.random(20) < 0.5, 1.0, -1.0)
    logits = np.stack([np.zeros(20), a], 1)
    np.testing.assert_allclose(np.asarray(distance.binary_margins(a, y)),
                               np.asarray(distance.margins(logits, (y > 0).astype(int))),
                               atol=1e-12)


def test_klom_definition_by_hand():
    p = np.array([0.0, 0.0, 1.0, 2.0])  # unlearned, one example
    q = np.array([0.0, 2.0, 2.0, 2.0])  # oracle
    # joint range [0, 2], 20 bins of width 0.1: p in bins {0: 1/2, 10: 1/4, 19: 1/4},
    # q in bins {0: 1/4, 19: 3/4}; q floored at 1e-5 in bin 10
    ref = 0.5 * np.log(0.5 / 0.25) + 0.25 * np.log(0.25 / 1e-5) + 0.25 * np.log(0.25 / 0.75)
    assert float(distance.klom(p, q)[0]) == pytest.approx(ref, rel=1e-12)
    assert float(distance.klom(q, q)[0]) == 0.0
    assert float(distance.klom(np.ones(5), np.ones(5))[0]) == 0.0  # widened range


def test_klom_null_level_matches_references(rng):
    """docs/bibliography.md §15.4: same-law samples, N = 100, 20 bins: mean about 0.335."""
    k = distance.klom(rng.normal(size=(100, 2000)), rng.normal(size=(100, 2000)))
    assert k.mean() == pytest.approx(0.335, abs=0.03)


def test_klom_report_per_split(rng):
    orc = rng.normal(size=(100, 30))
    unl = orc + np.r_[np.zeros(20), 3 * np.ones(10)][None, :] + 0.01 * rng.normal(size=(100, 30))
    ref = rng.normal(size=(100, 30))
    rep = distance.klom_report(unl, orc, {"retain": np.arange(20), "forget": np.arange(20, 30)},
                               oracle_reference=ref)
    assert rep["forget"]["p95"] > 5 * rep["retain"]["p95"]
    assert set(rep["retain"]) == {"p95", "mean", "n", "null_p95", "null_mean"}
    assert rep["forget"]["n"] == 10


def test_lira_gaussian_fits_and_scores(rng):
    inn = rng.normal(2.0, 0.5, size=(64, 7))
    out = rng.normal(0.0, 1.0, size=(64, 7))
    fit = lira.fit_gaussians(inn, out, center="mean")
    np.testing.assert_allclose(fit.mu_in, inn.mean(0))
    np.testing.assert_allclose(fit.std_out, out.std(0))
    t = np.array([2.0, 0.0])[:, None] * np.ones((2, 7))
    s = lira.likelihood_ratio(t, fit)
    assert np.all(s[0] > 0) and np.all(s[1] < 0)
    # online LiRA with a keep matrix equals the split pools
    keep = rng.random((64, 7)) < 0.5
    both = np.where(keep, inn, out)
    s2 = lira.lira_scores(t, both, keep, center="mean")
    for j in range(7):
        mi, si = inn[keep[:, j], j].mean(), inn[keep[:, j], j].std()
        mo, so = out[~keep[:, j], j].mean(), out[~keep[:, j], j].std()
        ref = (-0.5 * ((t[:, j] - mi) / si) ** 2 - np.log(si)
               + 0.5 * ((t[:, j] - mo) / so) ** 2 + np.log(so))
        np.testing.assert_allclose(s2[:, j], ref, rtol=1e-10)
    # fixed variance: one standard deviation per pool
    ff = lira.fit_gaussians(inn, out, fix_variance=True)
    assert np.ptp(ff.std_in) == 0 and np.ptp(ff.std_out) == 0
    # U-LiRA per-example AUC: 1 when unlearned models are separable from retrained ones
    member = lira.ulira_scores(rng.normal(2, 0.5, (30, 7)), inn, out)
    non = lira.ulira_scores(rng.normal(0, 1, (30, 7)), inn, out)
    assert lira.per_example_auc(member, non).min() > 0.9
    same = lira.ulira_scores(rng.normal(0, 1, (300, 7)), out, out[::-1] + 0)
    same2 = lira.ulira_scores(rng.normal(0, 1, (300, 7)), out, out[::-1] + 0)
    assert abs(lira.per_example_auc(same, same2).mean() - 0.5) < 0.05
