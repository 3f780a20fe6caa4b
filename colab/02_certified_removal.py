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
# # 2. Certified removal for logistic regression, end to end
#
# This tutorial trains an L2-regularised logistic regression with Guo et al.'s *certified
# removal* (ICML 2020), deletes training rows, and reads the certificate that comes back
# with every model, field by field. Then it compares the three residuals that decide how
# many deletions a model can serve (the data-dependent bound certun charges, the
# worst-case bound, and the true residual), shows what happens when the budget runs out,
# and compares unlearning with retraining.
#
# Data: scikit-learn's bundled 8x8 digits, 3 (label +1) against 8 (label -1): 267 training
# and 90 test rows, 64 features, every row scaled to $\lVert x_i\rVert_2 = 1$.

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
# `FAST` (`CERTUN_TUTORIAL_FAST=1`) shortens the request sequences for the test suite.
# `certun.enable_x64()` must come before any array is created: certified removal refuses
# to run in float32, because its bounds rest on gradient norms near $10^{-10}$.

# %%
import json
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
from certun.models import glm
from certun.plotting import show_figure

certun.enable_x64()

FAST = os.environ.get("CERTUN_TUTORIAL_FAST") == "1"
FIGDIR = os.environ.get("CERTUN_TUTORIAL_FIGDIR")  # optional: save every figure there


def show(name):
    """Display the current figure, legends off the data (saved to FIGDIR when set)."""
    show_figure(f"02_{name}", FIGDIR)


ds = certun.data.load_digits_3v8()
print(f"{ds.name}: {ds.n_train} train / {ds.n_test} test rows, {ds.dim} features; "
      f"max row norm {np.linalg.norm(ds.X_train, axis=1).max():.3f}")

# %% [markdown]
# ## 1. The mechanism
#
# **Learning.** Draw $b\sim\mathcal N(0,\sigma^2 I)$ once and train to a tight optimum of
# the *perturbed* objective (certun's mean scale; Guo et al. write it on the sum scale
# $L_b = nJ$):
#
# > **Sum scale vs mean scale.** certun trains on the *mean* loss $J$ (an average over the
# > $n$ rows). Guo et al. state their residual bounds and the removal budget on the *sum*
# > objective $L_b = nJ$, whose gradient is $n$ times larger. Every residual, bound and
# > budget in this tutorial (and in the certificate's `scale: "sum"`) is on the sum scale,
# > so a number like $2.28$ is compared with the norm of $\nabla L_b$, not of $\nabla J$.
#
# $$J(w) = \frac1n\sum_{i\in D}\ell(w^\top x_i, y_i) + \frac\lambda2\lVert w\rVert^2 + \frac{b^\top w}{n}.$$
#
# **Removing** rows $U$ ($m$ of the $n$ current rows) is one Newton step on the remaining
# data, at the current model:
#
# $$\Delta = \sum_{j\in U}\nabla\ell(w^\top x_j, y_j) + m\lambda w,\qquad
#   w^- = w + H^{-1}\Delta,\qquad H = \nabla^2 L_b(w;\,D\setminus U).$$
#
# **Why it is certified.** If the gradient residual $r = \nabla L_b(w^-; D\setminus U)$ were
# zero, $w^-$ would be exactly the model retrained on $D\setminus U$ with the same $b$ --
# and since $b$ is random, so is that model. A nonzero residual can be absorbed by a shift
# of $b$; Guo et al.'s Theorem 3 says the result is $(\epsilon,\delta)$-indistinguishable
# from retraining as long as
#
# $$\lVert r\rVert \le \frac{\sigma\epsilon}{c},\qquad c = \sqrt{2\ln(1.5/\delta)}.$$
#
# $\sigma\epsilon/c$ is the **budget**. Residuals accumulate over requests, so certun keeps
# an upper bound $R$ on $\lVert r\rVert$: the measured training-gradient norm plus, per
# request, a bound on the Newton step's Taylor remainder, the measured solve residual and
# a rounding allowance. A request that would push $R$ over the budget is refused.
#
# The defaults below are those of `certun demo`: $\lambda = 0.01$, $\sigma = 1.5$,
# $\epsilon = 1$, $\delta = 10^{-4}$. (Guo et al.'s MNIST settings $\lambda=10^{-3}$,
# $\sigma=10$ rely on $n\approx 12{,}000$ rows; the Newton step scales like $1/(\lambda n)$.)
# `update="pcg"` takes Guo et al.'s step, with the exact Hessian of the remaining rows; the
# default for logistic regression reuses one cached factor and charges its staleness too.

