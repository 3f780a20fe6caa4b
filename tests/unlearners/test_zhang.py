"""Zhang et al.'s unlearner: certificate states, min(bound, 2C), noise, modes, solvers.

Also sequential requests from the noiseless model and argument checks (float64, tiny models).
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from certun._tree import tree_norm, tree_sub
from certun.accounting import analytic_epsilon, analytic_sigma
from certun.certificate import Certificate
from certun.data import load_digits
from certun.nn import TrainConfig, check_params_in_ball, mlp, radius_bound
from certun.unlearners import zhang_unlearning

FORGET = np.arange(0, 180, 9)  # 20 of 180 rows


@pytest.fixture(scope="module")
def digits():
    ds = load_digits()
    return ds.X_train[:180], ds.y_train[:180]


@pytest.fixture(scope="module")
def mlp_setup(digits):
    """A tanh MLP (610 parameters): nonconvex at its trained point."""
    X, y = digits
    net = mlp(64, (8,), 10, "tanh", input_scale=8.0)
    cfg = TrainConfig(epochs=150, batch_size=None, learning_rate=1e-2, weight_decay=1e-3,
                      radius=10.0, log_every=150, dtype="float64")
    unl = zhang_unlearning(net, cfg, lam=0.5, sigma=0.05, hessian_lipschitz=1.0, lam_min="exact")
    st = unl.init(X, y, jax.random.key(0))
    return net, cfg, unl, st


def test_holds_at_2C_on_a_network(mlp_setup):
    net, cfg, unl, st = mlp_setup
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # sigma sqrt(p) = 1.2 < C: no noise warning
        res = unl.unlearn(st, FORGET)
    cert = res.certificate
    assert res.outcome == "unlearned" and cert.status == "holds" and cert.valid
    assert cert.threat == "indistinguishable_from_retraining"
    C_safe = radius_bound(cfg.radius, 610, jnp.float64)
    # lambda_min < 0 <= M C: the bound exceeds 2C, so 2C applies, resting on verified facts only
    assert cert.bounds["lam_min"] < 0 and cert.bounds["lam_min_kind"] == "exact"
    assert cert.bounds["distance_bound"] >= 2 * C_safe
    assert cert.bounds["which"] == "2C" and cert.sensitivity == pytest.approx(2 * C_safe)
    assert {a.state for a in cert.assumptions} == {"verified"}
    # the epsilon that sigma certifies at 2C', however large
    assert cert.epsilon == pytest.approx(analytic_epsilon(0.05, 1e-5, 2 * C_safe), rel=1e-12)
    assert cert.epsilon > 100
    assert check_params_in_ball(res.params, 1e9)[0]
    assert check_params_in_ball(res.state.params_bar, cfg.radius)[0]
    # the solve converged on the exact damped Hessian, and is reported
    assert cert.solver["result"] == "successful" and cert.solver["relative_residual"] < 1e-5
    # the noiseless step moved the model; the published one adds N(0, sigma^2) to it
    assert float(tree_norm(tree_sub(res.state.params_bar, st.params_bar))) > 1e-3


def test_fresh_noise_per_release_and_sequential_from_noiseless(mlp_setup):
    net, cfg, unl, st = mlp_setup
    r1 = unl.unlearn(st, FORGET[:10])
    r2 = unl.unlearn(r1.state, FORGET[10:])
    z = []
    for r in (r1, r2):
        flat = np.concatenate([np.asarray(a).ravel() for a in jax.tree.leaves(
            tree_sub(r.state.published, r.state.params_bar))])
        z.append(flat / 0.05)
    assert stats.kstest(z[0], "norm").pvalue > 1e-3 and stats.kstest(z[1], "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[0], z[1])[0, 1]) < 0.15  # fresh noise (610 coordinates)
    # request 2 started from the noiseless iterate, not the published model: redo it by hand
    r2b = unl.unlearn(r1.state._replace(published=r1.state.params_bar), FORGET[10:])
    for a, b in zip(jax.tree.leaves(r2.state.params_bar), jax.tree.leaves(r2b.state.params_bar),
                    strict=True):
        assert np.array_equal(a, b)
    # composition over the two releases: one Gaussian with mu = sqrt(sum (Delta/sigma)^2)
    sens = [r1.certificate.sensitivity, r2.certificate.sensitivity]
    mu = math.sqrt(sum((d / 0.05) ** 2 for d in sens))
    assert r2.certificate.epsilon_composed == pytest.approx(analytic_epsilon(1.0, 1e-5, mu),
                                                            rel=1e-12)
    assert r2.certificate.releases == 2 and r2.certificate.removed == 20
    # a row already removed cannot be removed again
    with pytest.raises(ValueError, match="already removed"):
        unl.unlearn(r2.state, [0])


def test_fails_when_lam_plus_lam_min_is_not_positive(mlp_setup, digits):
    net, cfg, _, st = mlp_setup
    unl = zhang_unlearning(net, cfg, lam=0.0, sigma=0.05, hessian_lipschitz=1.0,
                           lam_min="lanczos", lanczos_steps=40)
    res = unl.unlearn(st, FORGET)
    assert res.outcome == "retrain_required" and res.params is None
    assert res.certificate.status == "fails" and not res.certificate.valid
    assert "lam + lam_min" in res.certificate.reason
    assert res.certificate.bounds["lam_min"] < 0 and res.certificate.bounds["lam_min_kind"] == (
        "lanczos")
    assert res.state is st  # nothing changed
    # CG alone proves it too, even without an eigenvalue estimate
    unl2 = zhang_unlearning(net, cfg, lam=0.0, sigma=0.05, lam_min="none")
    res2 = unl2.unlearn(st, FORGET)
    if res2.certificate.solver["result"] == "not_positive_definite":
        assert res2.outcome == "retrain_required" and "not positive definite" in (
            res2.certificate.reason)


@pytest.fixture(scope="module")
def convex_setup(digits):
    """A linear softmax model with strong weight decay: locally strongly convex (M C < lam_min)."""
    X, y = digits
    net = mlp(64, (), 10, "tanh")  # no hidden layer: multinomial logistic regression
    cfg = TrainConfig(epochs=300, batch_size=None, learning_rate=5e-2, weight_decay=3.0,
                      radius=1.0, log_every=300, dtype="float64")
    return net, cfg


@pytest.mark.parametrize("lam_min", ["exact", "lanczos"])
def test_conditional_on_a_locally_strongly_convex_construct(convex_setup, digits, lam_min):
    net, cfg = convex_setup
    X, y = digits
    G = 1e-3
    unl = zhang_unlearning(net, cfg, lam=0.1, sigma=0.05, hessian_lipschitz=1.0,
                           lam_min=lam_min, retrained_grad_norm=G, cg_rtol=1e-12)
    st = unl.init(X, y, jax.random.key(1))
    res = unl.unlearn(st, FORGET)
    cert = res.certificate
    C_safe = radius_bound(cfg.radius, 650, jnp.float64)
    # the public claim rests on 2C' (configuration only): it holds, whatever the data
    assert res.outcome == "unlearned" and cert.status == "holds" and cert.valid
    assert cert.sensitivity == pytest.approx(2 * C_safe)
    assert cert.epsilon == pytest.approx(analytic_epsilon(0.05, 1e-5, 2 * C_safe), rel=1e-12)
    assert {a.name for a in cert.assumptions} == {"unlearned_in_ball", "retrained_in_ball"}
    # the data-dependent Newton bound is below 2C' here, and reported privately
    b = cert.bounds
    assert b["which"] == "bound" and b["distance_bound"] < 2 * C_safe
    assert b["bound_status"] == "conditional"
    states = {a["name"]: a["state"] for a in b["bound_assumptions"]}
    assert states["hessian_lipschitz"] == "assumed" and states["retrained_grad_norm"] == "assumed"
    assert states["lam_min"] == ("verified" if lam_min == "exact" else "assumed")
    assert b["epsilon_at_bound"] == pytest.approx(analytic_epsilon(0.05, 1e-5, b["distance_bound"]))
    assert b["epsilon_at_bound"] < cert.epsilon
    assert res.diagnostics["epsilon"] == b["epsilon_at_bound"]
    pub = cert.to_json(private=False)
    assert "distance_bound" not in pub and "hessian_lipschitz" not in pub
    # the bound really bounds the distance to retraining (G_r holds for this retraining)
    rt = unl.retrain(res.state)
    assert rt.grad_norm <= G
    true = float(tree_norm(tree_sub(res.state.params_bar, rt.params)))
    assert true <= b["distance_bound"] <= cert.sensitivity


def test_epsilon_mode_calibrates_sigma_to_2C(mlp_setup):
    net, cfg, _, st = mlp_setup
    unl = zhang_unlearning(net, cfg, lam=0.5, epsilon=1.0, delta=1e-5, lam_min="none")
    # sigma sqrt(p) = 74.6 sqrt(610) far exceeds C = 10: the release is mostly noise, and says so
    with pytest.warns(UserWarning, match="near chance"):
        res = unl.unlearn(st, FORGET)
    assert any("noise dominates" in n for n in res.certificate.notes)
    C_safe = radius_bound(cfg.radius, 610, jnp.float64)
    assert res.certificate.sigma == pytest.approx(analytic_sigma(1.0, 1e-5, 2 * C_safe), rel=1e-12)
    assert res.certificate.epsilon == pytest.approx(1.0, rel=1e-6)
    assert res.certificate.status == "holds" and res.certificate.bounds["distance_bound"] is None


def test_empirical_mode_is_labelled_not_certified(mlp_setup):
    net, cfg, _, st = mlp_setup
    unl = zhang_unlearning(net, cfg, lam=0.5, mode="empirical", empirical_std=1e-3,
                           lam_min="none")
    res = unl.unlearn(st, FORGET)
    cert = res.certificate
    assert res.params is not None and res.outcome == "unlearned"  # released for reproduction
    assert cert.status == "fails" and "empirical mode: noise not calibrated" in cert.reason
    assert cert.threat == "none" and math.isinf(cert.epsilon) and cert.calibration == "none"
    assert cert.sigma == 1e-3
    C_safe = radius_bound(cfg.radius, 610, jnp.float64)
    assert cert.bounds["epsilon_at_2C"] == pytest.approx(analytic_epsilon(1e-3, 1e-5, 2 * C_safe))
    noise = np.concatenate([np.asarray(a).ravel() for a in jax.tree.leaves(
        tree_sub(res.params, res.state.params_bar))])
    assert np.std(noise) == pytest.approx(1e-3, rel=0.15)
    # serialises (inf epsilon included) and reads back
    assert Certificate.from_json(cert.to_json()).epsilon == math.inf


def test_solvers_lissa_filter_and_gauss_newton(mlp_setup):
    net, cfg, _, st = mlp_setup
    kw = dict(lam=0.5, sigma=0.05, lam_min="none")
    cg = zhang_unlearning(net, cfg, solver="cg", **kw).unlearn(st, FORGET)
    paper = zhang_unlearning(net, cfg, solver="lissa", lissa_repeats=2, lissa_depth=200,
                             lissa_scale=1000.0, lissa_batch_size=10, **kw).unlearn(st, FORGET)
    ggn = zhang_unlearning(net, cfg, solver="ggn", **kw).unlearn(st, FORGET)
    # a truncated series (scale 1000, depth 200) is a strong filter: gain ~0.2 / h, tiny step
    s_cg, s_paper = cg.certificate.solver["step_norm"], paper.certificate.solver["step_norm"]
    assert s_paper < 0.5 * s_cg
    assert paper.certificate.solver["relative_residual"] > 0.1  # reported, far from converged
    assert paper.certificate.solver["scale"] == 1000.0 and paper.certificate.status == "holds"
    assert ggn.certificate.status == "holds" and ggn.certificate.bounds["which"] == "2C"
    assert ggn.certificate.solver["result"] == "successful"
    assert "GGN" in ggn.certificate.solver["residual_system"]


def test_retrain_uses_the_same_initialisation_and_algorithm(mlp_setup, digits):
    from certun.nn import train

    net, cfg, unl, st = mlp_setup
    X, y = digits
    res = unl.unlearn(st, FORGET)
    rt = unl.retrain(res.state)
    keep = np.setdiff1d(np.arange(180), FORGET)
    ref = train(net, X[keep], y[keep], st.train_key, cfg)
    for a, b in zip(jax.tree.leaves(rt.params), jax.tree.leaves(ref.params), strict=True):
        assert np.array_equal(a, b)


def test_arguments_are_checked(mlp_setup):
    net, cfg, unl, st = mlp_setup
    with pytest.raises(ValueError, match="exactly one of sigma"):
        zhang_unlearning(net, cfg, sigma=1.0, epsilon=1.0)
    with pytest.raises(ValueError, match="exactly one of sigma"):
        zhang_unlearning(net, cfg)
    with pytest.raises(ValueError, match="solver"):
        zhang_unlearning(net, cfg, sigma=1.0, solver="newton")
    with pytest.raises(ValueError, match="lam_min"):
        zhang_unlearning(net, cfg, sigma=1.0, lam_min="power")
    with pytest.raises(ValueError, match="lissa_damping"):
        zhang_unlearning(net, cfg, sigma=1.0, lissa_damping=2.0)
    with pytest.raises(ValueError, match="config"):
        zhang_unlearning(net, {"epochs": 3}, sigma=1.0)
    with pytest.raises(ValueError, match="out-of-range"):
        unl.unlearn(st, [10_000])
    with pytest.raises(ValueError, match="empty"):
        unl.unlearn(st, [])
    with pytest.raises(ValueError, match="every remaining"):
        unl.unlearn(st, np.arange(180))
