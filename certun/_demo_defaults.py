"""Defaults of ``certun demo`` (standard library only: ``certun demo --help`` imports no jax).

Re-exported by :mod:`certun.demo`, where they are documented.
"""

from __future__ import annotations

__all__ = ["DEFAULTS", "METHODS", "METHOD_DEFAULTS"]

#: Defaults of ``certun demo`` (removals, lambda, sigma, epsilon, delta, seed).
DEFAULTS = dict(k=10, lam=1e-2, sigma=1.5, epsilon=1.0, delta=1e-4, seed=0)

#: ``--method`` choices: Guo et al.'s certified removal (the default), Langevin unlearning
#: (Chien et al. 2024) and Descent-to-Delete (Neel et al. 2021).
METHODS = ("guo", "langevin", "d2d")

#: Defaults per method. Langevin and D2D use ``lam = 0.1`` on digits' 267 rows (their noise
#: shrinks like ``1/(lam n)``) and ``delta = 1e-5`` (below ``1/n^2``). Langevin's ``sigma`` is the
#: Langevin noise parameter (each request then runs the steps its accounting needs); D2D's is
#: the noise of every release (each request then runs the gradient steps its contraction
#: bound needs). ``burn_in`` is Langevin's training length.
METHOD_DEFAULTS = {
    "guo": dict(DEFAULTS),
    "langevin": dict(k=10, lam=0.1, sigma=0.03, epsilon=1.0, delta=1e-5, seed=0, burn_in=2000),
    "d2d": dict(k=10, lam=0.1, sigma=0.02, epsilon=1.0, delta=1e-5, seed=0),
}
