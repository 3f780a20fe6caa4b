"""The benchmark's methods: a registry of unlearners and the plug-in protocol.

A **method** is anything that, given a :class:`~certun.bench.tasks.Task`, produces an
unlearner with certun's protocol (:mod:`certun.unlearners.base`):

* ``state = u.init(X, y, key, **init_kwargs)`` trains on ``(X, y)``;
* ``result = u.unlearn(state, indices)`` removes the rows ``indices`` and returns an object
  with ``params`` (and, for certun's unlearners, ``state``, ``certificate``, ``outcome``,
  ``diagnostics``) -- or the new parameters themselves;
* ``u.params(state)`` gives the published model.

A **pair of functions** ``train(X, y, key) -> params`` and ``forget(params, X, y, indices,
key) -> params`` works too (:func:`from_functions` wraps it). Register a method by name
with :func:`register`, or give ``module:function`` on the command line (``certun bench
--method mypkg.mymod:my_method``): ``function`` is called with the task and returns either
form (or it *is* an unlearner object or a ``(train, forget)`` pair). Parameters are a
linear model's ``(d,)`` / ``(d, K)`` weights unless the method gives its own ``logits``.

The built-in methods (:data:`BUILTIN`) are every unlearner certun ships, each with the
hyperparameters of its docs on a few hundred rows, the uncertified shortcuts of
:mod:`certun.audits.baselines` and ``identity`` (the original model unchanged, a sanity
floor). Another module adds its own (e.g. network or sparsity methods) with
:func:`register` at import time, or users pass it as ``module:function``.

**Coupled distance.** A method may give ``coupled(unlearner, result) -> (theta_u,
theta_r)``: the unlearned model and the model retraining on the retained rows produces
*under the same randomness* -- the coupling the certificates are proved under (Guo et
al.'s shared ``b``; the noiseless parts of output-perturbation mechanisms, whose shared
noise cancels). The default is ``(result.params, unlearner.retrain(result.state).params)``
when the unlearner has ``retrain``; without either, the distance is not reported.
"""

from __future__ import annotations

import functools
import importlib
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.bench.tasks import Task

__all__ = ["Method", "Model", "FAMILIES", "BUILTIN", "DEFAULT_METHODS", "register",
           "get_method", "available", "resolve_method", "from_functions", "linear_logits",
           "FunctionUnlearner"]

#: Method families, in the order a leaderboard groups them.
FAMILIES = ("exact", "certified", "uncertified", "baseline", "plugin")


class Model(NamedTuple):
    """A method instantiated on one task (what :func:`certun.bench.run` drives).

    Attributes:
      unlearner: the object with ``init``, ``unlearn``, ``params``.
      logits: ``(params, X) -> (P, C)`` logits (classification) or ``(P,)`` predictions.
      init_kwargs: extra keyword arguments of ``init`` (e.g. ``num_classes``).
      labels: maps the task's labels to what ``init`` expects (identity by default).
      coupled: ``(unlearner, result) -> (theta_u, theta_r)`` or ``None`` (module docstring).
      grad_evals: ``(result, n, m) -> float`` per-example gradient (and Hessian-row)
        evaluations of one request, or ``None`` when unknown.
      hyperparameters: JSON-ready settings (recorded in the report and the cache key).
      audit: ``F -> certun.audits.adversary.Worlds`` of the mechanism's epsilon audit
        (binary tasks; ``F`` the run's forget rows, which the network worlds remove; the
        convex mechanisms' worlds remove a worst-case canary), or ``None`` when the
        mechanism has none.
      audit_trains: each audit run is a whole training run (Guo et al.'s, Langevin's,
        noisy fine-tuning's worlds); the runner gives such audits ``audit_training_runs``
        runs per world (fewer than the Gaussian-output audits' ``audit_runs``).
      oracle_key: methods with the same learning algorithm share one cached oracle ensemble
        when they give the same key (default: the method's name and hyperparameters).
      oracle: ``(X_r, y_r, key) -> params``, one draw of the certificate's reference on the
        retained rows when it is not ``params(init(X_r, y_r, key))`` (e.g. a release
        followed by post-processing); ``None`` for the default.
      deterministic: the unlearned model is a function of the data (no randomness): when it
        differs from retraining, the runner's epsilon lower bound is the Clopper-Pearson
        bound of a test that never errs.
    """

    unlearner: Any
    logits: Callable[[Any, Any], Any]
    init_kwargs: dict
    labels: Callable[[np.ndarray], np.ndarray]
    coupled: Callable[[Any, Any], tuple[Any, Any]] | None
    grad_evals: Callable[[Any, int, int], float] | None
    hyperparameters: dict
    audit: Callable[[np.ndarray], Any] | None = None
    audit_trains: bool = False
    oracle_key: dict | None = None
    deterministic: bool = False
    oracle: Callable[[np.ndarray, np.ndarray, jax.Array], Any] | None = None


class Method(NamedTuple):
    """A registered method.

    Attributes:
      name: the leaderboard name.
      family: one of :data:`FAMILIES` (``certified`` methods carry a certificate).
      build: ``(task, forget_size) -> Model``.
      summary: one line.
      paper: the reference.
      supports: ``task -> None`` if the method runs on it, else the reason it does not.
    """

    name: str
    family: str
    build: Callable[[Task, int], Model]
    summary: str
    paper: str
    supports: Callable[[Task], str | None]


