"""Audits: attacks on unlearning, distances to retraining and empirical checks of certificates.

Each module states the threat it measures (docs/bibliography.md erratum 9): certified removal makes
the unlearned model indistinguishable from retraining, but it does not hide a deletion from
an observer of the model before and after -- the two-version attacks here
(:mod:`~certun.audits.mia`, :mod:`~certun.audits.reconstruction`) succeed against exact
retraining too; :mod:`certun.release` is the defence.

* :mod:`~certun.audits.stats` -- Clopper-Pearson epsilon bounds, AUC with intervals,
  one-run audits (host-side NumPy/SciPy).
* :mod:`~certun.audits.epsilon` -- empirical epsilon audits of certun's mechanisms.
* :mod:`~certun.audits.adversary` -- the adversarial multi-statistic audit of every
  certified mechanism (mean shift, noise scale, coordinate maximum, likelihood ratio).
* :mod:`~certun.audits.distance` -- parameter distance, prediction agreement, KLoM.
* :mod:`~certun.audits.lira` -- LiRA / U-LiRA per-example likelihood-ratio scores.
* :mod:`~certun.audits.mia` -- Chen et al.'s two-version membership inference, the
  classical MIA, degradation metrics and mitigations.
* :mod:`~certun.audits.reconstruction` -- Bertran et al.'s reconstruction of a deleted record.
* :mod:`~certun.audits.malicious` -- Hard-to-Forget poisons and an influence-based defence.
* :mod:`~certun.audits.utility` -- accuracy per split, cost relative to retraining, means
  with intervals (Jia et al. 2023).
* :mod:`~certun.audits.targeted` -- targeted malicious deletion requests (Qian et al.,
  from a description) and a gradient-influence defence.
* :mod:`~certun.audits.poisoning` -- camouflaged poisoning by gradient matching (Di et al.).
* :mod:`~certun.audits.fairness` -- deletion requests that raise a fairness gap; a screen.
* :mod:`~certun.audits.verification` -- backdoor and reproduction verification of unlearning
  and the adversarial processes that pass them (Zhang et al. 2024).
* :mod:`~certun.audits.sparsity` -- sparsity-aware unlearning and Jia et al.'s metrics.
* :mod:`~certun.audits.baselines` -- uncertified shortcuts (NOT CERTIFIED), for comparison.
"""

from certun.audits import adversary as adversary
from certun.audits import baselines as baselines
from certun.audits import distance as distance
from certun.audits import epsilon as epsilon
from certun.audits import fairness as fairness
from certun.audits import lira as lira
from certun.audits import malicious as malicious
from certun.audits import mia as mia
from certun.audits import poisoning as poisoning
from certun.audits import reconstruction as reconstruction
from certun.audits import sparsity as sparsity
from certun.audits import stats as stats
from certun.audits import targeted as targeted
from certun.audits import utility as utility
from certun.audits import verification as verification
from certun.audits.epsilon import AuditViolation as AuditViolation
from certun.audits.epsilon import EpsilonAudit as EpsilonAudit
from certun.audits.epsilon import gaussian_output_audit as gaussian_output_audit
from certun.audits.epsilon import guo_removal_audit as guo_removal_audit
from certun.audits.epsilon import worst_case_canary as worst_case_canary
from certun.audits.stats import auc_with_ci as auc_with_ci
from certun.audits.stats import clopper_pearson as clopper_pearson
from certun.audits.stats import epsilon_lower_bound as epsilon_lower_bound
