"""Settings of the fragile-verification experiment (Zhang et al., ICML 2024), in one place.

Data: scikit-learn's bundled digits, all 1797 rows, label +1 for digits 0-4 and -1 for 5-9;
inputs pixels / 16, model features ``phi(x) = (x - 0.5) / 4`` (``||phi|| <= 1``).
The data owner's forget set is ``FORGET_FRACTION`` of the training rows; ``WATERMARK_SHARE``
of them carry the trigger (pixels ``TRIGGER``, set to 1) and the label ``TARGET_LABEL``.
"""

from __future__ import annotations

FORGET_FRACTION = 0.10
WATERMARK_SHARE = 0.5
TRIGGER = (0, 1, 8, 9)          # top-left 2x2 corner of the 8x8 image (almost always blank)
TARGET_LABEL = 1.0
LAM = 1e-4
LR, BATCH, EPOCHS = 1.0, 32, 10  # SGD of the provider
TAU_RELATIVE = 0.05               # reproduction tolerance: 5% of the median honest step norm
BACKDOOR_MARGIN = 0.10            # backdoor check passes when ASR <= ASR(retraining) + margin
GUO_SIGMA, GUO_EPSILON, GUO_DELTA = 0.1, 1.0, 1e-4
AUDIT_ROWS, AUDIT_RUNS = 60, 4000  # epsilon audit of certified removal (digits 3 vs 8)
SEEDS = tuple(range(20))

SMOKE_SEEDS = (0, 1)
SMOKE_EPOCHS = 4
SMOKE_AUDIT_RUNS = 0              # the audit runs in the full run only