_REGISTRY: dict[str, Method] = {}


def _always(task: Task) -> str | None:
    del task
    return None


def register(name: str, factory: Any, *, family: str = "plugin", summary: str = "",
             paper: str = "", logits: Callable[[Any, Any], Any] | None = None,
             supports: Callable[[Task], str | None] | None = None,
             overwrite: bool = False) -> Method:
    """Register a method under ``name`` (the plug-in entry point).

    Args:
      name: the leaderboard name (letters, digits, ``_``, ``-``, ``.``, ``:``).
      factory: ``task -> unlearner`` or ``task -> (train, forget)``, or an unlearner object
        or a ``(train, forget)`` pair itself (module docstring), or a ``(task, forget_size)
        -> Model`` builder when ``family`` is a built-in family and it returns a
        :class:`Model`.
      family: one of :data:`FAMILIES`.
      summary: one line for the leaderboard page.
      paper: the reference.
      logits: ``(params, X) -> logits`` (default :func:`linear_logits`).
      supports: ``task -> reason or None``.
      overwrite: replace an existing registration.

    Returns:
      The :class:`Method`.
    """
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-.:"
                                                        for c in name):
        raise _validate.ValidationError(
            f"name must be letters, digits, '_', '-', '.' or ':', got {name!r}")
    _validate.choice(FAMILIES, family=family)
    if name in _REGISTRY and not overwrite:
        raise _validate.ValidationError(
            f"method {name!r} is already registered; pass overwrite=True to replace it")
    m = Method(name, family, _plugin_builder(factory, logits), summary, paper,
               supports or _always)
    _REGISTRY[name] = m
    return m


def _register_builtin(name: str, family: str, build: Callable[[Task, int], Model],
                      summary: str, paper: str,
                      supports: Callable[[Task], str | None] = _always) -> None:
    _REGISTRY[name] = Method(name, family, build, summary, paper, supports)


def available() -> list[str]:
    """The registered method names, built-in first."""
    return list(_REGISTRY)


def get_method(name: str) -> Method:
    """The registered method ``name``."""
    if name not in _REGISTRY:
        raise _validate.ValidationError(
            f"method must be one of {available()} or module:function, got {name!r}")
    return _REGISTRY[name]


def resolve_method(spec: str) -> Method:
    """A registered name, or ``module:function`` (imported and registered under ``spec``)."""
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise _validate.ValidationError(
            f"method must be one of {available()} or module:function, got {spec!r}")
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise _validate.ValidationError(
            f"method {spec!r}: cannot import {attr} from {mod_name} ({exc}); check the module "
            "is importable (PYTHONPATH) and defines it") from None
    if isinstance(obj, Method):
        _REGISTRY[spec] = obj._replace(name=spec)
        return _REGISTRY[spec]
    return register(spec, obj, overwrite=True)


# ----------------------------------------------------------------------- plug-in adapters


class FunctionUnlearner(NamedTuple):
    """``(train, forget)`` functions as an unlearner (state = ``(params, X, y, removed)``)."""

    train: Callable[..., Any]
    forget: Callable[..., Any]

    def init(self, X: Any, y: Any, key: jax.Array, **kwargs: Any) -> tuple:
        """Train: ``train(X, y, key)``."""
        del kwargs
        return (self.train(X, y, key), np.asarray(X), np.asarray(y), np.zeros(0, np.int64))

    def unlearn(self, state: tuple, indices: Any, key: jax.Array | None = None) -> Any:
        """Forget: ``forget(params, X, y, indices, key)`` (the params, state updated)."""
        params, X, y, removed = state
        idx = np.asarray(indices, np.int64)
        new = self.forget(params, X, y, idx, jax.random.key(0) if key is None else key)
        return _PluginResult(new, (new, X, y, np.union1d(removed, idx)))

    def params(self, state: tuple) -> Any:
        """The current parameters."""
        return state[0]


class _PluginResult(NamedTuple):
    params: Any
    state: Any
    certificate: Any = None
    outcome: str = "uncertified"
    diagnostics: dict = {}


def from_functions(train: Callable[..., Any], forget: Callable[..., Any]) -> FunctionUnlearner:
    """Wrap ``train(X, y, key) -> params`` and ``forget(params, X, y, indices, key) -> params``."""
    if not (callable(train) and callable(forget)):
        raise _validate.ValidationError("train and forget must be callables")
    return FunctionUnlearner(train, forget)


def _as_unlearner(obj: Any) -> Any:
    if all(hasattr(obj, a) for a in ("init", "unlearn", "params")):
        return obj
    if isinstance(obj, tuple) and len(obj) == 2 and all(callable(f) for f in obj):
        return from_functions(*obj)
    return None


def _plugin_builder(factory: Any, logits: Callable | None) -> Callable[[Task, int], Model]:
    def build(task: Task, m: int) -> Model:
        u = _as_unlearner(factory)
        if u is None and callable(factory):
            out = factory(task)
            if isinstance(out, Model):
                return out
            u = _as_unlearner(out)
        if u is None:
            raise _validate.ValidationError(
                "a method must be an object with init/unlearn/params, a (train, forget) pair, "
                "or a function of the task returning one")
        kw = {"num_classes": task.num_classes} if task.kind == "multiclass" else {}
        if isinstance(u, FunctionUnlearner):
            kw = {}
        coupled = _default_coupled if hasattr(u, "retrain") else None
        return Model(u, logits or linear_logits, kw, _identity_labels, coupled, None,
                     {"plugin": repr(factory)[:200]})
    return build