# %%
LAM, SIGMA, EPS, DELTA = 1e-2, 1.5, 1.0, 1e-4
unl = certun.certified_removal(lam=LAM, sigma=SIGMA, epsilon=EPS, delta=DELTA, diagnose=True,
                               update="pcg")
state0 = unl.init(ds.X_train, ds.y_train, jax.random.key(0))  # draws b, trains, factorises
w0 = unl.params(state0)
acc = lambda w: glm.accuracy("logistic", w[:, None] if w.ndim == 1 else w,  # noqa: E731
                             ds.X_test, ds.y_test)
c = certun.accounting.guo_c(DELTA)
budget = certun.accounting.guo_budget(SIGMA, EPS, DELTA)
print(f"trained: test accuracy {acc(w0):.4f}, ||b|| = {float(jnp.linalg.norm(state0.b)):.2f}")
print(f"c = sqrt(2 ln(1.5/delta)) = {c:.4f}; budget sigma*eps/c = {budget:.4f}; "
      f"training gradient (sum scale) {float(state0.train_grad_norm):.1e} charged already")
assert abs(budget - SIGMA * EPS / c) < 1e-12

# %% [markdown]
# ## 2. One deletion, and its certificate
#
# `unlearn(state, indices)` takes positions in the original training set and returns an
# `UnlearnResult(params, state, certificate, outcome, diagnostics)`. The state is a pure
# value: the old one is untouched (handy for what-if experiments).

# %%
res = unl.unlearn(state0, [17])
cert = res.certificate
print(res.outcome)
print(cert.summary())
assert res.outcome == "unlearned" and cert.valid and cert.status == "holds"

# %% [markdown]
# ### The certificate, field by field
#
# * **`status`** is `holds` (every assumption verified), `conditional` (holds if some
#   *assumed* constant holds) or `fails` (an assumption failed or the budget is spent;
#   `reason` says which). `valid` is true exactly when the status is `holds`. The status
#   is *derived* from the assumptions by `make_certificate`, so the two cannot disagree.
# * **`threat`** names the adversary covered: `indistinguishable_from_retraining` -- an
#   observer of the *unlearned* model cannot tell it from a model retrained without the
#   row. It does **not** cover someone who saw the model before *and* after: $b$ is shared
#   by both versions and cancels in their difference (tutorial 4 attacks exactly that).
# * **`adjacency`**: `removal` ($D$ versus $D$ without the removed rows).
# * **`epsilon`, `delta`, `sigma`, `calibration`**: the guarantee and the noise it rests
#   on; `guo_c` means $\sigma = c\,\epsilon'/\epsilon$ with Guo et al.'s constant $c$.
# * **`scale`**: `sum` -- the residuals and the budget are on Guo et al.'s sum scale
#   ($L_b = nJ$), not certun's mean scale. Mixing the two is the classic bug.
# * **`budget`**: `total` $=\sigma\epsilon/c$, `used` $=R$, `left`, and the `unit`.
# * **`assumptions`**: each `verified`, `assumed` or `failed`, with a statement and, for
#   some, a measured `value` and `limit`.
# * **`bounds`, `solver`, `private`**: the per-request numbers (remainder bounds, solver
#   path and residual, $\lVert b\rVert$, the true residual with `diagnose=True`). These
#   reveal the deleted row's influence, so they are **private**.
# * **`notes`**: the threat and decision rules in words.

