r"""Private release mode: fresh, calibrated Gaussian noise on every published model.

Certified removal makes the unlearned model indistinguishable from a retrained one, but it
does **not** hide a deletion from someone who sees the model before and after: Chen et
al.'s two-version membership inference and Bertran et al.'s reconstruction work against
exact retraining too, and Guo et al.'s perturbation ``b`` is shared by both versions, so it
cancels in their difference. The defence for that threat is to publish every model -- the
original included -- as a Gaussian mechanism whose noise is calibrated to the sensitivity
of the *released parameters* to one record, and to compose the releases (the
differentially private machine unlearning framing).

**The mechanism.** Release ``t`` (``t = 0`` is the original model) publishes

.. math:: \tilde\theta_t = \Pi(\theta_t) + \mathcal N(0, \sigma_t^2 I),\qquad
          \sigma_t = z\,\Delta_t,\quad z = \mathrm{analytic\_sigma}(\epsilon, \delta, 1),

where ``theta_t`` is a noiseless model of the current rows, **checked** to satisfy
:math:`\lVert\nabla J_{D_t}(\theta_t)\rVert_F + \text{rounding} \le \tau` on the
*unperturbed* mean-scale objective :math:`J_D(w) = \frac1{|D|}\sum_{i\in D}\ell(w^\top x_i,
y_i) + \frac\lambda2\lVert w\rVert^2`. ``theta_t`` is the wrapped unlearner's model after the
request, refined by Newton steps until it passes the check; when the wrapped unlearner
refuses a request (e.g. Guo et al.'s budget is spent), ``theta_t`` is instead the last
released noiseless model refined by Newton steps on the current rows, and the wrapped
unlearner is dropped (later requests polish from the last released noiseless model). The
check and the refinement are part of the mechanism in both neighbouring worlds, so the
release is **always** published: whether the wrapped unlearner refused, retrained or
needed refinement is a data-dependent event and appears only in the private diagnostics
(``UnlearnResult.outcome`` is always ``"unlearned"``; the inner outcome is
``diagnostics["inner_outcome"]``). ``Pi`` projects each head onto the ball that provably
contains every checked model (a no-op for a checked model). The noise of release ``t`` is
``gaussian_like(noise_key, theta, sigma_t, release=t)``: fresh for every release.

**Adjacency and what is public** (``proofs/private_release.md``). ``||x|| <= 1``;
``K`` heads; ``g`` bounds one record's loss gradient per head (logistic ``g = 1``; ridge
with labels clipped to ``[-B, B]``, ``g = R + B`` with ``R = B / sqrt(lambda)``).

* ``adjacency="replace_one"`` (default): the two worlds have the same number of rows and
  differ in one record. The initial size ``n_0`` and the deletion requests are public, so
  ``n_t = n_0 - removed`` is public, and

  .. math:: \Delta_t = \frac{2\sqrt K\,g}{\lambda n_t} + \frac{2\tau}{\lambda}.

* ``adjacency="add_remove"`` with a public lower bound ``n_min`` fixed in advance: the two
  worlds differ by the presence of one record and both hold at least ``n_min`` rows; one
  sensitivity serves every release of both worlds,

  .. math:: \Delta = \frac{G}{\lambda n_{\min}} + \frac{2\tau}{\lambda},\qquad
            G = \sqrt K\,(g + \min(1, \sqrt{2\lambda\ln 2}))\ \text{(logistic)},\
            G = \sqrt K\,(R + B + \lambda R)\ \text{(ridge)}.

  ``n_t`` is private there; a release on fewer than ``n_min`` rows is refused (it lies
  outside the declared adjacency).

Everything the noise scale and the public certificate are computed from is public:
``epsilon``, ``delta``, ``lambda``, ``tau``, ``B``, ``K``, the accountant, the number of
releases and removed rows (requests are public), and ``n_0`` (replace-one) or ``n_min``
(add/remove). The certificate lists them in ``public_inputs``; the gradient norms, the
number of clipped labels, polish steps, ``n_t`` under add/remove and the inner unlearner's
outcome and certificate are private.

**Certificate.** Threat ``"private_release"``, adjacency ``"replacement"`` or
``"removal"`` (with ``public_inputs["adjacency"]`` ``"replace_one"`` or ``"add_remove"``);
``epsilon``/``delta`` per release and ``epsilon_composed`` over all releases so far
(:func:`certun.accounting.compose_gaussian`, PLD), which bounds what an observer of *every*
published model learns about the record. The noiseless state (the inner unlearner's,
including Guo's ``b``) is private.

This is a different guarantee from certified removal: it is differential privacy of the
published sequence, and it costs accuracy (the noise is calibrated to a worst-case
sensitivity, not to an unlearning residual). :func:`release_sensitivity` gives the numbers.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.accounting.composition import compose_gaussian
from certun.accounting.gaussian import calibrate
from certun.certificate import Certificate, check, make_certificate, verified
from certun.models import glm
from certun.primitives.noise import gaussian_like
from certun.primitives.spectral import UNIT_ROUNDOFF
from certun.unlearners.base import Unlearner, UnlearnResult, published_view

__all__ = ["MECHANISM", "ADJACENCIES", "Sensitivity", "release_sensitivity", "ReleaseState",
           "ReleaseUnlearner", "private_release", "targets"]

#: Mechanism name in the certificates of :func:`private_release`.
MECHANISM = "private_release"
#: Adjacencies :func:`private_release` supports (and the certificate field each maps to).
ADJACENCIES = {"replace_one": "replacement", "add_remove": "removal"}

_THREAT_NOTE = (
    "Private release: every published model, the original included, carries fresh Gaussian "
    "noise calibrated to the sensitivity of the released parameters to one record; "
    "epsilon_composed bounds what an observer of all releases so far (e.g. the models before "
    "and after a deletion) learns about any one record. This is differential privacy of the "
    "published sequence, not certified removal.")
_ADJ_NOTES = {
    "replace_one": (
        "Adjacency replace_one: the two worlds hold the same number of rows and differ in one "
        "record; the initial row count n_0 and the deletion requests are public, so the "
        "current count n = n_0 - removed is public and sigma follows it."),
    "add_remove": (
        "Adjacency add_remove(n >= n_min): the two worlds differ by the presence of one record "
        "and both hold at least n_min rows (n_min public, fixed in advance); one sigma, "
        "computed from n_min, serves every release of both worlds; the current row count is "
        "private."),
}
_PUBLISH_NOTE = (
    "Every request is published: the released noiseless model is the wrapped unlearner's, or "
    "after a refusal the last released noiseless model, refined by Newton steps until its "
    "gradient on the current rows is within tol (part of the mechanism in both worlds); the "
    "inner outcome, gradient norms and label clipping are private. Releases compose "
    "adaptively over the published models.")


class Sensitivity(NamedTuple):
    """The L2 sensitivity of one release and the constants it rests on (all public).

    Attributes:
      value: ``Delta = G / (lam n) + 2 tol / lam``.
      gradient_bound: ``G``: under replace-one ``2 sqrt(K) g``, a bound on
        ``||grad l_z(w) - grad l_z'(w)||_F`` for two records; under add/remove a bound on
        ``||grad f_z(w*)||_F`` (loss plus regulariser of one record at the exact minimiser).
      weight_bound: per-head bound on ``||w_k||`` of the exact minimiser (``R``).
      clip_radius: per-head projection radius ``R + tol / lam``.
      n: the row count in the formula: ``n_t`` (replace-one) or ``n_min`` (add/remove).
      heads: number of heads ``K``.
      formula: the formula in words.
      adjacency: ``"replace_one"`` or ``"add_remove"``.
    """

    value: float
    gradient_bound: float
    weight_bound: float
    clip_radius: float
    n: int
    heads: int
    formula: str
    adjacency: str = "replace_one"


def release_sensitivity(loss: str, lam: float, n: int, *, heads: int = 1,
                        label_bound: float | None = None, tol: float = 0.0,
                        adjacency: str = "replace_one") -> Sensitivity:
    """L2 sensitivity of a checked release (host, float64; ``proofs/private_release.md``).

    Args:
      loss: ``"logistic"`` or ``"squared"``.
      lam: mean-scale L2 regularisation ``> 0``.
      n: the public row count: the current rows ``n_t`` under ``"replace_one"``, the public
        lower bound ``n_min`` under ``"add_remove"`` (``>= 1``).
      heads: number of heads ``K``.
      label_bound: ``B`` with ``|y| <= B`` (ridge only; labels are clipped to it).
      tol: the mean-scale gradient-norm tolerance ``tau`` every release is checked against.
      adjacency: ``"replace_one"`` (same ``n``, one record replaced) or ``"add_remove"``.

    Returns:
      A :class:`Sensitivity`: replace-one ``Delta = 2 sqrt(K) g / (lam n) + 2 tol / lam``
      with ``g = 1`` (logistic) or ``g = R + B``, ``R = B / sqrt(lam)`` (ridge); add/remove
      ``Delta = G / (lam n) + 2 tol / lam`` with ``G = sqrt(K) (1 + min(1, sqrt(2 lam ln 2)))``
      (logistic) or ``G = sqrt(K) (R + B + lam R)`` (ridge).
    """
    _validate.choice(("logistic", "squared"), loss=loss)
    _validate.choice(tuple(ADJACENCIES), adjacency=adjacency)
    lam = _validate.positive(lam=lam)
    n = _validate.integer(n=n, minimum=1)
    K = _validate.integer(heads=heads, minimum=1)
    tau = _validate.non_negative(tol=tol)
    if loss == "logistic":
        R = math.sqrt(2.0 * math.log(2.0) / lam)
        g = 1.0
        reg = min(1.0, lam * R)
        what = "g = 1 (|l'| <= 1, ||x|| <= 1)"
    else:
        if label_bound is None:
            raise _validate.ValidationError(
                "label_bound is required for loss='squared': the sensitivity of ridge needs "
                "bounded labels |y| <= B (the release mode clips them to [-B, B])")
        B = _validate.positive(label_bound=label_bound)
        R = B / math.sqrt(lam)
        g = R + B
        reg = lam * R
        what = "R = B/sqrt(lam), g = R + B"
    if adjacency == "replace_one":
        G = 2.0 * math.sqrt(K) * g
        formula = f"{what}, G = 2 sqrt(K) g, Delta = G/(lam n) + 2 tol/lam (replace-one)"
    else:
        G = math.sqrt(K) * (g + reg)
        formula = (f"{what}, G = sqrt(K) (g + "
                   + ("min(1, sqrt(2 lam ln 2))" if loss == "logistic" else "lam R")
                   + "), Delta = G/(lam n_min) + 2 tol/lam (add/remove, n >= n_min)")
    value = G / (lam * n) + 2.0 * tau / lam
    return Sensitivity(float(value), float(G), float(R), float(R + tau / lam), n, K, formula,
                       adjacency)


def targets(loss: str, y: Any, num_classes: int | None = None) -> np.ndarray:
    """``(n, K)`` float64 targets: :func:`certun._validate.targets` (its rules and errors)."""
    return _validate.targets(loss, y, num_classes)


class ReleaseState(NamedTuple):
    """State of :func:`private_release` (private as a whole, except ``published``).

    Attributes:
      inner: the wrapped unlearner's state, or ``None`` once it refused a request (from then
        on every release polishes the last released noiseless model on the current rows).
      X, Y: training rows and ``(n, K)`` targets (ridge labels clipped).
      mask: 1 for rows still present.
      noiseless: the checked, projected noiseless model of the latest release ``(d, K)``.
      published: the latest noisy release ``(d, K)``.
      sensitivities, sigmas: per release so far (release 0 is the original model).
      releases: number of releases so far.
      noise_key: key of the release noise (release ``t`` folds in ``t``).
      labels_clipped: how many training labels the ridge clip changed (private).
    """

    inner: Any
    X: jax.Array
    Y: jax.Array
    mask: jax.Array
    noiseless: jax.Array
    published: jax.Array
    sensitivities: tuple
    sigmas: tuple
    releases: int
    noise_key: jax.Array
    labels_clipped: int


class ReleaseUnlearner(NamedTuple):
    """An :class:`~certun.unlearners.base.Unlearner` plus ``certificate(state)``."""

    init: Callable[..., Any]
    unlearn: Callable[..., UnlearnResult]
    params: Callable[[Any], Any]
    retrain: Callable[..., Any]
    certificate: Callable[[Any], Certificate]


@functools.partial(jax.jit, static_argnames=("loss", "lam"))
def _grad_jit(W, X, Y, mask, *, loss: str, lam: float):
    """Mean-scale gradient norm of the unperturbed objective and its rounding magnitude."""
    lossf = glm.get_loss(loss)
    g = glm.gradient_mean(lossf, W, X, Y, lam, None, mask)
    n = jnp.sum(mask)
    mag = (jnp.sum(jnp.abs(mask[:, None] * lossf.d1(X @ W, Y)) *
                   jnp.linalg.norm(X, axis=1)[:, None]) / n + lam * jnp.linalg.norm(W))
    return jnp.linalg.norm(g), mag


@functools.partial(jax.jit, static_argnames=("loss", "lam", "tol", "max_steps"))
def _polish_jit(W, X, Y, mask, *, loss: str, lam: float, tol: float, max_steps: int):
    """Newton steps from ``W`` on the unperturbed objective of the current rows."""
    return glm.fit(glm.get_loss(loss), X, Y, lam, None, mask, W, method="newton", tol=tol,
                   max_steps=max_steps)


def private_release(unlearner: Unlearner, *, lam: float, epsilon: float, delta: float,
                    loss: str = "logistic", label_bound: float | None = None,
                    tol: float = 1e-8, noiseless: Callable[[Any], Any] | None = None,
                    max_polish_steps: int = 100, accountant: str = "pld",
                    adjacency: str = "replace_one", n_min: int | None = None
                    ) -> ReleaseUnlearner:
    """Wrap any unlearner so that every published model is a calibrated Gaussian release.

    The noise scale of every release is a function of public quantities only (module
    docstring; ``proofs/private_release.md``), and every request publishes a release: a
    refusal of the wrapped unlearner is handled privately by polishing the last released
    noiseless model on the current rows.

    Args:
      unlearner: any certun :class:`~certun.unlearners.base.Unlearner` (or one of the
        uncertified baselines wrapped as one); only its ``init``/``unlearn``/``params``/
        ``retrain`` are used.
      lam: the mean-scale L2 regularisation of the released objective (the same ``lam``
        the unlearner uses).
      epsilon: epsilon (``> 0``) of the guarantee **per release**; every release's noise is
        calibrated to it.
      delta: delta of the guarantee per release, in ``(0, 1)``.
      loss: ``"logistic"`` (binary or one-vs-rest) or ``"squared"`` (ridge).
      label_bound: ``B`` for ridge: labels are clipped to ``[-B, B]`` before training.
      tol: gradient-norm tolerance ``tau`` every released model is checked against (mean
        scale, unperturbed objective); it enters the sensitivity as ``2 tau / lam``.
      noiseless: ``state -> params`` giving the unlearner's noiseless model (default
        ``unlearner.params``; e.g. ``lambda s: s.W_bar`` for Sekhari et al.'s unlearner).
      max_polish_steps: Newton steps allowed to bring a model within ``tol``.
      accountant: ``"pld"`` or ``"rdp"`` for the composed epsilon.
      adjacency: ``"replace_one"`` (default; the worlds hold the same number of rows,
        ``n_0`` public, sigma follows the public count ``n_0 - removed``) or
        ``"add_remove"`` (needs ``n_min``; one sigma from ``n_min``).
      n_min: public lower bound on the row count of both worlds, fixed in advance
        (``adjacency="add_remove"`` only); ``init`` and requests that would leave fewer
        rows are refused with a :class:`~certun.ValidationError`.

    Returns:
      A :class:`ReleaseUnlearner` (an unlearner plus ``certificate``): ``init(X, y, key, *,
      noise_key=None, num_classes=None)`` publishes release 0, ``unlearn(state, indices)``
      forwards the request and publishes the next release (outcome always ``"unlearned"``),
      ``params(state)`` is the latest published model, ``retrain(state)`` the inner
      unlearner's retraining reference (the exact refit of the current rows once the inner
      unlearner was dropped) and ``certificate(state)`` the certificate of the latest release.
    """
    lam = _validate.positive(lam=lam)
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    loss = _validate.choice(("logistic", "squared"), loss=loss)
    tau = _validate.positive(tol=tol)
    _validate.integer(max_polish_steps=max_polish_steps, minimum=0)
    _validate.choice(("pld", "rdp"), accountant=accountant)
    adjacency = _validate.choice(tuple(ADJACENCIES), adjacency=adjacency)
    if adjacency == "add_remove":
        if n_min is None:
            raise _validate.ValidationError(
                "adjacency='add_remove' needs n_min, a public lower bound on the row count "
                "fixed in advance (sigma is computed from it); or use adjacency='replace_one'")
        n_min = _validate.integer(n_min=n_min, minimum=1)
    elif n_min is not None:
        raise _validate.ValidationError(
            "n_min applies to adjacency='add_remove' only; under 'replace_one' the row count "
            "is public and sigma uses it")
    B = None
    if loss == "squared":
        if label_bound is None:
            raise _validate.ValidationError(
                "label_bound is required for loss='squared' (labels are clipped to [-B, B])")
        B = _validate.positive(label_bound=label_bound)
    lossf = glm.get_loss(loss)
    get_noiseless = unlearner.params if noiseless is None else noiseless
    # The analytic Gaussian condition depends on sigma / Delta only, so one noise multiplier
    # z serves every release (sigma_t = z Delta_t) and the releases compose as z repeated.
    z_mult = calibrate(eps, dlt, 1.0, method="analytic").sigma

    @functools.lru_cache(maxsize=64)
    def _composed(releases: int) -> float:
        return compose_gaussian(z_mult, dlt, count=releases, accountant=accountant).epsilon

    def _sens(n_public: int, K: int) -> Sensitivity:
        """Sensitivity from public quantities: ``n_0 - removed`` or ``n_min``."""
        n_formula = n_public if adjacency == "replace_one" else n_min
        assert n_formula is not None  # add_remove validated n_min above
        return release_sensitivity(loss, lam, n_formula, heads=K, label_bound=B, tol=tau,
                                   adjacency=adjacency)

    def _grad(W, X, Y, mask):
        return _grad_jit(W, X, Y, mask, loss=loss, lam=lam)

    def _polish(W, X, Y, mask):
        return _polish_jit(W, X, Y, mask, loss=loss, lam=lam, tol=tau / 4,
                           max_steps=max(max_polish_steps, 1))

    def _check(W, X, Y, mask) -> tuple[float, float]:
        gn, mag = jax.device_get(_grad(W, X, Y, mask))
        n, d = float(jnp.sum(mask)), X.shape[1]
        return float(gn), float(gn) + (n + d + 4) * UNIT_ROUNDOFF * float(mag)

    def _publish(X, Y, mask, theta, noise_key, release, n_public):
        W = jnp.asarray(theta, X.dtype)
        W = W[:, None] if W.ndim == 1 else W
        if W.shape != (X.shape[1], Y.shape[1]):
            raise _validate.ValidationError(
                f"the unlearner's noiseless parameters have shape {W.shape}; expected "
                f"{(X.shape[1], Y.shape[1])}")
        if not bool(jnp.all(jnp.isfinite(W))):
            W = jnp.zeros_like(W)  # refined from zero below (private)
        g0, gb = _check(W, X, Y, mask)
        steps = 0
        if not gb <= tau and max_polish_steps > 0:
            fr = _polish(W, X, Y, mask)
            W, steps = fr.params, int(fr.num_steps)
            g1, gb = _check(W, X, Y, mask)
        if not gb <= tau:
            raise RuntimeError(
                f"release {release} could not be brought within tol={tau:g} (gradient bound "
                f"{gb:.3e} after {steps} Newton steps); raise lam, loosen tol or allow more "
                "max_polish_steps. Nothing was published.")
        sens = _sens(n_public, Y.shape[1])
        norms = jnp.linalg.norm(W, axis=0)
        scale = jnp.minimum(1.0, sens.clip_radius / jnp.maximum(norms, 1e-300))
        clipped = bool(jnp.any(scale < 1.0))
        W = W * scale[None, :]
        sigma = z_mult * sens.value
        noisy = W + gaussian_like(noise_key, W, sigma, release=release)
        info = {"grad_norm_in": g0, "grad_norm_bound": gb, "polish_steps": steps,
                "projected": clipped, "n": int(round(float(jnp.sum(mask)))),
                "sensitivity": sens.value, "sigma": sigma}
        return W, noisy, sens, sigma, info

    def _cert(n_total: int, removed: int, labels_clipped: int, gb: float, sens: Sensitivity,
              sigma: float, releases: int, n_current: int) -> Certificate:
        a = [
            verified("unit_rows", "||x_i||_2 <= 1 for every training row (checked at init)"),
            verified("strong_convexity", f"lambda = {lam:g} > 0 (mean scale)"),
            check("gradient_tolerance",
                  f"released noiseless model has ||grad J_D||_F + rounding <= tol = {tau:g} on "
                  "the unperturbed objective of the current rows (so it is within tol/lambda "
                  "of the exact minimiser in either world)", gb <= tau, gb, tau, private=True),
            verified("projection", "each head is projected onto ||w_k|| <= "
                     f"{sens.clip_radius:.6g} (the ball every checked model lies in)"),
            verified("fresh_noise", "each release draws fresh noise (key folded by release index)"),
            verified("float64", "gradients and bounds computed in float64 (enable jax_enable_x64)"),
        ]
        if adjacency == "add_remove":
            a.append(verified("n_min", f"both worlds hold at least n_min = {n_min} rows (the "
                              "current rows are checked at every release)", n_current, n_min,
                              private=True))
        if B is not None:
            a.insert(1, verified("label_bound", f"labels clipped to [-{B:g}, {B:g}] (a fixed "
                                 "map applied to every label; the count changed is private)",
                                 labels_clipped, private=True))
        pub = {"adjacency": adjacency, "epsilon": eps, "delta": dlt, "lam": lam, "tol": tau,
               "heads": sens.heads, "loss": loss, "label_bound": B, "accountant": accountant,
               "noise_multiplier": z_mult, "releases": releases, "removed": removed}
        if adjacency == "replace_one":
            pub.update(n_initial=n_total, n=n_total - removed)
        else:
            pub["n_min"] = n_min
        notes = [_THREAT_NOTE, _ADJ_NOTES[adjacency],
                 f"sensitivity: {sens.formula} = {sens.value:.6g} (G = {sens.gradient_bound:.6g}"
                 f", {'n' if adjacency == 'replace_one' else 'n_min'} = {sens.n}, "
                 f"K = {sens.heads}); sigma = noise_multiplier * Delta", _PUBLISH_NOTE]
        return make_certificate(
            mechanism=MECHANISM, epsilon=eps, delta=dlt, sigma=sigma, threat="private_release",
            adjacency=ADJACENCIES[adjacency], scale="mean", calibration="analytic_gaussian",
            sensitivity=sens.value, releases=releases, epsilon_composed=_composed(releases),
            delta_composed=dlt, removed=removed, assumptions=a,
            bounds={"sensitivity": sens.value, "gradient_bound_G": sens.gradient_bound,
                    "weight_bound_R": sens.weight_bound, "clip_radius": sens.clip_radius,
                    "n_formula": sens.n, "n_current": n_current, "heads": sens.heads,
                    "tol": tau, "grad_norm_bound": gb},
            private={"labels_clipped": labels_clipped}, public_inputs=pub, notes=tuple(notes))

    def _n_current(mask) -> int:
        return int(round(float(jnp.sum(mask))))

    def init(X: Any, y: Any, key: jax.Array, *, noise_key: jax.Array | None = None,
             num_classes: int | None = None) -> ReleaseState:
        """Train with the inner unlearner and publish release 0 (the original model, noised).

        ``key`` is split into the inner unlearner's key and the noise key unless
        ``noise_key`` is given.
        """
        Xn = _validate.unit_rows(X=X, tol=0.0)
        yn = _validate.finite_array(y=y, ndim=(1, 2))
        _validate.matching_rows(X=Xn, y=yn)
        if jnp.zeros(()).dtype != jnp.float64:
            raise _validate.ValidationError(
                "private_release needs float64 (its gradient check resolves tol); call "
                "certun.enable_x64() before creating arrays")
        if n_min is not None and Xn.shape[0] < n_min:
            raise _validate.ValidationError(
                f"X has {Xn.shape[0]} rows < n_min = {n_min}: the add/remove guarantee covers "
                "data sets of at least n_min rows; lower n_min (fixed in advance) or use more "
                "rows")
        clipped = 0
        if B is not None:
            yc = np.clip(yn, -B, B)
            clipped = int(np.count_nonzero(yc != yn))
            yn = yc
        if noise_key is None:
            key, noise_key = jax.random.split(key)
        inner = unlearner.init(Xn, yn, key, num_classes=num_classes)
        Y = jnp.asarray(targets(loss, yn, num_classes))
        Xj = jnp.asarray(Xn, jnp.float64)
        mask = jnp.ones(Xj.shape[0], jnp.float64)
        W, noisy, sens, sigma, info = _publish(Xj, Y, mask, get_noiseless(inner), noise_key, 0,
                                               Xj.shape[0])
        assert noise_key is not None
        return ReleaseState(inner, Xj, Y, mask, W, noisy, (sens.value,), (sigma,), 1,
                            noise_key, clipped)

    def params(state: ReleaseState) -> jax.Array:
        """The latest published (noisy) model: ``(d,)`` for one head, ``(d, K)`` otherwise."""
        return published_view(state.published)

    def retrain(state: ReleaseState, key: jax.Array | None = None) -> Any:
        """The inner unlearner's retraining reference (noiseless).

        Once the inner unlearner was dropped (after a refusal), the exact refit of the
        current rows (a :class:`~certun.models.fit.FitResult` whose ``params`` has the shape
        of ``params(state)``).
        """
        if state.inner is None:
            fr = glm.fit(lossf, state.X, state.Y, lam, None, state.mask, tol=tau / 4)
            return fr._replace(params=published_view(fr.params))
        return unlearner.retrain(state.inner, key)

    def certificate(state: ReleaseState) -> Certificate:
        """The certificate of the latest release (recomputed from the state)."""
        gn, gb = _check(state.noiseless, state.X, state.Y, state.mask)
        n_total, n_cur = int(state.X.shape[0]), _n_current(state.mask)
        sens = _sens(n_cur, state.Y.shape[1])
        return _cert(n_total, n_total - n_cur, state.labels_clipped, gb, sens,
                     state.sigmas[-1], state.releases, n_cur)

    def unlearn(state: ReleaseState, indices: Any, key: jax.Array | None = None) -> UnlearnResult:
        """Forward the request to the inner unlearner and publish a freshly noised model.

        The public outcome is always ``"unlearned"`` (a release is published); the inner
        unlearner's outcome is ``diagnostics["inner_outcome"]`` (private). A refusal drops
        the inner unlearner: this and later releases polish the last released noiseless
        model on the current rows.
        """
        t0 = time.perf_counter()
        n_total = int(state.X.shape[0])
        removed_before = np.asarray(state.mask) == 0
        idx = _validate.forget_indices(indices, n_total, already_removed=removed_before)
        removed = int(removed_before.sum()) + idx.size
        n_cur = n_total - removed
        if n_min is not None and n_cur < n_min:
            raise _validate.ValidationError(
                f"this request would leave {n_cur} rows < n_min = {n_min}: the add/remove "
                "guarantee covers data sets of at least n_min rows; nothing was published")
        mask_new = state.mask.at[jnp.asarray(idx)].set(0.0)
        inner, inner_outcome, inner_diag = None, "dropped", {}
        theta = state.noiseless
        if state.inner is not None:
            res = unlearner.unlearn(state.inner, idx, key)
            inner_outcome, inner_diag = res.outcome, res.diagnostics
            if res.params is not None:
                inner, theta = res.state, get_noiseless(res.state)
        release = state.releases
        W, noisy, sens, sigma, info = _publish(state.X, state.Y, mask_new, theta,
                                               state.noise_key, release, n_cur)
        cert = _cert(n_total, removed, state.labels_clipped, info["grad_norm_bound"], sens,
                     sigma, release + 1, n_cur)
        new = state._replace(inner=inner, mask=mask_new, noiseless=W, published=noisy,
                             sensitivities=state.sensitivities + (sens.value,),
                             sigmas=state.sigmas + (sigma,), releases=release + 1)
        diag = dict(info, seconds=time.perf_counter() - t0, inner_outcome=inner_outcome,
                    inner=inner_diag, epsilon_composed=cert.epsilon_composed)
        return UnlearnResult(params(new), new, cert, "unlearned", diag)

    unl = Unlearner(init=init, unlearn=unlearn, params=params, retrain=retrain)
    return ReleaseUnlearner(*unl, certificate=certificate)
