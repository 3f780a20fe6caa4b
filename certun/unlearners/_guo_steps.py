"""The jitted device steps of :func:`certun.unlearners.guo.certified_removal`.

Pure functions of a :class:`StepConfig` (static) and arrays; :func:`make_steps` jits them
once per unlearner. The cached-factor steps compose :mod:`certun.primitives.curvature_cache`;
the bound arithmetic they feed is :mod:`certun.bounds.guo_accountant` (host float64).
Each step returns ``(small, big)``: a packed vector of the per-head norms the accountant
needs (one device->host transfer) and the new state's arrays.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from certun.models import glm
from certun.primitives import curvature_cache as cc
from certun.primitives.solvers import eigh_solve, pcg
from certun.primitives.spectral import UNIT_ROUNDOFF
from certun.results import RESULTS


@dataclass(frozen=True)
class StepConfig:
    """Static configuration of the device steps (hashable: a jit static argument)."""

    lossf: glm.ScalarLoss
    lam: float
    train_method: str
    train_tol: float
    solve_rtol: float
    max_cg_steps: int
    method: str  # "eigh" or "cholesky" (the cached factor; "eigh" for PCG's preconditioner)
    neumann_terms: int
    max_rank: int
    refactor_every: int = 0
    reinvert_ratio: float = cc.REINVERT_RATIO  # "cholesky" folds (curvature_cache.fold)
    measured: bool = False  # every cached request measured: no bound passes (request())


#: ``X`` with at least this many entries (512 MiB of float64) gets its curvature accumulated
#: over row blocks (:mod:`certun.primitives.row_blocks`) instead of through ``diag(l'') X``.
BLOCKWISE_ELEMENTS = 1 << 26

# the small outputs of a step travel to the host as one vector (one transfer)
_PER_HEAD = ("delta_norms", "Delta_norms", "x_delta_sq", "u_norms", "x_u_sq", "a_delta_sq",
             "a_u_sq", "w_norms")


def pack(small: dict, K: int) -> jax.Array:
    """One vector of the per-head norms and the solver's scalars."""
    dt = small["delta_norms"].dtype
    zeros = jnp.zeros(K, dt)
    parts = [jnp.ravel(small.get(k, zeros)).astype(dt) for k in _PER_HEAD]
    parts += [jnp.ravel(jnp.asarray(small[k])).astype(dt)
              for k in ("solver_residual", "code", "steps", "present")]
    return jnp.concatenate(parts)


def unpack(v: Any, K: int) -> dict:
    """The host dict of :func:`pack`'s vector."""
    v = np.asarray(v, np.float64)
    out: dict = {k: v[i * K:(i + 1) * K] for i, k in enumerate(_PER_HEAD)}
    n = len(_PER_HEAD) * K
    out.update(solver_residual=float(v[n]), code=int(v[n + 1]), steps=int(v[n + 2]),
               present=bool(v[n + 3]))
    return out


_CACHE_FIELDS = dict(curv="curv", eigvals="eigvals", eigvecs="eigvecs", rows="rows_buf",
                     h="h_buf", proj="proj_buf", filled="buf_count", inv="inv", cap="cap_buf",
                     inv_rows="inv_rows")


def cache_of(state: Any) -> cc.CurvatureCache:
    """The :class:`~certun.primitives.curvature_cache.CurvatureCache` view of a state."""
    return cc.CurvatureCache(**{k: getattr(state, v) for k, v in _CACHE_FIELDS.items()})


def cache_fields(cache: cc.CurvatureCache, keep: tuple = ()) -> dict:
    """State fields of a cache (``keep``: only these cache fields)."""
    return {v: getattr(cache, k) for k, v in _CACHE_FIELDS.items() if not keep or k in keep}


def _w_norms(W, W_f):
    # max(||w_k||, ||w_f,k||) per head: margins x^T w are computed with error
    # <= gamma_d ||w||, which the rounding allowance of the step covers
    return jnp.maximum(jnp.linalg.norm(W, axis=0), jnp.linalg.norm(W_f, axis=0))


def train(c: StepConfig, X, Y, b, mask, W0):
    """Train the perturbed objective to ``train_tol``."""
    return glm.fit(c.lossf, X, Y, c.lam, b, mask, W0, method=c.train_method, tol=c.train_tol)


