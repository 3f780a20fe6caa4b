"""Settings of the malicious-deletion-request experiment (Qian et al., KDD 2023), in one place.

Headline target (``run_seed_network``): a ``64-32-10`` tanh MLP (``certun.nn.mlp``, inputs
scaled by ``sqrt(64)``) trained full-batch by L-BFGS on mean cross-entropy plus
``NET_WEIGHT_DECAY``; deletions are honoured by gradient-ascent unlearning
(``certun.audits.targeted.gradient_ascent_unlearner``: ``GA_STEPS`` steps of size ``GA_LR``
on the mean loss of the requested rows), an uncertified approximate unlearner. ``GA_LR`` is
the largest of (0.02, 0.05, 0.1) whose honest 13-row deletions keep test accuracy within
half a point of the original's (0.1 costs 2 points; README). The crafted requests are also
honoured by retraining (warm-started L-BFGS to a gradient norm below 1e-6) for
``NET_RETRAIN_TARGETS`` targets per seed.

Secondary target (``--linear``; last round's measurement):
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

# network target (the headline)
NET_WIDTHS = (32,)
NET_WEIGHT_DECAY = 1e-3
NET_TRAIN_STEPS = 1000        # full-batch L-BFGS iterations
GA_LR, GA_STEPS = 0.05, 5
NET_RETRAIN_TARGETS = 5       # targets per seed whose crafted requests are also retrained
NET_RETRAIN_STEPS = 300       # warm-started L-BFGS iterations for those
LOOKAHEAD = 8                 # candidates tried through the unlearner per greedy step
HONEST_BATCH_CALIBRATION = 200  # honest budget-sized requests calibrating the defence
HONEST_BATCH_EVALUATION = 200   # other honest requests measuring its false-positive rate
HONEST_BATCHES = 5            # random budget-sized honest requests unlearned per seed

SMOKE_SEEDS = (0, 1)
SMOKE_NUM_TARGETS = 4
SMOKE_GUO_TARGETS = 0           # certified removal runs in the full run only
SMOKE_NET_SEEDS = (0, 1)
SMOKE_NET_TARGETS = 2
SMOKE_NET_TRAIN_STEPS = 200
SMOKE_NET_RETRAIN_TARGETS = 0
SMOKE_HONEST_BATCHES = (40, 40)
