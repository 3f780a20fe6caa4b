"""Settings of the Bertran et al. (NeurIPS 2024) reconstruction audit, in one place.

Data (bundled with scikit-learn, no download): certun's ``load_diabetes`` (ridge; labels
clipped to ``[-1, 1]``), ``load_breast_cancer`` and ``load_digits_3v8`` (logistic). The
training split is the private data; the test split is the attacker's public data.

Diabetes features: certun's loader divides raw features by fixed scales and appends a bias
before normalising rows, so all rows point almost the same way (the mean of the public
rows already has cosine 0.92 with every record, which would make any reconstruction look
good). As in Bertran et al.'s setting (scikit-learn's centred, scaled diabetes), features
are **standardised with the public split's mean and standard deviation** (a transform fixed
from public data, so nothing of the private rows leaks), a bias of 1 is appended and rows
are normalised. The attacker orients its reconstruction by the sign of the bias coordinate.

Regularisation: Bertran et al.'s ridge objective ``sum_i (y_i - w.x_i)^2 + lambda ||w||^2``
equals ``2 n`` times certun's mean-scale objective with ``lam = lambda / n``; the grid uses
their ``lambda`` in {1, 100} (docs/bibliography.md §12.6 anchors: public-data Hessian cosine 0.9525
and 0.9901) and ``lam = lambda / n``.
"""

from __future__ import annotations

RIDGE_LAMBDAS = (1.0, 100.0)        # Bertran et al.'s lambda; certun lam = lambda / n
LOGISTIC_LAMBDAS = (1.0, 10.0)      # the anchors' logistic lambdas, same mapping
GUO_SIGMA, GUO_EPSILON, GUO_DELTA = 1.0, 1.0, 1e-4
RELEASE_EPSILON, RELEASE_DELTA = 1.0, 1e-5
LABEL_BOUND = 1.0                   # ridge labels are clipped to [-B, B] (certun's loader does)
FINETUNE_STEPS, ASCENT_STEPS = 10, 5
SEED = 0

# Deletions attacked: every training row (one at a time, each from the original model).
MAX_DELETIONS = None
LOGISTIC_DATASETS = ("breast_cancer", "digits_3v8")

# --------------------------------------------------------------------------- smoke mode
SMOKE_MAX_DELETIONS = 12
SMOKE_LOGISTIC_DATASETS = ()
SMOKE_METHODS = ("retraining", "certified_removal", "private_release", "newton_noiseless")
