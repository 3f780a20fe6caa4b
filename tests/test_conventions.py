"""Library conventions: lazy imports, scoped float64, explicit keys.

* ``import certun`` loads neither jax nor the heavy optional stacks (dp_accounting, flax,
  optax, rich, lineax, scipy, scikit-learn) nor the audits; they load on first use.
* No library call changes JAX's global configuration: ``certun.x64()`` is a scoped context;
  only ``certun.enable_x64()`` (for programs) writes the global flag; ``run_demo`` and the
  CLI run inside the scoped context.
* LiSSA never falls back to a fixed key where randomness is used.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import certun
from certun.primitives import curvature as cv
from certun.primitives import solvers as sv

ROOT = Path(__file__).resolve().parents[1]
LAZY = ("jax", "dp_accounting", "flax", "optax", "rich", "lineax", "scipy", "sklearn",
        "certun.audits", "certun.accounting", "certun.unlearners", "certun.nn")


def test_import_certun_loads_no_heavy_module_and_demo_keeps_the_global_flag():
    """One fresh interpreter: what ``import certun`` loads, then a scoped-x64 call."""
    code = ("import sys, certun\n"
            f"print(sorted(m for m in {LAZY!r} if m in sys.modules))\n"
            "certun.certified_removal\n"  # a lazy attribute loads its subpackage on access
            "print('certun.unlearners' in sys.modules, 'jax' in sys.modules)\n"
            "print(set(dir(certun)) >= {'audits', 'certified_removal', 'RESULTS'})\n"
            "import jax, certun.demo as d\n"
            "@d._scoped_x64\n"
            "def f():\n"
            "    import jax.numpy as jnp\n"
            "    return jnp.ones(1).dtype\n"
            "print(f(), jax.config.jax_enable_x64)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                           "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-2000:]
    first, second, third, fourth = out.stdout.splitlines()
    assert first == "[]", f"import certun loaded {first}"
    assert second == "True True" and third == "True"
    assert fourth.split() == ["float64", "False"]  # float64 inside, global flag untouched
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        certun.nope  # noqa: B018


def test_x64_context_is_scoped_and_restores_on_error():
    before = jax.config.jax_enable_x64  # the test session runs in float64 (conftest)
    with certun.x64(False):
        assert jnp.ones(2).dtype == jnp.float32
        with certun.x64():
            assert jnp.ones(2).dtype == jnp.float64
        assert jnp.ones(2).dtype == jnp.float32
    assert jax.config.jax_enable_x64 == before
    with pytest.raises(RuntimeError), certun.x64(False):
        raise RuntimeError("boom")
    assert jax.config.jax_enable_x64 == before


def test_no_library_code_writes_global_jax_config():
    """Only enable_x64 (documented as for programs) may call jax.config.update."""
    hits = []
    for path in sorted((ROOT / "certun").rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"jax\.config\.update\(|config\.update\(\"jax_enable_x64\"", line):
                hits.append(f"{path.relative_to(ROOT)}:{i}")
    assert hits == ["certun/__init__.py:" + hits[0].split(":")[1]] and len(hits) == 1, hits
    from certun import demo

    assert demo.run_demo.__wrapped__ and demo._run_first_order.__wrapped__  # scoped x64


def test_lissa_needs_explicit_keys():
    A = jnp.diag(jnp.array([1.0, 2.0, 3.0]))
    op = cv.LinearOperator(lambda v: A @ v, jax.ShapeDtypeStruct((3,), A.dtype))
    with pytest.raises(ValueError, match="key is required to estimate the scale"):
        sv.lissa_solver(depth=50).init(op)
    stochastic = op._replace(sample_mv=lambda k, v: A @ v)
    ls = sv.lissa_solver(scale=4.0, depth=50)
    with pytest.raises(ValueError, match="key is required for a stochastic operator"):
        ls.solve(ls.init(stochastic), jnp.ones(3))
    # a deterministic operator with a given scale draws nothing: no key needed, same answer
    a = ls.solve(ls.init(op), jnp.ones(3))
    b = ls.solve(ls.init(stochastic), jnp.ones(3), key=jax.random.key(5))
    np.testing.assert_allclose(np.asarray(a.value), np.asarray(b.value), rtol=1e-12)
