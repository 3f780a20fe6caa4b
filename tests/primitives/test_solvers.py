"""Inverse-HVP solvers against numpy.linalg.solve, with their result codes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from certun.primitives import curvature as cv
from certun.primitives import solvers as sv
from certun.results import RESULTS


def spd(rng, d, cond=100.0):
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    w = np.geomspace(1.0, cond, d)
    return (Q * w) @ Q.T


def op_of(A):
    A = jnp.asarray(A)
    return cv.LinearOperator(lambda v: A @ v, jax.ShapeDtypeStruct((A.shape[0],), A.dtype))


@pytest.mark.parametrize("method", ["eigh", "cholesky"])
def test_dense_solver_matches_numpy(rng, method):
    A = spd(rng, 20)
    v = rng.normal(size=20)
    s = sv.dense_solver(method)
    sol = s.solve(s.init(A), jnp.asarray(v))
    ref = np.linalg.solve(A, v)
    assert np.linalg.norm(sol.value - ref) / np.linalg.norm(ref) < 1e-10
    assert int(sol.result) == RESULTS.successful
    assert float(sol.residual_norm) < 1e-10 * np.linalg.norm(v)


@pytest.mark.parametrize("method", ["eigh", "cholesky"])
def test_dense_solver_shift_and_low_rank(rng, method):
    d = 15
    A = spd(rng, d, 50.0)
    U = rng.normal(size=(d, 3)) * 0.3
    c = np.array([-0.2, 0.5, -0.1])
    shift = 0.37
    M = A + shift * np.eye(d) + U @ np.diag(c) @ U.T
    assert np.linalg.eigvalsh(M).min() > 0
    v = rng.normal(size=d)
    s = sv.dense_solver(method)
    st = s.init(op_of(A))  # also accepts a LinearOperator
    sol = s.solve(st, jnp.asarray(v), shift=shift, low_rank=(jnp.asarray(U), jnp.asarray(c)))
    ref = np.linalg.solve(M, v)
    assert np.linalg.norm(sol.value - ref) / np.linalg.norm(ref) < 1e-10
    assert int(sol.result) == RESULTS.successful
    # the reported residual is the true residual of the returned x
    assert abs(float(sol.residual_norm) - np.linalg.norm(M @ np.asarray(sol.value) - v)) < 1e-12


@pytest.mark.parametrize("method", ["eigh", "cholesky"])
def test_dense_solver_flags_not_positive_definite(rng, method):
    A = spd(rng, 10, 10.0)  # eigenvalues in [1, 10]
    v = jnp.asarray(rng.normal(size=10))
    s = sv.dense_solver(method)
    st = s.init(A)
    assert int(s.solve(st, v, shift=-2.0).result) == RESULTS.not_positive_definite
    u = np.linalg.eigh(A)[1][:, :1] * 3.0  # removing 9 * e e^T along the weakest direction
    bad = s.solve(st, v, low_rank=(jnp.asarray(u), jnp.asarray([-1.0])))
    assert int(bad.result) == RESULTS.not_positive_definite


def test_cholesky_init_flags_indefinite_matrix():
    s = sv.dense_solver("cholesky")
    st = s.init(jnp.diag(jnp.array([1.0, -1.0, 2.0])))
    assert int(st.result) == RESULTS.not_positive_definite
    assert int(s.solve(st, jnp.ones(3)).result) == RESULTS.not_positive_definite


def test_eigh_woodbury_jit_and_eager_agree(rng):
    A = spd(rng, 12)
    U = jnp.asarray(rng.normal(size=(12, 2)) * 0.1)
    c = jnp.asarray([-0.3, 0.2])
    v = jnp.asarray(rng.normal(size=12))
    w, Q = np.linalg.eigh(A)
    f = lambda v_: sv.eigh_solve(jnp.asarray(w), jnp.asarray(Q), v_, 0.5, (U, c))[0]  # noqa: E731
    with jax.disable_jit():
        eager = f(v)
    np.testing.assert_allclose(jax.jit(f)(v), eager, rtol=1e-12)


def test_cg_matches_numpy_and_reports_true_residual(rng):
    A = spd(rng, 40, 300.0)
    v = rng.normal(size=40)
    s = sv.cg_solver(rtol=1e-12, max_steps=500)
    sol = s.solve(s.init(op_of(A)), jnp.asarray(v))
    ref = np.linalg.solve(A, v)
    assert int(sol.result) == RESULTS.successful
    assert float(sol.residual_norm) <= 1e-6 * np.linalg.norm(v)
    assert np.linalg.norm(sol.value - ref) / np.linalg.norm(ref) < 1e-9
    assert abs(float(sol.residual_norm) - np.linalg.norm(A @ np.asarray(sol.value) - v)) < 1e-12


def test_cg_on_pytree_hessian_operator(rng):
    X = jnp.asarray(rng.normal(size=(60, 5)))
    y = jnp.asarray(np.sign(rng.normal(size=60)))
    params = {"w": jnp.zeros(5), "b": jnp.zeros(())}

    def f(p):
        a = X @ p["w"] + p["b"]
        return jnp.mean(jnp.logaddexp(0, -y * a)) + 0.05 * (jnp.sum(p["w"] ** 2) + p["b"] ** 2)

    op = cv.hessian_operator(f, params)
    v = {"w": jnp.ones(5), "b": jnp.asarray(2.0)}
    sol = sv.cg_solver(rtol=1e-12).solve(op, v)
    H = cv.dense_hessian(f, params)
    ref = np.linalg.solve(H, np.r_[2.0, np.ones(5)])  # ravel order: b then w
    got = np.r_[float(sol.value["b"]), np.asarray(sol.value["w"])]
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_cg_reports_indefinite_operator():
    A = jnp.diag(jnp.array([1.0, 2.0, -1.0, 3.0]))
    sol = sv.cg_solver(backend="certun").solve(op_of(A), jnp.ones(4))
    assert int(sol.result) == RESULTS.not_positive_definite
    assert np.all(np.isfinite(np.asarray(sol.value)))  # never a silent NaN
    # lineax's CG may solve an indefinite system accurately: certun then reports the
    # measured residual, and flags not_positive_definite where v^T x < 0 proves it
    got = sv.cg_solver().solve(op_of(A), jnp.ones(4))
    ref = np.linalg.solve(np.asarray(A), np.ones(4))
    assert int(got.result) in (RESULTS.successful, RESULTS.not_positive_definite)
    if int(got.result) == RESULTS.successful:
        np.testing.assert_allclose(np.asarray(got.value), ref, rtol=1e-10)
        assert float(got.residual_norm) <= 1e-10 * 2.0
    v = jnp.array([0.1, 0.1, 1.0, 0.1])  # v^T A^{-1} v < 0
    neg = sv.cg_solver().solve(op_of(A), v)
    assert int(neg.result) == RESULTS.not_positive_definite
    assert np.all(np.isfinite(np.asarray(neg.value)))


@pytest.fixture(scope="module")
def cg_problem():
    rng = np.random.default_rng(7)
    A = spd(rng, 30, 500.0)
    return A, rng.normal(size=30)


@pytest.mark.parametrize("jit", [False, True])
def test_lineax_and_certun_cg_agree_with_a_direct_solve(cg_problem, jit):
    """Both backends, jitted or not: the solution of a direct solve and the true residual."""
    A, v = cg_problem
    ref = np.linalg.solve(A, v)
    for backend in ("lineax", "certun"):
        s = sv.cg_solver(rtol=1e-12, max_steps=300, backend=backend)
        f = (lambda vv, s=s: s.solve(s.init(op_of(A)), vv))  # noqa: E731
        sol = jax.jit(f)(jnp.asarray(v)) if jit else f(jnp.asarray(v))
        assert int(sol.result) == RESULTS.successful, backend
        np.testing.assert_allclose(np.asarray(sol.value), ref, rtol=1e-8)
        true_res = np.linalg.norm(A @ np.asarray(sol.value) - v)
        assert abs(float(sol.residual_norm) - true_res) <= 1e-12 * np.linalg.norm(v)
        assert float(sol.residual_norm) <= 1e-12 * np.linalg.norm(v)


def test_lineax_cg_falls_back_to_certun_for_the_result_code(cg_problem):
    """Too few steps: lineax stops short, certun's CG continues and names the outcome."""
    A, v = cg_problem
    sol = sv.cg_solver(rtol=1e-14, max_steps=4).solve(op_of(A), jnp.asarray(v))
    assert int(sol.result) == RESULTS.max_steps_reached and int(sol.num_steps) == 4
    assert float(sol.residual_norm) == pytest.approx(
        np.linalg.norm(A @ np.asarray(sol.value) - v), rel=1e-9)


