"""certun: certified machine unlearning in JAX.

Layers (each depends only on those above it):

* :mod:`certun.primitives` -- HVPs, Gauss-Newton products, inverse-HVP solvers,
  spectral bounds, calibrated pytree noise;
* :mod:`certun.accounting` -- Gaussian-mechanism calibration and composition;
* :mod:`certun.models` -- convex models trained to a tight optimum;
* :mod:`certun.bounds` -- the error bounds certificates rest on;
* :mod:`certun.unlearners` -- certified unlearners returning a
  :class:`~certun.certificate.Certificate` with every model;
* :mod:`certun.data` -- bundled real datasets and local-file loaders (no network).

Loss scales are defined once in :mod:`certun.scale`; host-side argument checks in
``certun._validate``; result codes in :mod:`certun.results`.

``import certun`` is light: it loads the certificate classes (standard library only, not
even ``jax``). The result codes, the validation error, every subpackage and the functions
re-exported here (such as :func:`certified_removal`) are imported on first use, so
``jax``, ``dp_accounting``, ``flax``, ``optax``, ``lineax``, ``scipy`` and the audits load
only when a program needs them.

Precision: certified convex bounds need float64. Use the scoped :func:`x64` context
(``with certun.x64(): ...``), or :func:`enable_x64` to switch the whole program; no
library call changes JAX's global configuration.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

# eager: the standard library only (no jax), so ``certun --help`` starts fast
from certun._version import __version__ as __version__
from certun.certificate import Assumption as Assumption
from certun.certificate import Budget as Budget
from certun.certificate import Certificate as Certificate
from certun.certificate import make_certificate as make_certificate

# name -> (module, attribute or None for the module itself), imported on first access
_LAZY: dict[str, tuple[str, str | None]] = {
    "ValidationError": ("certun._validate", "ValidationError"),
    "RESULTS": ("certun.results", "RESULTS"),
    "Solution": ("certun.results", "Solution"),
    "accounting": ("certun.accounting", None),
    "audits": ("certun.audits", None),
    "bounds": ("certun.bounds", None),
    "data": ("certun.data", None),
    "ledger": ("certun.ledger", None),
    "models": ("certun.models", None),
    "nn": ("certun.nn", None),
    "primitives": ("certun.primitives", None),
    "release": ("certun.release", None),
    "scale": ("certun.scale", None),
    "sharding": ("certun.sharding", None),
    "sisa": ("certun.sisa", None),
    "unlearners": ("certun.unlearners", None),
    "certified_removal": ("certun.unlearners", "certified_removal"),
    "exact_retraining": ("certun.unlearners", "exact_retraining"),
    "newton_unlearning": ("certun.unlearners", "newton_unlearning"),
    "descent_to_delete": ("certun.unlearners", "descent_to_delete"),
    "langevin_unlearning": ("certun.unlearners", "langevin_unlearning"),
    "zhang_unlearning": ("certun.unlearners", "zhang_unlearning"),
    "private_release": ("certun.release", "private_release"),
}

if TYPE_CHECKING:  # static checkers and IDEs see the eager names
    from certun import accounting as accounting
    from certun import audits as audits
    from certun import bounds as bounds
    from certun import data as data
    from certun import ledger as ledger
    from certun import models as models
    from certun import nn as nn
    from certun import primitives as primitives
    from certun import release as release
    from certun import scale as scale
    from certun import sharding as sharding
    from certun import sisa as sisa
    from certun import unlearners as unlearners
    from certun._validate import ValidationError as ValidationError
    from certun.release import private_release as private_release
    from certun.results import RESULTS as RESULTS
    from certun.results import Solution as Solution
    from certun.unlearners import certified_removal as certified_removal
    from certun.unlearners import descent_to_delete as descent_to_delete
    from certun.unlearners import exact_retraining as exact_retraining
    from certun.unlearners import langevin_unlearning as langevin_unlearning
    from certun.unlearners import newton_unlearning as newton_unlearning
    from certun.unlearners import zhang_unlearning as zhang_unlearning


def __getattr__(name: str) -> Any:
    """Import a subpackage or a re-exported function on first access (PEP 562)."""
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'certun' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def enable_x64() -> None:
    """Switch JAX to float64 for the whole program (``jax_enable_x64``).

    Certified convex bounds need float64. This changes JAX's global configuration, so only
    a program (a script, a notebook, the command line) should call it, before creating
    arrays (or set ``JAX_ENABLE_X64=1``); libraries and tests use the scoped :func:`x64`.
    certun never changes global configuration itself.
    """
    import jax

    jax.config.update("jax_enable_x64", True)


@contextlib.contextmanager
def x64(enabled: bool = True) -> Iterator[None]:
    """Float64 inside a ``with`` block only: ``with certun.x64(): ...``.

    JAX's ``jax_enable_x64`` is set for the block (this thread) and restored when it ends,
    even on an exception; arrays created inside stay float64 afterwards. Create the data,
    train and unlearn inside the block.

    Args:
      enabled: ``True`` for float64 inside the block, ``False`` to force float32.

    Yields:
      Nothing; the block runs with the requested precision.
    """
    import jax

    with jax.enable_x64(enabled):
        yield