# %%
for a in cert.assumptions:
    print(f"  {a.state:9s} {a.name:20s} value={a.value!s:22s} private={a.private}")
print("budget:", cert.budget.to_dict())
print("bounds:", {k: f"{v:.3g}" if isinstance(v, float) else v for k, v in cert.bounds.items()})
print("solver:", dict(cert.solver))
print("private:", {k: f"{v:.3g}" for k, v in cert.private.items()})
assert cert.scale == "sum" and cert.threat == "indistinguishable_from_retraining"
assert cert.budget.used <= cert.budget.total and cert.budget.unit.startswith("sum-scale")

# %% [markdown]
# ### Public versus private view
#
# `cert.public()` (or `to_json(private=False)`) is what you may publish next to the model:
# no bounds, no solver diagnostics, no private quantities, private assumptions without
# their values, and the budget's total only (the amount used is the accumulated residual
# bound, a data-dependent number). `to_json()` (the private view) keeps everything, and
# `Certificate.from_json` reads it back exactly.

# %%
public = cert.public()
private = cert.to_dict(private=True)
print("only in the private view:", sorted(set(private) - set(public)))
print("public assumptions with a value withheld:",
      [a["name"] for a in public["assumptions"] if "value" not in a])
print("public budget:", public["budget"])
assert set(public["budget"]) == {"total", "unit"}
assert not {"bounds", "solver", "private"} & set(public)
assert all("value" not in a for a in public["assumptions"] if a["private"])
assert certun.Certificate.from_json(cert.to_json()).to_dict() == private
print(json.dumps({k: public[k] for k in ("mechanism", "status", "epsilon", "delta",
                                         "threat", "scale")}, indent=1))

# %% [markdown]
# ## 3. Unlearning versus retraining
#
# `unl.retrain(state)` retrains from scratch on the remaining rows **with the same $b$**:
# the model certified removal is indistinguishable from. The distance between the two is
# what the Newton step leaves behind. For scale, compare it with how far two *retrained*
# models with different draws of $b$ are from each other: that spread is the randomness
# the certificate hides the residual in.

# %%
w1 = res.params
rt = unl.retrain(res.state)  # same b, rows 17 removed
rt_other = unl.retrain(res.state, key=jax.random.key(99), same_b=False)
d_unl = float(jnp.linalg.norm(w1 - rt.params))  # both (d,): the published form
d_b = float(jnp.linalg.norm(rt.params - rt_other.params))
d_orig = float(jnp.linalg.norm(w0 - rt.params))
print(f"||w_unlearned - w_retrained||        = {d_unl:.2e}")
print(f"||w_original  - w_retrained||        = {d_orig:.2e}")
print(f"||w_retrained(b) - w_retrained(b')|| = {d_b:.2e}  (two draws of b)")
print(f"test accuracy: original {acc(w0):.4f}, unlearned {acc(w1):.4f}, "
      f"retrained {acc(rt.params):.4f}")
assert d_unl < 1e-2 * d_orig and d_unl < 1e-3 * d_b

# %% [markdown]
# ## 4. Requests until the budget runs out
#
# Now delete rows one request at a time, in a random order, and record for every request:
#
# * the **data-dependent bound** certun charges, Guo et al.'s
#   $\gamma\,\lVert X_{\rm rem}\rVert_2\,\lVert\delta\rVert\,\lVert X_{\rm rem}\delta\rVert$ with
#   $\delta = H^{-1}\Delta$ and a *guaranteed* bound on $\lVert X\rVert_2$;
# * the **worst-case bound** (corrected for $b$ and the accumulated residual), which needs
#   no data but is loose;
# * the **true increment** of the residual vector, $\lVert r_t - r_{t-1}\rVert$, computed from
#   the gradients (what the per-request bound bounds);
# * the cumulative bound $R$ (budget used) and the true cumulative residual $\lVert r_t\rVert$.
#
# The first refused request comes back with outcome `retrain_required`, `params=None`
# and a certificate that `fails` and says why: certun never hands out a model it cannot
# certify.

