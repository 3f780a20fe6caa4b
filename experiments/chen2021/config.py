"""Settings of the Chen et al. (CCS 2021) two-version membership-inference audit, in one place.

``run.py`` reads everything from here; ``results.json`` keeps a copy of the resolved values.

Data: scikit-learn's bundled 8x8 digits, classes 3 (+1) vs 8 (-1), all 357 rows. Features:
``pixels / 16`` minus the mean image of the *other* eight digit classes (a fixed transform
computed from disjoint public data, so no statistic of the 3-vs-8 rows leaks into it),
then per-row normalisation to ``||x|| = 1``. Centring matters for the private release: the
release's noise on a margin is ``N(0, sigma^2 ||x||^2)`` whatever the dimension, so the
useful part of ``x`` must not be drowned by the common background.

Loss scale: certun's mean scale ``(1/n) sum_i l_i + (lam/2)||w||^2``.
"""

from __future__ import annotations

DATASET = "digits_3v8_centred"
CLASSES = (3, 8)

# Model and mechanisms (every method uses the same lam).
LAM = 0.1
GUO_SIGMA, GUO_EPSILON, GUO_DELTA = 1.0, 1.0, 1e-4        # certified removal
SEKHARI_EPSILON, SEKHARI_DELTA = 1.0, 1e-4                 # Newton unlearning, capacity 1
RELEASE_EPSILON, RELEASE_DELTA = 1.0, 1e-5                 # private release, per release
FINETUNE_STEPS, ASCENT_STEPS = 10, 5                       # uncertified shortcuts

# Chen et al.'s pipeline (docs/bibliography.md §11.2), scaled to 357 rows. The paper keeps the
# shadow and target halves disjoint; 357 rows cannot hold two halves of 240-row training
# sets, so the attacker's shadow pools are an independent split of all rows (overlapping
# the target's; this can only help the attacker) -- record_split(disjoint=False).
SET_SIZE = 240
NUM_SETS = 20              # original models per side (shadow / target)
DELETIONS_PER_SET = 10     # unlearned models per original model
SEEDS = (0, 1, 2, 3, 4)
CLASSIFIER = "rf"          # RandomForest(100 trees, min_samples_leaf=5)
HEADLINE_FEATURE = "sorted_diff"   # fixed in advance: Chen et al.'s strongest (REFERENCES 11.7)
TEMPERATURES = (4.0, 16.0)         # temperature-scaling mitigation
BOOTSTRAP_RESAMPLES = 1000         # cluster bootstrap over training sets

# Methods in the table, in order. "release:<inner>" wraps <inner> in certun.release.
METHODS = ("retraining", "certified_removal", "newton_unlearning", "release:retraining",
           "release:certified_removal", "newton_noiseless", "finetune_retained",
           "gradient_ascent_forget")

# --------------------------------------------------------------------------- smoke mode
SMOKE_SEEDS = (0,)
SMOKE_NUM_SETS = 4
SMOKE_DELETIONS_PER_SET = 5
SMOKE_METHODS = ("retraining", "certified_removal", "release:retraining", "newton_noiseless")
SMOKE_TEMPERATURES = (4.0,)
SMOKE_BOOTSTRAP_RESAMPLES = 200
