# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Curvature primitives: HVPs, inverse-HVP solvers and when each converges
#
# Every certified unlearner in certun takes a Newton step: it solves a system
# $H x = g$ with the Hessian $H$ of the training objective on the data that remain, and the
# certificate then charges what the step leaves behind. This tutorial is about the
# building blocks of that step, in `certun.primitives`:
#
# 1. **Products with the curvature** without forming it: Hessian-vector products (`hvp`,
#    `hessian_operator`) and Gauss-Newton products (`ggn_vp`, `ggn_operator`), checked
#    against the dense Hessian.
# 2. **Inverse-HVP solvers** behind one interface `init(operator)` / `solve(state, v)`:
#    dense factorisations (`dense_solver("eigh" | "cholesky")`, with shifts and Woodbury
#    updates), conjugate gradients (`cg_solver`, `pcg`) and LiSSA (`lissa_solver`). Each
#    returns a `Solution(value, residual_norm, num_steps, result)` whose residual is
#    **measured** on the operator, never estimated.
# 3. **When each converges**: the condition number for CG, indefinite Hessians, and the
#    two ways LiSSA goes wrong (divergence, and truncation acting as a spectral filter).
#
# Everything runs on CPU in float64 on scikit-learn's bundled digits.

# %% [markdown]
# **Colab.** The next cell installs certun, only when this notebook runs in Google Colab
# (elsewhere it does nothing: install certun with `pip install .` from a checkout).
# Set `CERTUN_REPO` (a notebook variable or environment variable) to the git URL of the
# certun repository you use; there is no default address.

# %%
import os
import subprocess
import sys

CERTUN_REPO = os.environ.get("CERTUN_REPO", "")  # the git URL of your certun repository
if "google.colab" in sys.modules:
    if not CERTUN_REPO:
        raise SystemExit("set CERTUN_REPO to the git URL of the certun repository to install")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    f"certun @ git+{CERTUN_REPO}"], check=True)

# %% [markdown]
# ## Setup
#
# `FAST` (set `CERTUN_TUTORIAL_FAST=1`) shrinks the sizes so the test suite can run the
# tutorial quickly; the printed numbers change a little, the conclusions do not (every
# section ends with assertions that hold in both modes). `certun.enable_x64()`
# switches JAX to float64 before any array exists: certun's bounds are float64 quantities.

# %%
import os
import time

import matplotlib

if "ipykernel" not in sys.modules:  # run as a script (CI): draw off-screen
    matplotlib.use("Agg")
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import certun
from certun.plotting import show_figure

certun.enable_x64()

FAST = os.environ.get("CERTUN_TUTORIAL_FAST") == "1"
FIGDIR = os.environ.get("CERTUN_TUTORIAL_FIGDIR")  # optional: save every figure there


def show(name):
    """Display the current figure, legends off the data (saved to FIGDIR when set)."""
    show_figure(f"01_{name}", FIGDIR)


# %% [markdown]
# ## 1. Two models
#
# **L2-regularised logistic regression** on digits 3-vs-8 (267 training rows, 64 features,
# rows scaled to $\lVert x_i\rVert\le1$), on certun's *mean* scale:
#
# $$f(w) = \frac1n\sum_{i=1}^n \log\bigl(1+e^{-y_i x_i^\top w}\bigr) + \frac\lambda2\lVert w\rVert^2,
# \qquad \nabla^2 f(w) = \frac1n X^\top D X + \lambda I,\quad D=\mathrm{diag}\,\sigma_i(1-\sigma_i).$$
#
# It is strongly convex: every eigenvalue of $H$ is at least $\lambda$. We fit it with
# `certun.models.glm.fit` (Newton's method to a gradient norm of $10^{-10}$).
#
# A **small tanh network** (64-8-10, 610 parameters, a pytree of flax parameters) on the
# ten digit classes: its Hessian is indefinite, which is where solvers start to differ.
# %%
from certun.models import glm
from certun.primitives import (
    cg_solver,
    damped,
    dense_hessian,
    dense_matrix,
    dense_solver,
    ggn_operator,
    ggn_vp,
    hessian_operator,
    hvp,
    lissa_solver,
    pcg,
    power_iteration,
    spectral_norm_upper_bound,
    symmetric_eig_bounds,
)
from certun.results import RESULTS, message

