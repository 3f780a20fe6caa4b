r"""Loss-scale conventions, and every conversion between them, in one place.

certun's **public objective** is the *mean* scale

.. math::

    J(w; D, b) = \frac{1}{n}\sum_{i=1}^{n} \ell(w; z_i) + \frac{\lambda}{2}\|w\|^2
                 + \frac{b^\top w}{n},  \qquad n = |D|,

the scale scikit-learn uses with ``C = 1/(n lambda)`` and the scale Guo et al.'s
code optimises. Multiplying by ``n`` gives Guo et al.'s *sum* scale

.. math::

    L_b(w; D) = n J(w; D, b) = \sum_i \ell(w; z_i) + \frac{\lambda n}{2}\|w\|^2 + b^\top w,

on which their gradient-residual bounds and removal budget are stated. Because
``b`` enters ``J`` as ``b.w/|D|`` with the *current* dataset size, retraining on
the remaining data with the same ``b`` is exactly the sum-scale perturbation
``b.w`` of the paper; the same vector ``b`` is used on both scales.

Other papers use other scales; each conversion below is tested against a
published number (``tests/test_scale.py``) and derived in
``proofs/loss_scales.md``:

* Langevin unlearning (Chien et al., NeurIPS 2024) regularises with
  ``lambda_paper * n`` inside a mean objective, so certun's ``lam`` equals
  ``lambda_paper * n`` and the strong convexity of the mean objective is
  ``m = lambda_paper * n``.
* Sekhari et al. (2021) and Zhang et al. (2024) state their bounds on the mean
  scale, like certun.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SUM",
    "MEAN",
    "mean_to_sum_gradient",
    "sum_to_mean_gradient",
    "sklearn_C",
    "lam_from_sklearn_C",
    "lam_from_langevin",
    "lam_to_langevin",
    "logistic_smoothness",
]

#: The sum-of-losses scale (Guo et al.'s residuals and budget).
SUM = "sum"
#: The mean-loss scale of the public objective (scikit-learn's C = 1/(n lambda)).
MEAN = "mean"


def mean_to_sum_gradient(g: Any, n: int) -> Any:
    """A gradient (or residual, or norm) of ``J`` expressed on the sum scale: ``n * g``."""
    return n * g


def sum_to_mean_gradient(g: Any, n: int) -> Any:
    """A sum-scale gradient (or norm) expressed on certun's mean scale: ``g / n``."""
    return g / n


def sklearn_C(lam: float, n: int) -> float:
    """scikit-learn's inverse regularisation ``C`` for certun's ``lam`` on ``n`` rows.

    sklearn minimises ``C * sum(loss) + ||w||^2 / 2``, which is ``C n`` times
    ``mean(loss) + ||w||^2 / (2 C n)``; hence ``C = 1 / (n lam)``.
    """
    return 1.0 / (n * lam)


def lam_from_sklearn_C(C: float, n: int) -> float:
    """Inverse of :func:`sklearn_C`: ``lam = 1 / (n C)``."""
    return 1.0 / (n * C)


def lam_from_langevin(lam_paper: float, n: int) -> float:
    """Mean-scale ``lam`` (certun's scale) for Chien et al.'s regulariser ``lambda_paper * n``.

    Their per-example gradient is ``grad loss_i + lambda_paper * n * w`` averaged
    over the ``n`` examples, i.e. the gradient of
    ``mean(loss) + (lambda_paper n / 2) ||w||^2``. Example: MNIST 3-vs-8,
    ``lambda_paper = 1e-6``, ``n = 11982`` gives ``lam = 0.011982``.
    """
    return lam_paper * n


def lam_to_langevin(lam: float, n: int) -> float:
    """Inverse of :func:`lam_from_langevin`."""
    return lam / n


def logistic_smoothness(lam: float, spectral_sq: float | None = None,
                        n: int | None = None) -> float:
    """Smoothness ``L`` of the mean-scale L2 logistic objective with ``||x_i|| <= 1``.

    Without data, ``L = 1/4 + lam`` (Chien et al.'s loose constant ``1/4 + lambda n``
    in their scale). With ``spectral_sq = lambda_max(X^T X)`` and ``n`` it is the
    data-dependent ``lambda_max(X^T X) / (4 n) + lam`` used in the authors' runs. A
    certified use needs an *upper* bound on ``lambda_max(X^T X)``, e.g.
    ``certun.primitives.spectral_norm_upper_bound(X).value ** 2``, never a power-iteration
    estimate (which under-estimates it).
    """
    if spectral_sq is None:
        return 0.25 + lam
    if n is None:
        raise ValueError("n is required with spectral_sq")
    return spectral_sq / (4.0 * n) + lam