def test_solvers_accept_lineax_operators(cg_problem):
    """A lineax operator goes into the CG, dense and LiSSA solvers unchanged."""
    lx = pytest.importorskip("lineax")
    A, v = cg_problem
    ref = np.linalg.solve(A, v)
    mat = lx.MatrixLinearOperator(jnp.asarray(A), lx.positive_semidefinite_tag)
    fun = lx.FunctionLinearOperator(lambda x: jnp.asarray(A) @ x,
                                    jax.ShapeDtypeStruct((30,), jnp.float64))
    for op in (mat, fun):
        for s in (sv.cg_solver(rtol=1e-12, max_steps=300), sv.dense_solver("eigh")):
            sol = s.solve(s.init(op), jnp.asarray(v))
            np.testing.assert_allclose(np.asarray(sol.value), ref, rtol=1e-8)
    lis = sv.lissa_solver(scale=1.05 * float(np.linalg.eigvalsh(A)[-1]), damping=0.5,
                          depth=200)
    st = lis.init(mat)
    sol = lis.solve(st, jnp.asarray(v), key=jax.random.key(1))
    d = 0.5 * float(st.scale)
    np.testing.assert_allclose(np.asarray(sol.value), np.linalg.solve(A + d * np.eye(30), v),
                               rtol=1e-6)
    with pytest.raises(TypeError, match="lineax"):
        sv.as_operator("not an operator")


