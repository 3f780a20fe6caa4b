"""Settings of the empirical epsilon audits and the Hard-to-Forget experiment, in one place.

Part A -- Gaussian output mechanism (certun's ``calibrate`` + ``gaussian_like``) on a clipped
sum query over a pytree, on a pair attaining the sensitivity; honest and 10x under-noised.
Part B -- Guo et al.'s certified removal on digits 3-vs-8 with the worst-case canaries of
docs/bibliography.md §17.5; negative control: the same mechanism with the budget check off
and a tiny sigma (a bookkeeping bug), which must be caught.
Part C -- the adversarial multi-statistic audit (certun.audits.adversary) of every certified
mechanism and its mis-calibrated twins, on small hard problems (settings ADV_* below).
Part D -- Hard to Forget (Marchant et al. 2022): crafted deletion requests against Guo et
al.'s budget, with and without the influence-based defence.
Part E -- distance to retraining: parameter distance, prediction agreement, KLoM per split
(95th percentile, with the oracle-vs-oracle null) and per-example U-LiRA AUC, for
certified removal, Newton unlearning, the private release and "do nothing".

Every audit uses a two-sided 95 % Clopper-Pearson bound (2.5 % per rate), a test chosen on
a separate half of the runs and evaluated on the other half.
"""

from __future__ import annotations

ALPHA = 0.05

# Part A
GAUSSIAN_EPSILONS = (0.5, 1.0, 2.0)
GAUSSIAN_DELTA = 1e-5
GAUSSIAN_RUNS = 2_000_000          # per world: 1e6 choose the test, 1e6 evaluate it
UNDER_NOISE = 0.1                  # the negative control adds 10x less noise than it claims

# Part B (digits 3-vs-8, certun's bundled split)
GUO_LAM = 0.01
GUO_SIGMAS = (1.5, 4.0)            # 1.5: the demo's sigma; 4.0: the canary always served
GUO_EPSILON, GUO_DELTA = 1.0, 1e-4
GUO_CANARIES = ("grnb_norm", "influence_norm")
GUO_RUNS = 20000
BUG_SIGMA, BUG_RUNS = 1e-4, 4000

# Part D
H2F_LAM, H2F_SIGMA = 0.01, 1.5
H2F_POISONS = 30
H2F_RADIUS = 0.5
H2F_SURROGATES = ("influence_norm", "grnb_norm")
H2F_QUANTILE = 0.99                # defence threshold: 99th percentile of public clean scores
H2F_SEEDS = (0, 1, 2, 3, 4)

# Part E -- distance to retraining (digits 3-vs-8): ensembles over the mechanisms' randomness
DIST_LAM = 0.01
DIST_GUO_SIGMA = 1.5
DIST_FORGET = 10                   # one batch request of 10 rows
DIST_MODELS = 100                  # N per ensemble (KLoM, U-LiRA fits)
DIST_TARGETS = 50                  # fresh models per side for the per-example U-LiRA AUC
DIST_RETAIN_SAMPLE = 60
DIST_METHODS = ("certified_removal", "newton_unlearning", "private_release", "do_nothing")

SEED = 0

# --------------------------------------------------------------------------- smoke mode
SMOKE_GAUSSIAN_EPSILONS = (1.0,)
SMOKE_GAUSSIAN_RUNS = 200_000
SMOKE_GUO_SIGMAS = (4.0,)
SMOKE_GUO_CANARIES = ("grnb_norm",)
SMOKE_GUO_RUNS = 400
SMOKE_BUG_RUNS = 400
SMOKE_H2F_POISONS = 12
SMOKE_H2F_SURROGATES = ("influence_norm",)
SMOKE_H2F_SEEDS = (0,)
SMOKE_DIST_MODELS = 12
SMOKE_DIST_TARGETS = 6
SMOKE_DIST_METHODS = ("certified_removal", "do_nothing")

# Part C -- adversarial multi-statistic audit of every certified mechanism (certun.audits.
# adversary): small n, d >> n, the worst-case canary; model-plus-noise outputs get ADV_RUNS per
# world, mechanisms whose every output is a training run fewer (ADV_TRAINING_RUNS).
ADV_EPSILON, ADV_DELTA = 1.0, 1e-5
ADV_RUNS = 200_000                  # 1,000,000: tests/audits/test_adversary.py -m slow
ADV_TRAINING_RUNS = {"guo": 4000, "langevin": 20000}
ADV_MECHANISMS = ("gaussian", "release", "sekhari", "d2d", "zhang", "langevin", "guo")
ADV_RELEASE = {"n": 10, "d": 100, "lam": 0.1}
ADV_UNLEARN = {"n": 8, "d": 20, "lam": 0.1}          # Sekhari, Descent-to-Delete
ADV_GUO = {"n": 30, "d": 10, "lam": 0.01, "sigma": 1.0, "bug_sigma_scale": 1e-3}
ADV_LANGEVIN = {"n": 10, "d": 20, "lam": 0.1, "sigma": 0.05, "burn_in": 200}
ADV_ZHANG = {"n": 30, "d": 8, "width": 4, "epochs": 100, "radius": 5.0, "lam": 0.5}
SMOKE_ADV_RUNS = 20_000
SMOKE_ADV_TRAINING_RUNS = {}
# smoke: the model-plus-noise mechanisms; Zhang, Langevin and Guo (whose outputs are training
# runs) are in the full run and in the slow tier of tests/audits/test_adversary.py
SMOKE_ADV_MECHANISMS = ("gaussian", "release", "sekhari", "d2d")
