"""Certified unlearners: factories returning an :class:`Unlearner`.

Each :class:`Unlearner` is ``(init, unlearn, params, retrain)``.

* :func:`certified_removal` -- Guo et al. (ICML 2020): objective perturbation and a
  Newton removal step, with a residual budget (convex linear models).
* :func:`newton_unlearning` -- Sekhari et al. (NeurIPS 2021): stored-Hessian Newton
  step plus fresh output noise per release.
* :func:`exact_retraining` -- the baseline every certified result is compared with.
* :func:`noisy_finetuning` -- Koloskova et al. (ICML 2025): noisy fine-tuning of a
  user-trained network on the retained rows (gradient clipping, model clipping, output
  perturbation).
* :func:`frozen_extractor_head` -- Guo et al. (2020): certified removal of a linear head on a
  frozen public or DP feature extractor.
"""

from certun.unlearners.base import OUTCOMES as OUTCOMES
from certun.unlearners.base import Reference as Reference
from certun.unlearners.base import RetrainRequired as RetrainRequired
from certun.unlearners.base import Unlearner as Unlearner
from certun.unlearners.base import UnlearnResult as UnlearnResult
from certun.unlearners.base import published_view as published_view
from certun.unlearners.descent_to_delete import D2DState as D2DState
from certun.unlearners.descent_to_delete import descent_to_delete as descent_to_delete
from certun.unlearners.frozen_head import DPExtractor as DPExtractor
from certun.unlearners.frozen_head import frozen_extractor_head as frozen_extractor_head
from certun.unlearners.guo import GuoState as GuoState
from certun.unlearners.guo import GuoUnlearner as GuoUnlearner
from certun.unlearners.guo import WhatIf as WhatIf
from certun.unlearners.guo import cached_factor_solve as cached_factor_solve
from certun.unlearners.guo import certified_removal as certified_removal
from certun.unlearners.koloskova import NoisyFinetuneState as NoisyFinetuneState
from certun.unlearners.koloskova import noisy_finetuning as noisy_finetuning
from certun.unlearners.langevin import LangevinState as LangevinState
from certun.unlearners.langevin import langevin_unlearning as langevin_unlearning
from certun.unlearners.pnsgd import PNSGDState as PNSGDState
from certun.unlearners.pnsgd import pnsgd_unlearning as pnsgd_unlearning
from certun.unlearners.retrain import RetrainState as RetrainState
from certun.unlearners.retrain import exact_retraining as exact_retraining
from certun.unlearners.sekhari import SekhariState as SekhariState
from certun.unlearners.sekhari import newton_unlearning as newton_unlearning
from certun.unlearners.zhang import ZhangState as ZhangState
from certun.unlearners.zhang import zhang_unlearning as zhang_unlearning
