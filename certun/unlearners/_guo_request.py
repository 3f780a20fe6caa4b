"""One request of :func:`certun.unlearners.guo.certified_removal` as one jitted function.

:func:`request` takes the state and the validated indices and returns the next state and a
record vector: the step (:mod:`certun.unlearners._guo_steps`), the float64 bound arithmetic
(:func:`certun.bounds.guo_accountant.charge_device`), the remeasure when the budget would be
exceeded (one gradient, under ``lax.cond``), the decision (served or not) and the refresh
policy's verdict, all in one dispatch. A request that is not served returns the state
unchanged (the mask is touched only at the request's rows: ``O(m)``, never ``O(n)``).
:func:`sequence` runs it under ``lax.scan`` and stops changing the state at the first request
that needs the host (not served, or a refresh due).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from certun.bounds import guo_accountant as ga
from certun.primitives.spectral import UNIT_ROUNDOFF
from certun.results import RESULTS
from certun.unlearners import _guo_steps as gs
from certun.unlearners.base import published_view

#: Record fields after the charge vector (then ``delta_norms``, ``K`` entries).
RECORD = ("present", "accept", "code", "steps", "remeasured", "R_meas", "R_final", "after",
          "s_hat", "S_new", "D_new")
AFTER = (None, "refactor_every", "policy", "remeasure")


def _measure(c: gs.StepConfig, W, X, Y, b, mask, fro2):
    """``(||g|| + allowance, g, allowance)``: the gradient and its rounding allowance (§5a).

    The allowance's row sums are bounded from the stored ``fro2`` (no pass for row norms).
    """
    g, (gn, mag, margin, n) = gs.grad_measure(c, W, X, Y, b, mask, fro2)
    d = W.shape[0]
    allow = (n + d + 2) * UNIT_ROUNDOFF * mag + 1.01 * (d + 4) * UNIT_ROUNDOFF * margin
    return gn + allow, g, allow


def _without(mask, idx):
    """``mask`` with the rows ``idx`` zeroed, elementwise (fused into the gradient; no scatter)."""
    rows = jnp.arange(mask.shape[0], dtype=idx.dtype)
    return jnp.where(jnp.any(rows[:, None] == idx[None, :], axis=1), 0.0, mask).astype(mask.dtype)


#: Buffers a cached request writes at rows ``[k, k + m)`` only (``k = buf_count``), by axis.
_BUFFER_AXIS = {"rows_buf": 0, "h_buf": 0, "proj_buf": 1, "cap_buf": 1}


def _select(accept, new, old, idx, slice_buffers: bool) -> dict:
    """The fields a request changed: ``new`` where ``accept`` else ``old``.

    Only changed fields are returned (a jitted function returning ``X`` would copy it: the
    caller merges them into its state); the mask is updated by :func:`request` at the
    request's rows only. With ``slice_buffers`` (the cached step) the buffers are selected
    at the request's rows ``[k, k + m)`` only, the rows the step wrote: a whole-buffer select
    would copy them (``O(cap d)`` per request, and XLA then copies the loop carry as well).
    """
    out = {}
    for name, a in new._asdict().items():
        b = getattr(old, name)
        if a is b or a is None or name == "mask":
            continue
        ax = _BUFFER_AXIS.get(name)
        if slice_buffers and ax is not None:
            # rows at and beyond buf_count are empty (zero; identity rows of the capacitance
            # factor): a refused request writes them back empty, never reading the old buffer
            # (reading it would keep it alive beside the updated one, and XLA would copy it)
            k, m = old.buf_count, idx.shape[0]
            new_rows = lax.dynamic_slice_in_dim(a, k, m, ax)
            if name == "cap_buf":
                cols = jnp.arange(a.shape[-1])
                empty = (cols[None, :] == (k + jnp.arange(m))[:, None]).astype(a.dtype)
                empty = jnp.broadcast_to(empty, new_rows.shape)
            else:
                empty = jnp.zeros_like(new_rows)
            out[name] = lax.dynamic_update_slice_in_dim(a, jnp.where(accept, new_rows, empty),
                                                        k, ax)
        else:
            out[name] = jnp.where(accept, a, b)
    return out


def _policy(c: gs.StepConfig, acc: ga.GuoAccountant, B, since, S_new, D_new, total, remeasured,
            rho: float):
    """The refresh verdict on the device (:func:`certun.bounds.guo_accountant.refresh_after`)."""
    f = dict(zip(ga.CHARGE_FIELDS, list(B), strict=False))
    s_t, D_t = f["step_staleness_bound"], f["step_drift_norm"]
    s_hat = jnp.where(D_new != 0, S_new * D_t / jnp.where(D_new != 0, D_new, 1.0), s_t)
    after = jnp.int32(0)
    if acc.cached and not acc.remeasure:
        if acc.refresh_cost_ratio is not None:
            pol = (s_t > 0) & ((since + 1) * s_hat - S_new >= acc.refresh_cost_ratio * acc.budget)
            after = jnp.where(pol, jnp.int32(2), after)
    elif acc.cached:
        # renewal rule in measurements: a step's staleness costs at most one measurement,
        # min(s_t, B) / B; refresh when t times the current cost exceeds the costs since the
        # factorisation by the refresh's own cost rho (static: the shapes; S_new sums the
        # capped staleness; proofs/cached_factors.md §4)
        worth = remeasured & (s_t > 0) & ((since + 1) * jnp.minimum(s_t, acc.budget) - S_new
                                          >= rho * acc.budget)
        after = jnp.where(worth, jnp.int32(3), after)
    if c.refactor_every:
        after = jnp.where(since + 1 >= c.refactor_every, jnp.int32(1), after)
    return after, s_hat


def scalar_keys(state) -> dict:
    """The state's scalars the host reads (device arrays; ``b`` whole, packed as its norms)."""
    keys = dict(n_removed=state.n_removed, since=state.steps_since_factor, xs=state.x_spectral,
                fro2=state.fro2, gram_err=state.gram_err, R=state.residual_bound,
                tg=state.train_grad_norm, b=state.b)
    if state.buf_count is not None:
        keys.update(count=state.buf_count, stale_sum=state.stale_sum)
        if state.drift_sum is not None:  # absent from states saved before it existed
            keys["drift_sum"] = state.drift_sum
    if state.grad_known_err is not None:
        keys["gk_err"] = state.grad_known_err
    return keys