def _identity_labels(y: np.ndarray) -> np.ndarray:
    return y


def _default_coupled(u: Any, res: Any) -> tuple[Any, Any]:
    ref = u.retrain(res.state)
    return res.params, getattr(ref, "params", ref)


def linear_logits(params: Any, X: Any) -> np.ndarray:
    """Logits of a linear model: ``(0, x.w)`` for ``(d,)`` weights, ``X W`` for ``(d, K)``.

    A ``(d, 1)`` weight matrix is treated as binary; a regression model's logits are its
    ``(P,)`` predictions (the runner reads them so for ``kind="regression"`` tasks). Host-side
    NumPy in float64 (the same numbers as :func:`certun.audits.mia.glm_logits`, without a
    compilation per input shape).
    """
    W = np.asarray(params, np.float64)
    A = np.asarray(X, np.float64) @ W
    if W.ndim == 1:
        return np.stack([np.zeros_like(A), A], axis=-1)
    if W.shape[1] == 1:
        return np.concatenate([np.zeros_like(A), A], axis=-1)
    return A


# ------------------------------------------------------------------------ built-in methods


def _kw(task: Task) -> dict:
    return {"num_classes": task.num_classes} if task.kind == "multiclass" else {}


def _n_rm(res: Any, n: int, m: int) -> int:
    return n - m


def _classification(task: Task) -> str | None:
    return "regression task: the method is a classifier" if task.kind == "regression" else None


def _binary_or_multi_logistic(task: Task) -> str | None:
    return _classification(task)


def _noiseless_pair(noiseless: Callable[[Any], Any]) -> Callable[[Any, Any], tuple]:
    def coupled(u: Any, res: Any) -> tuple[Any, Any]:
        ref = u.retrain(res.state)
        return noiseless(res.state), getattr(ref, "params", ref)
    return coupled


def _head(W: Any) -> Any:
    W = jnp.asarray(W)
    return W[:, 0] if W.ndim == 2 and W.shape[1] == 1 else W


def _retrain_iters(res: Any) -> float:
    return float(res.diagnostics.get("iterations", float("nan")))


def _build_retrain(task: Task, m: int) -> Model:
    from certun.unlearners.retrain import exact_retraining

    sigma = 0.0 if task.loss == "squared" else GUO_SIGMA
    u = exact_retraining(lam=task.lam, loss=task.loss, sigma=sigma)
    return Model(u, linear_logits, _kw(task), _identity_labels, _default_coupled,
                 lambda res, n, m: 2.0 * (n - m) * _retrain_iters(res),
                 {"lam": task.lam, "loss": task.loss, "sigma": sigma})


#: Standard deviation of Guo et al.'s objective perturbation ``b`` in the bench (also the
#: randomness of ``retrain``, which retrains that perturbed objective with a fresh ``b``).
GUO_SIGMA = 0.3


def _build_guo(task: Task, m: int) -> Model:
    from certun.unlearners.guo import certified_removal

    hp: dict[str, Any] = dict(lam=task.lam, sigma=GUO_SIGMA, epsilon=1.0, delta=1e-4,
                              loss=task.loss,
              auto_retrain=True)
    u = certified_removal(**hp)

    def grads(res: Any, n: int, m: int) -> float:
        # the first request is solved with the factorisation made at training: the removed
        # rows' gradients and curvature rows only; a retrain refits on the n - m others
        return 2.0 * m if res.outcome == "unlearned" else float("nan")

    return Model(u, linear_logits, _kw(task), _identity_labels, _default_coupled, grads,
                 {k: v for k, v in hp.items()},
                 audit=(lambda F: _audit_worlds("guo", task, hp)), audit_trains=True)


def _build_sekhari(task: Task, m: int) -> Model:
    from certun.unlearners.sekhari import newton_unlearning

    hp: dict[str, Any] = dict(lam=task.lam, epsilon=1.0, delta=1e-5, loss=task.loss,
                              max_removals=max(m, 1))
    if task.loss == "squared":
        hp["label_bound"] = task.label_bound
    u = newton_unlearning(**hp)
    return Model(u, linear_logits, _kw(task), _identity_labels,
                 _noiseless_pair(lambda st: _head(st.W_bar)), lambda res, n, m: 2.0 * m, hp,
                 audit=(lambda F: _audit_worlds("sekhari", task, hp)))


def _build_d2d(task: Task, m: int) -> Model:
    from certun.unlearners.descent_to_delete import descent_to_delete

    hp: dict[str, Any] = dict(lam=task.lam, epsilon=1.0, delta=1e-5, sigma=0.05)
    u = descent_to_delete(**hp)

    def grads(res: Any, n: int, m: int) -> float:
        return float(res.diagnostics.get("I", float("nan"))) * (n - m)

    return Model(u, linear_logits, _kw(task), _identity_labels,
                 _noiseless_pair(lambda st: _head(st.W)), grads, hp,
                 audit=(lambda F: _audit_worlds("d2d", task, hp)))


def _d2d_supports(task: Task) -> str | None:
    return "Descent-to-Delete is implemented for the logistic loss" if task.loss != "logistic" \
        else None


