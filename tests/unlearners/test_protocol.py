"""The unlearner protocol: ``params(state)`` and ``retrain(state).params`` share one form.

``(d,)`` for one linear head, ``(d, K)`` for K heads (see ``certun.unlearners.base``), so
``params(state) - retrain(state).params`` is the distance it reads as and never broadcasts to
``(d, d)``. Every linear unlearner certun ships runs one request on a tiny problem, binary and
three-class (certified removal's binary form, cached and PCG, is checked in ``test_guo.py``
and ``test_guo_cached.py``); exact retraining must also agree with its own reference in value.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from certun.release import private_release
from certun.unlearners import (
    certified_removal,
    descent_to_delete,
    exact_retraining,
    langevin_unlearning,
    newton_unlearning,
    pnsgd_unlearning,
    published_view,
)

LAM = 0.1
MECHANISMS = {
    "exact_retraining": (lambda: exact_retraining(lam=LAM), {}),
    "certified_removal_pcg": (lambda: certified_removal(lam=LAM, sigma=1.0, epsilon=1.0,
                                                        delta=1e-4, update="pcg"), {}),
    "newton_unlearning": (lambda: newton_unlearning(lam=LAM, epsilon=1.0, delta=1e-4,
                                                    max_removals=4), {}),
    "descent_to_delete": (lambda: descent_to_delete(lam=LAM, epsilon=1.0, delta=1e-5, steps=3),
                          {}),
    "langevin_unlearning": (lambda: langevin_unlearning(lam=LAM, sigma=0.05, epsilon=1.0,
                                                        delta=1e-5, burn_in=20),
                            {"key": jax.random.key(5)}),
    "pnsgd_unlearning": (lambda: pnsgd_unlearning(lam=0.3, sigma=0.05, epsilon=1.0, delta=1e-5,
                                                  batch_size=8, epochs=6, radius=5.0), {}),
    "private_release": (lambda: private_release(exact_retraining(lam=LAM), lam=LAM, epsilon=1.0,
                                                delta=1e-5), {}),
}


def _data(classes: int, n: int = 36, d: int = 5):
    r = np.random.default_rng(classes)
    X = r.normal(size=(n, d))
    X *= r.uniform(0.3, 0.99, (n, 1)) / np.linalg.norm(X, axis=1, keepdims=True)
    y = np.sign(r.normal(size=n)) if classes == 2 else r.integers(0, classes, n)
    return X, y


CASES = [(name, classes) for name in sorted(MECHANISMS) for classes in (2, 3)
         if (name, classes) != ("certified_removal_pcg", 2)]


@pytest.mark.parametrize("name, classes", CASES)
def test_params_and_retrain_share_their_form(name, classes):
    make, kw = MECHANISMS[name]
    unl = make()
    X, y = _data(classes)
    init_kw = {} if classes == 2 else {"num_classes": classes}
    res = unl.unlearn(unl.init(X, y, jax.random.key(0), **init_kw), [3, 7])
    assert res.params is not None, res.certificate.reason
    want = (X.shape[1],) if classes == 2 else (X.shape[1], classes)
    published, ref = unl.params(res.state), unl.retrain(res.state, **kw).params
    assert np.shape(res.params) == np.shape(published) == np.shape(ref) == want
    if name == "exact_retraining":  # the same fit: equal values, not only equal shapes
        np.testing.assert_allclose(np.asarray(published), np.asarray(ref), rtol=0, atol=1e-12)


def test_published_view():
    W = np.arange(6.0).reshape(3, 2)
    assert published_view(W[:, :1]).shape == (3,)
    np.testing.assert_array_equal(published_view(W[:, :1]), W[:, 0])
    assert published_view(W) is W
