"""Sekhari et al.'s sensitivity against the measured distance to retraining."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun.bounds import sekhari as sb
from certun.data import synthetic_logistic
from certun.models import glm
from certun.unlearners import newton_unlearning


def test_gamma_paper_formula_and_reduction():
    M, L, lam, n, m = 0.25, 1.0, 1e-2, 11982, 100
    assert sb.gamma_paper(M, L, lam, n, m) == pytest.approx(2 * M * m**2 * L**2 / (lam**3 * n**2))
    assert sb.sensitivity(M, L, lam, n, m) == pytest.approx(sb.gamma_paper(M, L, lam, n, m),
                                                            rel=1e-14)
    assert sb.sensitivity(M, L, lam, n, m, variant="tight") == pytest.approx(
        sb.gamma_paper(M, L, lam, n, m) / 4, rel=1e-14)
    # docs/bibliography.md §3 table: lambda = 1e-2, m = 1 -> sigma 0.017 at (1, 1e-5)
    # with M=0.25, L=1
    from certun.accounting import classic_sigma

    g = sb.gamma_paper(0.25, 1.0, 1e-2, 11982, 1)
    assert classic_sigma(0.999, 1e-5, g) == pytest.approx(0.017, rel=0.02)
    assert sb.lipschitz_ridge(0.01, 1.0) == pytest.approx(10 + 1 + 0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_newton_error_and_distance_bounds_hold(seed):
    ds = synthetic_logistic(300, 8, seed=seed)
    lam, tau = 0.05, 1e-10
    unl = newton_unlearning(lam=lam, epsilon=0.5, delta=1e-5, max_removals=50, train_tol=tau)
    st = unl.init(ds.X_train, ds.y_train, jax.random.key(seed))
    rng = np.random.default_rng(seed)
    n = ds.X_train.shape[0]
    M, L = glm.LOGISTIC.gamma, sb.lipschitz_logistic(lam, tau)
    removed = []
    for m_step in (1, 4, 10):
        kept = np.setdiff1d(np.arange(n), removed)
        new = [int(i) for i in rng.choice(kept, m_step, replace=False)]
        removed += new
        res = unl.unlearn(st, new)
        st = res.state
        m = len(removed)
        ret = unl.retrain(st).params  # exact retraining A(S \ U), noiseless
        assert ret.shape == unl.params(st).shape  # published form: no broadcasting below
        dist_hat = float(jnp.linalg.norm(st.W_hat[:, 0] - ret))
        err = float(jnp.linalg.norm(st.W_bar[:, 0] - ret))
        assert dist_hat <= sb.distance_bound(L, lam, n, m, tau, "tight") + 1e-12
        assert dist_hat <= sb.distance_bound(L, lam, n, m, tau, "paper") + 1e-12
        # Newton error (M / 2 lambda) D^2 with the measured D, plus tolerances
        assert err <= M * dist_hat**2 / (2 * lam) + 2 * tau / lam + 1e-12
        assert err <= res.certificate.sensitivity
        assert res.certificate.status == "holds"
        assert res.certificate.sensitivity == pytest.approx(
            sb.sensitivity(M, L, lam, n, 50, tau, 1e-9))
        assert err <= sb.sensitivity(M, L, lam, n, m, tau, 1e-9)  # also the bound for this m
