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
"""

from certun import accounting as accounting
from certun import bounds as bounds
from certun import data as data
from certun import ledger as ledger
from certun import models as models
from certun import primitives as primitives
from certun import scale as scale
from certun import sharding as sharding
from certun import sisa as sisa
from certun import unlearners as unlearners
from certun._validate import ValidationError as ValidationError
from certun._version import __version__ as __version__
from certun.certificate import Assumption as Assumption
from certun.certificate import Budget as Budget
from certun.certificate import Certificate as Certificate
from certun.certificate import make_certificate as make_certificate
from certun.results import RESULTS as RESULTS
from certun.results import Solution as Solution
from certun.unlearners import certified_removal as certified_removal
from certun.unlearners import exact_retraining as exact_retraining
from certun.unlearners import newton_unlearning as newton_unlearning


def enable_x64() -> None:
    """Switch JAX to float64 (``jax_enable_x64``); certified convex bounds need it.

    certun never changes global configuration on import; call this (or set
    ``JAX_ENABLE_X64=1``) before creating arrays.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
from certun import audits as audits  # noqa: E402
from certun import nn as nn  # noqa: E402
from certun import release as release  # noqa: E402
from certun.release import private_release as private_release  # noqa: E402
from certun.unlearners import descent_to_delete as descent_to_delete  # noqa: E402
from certun.unlearners import langevin_unlearning as langevin_unlearning  # noqa: E402
from certun.unlearners import zhang_unlearning as zhang_unlearning  # noqa: E402
