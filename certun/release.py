r"""Private release mode: fresh, calibrated Gaussian noise on every published model.

Certified removal makes the unlearned model indistinguishable from a retrained one, but it
does **not** hide a deletion from someone who sees the model before and after: Chen et
al.'s two-version membership inference and Bertran et al.'s reconstruction work against
exact retraining too, and Guo et al.'s perturbation ``b`` is shared by both versions, so it
cancels in their difference (REFERENCES.md erratum 9). The defence for that threat is to
publish every model -- the original included -- as a Gaussian mechanism whose noise is
calibrated to the sensitivity of the *released parameters* to one record, and to compose
the releases (the differentially private machine unlearning framing).

**The mechanism.** Release ``t`` (``t = 0`` is the original model) publishes

.. math:: \tilde\theta_t = \Pi(\theta_t) + \mathcal N(0, \sigma_t^2 I),\qquad
          \sigma_t = \mathrm{analytic\_sigma}(\epsilon, \delta, \Delta_t),

where ``theta_t`` is any unlearner's noiseless model after the request, first **checked**
to satisfy :math:`\lVert\nabla J_{D_t}(\theta_t)\rVert_F + \text{rounding} \le \tau` on the
*unperturbed* mean-scale objective :math:`J_D(w) = \frac1{|D|}\sum_{i\in D}\ell(w^\top x_i,
y_i) + \frac\lambda2\lVert w\rVert^2` of the current rows (if not, it is refined by Newton
steps from ``theta_t`` until it is; the check is part of the mechanism, so it holds in both
neighbouring worlds), and ``Pi`` is the projection of each head onto the ball that
provably contains every such model (a no-op for a checked model; it makes the parameter
bound a stated constant). The noise of release ``t`` uses
``gaussian_like(noise_key, theta, sigma_t, release=t)``: fresh for every release.

**Sensitivity** (``proofs/private_release.md``). For neighbouring data sets that differ by
one record (add or remove), ``||x|| <= 1`` and ``n_t = |D_t|``:

.. math:: \Delta_t = \frac{G}{\lambda n_t} + \frac{2\tau}{\lambda},

* logistic (binary or ``K`` one-vs-rest heads): ``G = sqrt(K) (1 + min(1, sqrt(2 lambda ln 2)))``
  (``|l'| <= 1``; ``lambda ||w_k|| <= 1`` by stationarity and ``<= sqrt(2 lambda ln 2)`` by
  ``J_k(w_k) <= J_k(0) = ln 2``); heads projected onto
  ``||w_k|| <= sqrt(2 ln 2 / lambda) + tau/lambda``;
* ridge (squared loss) with labels **clipped** to ``[-B, B]``: ``R = B / sqrt(lambda)``
  (``J(w) <= J(0) <= B^2/2``), ``G = sqrt(K) (R + B + lambda R)``; heads projected onto
  ``||w_k|| <= R + tau/lambda``.

**Certificate.** Threat ``"private_release"``, adjacency ``"removal"`` (the two worlds'
data differ, at every release, by at most the presence of one record, e.g. "deleted at
release t" vs "never present"); ``epsilon``/``delta`` per release and
``epsilon_composed`` over all releases so far (:func:`certun.accounting.compose_gaussian`,
PLD), which bounds what an observer of *every* published model learns about the record.
The noiseless state (the inner unlearner's, including Guo's ``b``) is private.

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
from certun.unlearners.base import Unlearner, UnlearnResult

__all__ = ["MECHANISM", "Sensitivity", "release_sensitivity", "ReleaseState",
           "ReleaseUnlearner", "private_release", "targets"]

#: Mechanism name in the certificates of :func:`private_release`.
MECHANISM = "private_release"

_THREAT_NOTE = (
    "Private release: every published model, the original included, carries fresh Gaussian "
    "noise calibrated to the sensitivity of the released parameters to one record; "
    "epsilon_composed bounds what an observer of all releases so far (e.g. the models before "
    "and after a deletion) learns about any one record (add/remove adjacency at every "
    "release). This is differential privacy of the published sequence, not certified removal."
)


class Sensitivity(NamedTuple):
    """The L2 sensitivity of one release and the constants it rests on.

    Attributes:
      value: ``Delta = G / (lam n) + 2 tol / lam``.
      gradient_bound: ``G``, a bound on ``||grad f_z(w*)||_F`` (loss plus regulariser of
        one record at the exact minimiser).
      weight_bound: per-head bound on ``||w_k||`` of the exact minimiser (``R``).
      clip_radius: per-head projection radius ``R + tol / lam``.
      n: current number of rows.
      heads: number of heads ``K``.
      formula: the formula in words.
    """

    value: float
    gradient_bound: float
    weight_bound: float
    clip_radius: float
    n: int
    heads: int
    formula: str


def release_sensitivity(loss: str, lam: float, n: int, *, heads: int = 1,
                        label_bound: float | None = None, tol: float = 0.0) -> Sensitivity:
    """L2 sensitivity of a checked release under add/remove-one adjacency (host, float64).

    Args:
      loss: ``"logistic"`` or ``"squared"``.
      lam: mean-scale L2 regularisation ``> 0``.
      n: rows of the released model's data set (``>= 1``).
      heads: number of heads ``K``.
      label_bound: ``B`` with ``|y| <= B`` (ridge only; labels are clipped to it).
      tol: the mean-scale gradient-norm tolerance ``tau`` every release is checked against.

    Returns:
      A :class:`Sensitivity` (derivation: ``proofs/private_release.md``).
    """
    _validate.choice(("logistic", "squared"), loss=loss)
    lam = _validate.positive(lam=lam)
    n = _validate.integer(n=n, minimum=1)
    K = _validate.integer(heads=heads, minimum=1)
    tau = _validate.non_negative(tol=tol)
    if loss == "logistic":
        R = math.sqrt(2.0 * math.log(2.0) / lam)
        per_head = 1.0 + min(1.0, lam * R)
        formula = "G = sqrt(K) (1 + min(1, sqrt(2 lam ln 2))), Delta = G/(lam n) + 2 tol/lam"
    else:
        if label_bound is None:
            raise _validate.ValidationError(
                "label_bound is required for loss='squared': the sensitivity of ridge needs "
                "bounded labels |y| <= B (the release mode clips them to [-B, B])")
        B = _validate.positive(label_bound=label_bound)
        R = B / math.sqrt(lam)
        per_head = R + B + lam * R
        formula = ("R = B/sqrt(lam), G = sqrt(K) (R + B + lam R), "
                   "Delta = G/(lam n) + 2 tol/lam")
    G = math.sqrt(K) * per_head
    value = G / (lam * n) + 2.0 * tau / lam
    return Sensitivity(float(value), float(G), float(R), float(R + tau / lam), n, K, formula)


def targets(loss: str, y: Any, num_classes: int | None = None) -> np.ndarray:
    """``(n, K)`` float64 targets: :func:`certun._validate.targets` (its rules and errors)."""
    return _validate.targets(loss, y, num_classes)


class ReleaseState(NamedTuple):
    """State of :func:`private_release` (private as a whole, except ``published``).

    Attributes:
      inner: the wrapped unlearner's state.
      X, Y: training rows and ``(n, K)`` targets (ridge labels clipped).
      mask: 1 for rows still present.
      noiseless: the checked, projected noiseless model of the latest release ``(d, K)``.
      published: the latest noisy release ``(d, K)``.
      sensitivities, sigmas: per release so far (release 0 is the original model).
      releases: number of releases so far.
      noise_key: key of the release noise (release ``t`` folds in ``t``).
      labels_clipped: how many training labels the ridge clip changed.
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