def test_cg_max_steps_code(rng):
    A = spd(rng, 50, 1e4)
    sol = sv.cg_solver(rtol=1e-14, max_steps=3).solve(op_of(A), jnp.asarray(rng.normal(size=50)))
    assert int(sol.result) == RESULTS.max_steps_reached
    assert int(sol.num_steps) == 3


def test_preconditioned_cg_converges_faster(rng):
    A = spd(rng, 60, 1e3)
    v = jnp.asarray(rng.normal(size=60))
    D = jnp.asarray(1.0 / np.diag(A))
    plain = sv.pcg(op_of(A).mv, v, rtol=1e-10, max_steps=500)
    Ainv = jnp.asarray(np.linalg.inv(A + 0.01 * np.eye(60)))  # a near-exact preconditioner
    pre = sv.pcg(op_of(A).mv, v, precond=lambda r: Ainv @ r, rtol=1e-10, max_steps=500)
    assert int(pre.result) == RESULTS.successful and int(plain.result) == RESULTS.successful
    assert int(pre.num_steps) < int(plain.num_steps)
    del D


def test_lissa_returns_damped_inverse(rng):
    # LiSSA with damping d and scale s returns (H + d s I)^{-1} v (not (H + d I)^{-1} v).
    A = spd(rng, 12, 20.0)
    v = rng.normal(size=12)
    d, s = 0.1, 40.0
    sol = sv.lissa_solver(scale=s, damping=d, depth=4000).solve(
        sv.lissa_solver(scale=s, damping=d, depth=4000).init(op_of(A)), jnp.asarray(v))
    ref = np.linalg.solve(A + d * s * np.eye(12), v)
    wrong = np.linalg.solve(A + d * np.eye(12), v)
    assert np.linalg.norm(sol.value - ref) / np.linalg.norm(ref) < 1e-6
    assert np.linalg.norm(sol.value - wrong) / np.linalg.norm(wrong) > 0.1
    assert int(sol.result) == RESULTS.successful


def test_lissa_converges_to_solve_and_estimates_scale(rng):
    A = spd(rng, 10, 10.0)
    v = rng.normal(size=10)
    ls = sv.lissa_solver(depth=3000, rtol=1e-6)
    st = ls.init(op_of(A), jax.random.key(0))
    lam_max = np.linalg.eigvalsh(A).max()
    assert lam_max / 2 < float(st.scale) < 2 * lam_max  # estimated scale is usable
    sol = ls.solve(st, jnp.asarray(v))
    ref = np.linalg.solve(A, v)
    assert int(sol.result) == RESULTS.successful
    assert float(sol.residual_norm) <= 1e-6 * np.linalg.norm(v)
    assert np.linalg.norm(sol.value - ref) / np.linalg.norm(ref) < 1e-5


def test_lissa_detects_divergence(rng):
    A = spd(rng, 8, 10.0)  # lambda_max = 10
    ls = sv.lissa_solver(scale=3.0, depth=200)  # needs s > lambda_max / 2 = 5
    sol = ls.solve(ls.init(op_of(A)), jnp.asarray(rng.normal(size=8)))
    assert int(sol.result) == RESULTS.diverged


def test_lissa_stochastic_minibatches(rng):
    # Mini-batch HVPs sampled with replacement: the averaged chains approach the solve.
    n, d = 200, 5
    X = rng.normal(size=(n, d)) / np.sqrt(d)
    H = X.T @ X / n + 0.5 * np.eye(d)
    Xj = jnp.asarray(X)

    def mv(v):
        return Xj.T @ (Xj @ v) / n + 0.5 * v

    def sample_mv(key, v):
        idx = jax.random.randint(key, (20,), 0, n)
        xb = Xj[idx]
        return xb.T @ (xb @ v) / 20 + 0.5 * v

    op = cv.LinearOperator(mv, jax.ShapeDtypeStruct((d,), Xj.dtype), sample_mv)
    v = rng.normal(size=d)
    ls = sv.lissa_solver(scale=4.0, depth=400, repeats=64)
    sol = ls.solve(ls.init(op), jnp.asarray(v), key=jax.random.key(1))
    ref = np.linalg.solve(H, v)
    assert np.linalg.norm(sol.value - ref) / np.linalg.norm(ref) < 0.05
    assert int(sol.result) == RESULTS.successful


def test_solver_argument_validation():
    with pytest.raises(ValueError, match="method"):
        sv.dense_solver("lu")
    with pytest.raises(ValueError, match="damping"):
        sv.lissa_solver(damping=2.5)
    with pytest.raises(ValueError, match="depth"):
        sv.lissa_solver(depth=1)
