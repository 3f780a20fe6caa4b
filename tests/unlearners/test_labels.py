"""Every unlearner's init checks labels through one rule (certun._validate.targets)."""

import jax
import numpy as np
import pytest

from certun import _validate
from certun.audits.baselines import newton_shortcut
from certun.data import normalize_rows
from certun.release import private_release
from certun.sisa import sisa
from certun.unlearners.descent_to_delete import descent_to_delete
from certun.unlearners.guo import certified_removal
from certun.unlearners.langevin import langevin_unlearning
from certun.unlearners.retrain import exact_retraining
from certun.unlearners.sekhari import newton_unlearning

N, D = 24, 3


def _unlearners():
    return {
        "guo": certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4,
                                 update="pcg"),
        "sekhari": newton_unlearning(lam=1e-1, epsilon=1.0, delta=1e-4),
        "langevin": langevin_unlearning(lam=1e-1, sigma=0.1, epsilon=1.0, delta=1e-4,
                                        burn_in=10),
        "d2d": descent_to_delete(lam=1e-1, epsilon=1.0, delta=1e-5, steps=2),
        "retrain": exact_retraining(lam=1e-2),
        "sisa": sisa(shards=2, slices=1, lam=1e-2),
        "release": private_release(certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0,
                                                     delta=1e-4, update="pcg"),
                                   lam=1e-2, epsilon=1.0, delta=1e-4),
        "shortcut": newton_shortcut(lam=1e-2),
    }


UNLEARNERS = _unlearners()

# (labels, num_classes, message fragment)
BAD = {
    "column (n, 1)": (lambda y: y[:, None], None,
                      r"y must be 1-D .* got shape \(24, 1\); pass y\[:, 0\]"),
    "one-hot (n, 2)": (lambda y: np.stack([y > 0, y < 0], 1).astype(float), None,
                       r"y must be 1-D .* shape \(24, 2\); pass class ids"),
    "gap {0, 2}": (lambda y: np.where(y > 0, 2, 0), None, r"y has no row of class id\(s\) \[1\]"),
    "gap {5, 7}": (lambda y: np.where(y > 0, 7, 5), None, r"y has no row of class id\(s\) \[0, 1"),
    "single class +1": (lambda y: np.ones_like(y), None, r"y holds the single label \+1"),
    "single class 2": (lambda y: np.full_like(y, 2.0), None, r"y holds a single class"),
    "num_classes=1": (lambda y: (y > 0).astype(int), 1, r"num_classes=1 is not a classifier"),
    "{0, 1} unset": (lambda y: (y > 0).astype(int), None, r"y holds labels \{0, 1\}.*2 \* y - 1"),
    "gap with num_classes": (lambda y: np.where(y > 0, 2, 0), 3, r"no row of class id\(s\) \[1\]"),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = normalize_rows(rng.standard_normal((N, D)))
    y = np.where(rng.standard_normal(N) > 0, 1.0, -1.0)
    y[:2] = (1.0, -1.0)
    return X, y


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("name", list(UNLEARNERS))
def test_bad_labels_rejected_at_init(name, case, data):
    X, y = data
    make, K, msg = BAD[case]
    with pytest.raises(_validate.ValidationError, match=msg) as info:
        UNLEARNERS[name].init(X, make(y), jax.random.key(0), num_classes=K)
    assert "\n" not in str(info.value)


def test_ridge_keeps_real_valued_targets(data):
    X, _ = data
    yr = np.linspace(-0.7, 0.9, N)
    unl = certified_removal(lam=1e-2, sigma=0.1, epsilon=1.0, delta=1e-4, loss="squared")
    st = unl.init(X, yr, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(st.Y)[:, 0], yr)
    ref = exact_retraining(lam=1e-2, loss="squared").init(X, yr)
    np.testing.assert_array_equal(np.asarray(ref.Y)[:, 0], yr)
    with pytest.raises(_validate.ValidationError, match="num_classes=2 applies to classif"):
        unl.init(X, yr, jax.random.key(0), num_classes=2)


def test_valid_labels_agree_across_unlearners(data):
    # +-1 gives one head, class ids with num_classes=2 two heads with the +-1 one-vs-rest coding
    X, y = data
    st = certified_removal(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4,
                           update="pcg").init(
        X, y, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(st.Y), y[:, None])
    ids = (y > 0).astype(int)
    st2 = exact_retraining(lam=1e-2).init(X, ids, num_classes=2)
    np.testing.assert_array_equal(np.asarray(st2.Y), np.stack([-y, y], 1))
    three = np.arange(N) % 3
    st3 = exact_retraining(lam=1e-2).init(X, three)
    np.testing.assert_array_equal(np.asarray(st3.Y).argmax(1), three)
    assert np.asarray(st3.Y).shape == (N, 3)


def test_multinomial_retraining_checks_class_ids(data):
    X, y = data
    unl = exact_retraining(lam=1e-2, loss="multinomial")
    with pytest.raises(_validate.ValidationError, match=r"no row of class id\(s\) \[1\]"):
        unl.init(X, np.where(y > 0, 2, 0))
    with pytest.raises(_validate.ValidationError, match="num_classes=1"):
        unl.init(X, (y > 0).astype(int), num_classes=1)
