"""Host-side validators: every error names the argument and the fix."""

import numpy as np
import pytest

from certun import _validate as v


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "x"])
def test_epsilon(bad):
    with pytest.raises(ValueError, match="epsilon"):
        v.epsilon(epsilon=bad)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, float("nan")])
def test_delta(bad):
    with pytest.raises(ValueError, match="delta"):
        v.delta(delta=bad)


def test_arrays_and_shapes():
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        v.finite_array(X=np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="X contains 1 NaN/Inf"):
        v.finite_array(X=np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="empty"):
        v.finite_array(X=np.zeros((0, 3)))
    with pytest.raises(ValueError, match="dimension"):
        v.finite_array(X=np.zeros(3), ndim=2)
    with pytest.raises(ValueError, match="X has 3 rows, y has 2 rows"):
        v.matching_rows(X=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(ValueError, match="normalize_rows"):
        v.unit_rows(X=np.array([[3.0, 4.0]]))
    with pytest.raises(ValueError, match="params\\['w'\\]"):
        v.finite_tree(params={"w": np.array([np.nan])})


def test_forget_indices():
    assert v.forget_indices([4, 1], 10).tolist() == [1, 4]
    assert v.forget_indices(3, 10).tolist() == [3]
    with pytest.raises(ValueError, match="empty"):
        v.forget_indices([], 10)
    with pytest.raises(ValueError, match="out-of-range index 10"):
        v.forget_indices([10], 10)
    with pytest.raises(ValueError, match="repeats index 2"):
        v.forget_indices([2, 2], 10)
    # repeats apart in the request: the smallest repeated index is named
    with pytest.raises(ValueError, match="repeats index 2;"):
        v.forget_indices([7, 2, 9, 2, 7], 10)
    assert v.forget_indices([9, 0, 5, 3], 10).tolist() == [0, 3, 5, 9]
    with pytest.raises(ValueError, match="integer row indices"):
        v.forget_indices([1.5], 10)
    with pytest.raises(ValueError, match="already removed"):
        v.forget_indices([1], 3, already_removed=np.array([False, True, False]))


@pytest.mark.parametrize("bad, fragment", [
    (99999999999999999999, "out-of-range index 99999999999999999999 (valid range 0..9"),
    ([1, 2**64 + 3], f"out-of-range index {2**64 + 3} (valid range 0..9"),
    (np.array([2**63 + 5], np.uint64), f"out-of-range index {2**63 + 5} (valid range 0..9"),
    (1e20, "out-of-range index 100000000000000000000 (valid range 0..9"),
    (-1, "out-of-range index -1 (valid range 0..9"),
    ([np.iinfo(np.int64).max], f"out-of-range index {np.iinfo(np.int64).max} (valid"),
    (1.5, "integer row indices (valid range 0..9 into the original training set), got 1.5"),
    (float("inf"), "got inf"),
    ("abc", "got 'abc'"),
    ([1, "a"], "got 'a'"),
    ([True], "got True"),
    ([[1], [2, 3]], "1-D list of integer row indices"),
])
def test_forget_indices_names_value_and_range(bad, fragment):
    with pytest.raises(v.ValidationError) as info:
        v.forget_indices(bad, 10)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("indices ")


def test_forget_indices_python_ints_answer_as_arrays_do():
    # a short list of Python ints is answered without NumPy: the same array and dtype, and
    # every invalid one still reaches the checks that name the problem
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        req = [int(i) for i in rng.integers(-2, n + 2, size=int(rng.integers(0, 6)))]
        for form in (req, tuple(req)):
            try:
                ref = v.forget_indices(np.asarray(req, np.int64), n)
            except v.ValidationError as e:
                with pytest.raises(v.ValidationError) as info:
                    v.forget_indices(form, n)
                assert str(info.value) == str(e)
                continue
            got = v.forget_indices(form, n)
            assert got.dtype == ref.dtype == np.int64 and got.tolist() == ref.tolist()


def test_forget_indices_accepts_big_python_ints_in_range():
    assert v.forget_indices([np.uint64(3), 2, 7.0], 10).tolist() == [2, 3, 7]
    assert v.forget_indices(np.array([5], np.uint64), 10).dtype == np.int64


def test_targets_rules():
    np.testing.assert_array_equal(v.targets("logistic", [1, -1, 1]), [[1], [-1], [1]])
    np.testing.assert_array_equal(v.targets("logistic", [0, 1, 0], 2),
                                  [[1, -1], [-1, 1], [1, -1]])
    np.testing.assert_array_equal(v.targets("logistic", [2, 0, 1]),
                                  [[-1, -1, 1], [1, -1, -1], [-1, 1, -1]])
    np.testing.assert_array_equal(v.targets("squared", [0.5, -2.0]), [[0.5], [-2.0]])
    np.testing.assert_array_equal(v.targets("squared", np.ones((2, 3))), np.ones((2, 3)))
    # replacement rows: a subset of the classes is fine
    np.testing.assert_array_equal(v.targets("logistic", [1], complete=False), [[1]])
    np.testing.assert_array_equal(v.targets("logistic", [2], 3, complete=False), [[-1, -1, 1]])


@pytest.mark.parametrize("y, K, fragment", [
    (np.ones((4, 1)), None, "y must be 1-D labels of shape (n,) for a logistic model, got "
                            "shape (4, 1); pass y[:, 0]"),
    (np.eye(2)[[0, 1, 0, 1]], None, "shape (4, 2); pass class ids 0..K-1"),
    ([0, 2, 0, 2], None, "y has no row of class id(s) [1] of 0..2"),
    ([5, 7, 5, 7], None, "y has no row of class id(s) [0, 1, 2, 3, 4] of 0..7"),
    ([0, 2, 0, 2], 3, "y has no row of class id(s) [1] of 0..2"),
    ([1, 1, 1, 1], None, "y holds the single label +1"),
    ([-1, -1], None, "y holds the single label -1"),
    ([3, 3], None, "y holds a single class (3)"),
    ([0, 1, 0, 1], 1, "num_classes=1 is not a classifier"),
    ([0, 1, 0, 1], 0, "num_classes=0 is not a classifier"),
    ([0, 1, 0, 1], 1.0, "num_classes must be an integer >= 2"),
    ([0, 1, 1, 0], None, "y holds labels {0, 1}, which certun does not guess: pass binary "
                         "labels in {-1, +1} (e.g. 2 * y - 1"),
    ([0, 0], None, "y holds labels {0, 1}"),
    ([0, 1, 3], 3, "y holds class id 3 >= num_classes=3"),
    ([-1, 1], 2, "y must hold integer class ids 0..K-1"),
    ([0.5, 1.0], None, "y must hold integer class ids 0..K-1"),
    ([0, 1, np.nan], None, "y contains 1 NaN"),
])
def test_targets_rejects_bad_labels(y, K, fragment):
    with pytest.raises(v.ValidationError) as info:
        v.targets("logistic", y, K)
    assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_targets_ridge_refuses_num_classes():
    with pytest.raises(v.ValidationError, match="num_classes=2 applies to classification"):
        v.targets("squared", [0.1, 0.2], 2)


@pytest.mark.parametrize("missing", ["lam", "sigma", "epsilon", "delta"])
def test_ledger_create_missing_config_key_is_a_validation_error(tmp_path, missing):
    import jax

    from certun.ledger import Ledger

    config = dict(lam=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4)
    del config[missing]
    X = np.eye(3)[[0, 1, 2, 0]] * 0.5
    with pytest.raises(v.ValidationError, match=rf"config is missing required key\(s\) "
                                                 rf"\['{missing}'\]"):
        Ledger.create(tmp_path / "led", X, np.array([1.0, -1.0, 1.0, -1.0]),
                      jax.random.key(0), config=config)
    assert not (tmp_path / "led").exists() or not any((tmp_path / "led").iterdir())
