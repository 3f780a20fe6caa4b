r"""Zhang et al. (ICML 2024): sensitivity of the damped Newton step for networks (host, float64).

B. Zhang, Y. Dong, T. Wang, J. Li, "Towards Certified Unlearning for Deep Neural
Networks", ICML 2024, arXiv:2408.00920 (docs/bibliography.md §4; theorem numbers *[R]*).
``proofs/zhang2024_sensitivity.md`` derives every function here.

Setting (mean scale): :math:`F_r(w)=\frac1{n_r}\sum_{i\in D_r}\ell(w;z_i)+\frac\kappa2\lVert
w\rVert^2` the retained objective, :math:`w` the (noiseless) current model,
:math:`H=\nabla^2F_r(w)`, :math:`\lambda` the local-convex-approximation damping and
:math:`\tilde w = P_C\big(w - (H+\lambda I)^{-1}\nabla F_r(w)\big)` the unlearned model; both
:math:`\tilde w` and the retrained model :math:`w_r` lie in the ball
:math:`\lVert\cdot\rVert\le C`.

* :func:`approximation_bound` -- the paper's bound (Thm 3.4 *[R]*, as corrected in
  docs/bibliography.md erratum 4: it needs :math:`\lambda+\lambda_{\min}>0`, not
  :math:`\lambda>\lVert H\rVert`):
  :math:`\lVert\tilde w-w_r\rVert\le\frac{2C(MC+\lambda)}{\lambda+\lambda_{\min}}`, for an exact
  solve and a stationary retrained model.
* :func:`distance_bound` -- the same derivation with every error the certificate rests on:
  the retrained model's gradient norm :math:`G_r` (non-convergence), the measured solver
  residual, the training-gradient term of the paper's cheap ``D_u`` form of the step, and
  the ball's rounding excess. Derived here from first principles: the transcription of the
  paper's non-convergence bound in docs/bibliography.md §4.4 (with a :math:`16\sqrt{d/\rho}` LiSSA
  term and no dependence on :math:`s_1, s_2`) is suspect (erratum 5) and could not be checked
  against arXiv 2408.00920, so it is **not** implemented; certun measures the solver residual
  on the exact operator instead of bounding LiSSA's error in probability.
* :func:`sensitivity` -- ``min(bound, 2C)`` and which of the two applies. Since both models
  lie in the ball, :math:`2C` is always a valid sensitivity; the bound is below it only if
  :math:`MC<\lambda_{\min}` (:func:`bound_can_beat_ball`), i.e. on locally strongly convex
  problems. For a network with :math:`\lambda_{\min}\le0` the guarantee is at :math:`2C`.
"""

from __future__ import annotations

import math

from certun import _validate

__all__ = [
    "approximation_bound",
    "distance_bound",
    "ball_sensitivity",
    "sensitivity",
    "bound_can_beat_ball",
    "paper_example_sensitivity",
]


def _damped_min(lam: float, lam_min: float) -> float:
    lam = _validate.non_negative(lam=lam)
    lam_min = _validate._scalar("lam_min", lam_min)
    denom = lam + lam_min
    if not denom > 0.0:
        raise _validate.ValidationError(
            f"lam + lam_min = {lam:g} + ({lam_min:g}) = {denom:g} <= 0: the damped Hessian "
            "H + lam I is not positive definite and the bound does not apply; raise lam above "
            f"{-lam_min:g}")
    return denom


def approximation_bound(radius: float, hessian_lipschitz: float, lam: float,
                        lam_min: float) -> float:
    r"""Zhang et al.'s bound :math:`2C(MC+\lambda)/(\lambda+\lambda_{\min})` (Thm 3.4 *[R]*).

    Args:
      radius: ``C``, the weight-norm constraint.
      hessian_lipschitz: ``M``, a Lipschitz constant of ``grad^2 F_r`` on the ball (assumed).
      lam: ``lambda``, the damping of the local convex approximation.
      lam_min: smallest eigenvalue of ``grad^2 F_r(w)`` at the step's base point (or a lower
        bound on it; an over-estimate makes the result an estimate too).

    Returns:
      The bound on ``||w_tilde - w_r||`` for an exact solve and a stationary ``w_r``.

    Raises:
      ValueError: if ``lam + lam_min <= 0`` (erratum 4) or an argument is invalid.
    """
    C = _validate.positive(radius=radius)
    M = _validate.non_negative(hessian_lipschitz=hessian_lipschitz)
    denom = _damped_min(lam, lam_min)
    return 2.0 * C * (M * C + float(lam)) / denom


