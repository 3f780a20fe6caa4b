r"""A maintained factorisation of a shifted curvature under low-rank row changes.

The matrix served, per head ``k`` (``K`` heads share the rows), is

.. math:: T_k = A_k - \sum_{j\in\mathcal B} h_{jk}\,x_j x_j^\top + \lambda n\,I ,

``A_k`` a stored ``d x d`` curvature (e.g. ``X^T diag(l'') X`` at a factorisation point),
``\mathcal B`` a buffer of up to ``max_rank`` removed rows ``x_j`` with weights ``h_jk``, and
``n`` the number of rows present (the regulariser's shift ``lambda n`` moves by ``lambda``
per removed row). Two factorisations (``proofs/cached_factors.md``):

* ``"eigh"``: ``A_k = Q diag(w) Q^T``; the shift is absorbed by the eigenvalues exactly and
  the buffered rows by a ``k x k`` Woodbury capacitance, rebuilt per solve
  (``O(d^2 + d k^2)``); a fold is one ``O(d^3)`` eigendecomposition.
* ``"cholesky"``: ``B_k = (A_k - \sum_{folded} + \lambda n_f I)^{-1}`` at a fixed shift
  ``n_f`` (through a Cholesky factor), a capacitance Cholesky factor extended by one row per
  buffered row (``O(d k)``) and a Neumann series in the shift's drift
  ``mu = lambda (n_f - n)`` (ratio ``q <= (n_f - n) / n_f``, §5 of the proof); a fold updates
  ``B`` by Woodbury (``O(d^2 k)``) while the drift keeps ``q`` small, else re-inverts.

The API follows lineax's ``init``/``solve`` split: :func:`init` factors once; :func:`solve`,
:func:`downdate`, :func:`uprate`, :func:`fold` and :func:`refresh` return the new cache (a
pytree the caller holds: nothing here keeps state) with a :class:`CacheSolution` carrying the
**achieved residual** ``||T x - v||`` measured against the stored ``A`` and a
:class:`certun.results.RESULTS` code (``not_positive_definite`` when the capacitance or the
shifted spectrum is not positive definite, ``nonfinite`` on overflow).
:func:`downdate_solve` is the fused request step of
:func:`certun.unlearners.guo.certified_removal` (buffer new rows and solve, four ``O(d^2)``
passes per head); the frozen-feature and Newton unlearners use the same functions.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
from jax import lax

from certun.results import RESULTS

__all__ = ["CurvatureCache", "CacheSolution", "METHODS", "bucket", "init", "solve", "downdate",
           "downdate_solve", "uprate", "fold", "refresh", "neumann_terms_for",
           "eig_woodbury", "REINVERT_RATIO", "MEASURED_REINVERT_RATIO",
           "MEASURED_EVERY_REINVERT_RATIO"]

METHODS = ("eigh", "cholesky")

#: ``"cholesky"``: a fold updates the inverse by Woodbury at its shift while the rows removed
#: since it was inverted, plus a full buffer, stay within this fraction of the rows then (the
#: Neumann ratio ``q``; ``proofs/cached_factors.md`` §5); else it re-inverts.
REINVERT_RATIO = 0.05

#: The same ratio where every residual that reaches a certificate is measured (the measured
#: restart of :func:`certun.unlearners.guo.certified_removal`): the Neumann truncation only
#: enters the measured, charged solve residual, so folds stay cheap Woodbury updates longer.
MEASURED_REINVERT_RATIO = 0.25

#: The same where every request's gradient is measured and none is bounded
#: (``measure_every``): the truncation only slows the cancellation of the residual.
MEASURED_EVERY_REINVERT_RATIO = 0.5


class CurvatureCache(NamedTuple):
    """The maintained factorisation (a pytree; the caller holds it).

    Attributes:
      curv: ``(K, d, d)`` stored curvature ``A_k`` (the folded rows subtracted).
      eigvals, eigvecs: ``(K, d)`` and ``(K, d, d)`` eigendecomposition of ``curv``
        (``"eigh"``; ``None`` with ``"cholesky"``).
      rows: ``(cap, d)`` buffered rows; ``h``: ``(cap, K)`` their weights.
      proj: ``(K, cap, d)``: ``Q_k^T x_j sqrt(h_jk)`` (``"eigh"``) or ``B_k x_j sqrt(h_jk)``.
      filled: rows held in the buffer (int32).
      inv: ``(K, d, d)`` fixed-shift inverse ``B_k`` (``"cholesky"``; else ``None``).
      cap: ``(K, cap, cap)`` Cholesky factors of the capacitance ``I - P_k B_k P_k^T``
        (identity beyond ``filled``; ``"cholesky"`` only).
      inv_rows: ``n_f``, the rows present when ``inv`` was formed (``"cholesky"`` only).
    """

    # the fields a method does not use hold None (typed Any: a pytree leaf or None)
    curv: jax.Array
    eigvals: Any
    eigvecs: Any
    rows: jax.Array
    h: jax.Array
    proj: jax.Array
    filled: jax.Array
    inv: Any = None
    cap: Any = None
    inv_rows: Any = None


class CacheSolution(NamedTuple):
    """What a cache operation achieved.

    Attributes:
      value: the solution ``(d, K)`` (``None`` for operations that solve nothing).
      residual: ``||T x - v||_F`` against the stored curvature (0 where nothing is solved).
      result: a :class:`certun.results.RESULTS` code (int32).
    """

    value: Any  # jax.Array, or None for operations that solve nothing
    residual: jax.Array
    result: jax.Array


def _code(ok: jax.Array, finite: jax.Array) -> jax.Array:
    code = jnp.where(ok, jnp.int32(RESULTS.successful), jnp.int32(RESULTS.not_positive_definite))
    return jnp.where(finite, code, jnp.int32(RESULTS.nonfinite))


def bucket(k: int, cap: int) -> int:
    """Static width of the capacitance: the smallest power of two >= ``k``, 32 to ``cap``.

    Few widths, few compilations; below 32 rows the ``O(d k^2)`` capacitance costs less than
    one ``O(d^2)`` pass anyway.
    """
    b = 32
    while b < k:
        b *= 2
    return min(b, cap)


def eig_woodbury(eigvals: jax.Array, Pm: jax.Array, shift: jax.Array, y: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """Solve ``(diag(eigvals + shift) - Pm^T Pm) x = y`` in eigen-coordinates.

    Woodbury with ``D = diag(1 / (eigvals + shift))`` and the ``k x k`` capacitance
    ``C = I - Pm D Pm^T``: ``x = D (y + Pm^T C^{-1} Pm D y)``, ``O(d k^2 + k^3)``. By
    Haynsworth's inertia formula the matrix is PD exactly when ``C`` is, which the
    Cholesky factorisation of ``C`` tests (zero rows of ``Pm``, unused buffer slots,
    leave ``C`` the identity there). Returns ``(x, pd_ok)``.
    """
    ws = eigvals + shift
    pd = jnp.all(ws > 0)
    dinv = 1.0 / jnp.where(ws > 0, ws, 1.0)
    C = jnp.eye(Pm.shape[0], dtype=y.dtype) - jnp.einsum("cd,ed->ce", Pm * dinv[None, :], Pm)
    L = jnp.linalg.cholesky(0.5 * (C + C.T))
    ok = pd & jnp.all(jnp.isfinite(L))
    z = jax.scipy.linalg.cho_solve((L, True), Pm @ (dinv * y))
    return dinv * (y + jnp.einsum("c,cd->d", z, Pm)), ok


def chol_inverse(A: jax.Array) -> jax.Array:
    """``A^{-1}`` of a symmetric matrix through its Cholesky factor (NaN where not PD)."""
    L = jnp.linalg.cholesky(0.5 * (A + A.T))
    Ainv = jax.scipy.linalg.cho_solve((L, True), jnp.eye(A.shape[-1], dtype=A.dtype))
    return 0.5 * (Ainv + Ainv.T)


def shifted_inverse(curv: jax.Array, lam: float, n: jax.Array) -> jax.Array:
    """``(curv_k + lam n I)^{-1}`` per head (Cholesky)."""
    eye = jnp.eye(curv.shape[-1], dtype=curv.dtype)
    return jax.vmap(chol_inverse)(curv + (lam * n) * eye)


class _Appended(NamedTuple):
    """The rows ``old`` (zero from row ``at`` on) with ``new`` written at row ``at``.

    Never formed: forming it would copy ``old`` (a whole buffer at the widest bucket); its
    products are those of ``old`` plus the new rows' (exact: the rows they replace are zero).
    """

    old: jax.Array
    new: jax.Array
    at: jax.Array


def _rows_mv(Y: Any, v: jax.Array) -> jax.Array:
    """``Y v`` for rows ``Y`` (an array or :class:`_Appended`)."""
    if isinstance(Y, _Appended):
        return lax.dynamic_update_slice(Y.old @ v, Y.new @ v, (Y.at,))
    return Y @ v


def _rows_rmv(c: jax.Array, Y: Any) -> jax.Array:
    """``c^T Y`` for rows ``Y`` (an array or :class:`_Appended`)."""
    if isinstance(Y, _Appended):
        return c @ Y.old + lax.dynamic_slice(c, (Y.at,), (Y.new.shape[0],)) @ Y.new
    return c @ Y


def chol_apply(Bv: jax.Array, v: jax.Array, Yk: Any, Lk: jax.Array) -> jax.Array:
    """``T_0^{-1} v = B v + Y^T C^{-1} (Y v)``: Woodbury on the fixed-shift inverse ``B``.

    ``T_0 = B^{-1} - P^T P`` (the buffered rows ``P``), ``Y = P B`` (rows ``B p_j``) and
    ``C = I - P B P^T = L L^T`` (``proofs/cached_factors.md`` §5); ``O(d k + k^2)``. ``Yk``:
    the rows ``Y`` (an array, or the stored rows with a request's new rows appended).
    """
    return Bv + _rows_rmv(jax.scipy.linalg.cho_solve((Lk, True), _rows_mv(Yk, v)), Yk)


def chol_neumann(B: jax.Array, Yk: Any, Lk: jax.Array, mu: jax.Array, v: jax.Array,
                 Bv: jax.Array, terms: int) -> jax.Array:
    """``(T_0 - mu I)^{-1} v`` by the Neumann series ``sum_{j <= terms} mu^j T_0^{-(j+1)} v``.

    The shift moves by ``lambda`` per removed row while ``B`` is fixed between folds:
    ``mu = lambda t`` for the ``t`` rows removed since. The series converges with ratio
    ``mu ||T_0^{-1}|| <= t / n_f``; its truncation error is part of the measured residual
    (``proofs/cached_factors.md`` §5). ``terms`` passes over ``B`` (static).
    """
    e = chol_apply(Bv, v, Yk, Lk)
    x = e
    for _ in range(terms):
        e = mu * chol_apply(e @ B, e, Yk, Lk)  # B is symmetric: e @ B = B e
        x = x + e
    return x


def neumann_terms_for(n_f: int, n: int, rel: float = 1e-17) -> tuple[int, float]:
    """Terms after the first that bring the Neumann tail ``q^(J+1)/(1-q)`` below ``rel``.

    ``q = (n_f - n) / n_f`` (host integers). Returns ``(J, q)``.
    """
    q = (n_f - n) / n_f
    terms = 0 if q <= 0 else max(0, math.ceil(math.log(rel * (1 - q)) / math.log(q)) - 1)
    return terms, q


def empty_buffers(d: int, K: int, dtype, max_rank: int, method: str) -> dict:
    """Empty buffer fields of a cache (``rows``, ``h``, ``proj``, ``filled``, ``cap``)."""
    out = dict(rows=jnp.zeros((max_rank, d), dtype), h=jnp.zeros((max_rank, K), dtype),
               proj=jnp.zeros((K, max_rank, d), dtype), filled=jnp.asarray(0, jnp.int32),
               cap=None)
    if method == "cholesky":
        out["cap"] = jnp.broadcast_to(jnp.eye(max_rank, dtype=dtype), (K, max_rank, max_rank))
    return out


def init(curv: jax.Array, lam: float, n: jax.Array, *, method: str = "eigh",
         max_rank: int = 128) -> CurvatureCache:
    """Factor ``curv`` (``(K, d, d)``, symmetric) once: ``O(K d^3)``; jit-able.

    Args:
      curv: the stored curvature per head.
      lam: the regulariser per row (the shift is ``lam * n``).
      n: rows present (``"cholesky"`` fixes its shift there).
      method: ``"eigh"`` or ``"cholesky"`` (static).
      max_rank: buffer capacity (static).
    """
    K, d = curv.shape[0], curv.shape[-1]
    bufs = empty_buffers(d, K, curv.dtype, max_rank, method)
    if method == "cholesky":
        return CurvatureCache(curv, None, None, inv=shifted_inverse(curv, lam, n),
                              inv_rows=jnp.asarray(n).astype(jnp.int32), **bufs)
    w, Q = jax.vmap(jnp.linalg.eigh)(curv)
    return CurvatureCache(curv, w, Q, **bufs)


def refresh(cache: CurvatureCache, curv: jax.Array, lam: float, n: jax.Array) -> CurvatureCache:
    """Replace the stored curvature by ``curv`` (e.g. at a new point) and re-factor it."""
    return init(curv, lam, n, method="cholesky" if cache.inv is not None else "eigh",
                max_rank=cache.rows.shape[0])


def _head_eigh(fac, dk, xu, hk_new, hk, k, kb, shift, mu, terms):
    del hk, mu, terms
    Q, lam_k, P = fac
    yq = jnp.concatenate([dk[None, :], xu], axis=0) @ Q  # rows: Q^T Delta_k, Q^T x_j
    p_new = yq[1:] * jnp.sqrt(hk_new)[:, None]
    xt, ok = eig_woodbury(lam_k, lax.dynamic_update_slice(P[:kb], p_new, (k, jnp.int32(0))),
                          shift, yq[0])
    return Q @ xt, (p_new,), ok


def _head_chol(fac, dk, xu, hk_new, hk, k, kb, shift, mu, terms, rows_k):
    del shift
    B, Yb, Lc = fac
    zero = jnp.int32(0)
    m = xu.shape[0]
    # one pass over B for B Delta_k and B x_j; the capacitance C = I - P B P^T of the
    # buffered rows P (rows sqrt(h_j) x_j) gains the new rows' Cholesky rows
    BV = jnp.concatenate([dk[None, :], xu], axis=0) @ B
    y_new = BV[1:] * jnp.sqrt(hk_new)[:, None]  # rows B p_j of the new rows
    Yk = _Appended(Yb[:kb], y_new, k)  # rows k.. of the stored Yb are empty (zero)
    Pk = rows_k * jnp.sqrt(hk[:kb])[:, None]
    col = Pk @ y_new.T  # (kb, m): p_i^T B p_j
    old = (jnp.arange(kb) < k)[:, None]
    Z = jax.scipy.linalg.solve_triangular(Lc[:kb, :kb], jnp.where(old, -col, 0.0), lower=True)
    C22 = jnp.eye(m, dtype=dk.dtype) - lax.dynamic_slice(col, (k, zero), (m, m))
    L22 = jnp.linalg.cholesky(0.5 * (C22 + C22.T) - Z.T @ Z)
    L_new = lax.dynamic_update_slice(Z.T, L22, (zero, k))  # the new rows of L, (m, kb)
    Lk = lax.dynamic_update_slice(Lc[:kb, :kb], L_new, (k, zero))
    ok = jnp.all(jnp.isfinite(L22)) & jnp.all(jnp.diagonal(L22) > 0)
    return chol_neumann(B, Yk, Lk, mu, dk, BV[0], terms), (y_new, L_new), ok


class StepMeasure(NamedTuple):
    """Quantities :func:`downdate_solve` measures along with its solve (per head ``(K,)``).

    ``a_x``/``a_u``: ``x^T A' x`` and ``u^T A' u`` (``A'`` the stored curvature minus the
    buffered rows, no shift); ``b_x``/``b_u``: ``||X_B x||^2`` and ``||X_B u||^2`` over the
    buffered rows ``X_B``.
    """

    a_x: jax.Array
    a_u: jax.Array
    b_x: jax.Array
    b_u: jax.Array


def downdate_solve(cache: CurvatureCache, V: jax.Array, rows: jax.Array, h: jax.Array,
                   lam: float, n: jax.Array, probe: jax.Array, *, kb: int,
                   neumann_terms: int = 2, measure: bool = True
                   ) -> tuple[CurvatureCache, CacheSolution, StepMeasure]:
    """Buffer ``m`` removed ``rows`` (weights ``h``, ``(m, K)``) and solve ``T x = V``.

    ``T`` is the cache's matrix after the downdate with ``n`` rows present; four ``O(d^2)``
    passes per head plus ``O(d k^2)`` (``"eigh"``) or ``O(d k)`` (``"cholesky"``). The
    residual is measured against ``T`` formed from the stored curvature, whatever the solve.
    ``probe`` (``(d, K)``) gets its quadratic forms measured in the same passes (e.g. the
    drift ``w - w_f`` of a stale curvature). ``kb`` (static) is a buffer width holding
    ``filled + m`` rows (:func:`bucket`). Needs ``filled + m <= max_rank``.
    ``measure=False`` (static) skips the pass over the stored curvature: the residual and the
    quadratic forms come back NaN (for a caller that measures what it needs otherwise, e.g.
    the gradient itself), and the code covers the solve alone.
    """
    chol = cache.inv is not None
    k = cache.filled
    m = rows.shape[0]
    zero = jnp.int32(0)
    rbuf = lax.dynamic_update_slice(cache.rows, rows, (k, zero))
    hbuf = lax.dynamic_update_slice(cache.h, h, (k, zero))
    rows_k = rbuf[:kb]
    shift = lam * n
    K = V.shape[1]
    mu = lam * (cache.inv_rows - n) if chol else None

    def head(fac, A, dk, hk_new, hk, uk):
        if chol:
            dlt, bufs, ok = _head_chol(fac, dk, rows, hk_new, hk, k, kb, shift, mu,
                                       neumann_terms, rows_k)
        else:
            dlt, bufs, ok = _head_eigh(fac, dk, rows, hk_new, hk, k, kb, shift, mu, 0)
        if not measure:
            nan = jnp.full((), jnp.nan, dlt.dtype)
            return dlt, bufs, ok, nan, nan, nan, nan, nan
        Adu = jnp.stack([dlt, uk]) @ A  # rows: curv^T delta, curv^T u
        bd, bu = rows_k @ dlt, rows_k @ uk
        hb = hk[:kb]
        Ad = Adu[0] - (hb * bd) @ rows_k  # A' delta
        res = Ad + shift * dlt - dk
        return (dlt, bufs, ok, jnp.sum(res * res), dlt @ Ad,
                uk @ Adu[1] - jnp.sum(hb * bu * bu), jnp.sum(bd * bd), jnp.sum(bu * bu))

    fac = ((cache.inv, cache.proj, cache.cap) if chol
           else (cache.eigvecs, cache.eigvals, cache.proj))
    args = (fac, cache.curv, V.T, h.T, hbuf.T, probe.T)
    if K <= 2:  # unrolled: matrix-vector passes (XLA:CPU's thin GEMMs are slower)
        outs = [head(*jax.tree.map(lambda a, j=j: a[j], args)) for j in range(K)]
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
    else:  # one-vs-rest: vmapped over heads
        stacked = jax.vmap(head)(*args)
    dT, bufs, oks, res2, a_dd, a_uu, bdd, buu = stacked
    bufs = cast(tuple[Any, ...], bufs)  # the new rows of (proj, cap)
    x = dT.T
    res = jnp.sqrt(jnp.sum(res2))
    # each head returned its new rows only: one update of each whole buffer, here
    new = cache._replace(rows=rbuf, h=hbuf, filled=k + m,
                         proj=lax.dynamic_update_slice(cache.proj, bufs[0], (zero, k, zero)),
                         cap=(lax.dynamic_update_slice(cache.cap, bufs[1], (zero, k, zero))
                              if chol else None))
    finite = jnp.all(jnp.isfinite(x)) & (jnp.isfinite(res) if measure else True)
    code = _code(jnp.all(oks), finite)
    return new, CacheSolution(x, res, code), StepMeasure(a_dd, a_uu, bdd, buu)


def solve(cache: CurvatureCache, V: jax.Array, lam: float, n: jax.Array, *,
          kb: int | None = None, neumann_terms: int = 2) -> CacheSolution:
    """Solve ``T x = V`` (``(d, K)``) with the maintained factor, ``n`` rows present.

    ``kb`` (static) is a buffer width holding ``filled`` rows (default the whole buffer);
    ``neumann_terms`` the terms of the ``"cholesky"`` series after the first (see
    :func:`neumann_terms_for`). Returns the solution with its residual measured against the
    stored curvature.
    """
    kb = cache.rows.shape[0] if kb is None else kb
    shift = lam * n
    if cache.inv is not None:
        mu = lam * (cache.inv_rows - n)
        X = jnp.stack([
            chol_neumann(cache.inv[j], cache.proj[j, :kb], cache.cap[j, :kb, :kb], mu, V[:, j],
                         cache.inv[j] @ V[:, j], neumann_terms)
            for j in range(V.shape[1])], axis=1)
        ok = jnp.all(jnp.isfinite(cache.cap))
    else:
        def head(lam_k, Q, P, v):
            x, ok = eig_woodbury(lam_k, P[:kb], shift, v @ Q)
            return Q @ x, ok

        X, oks = jax.vmap(head, in_axes=(0, 0, 0, 1), out_axes=(1, 0))(
            cache.eigvals, cache.eigvecs, cache.proj, V)
        ok = jnp.all(oks)
    R = cache.rows[:kb]
    hb = cache.h[:kb]
    TX = (jnp.einsum("kde,ek->dk", cache.curv, X) - R.T @ (hb * (R @ X)) + shift * X)
    res = jnp.linalg.norm(TX - V)
    return CacheSolution(X, res, _code(ok, jnp.all(jnp.isfinite(X)) & jnp.isfinite(res)))


def downdate(cache: CurvatureCache, rows: jax.Array, h: jax.Array, lam: float, n: jax.Array, *,
             kb: int, neumann_terms: int = 2) -> tuple[CurvatureCache, CacheSolution]:
    """Buffer ``rows`` (weights ``h``) as removed; ``O(d^2 m)``.

    The result code says whether the downdated matrix is positive definite (the capacitance's
    Cholesky factor). ``kb`` (static) is a buffer width holding ``filled + m`` rows.
    """
    zero = jnp.zeros((rows.shape[1], h.shape[1]), rows.dtype)
    new, sol, _ = downdate_solve(cache, zero, rows, h, lam, n, zero, kb=kb,
                                 neumann_terms=neumann_terms)
    return new, sol._replace(value=None)


def fold(cache: CurvatureCache, lam: float, n: jax.Array, *,
         reinvert_ratio: float = REINVERT_RATIO) -> tuple[CurvatureCache, CacheSolution]:
    """Fold the buffered rows into the factorisation at the same point (no data pass).

    ``"eigh"``: ``O(d^3)``. ``"cholesky"``: Woodbury at the inverse's shift, ``O(d^2 k)``, while
    the drift the next buffer can reach keeps the Neumann ratio <= ``reinvert_ratio``
    (default :data:`REINVERT_RATIO`; static); else re-inverts at ``n``. The buffer is emptied.
    """
    R = cache.rows
    max_rank = R.shape[0]
    curv = cache.curv - jnp.einsum("ck,cd,ce->kde", cache.h, R, R)
    curv = 0.5 * (curv + jnp.swapaxes(curv, 1, 2))
    K, d = curv.shape[0], curv.shape[-1]
    chol = cache.inv is not None
    bufs = empty_buffers(d, K, curv.dtype, max_rank, "cholesky" if chol else "eigh")
    if chol:
        drift = cache.inv_rows - n

        def woodbury(_):
            def head(B, Y, L):
                Bn = B + Y.T @ jax.scipy.linalg.cho_solve((L, True), Y)
                return 0.5 * (Bn + Bn.T)
            return jax.vmap(head)(cache.inv, cache.proj, cache.cap), cache.inv_rows

        def reinvert(_):
            return shifted_inverse(curv, lam, n), jnp.asarray(n).astype(jnp.int32)

        inv, inv_rows = lax.cond(drift + max_rank <= reinvert_ratio * cache.inv_rows,
                                 woodbury, reinvert, None)
        new = CurvatureCache(curv, None, None, inv=inv, inv_rows=inv_rows, **bufs)
        ok = jnp.all(jnp.isfinite(inv))
        return new, CacheSolution(None, jnp.zeros((), curv.dtype), _code(ok, ok))
    w, Q = jax.vmap(jnp.linalg.eigh)(curv)
    new = CurvatureCache(curv, w, Q, **bufs)
    ok = jnp.all(w + lam * n > 0)
    return new, CacheSolution(None, jnp.zeros((), curv.dtype), _code(ok, jnp.all(jnp.isfinite(w))))


def uprate(cache: CurvatureCache, rows: jax.Array, h: jax.Array, lam: float, n: jax.Array
           ) -> tuple[CurvatureCache, CacheSolution]:
    """Add rows (``T + sum_j h_j x_j x_j^T``): folds the buffer and the rows in, ``O(d^3)``.

    ``n`` counts the rows present afterwards. Uprates are rare (rows re-admitted, new data on
    a frozen-feature head) and keep the buffer a pure downdate, whose capacitance stays PD.
    """
    added = jnp.einsum("ck,cd,ce->kde", h, rows, rows)
    folded, sol = fold(cache._replace(curv=cache.curv + added), lam, n)
    if folded.inv is not None:  # re-invert: the fixed-shift inverse excludes the new rows
        folded = folded._replace(inv=shifted_inverse(folded.curv, lam, n),
                                 inv_rows=jnp.asarray(n).astype(jnp.int32))
    return folded, sol
