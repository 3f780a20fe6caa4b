"""Public certificate views hold nothing data-dependent.

See proofs/README.md, "Noise scales and public fields".
Each mechanism runs the same public configuration and the same requests on two different
data sets of the same public shape (``n``, ``d``, binary labels); its public view must come
out identical, while the private view differs (so the comparison could fail).
"""

from __future__ import annotations

import json

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
)

MECHANISMS = {
    "exact_retraining": lambda: exact_retraining(lam=0.1),
    "certified_removal": lambda: certified_removal(lam=0.1, sigma=1.0, epsilon=1.0, delta=1e-4,
                                                   update="pcg"),
    "certified_removal_cached": lambda: certified_removal(lam=0.1, sigma=1.0, epsilon=1.0,
                                                          delta=1e-4, update="cached"),
    "newton_unlearning": lambda: newton_unlearning(lam=0.1, epsilon=1.0, delta=1e-4,
                                                   max_removals=4),
    "descent_to_delete": lambda: descent_to_delete(lam=0.1, epsilon=1.0, delta=1e-5, steps=3),
    "langevin_unlearning": lambda: langevin_unlearning(lam=0.1, sigma=0.05, epsilon=1.0,
                                                       delta=1e-5, burn_in=50),
    "private_release": lambda: private_release(exact_retraining(lam=0.1), lam=0.1, epsilon=1.0,
                                               delta=1e-5),
    "private_release_add_remove": lambda: private_release(
        exact_retraining(lam=0.1), lam=0.1, epsilon=1.0, delta=1e-5, adjacency="add_remove",
        n_min=30),
}


def _data(seed: int, n: int = 36, d: int = 5):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, d))
    X *= r.uniform(0.3, 0.99, (n, 1)) / np.linalg.norm(X, axis=1, keepdims=True)
    return X, np.sign(r.normal(size=n))


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b))
                for p in _diff(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True))
                for p in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


# the cached Guo variant and the add/remove release (also checked in tests/test_release.py)
# run in the slow tier
_SLOW = {"certified_removal_cached", "private_release_add_remove"}


@pytest.mark.parametrize("name", [pytest.param(k, marks=pytest.mark.slow) if k in _SLOW else k
                                  for k in sorted(MECHANISMS)])
def test_public_view_is_identical_on_data_of_the_same_public_shape(name):
    unl = MECHANISMS[name]()
    pub, priv = [], []
    for seed in (0, 1):
        X, y = _data(seed)
        res = unl.unlearn(unl.init(X, y, jax.random.key(0)), [1, 2])
        assert res.params is not None and res.certificate.status != "fails", name
        pub.append(res.certificate.public())
        priv.append(res.certificate.to_dict())
    assert _diff(*pub) == [], f"{name}: data-dependent public fields {_diff(*pub)}"
    assert json.dumps(pub[0], sort_keys=True) == json.dumps(pub[1], sort_keys=True)
    assert _diff(*priv), name  # the private views do differ: the check can fail
    # the budget's amount used or left never appears in the public view
    assert pub[0]["budget"] is None or set(pub[0]["budget"]) == {"total", "unit"}


def test_guo_public_view_is_the_same_whether_a_request_is_stepped_or_retrained():
    """The outcome (unlearned vs retrained) is data-dependent and private: same public view."""
    X, y = _data(0)
    unl = certified_removal(lam=0.1, sigma=0.02, epsilon=1.0, delta=1e-4, auto_retrain=True,
                            update="pcg")
    st = unl.init(X, y, jax.random.key(0))
    views: dict[str, str] = {}
    for i in range(X.shape[0]):
        res = unl.unlearn(st, [i])
        views.setdefault(res.outcome, json.dumps(res.certificate.public(), sort_keys=True))
        if len(views) == 2:
            break
    assert set(views) == {"unlearned", "retrained"}
    assert views["unlearned"] == views["retrained"]