def pack_scalars(keys: dict) -> jax.Array:
    """:func:`scalar_keys`'s values in one float64 vector (``b`` as its per-head norms)."""
    keys = dict(keys, b=jnp.linalg.norm(keys["b"], axis=0))
    return jnp.concatenate([jnp.ravel(v).astype(jnp.float64) for v in jax.tree.leaves(keys)])


def request_host(c: gs.StepConfig, acc: ga.GuoAccountant, path: str, state, idx,
                 kb: int | None = None):
    """:func:`request` for one request from the host: ``(changes, record, published model)``.

    The record ends with the state's scalars (:func:`pack_scalars`: no transfer of their
    own) and the published model after the request comes with it (no dispatch of its own).
    """
    changes, vec = request(c, acc, path, state, idx, kb)
    return (changes, jnp.concatenate([vec, pack_scalars(scalar_keys(state))]),
            published_view(changes.get("W", state.W)))


def request(c: gs.StepConfig, acc: ga.GuoAccountant, path: str, state, idx,
            kb: int | None = None):
    """Serve one request in one dispatch: ``(changed fields, record vector)`` (module doc)."""
    core: Any = gs.CORES[path]
    small, big = core(c, state, idx, kb) if path == "cached_factor" else core(c, state, idx)
    m = idx.shape[0]
    n_total, d = state.X.shape[0], state.W.shape[0]
    x64 = state.X.dtype == jnp.float64
    n_prev = n_total - state.n_removed
    k_buf = state.buf_count if acc.cached else 0
    known = state.grad_known is not None
    # the residual the step carries over: with a known gradient g at W, only ||grad - g||
    # (the step cancels g itself; guo2020_residual_bounds §5b), else the whole bound
    R_carry = (jnp.where(jnp.isfinite(state.grad_known_err), state.grad_known_err,
                         state.residual_bound) if known else None)
    B = ga.charge_device(acc, small, state.residual_bound, state.x_spectral, state.fro2,
                         state.gram_err, jnp.linalg.norm(state.b, axis=0), m, n_prev, n_total,
                         d, k_buf, R_carry=R_carry)
    f = dict(zip(ga.CHARGE_FIELDS, list(B), strict=False))
    R_new, total = f["residual_bound_after"], f["charge"]
    code = jnp.asarray(small["code"], jnp.int32)
    solver_ok = (code == RESULTS.successful) & (  # measured: no solve residual to check
        True if c.measured else jnp.isfinite(f["step_solver_residual"]))
    fresh = path == "fresh_factor"
    S_new = D_new = jnp.zeros((), jnp.float64)
    since = jnp.int32(0) if fresh else state.steps_since_factor
    if acc.cached and not c.measured:
        s_t = f["step_staleness_bound"]
        # with remeasuring, the staleness counts at most one budget a step (the renewal rule)
        S_new = (0.0 if fresh else state.stale_sum) + (jnp.minimum(s_t, acc.budget)
                                                        if acc.remeasure else s_t)
        D_new = (0.0 if fresh else state.drift_sum) + f["step_drift_norm"]
    new = state._replace(mask=big["mask_new"], W=big["W_new"], n_removed=big["n_removed"],
                         requests=big["requests"], steps_since_factor=big["steps_since_factor"])
    if acc.cached and not c.measured:
        new = new._replace(stale_sum=S_new, drift_sum=D_new)
    if fresh:
        new = new._replace(W_factor=state.W, factor_mask=big["mask_new"], curv=big["curv"],
                           eigvals=big["eigvals"], eigvecs=big["eigvecs"], inv=big["inv"],
                           inv_rows=big["inv_rows"], gram=big["gram_new"],
                           gram_err=f["gram_err"], steps_since_factor=jnp.asarray(1, jnp.int32))
    elif acc.cached:
        new = new._replace(rows_buf=big["rows_buf"], h_buf=big["h_buf"],
                           proj_buf=big["proj_buf"], buf_count=big["buf_count"],
                           cap_buf=big["cap_buf"])
    else:
        new = new._replace(gram=big["gram_new"], gram_err=f["gram_err"])
    R_meas = jnp.asarray(jnp.inf, jnp.float64)
    remeasured = jnp.asarray(False)
    if acc.remeasure and x64:
        # measured mode: every request (no bound was charged); else past the budget only
        remeasured = solver_ok & (True if c.measured else (R_new > acc.budget))
        inf = jnp.asarray(jnp.inf, jnp.float64)
        # the remaining rows' mask is formed inside the branch (O(n d) there anyway), elementwise
        def meas():
            return _measure(c, new.W, state.X, state.Y, state.b, _without(state.mask, idx),
                            state.fro2)

        if c.measured:  # every request: no branch (a lax.cond copies its operands)
            R_meas, g, allow = meas()
            R_meas, allow = (jnp.where(remeasured, v, inf) for v in (R_meas, allow))
        else:
            R_meas, g, allow = lax.cond(remeasured, meas,
                                        lambda: (inf, jnp.zeros_like(state.W), inf))
        if known:  # kept for the next step to cancel (zero and inf: none is known)
            new = new._replace(grad_known=jnp.where(remeasured, g, 0.0).astype(state.W.dtype),
                               grad_known_err=allow)
    elif known:
        new = new._replace(grad_known=jnp.zeros_like(state.W),
                           grad_known_err=jnp.asarray(jnp.inf, jnp.float64))
    R_final = (R_meas if c.measured and acc.remeasure and x64
               else jnp.where(remeasured & (R_meas < R_new), R_meas, R_new))
    new = new._replace(residual_bound=R_final)
    # the request's rows of the mask, read once: every later use reads these m values, so the
    # only write to the n-row mask is the m-row scatter below (one copy of the caller's mask,
    # which the caller keeps; XLA:CPU copies a donated mask twice here, so none is donated)
    rows = lax.optimization_barrier(state.mask[idx])
    present = jnp.all(rows > 0)
    accept = present & solver_ok & x64 & (R_final <= acc.budget)
    after, s_hat = _policy(c, acc, B, since, S_new, D_new, total, remeasured,
                           ga.refresh_cost(n_total, d, c.method))
    rec = jnp.stack([jnp.asarray(v, jnp.float64) for v in
                     (present, accept, code, small["steps"], remeasured, R_meas, R_final, after,
                      s_hat, S_new, D_new)])
    changes = _select(accept, new, state, idx, path == "cached_factor")
    changes["mask"] = state.mask.at[idx].set(jnp.where(accept, jnp.zeros_like(rows), rows))
    return changes, jnp.concatenate([B, rec, small["delta_norms"]])


