"""Inverse-Hessian-vector solvers behind one interface: set up once, solve many times.

Every solver is a factory returning an :class:`InverseSolver` ``(init, solve)``:

* ``state = solver.init(operator)`` does the expensive, request-independent work
  (a factorisation, a curvature-scale estimate);
* ``sol = solver.solve(state, v, ...)`` returns a :class:`certun.results.Solution`
  with the solution, the **achieved residual** ``||A x - v||_2`` measured on the
  operator itself (never a recursive estimate), the number of iterations, and a
  result code. Certificates fold that residual into their bounds; as a floating-point
  number it carries its own rounding error, up to about
  ``gamma_{d+2} (||A||_F ||x|| + ||v||)`` with ``gamma_k = k u / (1 - k u)``, which a
  consumer turning it into a certified bound must add (both certified unlearners do).

Solvers:

* :func:`dense_solver` (``"eigh"`` or ``"cholesky"``): factor a dense ``d x d``
  matrix once. With ``"eigh"``, ``A = Q diag(w) Q^T`` absorbs any diagonal shift
  exactly (``A + s I = Q diag(w + s) Q^T``), and a low-rank change
  ``A + s I + U diag(c) U^T`` is solved by the Woodbury identity in ``O(d^2 m)``.
  A Cholesky factor cannot absorb a full-rank shift: with a shift or a low-rank
  change it is used as the preconditioner of CG on the exact operator (iterative
  refinement), and the achieved residual is reported.
* :func:`cg_solver`: matrix-free (preconditioned) conjugate gradients on a
  :class:`~certun.primitives.curvature.LinearOperator` (or a ``lineax`` operator). The
  iteration is ``lineax.CG``; certun measures the achieved residual on the operator
  itself and sets the result code. When ``lineax`` stops without meeting the tolerance,
  certun's own :func:`pcg` continues from its iterate and diagnoses why: a non-positive
  curvature ``p^T A p <= 0`` (operator not PD), a preconditioner breakdown, or the step
  limit, never a silent NaN.

Which code is ``lineax``'s and which stays certun's: ``lineax`` runs the Krylov iteration
of the matrix-free CG path (``cg_solver(backend="lineax")``, the default); :func:`pcg`
stays hand-written because certification needs its result codes computed inside ``jit``
(``not_positive_definite`` and ``breakdown`` from the CG coefficients, which ``lineax``
does not expose), and the dense path (:func:`dense_solver`: a shift absorbed exactly in an
eigendecomposition, Woodbury updates) and :func:`lissa_solver` (Koh & Liang's scaled,
damped recursion with its divergence test) have no ``lineax`` counterpart. All solvers
accept ``lineax`` operators (:func:`as_operator`).
* :func:`lissa_solver`: the stochastic Neumann-series estimator of Agarwal et al.
  (2017) in the form of Koh & Liang (2017), run as a ``lax.scan``; it returns
  ``(H + damping * scale * I)^{-1} v``, estimates ``scale`` from the largest
  eigenvalue unless given, and detects divergence.

References:
  M. R. Hestenes and E. Stiefel, "Methods of conjugate gradients for solving
  linear systems", 1952. N. Agarwal, B. Bullins, E. Hazan, "Second-order
  stochastic optimization for machine learning in linear time", JMLR 2017
  (arXiv:1602.03943). P. W. Koh and P. Liang, "Understanding black-box
  predictions via influence functions", ICML 2017 (arXiv:1703.04730).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from certun._tree import all_finite, ravel, tree_axpy, tree_norm, tree_sub, tree_vdot
from certun.primitives.curvature import LinearOperator, dense_matrix
from certun.primitives.spectral import power_iteration
from certun.results import RESULTS, Solution

__all__ = [
    "as_operator",
    "InverseSolver",
    "DenseFactor",
    "LissaState",
    "pcg",
    "eigh_solve",
    "dense_solver",
    "cg_solver",
    "lissa_solver",
]

PyTree = Any


class InverseSolver(NamedTuple):
    """An inverse-operator solver: ``state = init(operator)``, ``solve(state, v, ...)``.

    ``init`` and ``solve`` are pure functions; ``solve`` returns a
    :class:`certun.results.Solution`.
    """

    init: Callable[..., Any]
    solve: Callable[..., Solution]


def _code(cond: jax.Array, code: RESULTS, otherwise: jax.Array) -> jax.Array:
    return jnp.where(cond, jnp.int32(code), otherwise)


def _is_lineax_operator(operator: Any) -> bool:
    # lineax is imported only when the caller already has (so imported) a lineax operator
    import sys

    lx = sys.modules.get("lineax")
    return lx is not None and isinstance(operator, lx.AbstractLinearOperator)


def as_operator(operator: Any) -> LinearOperator:
    """A certun :class:`LinearOperator` from a certun operator, a dense matrix or a ``lineax`` one.

    ``lineax`` operators (``lineax.MatrixLinearOperator``, ``FunctionLinearOperator``,
    ``JacobianLinearOperator``, ...) keep their ``mv`` and input structure; a dense
    ``(d, d)`` array becomes ``v -> A v``. The solvers call this in ``init``, so each
    accepts all three.

    Args:
      operator: a :class:`LinearOperator`, a square 2-D array, or a
        ``lineax.AbstractLinearOperator`` (symmetric, as the solvers assume).

    Returns:
      The operator as a :class:`LinearOperator`.
    """
    if isinstance(operator, LinearOperator):
        return operator
    if _is_lineax_operator(operator):
        return LinearOperator(operator.mv, operator.in_structure())
    if isinstance(operator, (jax.Array, jnp.ndarray)) or hasattr(operator, "shape"):
        A = jnp.asarray(operator)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"operator must be a square matrix, got shape {A.shape}")
        return LinearOperator(lambda v: A @ v, jax.ShapeDtypeStruct((A.shape[0],), A.dtype))
    raise TypeError("operator must be a certun LinearOperator, a square matrix or a lineax "
                    f"operator, got {type(operator).__name__}")


# --------------------------------------------------------------------------- CG


def pcg(mv: Callable[[PyTree], PyTree], b: PyTree, *,
        precond: Callable[[PyTree], PyTree] | None = None,
        x0: PyTree | None = None, rtol: float = 1e-10, atol: float = 0.0,
        max_steps: int = 1000, stabilise_every: int = 20) -> Solution:
    r"""Preconditioned conjugate gradients for ``A x = b`` with ``A`` symmetric positive definite.

    .. math::
        \alpha_k = \frac{r_k^\top z_k}{p_k^\top A p_k},\quad
        x_{k+1} = x_k + \alpha_k p_k,\quad r_{k+1} = r_k - \alpha_k A p_k,\quad
        z = M r,\quad p_{k+1} = z_{k+1} + \frac{r_{k+1}^\top z_{k+1}}{r_k^\top z_k} p_k .

    Stops when ``||b - A x||_2 <= max(rtol ||b||_2, atol)`` (a 2-norm test).
    The residual is recomputed from scratch every ``stabilise_every`` steps and
    at the end, so the reported ``residual_norm`` is the true residual of the
    returned ``x``. A step with ``p^T A p <= 0`` stops with
    ``RESULTS.not_positive_definite`` (``A`` is not PD), and ``r^T M r <= 0``
    with ``RESULTS.breakdown`` (the preconditioner ``M`` is not PD).

    Args:
      mv: ``x -> A x`` over pytrees.
      b: right-hand side.
      precond: ``r -> M r`` with ``M ~ A^{-1}`` symmetric positive definite (identity if
        None).
      x0: initial guess (zeros if None).
      rtol: relative tolerance: stop once ``||b - A x||_2 <= rtol ||b||_2`` (or ``atol``).
      atol: absolute tolerance on ``||b - A x||_2`` (the stopping threshold is
        ``max(rtol ||b||_2, atol)``).
      max_steps: iteration limit.
      stabilise_every: recompute ``r = b - A x`` every this many steps.

    Returns:
      A :class:`~certun.results.Solution`.
    """
    M = precond if precond is not None else (lambda r: r)
    x = jax.tree.map(jnp.zeros_like, b) if x0 is None else x0
    r = tree_sub(b, mv(x))
    z = M(r)
    rz = tree_vdot(r, z)
    bnorm = tree_norm(b)
    tol = jnp.maximum(rtol * bnorm, atol)

    def cond(c):
        _, r, _, _, _, k, code = c
        return (tree_norm(r) > tol) & (k < max_steps) & (code == RESULTS.successful)

    def body(c):
        x, r, p, z, rz, k, code = c
        Ap = mv(p)
        pAp = tree_vdot(p, Ap)
        ok = pAp > 0
        alpha = jnp.where(ok, rz / jnp.where(ok, pAp, 1.0), 0.0)
        x_new = tree_axpy(alpha, p, x)
        r_new = lax.cond(
            (k + 1) % stabilise_every == 0,
            lambda: tree_sub(b, mv(x_new)),
            lambda: tree_axpy(-alpha, Ap, r),
        )
        z_new = M(r_new)
        rz_new = tree_vdot(r_new, z_new)
        prec_ok = (rz_new > 0) | (tree_norm(r_new) == 0)
        beta = jnp.where(rz > 0, rz_new / jnp.where(rz > 0, rz, 1.0), 0.0)
        p_new = tree_axpy(beta, p, z_new)
        code = _code(~ok, RESULTS.not_positive_definite, code)
        code = _code(ok & ~prec_ok, RESULTS.breakdown, code)
        x_new = jax.tree.map(lambda a, b_: jnp.where(ok, a, b_), x_new, x)
        return x_new, r_new, p_new, z_new, rz_new, k + 1, code

    init = (x, r, z, z, rz, jnp.int32(0), jnp.int32(RESULTS.successful))
    x, r, _, _, _, k, code = lax.while_loop(cond, body, init)
    res = tree_norm(tree_sub(b, mv(x)))
    finite = jnp.isfinite(res)
    code = _code((code == RESULTS.successful) & (res > tol), RESULTS.max_steps_reached, code)
    code = _code(~finite, RESULTS.nonfinite, code)
    return Solution(x, res, k, code)


def _lineax_cg(mv: Callable[[PyTree], PyTree], b: PyTree, *,
               precond: Callable[[PyTree], PyTree] | None, x0: PyTree | None, rtol: float,
               atol: float, max_steps: int) -> Solution:
    """``lineax.CG`` for the iteration; certun's residual check and result codes on top."""
    import lineax as lx

    structure = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)),
                             b)
    op = lx.FunctionLinearOperator(mv, structure, tags=lx.positive_semidefinite_tag)
    tol = jnp.maximum(rtol * tree_norm(b), atol)
    # lineax stops when ||r / scale|| <= 1 in its norm: with rtol=0 and the 2-norm this is
    # certun's test ||b - A x||_2 <= tol (lineax also asks the last update to be small).
    solver = lx.CG(rtol=0.0, atol=tol, norm=tree_norm, max_steps=max_steps,  # type: ignore[arg-type]
                   stabilise_every=20)
    options: dict[str, Any] = {}
    if x0 is not None:
        options["y0"] = x0
    if precond is not None:
        options["preconditioner"] = lx.FunctionLinearOperator(
            precond, structure, tags=lx.positive_semidefinite_tag)
    sol = lx.linear_solve(op, b, solver, options=options, throw=False)
    x = sol.value
    steps = jnp.asarray(sol.stats["num_steps"], jnp.int32)
    res = tree_norm(tree_sub(b, mv(x)))  # certun's residual, measured on the operator
    ok = jnp.isfinite(res) & (res <= tol)
    # b^T x = b^T A^{-1} b > 0 for a PD operator: a negative value proves A is not PD
    code = _code(tree_vdot(b, x) < 0, RESULTS.not_positive_definite,
                 jnp.int32(RESULTS.successful))

    def accept() -> Solution:
        return Solution(x, res, steps, code)

    def diagnose() -> Solution:
        # lineax stopped short: continue with certun's CG, which names the failure
        start = jax.tree.map(lambda xi: jnp.where(jnp.isfinite(xi), xi, 0.0), x)
        start = jax.lax.cond(all_finite(x), lambda: start,
                             lambda: jax.tree.map(jnp.zeros_like, b))
        more = pcg(mv, b, precond=precond, x0=start, rtol=rtol, atol=atol,
                   max_steps=max_steps - steps)  # type: ignore[arg-type]
        return Solution(more.value, more.residual_norm, steps + more.num_steps, more.result)

    return jax.lax.cond(ok, accept, diagnose)


