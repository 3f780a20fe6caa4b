r"""Accounting of minibatch projected noisy SGD unlearning (Chien, Wang, Chen & Li, NeurIPS 2024).

Projected noisy SGD (PNSGD) with a fixed cyclic partition of the ``n`` rows into ``n / b``
minibatches of ``b`` rows: one step on batch ``B`` is

.. math::
    x \leftarrow \Pi_R\big(x - \eta\,(\tfrac1b \textstyle\sum_{i\in B}\nabla\ell_i(x) +
    \lambda x) + \mathcal N(0, 2\eta\sigma^2 I)\big),

with ``ell_i`` convex and ``L_0``-smooth, ``||grad ell_i|| <= M`` on the ball, and the
regulariser ``lambda`` giving ``m = lambda``-strong convexity and ``L = L_0 + lambda``
smoothness; for ``eta <= 1/L`` every gradient map is a ``c = 1 - eta m`` contraction and the
projection is 1-Lipschitz. Unlearning = ``K`` more epochs of the same PNSGD on the new data
from the current iterate; the reference is the same total number of epochs run on the new
data from the same start. Two facts (``proofs/pnsgd_unlearning.md``):

* **W_inf tracking** (Chien et al. 2024b, Lemma 3.3 in spirit; derived here for a
  synchronous coupling): if ``S`` rows changed, each epoch moves the two coupled chains apart
  by at most ``eta g S / b`` (``g = 2M`` for a replaced row, ``g = M`` for a row whose loss
  is masked out) after the epoch's contraction ``c^{n/b}``, so at every epoch boundary
  ``||x - x'|| <= Z = min(eta g S / (b (1 - c^{n/b})), 2R)``.
* **Privacy amplification by iteration** over the ``T = K n / b`` unlearning steps (both
  chains now run the same maps): ``D_alpha <= alpha mu`` at every order with

  .. math::
      \mu = \frac{Z^2 c^{2T} (1 - c^2)}{2 \cdot 2\eta\sigma^2 (1 - c^{2T})},

  converted to ``(epsilon, delta)`` by the order-dependent conversion
  (:func:`certun.accounting.koloskova.mu_to_epsilon`).

The authors' code evaluates ``alpha Z^2 (c^2 - 1) / (2 eta sigma^2 (1 - c^{-2K}))`` with ``K``
the number of *epochs*: the same form, a factor 2 larger in the noise term and with ``K``
epochs in place of ``K n / b`` steps (both conservative), and converts with Mironov's
order-by-order rule. Sequential requests compose by tracking ``Z`` linearly (not done here:
:func:`pnsgd_epsilon` covers one request from the learned state).

Reference: E. Chien, H. Wang, Z. Chen, P. Li, "Certified Machine Unlearning via Noisy
Stochastic Gradient Descent", NeurIPS 2024, arXiv:2403.17105 (Chien et al. 2024b).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from certun import _validate
from certun.accounting.koloskova import mu_to_epsilon

__all__ = ["PNSGDEpsilon", "pnsgd_shift", "pnsgd_mu", "pnsgd_epsilon", "pnsgd_epochs"]


class PNSGDEpsilon(NamedTuple):
    """The guarantee of ``K`` unlearning epochs.

    Attributes:
      epsilon: the ``(epsilon, delta)`` guarantee (order-dependent conversion).
      order: the Renyi order that attains it.
      mu: the Renyi slope (``D_alpha <= alpha mu``).
      shift: ``Z``, the W_inf bound between the two chains when unlearning starts.
      steps: ``T = K n / b`` unlearning steps.
    """

    epsilon: float
    order: float
    mu: float
    shift: float
    steps: int


def _c(eta: float, m: float, L: float) -> float:
    if not eta * L <= 1.0:
        raise _validate.ValidationError(
            f"the step size eta = {eta:g} must be at most 1/L = {1.0 / L:g} (contraction)")
    return 1.0 - eta * m


def pnsgd_shift(*, n: int, batch_size: int, changed: int, eta: float, m: float, L: float,
                grad_bound: float, radius: float | None, masked: bool = True) -> float:
    """``Z``: the W_inf bound between the chains on ``D`` and ``D'`` at any epoch boundary.

    Args:
      n: rows (slots) of the cyclic partition; ``n / b`` batches per epoch.
      batch_size: ``b`` (must divide ``n``).
      changed: ``S``, rows that differ.
      eta: step size (``eta L <= 1``).
      m: strong convexity.
      L: smoothness of the per-row objective.
      grad_bound: ``M`` with ``||grad ell_i(x)|| <= M`` on the ball.
      radius: ``R`` of the projection (``None``: no projection, no ``2R`` cap).
      masked: ``True`` for rows masked out (removal, gradient difference ``<= M``),
        ``False`` for replaced rows (``<= 2M``).
    """
    n = _validate.integer(n=n, minimum=1)
    b = _validate.integer(batch_size=batch_size, minimum=1)
    if n % b:
        raise _validate.ValidationError(f"batch_size={b} must divide n={n} (cyclic batches)")
    S = _validate.integer(changed=changed, minimum=0)
    c = _c(_validate.positive(eta=eta), _validate.positive(m=m), _validate.positive(L=L))
    g = (1.0 if masked else 2.0) * _validate.positive(grad_bound=grad_bound)
    z = eta * g * S / (b * (1.0 - c ** (n // b)))
    if radius is not None:
        z = min(z, 2.0 * _validate.positive(radius=radius))
    return z


def pnsgd_mu(*, shift: float, steps: int, eta: float, sigma: float, m: float, L: float) -> float:
    """``mu`` of :mod:`this module <certun.accounting.pnsgd>` for ``T = steps`` noisy steps."""
    T = _validate.integer(steps=steps, minimum=1)
    c = _c(_validate.positive(eta=eta), _validate.positive(m=m), _validate.positive(L=L))
    s2 = 2.0 * eta * _validate.positive(sigma=sigma) ** 2
    z = _validate.non_negative(shift=shift)
    # c^{2T} (1 - c^2) / (1 - c^{2T}) = 1 / sum_{j<T} c^{-2j} ... written stably:
    mass = -math.expm1(T * 2.0 * math.log(c)) / -math.expm1(2.0 * math.log(c))  # sum c^{2j}
    return z * z * math.exp(2.0 * T * math.log(c)) / (2.0 * s2 * mass)


def pnsgd_epsilon(*, epochs: int, n: int, batch_size: int, changed: int, eta: float,
                  sigma: float, m: float, L: float, grad_bound: float, delta: float,
                  radius: float | None = None, masked: bool = True) -> PNSGDEpsilon:
    """The ``(epsilon, delta)`` of ``epochs`` unlearning epochs (one request).

    See the module docstring; ``proofs/pnsgd_unlearning.md`` derives it.
    """
    K = _validate.integer(epochs=epochs, minimum=1)
    z = pnsgd_shift(n=n, batch_size=batch_size, changed=changed, eta=eta, m=m, L=L,
                    grad_bound=grad_bound, radius=radius, masked=masked)
    T = K * (n // batch_size)
    mu = pnsgd_mu(shift=z, steps=T, eta=eta, sigma=sigma, m=m, L=L)
    if mu == 0.0:
        return PNSGDEpsilon(0.0, math.inf, 0.0, z, T)
    eps, a = mu_to_epsilon(mu, _validate.delta(delta=delta))
    return PNSGDEpsilon(eps, a, mu, z, T)


def pnsgd_epochs(*, epsilon: float, max_epochs: int = 100_000, **kw: Any) -> int:
    """The fewest unlearning epochs whose :func:`pnsgd_epsilon` is at most ``epsilon``."""
    target = _validate.epsilon(epsilon=epsilon)
    hi = 1
    while pnsgd_epsilon(epochs=hi, **kw).epsilon > target:
        hi *= 2
        if hi > max_epochs:
            raise _validate.ValidationError(
                f"pnsgd: epsilon={target:g} needs more than max_epochs={max_epochs} epochs; "
                "raise sigma or max_epochs")
    lo = hi // 2
    while hi - lo > 1:  # epsilon decreases with the epochs
        mid = (lo + hi) // 2
        if pnsgd_epsilon(epochs=mid, **kw).epsilon <= target:
            hi = mid
        else:
            lo = mid
    return hi