# %%
grad_sum = jax.jit(lambda W, mask: glm.gradient_sum(glm.get_loss("logistic"), W, state0.X,
                                                    state0.Y, LAM, state0.b, mask))
order = np.random.default_rng(0).permutation(ds.n_train)
rows = []
state, r_prev = state0, grad_sum(state0.W, state0.mask)
for t, i in enumerate(order[: 15 if FAST else 40], start=1):
    out = unl.unlearn(state, [int(i)])
    dg = out.diagnostics
    if out.outcome != "unlearned":
        refused = out
        break
    r_new = grad_sum(out.state.W, out.state.mask)
    rows.append(dict(t=t, dd=dg["step_data_dependent_bound"], wc=dg["step_worst_case_bound"],
                     wcp=dg["step_worst_case_bound_printed"],
                     inc=float(jnp.linalg.norm(r_new - r_prev)),
                     used=dg["residual_bound_after"], true=dg["true_residual"]))
    state, r_prev = out.state, r_new
served = len(rows)
print(f"served {served} requests; request {served + 1}: {refused.outcome}")
print(refused.certificate.status, "--", refused.certificate.reason)
assert refused.outcome == "retrain_required" and refused.params is None
assert refused.certificate.status == "fails" and refused.state is state
for r in rows:  # the bounds bound what they claim to
    assert r["inc"] <= r["dd"] <= r["wc"] and r["true"] <= r["used"] <= budget

# %%
t = [r["t"] for r in rows]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
ax1.semilogy(t, [r["wc"] for r in rows], "s-", ms=3, label="worst case (corrected)")
ax1.semilogy(t, [r["wcp"] for r in rows], ":", label="worst case as printed")
ax1.semilogy(t, [r["dd"] for r in rows], "o-", ms=3, label="data-dependent (charged)")
ax1.semilogy(t, [r["inc"] for r in rows], "^-", ms=3, label="true increment")
ax1.axhline(budget, color="k", ls="--", lw=1, label="whole budget")
ax1.set_xlabel("request")
ax1.set_ylabel("gradient residual (sum scale)")
ax1.set_title("Residual of each request: bounds vs the truth")
ax1.legend(fontsize=7)
ax2.plot(t, [r["used"] for r in rows], "o-", ms=3, label="bound R (budget used)")
ax2.plot(t, [r["true"] for r in rows], "^-", ms=3, label="true residual ||r||")
ax2.axhline(budget, color="k", ls="--", lw=1, label="budget sigma*eps/c")
ax2.axvline(served + 1, color="r", ls=":", lw=1)
ax2.text(served + 1, 0.5 * budget, " refused:\n retrain\n required", color="r", fontsize=8)
ax2.set_yscale("log")
ax2.set_xlabel("request")
ax2.set_ylabel("cumulative residual (sum scale)")
ax2.set_title("Cumulative: the budget certun charges")
ax2.legend(fontsize=7)
fig.suptitle("Certified removal on digits 3-vs-8 (sum scale = n x the mean-loss gradient)")
show("residuals")
print(f"median slack of the data-dependent bound: "
      f"{np.median([r['dd'] / r['inc'] for r in rows]):.0f}x the true increment; "
      f"the worst case is {np.median([r['wc'] / r['dd'] for r in rows]):.0f}x the "
      "data-dependent bound")

# %% [markdown]
# The worst-case bound of a single deletion is far larger than the *whole* budget (the
# printout says by how much): with `bound="worst_case"` the very first request is refused.

