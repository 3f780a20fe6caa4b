"""Chen et al.'s two-version MIA, Bertran et al.'s reconstruction and the uncertified shortcuts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun.audits import baselines, mia
from certun.audits import reconstruction as rc
from certun.data import load_diabetes, load_digits_3v8
from certun.models import glm
from certun.release import private_release
from certun.unlearners import certified_removal, exact_retraining


def test_features_by_hand(rng):
    p_o = jax.nn.softmax(jnp.asarray(rng.normal(size=(6, 3))), -1)
    p_u = jax.nn.softmax(jnp.asarray(rng.normal(size=(6, 3))), -1)
    po, pu = np.asarray(p_o), np.asarray(p_u)
    perm = np.argsort(po, axis=1)
    so, su = np.take_along_axis(po, perm, 1), np.take_along_axis(pu, perm, 1)
    ref = {"direct_diff": po - pu, "sorted_diff": so - su, "direct_concat": np.c_[po, pu],
           "sorted_concat": np.c_[so, su], "basic_mia": po,
           "l2_distance": np.linalg.norm(po - pu, axis=1, keepdims=True)}
    for k, v in ref.items():
        np.testing.assert_allclose(np.asarray(mia.posterior_features(p_o, p_u, k)), v,
                                   atol=1e-15)
        np.testing.assert_allclose(np.asarray(jax.jit(mia.posterior_features,
                                                      static_argnums=2)(p_o, p_u, k)), v,
                                   atol=1e-15)


def test_mitigations():
    p = jnp.asarray([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    np.testing.assert_array_equal(np.asarray(mia.label_only(p)), [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(np.asarray(mia.top_k(p, 1)), [[0.2, 0.6, 0.2], [0.5, 0.25, 0.25]])
    np.testing.assert_allclose(np.asarray(mia.top_k(p, 2)), p * jnp.asarray([[0, 1, 1], [1, 0, 1]])
                               + jnp.asarray([[0.1, 0, 0], [0, 0.2, 0]]))
    lg = jnp.asarray([[0.0, 2.0]])
    np.testing.assert_allclose(np.asarray(mia.temperature(lg, 4.0)),
                               np.asarray(jax.nn.softmax(lg / 4.0)))
    assert mia.degradation([0.9, 0.6, 0.2], [0.5, 0.7, 0.2]) == pytest.approx((1 / 3, 0.1))


def test_record_split_pools():
    s = mia.record_split(100, seed=0)
    allp = np.concatenate(s)
    assert np.unique(allp).size == 100 and allp.size == 100
    assert s.shadow_positive.size == 40 and s.target_negative.size == 10
    o = mia.record_split(100, seed=0, disjoint=False)
    assert np.unique(np.r_[o.target_positive, o.target_negative]).size == 100


@pytest.fixture(scope="module")
def digits():
    ds = load_digits_3v8()
    return np.concatenate([ds.X_train, ds.X_test]), np.concatenate([ds.y_train, ds.y_test])


def test_chen_pipeline_rows_are_the_models(digits):
    X, y = digits
    lam = 0.1
    split = mia.record_split(len(X), seed=0)
    pp = mia.collect_pairs(exact_retraining(lam=lam), X, y, split.target_positive,
                           split.target_negative, num_sets=1, deletions_per_set=2, set_size=60,
                           key=jax.random.key(0), seed=3)
    rng = np.random.default_rng(3)
    members = rng.choice(split.target_positive, size=60, replace=False)
    dels = rng.choice(60, size=2, replace=False)
    negs = rng.choice(split.target_negative, size=2, replace=True)
    W0 = glm.fit("logistic", X[members], y[members], lam, tol=1e-10).params[:, 0]
    keep = np.delete(members, dels[0])
    W1 = glm.fit("logistic", X[keep], y[keep], lam, tol=1e-10).params[:, 0]
    np.testing.assert_allclose(pp.logits_original[0, 1], X[members[dels[0]]] @ W0, atol=1e-8)
    np.testing.assert_allclose(pp.logits_unlearned[1, 1], X[negs[0]] @ W1, atol=1e-8)
    np.testing.assert_array_equal(pp.member, [1, 0, 1, 0])


def test_chen_attack_retraining_vs_private_release(digits):
    """The two-version attack beats retraining; the private release stops it; label-only too.

    (Certified removal against retraining is compared in the chen2021 smoke test.)
    """
    X, y = digits
    lam = 0.1
    split = mia.record_split(len(X), seed=0, disjoint=False)
    kw = dict(num_sets=5, deletions_per_set=12, set_size=200)

    def pairs(u):
        sh = mia.collect_pairs(u, X, y, split.shadow_positive, split.shadow_negative,
                               key=jax.random.key(1), seed=1, **kw)
        tg = mia.collect_pairs(u, X, y, split.target_positive, split.target_negative,
                               key=jax.random.key(2), seed=2, **kw)
        return sh, tg

    sh, tg = pairs(exact_retraining(lam=lam))
    ret = mia.chen_attack(sh, tg, features=("sorted_diff",))
    assert ret.auc["sorted_diff"].auc > 0.85
    assert ret.auc["sorted_diff"].auc > ret.auc["basic_mia"].auc + 0.2
    assert ret.degradation_count > 0.7 and ret.degradation_rate > 0.1
    lab = mia.chen_attack(sh, tg, features=("sorted_diff",),
                          mitigation=lambda lg: mia.label_only(mia.posteriors(lg)))
    assert lab.auc["sorted_diff"].auc < ret.auc["sorted_diff"].auc - 0.2
    sh, tg = pairs(private_release(exact_retraining(lam=lam), lam=lam, epsilon=1.0, delta=1e-5))
    rel = mia.chen_attack(sh, tg, features=("sorted_diff",))
    assert abs(rel.auc["sorted_diff"].auc - 0.5) < 0.15
    assert np.mean(tg.accuracy) > 0.6  # the released models are not pure noise


def test_shortcuts_are_labelled_and_do_what_they_say(digits):
    X, y = digits[0][:150], digits[1][:150]
    lam = 0.05
    keep = np.setdiff1d(np.arange(150), [4])
    ref = glm.fit("logistic", X[keep], y[keep], lam, tol=1e-12).params
    nt = baselines.newton_shortcut(lam=lam)
    st = nt.init(X, y)
    r = nt.unlearn(st, [4])
    assert r.certificate is None and r.outcome == "uncertified"
    H = np.asarray(glm.hessian_sum(glm.LOGISTIC, st.W, X[keep], y[keep, None], lam)[0])
    W = np.asarray(st.W[:, 0])
    Delta = X[4] * float(glm.LOGISTIC.d1(jnp.asarray(X[4] @ W), jnp.asarray(y[4]))) + lam * W
    np.testing.assert_allclose(np.asarray(r.params), W + np.linalg.solve(H, Delta), atol=1e-10)
    assert np.linalg.norm(np.asarray(r.params) - np.asarray(ref[:, 0])) < 1e-2 * np.linalg.norm(
        W - np.asarray(ref[:, 0]))
    ft = baselines.finetune_shortcut(lam=lam, steps=200)
    gap = [np.linalg.norm(np.asarray(f.unlearn(f.init(X, y), [4]).params) - ref[:, 0])
           for f in (baselines.finetune_shortcut(lam=lam, steps=2), ft)]
    assert gap[1] < gap[0]
    ga = baselines.gradient_ascent_shortcut(lam=lam)
    s0 = ga.init(X, y)
    w1 = np.asarray(ga.unlearn(s0, [4]).params)
    loss = lambda w: float(glm.LOGISTIC.value(jnp.asarray(X[4] @ w), jnp.asarray(y[4])))  # noqa
    assert loss(w1) > loss(np.asarray(s0.W[:, 0]))


def test_reconstruction_newton_identity_is_exact(digits):
    """docs/bibliography.md §12.6: Newton-step unlearning + exact H: cosine 1 to float precision."""
    X, y = digits[0][:150], digits[1][:150]
    lam = 0.05
    for unl in (baselines.newton_shortcut(lam=lam),
                certified_removal(lam=lam, sigma=1.0, epsilon=1.0, delta=1e-4,
                                  update="pcg")):
        st = unl.init(X, y, jax.random.key(0))
        th0 = np.asarray(unl.params(st))
        th1 = np.asarray(unl.unlearn(st, [7]).params)
        keep = np.setdiff1d(np.arange(150), [7])
        H = rc.exact_hessian("logistic", th0, X[keep], y[keep], lam)
        assert rc.abs_cosine(rc.reconstruct(th0, th1, H, lam), X[7]) > 1 - 1e-9
    # one-vs-rest heads: the top singular vector of the per-head reconstructions
    Y3 = np.where(np.arange(150)[:, None] % 3 == np.arange(3)[None, :], 1.0, -1.0)
    ns = baselines.newton_shortcut(lam=lam)
    st = ns.init(X, np.arange(150) % 3, num_classes=3)  # class ids (2-D y is refused)
    np.testing.assert_array_equal(np.asarray(st.Y), Y3)
    th1 = ns.unlearn(st, [7]).params
    keep = np.setdiff1d(np.arange(150), [7])
    H = rc.exact_hessian("logistic", st.W, X[keep], Y3[keep], lam)
    assert rc.abs_cosine(rc.reconstruct(st.W, th1, H, lam), X[7]) > 1 - 1e-9


def test_ridge_reconstruction_retraining_and_public_hessian():
    ds = load_diabetes()
    X, y, Xp = ds.X_train, ds.y_train, ds.X_test
    n = len(X)
    lam = 100.0 / n
    ret = exact_retraining(lam=lam, loss="squared", tol=1e-12)
    st = ret.init(X, y)
    th0 = np.asarray(ret.params(st))
    keep = np.delete(np.arange(n), 11)
    th1 = np.asarray(ret.unlearn(st, [11]).params)
    He = rc.exact_hessian("squared", th0, X[keep], y[keep], lam)
    np.testing.assert_allclose(He[0], X[keep].T @ X[keep] + lam * (n - 1) * np.eye(X.shape[1]),
                               rtol=1e-12)
    assert rc.abs_cosine(rc.reconstruct(th0, th1, He, lam), X[11]) > 1 - 1e-8
    # the public estimate with the remaining rows themselves as "public" data is exact
    np.testing.assert_allclose(rc.public_hessian("squared", th0, X[keep], lam, n - 1), He,
                               rtol=1e-12)
    Hp = rc.public_hessian("squared", th0, Xp, lam, n - 1)
    assert rc.abs_cosine(rc.reconstruct(th0, th1, Hp, lam), X[11]) > 0.9
    # certified removal with shared b: b cancels, the attack is exact again
    guo = certified_removal(lam=lam, sigma=1.0, epsilon=1.0, delta=1e-4, loss="squared")
    gs = guo.init(X, y, jax.random.key(0))
    g0, g1 = np.asarray(guo.params(gs)), np.asarray(guo.unlearn(gs, [11]).params)
    assert np.linalg.norm(g0 - th0) > 1e-3  # b moved the model ...
    assert rc.abs_cosine(rc.reconstruct(g0, g1, He, lam), X[11]) > 1 - 1e-8  # ... and cancels
    e = np.eye(X.shape[1])[-1]
    assert rc.orient(-e, e) @ e == 1.0
    np.testing.assert_allclose(rc.averaging_baseline(Xp), Xp.mean(0))
