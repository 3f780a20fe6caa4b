"""Frozen-extractor certified head (Guo et al. 2020, public and DP extractors)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun import ValidationError
from certun.data.preprocessing import normalize_rows
from certun.unlearners import certified_removal
from certun.unlearners.frozen_head import DPExtractor, extract_features, frozen_extractor_head


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    y = np.where(X[:, 0] + 0.3 * X[:, 1] > 0, 1.0, -1.0)
    W = rng.normal(size=(6, 5))  # a "public" extractor: fixed random tanh features
    return X, y, {"W": jnp.asarray(W)}


def _extract(p, x):
    return jnp.tanh(x @ p["W"])


KW = dict(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-5)


def test_public_extractor_head_is_guo_on_the_features(problem):
    X, y, ep = problem
    unl = frozen_extractor_head(_extract, ep, extractor="public", **KW)
    st = unl.init(X, y, jax.random.key(0))
    res = unl.unlearn(st, [3, 10])
    # reference: certified removal run directly on the normalised features
    F = normalize_rows(np.tanh(X @ np.asarray(ep["W"])))
    np.testing.assert_allclose(extract_features(_extract, ep, X), F, rtol=1e-12, atol=1e-14)
    ref = certified_removal(**KW)
    rres = ref.unlearn(ref.init(F, y, jax.random.key(0)), [3, 10])
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(rres.params), rtol=1e-10)
    cert = res.certificate
    assert cert.status == rres.certificate.status == "holds"
    assert cert.epsilon == rres.certificate.epsilon
    assert cert.public()["public_inputs"]["extractor"] == "public"
    assert any("public" in n for n in cert.notes)


def test_dp_extractor_composes_and_limits_the_group(problem):
    X, y, ep = problem
    unl = frozen_extractor_head(_extract, ep, extractor=DPExtractor(0.5, 1e-6, 2), **KW)
    st = unl.init(X, y, jax.random.key(0))
    res = unl.unlearn(st, [3, 10])
    assert res.certificate.epsilon == pytest.approx(1.0 + 0.5)
    assert res.certificate.delta == pytest.approx(1e-5 + 1e-6)
    assert res.certificate.public_inputs["head_epsilon"] == 1.0
    with pytest.raises(ValidationError, match="groups of 2 rows"):
        unl.unlearn(res.state, [4])
    with pytest.raises(ValidationError, match="extractor must be"):
        frozen_extractor_head(_extract, ep, extractor="private", **KW)