def cg_solver(rtol: float = 1e-10, atol: float = 0.0, max_steps: int = 1000,
              preconditioner: Callable[[PyTree], PyTree] | None = None, *,
              backend: str = "lineax") -> InverseSolver:
    """Matrix-free conjugate gradients on a :class:`LinearOperator` (or a ``lineax`` operator).

    ``init(operator)`` returns the operator as a :class:`LinearOperator`
    (:func:`as_operator`: a certun operator, a square matrix, or a ``lineax`` operator);
    ``solve(state, v, x0=None)`` runs (preconditioned) CG. With ``backend="lineax"``
    (default) the iteration is ``lineax.CG``; certun then measures ``||A x - v||_2`` on the
    operator, reports ``successful`` when it meets the tolerance (``not_positive_definite``
    when ``v^T x < 0``, which no PD operator allows), and otherwise continues with
    :func:`pcg` from ``lineax``'s iterate, which names the failure
    (``not_positive_definite``, ``breakdown``, ``max_steps_reached``; ``num_steps`` counts
    both). ``backend="certun"`` runs :func:`pcg` only. For a Hessian that may be indefinite
    (nonconvex models) add damping (:func:`~certun.primitives.curvature.damped`) or use the
    Gauss-Newton operator.

    Args:
      rtol: relative tolerance on the residual 2-norm (relative to ``||v||_2``, the
        right-hand side of each solve).
      atol: absolute tolerance on the residual 2-norm; CG stops at
        ``max(rtol ||v||_2, atol)``.
      max_steps: iteration limit (both backends together).
      preconditioner: optional ``r -> M r`` approximating the inverse.
      backend: ``"lineax"`` (``lineax.CG`` with certun's checks) or ``"certun"``
        (:func:`pcg`).
    """
    if backend not in ("lineax", "certun"):
        raise ValueError(f"backend must be 'lineax' or 'certun', got {backend!r}")

    def init(operator: Any) -> LinearOperator:
        return as_operator(operator)

    def solve(state: LinearOperator, v: PyTree, x0: PyTree | None = None) -> Solution:
        if backend == "lineax":
            return _lineax_cg(state.mv, v, precond=preconditioner, x0=x0, rtol=rtol,
                              atol=atol, max_steps=max_steps)
        return pcg(state.mv, v, precond=preconditioner, x0=x0, rtol=rtol, atol=atol,
                   max_steps=max_steps)

    return InverseSolver(init, solve)


