"""Host-side orchestration of :func:`certun.unlearners.guo.certified_removal`.

A request: validate its indices on the host (``O(m)``; presence is checked on the device by
the step), read the state's scalars (one small transfer), dispatch one jitted step
(:mod:`certun.unlearners._guo_steps`), charge its bounds (:mod:`certun.bounds.guo_accountant`,
float64, ``O(K)``) and write the new scalars back in one dispatch. Folds, refreshes, remeasures
and retrains are decided here. Nothing is kept between requests: the caller holds the state.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from certun import _validate
from certun.bounds import guo_accountant as ga
from certun.models import glm
from certun.primitives import curvature_cache as cc
from certun.primitives import row_blocks
from certun.primitives.noise import objective_perturbation
from certun.primitives.spectral import UNIT_ROUNDOFF
from certun.results import RESULTS
from certun.results import message as result_message
from certun.unlearners import _guo_certs as certs
from certun.unlearners import _guo_request as _request
from certun.unlearners import _guo_steps as gs
from certun.unlearners.base import UnlearnResult


class Ctx(NamedTuple):
    """Everything fixed per unlearner (public hyperparameters and its jitted steps)."""

    cfg: gs.StepConfig
    acc: ga.GuoAccountant
    steps: gs.Steps
    sigma: float
    eps: float
    dlt: float
    c: float
    lossf: glm.ScalarLoss
    update: str
    factor: str
    cached: bool
    max_rank: int
    auto_retrain: bool
    diagnose: bool
    refactor_every: int
    train_tol: float
    train_method: str
    measure_every: bool | None = None  # None: ga.measures_every_request at each training


def scalar(x: Any) -> jax.Array:
    """A float64 state scalar, never weakly typed (same jit signature after a reload)."""
    return jnp.asarray(float(x), jnp.float64)


def empty_buffers(ctx: Ctx, d: int, K: int, dtype) -> dict:
    """The empty buffer fields of a cached state."""
    b = cc.empty_buffers(d, K, dtype, ctx.max_rank, ctx.cfg.method)
    out = dict(rows_buf=b["rows"], h_buf=b["h"], proj_buf=b["proj"], buf_count=b["filled"],
               stale_sum=scalar(0.0), drift_sum=scalar(0.0))
    if b["cap"] is not None:
        out["cap_buf"] = b["cap"]
    return out


def place(state: Any) -> Any:
    """Lay the state out for data parallelism when its rows are sharded over a mesh.

    The per-row fields share the rows' sharding and everything else is replicated, so
    that every jitted step runs data-parallel (:mod:`certun.sharding`).
    """
    sh = getattr(state.X, "sharding", None)
    if not isinstance(sh, jax.sharding.NamedSharding) or len(sh.device_set) == 1:
        return state
    from certun.sharding import replicate, shard_rows

    axis, mesh = sh.spec[0], cast(Any, sh.mesh)
    upd = {}
    for name, val in state._asdict().items():
        if val is None or name == "X":
            continue
        upd[name] = (shard_rows(val, mesh, axis) if name in ("Y", "mask", "factor_mask")
                     else replicate(val, mesh))
    return state._replace(**upd)


def measured_residual(ctx: Ctx, W, X, Y, b, mask) -> float:
    """``||grad L_b(W; rows of mask)||`` (sum scale) plus its rounding allowance."""
    gn, mag, margin, n = (float(v) for v in jax.device_get(ctx.steps.grad_sum(W, X, Y, b, mask)))
    return ga.measured_residual(gn, mag, margin, n, W.shape[0])


def train_state(ctx: Ctx, state_cls, X, Y, key, retrains, mask, n_removed, requests,
                reuse=None, on_device: dict | None = None):
    """Draw ``b`` (release ``retrains``), train, measure and build the caches.

    ``on_device``: ``X`` is a device array validated by :func:`validate_device_rows` (its
    statistics); the Gram matrix is then accumulated there, never copied to the host.
    """
    from certun.primitives.spectral import spectral_bound_from_gram, spectral_norm_upper_bound

    d, K = X.shape[1], Y.shape[1]
    b = objective_perturbation(key, (d, K), ctx.sigma, X.dtype, release=int(retrains))
    fitres = ctx.steps.train(X, Y, b, mask, jnp.zeros((d, K), X.dtype))
    if int(fitres.result) != RESULTS.successful:
        raise RuntimeError(
            f"training did not reach train_tol={ctx.train_tol} (mean-scale gradient norm "
            f"{float(fitres.grad_norm):.3e} after {int(fitres.num_steps)} steps, "
            f"{result_message(int(fitres.result))}); raise lam or loosen train_tol"
            + ("" if ctx.train_method == "newton" else ", or use train_method='newton'")
        )
    W = fitres.params
    r0 = measured_residual(ctx, W, X, Y, b, mask)
    fac = ctx.steps.factorise(W, X, Y, mask)
    if reuse is not None:
        # a retrain: the Gram matrix of the remaining rows, ||X||_F^2 and the bound on
        # ||X||_2 (valid for every subset of rows) carry over from the state
        gram, gram_err = reuse["gram"], float(reuse["gram_err"])
        fro2, xs_value = float(reuse["fro2"]), reuse["x_spectral"]
    elif on_device:
        # X stays on the device: its Gram matrix (all rows present at init) and ||X||_F^2
        # accumulated over row blocks, the spectral bound from them (no second Gram)
        gram = row_blocks.weighted_gram(X)[0]
        fro2 = float(on_device["fro2"])
        xs_value = spectral_bound_from_gram(jax.device_get(gram), fro2, *X.shape).value
        gram_err = ((X.shape[0] + 2) * UNIT_ROUNDOFF / (1 - (X.shape[0] + 2) * UNIT_ROUNDOFF)
                    * fro2)
    else:
        Xm = np.asarray(X) * np.asarray(mask)[:, None]
        gram = Xm.T @ Xm
        fro2 = float(np.sum(np.asarray(X) ** 2))
        xs_value = spectral_norm_upper_bound(np.asarray(X)).value
        gram_err = ((X.shape[0] + 2) * UNIT_ROUNDOFF / (1 - (X.shape[0] + 2) * UNIT_ROUNDOFF)
                    * fro2)
    f = jnp.asarray
    st = state_cls(
        X=X, Y=Y, mask=mask, W=W, b=b, W_factor=W, factor_mask=mask, **fac,
        gram=f(gram, X.dtype), gram_err=scalar(gram_err),
        x_spectral=scalar(xs_value), fro2=scalar(fro2), residual_bound=scalar(r0),
        train_grad_norm=scalar(r0),
        n_removed=f(n_removed, jnp.int32), requests=f(requests, jnp.int32),
        retrains=f(retrains, jnp.int32), steps_since_factor=f(0, jnp.int32), key=key,
    )
    if ctx.cached:
        st = st._replace(**empty_buffers(ctx, d, K, X.dtype))
    if ctx.acc.remeasure and X.dtype == jnp.float64:  # none measured yet (§5b)
        st = st._replace(grad_known=jnp.zeros((d, K), X.dtype),
                         grad_known_err=scalar(np.inf))
        n_rows = X.shape[0] - int(n_removed)
        every = (ga.measures_every_request(n_rows, d) if ctx.measure_every is None
                 else ctx.measure_every)
        if ctx.cached and ctx.lossf.gamma > 0 and every:
            st = st._replace(measure_every=jnp.asarray(True))
    return place(st)


def validate_device_rows(X: jax.Array) -> dict:
    """Validate a device-resident ``X`` (float64, finite, unit rows) without a host copy.

    One pass over row blocks (:func:`certun.primitives.row_blocks.row_stats`); the error
    names the first offending row (found only on the error path).
    """
    if X.ndim != 2 or X.dtype != jnp.float64:
        raise _validate.ValidationError(
            f"X: a device array must be 2-D float64 (got {X.dtype} with shape {X.shape}); "
            "certun does not convert it (a copy of X)")
    fro2, max_norm, bad = (float(v) for v in jax.device_get(row_blocks.row_stats(X)))
    if bad:
        raise _validate.ValidationError(f"X holds {int(bad)} non-finite value(s)")
    if max_norm > 1.0:
        i = int(jnp.argmax(jnp.linalg.norm(X, axis=1)))
        raise _validate.ValidationError(
            f"X row {i} has L2 norm {max_norm:.6g} > 1; the certified bounds assume "
            "||x_i|| <= 1: apply certun.data.normalize_rows first (a per-row map, no "
            "dataset-wide statistic)")
    return {"fro2": fro2, "max_row_norm": max_norm}


def _gram_err_after(state_gram_err: float, k: int, fro2: float) -> float:
    return state_gram_err + (k + 2) * UNIT_ROUNDOFF * (k + fro2)


def refresh(ctx: Ctx, state):
    """Re-factorise the curvature at the current model on the remaining rows."""
    new = state._replace(W_factor=state.W, factor_mask=state.mask,
                         steps_since_factor=jnp.asarray(0, jnp.int32),
                         **ctx.steps.factorise(state.W, state.X, state.Y, state.mask))
    if state.rows_buf is not None:
        k = int(state.buf_count)
        gram_err = _gram_err_after(float(state.gram_err), k, float(state.fro2))
        d, K = state.W.shape
        new = new._replace(gram=ctx.steps.downdate_gram(state.gram, state.rows_buf),
                           gram_err=scalar(gram_err), **empty_buffers(ctx, d, K, state.X.dtype))
    return place(new)


def fold(ctx: Ctx, state):
    """Fold the buffered rows into the factorisation, same point (``O(d^2 k + d^3)``)."""
    fac, gram = ctx.steps.fold[_cached_path(state)](state)
    gram_err = _gram_err_after(float(state.gram_err), int(state.buf_count), float(state.fro2))
    d, K = state.W.shape
    bufs = empty_buffers(ctx, d, K, state.X.dtype)
    bufs["stale_sum"], bufs["drift_sum"] = state.stale_sum, state.drift_sum
    return place(state._replace(gram=gram, gram_err=scalar(gram_err),
                                factor_mask=state.mask, **fac, **bufs))


def check_kind(ctx: Ctx, state) -> None:
    """Refuse a state made by an unlearner of another configuration."""
    made = ("none" if state.proj_buf is None
            else "cholesky" if state.inv is not None else "eigh")
    want = ctx.factor if ctx.cached else "none"
    if made != want:
        raise _validate.ValidationError(
            f"state: made by an unlearner with update={'cached' if made != 'none' else 'pcg'!r}"
            + (f", factor={made!r}" if made != "none" else "")
            + f"; this one has update={ctx.update!r}"
            + (f", factor={ctx.factor!r}" if ctx.cached else "")
            + ": use the unlearner (or configuration) that made the state")
    if ctx.cached and state.rows_buf.shape[0] != ctx.max_rank:
        raise _validate.ValidationError(
            f"state: its buffer holds {state.rows_buf.shape[0]} rows but this unlearner has "
            f"max_rank={ctx.max_rank}: use the unlearner (or configuration) that made the state")
    measured = _cached_path(state) == "measured_factor"
    if ctx.measure_every is not None and measured != (ctx.measure_every and ctx.acc.remeasure):
        raise _validate.ValidationError(
            f"state: made by an unlearner that {'measures' if measured else 'bounds'} every "
            f"request's residual; this one has measure_every={ctx.measure_every}: use the "
            "unlearner (or configuration) that made the state, or measure_every=None")


_packed_scalars = jax.jit(_request.pack_scalars)


def host_scalars(ctx: Ctx, state, packed: np.ndarray | None = None) -> dict:
    """Every host-side scalar of the state in one transfer (``O(d K)``, never ``O(n)``).

    ``packed``: the state's scalars already on the host (a request's record carries them).
    """
    keys = _request.scalar_keys(state)
    # one float64 vector, one transfer (a scalar each would cost a round trip each)
    v = np.asarray(jax.device_get(_packed_scalars(keys)) if packed is None else packed)
    h: dict = {}
    for name in sorted(keys):  # the order jax flattens a dict in
        size = state.W.shape[1] if name == "b" else 1
        h[name], v = (v[:size] if name == "b" else v[0]), v[size:]
    for name in ("n_removed", "since", "count"):
        if name in h:
            h[name] = int(h[name])
    h["b_norms"] = np.asarray(h.pop("b"), np.float64)
    if np.isfinite(h.get("gk_err", np.inf)):  # the next step cancels a measured gradient
        h["R_carry"] = float(h["gk_err"])
    return h


def _not_present(state, idx_np: np.ndarray, name: str = "indices") -> _validate.ValidationError:
    gone = idx_np[np.asarray(jax.device_get(state.mask[idx_np])) == 0]  # O(m): the error path
    return _validate.ValidationError(
        f"{name} holds index {int(gone[0])}, which an earlier request already removed")


def _maintain(ctx: Ctx, state, h: dict, m: int):
    """Fold a full buffer before the request (or all of it before an oversized one)."""
    refreshed = None
    oversized = ctx.cached and m > ctx.max_rank
    t_m = time.perf_counter()
    if ctx.cached and not oversized and int(h["count"]) + m > ctx.max_rank:
        # the buffer of removed rows is full: fold it into the factorisation first
        state = jax.block_until_ready(fold(ctx, state))
        h = dict(h, count=0)
        refreshed = "capacity"
    if oversized:
        # the buffer is folded and the curvature of the remaining rows refactorised
        state = fold(ctx, state) if int(h["count"]) else state
        h = dict(h, count=0)
        refreshed = "oversized"
    return state, h, refreshed, oversized, (time.perf_counter() - t_m if refreshed else 0.0)


def path_of(ctx: Ctx, state, h: dict, m: int) -> tuple[str, int | None]:
    """The step a request takes from ``state`` (host scalars ``h``), and its buffer width."""
    if ctx.cached:
        if m > ctx.max_rank:
            return "fresh_factor", None
        return _cached_path(state), cc.bucket(int(h["count"]) + m, ctx.max_rank)
    return ("eigh_woodbury" if int(h["since"]) == 0 else "pcg"), None


def _counts(ctx: Ctx, state) -> dict:
    """The scalars a request needs before its dispatch, read without a dispatch of their own."""
    out = dict(n_removed=int(state.n_removed))
    if ctx.cached:  # the buffer width
        out["count"] = int(state.buf_count)
    else:  # exact step or PCG
        out["since"] = int(state.steps_since_factor)
    return out


def _run(ctx: Ctx, state, idx_np: np.ndarray, path: str, kb: int | None):
    idx = idx_np.astype(np.int32)  # host array: the jitted call transfers it
    fn = ctx.steps.request[path]
    changes, vec, pub = fn(state, idx, kb) if kb is not None else fn(state, idx)
    # X, Y and every unchanged field: the same objects
    return state._replace(**changes), vec, pub


def _retrain(ctx: Ctx, state, idx_np: np.ndarray, rec: dict, diagnostics: dict
             ) -> UnlearnResult:
    h = dict(jax.device_get(dict(fro2=state.fro2, xs=state.x_spectral, gram_err=state.gram_err,
                                 count=state.buf_count if ctx.cached else 0)))
    cached_lazy = ctx.cached and idx_np.size <= ctx.max_rank
    mask_new, gram = ctx.steps.retrain_inputs(state, idx_np.astype(np.int32), cached_lazy)
    k = int(h["count"]) + idx_np.size if cached_lazy else 0
    g_err = (_gram_err_after(float(h["gram_err"]), k, float(h["fro2"])) if cached_lazy
             else rec["gram_err"])
    rstate = train_state(ctx, type(state), state.X, state.Y, state.key, int(state.retrains) + 1,
                         mask_new, int(state.n_removed) + idx_np.size, int(state.requests) + 1,
                         reuse=dict(gram=gram, gram_err=g_err, fro2=h["fro2"],
                                    x_spectral=h["xs"]))
    used = float(rstate.residual_bound)
    cert = certs.cert(ctx, rstate, used, certs.assumptions(ctx, rstate, True, True,
                                                           RESULTS.successful),
                      {"residual_bound_after": used, "retrained": True},
                      {"path": "retrain"}, {"train_grad_norm": used})
    diagnostics["retrained"] = True
    return UnlearnResult(certs.params(rstate), rstate, cert, "retrained", diagnostics)


def _diagnostics(ctx: Ctx, rec: dict, path: str, h: dict, m: int, n_prev: int, d: int,
                 t_step: float, refreshed: str | None) -> tuple[dict, dict, dict]:
    bounds = rec["bounds"]
    if path == "measured_factor":  # no bound charged: the residual is measured (§5b)
        keep = ("residual_bound_before", "residual_carried", "x_spectral_bound", "gamma")
        bounds = {k: bounds[k] for k in keep if k in bounds}
        bounds.update(bound_charged="measured", residual_bound_after=rec["R_final"],
                      step_solver_residual=None)
        rec = dict(rec, R_new=rec["R_final"])
    if rec["remeasured"]:
        bounds["residual_remeasured"] = rec["R_meas"]
        if path != "measured_factor":
            bounds["residual_bound_accumulated"] = rec["R_new"]
        if rec["R_meas"] < rec["R_new"]:
            bounds["residual_bound_after"] = rec["R_meas"]
    solver_res = bounds["step_solver_residual"]
    solver = {"path": path, "iterations": rec["steps"], "residual": solver_res,
              "result": RESULTS(rec["code"]).name}
    if ctx.cached:
        solver["buffer_rows"] = int(h["count"]) + m
    diagnostics = dict(bounds, seconds_step=t_step, m=m, n_before=n_prev, n_after=n_prev - m,
                       delta_norms=(rec["delta_norms"] * (1 + 4 * d * UNIT_ROUNDOFF)).tolist(),
                       solver=solver)
    if rec["remeasured"]:
        diagnostics["seconds_remeasure"] = t_step  # measured inside the step's dispatch
    if ctx.cached:
        diagnostics["refreshed"] = refreshed  # pyright: ignore[reportArgumentType]
    return bounds, solver, diagnostics


def serve(ctx: Ctx, state, idx_np: np.ndarray, t0: float, allow_refresh: bool = True,
          refreshed: str | None = None, t_maint: float = 0.0) -> UnlearnResult:
    """Serve one validated request: host scalars, maintenance, one dispatch, certificate."""
    n_total = int(state.X.shape[0])
    m = int(idx_np.size)
    pre = _counts(ctx, state)
    n_prev = n_total - pre["n_removed"]
    if m >= n_prev:
        raise _validate.ValidationError(
            f"indices would remove all {n_prev} remaining rows; keep at least one")
    state, pre, why, oversized, dt = _maintain(ctx, state, pre, m)
    refreshed, t_maint = why or refreshed, t_maint + dt
    path, kb = path_of(ctx, state, pre, m)
    nxt, vec, pub = _run(ctx, state, idx_np, path, kb)
    v = np.asarray(jax.device_get(vec))  # the request's one transfer
    K = state.W.shape[1]
    rec = _request.unpack_record(ctx.acc, v, K)
    # the scalars of the state the request ran on (after any fold), carried by its record
    h = host_scalars(ctx, state, v[_request.record_size(K):])
    if not rec["present"]:
        raise _not_present(state, idx_np)
    t_step = time.perf_counter() - t0
    d = state.W.shape[0]
    x64 = state.X.dtype == jnp.float64
    bounds, solver, diagnostics = _diagnostics(ctx, rec, path, h, m, n_prev, d, t_step,
                                               refreshed)
    solver_ok = rec["code"] == RESULTS.successful and (
        path == "measured_factor" or bool(np.isfinite(solver["residual"])))
    private = {"b_norm": float(np.linalg.norm(h["b_norms"])), "train_grad_norm": float(h["tg"])}
    if ctx.diagnose:
        tr = float(ctx.steps.true_residual(nxt.W, state.X, state.Y, state.b, nxt.mask)
                   if rec["accept"] else _true_residual_refused(ctx, state, idx_np, path, kb))
        private["true_residual"] = diagnostics["true_residual"] = tr
    R_new = rec["R_final"]
    if not rec["accept"]:  # the state is unchanged: the caller keeps the very object
        # a step at a fresh factorisation has no staleness and an exact solve: try it before
        # refusing or retraining (unless the policy's exchange rate says it is not worth it)
        worth = ga.refresh_worth(ctx.acc, float(h["R"]), ctx.auto_retrain, solver_ok)
        if ctx.cached and allow_refresh and int(h["since"]) > 0 and not oversized and x64 \
                and worth:
            t_m = time.perf_counter()
            fresh = jax.block_until_ready(refresh(ctx, state))
            res = serve(ctx, fresh, idx_np, t0, allow_refresh=False,
                        refreshed="budget" if solver_ok else "solver",
                        t_maint=t_maint + time.perf_counter() - t_m)
            return res if res.outcome != "retrain_required" else res._replace(state=state)
        if solver_ok and x64 and ctx.auto_retrain:
            return _retrain(ctx, state, idx_np, rec, diagnostics)
        fail = None
        if R_new > ctx.acc.budget and solver_ok:
            # public reason: the residual bound is data-dependent (private view: bounds)
            fail = ("retrain required: this request would raise the residual bound above "
                    "the budget")
        cert = certs.cert(ctx, state, R_new, certs.assumptions(ctx, state, x64, solver_ok,
                                                             rec["code"], h["xs"], h["tg"],
                                                             path == "measured_factor"),
                          bounds, solver, private, extra_failure=fail)
        return UnlearnResult(None, state, cert, "retrain_required", diagnostics)
    return _served(ctx, nxt, rec, h, m, bounds, solver, private, diagnostics, t0, t_maint, pub)


def _true_residual_refused(ctx: Ctx, state, idx_np, path, kb) -> float:
    """``diagnose``: the true residual of the step a refused request would have taken."""
    ungated = _request.request_ungated(ctx, state, idx_np.astype(np.int32), path, kb)
    return float(ctx.steps.true_residual(ungated.W, state.X, state.Y, state.b, ungated.mask))


def _served(ctx: Ctx, new_state, rec: dict, h: dict, m: int, bounds: dict, solver: dict,
            private: dict, diagnostics: dict, t0: float, t_maint: float, pub) -> UnlearnResult:
    after = rec["after"]
    if ctx.cached and not ctx.acc.remeasure and after != "refactor_every":
        diagnostics["refresh_policy_estimate"] = rec["s_hat"]
    if after is not None:
        t_r = time.perf_counter()
        new_state = jax.block_until_ready(refresh(ctx, new_state))
        diagnostics["seconds_refresh"] = time.perf_counter() - t_r
        t_maint += diagnostics["seconds_refresh"]
    if ctx.cached:
        diagnostics["refreshed_after"] = after
        diagnostics["seconds_maintenance"] = t_maint  # folds and refreshes of this request
    cert = certs.cert(ctx, new_state, rec["R_final"],
                      certs.assumptions(ctx, new_state, True, True, rec["code"], h["xs"],
                                        h["tg"], solver["path"] == "measured_factor"),
                      bounds, solver, private, removed=int(h["n_removed"]) + m)
    diagnostics["seconds_total"] = time.perf_counter() - t0
    # the published model, from the request's dispatch (a refresh never moves W)
    return UnlearnResult(pub, new_state, cert, "unlearned", diagnostics)


def _cached_path(state) -> str:
    """The cached path of a state: ``"measured_factor"`` when it measures every request."""
    return "measured_factor" if state.measure_every is not None else "cached_factor"


def _widths(max_rank: int) -> list[int]:
    """Every static buffer width of a request (``curvature_cache.bucket``)."""
    out = [cc.bucket(1, max_rank)]
    while out[-1] < max_rank:
        out.append(cc.bucket(2 * out[-1], max_rank))
    return out


def warmup(ctx: Ctx, state) -> float:
    """Compile every step single-row requests can take (see :meth:`GuoUnlearner.warmup`)."""
    t0 = time.perf_counter()
    present = np.flatnonzero(np.asarray(state.mask) != 0)
    if present.size < 2:
        return 0.0
    idx = present[:1].astype(np.int32)  # as serve passes it (a host array)
    s = ctx.steps
    host_scalars(ctx, state)  # its packing is jitted per state layout
    if ctx.cached:
        path = _cached_path(state)
        for kb in _widths(ctx.max_rank):
            jax.block_until_ready(s.request[path](state, idx, kb))
        jax.block_until_ready(s.fold[path](state))
        jax.block_until_ready(s.downdate_gram(state.gram, state.rows_buf))
        # unlearn_sequence's scans, at every width (padding only: nothing is served)
        from certun.unlearners._guo_sequence import CHUNK

        batch = np.tile(idx, (CHUNK, 1))
        for kb in _widths(ctx.max_rank):
            jax.block_until_ready(s.sequence[path](state, batch, np.zeros(CHUNK, bool), kb))
    else:
        jax.block_until_ready(s.request["eigh_woodbury"](state, idx))
        jax.block_until_ready(s.request["pcg"](state, idx))
    return time.perf_counter() - t0


def what_if(ctx: Ctx, state, candidates: Any, what_if_cls):
    """The budget each candidate single-row removal would consume (one vmapped call).

    The charges are the bounded step's (``proofs/guo2020_residual_bounds.md`` §5), also on a
    state that measures every request (``measure_every``): there they are an upper estimate
    of what serving the candidate certifies, its measured residual (§5b), which only the
    request's own gradient gives.
    """
    check_kind(ctx, state)
    n_total = int(state.X.shape[0])
    cand = np.asarray(candidates)
    _validate.forget_indices(cand, n_total, name="candidates",
                             already_removed=np.asarray(state.mask) == 0)
    cand = cand.astype(np.int64).reshape(-1)
    h = host_scalars(ctx, state)
    n_prev = n_total - int(h["n_removed"])
    if n_prev < 2:
        raise _validate.ValidationError("candidates: only one row remains")
    if ctx.cached:
        if int(h["count"]) + 1 > ctx.max_rank:
            state = fold(ctx, state)
            h = host_scalars(ctx, state)
        fn = gs.what_if_cached(ctx.cfg, ctx.steps, cc.bucket(int(h["count"]) + 1, ctx.max_rank))
    else:
        fn = ctx.steps.what_if["exact" if int(h["since"]) == 0 else "pcg"]
    outs = jax.device_get(fn(state, jnp.asarray(cand[:, None], jnp.int32)))
    d, K = state.W.shape
    k_buf = int(h["count"]) if ctx.cached else 0
    charge = np.empty(cand.size)
    for j in range(cand.size):
        oj = gs.unpack(outs[j], K)
        _, charge[j], _, _ = ga.charge(ctx.acc, oj, h, 1, n_prev, n_total, d, K, k_buf)
    R = float(h["R"])
    after = float(h.get("R_carry", R)) + charge  # a measured gradient is cancelled (§5b)
    b = ctx.acc.budget
    return what_if_cls(cand, charge, after, after > b, b, R)