def distance_bound(radius: float, hessian_lipschitz: float, lam: float, lam_min: float, *,
                   retrained_grad_norm: float = 0.0, solve_residual: float = 0.0,
                   base_grad_term: float = 0.0, radius_excess: float = 0.0,
                   distance: float | None = None) -> float:
    r"""The bound on :math:`\lVert P_C(w - x) - w_r\rVert` with every error term.

    .. math::
        \lVert\tilde w - w_r\rVert \le
        \frac{2C(MC+\lambda) + G_r + \lVert r\rVert + b}{\lambda+\lambda_{\min}} + e

    (``proofs/zhang2024_sensitivity.md``, steps 1-4), where ``x`` solves
    :math:`(H+\lambda I)x = \nabla F_r(w) - c\nabla F(w)` up to the residual ``r``.

    Args:
      radius: ``C``.
      hessian_lipschitz: ``M`` (assumed).
      lam: ``lambda``.
      lam_min: ``lambda_min`` of ``grad^2 F_r(w)`` (or a lower bound on it).
      retrained_grad_norm: ``G_r >= ||grad F_r(w_r)||`` (0 for a stationary retrained
        model; a network retrained by Adam is not, and on the ball's boundary the projected
        optimum is not stationary either: assumed).
      solve_residual: ``||(H + lam I) x - rhs||`` measured on the exact operator (plus its
        rounding allowance).
      base_grad_term: ``b = c ||grad F(w)||`` for the paper's cheap form of the step,
        ``rhs = -(m/n_r) grad F_u(w) = grad F_r(w) - (n/n_r) grad F(w)`` (``c = n/n_r``; 0
        for the retained-gradient form).
      radius_excess: ``e = C' - C`` when ``w_r`` is only known to lie in the ball of radius
        ``C' >= C`` (floating-point rounding of the projection).
      distance: a bound ``D >= ||w - w_r||`` on the distance of the base point from the
        retrained model (default ``2C``, which holds in the ball); the first term becomes
        ``M D^2 / 2 + lam D`` (step 1 of the proof, before ``D <= 2C``).

    Returns:
      The distance bound (``+inf`` never: invalid inputs raise).
    """
    C = _validate.positive(radius=radius)
    M = _validate.non_negative(hessian_lipschitz=hessian_lipschitz)
    Gr = _validate.non_negative(retrained_grad_norm=retrained_grad_norm)
    res = _validate.non_negative(solve_residual=solve_residual)
    b = _validate.non_negative(base_grad_term=base_grad_term)
    e = _validate.non_negative(radius_excess=radius_excess)
    D = 2.0 * C if distance is None else _validate.non_negative(distance=distance)
    denom = _damped_min(lam, lam_min)
    return (0.5 * M * D * D + float(lam) * D + Gr + res + b) / denom + e


def ball_sensitivity(radius: float) -> float:
    """``2C``: the distance between any two points of the ball ``||w|| <= C``."""
    return 2.0 * _validate.positive(radius=radius)


def sensitivity(bound: float | None, radius: float) -> tuple[float, str]:
    """``min(bound, 2C)`` and which applies: ``"bound"`` or ``"2C"``.

    Args:
      bound: a distance bound (``None`` or non-finite when unavailable).
      radius: ``C`` (pass the rounding-safe radius ``C'`` of
        :func:`certun.nn.radius_bound`).

    Returns:
      ``(sensitivity, which)``.
    """
    ball = ball_sensitivity(radius)
    if bound is None or not math.isfinite(bound) or bound >= ball:
        return ball, "2C"
    return float(bound), "bound"


def bound_can_beat_ball(radius: float, hessian_lipschitz: float, lam_min: float) -> bool:
    r"""Whether the bound can be below ``2C``: iff ``M C < lambda_min`` (for any ``lambda``).

    :math:`2C(MC+\lambda)<2C(\lambda+\lambda_{\min})\iff MC<\lambda_{\min}` (independent of
    :math:`\lambda`). A network whose Hessian has a non-positive eigenvalue never qualifies.
    """
    C = _validate.positive(radius=radius)
    M = _validate.non_negative(hessian_lipschitz=hessian_lipschitz)
    return M * C < float(lam_min)


def paper_example_sensitivity(radius: float = 20.0, hessian_lipschitz: float = 1.0,
                              lam: float = 0.01, lam_min: float = 0.0) -> float:
    """The bound at the authors' code defaults (C = 20, M = 1, lambda = 0.01, lambda_min = 0).

    It is 80,040.

    docs/bibliography.md §4.4: calibrating the Gaussian mechanism to it at ``(1, 1e-5)`` needs
    ``sigma ~ 3.9e5`` by the classic formula (which does not apply at ``epsilon = 1``) and
    ``~ 2.99e5`` by the analytic one (erratum 3); the paper's experiments use ``std = 1e-3``.
    """
    return approximation_bound(radius, hessian_lipschitz, lam, lam_min)
