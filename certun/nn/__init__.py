"""Neural networks for certified unlearning (Zhang et al., ICML 2024), used functionally.

* :mod:`certun.nn.models` -- flax MLP and CNN as a params pytree plus a pure ``apply``
  (:class:`Network`): :func:`mlp`, :func:`cnn`.
* :mod:`certun.nn.objective` -- the mean-scale objective (cross-entropy plus
  ``(kappa/2)||w||^2``) over masked rows, its minibatch (with replacement) and
  Gauss-Newton forms.
* :mod:`certun.nn.train` -- Adam with coupled weight decay and projection onto
  ``||w||_2 <= C`` after every step, as jit-compiled ``lax.scan`` epochs.
* :mod:`certun.nn.byo` -- bring your own model: :func:`as_apply` turns a flax linen module,
  an nnx graph or any function into a pure ``apply(params, x)``.
* :mod:`certun.nn.dp` -- DP-SGD as a reusable transform (per-example clipping, Gaussian
  noise, Poisson batches) with PLD/RDP accounting and group privacy.
* :mod:`certun.nn.spectral` -- Lanczos *estimates* of extreme Hessian eigenvalues and the
  guaranteed dense bound for small models.
"""

from certun.nn.byo import as_apply as as_apply
from certun.nn.byo import tree_clip as tree_clip
from certun.nn.models import ACTIVATIONS as ACTIVATIONS
from certun.nn.models import Network as Network
from certun.nn.models import cnn as cnn
from certun.nn.models import mlp as mlp
from certun.nn.models import num_params as num_params
from certun.nn.objective import accuracy as accuracy
from certun.nn.objective import cross_entropy as cross_entropy
from certun.nn.objective import gauss_newton_parts as gauss_newton_parts
from certun.nn.objective import minibatch_objective as minibatch_objective
from certun.nn.objective import objective as objective
from certun.nn.spectral import exact_min_eigenvalue as exact_min_eigenvalue
from certun.nn.spectral import lanczos_extreme_eigenvalues as lanczos_extreme_eigenvalues
from certun.nn.train import TrainConfig as TrainConfig
from certun.nn.train import TrainResult as TrainResult
from certun.nn.train import check_params_in_ball as check_params_in_ball
from certun.nn.train import project_ball as project_ball
from certun.nn.train import radius_bound as radius_bound
from certun.nn.train import train as train