def _build_langevin(task: Task, m: int) -> Model:
    from certun.unlearners.langevin import langevin_unlearning

    hp: dict[str, Any] = dict(lam=task.lam, sigma=0.03, epsilon=1.0, delta=1e-5, burn_in=2000,
                              loss=task.loss)
    u = langevin_unlearning(**hp)

    def grads(res: Any, n: int, m: int) -> float:
        return float(res.diagnostics.get("K", float("nan"))) * (n - m)

    def coupled(un: Any, res: Any) -> tuple[Any, Any]:
        # synchronous coupling: retraining on D \ F from the same w_0 with the same noise as
        # training (phase 0), then the request's K steps with the request's noise (phase 1)
        from certun.models import glm
        from certun.primitives.noise import release_key
        from certun.unlearners.langevin import noisy_gd

        st = res.state
        W = un.retrain(st, release_key(st.key, 0), steps=hp["burn_in"]).params.reshape(st.W.shape)
        run = noisy_gd(glm.get_loss(task.loss), task.lam, st.eta,
                       math.sqrt(2.0 * st.eta) * hp["sigma"])
        W, _, _ = run(W, st.X, st.Y, st.mask, release_key(st.key, 1),
                      int(res.diagnostics["K"]))
        return res.params, _head(W)

    return Model(u, linear_logits, _kw(task), _identity_labels, coupled, grads, hp,
                 audit=(lambda F: _audit_worlds("langevin", task, hp)), audit_trains=True)


def _build_release(task: Task, m: int) -> Model:
    from certun.release import private_release
    from certun.unlearners.retrain import exact_retraining

    hp: dict[str, Any] = dict(lam=task.lam, epsilon=1.0, delta=1e-5, loss=task.loss)
    if task.loss == "squared":
        hp["label_bound"] = task.label_bound
    u = private_release(exact_retraining(lam=task.lam, loss=task.loss), **hp)

    def grads(res: Any, n: int, m: int) -> float:
        inner = res.diagnostics.get("inner") or {}
        it = float(inner.get("iterations", 0.0)) if isinstance(inner, dict) else 0.0
        return 2.0 * (n - m) * (it + float(res.diagnostics.get("polish_steps", 0)))

    return Model(u, linear_logits, _kw(task), _identity_labels,
                 _noiseless_pair(lambda st: _head(st.noiseless)), grads,
                 {**hp, "inner": "exact_retraining"},
                 audit=(lambda F: _audit_worlds("release", task, hp)))


class _SisaUnlearner(NamedTuple):
    """SISA (:func:`certun.sisa.sisa`) in the unlearner protocol; params ``(S, d, K)``."""

    sisa: Any

    def init(self, X: Any, y: Any, key: jax.Array, **kw: Any) -> Any:
        return self.sisa.init(X, y, key, **kw)

    def params(self, state: Any) -> Any:
        return state.checkpoints[:, -1]

    def unlearn(self, state: Any, indices: Any, key: jax.Array | None = None) -> Any:
        d = self.sisa.delete(state, indices)
        idx = np.asarray(indices, np.int64)
        shard_of, pos_of = np.asarray(state.shard_of), np.asarray(state.pos_of)
        sl = np.asarray(state.slice_id)
        refits = [(s, int(sl[s, pos_of[idx][shard_of[idx] == s]].min())) for s in d.shards]
        return _PluginResult(self.params(d.state), d.state, None, "exact",
                             {"rows_refit": d.rows_refit, "slices_refit": d.slices_refit,
                              "shards_touched": len(d.shards), "refits": refits})

    def retrain(self, state: Any) -> Any:
        S = int(state.X.shape[0])
        return jnp.stack([self.sisa.fit_slices(state, s, 0)[-1] for s in range(S)])


def _sisa_logits(params: Any, X: Any) -> np.ndarray:
    A = np.einsum("nd,sdk->snk", np.asarray(X, np.float64),
                  np.asarray(params, np.float64)).mean(0)
    if A.shape[1] == 1:
        return np.concatenate([np.zeros_like(A), A], axis=-1)
    return A


@functools.lru_cache(maxsize=4)
def _sisa_fit_steps(loss: str) -> Callable[..., Any]:
    """``(params, Newton iterations)`` of one SISA slice fit (``certun.sisa``'s settings)."""
    from certun.models import glm

    lossf = glm.get_loss(loss)

    @jax.jit
    def steps(X: Any, Y: Any, lam: Any, mask: Any, W0: Any) -> Any:
        fit = glm.fit(lossf, X, Y, lam, None, mask, W0, method="newton", tol=1e-10)
        return fit.params, fit.num_steps

    return steps


def _build_sisa(task: Task, m: int) -> Model:
    from certun.sisa import sisa

    hp: dict[str, Any] = dict(shards=4, slices=2, lam=task.lam, loss=task.loss, aggregate="mean")
    u = _SisaUnlearner(sisa(**hp))

    def logits(params: Any, X: Any) -> np.ndarray:
        out = _sisa_logits(params, X)
        return out[:, 1] if task.kind == "regression" else out

    def grads(res: Any, n: int, m: int) -> float:
        # per-example gradients and Hessian rows of every Newton iteration of every slice
        # refit (the refits replayed after the timed request to read their iteration counts)
        st, fit_steps = res.state, _sisa_fit_steps(task.loss)
        total = 0.0
        for s, start in res.diagnostics["refits"]:
            ck = st.checkpoints[s]
            for r in range(start, hp["slices"]):
                W0 = jnp.zeros_like(ck[0]) if r == 0 else ck[r - 1]
                mk = st.mask[s] * (st.slice_id[s] <= r)
                steps = int(fit_steps(st.X[s], st.Y[s], jnp.asarray(hp["lam"]), mk, W0)[1])
                total += 2.0 * float(jnp.sum(mk)) * steps
        return total

    return Model(u, logits, _kw(task), _identity_labels,
                 lambda un, res: (res.params, un.retrain(res.state)),
                 grads, hp)


