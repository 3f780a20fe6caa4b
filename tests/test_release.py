"""Private release mode.

Sensitivity bounds hold (exact minimisers, adversarial neighbours), the noise scale is a
function of public quantities only (identical in both neighbouring worlds under each
adjacency), every request is published, noise is fresh and calibrated, certificates compose
and their public views hold nothing data-dependent.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun import ValidationError
from certun.accounting import analytic_sigma, compose_gaussian
from certun.audits.baselines import newton_shortcut
from certun.data import synthetic_regression
from certun.models import glm
from certun.primitives.noise import gaussian_like
from certun.release import private_release, release_sensitivity
from certun.unlearners import certified_removal, exact_retraining, newton_unlearning

Z1 = analytic_sigma(1.0, 1e-5, 1.0)  # noise multiplier at (1, 1e-5)


def test_sensitivity_constants():
    lam, n, tau = 0.1, 200, 1e-8
    # replace-one (default): 2 sqrt(K) g / (lam n) + 2 tau / lam
    s = release_sensitivity("logistic", lam, n, tol=tau)
    assert s.adjacency == "replace_one" and s.gradient_bound == pytest.approx(2.0)
    assert s.value == pytest.approx(2 / (lam * n) + 2 * tau / lam)
    assert release_sensitivity("logistic", lam, n, heads=4).gradient_bound == pytest.approx(4.0)
    r = release_sensitivity("squared", 0.25, 100, label_bound=2.0)
    assert r.weight_bound == pytest.approx(4.0) and r.gradient_bound == pytest.approx(2 * (4 + 2))
    assert r.value == pytest.approx(12 / (0.25 * 100))
    # add/remove with n = n_min: G / (lam n_min) + 2 tau / lam, G with the regulariser share
    a = release_sensitivity("logistic", lam, n, tol=tau, adjacency="add_remove")
    G = 1 + min(1.0, math.sqrt(2 * lam * math.log(2)))
    assert a.gradient_bound == pytest.approx(G)
    assert a.value == pytest.approx(G / (lam * n) + 2 * tau / lam)
    assert release_sensitivity("logistic", 4.0, 10,
                               adjacency="add_remove").gradient_bound == pytest.approx(2.0)
    ar = release_sensitivity("squared", 0.25, 100, label_bound=2.0, adjacency="add_remove")
    assert ar.gradient_bound == pytest.approx(4 + 2 + 1)
    with pytest.raises(ValueError, match="label_bound"):
        release_sensitivity("squared", 0.25, 100)
    with pytest.raises(ValueError, match="adjacency"):
        release_sensitivity("logistic", 0.25, 100, adjacency="removal")


def _grad_rows(loss, W, X, Y):
    """Per-row loss gradients ``(m, d, K)`` at ``W`` (independent numpy computation)."""
    m = X @ W
    if loss == "logistic":
        d1 = -Y / (1.0 + np.exp(Y * m))
    else:
        d1 = m - Y
    return d1[:, None, :] * X[:, :, None]


def _candidates(rng, W, d, K, loss, k=40):
    """Unit-norm replacement records: +-w_k directions and random ones, every label."""
    dirs = [W[:, j] / max(np.linalg.norm(W[:, j]), 1e-12) for j in range(W.shape[1])]
    dirs += [v / np.linalg.norm(v) for v in rng.normal(size=(k, d))]
    dirs = [s * v for v in dirs for s in (1.0, -1.0)]
    if loss == "squared":
        labels = [np.full(K, b) for b in (-1.0, 1.0)]
    elif K == 1:
        labels = [np.array([1.0]), np.array([-1.0])]
    else:
        labels = [np.where(np.arange(K) == c, 1.0, -1.0) for c in range(K)]
    return [(x, y) for x in dirs for y in labels]


@pytest.mark.parametrize("loss, K, lam", [("logistic", 1, 1.0), ("logistic", 1, 0.05),
                                          ("logistic", 3, 1.0), ("squared", 1, 0.5)])
def test_replace_one_sensitivity_dominates_adversarial_replacements(rng, loss, K, lam):
    """``||w*(D) - w*(D')||`` over adversarial replacement pairs (exact Newton to 1e-12)."""
    n, d = 16, 4
    X = rng.normal(size=(n, d))
    X *= 0.999 / np.linalg.norm(X, axis=1, keepdims=True)
    if loss == "squared":
        Y = np.clip(rng.normal(size=(n, 1)), -1, 1)
    elif K == 1:
        Y = np.sign(rng.normal(size=(n, 1)))
    else:
        c = np.arange(n) % K
        Y = np.where(c[:, None] == np.arange(K)[None, :], 1.0, -1.0)
    fit = jax.jit(lambda A, B: glm.fit(loss, A, B, lam, tol=1e-12).params)
    W = np.asarray(fit(jnp.asarray(X), jnp.asarray(Y)))
    cands = _candidates(rng, W, d, K, loss)
    # rank (row, replacement) pairs by ||grad l_z(w) - grad l_z'(w)||, refit the top ones
    g_rows = _grad_rows(loss, W, X, Y)
    Xc = np.stack([x for x, _ in cands])
    Yc = np.stack([y for _, y in cands])
    g_c = _grad_rows(loss, W, Xc, Yc)
    diff = np.linalg.norm((g_rows[:, None] - g_c[None]).reshape(n, len(cands), -1), axis=2)
    top = np.argsort(diff, axis=None)[::-1][:12]
    s = release_sensitivity(loss, lam, n, heads=K, label_bound=1.0 if loss == "squared" else None)
    assert diff.max() <= s.gradient_bound  # the per-record gradient difference bound
    dist = []
    for flat in top:
        i, j = np.unravel_index(flat, diff.shape)
        X2, Y2 = X.copy(), Y.copy()
        X2[i], Y2[i] = cands[j]
        W2 = np.asarray(fit(jnp.asarray(X2), jnp.asarray(Y2)))
        dist.append(np.linalg.norm(W2 - W))
        # the first-order step of the derivation bounds the distance too
        assert dist[-1] <= diff[i, j] / (lam * n) * (1 + 1e-9)
        assert np.linalg.norm(W2, axis=0).max() <= s.weight_bound
    dist = np.array(dist)
    assert dist.max() <= s.value
    assert dist.max() >= 0.1 * s.value  # the bound is not vacuous on these pairs


@pytest.mark.parametrize("loss, lam", [("logistic", 0.05), ("logistic", 2.0), ("squared", 0.05)])
def test_add_remove_sensitivity_with_n_min(rng, loss, lam):
    """``||w*(D) - w*(D + z)|| <= G / (lam n_min)`` for ``|D| >= n_min``."""
    n, d, n_min = 30, 5, 25
    X = rng.normal(size=(n, d))
    X *= 0.999 / np.linalg.norm(X, axis=1, keepdims=True)
    Y = np.sign(rng.normal(size=(n, 1))) if loss == "logistic" else np.clip(
        rng.normal(size=(n, 1)), -1, 1)
    fit = jax.jit(lambda A, B: glm.fit(loss, A, B, lam, tol=1e-12).params)
    W = np.asarray(fit(jnp.asarray(X), jnp.asarray(Y)))
    s = release_sensitivity(loss, lam, n_min, label_bound=1.0 if loss == "squared" else None,
                            adjacency="add_remove")
    exact = release_sensitivity(loss, lam, n + 1, label_bound=1.0 if loss == "squared" else None,
                                adjacency="add_remove")
    out = []
    for _ in range(20):
        z = rng.normal(size=d)
        z /= np.linalg.norm(z)
        yz = -np.sign(W[:, 0] @ z) if loss == "logistic" else rng.choice([-1.0, 1.0])
        W2 = np.asarray(fit(jnp.asarray(np.vstack([X, z])), jnp.asarray(np.vstack([Y, [[yz]]]))))
        out.append(np.linalg.norm(W2 - W))
    assert max(out) <= exact.value <= s.value  # Step 1 with N = n + 1 rows, then n_min <= n
    assert max(out) >= 0.05 * s.value
    assert np.linalg.norm(W, axis=0).max() <= s.weight_bound


def _small(ds, n=60):
    return np.asarray(ds.X_train[:n]), np.asarray(ds.y_train[:n])


def test_release_certificate_and_fresh_noise(digits38):
    ds, lam = digits38, 0.1
    X, y = _small(ds, 120)
    pr = private_release(exact_retraining(lam=lam), lam=lam, epsilon=1.0, delta=1e-5)
    nk = jax.random.key(7)
    st = pr.init(X, y, jax.random.key(0), noise_key=nk)
    n = X.shape[0]
    sig0 = analytic_sigma(1.0, 1e-5, release_sensitivity("logistic", lam, n, tol=1e-8).value)
    assert st.sigmas[0] == pytest.approx(sig0, rel=1e-9)
    np.testing.assert_allclose(np.asarray(st.published - st.noiseless),
                               np.asarray(gaussian_like(nk, st.noiseless, st.sigmas[0])),
                               atol=1e-12)
    ref = glm.fit("logistic", X, y, lam, tol=1e-12).params
    assert float(jnp.linalg.norm(st.noiseless - ref)) <= 1e-8 / lam
    r1 = pr.unlearn(st, [3])
    r2 = pr.unlearn(r1.state, [10, 11])
    c = r2.certificate
    assert c.valid and c.threat == "private_release" and c.adjacency == "replacement"
    assert c.releases == 3 and c.epsilon == 1.0 and c.delta == 1e-5 and c.removed == 3
    # replace-one: sigma follows the public count n_0 - removed
    assert c.sensitivity == pytest.approx(release_sensitivity("logistic", lam, n - 3,
                                                             tol=1e-8).value)
    assert c.sigma == pytest.approx(Z1 * c.sensitivity, rel=1e-9)
    assert c.public_inputs["adjacency"] == "replace_one"
    assert c.public_inputs["n_initial"] == n and c.public_inputs["n"] == n - 3
    assert c.epsilon_composed == pytest.approx(compose_gaussian([Z1] * 3, 1e-5).epsilon,
                                               rel=1e-6)
    assert c.epsilon_composed > 1.0
    e2 = np.asarray(r2.state.published - r2.state.noiseless)  # release t uses fold t
    np.testing.assert_allclose(e2, np.asarray(gaussian_like(nk, st.noiseless, c.sigma, release=2)),
                               atol=1e-12)
    keep = np.setdiff1d(np.arange(n), [3, 10, 11])
    ref2 = glm.fit("logistic", X[keep], y[keep], lam, tol=1e-12).params
    assert float(jnp.linalg.norm(r2.state.noiseless - ref2)) <= 1e-8 / lam
    assert pr.certificate(r2.state).public() == c.public()
    pub = c.public()
    assert "private" not in pub and pub["threat"] == "private_release"


def _worlds(adjacency, X, y, n_min=None, inner=None, lam=0.1):
    """Releases of two neighbouring worlds under the same public requests."""
    inner = inner or exact_retraining(lam=lam)
    pr = private_release(inner, lam=lam, epsilon=1.0, delta=1e-5, adjacency=adjacency,
                         n_min=n_min)
    if adjacency == "replace_one":  # row 0 replaced by another record
        X2, y2 = X.copy(), y.copy()
        X2[0], y2[0] = -X[-1], -y[-1]
    else:  # the last row absent
        X2, y2 = X[:-1], y[:-1]
    out = []
    for Xw, yw in ((X, y), (X2, y2)):
        st = pr.init(Xw, yw, jax.random.key(0))
        certs = [pr.certificate(st)]
        for req in ([5], [7, 9]):
            res = pr.unlearn(st, req)
            assert res.outcome == "unlearned" and res.params is not None
            st = res.state
            certs.append(res.certificate)
        out.append((st, certs))
    return out


@pytest.mark.parametrize("adjacency", ["replace_one", "add_remove"])
def test_sigma_and_public_view_identical_in_neighbouring_worlds(digits38, adjacency):
    X, y = _small(digits38, 50)
    n_min = 40 if adjacency == "add_remove" else None
    (sa, ca), (sb, cb) = _worlds(adjacency, X, y, n_min)
    assert sa.sigmas == sb.sigmas and len(sa.sigmas) == 3
    for a, b in zip(ca, cb, strict=True):
        assert a.sigma == b.sigma and a.sensitivity == b.sensitivity
        assert json.dumps(a.public(), sort_keys=True) == json.dumps(b.public(), sort_keys=True)
        assert a.valid and b.valid
    if adjacency == "add_remove":
        # one sigma, from n_min, for every release, however many rows remain
        s = release_sensitivity("logistic", 0.1, 40, tol=1e-8, adjacency="add_remove")
        np.testing.assert_allclose(sa.sigmas, [Z1 * s.value] * 3, rtol=1e-12)
        # the old release set sigma from the data-dependent n_t: G/(lam n_t), n/(n-1) apart
        old = [Z1 * release_sensitivity("logistic", 0.1, m, tol=1e-8,
                                        adjacency="add_remove").value for m in (50, 49)]
        assert old[0] != pytest.approx(old[1], rel=1e-6) and sa.sigmas[0] == sb.sigmas[0]
        assert ca[-1].adjacency == "removal" and ca[-1].public_inputs["n_min"] == 40
        assert "n" not in ca[-1].public_inputs and "n_initial" not in ca[-1].public_inputs
        # the current row counts differ between the worlds; they stay private
        assert ca[-1].bounds["n_current"] == cb[-1].bounds["n_current"] + 1
    else:
        # sigma follows the public count n_0 - removed (requests [5], then [7, 9])
        want = [Z1 * release_sensitivity("logistic", 0.1, m, tol=1e-8).value for m in (50, 49, 47)]
        np.testing.assert_allclose(sa.sigmas, want, rtol=1e-12)
        assert ca[0].adjacency == "replacement"


def test_n_min_and_adjacency_are_validated(digits38):
    X, y = _small(digits38, 30)
    inner = exact_retraining(lam=0.1)
    with pytest.raises(ValidationError, match="n_min"):
        private_release(inner, lam=0.1, epsilon=1.0, delta=1e-5, adjacency="add_remove")
    with pytest.raises(ValidationError, match="n_min"):
        private_release(inner, lam=0.1, epsilon=1.0, delta=1e-5, n_min=10)
    with pytest.raises(ValidationError, match="adjacency"):
        private_release(inner, lam=0.1, epsilon=1.0, delta=1e-5, adjacency="removal")
    pr = private_release(inner, lam=0.1, epsilon=1.0, delta=1e-5, adjacency="add_remove",
                         n_min=29)
    with pytest.raises(ValidationError, match="n_min = 31"):
        private_release(inner, lam=0.1, epsilon=1.0, delta=1e-5, adjacency="add_remove",
                        n_min=31).init(X, y, jax.random.key(0))
    st = pr.unlearn(pr.init(X, y, jax.random.key(0)), [0]).state
    with pytest.raises(ValidationError, match="n_min = 29"):
        pr.unlearn(st, [1])


@pytest.mark.slow  # the default suite's time budget
def test_release_wraps_any_unlearner(digits38):
    lam = 0.1
    X, y = _small(digits38, 100)
    keep = np.setdiff1d(np.arange(100), [5])
    ref = glm.fit("logistic", X[keep], y[keep], lam, tol=1e-12).params
    inners = {
        "guo": (certified_removal(lam=lam, sigma=1.0, epsilon=1.0, delta=1e-4,
                                  update="pcg"), None),
        "sekhari": (newton_unlearning(lam=lam, epsilon=1.0, delta=1e-4, max_removals=2),
                    lambda s: s.W_bar),
        "newton_shortcut": (newton_shortcut(lam=lam), None),
    }
    for name, (inner, nl) in inners.items():
        pr = private_release(inner, lam=lam, epsilon=1.0, delta=1e-5, noiseless=nl)
        res = pr.unlearn(pr.init(X, y, jax.random.key(1)), [5])
        assert res.certificate.valid and res.outcome == "unlearned", name
        # Guo's b is removed by the check: the released noiseless model is the exact one
        assert float(jnp.linalg.norm(res.state.noiseless - ref)) <= 1e-8 / lam, name
    assert res.diagnostics["polish_steps"] <= 2


class _Refuses:
    """An unlearner that refuses its first request (``retrain_required``, no model)."""

    def __init__(self, inner):
        self.inner = inner

    def init(self, X, y, key, num_classes=None):
        return self.inner.init(X, y, key, num_classes=num_classes)

    def params(self, s):
        return self.inner.params(s)

    def unlearn(self, s, idx, key=None):
        from certun.unlearners.base import UnlearnResult
        return UnlearnResult(None, s, None, "retrain_required", {"why": "budget"})

    def retrain(self, s, key=None):
        return self.inner.retrain(s, key)


def _refusal_case(inner, X, y, lam, plain):
    pr = private_release(inner, lam=lam, epsilon=1.0, delta=1e-5)
    res = pr.unlearn(pr.init(X, y, jax.random.key(0)), [0])
    assert res.diagnostics["inner_outcome"] == "retrain_required"
    assert res.outcome == "unlearned" and res.params is not None and res.certificate.valid
    assert res.state.inner is None  # dropped: later releases polish the last model
    res2 = pr.unlearn(res.state, [4])
    assert res2.diagnostics["inner_outcome"] == "dropped" and res2.certificate.valid
    keep = np.setdiff1d(np.arange(X.shape[0]), [0, 4])
    ref = glm.fit("logistic", X[keep], y[keep], lam, tol=1e-12).params
    assert float(jnp.linalg.norm(res2.state.noiseless - ref)) <= 1e-8 / lam
    assert pr.retrain(res2.state).params.shape == pr.params(res2.state).shape == ref[:, 0].shape
    assert float(jnp.linalg.norm(pr.retrain(res2.state).params - ref[:, 0])) <= 1e-8 / lam
    # the public view equals that of a world whose inner unlearner never refused
    pe = private_release(plain, lam=lam, epsilon=1.0, delta=1e-5)
    other = pe.unlearn(pe.init(X, y, jax.random.key(0)), [0]).certificate
    assert json.dumps(res.certificate.public()) == json.dumps(other.public())


def test_inner_refusal_is_private_and_the_release_is_published(digits38):
    """A refusal of the inner unlearner: the release polishes the last model and publishes."""
    X, y = _small(digits38, 60)
    plain = exact_retraining(lam=0.1)
    _refusal_case(_Refuses(plain), X, y, 0.1, plain)


@pytest.mark.slow
def test_guo_refusal_is_private_and_the_release_is_published(digits38):
    """Guo's spent budget refuses; the release still publishes, with the same public view."""
    X, y = _small(digits38, 80)
    lam = 1e-3
    _refusal_case(certified_removal(lam=lam, sigma=1e-3, epsilon=1.0, delta=1e-4,
                                    update="pcg"), X, y, lam,
                  exact_retraining(lam=lam))


def test_release_refuses_only_what_it_cannot_certify(digits38):
    X, y = _small(digits38, 60)
    lam, dim = 0.1, X.shape[1]

    class Garbage:
        def init(self, X, y, key, num_classes=None):
            return 0

        def params(self, s):
            return jnp.full(dim, 50.0)

        def unlearn(self, s, idx, key=None):
            from certun.unlearners.base import UnlearnResult
            return UnlearnResult(jnp.full(dim, jnp.nan), s, None, "unlearned", {})

        def retrain(self, s, key=None):
            return None

    with pytest.raises(RuntimeError, match="within tol"):
        private_release(Garbage(), lam=lam, epsilon=1.0, delta=1e-5, max_polish_steps=0).init(
            X, y, jax.random.key(0))
    pr = private_release(Garbage(), lam=lam, epsilon=1.0, delta=1e-5)
    st = pr.init(X, y, jax.random.key(0))  # refined by Newton steps
    assert st.noiseless.shape == (dim, 1)
    res = pr.unlearn(st, [2])  # non-finite inner output: refined from zero, privately
    keep = np.setdiff1d(np.arange(60), [2])
    ref = glm.fit("logistic", X[keep], y[keep], lam, tol=1e-12).params
    assert float(jnp.linalg.norm(res.state.noiseless - ref)) <= 1e-8 / lam
    with pytest.raises(ValueError, match="label_bound"):
        private_release(exact_retraining(lam=lam, loss="squared"), lam=lam, epsilon=1.0,
                        delta=1e-5, loss="squared")


def test_ridge_release_clips_labels_and_parameters():
    ds = synthetic_regression(n=80, d=4, seed=0)
    X, y = ds.X_train, 3.0 * ds.y_train  # labels beyond B = 1 get clipped
    lam = 0.2
    pr = private_release(exact_retraining(lam=lam, loss="squared"), lam=lam, epsilon=1.0,
                         delta=1e-5, loss="squared", label_bound=1.0)
    st = pr.init(X, y, jax.random.key(0))
    assert st.labels_clipped == int(np.sum(np.abs(y) > 1.0)) > 0
    assert float(jnp.max(jnp.abs(st.Y))) <= 1.0
    s = release_sensitivity("squared", lam, X.shape[0], label_bound=1.0, tol=1e-8)
    assert st.sigmas[0] == pytest.approx(Z1 * s.value, rel=1e-12)
    assert float(jnp.linalg.norm(st.noiseless)) <= s.clip_radius
    ref = glm.fit("squared", X, np.clip(y, -1, 1), lam, tol=1e-12).params
    assert float(jnp.linalg.norm(st.noiseless - ref)) <= 1e-8 / lam
    res = pr.unlearn(st, [0])
    assert res.certificate.valid
    names = [a.name for a in res.certificate.assumptions]
    assert "label_bound" in names and "projection" in names
    # the number of clipped labels is data-dependent: private view only
    pub = json.dumps(res.certificate.public())
    lb = [a for a in res.certificate.public()["assumptions"] if a["name"] == "label_bound"][0]
    assert "value" not in lb and res.certificate.private["labels_clipped"] == st.labels_clipped
    assert "training labels changed" not in pub


def test_jit_and_eager_agree(digits38):
    lam = 0.1
    X, y = _small(digits38, 40)
    pr = private_release(exact_retraining(lam=lam), lam=lam, epsilon=1.0, delta=1e-5)
    a = pr.init(X, y, jax.random.key(2))
    with jax.disable_jit():
        b = pr.init(X, y, jax.random.key(2))
    np.testing.assert_allclose(np.asarray(a.published), np.asarray(b.published), atol=1e-9)
