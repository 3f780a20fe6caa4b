r"""Contraction bounds of Descent-to-Delete (Neel, Roth & Sharifi-Malvajerdi, ALT 2021), mean scale.

Setting: ``J_D(w) = mean_i l(w; z_i) + (lam/2)||w||^2`` is ``m``-strongly convex
(``m = lam``) and ``L``-smooth, and every per-example loss gradient has norm ``<= G``.
Projected gradient descent with step ``eta = 2/(L + m)`` on a convex set containing the
optimum contracts the distance to the optimum ``w*_D`` by

.. math:: \gamma = \frac{L - m}{L + m}

per step (:func:`step_size`, :func:`contraction`). Removing (or replacing) ``S`` of the
``n`` rows moves the optimum by at most ``2 S G / (m n)`` (:func:`optimum_shift`). Starting a
request from the previous internal iterate, whose error is ``e``, ``I`` steps leave

.. math:: e' \le \gamma^{I}\,(e + 2 S G/(m n))

(:func:`error_after`; steady state ``gamma^I s / (1 - gamma^I)``: :func:`steady_state`).
:func:`steps_for` inverts it. Training from ``w = 0`` needs ``||w*|| <= G / m``
(:func:`optimum_norm_bound`), so ``T`` steps leave ``gamma^T G / m``
(:func:`training_error`). The published model ``w + N(0, sigma^2 I)`` is compared with the
same algorithm run from scratch on the current data and published with the same noise:
their internal models differ by at most the sum of the two errors (:func:`sensitivity`).
Derivations: ``proofs/descent_to_delete.md``.

:func:`sigma_paper` is Chien et al.'s transcription of the D2D noise (their ``baseline.py``,
docs/bibliography.md §5); it is reported for comparison, not used by certun.

Reference: S. Neel, A. Roth, S. Sharifi-Malvajerdi, "Descent-to-Delete: Gradient-Based
Methods for Machine Unlearning", ALT 2021, arXiv:2007.02923.
"""

from __future__ import annotations

import math

from certun import _validate

__all__ = [
    "step_size",
    "contraction",
    "optimum_shift",
    "optimum_norm_bound",
    "training_error",
    "error_after",
    "steady_state",
    "steps_for",
    "sensitivity",
    "sigma_paper",
]


def _Lm(L: float, m: float) -> tuple[float, float]:
    Lv = _validate.positive(L=L)
    mv = _validate.positive(m=m)
    if mv > Lv:
        raise _validate.ValidationError(f"m={m} cannot exceed the smoothness L={L}")
    return Lv, mv


def step_size(L: float, m: float) -> float:
    """``eta = 2 / (L + m)``: the step that gives the contraction :func:`contraction`."""
    Lv, mv = _Lm(L, m)
    return 2.0 / (Lv + mv)


def contraction(L: float, m: float) -> float:
    """``gamma = (L - m)/(L + m)``.

    At ``eta = 2/(L + m)``: ``||w - eta grad J(w) - w*|| <= gamma ||w - w*||``.
    """
    Lv, mv = _Lm(L, m)
    return (Lv - mv) / (Lv + mv)


def optimum_shift(m: float, n: int, changed: int = 1, G: float = 1.0,
                  adjacency: str = "removal") -> float:
    """``||w*_D - w*_D'|| <= 2 S G / (m n)`` for ``S`` rows removed or replaced (``n = |D|``).

    Strong convexity of ``J_D`` at ``w*_D'`` and ``||grad J_D(w*_D')|| <= 2 S G / n``
    (``proofs/descent_to_delete.md``, section 2).
    """
    mv = _validate.positive(m=m)
    nn = _validate.integer(n=n, minimum=1)
    S = _validate.integer(changed=changed, minimum=1)
    Gv = _validate.positive(G=G)
    _validate.choice(("removal", "replacement"), adjacency=adjacency)
    if S >= nn and adjacency == "removal":
        raise _validate.ValidationError(f"changed={S} must be smaller than n={nn} for removal")
    return 2.0 * S * Gv / (mv * nn)