def _build_shortcut(kind: str) -> Callable[[Task, int], Model]:
    def build(task: Task, m: int) -> Model:
        from certun.audits import baselines

        u = baselines.SHORTCUTS[kind](lam=task.lam, loss=task.loss)

        def grads(res: Any, n: int, m: int) -> float:
            if kind == "newton_step_noiseless":
                return float(n)
            if kind == "finetune_retained":
                return 10.0 * (n - m)
            return 5.0 * m

        return Model(u, linear_logits, _kw(task), _identity_labels, _default_coupled, grads,
                     {"lam": task.lam, "loss": task.loss}, deterministic=True)
    return build


class _Identity(NamedTuple):
    """The original model, returned unchanged by every request (a sanity floor)."""

    inner: Any

    def init(self, X: Any, y: Any, key: jax.Array, **kw: Any) -> Any:
        return self.inner.init(X, y, key, **kw)

    def params(self, state: Any) -> Any:
        return self.inner.params(state)

    def unlearn(self, state: Any, indices: Any, key: jax.Array | None = None) -> Any:
        idx = np.asarray(indices, np.int64)
        return _PluginResult(self.params(state), state, None, "uncertified",
                             {"forgotten": 0, "indices": idx})

    def retrain(self, state: Any, key: jax.Array | None = None) -> Any:
        return self.inner.retrain(state)


def _build_identity(task: Task, m: int) -> Model:
    from certun.audits import baselines

    u = _Identity(baselines.newton_shortcut(lam=task.lam, loss=task.loss))

    def coupled(un: Any, res: Any) -> tuple[Any, Any]:
        # the state still has every row; the reference retrains without the forget set
        mask = res.state.mask.at[jnp.asarray(res.diagnostics["indices"])].set(0.0)
        return res.params, _head(un.retrain(res.state._replace(mask=mask)).params)

    return Model(u, linear_logits, _kw(task), _identity_labels, coupled,
                 lambda res, n, m: 0.0, {"lam": task.lam, "loss": task.loss},
                 deterministic=True)


#: Noiseless fine-tuning epochs (full batch, the training configuration) that follow the
#: certified network releases in the bench: post-processing on the retained rows.
POST_EPOCHS = 30


def _net_parts(task: Task) -> tuple[Any, Any, Callable[[np.ndarray], np.ndarray]]:
    """The network and training configuration of the network methods (one learning algorithm)."""
    from certun import nn

    K = task.num_classes or 2
    d = int(task.X_train.shape[1])
    net = nn.mlp(d, (16,), K, activation="tanh", input_scale=math.sqrt(d))
    cfg = nn.TrainConfig(epochs=30, batch_size=None, learning_rate=1e-2, weight_decay=1e-3,
                         radius=5.0, dtype="float64", log_every=30)

    def labels(y: np.ndarray) -> np.ndarray:
        return ((np.asarray(y) > 0).astype(np.int64) if task.kind == "binary"
                else np.asarray(y, np.int64))

    return net, cfg, labels


def _net_hyper(net: Any, cfg: Any) -> dict:
    return {"net": net.name, "epochs": cfg.epochs, "radius": cfg.radius,
            "learning_rate": cfg.learning_rate, "weight_decay": cfg.weight_decay}


@functools.lru_cache(maxsize=16)
def _finetune_fn(net: Any, cfg: Any, epochs: int) -> Callable[..., Any]:
    """``(params, X, y, mask) -> params``: noiseless full-batch fine-tuning on the masked rows.

    The training configuration's own steps (Adam, coupled weight decay, projection onto
    ``||w|| <= C`` after every step), started from ``P_C(params)``: a deterministic function
    of the released model and the retained rows only, i.e. post-processing of the release.
    """
    import optax

    from certun import nn

    opt = optax.adam(cfg.learning_rate)
    F = nn.objective(net, cfg.weight_decay)
    grad = jax.grad(F)

    @jax.jit
    def run(params: Any, X: Any, y: Any, mask: Any) -> Any:
        p = nn.project_ball(params, cfg.radius)

        def step(c: tuple, _: Any) -> tuple[tuple, None]:
            w, s = c
            upd, s = opt.update(grad(w, X, y, mask), s, w)
            return (nn.project_ball(optax.apply_updates(w, upd), cfg.radius), s), None

        (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=epochs)
        return p

    return run


