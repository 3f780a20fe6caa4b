"""Convex models trained to a tight optimum: L2 logistic (binary, one-vs-rest), ridge, multinomial.

:mod:`certun.models.glm` holds scalar-link models (parameters ``(d, K)``; logistic
and squared losses with the constants the certified bounds use);
:mod:`certun.models.multinomial` softmax regression; :mod:`certun.models.fit` the
Newton and L-BFGS minimisers. All objectives are on certun's mean scale
(:mod:`certun.scale`).
"""

from certun.models import glm as glm
from certun.models import multinomial as multinomial
from certun.models.fit import FitResult as FitResult
from certun.models.fit import lbfgs_minimize as lbfgs_minimize
from certun.models.fit import newton_minimize as newton_minimize
from certun.models.glm import LOGISTIC as LOGISTIC
from certun.models.glm import SQUARED as SQUARED
from certun.models.glm import ScalarLoss as ScalarLoss