def grad_sum(c: StepConfig, W, X, Y, b, mask):
    """``[||g||, magnitude, margin term, n]`` of the sum-scale gradient (one pass)."""
    return grad_measure(c, W, X, Y, b, mask)[1]


def grad_measure(c: StepConfig, W, X, Y, b, mask, fro2=None):
    """The sum-scale gradient ``g`` ``(d, K)`` and :func:`grad_sum`'s vector.

    The allowance's sums over rows, ``sum_i |l'_i| ||x_i||`` and ``sum_i ||x_i||``, are
    computed from the row norms, or, given ``fro2`` (the stored ``||X||_F^2`` of all rows),
    bounded by Cauchy-Schwarz without a pass over ``X`` for the norms: ``||l'_k||_2 F`` per
    head and ``sqrt(n) F`` with ``F^2 = fro2 (1 + 1.01 (n d + 2) u)``, which bounds the
    exact ``||X_rem||_F^2`` through the rounding of ``fro2`` (guo2020_residual_bounds §5a).
    """
    lossf, lam = c.lossf, c.lam
    g = glm.gradient_sum(lossf, W, X, Y, lam, b, mask)
    a = X @ W
    m = mask[:, None]
    n = jnp.sum(mask)
    d1 = jnp.abs(m * lossf.d1(a, Y))
    if fro2 is None:
        row_norms = jnp.linalg.norm(X, axis=1)
        lsum, xsum = jnp.sum(d1 * row_norms[:, None]), jnp.sum(mask * row_norms)
    else:
        F = jnp.sqrt(fro2 * (1 + 1.01 * (X.shape[0] * X.shape[1] + 2) * UNIT_ROUNDOFF))
        lsum, xsum = jnp.sum(jnp.linalg.norm(d1, axis=0)) * F, jnp.sqrt(n) * F
    mag = lsum + lam * n * jnp.linalg.norm(W) + jnp.linalg.norm(b)
    # the margins x_i^T w carry an error <= gamma_d ||x_i|| ||w||, which moves l' by at
    # most l''_max times that: sum_i l''_max ||x_i|| ||w||_F bounds its effect on g
    margin = lossf.d2_bound * jnp.linalg.norm(W) * xsum
    return g, jnp.stack([jnp.linalg.norm(g), mag, margin, n])


def true_residual(c: StepConfig, W, X, Y, b, mask):
    """``||grad L_b(W; rows of mask)||`` (sum scale)."""
    return jnp.linalg.norm(glm.gradient_sum(c.lossf, W, X, Y, c.lam, b, mask))


def factorise(c: StepConfig, W, X, Y, mask) -> dict:
    """The factorisation fields of a state made at ``W`` on the rows of ``mask``."""
    G = glm.curvature_gram(c.lossf, W, X, Y, mask)  # over row blocks for a large X
    n = jnp.sum(mask)
    if c.method == "cholesky":
        inv = cc.shifted_inverse(G, c.lam, n)
        return dict(curv=G, eigvals=None, eigvecs=None, inv=inv, inv_rows=n.astype(jnp.int32))
    w, Q = jax.vmap(jnp.linalg.eigh)(G)
    return dict(curv=G, eigvals=w, eigvecs=Q)


def _removal(c: StepConfig, state, idx):
    X, Y, W = state.X, state.Y, state.W
    m = idx.shape[0]
    xu, yu = X[idx], Y[idx]
    mask_new = state.mask.at[idx].set(0.0)
    present = jnp.all(state.mask[idx] > 0)
    # rows left: from the removal count, not a pass over the n-row mask (the same value)
    n_rem = (X.shape[0] - state.n_removed - m).astype(W.dtype)
    Delta = xu.T @ c.lossf.d1(xu @ W, yu) + m * c.lam * W  # (d, K)
    if state.grad_known is not None:
        # the measured gradient at W (zero when none is current) is cancelled by the same
        # step: the right-hand side is -grad L_b(W; D \ U) itself (guo2020_residual_bounds §5b)
        Delta = Delta - state.grad_known
    return xu, yu, mask_new, present, n_rem, Delta