class _ZhangPost(NamedTuple):
    """Zhang et al.'s release followed by noiseless fine-tuning on the retained rows.

    The certificate is the release's: the fine-tuning reads only the released model and the
    retained rows (which both sides of the adjacency share), so it is post-processing.
    """

    inner: Any
    finetune: Callable[..., Any]

    def init(self, X: Any, y: Any, key: jax.Array, **kw: Any) -> Any:
        return self.inner.init(X, y, key)

    def params(self, state: Any) -> Any:
        return self.inner.params(state)

    def retrain(self, state: Any, key: jax.Array | None = None) -> Any:
        return self.inner.retrain(state, key)

    def post(self, state: Any, released: Any) -> Any:
        return self.finetune(released, state.X, state.y, 1.0 - state.removed)

    def unlearn(self, state: Any, indices: Any, key: jax.Array | None = None) -> Any:
        with warnings.catch_warnings():  # "the noise dominates": the point of the fine-tuning
            warnings.simplefilter("ignore", UserWarning)
            res = self.inner.unlearn(state, indices, key)
        if res.params is None:
            return res
        out = self.post(res.state, res.params)
        diag = {**res.diagnostics, "released_noisy": res.params, "post_epochs": POST_EPOCHS}
        return res._replace(params=out, state=res.state._replace(published=out),
                            diagnostics=diag)


def _zhang_unlearner(task: Task) -> tuple[Any, Any, dict, Any, Callable]:
    from certun.unlearners.zhang import zhang_unlearning

    net, cfg, labels = _net_parts(task)
    hp: dict[str, Any] = dict(lam=0.1, epsilon=1.0, delta=1e-5, lam_min="none")
    return net, cfg, hp, zhang_unlearning(net, cfg, **hp), labels


def _build_identity_net(task: Task, m: int) -> Model:
    net, cfg, hp, inner, labels = _zhang_unlearner(task)
    u = _Identity(inner)

    def coupled(un: Any, res: Any) -> tuple[Any, Any]:
        # the original network against the network retrained without the forget set from
        # the same initialisation (same training key)
        st = res.state
        removed = st.removed.at[jnp.asarray(res.diagnostics["indices"])].set(1.0)
        return st.params_trained, un.retrain(st._replace(removed=removed)).params

    return Model(u, net.apply, {}, labels, coupled, lambda res, n, m: 0.0,
                 _net_hyper(net, cfg), deterministic=True)


def _build_zhang(task: Task, m: int) -> Model:
    net, cfg, hp, inner, labels = _zhang_unlearner(task)
    u = _ZhangPost(inner, _finetune_fn(net, cfg, POST_EPOCHS))

    def coupled(un: Any, res: Any) -> tuple[Any, Any]:
        # the certificate's coupling: the retrained network A(D_k) (same training key) with
        # the same release noise, then the same post-processing
        noise = jax.tree.map(jnp.subtract, res.diagnostics["released_noisy"],
                             res.diagnostics["params_noiseless"])
        ref = jax.tree.map(jnp.add, un.retrain(res.state).params, noise)
        return res.params, un.post(res.state, ref)

    def grads(res: Any, n: int, m: int) -> float:
        # CG Hessian-vector products on the retained rows, the forget rows' gradients,
        # then the full-batch post-processing epochs
        return (float(res.diagnostics.get("num_steps", 0)) + POST_EPOCHS) * (n - m) + m

    def oracle(Xr: np.ndarray, yr: np.ndarray, key: jax.Array) -> Any:
        # the certificate's reference: A(D minus F) plus the release's noise (sigma public:
        # calibrated to 2C'), then the same post-processing on the same (retained) rows
        from certun import nn
        from certun.accounting.gaussian import analytic_sigma
        from certun.primitives.noise import gaussian_like

        st = inner.init(Xr, yr, key)
        w = st.params_trained
        sig = analytic_sigma(hp["epsilon"], hp["delta"], 2.0 * nn.radius_bound(
            cfg.radius, nn.num_params(w), jnp.float64))
        noisy = jax.tree.map(jnp.add, w, gaussian_like(jax.random.fold_in(key, 5), w, sig,
                                                       release=1))
        return u.post(st, noisy)

    return Model(u, net.apply, {}, labels, coupled, grads,
                 {**hp, **_net_hyper(net, cfg), "post_epochs": POST_EPOCHS},
                 audit=(lambda F: _zhang_audit_worlds(task, F, hp)), oracle=oracle)


#: Koloskova et al.'s gradient-clipping noisy fine-tuning in the bench (the ball of the
#: training configuration, ``C_0 = C``; ``T = C_0 / (eta C_1)`` noisy steps).
KOLOSKOVA: dict[str, Any] = dict(variant="gradient_clipping", epsilon=1.0, delta=1e-5,
                                 init_clip=5.0, lr=0.5, grad_clip=1.0, batch_size=64,
                                 post_clip=5.0)


class _KoloskovaState(NamedTuple):
    inner: Any          # certun.unlearners.koloskova.NoisyFinetuneState
    train_key: jax.Array


