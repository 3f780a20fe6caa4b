"""Settings of the fairness-manipulation-by-deletion experiment, in one place.

Data: scikit-learn's bundled diabetes data (442 patients, ``scaled=False``), sensitive
attribute the recorded ``sex`` column (two values; group 1 = value 2). Features: every raw
column divided by certun's fixed ``DIABETES_FEATURE_SCALES``, a bias 1.0 appended, rows
normalised. Label: disease progression above ``TARGET_THRESHOLD`` (+1) or not (-1).
Model: binary L2-logistic, certun's mean scale with ``LAM``.
"""

from __future__ import annotations

TARGET_THRESHOLD = 140.0      # a fixed public constant (about the median of the target)
LAM = 1e-3
BUDGET_FRACTION = 0.05        # deletion requests the adversary may send
DEFENCE_FPR = 0.05            # per-request false-positive rate the screen is calibrated for
HONEST_CALIBRATION = 100      # random training rows calibrating the screen
SEEDS = tuple(range(30))

SMOKE_SEEDS = (0, 1, 2)