def _rhs_norms(state, V):
    """Per-head norms the rounding allowance charges for the right-hand side ``V``.

    ``V = Delta - g`` with ``g`` the known gradient: ``||V|| + 2 ||g|| >= ||Delta|| + ||g||``
    covers the formation of ``Delta`` and the subtraction (``||V||`` when no ``g`` is kept).
    """
    n = jnp.linalg.norm(V, axis=0)
    if state.grad_known is not None:
        n = n + 2.0 * jnp.linalg.norm(state.grad_known, axis=0)
    return n


def _code(pd, finite):
    code = jnp.where(pd, jnp.int32(RESULTS.successful), jnp.int32(RESULTS.not_positive_definite))
    return jnp.where(finite, code, jnp.int32(RESULTS.nonfinite))


def _finish(state, idx, xu, delta, Delta, mask_new, present, solver_res, code, steps):
    gram_new = state.gram - xu.T @ xu
    # ||X_rem delta_k||^2 = delta^T G delta - ||X_U delta||^2 (no d x d temporary per head,
    # so that what-if queries can vmap this over candidates)
    qf = (jnp.einsum("jk,jl,lk->k", delta, state.gram, delta)
          - jnp.sum(jnp.square(xu @ delta), axis=0))
    W_new = state.W + delta
    small = dict(
        delta_norms=jnp.linalg.norm(delta, axis=0), Delta_norms=_rhs_norms(state, Delta),
        x_delta_sq=qf, w_norms=_w_norms(state.W, state.W_factor),
        solver_residual=solver_res, code=code, steps=steps, present=present,
    )
    big = dict(W_new=W_new, mask_new=mask_new, gram_new=gram_new,
               n_removed=state.n_removed + idx.shape[0], requests=state.requests + 1,
               steps_since_factor=state.steps_since_factor + 1)
    return small, big


def exact_step(c: StepConfig, state, idx):
    """The first request after a factorisation: exact (eigh + Woodbury)."""
    xu, yu, mask_new, present, n_rem, Delta = _removal(c, state, idx)
    h_f = c.lossf.d2(xu @ state.W_factor, yu)
    shift = c.lam * n_rem

    def head(G, w, Q, dk, hk):
        x, pd = eigh_solve(w, Q, dk, shift, (xu.T, -hk))
        res = G @ x + shift * x - xu.T @ (hk * (xu @ x)) - dk
        return x, pd, jnp.linalg.norm(res)

    delta, pd, res = jax.vmap(head, in_axes=(0, 0, 0, 1, 1), out_axes=(1, 0, 0))(
        state.curv, state.eigvals, state.eigvecs, Delta, h_f)
    code = _code(jnp.all(pd), jnp.all(jnp.isfinite(delta)))
    return _finish(state, idx, xu, delta, Delta, mask_new, present, jnp.linalg.norm(res), code,
                   jnp.int32(0))


def cg_step(c: StepConfig, state, idx):
    """PCG on the exact Hessian at the current model, preconditioned by the factorisation."""
    xu, yu, mask_new, present, n_rem, Delta = _removal(c, state, idx)
    h_f = c.lossf.d2(xu @ state.W_factor, yu)
    shift = c.lam * n_rem
    X, Y, W = state.X, state.Y, state.W

    def mv(V):
        return glm.hvp_sum(c.lossf, W, V, X, Y, c.lam, mask_new)

    def precond_head(k_vals, k_vecs, r, h):
        return eigh_solve(k_vals, k_vecs, r, shift, (xu.T, -h))

    def precond(R):
        x, _ = jax.vmap(precond_head, in_axes=(0, 0, 1, 1), out_axes=(1, 0))(
            state.eigvals, state.eigvecs, R, h_f)
        return x

    sol = pcg(mv, Delta, precond=precond, x0=precond(Delta), rtol=c.solve_rtol,
              max_steps=c.max_cg_steps)
    return _finish(state, idx, xu, sol.value, Delta, mask_new, present, sol.residual_norm,
                   sol.result, sol.num_steps)


