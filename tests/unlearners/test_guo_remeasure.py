"""Remeasuring the residual (``remeasure=True``): exact value, what it serves, the policy."""

import jax
import numpy as np
import pytest

from certun import ValidationError
from certun.primitives.spectral import UNIT_ROUNDOFF
from certun.unlearners import certified_removal

LAM = 1e-2
SIGMA = 0.3  # budget 0.0684: the accumulated bounds spend it within ~6 (pcg) / ~25 (cached)


def gradient_np(st, lam, fro2_bound=True):
    """``X_rem^T l'(X_rem w) + lam n_rem w + b`` (sum scale, with b; one head, NumPy).

    Also the magnitude and margin terms of its rounding allowance, and ``n_rem``. A request
    bounds the allowance's row sums by Cauchy-Schwarz with the stored ``fro2``
    (``fro2_bound``); training sums the row norms.
    """
    X, Y = np.asarray(st.X, np.float64), np.asarray(st.Y, np.float64)[:, 0]
    keep = np.asarray(st.mask) > 0
    w, b = np.asarray(st.W, np.float64)[:, 0], np.asarray(st.b, np.float64)[:, 0]
    Xr, yr = X[keep], Y[keep]
    d1 = -yr / (1 + np.exp(yr * (Xr @ w)))
    g = Xr.T @ d1 + lam * keep.sum() * w + b
    if fro2_bound:
        F = np.sqrt(float(st.fro2) * (1 + 1.01 * (X.size + 2) * UNIT_ROUNDOFF))
        lsum, xsum = np.linalg.norm(d1) * F, np.sqrt(keep.sum()) * F
    else:
        norms = np.linalg.norm(Xr, axis=1)
        lsum, xsum = np.sum(np.abs(d1) * norms), np.sum(norms)
    mag = lsum + lam * keep.sum() * np.linalg.norm(w) + np.linalg.norm(b)
    margin = 0.25 * np.linalg.norm(w) * xsum  # l''_max = 1/4
    return g, float(mag), float(margin), int(keep.sum())


def allowance_np(mag, margin, n, d):
    """The measured residual's rounding allowance (``guo_accountant.measured_residual``)."""
    return (n + d + 2) * UNIT_ROUNDOFF * mag + 1.01 * (d + 4) * UNIT_ROUNDOFF * margin


def _residual_np(st, lam):
    """``||X_rem^T l'(X_rem w) + lam n_rem w + b||`` (sum scale, with b) and its allowances."""
    g, mag, margin, n = gradient_np(st, lam)
    return float(np.linalg.norm(g)), mag, margin, n


@pytest.mark.parametrize("update", ["cached", pytest.param("pcg", marks=pytest.mark.slow)])
def test_remeasure_restarts_the_bound_from_the_exact_residual(digits38, update):
    kw = dict(lam=LAM, sigma=SIGMA, epsilon=1.0, delta=1e-4, update=update, diagnose=True,
              refresh_cost_ratio=None)  # no policy refreshes on either path
    plain = certified_removal(**kw)
    meas = certified_removal(**kw, remeasure=True)
    st0 = plain.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    # without remeasuring, the accumulated bound refuses a request within 40
    # (first trying a refresh, which is where the two paths part)
    st, refused = st0, None
    for i in range(40):
        res = plain.unlearn(st, [i])
        if res.outcome != "unlearned" or res.diagnostics.get("refreshed") == "budget":
            refused = i
            break
        st = res.state
    assert refused is not None and res.certificate.budget.used > res.certificate.budget.total
    # with it, the same sequence is served: every certificate covers the true residual,
    # and a remeasured request charges ||grad L_b|| + its rounding allowance exactly
    st, seen, prev_R = st0, 0, float(st0.residual_bound)
    for i in range(40):
        res = meas.unlearn(st, [i])
        assert res.outcome == "unlearned" and res.certificate.valid
        dg = res.diagnostics
        assert dg["residual_bound_before"] == pytest.approx(prev_R, rel=1e-12)
        assert dg["true_residual"] <= res.certificate.budget.used <= res.certificate.budget.total
        if "residual_remeasured" in dg:
            seen += 1
            g, mag, margin, n = _residual_np(res.state, LAM)
            allowance = allowance_np(mag, margin, n, st0.X.shape[1])
            assert dg["residual_remeasured"] == pytest.approx(g + allowance, rel=1e-9)
            assert dg["residual_bound_accumulated"] > res.certificate.budget.total
            assert res.certificate.budget.used == pytest.approx(dg["residual_remeasured"],
                                                                rel=1e-12)
            assert float(res.state.residual_bound) == res.certificate.budget.used
            assert dg["seconds_remeasure"] > 0
        prev_R = res.certificate.budget.used
        st = res.state
    assert seen >= 2
    # the published model is the one the plain path publishes until the budget binds: remeasuring
    # changes the bookkeeping, not the step
    st_a, st_b = st0, st0
    for i in range(refused):
        st_a, st_b = plain.unlearn(st_a, [i]).state, meas.unlearn(st_b, [i]).state
    np.testing.assert_array_equal(np.asarray(st_a.W), np.asarray(st_b.W))


