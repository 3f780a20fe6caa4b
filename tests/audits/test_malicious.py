"""Hard to Forget: crafted deletions exhaust Guo et al.'s budget.

The influence defence restores it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun.audits import malicious as mal
from certun.data import load_digits_3v8
from certun.models import glm
from certun.unlearners import certified_removal

LAM, SIGMA = 0.01, 1.5


def test_projection_onto_two_balls(rng):
    proj = jax.jit(mal._project, static_argnames="iters")
    for _ in range(20):
        x, ref = rng.normal(size=5) * 2, rng.normal(size=5) * 0.5
        ref /= max(1.0, np.linalg.norm(ref))
        p = np.asarray(proj(jnp.asarray(x), jnp.asarray(ref), 0.3, iters=200))
        assert np.linalg.norm(p) <= 1 + 1e-9 and np.linalg.norm(p - ref) <= 0.3 + 1e-9
        # optimality: no point of a fine sample of the intersection is closer to x
        cand = ref + 0.3 * rng.normal(size=(4000, 5)) * rng.random((4000, 1)) ** 0.2 / np.sqrt(5)
        cand = cand[(np.linalg.norm(cand, axis=1) <= 1) & (np.linalg.norm(cand - ref, axis=1)
                                                           <= 0.3)]
        assert np.linalg.norm(x - p) <= np.min(np.linalg.norm(cand - x, axis=1)) + 1e-6


@pytest.fixture(scope="module")
def setting():
    ds = load_digits_3v8()
    X, y, Xt, yt = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    theta = np.asarray(glm.fit("logistic", jnp.asarray(X), jnp.asarray(y)[:, None],
                               LAM).params[:, 0])
    rng = np.random.default_rng(0)
    ref = rng.choice(len(Xt), 20, replace=False)
    P = mal.craft_poisons(Xt[ref], yt[ref], theta, X, y, lam=LAM, radius=0.5)
    Xa, ya = np.concatenate([X, P]), np.concatenate([y, yt[ref]])
    unl = certified_removal(lam=LAM, sigma=SIGMA, epsilon=1.0, delta=1e-4, auto_retrain=True,
                            update="pcg")
    st = unl.init(Xa, ya, jax.random.key(0))
    return dict(X=X, y=y, Xt=Xt, yt=yt, ref=ref, P=P, theta=theta, unl=unl, st=st, rng=rng)


def test_poisons_respect_constraints_and_raise_the_surrogate(setting):
    s = setting
    P, R = s["P"], s["Xt"][s["ref"]]
    assert np.all(np.linalg.norm(P, axis=1) <= 1.0)
    assert np.all(np.linalg.norm(P - R, axis=1) <= 0.5 + 1e-9)
    H = np.asarray(glm.hessian_sum(glm.LOGISTIC, jnp.asarray(s["theta"])[:, None],
                                   jnp.asarray(s["X"]), jnp.asarray(s["y"])[:, None], LAM)[0])

    def infl(Z, yz):
        g = np.asarray(glm.LOGISTIC.d1(jnp.asarray(Z @ s["theta"]), jnp.asarray(yz)))[:, None] * Z
        return np.linalg.norm(np.linalg.solve(H, g.T), axis=0)

    yz = s["yt"][s["ref"]]
    assert np.median(infl(P, yz)) > 3 * np.median(infl(R, yz))


def test_influence_scores_predict_the_charged_bound(setting):
    s = setting
    st, unl = s["st"], s["unl"]
    for i in (0, 5, len(s["X"]) + 3):
        pred = mal.influence_scores(st.W[:, 0], st.X, st.Y[:, 0], st.mask, [i], lam=LAM)[0]
        res = unl.unlearn(st, [i])
        assert pred == pytest.approx(res.diagnostics["step_data_dependent_bound"], rel=1e-6)


def test_hard_to_forget_and_defence(setting):
    """Acceptance: crafted requests shrink the retrain interval; the defence restores it."""
    s = setting
    st, unl = s["st"], s["unl"]
    n = len(s["X"])
    poisons = np.arange(n, n + 20)
    clean = s["rng"].choice(n, 20, replace=False)
    ref_scores = mal.influence_scores(st.W[:, 0], st.X, st.Y[:, 0], st.mask, (s["Xt"], s["yt"]),
                                      lam=LAM)
    thr = mal.influence_threshold(ref_scores, 0.99)
    base = mal.run_requests(unl, st, clean)
    attack = mal.run_requests(unl, st, poisons)
    defended = mal.run_requests(unl, st, poisons, threshold=thr, lam=LAM)
    clean_def = mal.run_requests(unl, st, clean, threshold=thr, lam=LAM)
    interval = lambda r: r.first_retrain or len(r.outcomes) + 1  # noqa: E731
    assert interval(attack) < interval(base) / 3
    assert attack.forced_retrains >= 3 * max(base.forced_retrains, 1)
    assert interval(defended) >= 0.8 * interval(base)
    assert defended.forced_retrains <= base.forced_retrains
    assert np.mean(attack.budget_burnt) > 3 * np.mean(base.budget_burnt)
    assert np.mean(defended.budget_burnt) <= np.mean(base.budget_burnt)
    assert defended.flagged >= 10 and clean_def.flagged == 0
    assert clean_def.outcomes == base.outcomes
