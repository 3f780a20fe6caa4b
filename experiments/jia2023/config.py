"""Settings of the sparsity-aware unlearning experiment (Jia et al., NeurIPS 2023), convex analogue.

Data: scikit-learn's bundled digits (10 classes, ``certun.data.load_digits``: pixel shift,
unit rows); forget set a random ``FORGET_FRACTION`` of the training rows. Model:
one-vs-rest L2-logistic (mean scale, ``LAM``), pruned by one-shot global magnitude pruning
at each ``SPARSITIES`` level and retrained inside the mask; unlearning acts inside the mask.
"""

from __future__ import annotations

LAM = 1e-4
FORGET_FRACTION = 0.10
SPARSITIES = (0.0, 0.5, 0.8, 0.9)
FT_STEPS, FT_LR = 50, 10.0
GA_STEPS, GA_LR = 10, 20.0
L1 = 1e-3                      # l1-sparse unlearning penalty (applied to the dense model)
SEEDS = tuple(range(20))

SMOKE_SEEDS = (0, 1)
SMOKE_SPARSITIES = (0.0, 0.8)