# ----------------------------------------------------------------------- dense


class DenseFactor(NamedTuple):
    """A factorised dense symmetric matrix.

    Attributes:
      matrix: the (symmetrised) matrix ``A`` itself, kept to measure residuals exactly.
      eigvals: eigenvalues ``w`` of ``A`` (``"eigh"``) or empty.
      factor: eigenvectors ``Q`` (``"eigh"``) or the lower Cholesky factor ``L``.
      result: ``RESULTS.not_positive_definite`` if the Cholesky factorisation failed.
    """

    matrix: jax.Array
    eigvals: jax.Array
    factor: jax.Array
    result: jax.Array


def _woodbury(binv: Callable[[jax.Array], jax.Array], U: jax.Array, c: jax.Array, v: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
    """Solve ``(B + U diag(c) U^T) x = v`` given ``binv = B^{-1}``; returns (x, pd_ok).

    Symmetric form with ``V = U sqrt|c|`` and ``S = diag(sign c)``:
    ``(B + V S V^T)^{-1} = B^{-1} - B^{-1} V (S + V^T B^{-1} V)^{-1} V^T B^{-1}``.
    With ``B`` PD, Haynsworth's inertia formula gives that ``B + V S V^T`` is PD iff
    the capacitance ``S + V^T B^{-1} V`` has as many positive eigenvalues as ``S``
    and none that is zero.
    """
    s = jnp.where(c >= 0, 1.0, -1.0).astype(v.dtype)
    V = U * jnp.sqrt(jnp.abs(c))[None, :]
    m = V.shape[1]
    vv = v[:, None] if v.ndim == 1 else v
    Z = binv(jnp.concatenate([V, vv], axis=1))  # one pass over B^{-1} for both
    BV, bv = Z[:, :m], Z[:, m:]
    cap = jnp.diag(s) + V.T @ BV
    cap = 0.5 * (cap + cap.T)
    x = bv - BV @ jnp.linalg.solve(cap, V.T @ bv)
    x = x[:, 0] if v.ndim == 1 else x
    ev = jnp.linalg.eigvalsh(cap)
    pd_ok = (jnp.sum(ev > 0) == jnp.sum(s > 0)) & jnp.all(ev != 0)
    return x, pd_ok


def eigh_solve(eigvals: jax.Array, eigvecs: jax.Array, v: jax.Array, shift: jax.Array | float = 0.0,
               low_rank: tuple[jax.Array, jax.Array] | None = None) -> tuple[jax.Array, jax.Array]:
    """Solve ``(Q diag(w) Q^T + s I + U diag(c) U^T) x = v`` in ``O(d^2 (m + 1))``.

    The shift is absorbed into the eigenvalues exactly; the low-rank term by the
    symmetric Woodbury identity. ``v`` may be a vector or a ``d x r`` matrix.

    Returns:
      ``(x, pd_ok)`` where ``pd_ok`` says whether the matrix is positive definite.
    """
    ws = eigvals + shift
    pd = jnp.all(ws > 0)
    dinv = 1.0 / jnp.where(ws > 0, ws, 1.0)

    def binv(x: jax.Array) -> jax.Array:
        scale = dinv if x.ndim == 1 else dinv[:, None]
        # Q^T x as a contraction over Q's rows (no transposed copy of Q on XLA:CPU)
        qtx = jnp.einsum("ji,j...->i...", eigvecs, x)
        return eigvecs @ (scale * qtx)

    if low_rank is None:
        return binv(v), pd
    x, pd2 = _woodbury(binv, low_rank[0], low_rank[1], v)
    return x, pd & pd2


def dense_solver(method: str = "eigh", *, rtol: float = 1e-12,
                 max_refine: int = 100) -> InverseSolver:
    r"""Direct solver on a dense matrix: factor once in ``init``, solve many times.

    ``init(A)`` accepts a ``d x d`` array or a
    :class:`~certun.primitives.curvature.LinearOperator` (materialised with
    :func:`~certun.primitives.curvature.dense_matrix`).

    ``solve(state, v, shift=0.0, low_rank=None)`` solves

    .. math:: (A + s I + U \operatorname{diag}(c) U^\top) x = v

    with ``s = shift`` and ``low_rank = (U, c)`` (``U`` of shape ``d x m``; a
    removal of rows ``x_j`` with curvature weights ``h_j`` is ``c = -h``).

    * ``"eigh"``: ``A = Q diag(w) Q^T``; the shift is absorbed exactly and the
      low-rank term by Woodbury, all in ``O(d^2 (m + 1))``.
    * ``"cholesky"``: ``A = L L^T``; without shift or low-rank term two triangular
      solves; otherwise CG on the exact operator preconditioned by ``(L L^T)^{-1}``
      until the residual is below ``rtol ||v||`` (at most ``max_refine`` steps).

    The returned ``residual_norm`` is ``||(A + sI + U diag(c) U^T) x - v||_2``
    computed with the stored matrix; ``result`` is ``not_positive_definite`` when
    the shifted/updated matrix is not PD.

    Args:
      method: ``"eigh"`` or ``"cholesky"``.
      rtol: residual tolerance for the Cholesky refinement (and the success test).
      max_refine: iteration cap of the Cholesky refinement.
    """
    if method not in ("eigh", "cholesky"):
        raise ValueError(f"method must be 'eigh' or 'cholesky', got {method!r}")

    def init(operator: Any) -> DenseFactor:
        if _is_lineax_operator(operator):
            operator = as_operator(operator)
        if isinstance(operator, LinearOperator):
            A = dense_matrix(operator)
        else:
            A = jnp.asarray(operator)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"operator must be a square matrix, got shape {A.shape}")
        A = 0.5 * (A + A.T)
        if method == "eigh":
            w, Q = jnp.linalg.eigh(A)
            return DenseFactor(A, w, Q, jnp.int32(RESULTS.successful))
        L = jnp.linalg.cholesky(A)
        ok = jnp.all(jnp.isfinite(L))
        L = jnp.where(ok, L, jnp.eye(A.shape[0], dtype=A.dtype))
        code = jnp.where(ok, jnp.int32(RESULTS.successful),
                         jnp.int32(RESULTS.not_positive_definite))
        return DenseFactor(A, jnp.zeros((0,), A.dtype), L, code)

    def solve(state: DenseFactor, v: PyTree, shift: float | jax.Array = 0.0,
              low_rank: tuple[jax.Array, jax.Array] | None = None) -> Solution:
        flat, unravel = ravel(v)
        A = state.matrix
        shift = jnp.asarray(shift, A.dtype)

        def full_mv(x: jax.Array) -> jax.Array:
            y = A @ x + shift * x
            if low_rank is not None:
                U, c = low_rank
                y = y + U @ (c * (U.T @ x))
            return y

        if method == "eigh":
            x, pd = eigh_solve(state.eigvals, state.factor, flat, shift, low_rank)
            steps = jnp.int32(0)
            code = jnp.where(pd, jnp.int32(RESULTS.successful),
                             jnp.int32(RESULTS.not_positive_definite))
        else:
            L = state.factor

            def precond(r: jax.Array) -> jax.Array:
                return jax.scipy.linalg.cho_solve((L, True), r)

            sol = pcg(full_mv, flat, precond=precond, x0=precond(flat), rtol=rtol,
                      max_steps=max_refine)
            x, steps, code = sol.value, sol.num_steps, sol.result
            code = jnp.where(state.result != RESULTS.successful, state.result, code)
        res = jnp.linalg.norm(full_mv(x) - flat)
        code = jnp.where(jnp.isfinite(res), code, jnp.int32(RESULTS.nonfinite))
        return Solution(unravel(x), res, steps, code)

    return InverseSolver(init, solve)