def record_size(K: int) -> int:
    """Entries of :func:`request`'s record before the state's scalars."""
    return len(ga.CHARGE_FIELDS) + K + len(RECORD) + K


def unpack_record(acc: ga.GuoAccountant, vec: Any, K: int) -> dict:
    """Host view of :func:`request`'s record."""
    v = np.asarray(vec, np.float64)
    nb = len(ga.CHARGE_FIELDS) + K
    bounds, total, R_new, gram_err = ga.bounds_from_device(acc, v[:nb], K)
    r = dict(zip(RECORD, (float(x) for x in v[nb:nb + len(RECORD)]), strict=True))
    return dict(bounds=bounds, total=total, R_new=R_new, gram_err=gram_err,
                present=bool(r["present"]), accept=bool(r["accept"]), code=int(r["code"]),
                steps=int(r["steps"]), remeasured=bool(r["remeasured"]), R_meas=r["R_meas"],
                R_final=r["R_final"], after=AFTER[int(r["after"])], s_hat=r["s_hat"],
                S_new=r["S_new"], D_new=r["D_new"],
                delta_norms=v[nb + len(RECORD):nb + len(RECORD) + K])


#: The state fields a cached request can change (the scan's carry; the rest is read-only).
CARRY = ("mask", "W", "n_removed", "requests", "steps_since_factor", "stale_sum", "drift_sum",
         "rows_buf", "h_buf", "proj_buf", "buf_count", "cap_buf", "residual_bound",
         "grad_known", "grad_known_err")


