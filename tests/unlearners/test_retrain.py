"""The exact-retraining baseline equals a direct fit on the remaining rows."""

import jax
import numpy as np

from certun.data import load_digits, load_digits_3v8
from certun.models import glm, multinomial
from certun.unlearners import certified_removal, exact_retraining


def test_retraining_equals_direct_fit():
    ds = load_digits_3v8()
    unl = exact_retraining(lam=1e-2)
    st = unl.init(ds.X_train, ds.y_train)
    res = unl.unlearn(st, [0, 5, 9])
    keep = np.setdiff1d(np.arange(ds.X_train.shape[0]), [0, 5, 9])
    ref = glm.fit("logistic", ds.X_train[keep], ds.y_train[keep], 1e-2, tol=1e-10).params[:, 0]
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(ref), atol=1e-9)
    assert res.certificate.valid and res.certificate.epsilon == 0.0


def test_multinomial_retraining():
    ds = load_digits()
    unl = exact_retraining(lam=1e-2, loss="multinomial")
    st = unl.init(ds.X_train, ds.y_train, num_classes=10)
    res = unl.unlearn(st, [1])
    keep = np.setdiff1d(np.arange(ds.X_train.shape[0]), [1])
    ref = multinomial.fit(ds.X_train[keep], ds.y_train[keep], 10, 1e-2, tol=1e-10).params
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(ref), atol=1e-9)


def test_same_b_retraining_matches_certified_removal_reference():
    ds = load_digits_3v8()
    cr = certified_removal(lam=1e-2, sigma=1.5, epsilon=1.0, delta=1e-4, update="pcg")
    st = cr.init(ds.X_train, ds.y_train, jax.random.key(0))
    er = exact_retraining(lam=1e-2, sigma=1.5)
    st2 = er.init(ds.X_train, ds.y_train, key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(st.b), np.asarray(st2.b))  # same draw of b
    res = er.unlearn(st2, [4])
    st = cr.unlearn(st, [4]).state
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(cr.retrain(st).params),
                               atol=1e-9)