def cached_step(c: StepConfig, state, idx, kb: int):
    """One request on the maintained factor (``curvature_cache.downdate_solve``).

    The matrix solved is the curvature at ``W_factor`` of the remaining rows, regulariser
    included; the residual is measured against it. ``||X_rem v||^2 = v^T G_f v - ||X_R v||^2``
    for ``v = delta_k`` and ``u_k = w_k - w_f,k`` costs one pass over the stored Gram ``G_f``.
    """
    xu, yu, mask_new, present, n_rem, Delta = _removal(c, state, idx)
    W = state.W
    m = idx.shape[0]
    h_new = c.lossf.d2(xu @ state.W_factor, yu)  # (m, K) at the factorisation point
    U = W - state.W_factor  # (d, K)
    K = W.shape[1]
    cache, sol, meas = cc.downdate_solve(cache_of(state), Delta, xu, h_new, c.lam, n_rem, U,
                                         kb=kb, neumann_terms=c.neumann_terms,
                                         measure=not c.measured)
    delta = sol.value
    if c.measured:  # the request measures the gradient itself: no bound inputs
        qd = qu = jnp.full((K,), jnp.nan, W.dtype)
    else:
        GV = jnp.concatenate([delta.T, U.T], axis=0) @ state.gram  # (2K, d)
        qd = jnp.sum(GV[:K] * delta.T, axis=1) - meas.b_x
        qu = jnp.sum(GV[K:] * U.T, axis=1) - meas.b_u
    W_new = W + delta
    small = dict(
        delta_norms=jnp.linalg.norm(delta, axis=0), Delta_norms=_rhs_norms(state, Delta),
        x_delta_sq=qd, u_norms=jnp.linalg.norm(U, axis=0), x_u_sq=qu,
        a_delta_sq=meas.a_x, a_u_sq=meas.a_u, w_norms=_w_norms(W, state.W_factor),
        solver_residual=sol.residual, code=sol.result, steps=jnp.int32(0), present=present,
    )
    big = dict(W_new=W_new, mask_new=mask_new,
               **cache_fields(cache, ("rows", "h", "proj", "filled", "cap")),
               n_removed=state.n_removed + m, requests=state.requests + 1,
               steps_since_factor=state.steps_since_factor + 1)
    return small, big


def fresh_step(c: StepConfig, state, idx):
    """A request larger than the buffer: the exact Newton step at the current model.

    Factorises the curvature of the remaining rows at the current model
    (``O(n d^2 + d^3)``) and steps with it.
    """
    xu, yu, mask_new, present, n_rem, Delta = _removal(c, state, idx)
    W = state.W
    m = idx.shape[0]
    shift = c.lam * n_rem
    fac = factorise(c, W, state.X, state.Y, mask_new)
    G = fac["curv"]
    if c.method == "cholesky":
        pd = jnp.all(jnp.isfinite(fac["inv"]))
        delta = jnp.einsum("kde,ek->dk", fac["inv"], Delta)
    else:
        w, Q = fac["eigvals"], fac["eigvecs"]
        ws = w + shift
        pd = jnp.all(ws > 0)
        delta = jnp.einsum("kdi,ki->dk", Q, jnp.einsum("dk,kdi->ki", Delta, Q)
                           / jnp.where(ws > 0, ws, 1.0))
        fac.update(inv=None, inv_rows=None)
    Gd = jnp.einsum("kde,ek->dk", G, delta)
    res = Gd + shift * delta - Delta
    gram_new = state.gram - xu.T @ xu
    K = W.shape[1]
    qd = jnp.sum(delta * (gram_new @ delta), axis=0)
    code = _code(pd, jnp.all(jnp.isfinite(delta)))
    W_new = W + delta
    small = dict(delta_norms=jnp.linalg.norm(delta, axis=0),
                 Delta_norms=_rhs_norms(state, Delta), x_delta_sq=qd,
                 u_norms=jnp.zeros(K), x_u_sq=jnp.zeros(K),
                 a_delta_sq=jnp.sum(delta * Gd, axis=0), a_u_sq=jnp.zeros(K),
                 w_norms=_w_norms(W, W), solver_residual=jnp.linalg.norm(res), code=code,
                 steps=jnp.int32(0), present=present)
    big = dict(W_new=W_new, mask_new=mask_new, n_removed=state.n_removed + m,
               requests=state.requests + 1, gram_new=gram_new,
               steps_since_factor=jnp.asarray(1, jnp.int32), **fac)
    return small, big


