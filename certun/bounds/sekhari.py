r"""Sensitivity of Sekhari et al.'s stored-Hessian Newton unlearning (NeurIPS 2021), mean scale.

Setting: ``F(w) = (1/n) sum_i f(w, z_i)`` with each ``f`` ``lambda``-strongly convex,
``L``-Lipschitz and with ``M``-Lipschitz Hessian (certun: ``f = l + (lambda/2)||w||^2``).
Deleting ``m`` points ``U`` from the trained ``w_hat``, the Newton step on the retained
objective ``F_r`` with the exact Hessian ``H_hat = grad^2 F_r(w_hat)`` gives

.. math::
    \|\bar w - w_r^*\| \le \frac{M}{2\lambda}\|\hat w - w_r^*\|^2, \qquad
    \|\hat w - w_r^*\| \le \frac{2 m L}{\lambda n}

(Sekhari et al. Lemma/Algorithm 2), hence their ``gamma = 2 M m^2 L^2 / (lambda^3 n^2)``
(with ``lambda`` **cubed**; docs/bibliography.md erratum 8). certun adds the errors the paper
assumes away: ``w_hat`` and the retrained reference ``A(S \ U)`` are minimised only to
``||grad F|| <= tau`` (each is then within ``tau / lambda`` of its exact minimiser), and
the Newton system is solved to residual ``s``:

.. math::
    \Delta = \frac{M}{2\lambda}\Big(\frac{2mL}{\lambda n} + \frac{\tau}{\lambda}\Big)^2
              + \frac{\tau + s}{\lambda}.

A tighter valid distance, ``||w*_S - w*_r|| <= m L / (lambda n)`` (strong convexity of
``F_S`` at ``w*_r``, where ``||grad F_S(w*_r)|| <= m L / n``), is offered as ``"tight"``.
Derivation: ``proofs/sekhari2021_sensitivity.md``.

Reference: A. Sekhari, J. Acharya, G. Kamath, A. T. Suresh, "Remember What You Want
to Forget: Algorithms for Machine Unlearning", NeurIPS 2021, arXiv:2103.03279.
"""

from __future__ import annotations

import math

__all__ = [
    "gamma_paper",
    "distance_bound",
    "sensitivity",
    "lipschitz_logistic",
    "lipschitz_ridge",
]


def gamma_paper(M: float, L: float, lam: float, n: int, m: int) -> float:
    """Sekhari et al.'s ``gamma = 2 M m^2 L^2 / (lambda^3 n^2)`` (exact minimisers, exact solve)."""
    return 2.0 * M * m * m * L * L / (lam ** 3 * n * n)


def distance_bound(L: float, lam: float, n: int, m: int, tau: float = 0.0,
                   variant: str = "paper") -> float:
    r"""Bound on ``||w_hat - w*_{S \ U}||``: ``c m L / (lambda n) + tau / lambda``.

    ``c = 2`` ("paper") or 1 ("tight").
    """
    if variant not in ("paper", "tight"):
        raise ValueError(f"variant must be 'paper' or 'tight', got {variant!r}")
    c = 2.0 if variant == "paper" else 1.0
    return c * m * L / (lam * n) + tau / lam


def sensitivity(M: float, L: float, lam: float, n: int, m: int, tau: float = 0.0,
                solve_tol: float = 0.0, variant: str = "paper", heads: int = 1) -> float:
    """L2 sensitivity of the unlearned model against retraining (see module docstring).

    Args:
      M: Lipschitz constant of the Hessian of ``f``.
      L: Lipschitz constant of ``f`` on the relevant region (includes ``lambda ||w||``).
      lam: strong convexity (certun's mean-scale ``lambda``).
      n: training rows (before any deletion).
      m: rows deleted (cumulative, against the stored statistics).
      tau: guaranteed training/retraining gradient-norm tolerance (mean scale).
      solve_tol: guaranteed bound on the Newton system's residual (mean scale).
      variant: ``"paper"`` (Sekhari et al.'s distance ``2mL/(lambda n)``) or ``"tight"``.
      heads: number ``K`` of independent heads sharing the parameters' noise (one-vs-rest).
        Each head's Newton error obeys the one-head bound, so the Frobenius norm over
        heads is at most ``sqrt(K)`` times it; ``tau`` and ``solve_tol`` are already
        joint (Frobenius) quantities.

    Returns:
      ``Delta``; with ``tau = solve_tol = 0``, ``"paper"`` and one head it equals
      :func:`gamma_paper`.
    """
    D = distance_bound(L, lam, n, m, tau, variant)
    return math.sqrt(heads) * M * D * D / (2.0 * lam) + (tau + solve_tol) / lam


def lipschitz_logistic(lam: float, tau: float = 0.0) -> float:
    """``L`` for ``f = logistic + (lambda/2)||w||^2`` with ``||x|| <= 1``: ``2 + tau``.

    ``|l'| <= 1`` and every relevant point satisfies ``lambda ||w|| <= 1 + tau`` (its
    gradient is within ``tau`` of zero), so ``||grad f|| <= 1 + lambda ||w|| <= 2 + tau``.
    """
    del lam
    return 2.0 + tau


def lipschitz_ridge(lam: float, label_bound: float, tau: float = 0.0) -> float:
    """``L`` for ``f = (w.x - y)^2/2 + (lambda/2)||w||^2`` with ``||x|| <= 1``, ``|y| <= B``.

    Relevant points satisfy ``||w|| <= R = B / sqrt(lambda) + tau / lambda`` (``F(w*) <= F(0)
    <= B^2 / 2`` gives ``(lambda/2)||w*||^2 <= B^2/2``; an inexact point is within
    ``tau / lambda``). Then ``||grad f|| <= (R + B) + lambda R``.
    """
    R = label_bound / math.sqrt(lam) + tau / lam
    return R + label_bound + lam * R