# %%
wc_unl = certun.certified_removal(lam=LAM, sigma=SIGMA, epsilon=EPS, delta=DELTA,
                                  bound="worst_case")
out = wc_unl.unlearn(wc_unl.init(ds.X_train, ds.y_train, jax.random.key(0)), [17])
print(out.outcome, "--", out.certificate.reason)
print(f"one worst-case deletion would use {out.certificate.budget.used / budget:.0f}x the budget")
assert out.outcome == "retrain_required" and out.certificate.budget.used > 10 * budget

# %% [markdown]
# ## 5. Serving requests for the life of a model
#
# With `auto_retrain=True` a request that would exceed the budget retrains on the remaining
# rows with a *fresh* $b$ and a new budget, and the result's outcome is `retrained`. (The
# command line's deletion ledger, `certun forget`, does the same and writes every request
# to disk.) We time each request against retraining from scratch. On 267 rows and 64
# features both take about a millisecond (compare the two timings printed): retraining by
# Newton's method is cheap at this size, and the Newton step pays off as $n$ grows
# (`benchmarks/README.md` has the ratios).

# %%
auto = certun.certified_removal(lam=LAM, sigma=SIGMA, epsilon=EPS, delta=DELTA,
                                auto_retrain=True, update="pcg")
state = auto.init(ds.X_train, ds.y_train, jax.random.key(0))
auto.unlearn(auto.unlearn(state, [0]).state, [1])  # compile the request paths
jax.block_until_ready(auto.retrain(state).params)
used, outcomes, seconds = [], [], []
for i in order[: 30 if FAST else 80]:
    t0 = time.perf_counter()
    out = auto.unlearn(state, [int(i)])
    seconds.append(time.perf_counter() - t0)
    state = out.state
    used.append(out.certificate.budget.used)
    outcomes.append(out.outcome)
    assert out.certificate.valid
t0 = time.perf_counter()
rt = auto.retrain(state)
jax.block_until_ready(rt.params)
t_retrain = time.perf_counter() - t0
n_retrains = outcomes.count("retrained")
print(f"{len(outcomes)} requests: {outcomes.count('unlearned')} unlearned, {n_retrains} "
      f"retrained; test accuracy {acc(auto.params(state)):.4f} (retrained: {acc(rt.params):.4f})")
print(f"median request {1e3 * np.median(seconds):.2f} ms, one retraining "
      f"{1e3 * t_retrain:.2f} ms")
assert n_retrains >= 1

fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(range(1, len(used) + 1), used, "o-", ms=3, label="budget used")
for j, o in enumerate(outcomes, start=1):
    if o == "retrained":
        ax.axvline(j, color="r", lw=0.8, ls=":",
                   label="retraining" if j == outcomes.index("retrained") + 1 else None)
ax.axhline(budget, color="k", ls="--", lw=1, label="budget sigma*eps/c")
ax.legend()
ax.set_xlabel("request")
ax.set_ylabel("budget used (sum scale)")
ax.set_title("auto_retrain: the budget is spent, then renewed by a retraining")
show("auto_retrain")

# %% [markdown]
# ## What to take away
#
# * A certified-removal model comes with a certificate that says what it guarantees
#   (`epsilon`, `delta`, `threat`), on which scale its numbers live (`scale`), how much of
#   its budget is left, and every assumption it rests on.
# * The unlearned model is orders of magnitude closer to the model retrained with the same
#   $b$ than to the original model, and than two retrainings with different $b$ are to each
#   other (section 3).
# * The data-dependent bound is the one to charge: the worst case refuses the first
#   request here. Even so the bound is loose (compare the true increments), and the budget
#   $\sigma\epsilon/c$ decides how many removals you get before a retraining.
# * `retrain_required` is an outcome, not an exception: `params` is `None`, the state is
#   unchanged, and the failing certificate says why.
#
# Next: tutorial 3 (networks), tutorial 4 (attacks, and the threat this certificate does
# not cover).
