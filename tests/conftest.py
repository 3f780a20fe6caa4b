"""Shared test configuration: float64, strict promotion, deterministic keys.

Tests compare against exact references (dense Hessians, direct solves,
retraining, scikit-learn) in float64, so x64 is switched on for the whole suite.
"""

import os

os.environ.setdefault("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    """A fixed PRNG key; tests derive sub-keys with jax.random.fold_in."""
    return jax.random.key(0)


@pytest.fixture
def rng():
    """A seeded NumPy generator for building test problems."""
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def digits38():
    """The bundled digits 3-vs-8 dataset (:func:`certun.data.load_digits_3v8`), once per module."""
    from certun.data import load_digits_3v8

    return load_digits_3v8()
