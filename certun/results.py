"""Result codes returned from jitted code, and the :class:`Solution` of a linear solve.

Inside ``jit`` certun never raises and never returns a silent NaN: iterative
and direct solvers return an ``int32`` result code next to their output.
Host code turns a code into a message with :func:`message` or raises with
:func:`raise_if_failed`.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import jax

__all__ = ["RESULTS", "Solution", "message", "raise_if_failed", "SolverFailed"]


class RESULTS(enum.IntEnum):
    """Outcome of a solver or unlearning step (stored as ``int32`` in jitted code)."""

    successful = 0
    max_steps_reached = 1
    diverged = 2
    not_positive_definite = 3
    nonfinite = 4
    breakdown = 5


_MESSAGES = {
    RESULTS.successful: "converged to the requested tolerance",
    RESULTS.max_steps_reached: (
        "the iteration limit was reached before the tolerance: raise max_steps, "
        "improve the preconditioner or add damping"
    ),
    RESULTS.diverged: (
        "the iteration diverged (growing or non-finite iterates): for LiSSA raise `scale` "
        "above lambda_max/(2 - damping) or add damping"
    ),
    RESULTS.not_positive_definite: (
        "the operator is not positive definite (a non-positive eigenvalue or curvature "
        "p^T A p <= 0 was met): add damping/regularisation or use the Gauss-Newton matrix"
    ),
    RESULTS.nonfinite: "the inputs or the result contain NaN/Inf",
    RESULTS.breakdown: "the iteration broke down (division by ~0)",
}


class SolverFailed(RuntimeError):
    """Raised by host code when a solver result code is not ``successful``."""


class Solution(NamedTuple):
    """Output of an inverse-Hessian-vector solve.

    Attributes:
      value: the approximate solution ``x`` of ``A x = b`` (same pytree as ``b``).
      residual_norm: the achieved residual ``||A x - b||_2`` measured on the
        operator the solver was asked to invert (float, in the working dtype).
      num_steps: iterations used (0 for direct solvers).
      result: an ``int32`` :class:`RESULTS` code.
    """

    value: Any
    residual_norm: jax.Array
    num_steps: jax.Array
    result: jax.Array


def message(code: int) -> str:
    """Human-readable description of a result code."""
    return _MESSAGES[RESULTS(int(code))]


def raise_if_failed(solution: Solution, what: str = "solve") -> Solution:
    """Raise :class:`SolverFailed` on the host if ``solution.result`` is not successful."""
    code = int(solution.result)
    if code != RESULTS.successful:
        raise SolverFailed(
            f"{what} failed ({RESULTS(code).name}): {message(code)}; "
            f"residual {float(solution.residual_norm):.3e} after {int(solution.num_steps)} steps"
        )
    return solution
