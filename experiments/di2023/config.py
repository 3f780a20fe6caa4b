"""Settings of the camouflaged-poisoning experiment (Di et al., NeurIPS 2023), in one place.

Data: scikit-learn's bundled 8x8 digits, pixels / 16 in ``[0, 1]``; model features
``phi(x) = (x - 0.5) / 4`` (so ``||phi(x)|| <= 1``, as certun's certified bounds require);
one-vs-rest L2-logistic with ``LAM`` (mean scale).
"""

from __future__ import annotations

LAM = 1e-3
POISON_FRACTION = 0.03        # poisons, as a share of the clean training set
CAMOUFLAGE_FRACTION = 0.03    # camouflages, likewise
EPS = 0.25                    # L_inf radius of the perturbations, in [0, 1] pixel units
STEPS, RESTARTS, LR = 150, 1, 0.1
TARGETS_PER_SEED = 2
SISA_SHARDS = 3
GUO_SIGMA, GUO_EPSILON, GUO_DELTA = 0.1, 1.0, 1e-4
SEEDS = tuple(range(20))

SMOKE_SEEDS = (0, 1)
SMOKE_TARGETS_PER_SEED = 1
SMOKE_STEPS = 40