def test_remeasure_replaces_the_refresh_policy(digits38):
    kw = dict(lam=LAM, sigma=10.0, epsilon=8.0, delta=1e-4, update="cached",
              refresh_cost_ratio=0.05)
    st0 = certified_removal(**kw).init(digits38.X_train, digits38.y_train, jax.random.key(2))
    fired = {}
    for rm in (False, True):
        unl, st, n = certified_removal(**kw, remeasure=rm), st0, 0
        for i in range(40):
            res = unl.unlearn(st, [i])
            assert res.outcome == "unlearned"
            n += res.diagnostics["refreshed_after"] == "policy"
            st = res.state
        fired[rm] = n
    assert fired[False] >= 1 and fired[True] == 0


def test_remeasure_that_does_not_fit_still_retrains(digits38):
    # a budget below the training residual itself: nothing fits, remeasured or not
    unl = certified_removal(lam=LAM, sigma=SIGMA, epsilon=1.0, delta=1e-4, update="pcg",
                            remeasure=True, auto_retrain=True)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    budget = unl.unlearn(st, [0]).certificate.budget.total
    tight = certified_removal(lam=LAM, sigma=SIGMA * 1e-8, epsilon=1.0, delta=1e-4,
                              update="pcg", remeasure=True)
    res = tight.unlearn(st, [0])
    assert res.outcome == "retrain_required" and not res.certificate.valid
    assert res.diagnostics["residual_remeasured"] > res.certificate.budget.total
    assert budget > res.certificate.budget.total


def test_remeasure_must_be_a_bool():
    with pytest.raises(ValidationError, match="remeasure must be True or False"):
        certified_removal(lam=LAM, sigma=1.0, epsilon=1.0, delta=1e-4, remeasure="yes",
                          update="pcg")


def test_remeasure_refreshes_when_the_measurements_it_saves_outweigh_it(digits38):
    """After a measurement, refresh iff ``t min(s_t, B) - S_t >= rho B``.

    The renewal rule in measurements: ``S_t`` the capped staleness since the factorisation,
    ``rho`` a refresh's cost in measurements.
    """
    from certun.bounds import guo_accountant as ga

    unl = certified_removal(lam=LAM, sigma=SIGMA, epsilon=1.0, delta=1e-4, update="cached",
                            remeasure=True, diagnose=True)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    n, d = st.X.shape
    rho = ga.refresh_cost(n, d, "eigh")
    # the cost model: a refresh is (d/2 + 10 d^2/(4n)) / GEMM_SPEEDUP gradients (eigh)
    assert rho == pytest.approx((d / 2 + 10 * d * d / (4 * n)) / ga.GEMM_SPEEDUP, rel=1e-15)
    assert ga.refresh_cost(10 * n, d, "cholesky") < rho
    fired = kept = 0
    budget = unl.unlearn.ctx.acc.budget
    for i in range(60):
        since, S_prev = int(st.steps_since_factor), float(st.stale_sum)
        res = unl.unlearn(st, [i])
        assert res.outcome == "unlearned" and res.certificate.valid
        dg = res.diagnostics
        # the certificate holds against the exact residual, recomputed in NumPy
        g, mag, margin, n_rem = _residual_np(res.state, LAM)
        assert g <= dg["true_residual"] * (1 + 1e-9) + 1e-12
        assert g <= res.certificate.budget.used <= res.certificate.budget.total
        s_t = dg["step_staleness_bound"]
        S = S_prev + min(s_t, budget)  # each request's staleness capped at the budget
        if "residual_remeasured" in dg:
            charge = (dg["step_remainder_bound"] + dg["step_solver_residual"]
                      + dg["step_rounding_allowance"])
            worth = s_t > 0 and (since + 1) * min(s_t, budget) - S >= rho * budget
            assert (dg["refreshed_after"] == "remeasure") == worth
            # the host rule says the same as the device's verdict
            why, _ = ga.refresh_after(unl.unlearn.ctx.acc, dg, since, S, None,
                                      res.certificate.budget.used, charge, 0, rho)
            assert (why == "remeasure") == worth
            if worth:
                fired += 1
                assert int(res.state.steps_since_factor) == 0
                np.testing.assert_array_equal(np.asarray(res.state.W_factor),
                                              np.asarray(res.state.W))
            else:
                kept += 1
                assert int(res.state.steps_since_factor) > 0
                assert float(res.state.stale_sum) == pytest.approx(S, rel=1e-12)
        else:
            assert dg["refreshed_after"] is None
        st = res.state
    assert fired >= 1 and kept >= 1