class _Koloskova(NamedTuple):
    """Train with the network configuration, then unlearn by noisy fine-tuning (Koloskova)."""

    net: Any
    cfg: Any
    nft: Any            # the noisy_finetuning unlearner
    finetune: Callable[..., Any]

    def init(self, X: Any, y: Any, key: jax.Array, **kw: Any) -> _KoloskovaState:
        from certun import nn

        tk = jax.random.fold_in(key, 0)
        tr = nn.train(self.net, X, y, tk, self.cfg)
        return _KoloskovaState(self.nft.init(X, y, params=tr.params), tk)

    def params(self, state: _KoloskovaState) -> Any:
        return state.inner.params

    def _release(self, inner: Any, indices: Any, key: jax.Array) -> Any:
        with warnings.catch_warnings():  # "the noise dominates" (the post-processing's job)
            warnings.simplefilter("ignore", UserWarning)
            return self.nft.unlearn(inner, indices, key)

    def unlearn(self, state: _KoloskovaState, indices: Any, key: jax.Array | None = None) -> Any:
        k = jax.random.fold_in(state.train_key, 7) if key is None else key
        res = self._release(state.inner, indices, k)
        st = res.state
        out = self.finetune(res.params, st.X, st.y, st.retained.astype(st.X.dtype))
        return res._replace(params=out, state=_KoloskovaState(st._replace(params=out),
                                                              state.train_key),
                            diagnostics={**res.diagnostics, "key": k,
                                         "indices": np.asarray(indices, np.int64)})

    def reference(self, state: _KoloskovaState, res: Any) -> Any:
        """The same release and post-processing from the network retrained without the rows."""
        from certun import nn

        st = state.inner
        keep = np.flatnonzero(np.asarray(st.retained))
        ret = nn.train(self.net, np.asarray(st.X)[keep], np.asarray(st.y)[keep],
                       state.train_key, self.cfg).params
        start = st._replace(params=ret, retained=jnp.ones_like(st.retained), removed=0,
                            releases=0)
        r = self._release(start, res.diagnostics["indices"], res.diagnostics["key"])
        return self.finetune(r.params, st.X, st.y, st.retained.astype(st.X.dtype))


def _build_koloskova(task: Task, m: int) -> Model:
    from certun.unlearners.koloskova import noisy_finetuning

    net, cfg, labels = _net_parts(task)
    nft = noisy_finetuning(net.apply, **KOLOSKOVA)
    u = _Koloskova(net, cfg, nft, _finetune_fn(net, cfg, POST_EPOCHS))

    def coupled(un: Any, res: Any) -> tuple[Any, Any]:
        # res.state.inner still knows the rows; rebuild the pre-request state for the reference
        st = res.state
        return res.params, un.reference(st, res)

    def grads(res: Any, n: int, m: int) -> float:
        return float(res.diagnostics["steps"]) * KOLOSKOVA["batch_size"] + POST_EPOCHS * (n - m)

    def oracle(Xr: np.ndarray, yr: np.ndarray, key: jax.Array) -> Any:
        # the certificate's reference: the same noisy fine-tuning (and post-processing) run
        # from the network trained without the rows, on the same retained rows
        st = u.init(Xr, yr, key).inner
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            r = nft.retrain(st, jax.random.fold_in(key, 7), start=st.params).params
        return u.finetune(r, st.X, st.y, st.retained.astype(st.X.dtype))

    return Model(u, net.apply, {}, labels, coupled, grads,
                 {**KOLOSKOVA, **_net_hyper(net, cfg), "post_epochs": POST_EPOCHS},
                 audit=(lambda F: _koloskova_audit_worlds(task, F, u)), audit_trains=True,
                 oracle=oracle)


def _audit_worlds(which: str, task: Task, hp: dict) -> Any:
    """The adversarial epsilon audit's worlds of a mechanism with the bench's settings."""
    from certun.audits import adversary

    X, y = task.X_train, task.y_train
    if which == "guo":
        return adversary.guo_worlds(X, y, lam=hp["lam"], sigma=hp["sigma"],
                                    epsilon=hp["epsilon"], delta=hp["delta"])
    if which == "sekhari":
        return adversary.sekhari_worlds(X, y, lam=hp["lam"], epsilon=hp["epsilon"],
                                        delta=hp["delta"], max_removals=hp["max_removals"])
    if which == "d2d":
        return adversary.descent_to_delete_worlds(X, y, lam=hp["lam"], epsilon=hp["epsilon"],
                                                  delta=hp["delta"], steps=None,
                                                  sigma=hp["sigma"])
    if which == "langevin":
        return adversary.langevin_worlds(X, y, lam=hp["lam"], sigma=hp["sigma"],
                                         epsilon=hp["epsilon"], delta=hp["delta"],
                                         burn_in=hp["burn_in"])
    return adversary.private_release_worlds(X, y, lam=hp["lam"], epsilon=hp["epsilon"],
                                            delta=hp["delta"])


def _zhang_audit_worlds(task: Task, F: np.ndarray, hp: dict) -> Any:
    """Zhang's release (before the post-processing, which cannot raise epsilon) on ``F``.

    :func:`certun.audits.adversary.zhang_worlds` on the bench's own forget set: the noiseless
    unlearned network and the retrained one, each plus the certificate's Gaussian noise.
    """
    from certun.audits import adversary

    net, cfg, labels = _net_parts(task)
    kw = {k: v for k, v in hp.items() if k not in ("epsilon", "delta")}
    return adversary.zhang_worlds(task.X_train, labels(task.y_train), net, cfg, F,
                                  epsilon=hp["epsilon"], delta=hp["delta"],
                                  key=jax.random.key(0), **kw)


@functools.lru_cache(maxsize=8)
def _nft_sampler(apply: Any, steps: int, batch: int) -> Callable[[jax.Array, dict], jax.Array]:
    from jax.flatten_util import ravel_pytree

    from certun.unlearners.koloskova import _run, softmax_cross_entropy

    def sample(k: jax.Array, a: dict) -> jax.Array:
        out = _run(a["start"], a["X"], a["y"], a["retained"], k, a["hp"], None, apply=apply,
                   loss=softmax_cross_entropy, variant="gradient_clipping", steps=steps,
                   batch_size=batch, clip_grad=True, post_steps=0, post_opt=None,
                   post_clip=True)
        return ravel_pytree(out)[0]

    return sample


