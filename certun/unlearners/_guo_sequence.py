"""``unlearn_sequence``: many requests of ``certified_removal`` in few dispatches.

**Rule.** With the cached factor, consecutive requests of equal size ``m`` that fit the
buffer's current width run inside one jitted ``lax.scan`` of the very request function
:func:`certun.unlearners._guo_request.request` that ``unlearn`` dispatches (step, float64
bounds, remeasure, decision). The scan returns to the host

* at a buffer-width boundary (32, 64, ..., ``max_rank`` rows: the width is static) and when
  the buffer is full (the host folds it, as ``unlearn`` does),
* after a request whose refresh verdict is due (the host refreshes, as ``unlearn`` does), and
* at a request the step does not serve (budget exceeded after any remeasure, or a solver
  failure): the host serves that request through ``unlearn``'s own path (refresh and retry,
  retrain, or refusal) and resumes.

Requests larger than the buffer, and every request of the PCG path (``O(n d)`` per request
anyway), are served one at a time. Per-request outcomes and certificate decisions are those of
``unlearn`` called in order; parameters and bounds agree to rounding (the capacitance's padded
width may differ).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import numpy as np

from certun import _validate
from certun.unlearners import _guo_certs as certs
from certun.unlearners import _guo_host as host
from certun.unlearners import _guo_request as _request
from certun.unlearners.base import UnlearnResult

#: Scan length (padded): one compilation per buffer width and request size.
CHUNK = 32


class SequenceResult(NamedTuple):
    """What :meth:`GuoUnlearner.unlearn_sequence` returns.

    Attributes:
      params: the published model after the last request (``None`` if none was served).
      state: the state after the last request.
      outcomes: per request, as ``unlearn``'s (``"unlearned"``, ``"retrained"``,
        ``"retrain_required"``).
      certificates: per request, as ``unlearn``'s.
      diagnostics: per request (private), as ``unlearn``'s.
      dispatches: scans run (the rest of the requests were served one at a time).
    """

    params: Any
    state: Any
    outcomes: list
    certificates: list
    diagnostics: list
    dispatches: int


def validate(requests: Any, n_total: int) -> list[np.ndarray]:
    """Host validation of every request, and that no row is named twice across them."""
    if isinstance(requests, (str, bytes)) or not hasattr(requests, "__len__"):
        raise _validate.ValidationError("requests must be a list of index lists")
    idxs = [_validate.forget_indices(r, n_total, name=f"requests[{i}]")
            for i, r in enumerate(requests)]
    if idxs:
        allrows = np.concatenate(idxs)
        srt = np.sort(allrows)
        rep = srt[1:][srt[1:] == srt[:-1]]
        if rep.size:
            raise _validate.ValidationError(
                f"requests name row {int(rep[0])} twice; each row can be forgotten once")
    return idxs


def _record_result(ctx: host.Ctx, state, rec: dict, h: dict, m: int, t0: float, path: str
                   ) -> tuple[UnlearnResult, dict]:
    """The certificate and diagnostics of a request served inside a scan."""
    n_total = int(state.X.shape[0])
    n_prev = n_total - int(h["n_removed"])
    bounds, solver, diagnostics = host._diagnostics(
        ctx, rec, path, h, m, n_prev, state.W.shape[0], time.perf_counter() - t0, None)
    private = {"b_norm": float(np.linalg.norm(h["b_norms"])), "train_grad_norm": float(h["tg"])}
    if not ctx.acc.remeasure and rec["after"] != "refactor_every":
        diagnostics["refresh_policy_estimate"] = rec["s_hat"]
    diagnostics["refreshed_after"] = rec["after"]
    cert = certs.cert(ctx, state, rec["R_final"],
                      certs.assumptions(ctx, state, True, True, rec["code"], h["xs"], h["tg"],
                                        measured=path == "measured_factor"),
                      bounds, solver, private, removed=int(h["n_removed"]) + m)
    h_next = dict(h, n_removed=int(h["n_removed"]) + m, count=int(h["count"]) + m,
                  since=int(h["since"]) + 1, R=rec["R_final"])
    return UnlearnResult(None, None, cert, "unlearned", diagnostics), h_next


def _scan_chunk(ctx: host.Ctx, state, idxs: list, i: int, h: dict):
    """Run one scan from request ``i``; returns ``(state, results, next i, stop reason)``."""
    m = idxs[i].size
    path, kb = host.path_of(ctx, state, h, m)  # cached or measured: m <= max_rank here
    assert kb is not None
    room = (kb - int(h["count"])) // m
    take = []
    for j in range(i, min(len(idxs), i + min(room, CHUNK))):
        if idxs[j].size != m:
            break
        take.append(idxs[j])
    L = len(take)
    batch = np.zeros((CHUNK, m), np.int32)
    batch[:L] = np.stack(take)
    valid = np.arange(CHUNK) < L
    t0 = time.perf_counter()
    fields, recs = ctx.steps.sequence[path](state, batch, valid, kb)
    state = state._replace(**fields)
    recs = np.asarray(jax.device_get(recs))
    out: list[UnlearnResult] = []
    K = state.W.shape[1]
    for k in range(L):
        if np.isnan(recs[k, 0]):
            break
        rec = _request.unpack_record(ctx.acc, recs[k], K)
        if not rec["present"]:
            raise host._not_present(state, take[k])
        if not rec["accept"]:
            return state, out, i + k, "refused"
        res, h = _record_result(ctx, state, rec, h, m, t0, path)
        out.append(res)
        if rec["after"] is not None:
            state = jax.block_until_ready(host.refresh(ctx, state))
            return state, out, i + k + 1, "refresh"
    return state, out, i + len(out), None


def serve_sequence(ctx: host.Ctx, state, requests: Any) -> SequenceResult:
    """Serve ``requests`` in order (see the module docstring for when it returns to the host)."""
    host.check_kind(ctx, state)
    idxs = validate(requests, int(state.X.shape[0]))
    results: list[UnlearnResult] = []
    scans = 0
    i = 0
    while i < len(idxs):
        m = idxs[i].size
        h = host.host_scalars(ctx, state) if ctx.cached else {}
        one = (not ctx.cached or m > ctx.max_rank or int(h["count"]) + m > ctx.max_rank
               or m >= int(state.X.shape[0]) - int(h["n_removed"]))
        if not one:
            state, out, i, why = _scan_chunk(ctx, state, idxs, i, h)
            scans += 1
            results.extend(out)
            if why != "refused":
                continue
        res = host.serve(ctx, state, idxs[i], time.perf_counter())
        results.append(res)
        state = res.state
        i += 1
    served = any(r.outcome != "retrain_required" for r in results)
    return SequenceResult(certs.params(state) if served else None, state,
                          [r.outcome for r in results], [r.certificate for r in results],
                          [r.diagnostics for r in results], scans)