def test_a_measured_gradient_is_cancelled_by_the_next_step(digits38):
    """§5b: a measured gradient is kept and cancelled by the next step.

    The next step solves for ``Delta - g`` and carries over only ``||grad - g||``.
    """
    # enough Neumann terms that the cached solve matches a dense one to ~1e-10
    unl = certified_removal(lam=LAM, sigma=SIGMA, epsilon=1.0, delta=1e-4, update="cached",
                            remeasure=True, diagnose=True, refresh_cost_ratio=None,
                            neumann_terms=12)
    st = unl.init(digits38.X_train, digits38.y_train, jax.random.key(0))
    assert np.all(np.asarray(st.grad_known) == 0) and np.isinf(float(st.grad_known_err))
    d = st.X.shape[1]
    corrected = 0
    for i in range(40):
        known = np.isfinite(float(st.grad_known_err))
        res = unl.unlearn(st, [i])
        assert res.outcome == "unlearned" and res.certificate.valid
        dg = res.diagnostics
        used = res.certificate.budget.used
        assert dg["true_residual"] <= used
        charge = (dg["step_remainder_bound"] + dg["step_solver_residual"]
                  + dg["step_rounding_allowance"])
        if known:  # carried: the measurement's error, not the previous bound
            corrected += 1
            assert dg["residual_carried"] == float(st.grad_known_err)
            assert dg["residual_carried"] < dg["residual_bound_before"]
            after = dg.get("residual_bound_accumulated", used)
            assert after == pytest.approx(dg["residual_carried"] + charge, rel=1e-12)
            # the step is the dense Newton step on Delta - g: the curvature at w_f of the
            # remaining rows plus lambda n, solved directly
            X, Y = np.asarray(st.X), np.asarray(st.Y)[:, 0]
            keep = np.asarray(res.state.mask) > 0
            wf, w = np.asarray(st.W_factor)[:, 0], np.asarray(st.W)[:, 0]
            p = 1 / (1 + np.exp(-(X[keep] @ wf)))
            T = (X[keep].T * (p * (1 - p))) @ X[keep] + LAM * keep.sum() * np.eye(d)
            Delta = X[i] * (-Y[i] / (1 + np.exp(Y[i] * (X[i] @ w)))) + LAM * w
            step = np.linalg.solve(T, Delta - np.asarray(st.grad_known)[:, 0])
            np.testing.assert_allclose(np.asarray(res.state.W)[:, 0] - w, step, rtol=1e-7,
                                       atol=1e-9 * np.linalg.norm(step))
        else:
            assert "residual_carried" not in dg
        new = res.state
        if "residual_remeasured" in dg:
            # the kept gradient is the exact one at the new model (NumPy), its error the
            # measurement's rounding allowance
            g, mag, margin, n = gradient_np(new, LAM)
            np.testing.assert_allclose(np.asarray(new.grad_known)[:, 0], g, rtol=1e-9,
                                       atol=1e-12 * np.linalg.norm(g))
            assert float(new.grad_known_err) == pytest.approx(allowance_np(mag, margin, n, d),
                                                              rel=1e-9, abs=0)
        else:
            assert np.all(np.asarray(new.grad_known) == 0)
            assert np.isinf(float(new.grad_known_err))
        st = new
    assert corrected >= 2