def private_release(unlearner: Unlearner, *, lam: float, epsilon: float, delta: float,
                    loss: str = "logistic", label_bound: float | None = None,
                    tol: float = 1e-8, noiseless: Callable[[Any], Any] | None = None,
                    max_polish_steps: int = 100, accountant: str = "pld") -> ReleaseUnlearner:
    """Wrap any unlearner so that every published model is a calibrated Gaussian release.

    Args:
      unlearner: any certun :class:`~certun.unlearners.base.Unlearner` (or one of the
        uncertified baselines wrapped as one); only its ``init``/``unlearn``/``params``/
        ``retrain`` are used.
      lam: the mean-scale L2 regularisation of the released objective (the same ``lam``
        the unlearner uses).
      epsilon: epsilon (``> 0``) of the guarantee **per release** (add/remove-one
        adjacency); every release's noise is calibrated to it.
      delta: delta of the guarantee per release, in ``(0, 1)``.
      loss: ``"logistic"`` (binary or one-vs-rest) or ``"squared"`` (ridge).
      label_bound: ``B`` for ridge: labels are clipped to ``[-B, B]`` before training.
      tol: gradient-norm tolerance ``tau`` every released model is checked against (mean
        scale, unperturbed objective); it enters the sensitivity as ``2 tau / lam``.
      noiseless: ``state -> params`` giving the unlearner's noiseless model (default
        ``unlearner.params``; e.g. ``lambda s: s.W_bar`` for Sekhari et al.'s unlearner).
      max_polish_steps: Newton steps allowed to bring a model within ``tol``.
      accountant: ``"pld"`` or ``"rdp"`` for the composed epsilon.

    Returns:
      A :class:`ReleaseUnlearner` (an unlearner plus ``certificate``): ``init(X, y, key, *,
      noise_key=None, num_classes=None)`` publishes release 0, ``unlearn(state, indices)``
      forwards the request and publishes the next release, ``params(state)`` is the latest
      published model, ``retrain(state)`` the inner unlearner's retraining reference and
      ``certificate(state)`` the certificate of the latest release.
    """
    lam = _validate.positive(lam=lam)
    eps = _validate.epsilon(epsilon=epsilon)
    dlt = _validate.delta(delta=delta)
    loss = _validate.choice(("logistic", "squared"), loss=loss)
    tau = _validate.positive(tol=tol)
    _validate.integer(max_polish_steps=max_polish_steps, minimum=0)
    _validate.choice(("pld", "rdp"), accountant=accountant)
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

    @jax.jit
    def _grad(W, X, Y, mask):
        g = glm.gradient_mean(lossf, W, X, Y, lam, None, mask)
        n = jnp.sum(mask)
        mag = (jnp.sum(jnp.abs(mask[:, None] * lossf.d1(X @ W, Y)) *
                       jnp.linalg.norm(X, axis=1)[:, None]) / n + lam * jnp.linalg.norm(W))
        return jnp.linalg.norm(g), mag

    @jax.jit
    def _polish(W, X, Y, mask):
        return glm.fit(lossf, X, Y, lam, None, mask, W, method="newton", tol=tau / 4,
                       max_steps=max(max_polish_steps, 1))

    def _check(W, X, Y, mask) -> tuple[float, float]:
        gn, mag = jax.device_get(_grad(W, X, Y, mask))
        n, d = float(jnp.sum(mask)), X.shape[1]
        return float(gn), float(gn) + (n + d + 4) * UNIT_ROUNDOFF * float(mag)

    def _publish(X, Y, mask, theta, noise_key, release):
        W = jnp.asarray(theta, X.dtype)
        W = W[:, None] if W.ndim == 1 else W
        if W.shape != (X.shape[1], Y.shape[1]):
            raise _validate.ValidationError(
                f"the unlearner's noiseless parameters have shape {W.shape}; expected "
                f"{(X.shape[1], Y.shape[1])}")
        if not bool(jnp.all(jnp.isfinite(W))):
            raise _validate.ValidationError("the unlearner's noiseless parameters are not finite")
        g0, gb = _check(W, X, Y, mask)
        steps = 0
        if not gb <= tau and max_polish_steps > 0:
            fr = _polish(W, X, Y, mask)
            W, steps = fr.params, int(fr.num_steps)
            g1, gb = _check(W, X, Y, mask)
        n = int(round(float(jnp.sum(mask))))
        sens = release_sensitivity(loss, lam, n, heads=Y.shape[1], label_bound=B, tol=tau)
        norms = jnp.linalg.norm(W, axis=0)
        scale = jnp.minimum(1.0, sens.clip_radius / jnp.maximum(norms, 1e-300))
        clipped = bool(jnp.any(scale < 1.0))
        W = W * scale[None, :]
        sigma = z_mult * sens.value
        noisy = W + gaussian_like(noise_key, W, sigma, release=release)
        info = {"grad_norm_in": g0, "grad_norm_bound": gb, "polish_steps": steps,
                "projected": clipped, "n": n, "sensitivity": sens.value, "sigma": sigma,
                "gradient_bound_G": sens.gradient_bound, "clip_radius": sens.clip_radius}
        return W, noisy, sens, sigma, gb <= tau, info

    def _cert(state_like: dict, ok: bool, x64: bool, gb: float | None, extra: str | None,
              sens: Sensitivity, sigma: float, releases: int, comp_eps: float | None,
              inner_cert: Certificate | None, info: dict) -> Certificate:
        a = [
            verified("unit_rows", "||x_i||_2 <= 1 for every training row (checked at init)"),
            verified("strong_convexity", f"lambda = {lam:g} > 0 (mean scale)"),
            check("gradient_tolerance",
                  f"released noiseless model has ||grad J_D||_F + rounding <= tol = {tau:g} on "
                  "the unperturbed objective of the current rows (so it is within tol/lambda "
                  "of the exact minimiser in either world)", ok, gb, tau, private=True),
            verified("projection", "each head is projected onto ||w_k|| <= "
                     f"{sens.clip_radius:.6g} (the ball every checked model lies in)"),
            verified("fresh_noise", "each release draws fresh noise (key folded by release index)"),
            check("float64", "gradients and bounds computed in float64 (enable jax_enable_x64)",
                  x64),
        ]
        if B is not None:
            a.insert(1, verified("label_bound", f"labels clipped to [-{B:g}, {B:g}]; "
                                 f"{state_like['labels_clipped']} training labels changed",
                                 state_like["labels_clipped"]))
        notes = [_THREAT_NOTE, f"sensitivity: {sens.formula} = {sens.value:.6g} "
                 f"(G = {sens.gradient_bound:.6g}, n = {sens.n}, K = {sens.heads})",
                 "The noiseless state (the inner unlearner's, e.g. Guo et al.'s b) is private; "
                 "releases compose adaptively over the published models."]
        if inner_cert is not None:
            notes.append(f"inner mechanism: {inner_cert.mechanism} ({inner_cert.status})")
        return make_certificate(
            mechanism=MECHANISM, epsilon=eps, delta=dlt, sigma=sigma, threat="private_release",
            adjacency="removal", scale="mean", calibration="analytic_gaussian",
            sensitivity=sens.value, releases=releases, epsilon_composed=comp_eps,
            delta_composed=dlt if comp_eps is not None else None,
            removed=state_like["removed"], assumptions=a,
            bounds={"sensitivity": sens.value, "gradient_bound_G": sens.gradient_bound,
                    "weight_bound_R": sens.weight_bound, "clip_radius": sens.clip_radius,
                    "n": sens.n, "heads": sens.heads, "tol": tau},
            private=info, notes=tuple(notes), extra_failure=extra)

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
        W, noisy, sens, sigma, ok, info = _publish(Xj, Y, mask, get_noiseless(inner), noise_key,
                                                   0)
        if not ok:
            raise RuntimeError(
                f"release 0 could not be brought within tol={tau:g} (gradient bound "
                f"{info['grad_norm_bound']:.3e}); raise lam, loosen tol or allow more "
                "max_polish_steps")
        return ReleaseState(inner, Xj, Y, mask, W, noisy, (sens.value,), (sigma,), 1,
                            noise_key, clipped)

    def params(state: ReleaseState) -> jax.Array:
        """The latest published (noisy) model: ``(d,)`` for one head, ``(d, K)`` otherwise."""
        return state.published[:, 0] if state.published.shape[1] == 1 else state.published

    def retrain(state: ReleaseState, key: jax.Array | None = None) -> Any:
        """The inner unlearner's retraining reference (noiseless)."""
        return unlearner.retrain(state.inner, key)

    def certificate(state: ReleaseState) -> Certificate:
        """The certificate of the latest release (recomputed from the state)."""
        comp_eps = _composed(state.releases)
        gn, gb = _check(state.noiseless, state.X, state.Y, state.mask)
        n = int(round(float(jnp.sum(state.mask))))
        sens = release_sensitivity(loss, lam, n, heads=state.Y.shape[1], label_bound=B, tol=tau)
        return _cert({"labels_clipped": state.labels_clipped,
                      "removed": int(state.X.shape[0]) - n}, gb <= tau, True, gb, None, sens,
                     state.sigmas[-1], state.releases, comp_eps, None, {})

    def unlearn(state: ReleaseState, indices: Any, key: jax.Array | None = None) -> UnlearnResult:
        """Forward the request to the inner unlearner and publish a freshly noised model."""
        t0 = time.perf_counter()
        n_total = int(state.X.shape[0])
        idx = _validate.forget_indices(indices, n_total,
                                       already_removed=np.asarray(state.mask) == 0)
        res = unlearner.unlearn(state.inner, idx, key)
        mask_new = state.mask.at[jnp.asarray(idx)].set(0.0)
        removed = n_total - int(round(float(jnp.sum(mask_new))))
        st_like = {"labels_clipped": state.labels_clipped, "removed": removed}
        release = state.releases
        if res.params is None:
            n = int(round(float(jnp.sum(state.mask))))
            sens = release_sensitivity(loss, lam, n, heads=state.Y.shape[1], label_bound=B,
                                       tol=tau)
            cert = _cert(st_like, True, True, None, "inner unlearner refused the request: "
                         + res.certificate.reason, sens, state.sigmas[-1], release, None,
                         res.certificate, {})
            return UnlearnResult(None, state, cert, "retrain_required",
                                 {"inner": res.diagnostics})
        W, noisy, sens, sigma, ok, info = _publish(state.X, state.Y, mask_new,
                                                   get_noiseless(res.state), state.noise_key,
                                                   release)
        sens_all = state.sensitivities + (sens.value,)
        sig_all = state.sigmas + (sigma,)
        comp_eps = _composed(release + 1)
        x64 = state.X.dtype == jnp.float64
        extra = None if ok else (f"the released model could not be brought within tol={tau:g} "
                                 f"(gradient bound {info['grad_norm_bound']:.3e})")
        cert = _cert(st_like, ok, x64, info["grad_norm_bound"], extra, sens, sigma,
                     release + 1, comp_eps, res.certificate, info)
        diag = dict(info, seconds=time.perf_counter() - t0, inner_outcome=res.outcome,
                    epsilon_composed=comp_eps)
        if not cert.valid:
            return UnlearnResult(None, state, cert, "retrain_required", diag)
        new = state._replace(inner=res.state, mask=mask_new, noiseless=W, published=noisy,
                             sensitivities=sens_all, sigmas=sig_all, releases=release + 1)
        return UnlearnResult(params(new), new, cert, res.outcome, diag)

    unl = Unlearner(init=init, unlearn=unlearn, params=params, retrain=retrain)
    return ReleaseUnlearner(*unl, certificate=certificate)