def fold(c: StepConfig, state):
    """Fold the buffered rows into the factorisation at the same point (no data pass)."""
    R = state.rows_buf
    gram = state.gram - jnp.einsum("cd,ce->de", R, R)
    cache, _ = cc.fold(cache_of(state), c.lam, jnp.sum(state.mask),
                       reinvert_ratio=c.reinvert_ratio)
    keep = ("curv", "inv", "inv_rows") if c.method == "cholesky" else ("curv", "eigvals",
                                                                        "eigvecs")
    return cache_fields(cache, keep), gram


def scalars(v):
    """float64 state scalars from one host vector: one transfer, one dispatch."""
    return tuple(v[i] for i in range(v.shape[0]))


def downdate_gram(gram, rows):
    """``gram - rows^T rows``."""
    return gram - jnp.einsum("cd,ce->de", rows, rows)


class Steps(NamedTuple):
    """The jitted steps of one unlearner (their compilation caches are its own)."""

    train: Any
    grad_sum: Any
    true_residual: Any
    factorise: Any
    request: dict  # path -> jitted request (cached: static buffer width)
    fold: dict  # "cached_factor" / "measured_factor" -> jitted fold (its reinvert ratio)
    scalars: Any
    downdate_gram: Any
    retrain_inputs: Any
    sequence: dict  # "cached_factor" / "measured_factor" -> jitted scan (static width)
    what_if: dict


CORES = {"eigh_woodbury": exact_step, "pcg": cg_step, "cached_factor": cached_step,
         "fresh_factor": fresh_step}


def _batched(core, *static):
    # what-if queries: the small outputs of ``core`` for every candidate row (vmapped;
    # the big outputs are dead code for XLA)
    def one(st, i):
        small = core(st, i, *static)[0]
        return pack(small, st.W.shape[1])
    return jax.jit(jax.vmap(one, in_axes=(None, 0)))


def retrain_inputs(state, idx, cached: bool):
    """Mask and Gram matrix of the rows left by a request that goes to a retrain."""
    xu = state.X[idx]
    mask_new = state.mask.at[idx].set(0.0)
    if cached:
        rows = jax.lax.dynamic_update_slice(state.rows_buf, xu, (state.buf_count, jnp.int32(0)))
        return mask_new, downdate_gram(state.gram, rows)
    return mask_new, state.gram - xu.T @ xu


def make_steps(c: StepConfig, acc: Any, request: Any, sequence: Any) -> Steps:
    """Jit every step for configuration ``c`` (``what_if`` fills lazily per buffer width).

    ``request``/``sequence`` are :func:`certun.unlearners._guo_request.request_host` and
    ``sequence`` (passed in to keep the modules acyclic); one jitted request per path.
    """
    p = functools.partial
    req = {path: jax.jit(p(request, c, acc, path),
                         static_argnums=(2,) if path == "cached_factor" else ())
           for path in CORES}
    # every request measured (no bound passes): the cached step under a measured config, whose
    # folds re-invert later (the Neumann truncation only slows the residual's cancellation)
    cm = dataclasses.replace(c, measured=True, reinvert_ratio=cc.MEASURED_EVERY_REINVERT_RATIO)
    req["measured_factor"] = jax.jit(p(request, cm, acc, "cached_factor"),
                                     static_argnums=(2,))
    return Steps(
        train=jax.jit(p(train, c)), grad_sum=jax.jit(p(grad_sum, c)),
        true_residual=jax.jit(p(true_residual, c)), factorise=jax.jit(p(factorise, c)),
        request=req, fold={"cached_factor": jax.jit(p(fold, c)),
                           "measured_factor": jax.jit(p(fold, cm))},
        scalars=jax.jit(scalars), downdate_gram=jax.jit(downdate_gram),
        retrain_inputs=jax.jit(retrain_inputs, static_argnums=2),
        sequence={"cached_factor": jax.jit(p(sequence, c, acc), static_argnums=(3,)),
                  "measured_factor": jax.jit(p(sequence, cm, acc), static_argnums=(3,))},
        what_if={"exact": _batched(p(exact_step, c)), "pcg": _batched(p(cg_step, c))},
    )


def what_if_cached(c: StepConfig, steps: Steps, kb: int):
    """The vmapped cached step at buffer width ``kb`` (compiled once per width)."""
    if kb not in steps.what_if:
        steps.what_if[kb] = _batched(functools.partial(cached_step, c), kb)
    return steps.what_if[kb]