def _koloskova_audit_worlds(task: Task, F: np.ndarray, u: Any) -> Any:
    r"""Noisy fine-tuning's release from the trained network vs from the retrained one.

    Both worlds run certun's own jitted noisy phase (:mod:`certun.unlearners.koloskova`,
    the calibrated ``sigma`` and ``T``) on the retained rows, world "in" from the network
    trained on ``D`` and world "out" from the network retrained on ``D \\ F`` (seed 0); the
    noiseless fine-tuning that follows in the bench is post-processing and is not audited.
    """
    from certun import nn
    from certun.audits.adversary import Worlds

    X, y = task.X_train, _net_parts(task)[2](task.y_train)
    st = u.init(X, y, jax.random.key(0))
    res = u._release(st.inner, F, jax.random.key(1))
    cert = res.certificate
    pi = cert.public_inputs
    keep = np.flatnonzero(np.asarray(res.state.retained))
    ret = nn.train(u.net, X[keep], y[keep], st.train_key, u.cfg).params
    hpv = {"post_clip": float(pi["post_clip"]), "init_clip": float(pi["init_clip"]),
           "init_sigma": float(pi["init_sigma"]), "grad_clip": float(pi["grad_clip"]),
           "model_clip": 1.0, "sigma": float(pi["sigma"]), "lr": float(pi["lr"]),
           "weight_decay": float(pi["weight_decay"])}
    common = {"X": res.state.X, "y": res.state.y, "retained": res.state.retained,
              "hp": {k: jnp.asarray(v, jnp.float64) for k, v in hpv.items()}}
    smp = _nft_sampler(u.net.apply, int(pi["steps"]), int(pi["batch_size"]))
    return Worlds(cert.mechanism, cert.adjacency,
                  {"n": int(X.shape[0]), "forget": int(np.size(F)), "steps": int(pi["steps"]),
                   "starts": "trained on D / retrained on D minus F (seed 0)"},
                  float(cert.epsilon), float(cert.delta), smp, smp,
                  dict(common, start=st.inner.params), dict(common, start=ret),
                  runs_are_training=True, details={"sigma": float(pi["sigma"])})


def _binary_only(task: Task) -> str | None:
    return None if task.kind != "regression" else "regression task: a classifier network"


_register_builtin("retrain", "exact", _build_retrain,
                  "exact retraining on the retained rows (the reference)",
                  "the definition of unlearning (Cao & Yang 2015; Guo et al. 2020)")
_register_builtin("sisa", "exact", _build_sisa,
                  "SISA: 4 shards x 2 slices, the affected shard refit from its checkpoint",
                  "Bourtoule et al., IEEE S&P 2021")
_register_builtin("guo", "certified", _build_guo,
                  "certified removal: objective perturbation + Newton step (auto-retrain)",
                  "Guo et al., ICML 2020")
_register_builtin("sekhari", "certified", _build_sekhari,
                  "stored-Hessian Newton step + output noise", "Sekhari et al., NeurIPS 2021")
_register_builtin("d2d", "certified", _build_d2d,
                  "Descent-to-Delete: projected GD + output noise", "Neel et al., ALT 2021",
                  _d2d_supports)
_register_builtin("langevin", "certified", _build_langevin,
                  "Langevin unlearning: noisy GD for learning and unlearning",
                  "Chien et al., NeurIPS 2024", _d2d_supports)
_register_builtin("zhang", "certified", _build_zhang,
                  "certified network unlearning (MLP 16 tanh): Newton step + noise at 2C, then "
                  f"{POST_EPOCHS} noiseless epochs on the retained rows (post-processing: the "
                  "certificate is unchanged)", "Zhang et al., ICML 2024", _binary_only)
_register_builtin("koloskova", "certified", _build_koloskova,
                  "noisy fine-tuning with gradient clipping (MLP 16 tanh) on the retained rows, "
                  f"then {POST_EPOCHS} noiseless epochs (post-processing)",
                  "Koloskova et al., ICML 2025", _binary_only)
_register_builtin("release", "certified", _build_release,
                  "private release: fresh calibrated noise on every published model",
                  "differentially private release (certun proofs/private_release.md)")
_register_builtin("newton_noiseless", "uncertified", _build_shortcut("newton_step_noiseless"),
                  "one Newton step, no noise (NOT CERTIFIED)", "influence functions")
_register_builtin("finetune", "uncertified", _build_shortcut("finetune_retained"),
                  "10 GD steps on the retained rows (NOT CERTIFIED)", "Jia et al., NeurIPS 2023")
_register_builtin("gradient_ascent", "uncertified", _build_shortcut("gradient_ascent_forget"),
                  "5 gradient-ascent steps on the forget rows (NOT CERTIFIED)",
                  "Jia et al., NeurIPS 2023")
_register_builtin("identity", "baseline", _build_identity,
                  "returns the original model unchanged (sanity floor)", "-")
_register_builtin("identity_net", "baseline", _build_identity_net,
                  "returns zhang's original network unchanged (the network sanity floor)", "-",
                  _binary_only)

#: The built-in method names (in leaderboard order).
BUILTIN = tuple(_REGISTRY)
#: The methods ``certun bench`` runs by default (all built-ins).
DEFAULT_METHODS = BUILTIN
