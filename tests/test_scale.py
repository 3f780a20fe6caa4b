"""Each loss-scale conversion against a published number (see proofs/loss_scales.md)."""

import numpy as np
import pytest

from certun import scale
from certun.accounting import guo_budget, guo_c


def test_langevin_lambda_conversion_matches_paper():
    # Chien et al. (MNIST 3v8): lambda = 1e-6 in their scale, n = 11,982 -> m = lambda n
    lam = scale.lam_from_langevin(1e-6, 11982)
    assert lam == pytest.approx(0.011982, rel=1e-12)
    assert scale.lam_to_langevin(lam, 11982) == pytest.approx(1e-6, rel=1e-12)
    # loose smoothness 1/4 + lambda n
    assert scale.logistic_smoothness(lam) == pytest.approx(0.261982, rel=1e-12)
    # data-dependent smoothness lambda_max(X^T X)/(4n) + lambda n = 0.19470 in the authors' run
    lam_max = (0.19470 - 0.011982) * 4 * 11982
    assert scale.logistic_smoothness(lam, lam_max, 11982) == pytest.approx(0.19470, rel=1e-12)
    with pytest.raises(ValueError):
        scale.logistic_smoothness(lam, lam_max)


def test_sklearn_C_roundtrip():
    assert scale.sklearn_C(1e-3, 11982) == pytest.approx(1 / 11.982)
    assert scale.lam_from_sklearn_C(scale.sklearn_C(0.02, 357), 357) == pytest.approx(0.02)


def test_guo_budget_is_on_the_sum_scale():
    # Guo et al.: sigma = 10, epsilon = 1, delta = 1e-4 -> c = 4.3854, budget 2.2803 (sum scale)
    assert guo_c(1e-4) == pytest.approx(4.3854, abs=1e-4)
    assert guo_budget(10.0, 1.0, 1e-4) == pytest.approx(2.2803, abs=1e-4)
    # a mean-scale gradient of norm g is a sum-scale one of norm n g
    g = np.array([0.3, -0.4])
    assert np.linalg.norm(scale.mean_to_sum_gradient(g, 100)) == pytest.approx(50.0)
    assert np.allclose(scale.sum_to_mean_gradient(scale.mean_to_sum_gradient(g, 7), 7), g)
