"""Functional, jit-able primitives over pytrees.

* Curvature (:mod:`certun.primitives.curvature`): :func:`hvp` (forward-over-reverse),
  :func:`ggn_vp`, :func:`hessian_operator`, :func:`ggn_operator`,
  :func:`per_example_grads`, :func:`dense_hessian`, :func:`dense_matrix`, :func:`damped`.
* Inverse-Hessian-vector solvers (:mod:`certun.primitives.solvers`), each
  ``(init, solve)`` returning a :class:`certun.results.Solution` with the achieved
  residual: :func:`dense_solver` (eigh / Cholesky, Woodbury), :func:`cg_solver`
  (:func:`pcg`), :func:`lissa_solver`; :func:`eigh_solve` for the factored form.
* Spectral estimates and *guaranteed* bounds (:mod:`certun.primitives.spectral`).
* Calibrated Gaussian noise over pytrees with per-leaf, per-release key folding
  (:mod:`certun.primitives.noise`).
"""

from certun.primitives.curvature import LinearOperator as LinearOperator
from certun.primitives.curvature import damped as damped
from certun.primitives.curvature import dense_hessian as dense_hessian
from certun.primitives.curvature import dense_matrix as dense_matrix
from certun.primitives.curvature import ggn_operator as ggn_operator
from certun.primitives.curvature import ggn_vp as ggn_vp
from certun.primitives.curvature import hessian_operator as hessian_operator
from certun.primitives.curvature import hvp as hvp
from certun.primitives.curvature import per_example_grads as per_example_grads
from certun.primitives.noise import gaussian_like as gaussian_like
from certun.primitives.noise import leaf_keys as leaf_keys
from certun.primitives.noise import objective_perturbation as objective_perturbation
from certun.primitives.noise import perturb as perturb
from certun.primitives.noise import release_key as release_key
from certun.primitives.solvers import DenseFactor as DenseFactor
from certun.primitives.solvers import InverseSolver as InverseSolver
from certun.primitives.solvers import LissaState as LissaState
from certun.primitives.solvers import cg_solver as cg_solver
from certun.primitives.solvers import dense_solver as dense_solver
from certun.primitives.solvers import eigh_solve as eigh_solve
from certun.primitives.solvers import lissa_solver as lissa_solver
from certun.primitives.solvers import pcg as pcg
from certun.primitives.spectral import EigenEstimate as EigenEstimate
from certun.primitives.spectral import SpectralBound as SpectralBound
from certun.primitives.spectral import power_iteration as power_iteration
from certun.primitives.spectral import spectral_norm_upper_bound as spectral_norm_upper_bound
from certun.primitives.spectral import symmetric_eig_bounds as symmetric_eig_bounds
