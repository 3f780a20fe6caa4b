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
    with pytest.raises(ValueError, match="integers"):
        v.forget_indices([1.5], 10)
    with pytest.raises(ValueError, match="already removed"):
        v.forget_indices([1], 3, already_removed=np.array([False, True, False]))