def optimum_norm_bound(m: float, G: float = 1.0) -> float:
    """``||w*_D|| <= G / m`` for every data set (``lam w* = -mean grad l_i(w*)``)."""
    return _validate.positive(G=G) / _validate.positive(m=m)


def training_error(gamma: float, steps: int, start_error: float) -> float:
    """``gamma^T * start_error``: the distance to the optimum after ``T`` steps."""
    g = _validate.in_range(0.0, 1.0, inclusive=True, gamma=gamma)
    T = _validate.integer(steps=steps, minimum=0)
    return g ** T * _validate.non_negative(start_error=start_error)


def error_after(gamma: float, steps: int, previous_error: float, shift: float) -> float:
    """``gamma^I (e + s)``: the error after a request served with ``I`` steps."""
    g = _validate.in_range(0.0, 1.0, inclusive=True, gamma=gamma)
    I = _validate.integer(steps=steps, minimum=0)  # noqa: E741
    e = _validate.non_negative(previous_error=previous_error)
    s = _validate.non_negative(shift=shift)
    return g ** I * (e + s)


def steady_state(gamma: float, steps: int, shift: float) -> float:
    """``gamma^I s / (1 - gamma^I)``: the fixed point of :func:`error_after` (``I >= 1``)."""
    g = _validate.in_range(0.0, 1.0, gamma=gamma)
    I = _validate.integer(steps=steps, minimum=1)  # noqa: E741
    gi = g ** I
    return gi * _validate.non_negative(shift=shift) / (1.0 - gi)


def steps_for(gamma: float, previous_error: float, shift: float, target: float) -> int:
    """The smallest ``I >= 0`` with ``gamma^I (e + s) <= target``."""
    g = _validate.in_range(0.0, 1.0, gamma=gamma)
    e = _validate.non_negative(previous_error=previous_error)
    s = _validate.non_negative(shift=shift)
    t = _validate.positive(target=target)
    start = e + s
    if start <= t:
        return 0
    I = max(0, math.ceil(math.log(start / t) / math.log(1.0 / g)))  # noqa: E741
    while g ** I * start > t:  # guard the floating-point ceiling
        I += 1  # noqa: E741
    while I > 0 and g ** (I - 1) * start <= t:
        I -= 1  # noqa: E741
    return I


def sensitivity(error: float, reference_error: float) -> float:
    """``||w_unlearned - w_retrained|| <= e + e_ref`` (both within their bound of ``w*``)."""
    return _validate.non_negative(error=error) + _validate.non_negative(
        reference_error=reference_error)


def sigma_paper(L: float, m: float, n: int, steps: int, epsilon: float, delta: float,
                M: float = 1.0) -> float:
    """Chien et al.'s D2D baseline noise (``baseline.py``; docs/bibliography.md §5).

    ``sigma = 4 sqrt(2) M gamma^I / (m n (1 - gamma^I) r)`` with
    ``r = sqrt(ln(1/delta) + epsilon) - sqrt(ln(1/delta))``.
    At MNIST 3-vs-8 (``m = 0.011982``, ``L = 1/4 + m``, ``n = 11982``, ``delta = 1/n``,
    ``epsilon = 1``) it is 2.58 (``I = 1``), 1.23 (``I = 2``) and 0.43 (``I = 5``). Not used by
    certun's unlearner, which calibrates :func:`sensitivity` with the analytic Gaussian
    mechanism (``proofs/descent_to_delete.md``, section 5).
    """
    g = contraction(L, m)
    I = _validate.integer(steps=steps, minimum=1)  # noqa: E741
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    nn = _validate.integer(n=n, minimum=1)
    gi = g ** I
    ln = math.log(1.0 / dlt)
    return (4.0 * math.sqrt(2.0) * _validate.positive(M=M) * gi
            / (m * nn * (1.0 - gi) * (math.sqrt(ln + eps) - math.sqrt(ln))))