ds = certun.data.load_digits_3v8()
X, y = jnp.asarray(ds.X_train), jnp.asarray(ds.y_train)
n, d = X.shape


def f(w, X, y, lam):
    """Mean-scale L2-logistic objective."""
    return jnp.mean(jnp.logaddexp(0.0, -y * (X @ w))) + 0.5 * lam * w @ w


LAM = 1e-3
w_hat = glm.fit("logistic", X, y, LAM).params[:, 0]
print(f"logistic: n = {n}, d = {d}, lambda = {LAM}, ||grad f(w_hat)|| = "
      f"{float(jnp.linalg.norm(jax.grad(f)(w_hat, X, y, LAM))):.1e}")

digits = certun.data.load_digits()
n_net = 200 if FAST else 400
Xd, yd = jnp.asarray(digits.X_train[:n_net]), jnp.asarray(digits.y_train[:n_net])
net = certun.nn.mlp(64, (8,), 10, "tanh", input_scale=8.0)
KAPPA = 1e-3  # weight decay of the network's objective
net_cfg = certun.nn.TrainConfig(epochs=100 if FAST else 300, batch_size=None,
                                learning_rate=1e-2, weight_decay=KAPPA, radius=20.0,
                                log_every=100, dtype="float64")
theta = certun.nn.train(net, Xd, yd, jax.random.key(0), net_cfg).params
F = certun.nn.objective(net, KAPPA)  # F(params, X, y): mean cross-entropy + (kappa/2)||w||^2
print(f"network: {net.name}, {certun.nn.num_params(theta)} parameters, "
      f"train accuracy {certun.nn.accuracy(net, theta, Xd, yd):.3f}")

# %% [markdown]
# ## 2. Hessian-vector products
#
# `hvp(f, params, v, *args)` computes $Hv$ by forward-over-reverse differentiation,
# $Hv = \frac{d}{dr}\nabla f(\theta + r v)\big|_{r=0}$, for any pytree `params`, at the cost of
# a couple of gradients and without the $d\times d$ matrix. `dense_hessian` builds the full
# matrix (over `ravel_pytree(params)`), the oracle we compare with.
# `hessian_operator(f, params, *args)` returns a `LinearOperator` whose `mv` reuses one
# linearisation, so a solver applying it many times does not redo the forward pass.

# %%
from jax.flatten_util import ravel_pytree

key = jax.random.key(1)
v = jax.random.normal(key, (d,))
H = dense_hessian(f, w_hat, X, y, LAM)
err = float(jnp.linalg.norm(hvp(f, w_hat, v, X, y, LAM) - H @ v) / jnp.linalg.norm(H @ v))
print(f"logistic: ||hvp - H v|| / ||H v|| = {err:.1e}")
assert err < 1e-12

# the same on the network's pytree of parameters (jitted: one compilation each)
flat, unravel = ravel_pytree(theta)
vt = unravel(jax.random.normal(key, flat.shape))
dense_jit = jax.jit(lambda p: dense_hessian(F, p, Xd, yd))
hvp_jit = jax.jit(lambda p, u: hvp(F, p, u, Xd, yd))
Ht = dense_jit(theta)
Hv_tree = hvp_jit(theta, vt)  # a pytree like theta
Hv_ref = Ht @ ravel_pytree(vt)[0]
err_t = float(jnp.linalg.norm(ravel_pytree(Hv_tree)[0] - Hv_ref) / jnp.linalg.norm(Hv_ref))
op_mv = jax.jit(lambda p, u: hessian_operator(F, p, Xd, yd).mv(u))
err_op = float(jnp.linalg.norm(ravel_pytree(op_mv(theta, vt))[0] - Hv_ref)
               / jnp.linalg.norm(Hv_ref))
print(f"network:  ||hvp - H v|| / ||H v|| = {err_t:.1e}, operator {err_op:.1e}")
assert err_t < 1e-10 and err_op < 1e-10


