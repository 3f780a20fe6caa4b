"""Settings of the malicious-deletion-request experiment (Qian et al., KDD 2023), in one place.

Data: scikit-learn's bundled 8x8 digits, 10 classes (``certun.data.load_digits``: pixel
shift, unit rows), split per seed. Model: one-vs-rest L2-logistic, certun's mean-scale
objective with ``LAM``; deletions are honoured by exact retraining (the reference every
certified unlearner imitates) and, for ``GUO_TARGETS`` targets per seed, by Guo et al.'s
certified removal (``certun.certified_removal``).
"""

from __future__ import annotations

LAM = 1e-4
BUDGET_FRACTION = 0.01        # at most 1% of n deletions per target
NUM_TARGETS = 50              # random correctly classified test points per seed
COMPETITORS = 3               # wrong classes the attacker tries
REFERENCE_FRACTION = 0.5      # share of the test split the defender holds as reference data
HONEST_CALIBRATION = 300      # random training rows calibrating the defence threshold
HONEST_EVALUATION = 300       # fresh random rows measuring its false-positive rate
DEFENCE_FPR = 0.05            # per-request false-positive rate the threshold is set for
GUO_TARGETS = 5               # targets per seed also run through certified removal
GUO_SEEDS = (0, 1, 2)         # seeds on which it runs (its init costs ~8 s per seed)
RANDOM_TARGETS = 5            # targets per seed also hit by random deletions (baseline)
GUO_SIGMA, GUO_EPSILON, GUO_DELTA = 0.1, 1.0, 1e-4
SEEDS = tuple(range(20))

SMOKE_SEEDS = (0, 1)
SMOKE_NUM_TARGETS = 4
SMOKE_GUO_TARGETS = 0           # certified removal runs in the full run only
