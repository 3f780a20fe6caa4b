"""Shared test configuration: float64, strict promotion, deterministic keys.

Tests compare against exact references (dense Hessians, direct solves,
retraining, scikit-learn) in float64, so x64 is switched on for the whole suite.
"""

import os

# Tests run XLA's CPU backend at optimisation level 0: most of the suite's time is compiling
# small programs, which this cuts by about a third; results agree with the default level to
# the tests' stated tolerances (every assertion compares with an exact reference).
# `CERTUN_TEST_XLA_OPT=default` runs the suite at XLA's default level instead.
_flags = os.environ.get("XLA_FLAGS", "")
if (os.environ.get("CERTUN_TEST_XLA_OPT", "0") != "default"
        and "xla_backend_optimization_level" not in _flags):
    _flags = (_flags + " --xla_backend_optimization_level=0").strip()
os.environ["XLA_FLAGS"] = _flags
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# One persistent XLA compilation cache for the whole test session: many tests build the same
# unlearner (same shapes, same HLO) and would otherwise compile it again in every test. The
# cache is keyed by the HLO, the backend and the flags, so it changes no result; it lives in
# a fresh temporary directory created by the first (controlling) process, inherited by the
# pytest-xdist workers and by CLI subprocesses through the environment, and removed at the end
# (`CERTUN_TEST_JAX_CACHE=DIR` keeps one across runs instead).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _kept = os.environ.get("CERTUN_TEST_JAX_CACHE")
    _cache = _kept or tempfile.mkdtemp(prefix="certun-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    if not _kept:
        atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

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


def _validate_every_certificate() -> None:
    """Every certificate built in the test process is checked against its published schema.

    ``Certificate.__post_init__`` is wrapped: both JSON views (private and public), after a
    round trip through ``json``, must match ``certun/schemas/certificate-1.schema.json``
    (``certun.certificate.validate_json``); a mismatch fails the test that built it.
    """
    import json as _json

    from certun import certificate as _c

    if getattr(_c.Certificate.__post_init__, "_schema_checked", False):
        return
    original = _c.Certificate.__post_init__

    def post_init(self):
        original(self)
        for private in (True, False):
            _c.validate_json(_json.loads(_json.dumps(self.to_dict(private=private))))

    post_init._schema_checked = True
    _c.Certificate.__post_init__ = post_init


_validate_every_certificate()