# ----------------------------------------------------------------------- LiSSA


class LissaState(NamedTuple):
    """LiSSA set-up: the operator and the scale ``s`` (given, or from an eigenvalue estimate)."""

    operator: LinearOperator
    scale: jax.Array


def lissa_solver(*, scale: float | None = None, damping: float = 0.0, depth: int = 1000,
                 repeats: int = 1, rtol: float | None = None, scale_safety: float = 1.1,
                 power_steps: int = 100) -> InverseSolver:
    r"""LiSSA: a truncated, stochastic Neumann series for ``(H + d s I)^{-1} v``.

    Koh & Liang's recursion, with scale ``s`` and damping ``d``:

    .. math::
        u_0 = v,\qquad u_j = v + (1 - d)\,u_{j-1} - \frac{\hat H_j u_{j-1}}{s},\qquad
        \widehat{x} = \frac{1}{S_1}\sum_{r=1}^{S_1} \frac{u^{(r)}_{S_2}}{s},

    where ``H_hat_j`` is an independent stochastic estimate of ``H`` (the
    operator's ``sample_mv``, e.g. a mini-batch HVP sampled with replacement; the
    exact ``mv`` if the operator has none), ``S_2 = depth`` and ``S_1 = repeats``.
    Its fixed point is ``u = s (H + d s I)^{-1} v``, so the output estimates
    ``(H + d s I)^{-1} v``: **the damping is ``d * s``, not ``d``**. The
    iteration converges iff every eigenvalue ``h`` of the sampled Hessians
    satisfies ``-d s < h < (2 - d) s``; along ``h`` the truncated estimate is
    ``(1 - (1 - h_d/s)^{S_2 + 1}) / h_d`` with ``h_d = h + d s``, so depth must
    exceed ``(s / h_min) ln(1/tol)`` for directions of small curvature
    (truncation otherwise acts as a spectral filter).

    Keys are explicit: ``init`` needs ``key`` unless ``scale`` is given, and ``solve`` needs
    ``key`` whenever the operator is stochastic (has ``sample_mv``); a missing key raises
    ``ValueError`` instead of silently reusing a fixed one.

    ``init(operator, key=None)`` fixes ``s``: the given ``scale``, or
    ``scale_safety * lambda_hat / (1 - d/2)`` with ``lambda_hat`` a power-iteration
    estimate of ``lambda_max`` (an estimate: power iteration under-estimates
    ``lambda_max``, so the safety factor and the divergence check below matter).

    ``solve(state, v, key=None)`` runs ``repeats`` chains of ``depth`` steps in a
    ``lax.scan`` (constant memory) and returns a
    :class:`~certun.results.Solution` whose ``residual_norm`` is
    ``||(H + d s I) x - v||`` on the exact operator. ``result`` is ``diverged``
    when a chain's norm is non-finite or at least doubles over each of its last two
    quarters (geometric growth),
    ``max_steps_reached`` when ``rtol`` is given and not met.

    Args:
      scale: ``s``; must exceed ``lambda_max / (2 - d)``. Estimated if None.
      damping: ``d`` (effective Tikhonov damping ``d * s``).
      depth: recursion depth ``S_2``.
      repeats: number of independent chains ``S_1``.
      rtol: optional relative-residual target used for the result code.
      scale_safety: factor applied to the eigenvalue estimate when ``scale`` is None.
      power_steps: power-iteration steps for that estimate.
    """
    if depth < 4:
        raise ValueError(f"depth must be >= 4, got {depth}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not (0.0 <= damping < 2.0):
        raise ValueError(f"damping must lie in [0, 2), got {damping}")

    def init(operator: Any, key: jax.Array | None = None) -> LissaState:
        if _is_lineax_operator(operator):
            operator = as_operator(operator)
        if scale is not None:
            leaf = jax.tree.leaves(operator.structure)[0]
            return LissaState(operator, jnp.asarray(scale, leaf.dtype))
        if key is None:
            raise ValueError("lissa_solver.init: key is required to estimate the scale (power "
                             "iteration from a random start); pass key=jax.random.key(...) or "
                             "give scale=")
        est = power_iteration(operator.mv, operator.structure, key, num_steps=power_steps)
        # convergence needs lambda_max < (2 - d) s, i.e. s > lambda_max / (2 - d); the safety
        # factor covers the power iteration's under-estimate.
        return LissaState(operator, scale_safety * jnp.abs(est.eigenvalue) / (1.0 - damping / 2.0))

    def solve(state: LissaState, v: PyTree, key: jax.Array | None = None) -> Solution:
        op, s = state.operator, state.scale
        sample = op.sample_mv
        if key is None:
            if sample is not None:
                raise ValueError("lissa_solver.solve: key is required for a stochastic operator "
                                 "(its sample_mv draws mini-batches); pass "
                                 "key=jax.random.key(...)")
            key = jax.random.key(0)  # unused: a deterministic operator draws nothing

        def chain(k: jax.Array) -> tuple[PyTree, jax.Array]:
            def step(u: PyTree, kj: jax.Array) -> tuple[PyTree, jax.Array]:
                hu = sample(kj, u) if sample is not None else op.mv(u)
                u_new = jax.tree.map(lambda vi, ui, hi: vi + (1.0 - damping) * ui - hi / s,
                                     v, u, hu)
                return u_new, tree_norm(u_new)

            keys = jax.random.split(k, depth)
            u, norms = lax.scan(step, v, keys)
            n1, n2, n3 = norms[depth // 2 - 1], norms[(3 * depth) // 4 - 1], norms[-1]
            # A convergent chain approaches its limit (even a slowly converging one grows at
            # most linearly: ratios 3/2 and 4/3 over these checkpoints); a divergent one grows
            # geometrically, at least doubling over each quarter of the depth.
            diverged = ~jnp.all(jnp.isfinite(norms)) | ((n3 > 2.0 * n2) & (n2 > 2.0 * n1))
            return u, diverged

        us, div = lax.map(chain, jax.random.split(key, repeats))
        x = jax.tree.map(lambda a: jnp.mean(a, axis=0) / s, us)
        hx = op.mv(x)
        r = jax.tree.map(lambda hi, xi, vi: hi + damping * s * xi - vi, hx, x, v)
        res = tree_norm(r)
        code = jnp.int32(RESULTS.successful)
        if rtol is not None:
            code = _code(res > rtol * tree_norm(v), RESULTS.max_steps_reached, code)
        code = _code(jnp.any(div), RESULTS.diverged, code)
        code = _code(~jnp.isfinite(res), RESULTS.nonfinite, code)
        return Solution(x, res, jnp.int32(depth * repeats), code)

    return InverseSolver(init, solve)