def sequence(c: gs.StepConfig, acc: ga.GuoAccountant, state, idxs, valid, kb: int):
    """``lax.scan`` of cached requests (``idxs``: ``(L, m)``, ``valid``: ``(L,)``) at width ``kb``.

    Stops changing the state at the first request that is not served or whose refresh verdict
    is due (``stopped`` in the carry; that request itself is applied when served); padding
    entries (``valid`` false) change nothing. Returns the changed fields (:data:`CARRY`) and
    the ``(L, .)`` records (NaN after the stop).
    """
    nb = len(ga.CHARGE_FIELDS) + state.W.shape[1]

    def serve(fields, idx):
        ch, rec = request(c, acc, "cached_factor", state._replace(**fields), idx, kb)
        return {k: ch.get(k, v) for k, v in fields.items()}, rec

    def body(carry, x):
        fields, stopped = carry
        idx, ok = x
        # after the stop (and on padding) the step is skipped, not computed and discarded
        fields, rec = lax.cond(ok & ~stopped, serve,
                               lambda f, i: (f, jnp.full(rec_shape.shape, jnp.nan,
                                                         rec_shape.dtype)), fields, idx)
        accept = rec[nb + RECORD.index("accept")] > 0
        after = rec[nb + RECORD.index("after")] > 0
        return (fields, stopped | (ok & (~accept | after))), rec

    init = {k: getattr(state, k) for k in CARRY if getattr(state, k) is not None}
    rec_shape = jax.eval_shape(serve, init, idxs[0])[1]
    (fields, _), recs = lax.scan(body, (init, jnp.asarray(False)), (idxs, valid))
    return fields, recs


def _ungated_core(c: gs.StepConfig, path: str, state, idx, kb):
    if path == "measured_factor":
        c, path = dataclasses.replace(c, measured=True), "cached_factor"
    core: Any = gs.CORES[path]
    big = (core(c, state, idx, kb) if path == "cached_factor" else core(c, state, idx))[1]
    return big["W_new"], big["mask_new"]


_ungated = jax.jit(_ungated_core, static_argnums=(0, 1, 4))


def request_ungated(ctx: Any, state, idx, path: str, kb: int | None):
    """The stepped model and mask of a request, served or not (``diagnose`` on refusals)."""
    W, mask = _ungated(ctx.cfg, path, state, idx, kb)
    return state._replace(W=W, mask=mask)