# what it costs: one HVP against the dense Hessian (info only; timings vary)
def best_of(fn, repeats=5):
    """The fastest of `repeats` timed calls of `fn` (seconds)."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


t_hvp = best_of(lambda: hvp_jit(theta, vt))
t_dense = best_of(lambda: dense_jit(theta), 2)
print(f"one HVP {1e3 * t_hvp:.2f} ms vs the dense {flat.size}x{flat.size} Hessian "
      f"{1e3 * t_dense:.1f} ms ({t_dense / t_hvp:.0f}x)")

# %% [markdown]
# ## 3. Gauss-Newton products
#
# For an objective $F(\theta) = \mathcal L(m(\theta, x), y)$ that composes a model $m$ with a
# loss $\mathcal L$ of the model's outputs, the generalised Gauss-Newton matrix is
#
# $$G = J^\top \nabla^2_o\mathcal L\, J,\qquad J = \partial m/\partial\theta,$$
#
# the Hessian minus the term with the model's second derivatives. It is positive
# semi-definite whenever $\mathcal L$ is convex in the outputs (cross-entropy is), even
# where $H$ is indefinite. `ggn_vp(model_fn, loss_fn, params, v, x, y)` computes $Gv$ with
# one JVP, one HVP of the loss in output space and one VJP.
#
# Two facts to check: for a **linear** model the GGN *is* the Hessian; for the network it
# is PSD while the Hessian has negative eigenvalues.

# %%
# linear model: GGN == Hessian (the regulariser is added separately)
lin_model = lambda w, X: X @ w  # noqa: E731
lin_loss = lambda o, y: jnp.mean(jnp.logaddexp(0.0, -y * o))  # noqa: E731
Gv = ggn_vp(lin_model, lin_loss, w_hat, v, X, y) + LAM * v
err_g = float(jnp.linalg.norm(Gv - H @ v) / jnp.linalg.norm(H @ v))
print(f"linear model: ||G v - H v|| / ||H v|| = {err_g:.1e}")
assert err_g < 1e-12

# the network: the GGN of the cross-entropy plus the weight decay, as a dense matrix
model_fn, loss_fn = certun.nn.gauss_newton_parts(net, jnp.ones(n_net))
Gt = jax.jit(lambda p: dense_matrix(ggn_operator(model_fn, loss_fn, p, Xd, yd,
                                                  damping=KAPPA)))(theta)
ev_H = np.linalg.eigvalsh(np.asarray(Ht))
ev_G = np.linalg.eigvalsh(np.asarray(0.5 * (Gt + Gt.T)))
print(f"network Hessian: eigenvalues in [{ev_H[0]:.2e}, {ev_H[-1]:.2e}], "
      f"{int(np.sum(ev_H < 0))} negative")
print(f"network GGN:     eigenvalues in [{ev_G[0]:.2e}, {ev_G[-1]:.2e}]")
assert ev_H[0] < 0 and ev_G[0] > 0.99 * KAPPA

fig, ax = plt.subplots(figsize=(7, 3.2))
ax.plot(ev_H[::-1], label="Hessian")
ax.plot(ev_G[::-1], label="Gauss-Newton + weight decay", ls="--")
ax.set_yscale("symlog", linthresh=1e-4)
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("eigenvalue index (descending)")
ax.set_ylabel("eigenvalue")
ax.set_title(f"{net.name}: the Hessian is indefinite, the GGN is not")
ax.legend()
show("spectra")

# %% [markdown]
# ## 4. Direct solvers: factor once, solve many times
#
# `dense_solver("eigh")` factors $A = Q\,\mathrm{diag}(w)\,Q^\top$ once in `init`; `solve`
# then handles a **shift** $sI$ exactly (it is absorbed by the eigenvalues) and a
# **low-rank change** $U\,\mathrm{diag}(c)\,U^\top$ by the Woodbury identity, in $O(d^2 m)$:
#
# $$\bigl(A + sI + U\,\mathrm{diag}(c)\,U^\top\bigr)\,x = v.$$
#
# This is exactly what a removal needs. On Guo et al.'s **sum** scale the Hessian of the
# remaining data after removing rows $U$ is
# $X^\top D X - \sum_{j\in U} h_j x_j x_j^\top + \lambda (n-m) I$: take $A = X^\top D X$ (the
# curvature of all rows), $s = \lambda(n-m)$, $c_j = -h_j$. The solver also reports
# whether the updated matrix is still positive definite (Haynsworth's inertia test on the
# Woodbury capacitance) and the residual measured with the stored matrix.
# `dense_solver("cholesky")` cannot absorb a shift; it then runs CG preconditioned by its
# factor (iterative refinement), and reports the iterations.

# %%
dvec = jax.nn.sigmoid(X @ w_hat) * (1 - jax.nn.sigmoid(X @ w_hat))  # l'' of every row
A = (X * dvec[:, None]).T @ X  # X^T D X, sum scale, no regulariser
removed = jnp.arange(5)
m = removed.size
shift = LAM * (n - m)
U, c = X[removed].T, -dvec[removed]

eigh = dense_solver("eigh")
state = eigh.init(A)
sol = jax.jit(eigh.solve)(state, v, shift=shift, low_rank=(U, c))
keep = jnp.arange(m, n)
A_rem = (X[keep] * dvec[keep, None]).T @ X[keep] + shift * jnp.eye(d)
x_direct = jnp.linalg.solve(A_rem, v)
err_w = float(jnp.linalg.norm(sol.value - x_direct) / jnp.linalg.norm(x_direct))
print(f"eigh + Woodbury: result {RESULTS(int(sol.result)).name}, residual "
      f"{float(sol.residual_norm):.1e}, relative error vs a fresh solve {err_w:.1e}")
assert int(sol.result) == RESULTS.successful and err_w < 1e-10

chol = dense_solver("cholesky")
sol_c = jax.jit(chol.solve)(chol.init(A + LAM * n * jnp.eye(d)), v, shift=-LAM * m,
                            low_rank=(U, c))
print(f"cholesky + CG refinement: {int(sol_c.num_steps)} iterations, residual "
      f"{float(sol_c.residual_norm):.1e}")
assert int(sol_c.result) == RESULTS.successful
assert float(jnp.linalg.norm(sol_c.value - x_direct) / jnp.linalg.norm(x_direct)) < 1e-8

# a low-rank change that destroys positive definiteness is reported, not silently solved
bad = jax.jit(eigh.solve)(state, v, shift=shift, low_rank=(U, jnp.full(m, -1e3)))
print(f"an indefinite update: {RESULTS(int(bad.result)).name}: {message(int(bad.result))}")
assert int(bad.result) == RESULTS.not_positive_definite

# %% [markdown]
# ## 5. Conjugate gradients and the condition number
#
# `cg_solver()` / `pcg` needs only $v\mapsto Av$ and converges for any symmetric positive
# definite $A$. The classical bound on the $A$-norm error after $k$ steps is
#
# $$\frac{\lVert x_k - x^*\rVert_A}{\lVert x_0 - x^*\rVert_A} \le
#   2\left(\frac{\sqrt\kappa-1}{\sqrt\kappa+1}\right)^k,\qquad \kappa = \frac{\lambda_{\max}}{\lambda_{\min}},$$
#
# so the regulariser, which sets $\lambda_{\min}(H)\ge\lambda$, sets the speed. Below we run
# CG on the logistic Hessian at three values of $\lambda$, with the iteration cap as a
# traced argument (one compilation for every cap), and plot the measured error against the
# bound. `pcg` stops at `rtol`, recomputes the residual from scratch at the end (so
# `residual_norm` is the true residual of the returned `x`), and reports
# `max_steps_reached` when the cap comes first.

# %%
lams = (1e-2, 1e-3, 1e-4)
caps = np.arange(0, 41 if FAST else 61, 2)
# one compilation for every lambda and cap: both are arguments of the jitted functions
run = jax.jit(lambda w, lam, cap: pcg(hessian_operator(f, w, X, y, lam).mv, v, rtol=1e-14,
                                      max_steps=cap))
cg_to_tol = jax.jit(lambda w, lam: cg_solver(rtol=1e-10).solve(
    cg_solver().init(hessian_operator(f, w, X, y, lam)), v))
fit_l = jax.jit(lambda lam: glm.fit("logistic", X, y, lam).params[:, 0])
hess_l = jax.jit(lambda w, lam: dense_hessian(f, w, X, y, lam))
fig, ax = plt.subplots(figsize=(7, 3.6))
for j, lam in enumerate(lams):
    w_l = fit_l(lam)
    H_l = hess_l(w_l, lam)
    ev = np.linalg.eigvalsh(np.asarray(H_l))
    kappa = ev[-1] / ev[0]
    x_star = jnp.linalg.solve(H_l, v)

    def a_norm(e, H_l=H_l):
        """The A-norm sqrt(e^T H e)."""
        return float(jnp.sqrt(e @ H_l @ e))

    errs = np.array([a_norm(run(w_l, lam, int(k)).value - x_star) for k in caps]) / a_norm(x_star)
    rate = (np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)
    bound = 2 * rate ** caps
    ok = errs > 1e-11  # above the float64 floor the theorem must hold
    assert np.all(errs[ok] <= bound[ok] * (1 + 1e-8)), lam
    ax.semilogy(caps, errs, "o-", ms=3, color=f"C{j}",
                label=f"lambda = {lam:g} (kappa = {kappa:.0f})")
    ax.semilogy(caps, bound, ":", color=f"C{j}")
    sol = cg_to_tol(w_l, lam)
    print(f"lambda = {lam:g}: kappa = {kappa:6.1f}, CG reaches rtol 1e-10 in "
          f"{int(sol.num_steps):3d} steps, residual {float(sol.residual_norm):.1e}")
ax.set_ylim(1e-14, 3)
ax.set_xlabel("CG iterations")
ax.set_ylabel("relative A-norm error")
ax.set_title("CG on the logistic Hessian (dotted: the sqrt(kappa) bound)")
ax.legend(fontsize=8)
show("cg_convergence")

# %% [markdown]
# **Indefinite operators.** On the network's Hessian CG meets a direction with
# $p^\top A p\le 0$; `pcg` then stops with `not_positive_definite` instead of returning a
# meaningless (or NaN) answer. Damping by more than $-\lambda_{\min}$ (`damped(op, mu)`,
# the local convex approximation of Zhang et al.) or the Gauss-Newton matrix restores a PD
# system.

# %%
v_t = ravel_pytree(vt)[0]
sol_bad = jax.jit(lambda b: pcg(lambda u: Ht @ u, b, max_steps=500))(v_t)
print(f"CG on the network Hessian: {RESULTS(int(sol_bad.result)).name} after "
      f"{int(sol_bad.num_steps)} steps")
assert int(sol_bad.result) == RESULTS.not_positive_definite
mu = -ev_H[0] + 0.05
damped_cg = jax.jit(lambda p, u: cg_solver(rtol=1e-10, max_steps=2000).solve(
    damped(hessian_operator(F, p, Xd, yd), mu), u))
sol_damped = damped_cg(theta, vt)
print(f"CG on H + {mu:.3f} I: {RESULTS(int(sol_damped.result)).name} in "
      f"{int(sol_damped.num_steps)} steps, residual {float(sol_damped.residual_norm):.1e}")
assert int(sol_damped.result) == RESULTS.successful
x_ref = jnp.linalg.solve(Ht + mu * jnp.eye(flat.size), v_t)
assert float(jnp.linalg.norm(ravel_pytree(sol_damped.value)[0] - x_ref)
             / jnp.linalg.norm(x_ref)) < 1e-7

# %% [markdown]
# ## 6. LiSSA: a truncated Neumann series, and what `damping` and `scale` mean
#
# `lissa_solver(scale=s, damping=d, depth=S2, repeats=S1)` runs Koh & Liang's recursion
#
# $$u_0 = v,\qquad u_j = v + (1-d)\,u_{j-1} - \frac{\hat H_j u_{j-1}}{s},\qquad
#   \hat x = \frac{u_{S_2}}{s}\ \text{(averaged over } S_1 \text{ chains)},$$
#
# with $\hat H_j$ a stochastic estimate of $H$ (a mini-batch HVP) or $H$ itself. Its fixed
# point is $s\,(H + d\,s\,I)^{-1}v$, so LiSSA estimates
#
# $$\boxed{(H + d\,s\,I)^{-1}v}\qquad\text{-- the damping is } d\cdot s\text{, not } d.$$
#
# Along an eigenvector of $H$ with eigenvalue $h$ (write $h_d = h + ds$) the recursion is
# scalar, and after $S_2$ steps the **gain** applied to $v$ is
#
# $$g(h) = \frac{1-(1-h_d/s)^{S_2+1}}{h_d}\qquad\text{instead of}\qquad \frac1{h_d}.$$
#
# Two consequences:
#
# * **Divergence** when $|1 - h_d/s| > 1$ for some $h$, i.e. unless
#   $-ds < h < (2-d)\,s$: the scale must exceed $\lambda_{\max}/(2-d)$. With `scale=None`
#   certun estimates $\lambda_{\max}$ by power iteration (which *under*-estimates it) times a
#   safety factor, and flags a chain whose norm grows geometrically as `diverged`.
# * **Truncation is a spectral filter**: where $h_d S_2 \ll s$, $g(h)\approx S_2/s$
#   instead of $1/h_d$. Directions of small curvature -- exactly those a Newton step
#   should move most -- are barely moved unless $S_2 \gtrsim (s/h_{\min})\ln(1/\mathrm{tol})$.
#
# First the damping semantics, with the exact HVP so that the result is deterministic.

# %%
op = hessian_operator(f, w_hat, X, y, LAM)
ev_hat, Q = np.linalg.eigh(np.asarray(H))
s, dmp, depth = 0.1, 0.05, 400 if FAST else 2000
lissa = lissa_solver(scale=s, damping=dmp, depth=depth)
sol_l = lissa.solve(lissa.init(op), v)
x_ds = jnp.linalg.solve(H + dmp * s * jnp.eye(d), v)  # (H + d s I)^{-1} v
x_d = jnp.linalg.solve(H + dmp * jnp.eye(d), v)  # NOT what LiSSA returns
rel = lambda a, b: float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))  # noqa: E731
print(f"lambda_max(H) = {ev_hat[-1]:.4f}; s = {s}, d = {dmp}: "
      f"effective damping d*s = {dmp * s:g}")
print(f"LiSSA vs (H + d s I)^-1 v: {rel(sol_l.value, x_ds):.1e};  vs (H + d I)^-1 v: "
      f"{rel(sol_l.value, x_d):.2f};  residual on H + d s I: {float(sol_l.residual_norm):.1e}")
assert rel(sol_l.value, x_ds) < 1e-6 and rel(sol_l.value, x_d) > 0.5

# %% [markdown]
# Now the gain. Because the recursion is linear, one solve with $v = \sum_i q_i$ (the sum of
# all eigenvectors) gives every gain at once: $g(h_i) = q_i^\top\hat x$. We compare the
# measured gains with the formula, and plot $h_d\,g(h)$ (1 means exact) for several depths.

# %%
s, dmp = 0.06, 0.0
h_d = ev_hat + dmp * s
depths = (10, 100, 1000) if FAST else (10, 100, 1000, 10000)
hh = np.logspace(-5, np.log10(2 * s), 400)
fig, ax = plt.subplots(figsize=(7, 3.6))
for j, S2 in enumerate(depths):
    ls = lissa_solver(scale=s, damping=dmp, depth=S2)
    x_all = ls.solve(ls.init(op), jnp.asarray(Q.sum(axis=1))).value
    measured = np.asarray(Q.T @ np.asarray(x_all))
    formula = (1 - (1 - h_d / s) ** (S2 + 1)) / h_d
    assert np.allclose(measured, formula, rtol=1e-6, atol=1e-9), S2
    ax.semilogx(hh, 1 - (1 - hh / s) ** (S2 + 1), color=f"C{j}", label=f"depth {S2}")
    ax.semilogx(ev_hat, measured * h_d, "o", ms=3, color=f"C{j}")
ax.axhline(1, color="k", lw=0.5)
ax.axvline(2 * s, color="r", ls=":", lw=1)
ax.text(2 * s, 0.5, " h = 2s:\n divergence\n beyond", color="r", fontsize=8)
ax.set_xlabel("eigenvalue h of H")
ax.set_ylabel("h * gain  (1 = exact inverse)")
ax.set_title(f"LiSSA gain, scale s = {s} (dots: measured on the {d} eigenvalues of H)")
ax.legend(fontsize=8)
show("lissa_gain")
S2_need = int(np.ceil(s / ev_hat[0] * np.log(1e6)))
print(f"smallest eigenvalue {ev_hat[0]:.1e}: depth for gain within 1e-6 of exact "
      f"~ (s/h_min) ln(1e6) = {S2_need}")

# %% [markdown]
# **Divergence.** A scale below $\lambda_{\max}/2$ makes the top eigen-direction blow up:
# the chain's norm grows geometrically and the solver says `diverged` (the measured residual
# is huge). `scale=None` picks $1.1\,\hat\lambda_{\max}/(1-d/2)$ from a power-iteration
# estimate and converges.

# %%
for scale in (0.4 * ev_hat[-1], None):
    ls = lissa_solver(scale=scale, depth=400)
    st = ls.init(op, jax.random.key(2))
    sol = ls.solve(st, v)
    print(f"scale = {float(st.scale):.4f} (lambda_max = {ev_hat[-1]:.4f}): "
          f"{RESULTS(int(sol.result)).name}, residual {float(sol.residual_norm):.1e}")
    expected = RESULTS.successful if scale is None else RESULTS.diverged
    assert int(sol.result) == expected

# %% [markdown]
# **Stochastic HVPs.** With `sample_f` (an objective on a mini-batch drawn with
# replacement), `hessian_operator` also provides `sample_mv`, and LiSSA uses a fresh
# mini-batch Hessian at every step; averaging `repeats` chains reduces the variance. The
# residual is still measured on the exact operator, so the noise shows up there.

# %%
def f_batch(key, w, batch=16):
    """The objective on a mini-batch of `batch` rows drawn with replacement."""
    idx = jax.random.randint(key, (batch,), 0, n)
    return f(w, X[idx], y[idx], LAM)


op_s = hessian_operator(f, w_hat, X, y, LAM, sample_f=f_batch)
x_exact = jnp.linalg.solve(H, v)
res_by_repeats = {}
for repeats in (1, 4) if FAST else (1, 4, 16):
    ls = lissa_solver(scale=1.1 * ev_hat[-1], depth=4000 if not FAST else 1000,
                      repeats=repeats)
    sol = ls.solve(ls.init(op_s), v, jax.random.key(3))
    res_by_repeats[repeats] = float(sol.residual_norm)
    print(f"repeats = {repeats:2d}: relative residual "
          f"{float(sol.residual_norm / jnp.linalg.norm(v)):.2f}, relative error "
          f"{rel(sol.value, x_exact):.3f}")
assert res_by_repeats[4] < res_by_repeats[1]

# %% [markdown]
# ## 7. Eigenvalue estimates versus guaranteed bounds
#
# LiSSA's scale only needs an *estimate* of $\lambda_{\max}$; a certificate needs a
# *guaranteed bound*. certun keeps them apart: `power_iteration` returns a Rayleigh quotient,
# which lies inside the spectrum and so under-estimates $\lambda_{\max}$;
# `symmetric_eig_bounds` (exact float64 `eigvalsh` plus a backward-error allowance) and
# `spectral_norm_upper_bound(X)` (for $\lVert X\rVert_2$, used by Guo et al.'s bounds)
# are upper bounds that hold.

# %%
est = power_iteration(op.mv, op.structure, jax.random.key(4), num_steps=5)
lo, hi = symmetric_eig_bounds(H)
xb = spectral_norm_upper_bound(np.asarray(X))
print(f"lambda_max(H) = {ev_hat[-1]:.10f}: power iteration (5 steps) is "
      f"{ev_hat[-1] - float(est.eigenvalue):.1e} below it, the guaranteed bound "
      f"{hi.value - ev_hat[-1]:.1e} above it (allowance {hi.allowance:.1e})")
print(f"||X||_2 <= {xb.value:.6f} ({xb.method}; computed {xb.computed:.6f})")
assert float(est.eigenvalue) <= ev_hat[-1] + 1e-15 and ev_hat[-1] <= hi.value
assert xb.value >= float(np.linalg.norm(np.asarray(X), 2))

# %% [markdown]
# ## Summary: which solver, when
#
# | solver | needs | converges when | cost | use it for |
# |---|---|---|---|---|
# | `dense_solver("eigh")` | the $d\times d$ matrix | always (reports PD or not) | $O(d^3)$ once, then $O(d^2 m)$ per shifted / low-rank solve | convex models with moderate $d$: Guo et al.'s removals |
# | `dense_solver("cholesky")` | the matrix, PD | PD; shifts via CG refinement | $O(d^3/3)$ once | one-off PD solves |
# | `cg_solver` / `pcg` | $v\mapsto Av$ | $A$ PD; in $\sim\sqrt\kappa\ln(1/\mathrm{tol})$ steps; stops with `not_positive_definite` otherwise | one HVP per step | large models, damped or Gauss-Newton systems |
# | `lissa_solver` | (stochastic) $v\mapsto Av$ | $-ds < h < (2-d)s$ for all $h$; exact only for depth $\gg (s/h_{\min})\ln(1/\mathrm{tol})$ | `depth * repeats` HVPs | stochastic Newton steps; read its residual |
#
# Every solver returns the residual it actually achieved; certun's certificates add it to
# their bounds. Tutorial 5 builds a certified algorithm on exactly that.
