"""SISA (Bourtoule et al. 2021): a deletion leaves exactly the model SISA training gives."""

import jax
import numpy as np
import pytest

from certun.data import load_diabetes, load_digits, load_digits_3v8
from certun.models import glm
from certun.sisa import sisa


@pytest.fixture(scope="module")
def binary():
    ds = load_digits_3v8()
    ens = sisa(shards=3, slices=4, lam=1e-2)
    return ds, ens, ens.init(ds.X_train, ds.y_train, jax.random.key(0))


def test_checkpoints_are_slice_prefix_optima(binary):
    ds, ens, st = binary
    X, Y, sl, mk = (np.asarray(a) for a in (st.X, st.Y, st.slice_id, st.mask))
    assert mk.sum() == ds.X_train.shape[0] and int(st.slice_fits) == 12
    fit = jax.jit(lambda X, Y, m: glm.fit("logistic", X, Y, 1e-2, None, m, tol=1e-12).params)
    for s in range(3):
        for r in range(4):
            m = mk[s] * (sl[s] <= r)
            ref = fit(X[s], Y[s], m)  # from zero, not warm-started
            np.testing.assert_allclose(np.asarray(st.checkpoints[s, r]), np.asarray(ref),
                                       atol=1e-8)
    # every original row sits in exactly one shard, at the recorded position
    shard_of, pos_of = np.asarray(st.shard_of), np.asarray(st.pos_of)
    np.testing.assert_array_equal(X[shard_of, pos_of], ds.X_train)


def test_deletion_is_exactly_retraining_the_shard_from_its_checkpoint(binary):
    ds, ens, st = binary
    shard_of, pos_of, sl = (np.asarray(a) for a in (st.shard_of, st.pos_of, st.slice_id))
    i = int(np.flatnonzero((shard_of == 1) & (sl[shard_of, pos_of] == 2))[0])  # slice 2, shard 1
    out = ens.delete(st, [i])
    assert out.shards == (1,) and out.slices_refit == 2  # slices 2 and 3 of shard 1
    new = out.state
    # reference 1: retrain shard 1 by hand from checkpoint 1 (the one before slice 2)
    mask = np.asarray(st.mask).copy()
    mask[1, pos_of[i]] = 0.0
    W = st.checkpoints[1, 1]
    fit = jax.jit(lambda m, W: glm.fit("logistic", st.X[1], st.Y[1], 1e-2, None, m, W,
                                       tol=1e-10).params)
    for r in (2, 3):
        W = fit(mask[1] * (sl[1] <= r), W)
        np.testing.assert_allclose(np.asarray(new.checkpoints[1, r]), np.asarray(W), atol=1e-9)
    # reference 2: the library's own training routine from that checkpoint: bit for bit
    again = ens.fit_slices(new, 1, 2)
    np.testing.assert_array_equal(np.asarray(new.checkpoints[1, 2:]), np.asarray(again))
    # untouched: checkpoints before slice 2 and every other shard, bit for bit
    np.testing.assert_array_equal(np.asarray(new.checkpoints[1, :2]),
                                  np.asarray(st.checkpoints[1, :2]))
    for s in (0, 2):
        np.testing.assert_array_equal(np.asarray(new.checkpoints[s]), np.asarray(st.checkpoints[s]))
    # and SISA training from scratch on the remaining rows gives the same ensemble, bit for bit
    scratch = np.stack([np.asarray(ens.fit_slices(new, s, 0)) for s in range(3)])
    np.testing.assert_array_equal(np.asarray(new.checkpoints), scratch)


def test_batch_deletion_and_errors(binary):
    ds, ens, st = binary
    out = ens.delete(st, [0, 1, 2, 3, 4, 5])
    assert set(out.shards) <= {0, 1, 2} and out.slices_refit >= 1
    assert float(np.asarray(out.state.mask).sum()) == ds.X_train.shape[0] - 6
    with pytest.raises(ValueError, match="already removed"):
        ens.delete(out.state, [3])
    with pytest.raises(ValueError, match="out-of-range"):
        ens.delete(st, [10_000])
    with pytest.raises(ValueError, match="empty"):
        ens.delete(st, [])
    with pytest.raises(ValueError, match="shards"):
        sisa(shards=100, slices=10, lam=1e-2).init(ds.X_train[:50], ds.y_train[:50],
                                                   jax.random.key(0))


def test_aggregation_vote_and_mean(binary):
    ds, ens, st = binary
    acc_vote = np.mean(np.asarray(ens.predict(st, ds.X_test)) == ds.y_test)
    mean = sisa(shards=3, slices=4, lam=1e-2, aggregate="mean")
    acc_mean = np.mean(np.asarray(mean.predict(st, ds.X_test)) == ds.y_test)
    scores = np.einsum("nd,sd->sn", ds.X_test, np.asarray(st.checkpoints[:, -1, :, 0]))
    votes = np.sign(scores).sum(0)
    ref = np.where(votes != 0, np.sign(votes), np.where(scores.mean(0) >= 0, 1.0, -1.0))
    np.testing.assert_array_equal(np.asarray(ens.predict(st, ds.X_test)), ref)
    np.testing.assert_array_equal(np.asarray(mean.predict(st, ds.X_test)),
                                  np.where(scores.mean(0) >= 0, 1.0, -1.0))
    assert acc_vote > 0.85 and acc_mean > 0.85


def test_multiclass_and_ridge():
    ds = load_digits()
    ens = sisa(shards=2, slices=2, lam=1e-2, method="lbfgs", tol=1e-8)
    st = ens.init(ds.X_train, ds.y_train, jax.random.key(1), num_classes=10)
    assert st.checkpoints.shape == (2, 2, 64, 10)
    assert np.mean(np.asarray(ens.predict(st, ds.X_test)) == ds.y_test) > 0.85
    reg = load_diabetes()
    rens = sisa(shards=2, slices=2, lam=1e-2, loss="squared")
    rst = rens.init(reg.X_train, reg.y_train, jax.random.key(0))
    out = rens.delete(rst, [7])
    pred = np.asarray(rens.predict(out.state, reg.X_test))
    ck = np.asarray(out.state.checkpoints)
    manual = np.mean([reg.X_test @ ck[s, -1, :, 0] for s in range(2)], 0)
    np.testing.assert_allclose(pred, manual, rtol=1e-12)
