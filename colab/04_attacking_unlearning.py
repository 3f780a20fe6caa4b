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
# # 4. Attacking unlearning: membership inference, reconstruction, and the private release
#
# A certificate states the **threat** it covers. Certified removal (tutorial 2) covers an
# observer of the *unlearned* model: it cannot tell that model from one retrained without
# the data. This tutorial attacks a different observer -- one who sees the model **before
# and after** a deletion -- with two published attacks (`certun.audits`):
#
# 1. **Two-version membership inference** (Chen et al., CCS 2021): was this record the one
#    that was deleted?
# 2. **Reconstruction** (Bertran et al., NeurIPS 2024): what *was* the deleted record?
#
# against exact retraining, certified removal, uncertified shortcuts, and the **private
# release** (`certun.release`), the defence built for this threat: every published model,
# the original included, carries fresh noise calibrated to one record's influence.
#
# The punchline, measured below: both attacks succeed against exact retraining -- so no
# unlearning method that mimics retraining can stop them, certified or not -- and the
# private release stops both.

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
# `FAST` (`CERTUN_TUTORIAL_FAST=1`) runs fewer attack rounds for the test suite (wider
# confidence intervals, same conclusions).

# %%
import os

import matplotlib

if "ipykernel" not in sys.modules:  # run as a script (CI): draw off-screen
    matplotlib.use("Agg")
import jax
import matplotlib.pyplot as plt
import numpy as np

import certun
from certun.audits import baselines, mia
from certun.audits import reconstruction as rc
from certun.models import glm
from certun.plotting import show_figure
from certun.release import private_release, release_sensitivity

certun.enable_x64()

FAST = os.environ.get("CERTUN_TUTORIAL_FAST") == "1"
FIGDIR = os.environ.get("CERTUN_TUTORIAL_FIGDIR")  # optional: save every figure there


def show(name):
    """Display the current figure, legends off the data (saved to FIGDIR when set)."""
    show_figure(f"04_{name}", FIGDIR)


# %% [markdown]
# ## 1. The methods under attack
#
# All are logistic regression with the same $\lambda$ and follow certun's unlearner
# interface (`init`, `unlearn`, `params`), so the attacks treat them alike:
#
# | method | what is published | guarantee |
# |---|---|---|
# | exact retraining | the model retrained without the record | the reference |
# | certified removal (Guo et al.) | Newton step; noise $b$ drawn once at training | indistinguishable from retraining |
# | Newton step, no noise | the same step without $b$ | **NOT CERTIFIED** |
# | fine-tuning on the retained rows | 10 gradient steps | **NOT CERTIFIED** |
# | private release (of retraining) | every model + fresh calibrated Gaussian noise | differential privacy of the published sequence |
#
# `certun.audits.baselines` holds the uncertified shortcuts; they return
# `certificate=None`. The private release wraps any unlearner:
# `private_release(inner, lam=..., epsilon=..., delta=...)`.

# %%
def methods(lam):
    """The five methods under attack, at regularisation `lam`."""
    return {
        "retraining": certun.exact_retraining(lam=lam, tol=1e-12),
        "certified removal": certun.certified_removal(lam=lam, sigma=1.0, epsilon=1.0,
                                                      delta=1e-4),
        "Newton, no noise": baselines.newton_shortcut(lam=lam),
        "fine-tuning": baselines.finetune_shortcut(lam=lam, steps=10),
        "private release": private_release(certun.exact_retraining(lam=lam, tol=1e-12),
                                           lam=lam, epsilon=1.0, delta=1e-5),
    }


COLORS = {"retraining": "C7", "certified removal": "C0", "Newton, no noise": "C1",
          "fine-tuning": "C4", "private release": "C2"}

# %% [markdown]
# ## 2. Two-version membership inference (Chen et al.)
#
# **Threat.** The adversary queries the model before ($p_o$) and after ($p_u$) a deletion on
# a target record and guesses whether it is the deleted record (member) or one that was
# never in the training set. **Pipeline** (`certun.audits.mia`, as in the authors' code):
#
# 1. `record_split` splits the records into shadow and target pools.
# 2. `collect_pairs` trains `num_sets` original models on random sets of 240 records, makes
#    `deletions_per_set` unlearned models per set (each deleting one record), and queries
#    the deleted record and a never-included one on both versions.
# 3. `chen_attack` trains a random forest on the shadow rows' features -- here the
#    *sorted difference* $\mathrm{sort}(p_o) - p_u$ -- and reports its AUC on the target rows
#    with a DeLong 95% interval, next to the classical one-model MIA on $p_o$ alone.
#
# Data (as in `experiments/chen2021`): digits 3-vs-8, all 357 rows, pixels/16 minus the
# mean image of the *other* eight digit classes (a fixed transform from disjoint public
# data), rows normalised; $\lambda = 0.1$.

# %%
from sklearn.datasets import load_digits

raw = load_digits()
pixels, label = raw.data / 16.0, raw.target
public_mean = pixels[~np.isin(label, (3, 8))].mean(axis=0)
sel = np.isin(label, (3, 8))
Xc = certun.data.normalize_rows(pixels[sel] - public_mean)
yc = np.where(label[sel] == 3, 1.0, -1.0)
split = mia.record_split(Xc.shape[0], seed=0, disjoint=False)
S, U = (6, 5) if FAST else (20, 10)
kw = dict(num_sets=S, deletions_per_set=U, set_size=240)

auc, basic, test_acc = {}, {}, {}
for name, unl in methods(0.1).items():
    shadow = mia.collect_pairs(unl, Xc, yc, split.shadow_positive, split.shadow_negative,
                               key=jax.random.key(1), seed=1, **kw)
    target = mia.collect_pairs(unl, Xc, yc, split.target_positive, split.target_negative,
                               key=jax.random.key(2), seed=2, **kw)
    att = mia.chen_attack(shadow, target, features=("sorted_diff",), seed=0)
    auc[name] = att.auc["sorted_diff"]
    basic[name] = att.auc["basic_mia"].auc
    test_acc[name] = float(np.mean(target.accuracy_unlearned))
    print(f"{name:18s} two-version AUC {auc[name].auc:.3f} [{auc[name].lower:.3f}, "
          f"{auc[name].upper:.3f}]   classical MIA {att.auc['basic_mia'].auc:.3f}   "
          f"accuracy after deletion {test_acc[name]:.3f}")
assert auc["retraining"].auc > 0.85 and auc["certified removal"].auc > 0.85
assert auc["private release"].auc < 0.7
assert all(abs(a - 0.5) < 0.2 for a in basic.values())  # one model alone: near chance
assert test_acc["retraining"] - test_acc["private release"] < 0.1  # the cost of the noise

# %%
names = list(auc)
vals = np.array([auc[k].auc for k in names])
err = np.array([[auc[k].auc - auc[k].lower for k in names],
                [auc[k].upper - auc[k].auc for k in names]])
fig, ax = plt.subplots(figsize=(7.5, 3.2))
ax.bar(names, vals, yerr=err, capsize=4, color=[COLORS[k] for k in names])
ax.axhline(0.5, color="k", ls="--", lw=1)
ax.text(len(names) - 0.5, 0.52, "chance", ha="right", fontsize=8)
ax.set_ylim(0, 1.05)
ax.set_xlabel("how the model after the deletion was produced")
ax.set_ylabel("attack AUC (95% CI)")
ax.set_title("Chen et al.'s two-version membership inference (sorted difference)")
plt.setp(ax.get_xticklabels(), rotation=15)
show("mia_auc")

# %% [markdown]
# Against exact retraining the attack is nearly perfect, while the classical MIA on one
# model is at chance: what leaks is the *difference* between the two versions. Certified
# removal leaks exactly as much, as its certificate says it may (`threat:
# indistinguishable_from_retraining`). Only the private release brings the attack to
# chance, at a cost of a few points of accuracy.

# %% [markdown]
# ## 3. Reconstructing the deleted record (Bertran et al.)
#
# **Threat.** The attacker sees the parameters $\theta$ before and $\theta'$ after one
# deletion, knows $\lambda$ and $n$, and has public data from the same distribution. On
# certun's mean scale, stationarity of both models gives the identity
# (`proofs/audit_reconstruction.md`)
#
# $$\bar H\,(\theta' - \theta) = \ell'(\theta^\top x_z, y_z)\,x_z + \lambda\theta,$$
#
# with $\bar H$ the Hessian of the remaining data along the segment. Guo et al.'s $b$
# appears in both objectives and **cancels**. So
# $\hat g = \hat H(\theta'-\theta) - \lambda\theta$ is proportional to the deleted record
# $x_z$, up to sign. With the exact Hessian of the remaining data (an oracle) the
# reconstruction is exact; with a Hessian estimated from public rows it is nearly so.
#
# Data (as in `experiments/bertran2024`): digits 3-vs-8, the training split is private and
# the test split public; features standardised with the *public* split's statistics, a
# bias of 1 appended, rows normalised; $\lambda = 10/n$.

# %%
ds = certun.data.load_digits_3v8()
mu, sd = ds.X_test.mean(axis=0), ds.X_test.std(axis=0)
live = sd > 1e-12


def standardise(A):
    """Standardise with the public split's statistics, append a bias, normalise rows."""
    Z = np.zeros_like(A)
    Z[:, live] = (A[:, live] - mu[live]) / sd[live]
    return certun.data.normalize_rows(np.concatenate([Z, np.ones((A.shape[0], 1))], axis=1))


Xb, Xpub, yb = standardise(ds.X_train), standardise(ds.X_test), ds.y_train
n, d = Xb.shape
lam = 10.0 / n
deletions = np.random.default_rng(0).permutation(n)[: 10 if FAST else 40]
cosines, shown = {}, {}
for name, unl in methods(lam).items():
    st = unl.init(Xb, yb, jax.random.key(1))
    th0 = np.asarray(unl.params(st))
    cos_exact, cos_public = [], []
    for z in deletions:
        out = unl.unlearn(st, [int(z)])
        th1 = np.asarray(out.params)
        keep = np.delete(np.arange(n), z)
        # the Hessian at theta for Newton-step methods (exact for them), at theta' otherwise
        at = th0 if name in ("certified removal", "Newton, no noise") else th1
        H_exact = rc.exact_hessian("logistic", at, Xb[keep], yb[keep], lam)
        H_public = rc.public_hessian("logistic", at, Xpub, lam, n - 1)
        g_pub = rc.reconstruct(th0, th1, H_public, lam)
        cos_exact.append(rc.abs_cosine(rc.reconstruct(th0, th1, H_exact, lam), Xb[z]))
        cos_public.append(rc.abs_cosine(g_pub, Xb[z]))
        if z == deletions[0]:
            shown[name] = g_pub
    cosines[name] = (np.mean(cos_exact), np.mean(cos_public))
    print(f"{name:18s} mean |cos(reconstruction, deleted x)|: exact H {cosines[name][0]:.4f}, "
          f"public H {cosines[name][1]:.4f}")
baseline = np.mean([rc.abs_cosine(rc.averaging_baseline(Xpub), Xb[z]) for z in deletions])
print(f"averaging baseline (mean of the public rows): {baseline:.4f}")
assert cosines["retraining"][0] > 0.99 and cosines["certified removal"][0] > 0.99
assert cosines["retraining"][1] > 0.95 and cosines["certified removal"][1] > 0.95
assert cosines["private release"][1] < baseline + 0.1  # no better than averaging public rows

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.2))
xs = np.arange(len(cosines))
ax.bar(xs - 0.2, [v[0] for v in cosines.values()], 0.4, label="exact Hessian (oracle)")
ax.bar(xs + 0.2, [v[1] for v in cosines.values()], 0.4, label="public-data Hessian")
ax.axhline(baseline, color="k", ls="--", lw=1, label="averaging baseline")
ax.set_xticks(xs, list(cosines), rotation=15)
ax.set_xlabel("how the model after the deletion was produced")
ax.set_ylabel("mean |cosine| with the deleted record")
ax.set_title("Bertran et al.'s reconstruction from the models before and after")
ax.legend(fontsize=8, loc="center left")
show("reconstruction_cosine")

z0 = deletions[0]
fig, axes = plt.subplots(1, 4, figsize=(8, 2.3))
panels = [("deleted record", Xb[z0])] + [(k, shown[k]) for k in
                                        ("retraining", "certified removal", "private release")]
for ax, (title, vec) in zip(axes, panels, strict=True):
    vec = vec * np.sign(vec @ Xb[z0])  # the sign is not identified; flipped for display
    ax.imshow(vec[:64].reshape(8, 8), cmap="gray_r")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.suptitle("the deleted image and its reconstructions (public-data Hessian)", fontsize=10)
show("reconstruction_images")

# %% [markdown]
# ## 4. The defence: a private release
#
# `certun.release.private_release` publishes release $t$ (release 0 is the original model)
# as
#
# $$\tilde\theta_t = \Pi(\theta_t) + \mathcal N(0, \sigma_t^2 I),\qquad
#   \sigma_t = \mathrm{analytic\_sigma}(\epsilon, \delta, \Delta_t),\qquad
#   \Delta_t = \frac{2}{\lambda n_t} + \frac{2\tau}{\lambda},$$
#
# where $\theta_t$ is the inner unlearner's noiseless model, *checked* to have gradient norm
# at most $\tau$ on the unperturbed objective (and polished by Newton steps if not), $\Pi$
# projects onto a ball that provably holds every such model, and $\Delta_t$ bounds how far
# replacing one record can move the minimiser (logistic, one head; `proofs/private_release.md`).
# The noise scale uses public quantities only: the default adjacency is replace-one, with the
# initial row count and the deletion requests public, so $n_t = n_0 - \text{removed}$ is
# public (`adjacency="add_remove"` with a public `n_min` is the other choice). The noise is
# fresh for every release, so an observer of all of them is covered by the composed
# guarantee.
#
# Its certificate has threat `private_release`. It is a different promise from certified
# removal: differential privacy of the published *sequence*, which is why it covers the
# two-version observer -- and why it costs accuracy.

# %%
rel = methods(lam)["private release"]
st = rel.init(Xb, yb, jax.random.key(1))
out = rel.unlearn(st, [int(deletions[0])])
cert = out.certificate
sens = release_sensitivity("logistic", lam, n - 1, tol=1e-8)
print(cert.summary())
print(f"sensitivity {cert.sensitivity:.4f} ({sens.formula}); sigma {cert.sigma:.4f}")
print(f"epsilon {cert.epsilon} per release; composed over {cert.releases} releases: "
      f"{cert.epsilon_composed:.3f}")
noiseless = np.asarray(out.state.noiseless)
Xtest = standardise(ds.X_test)


def err(w):
    """Test error of the logistic model `w`."""
    return 1 - glm.accuracy("logistic", np.reshape(w, (d, 1)), Xtest, ds.y_test)


print(f"test error: noiseless {err(noiseless):.3f}, released {err(out.params):.3f}")
assert cert.threat == "private_release" and cert.valid and cert.releases == 2
assert abs(cert.sensitivity - sens.value) < 1e-12 and cert.epsilon_composed > cert.epsilon

# %% [markdown]
# ## What to take away
#
# * **Read the threat field.** Certified removal (`indistinguishable_from_retraining`)
#   makes the unlearned model look like a retrained one -- and a retrained one, compared
#   with the model before, reveals who was deleted (AUC near 1) and what they looked like
#   (cosine near 1).
# * The uncertified shortcuts leak just as much, and promise nothing besides.
# * The **private release** (`threat: private_release`) brings the membership attack to
#   chance and the reconstruction down to what averaging public rows achieves, at a cost in
#   accuracy (section 4 prints the test error with and without its noise), and composes
#   its $\epsilon$ over every model it publishes.
# * To run these audits at full size, with all of Chen et al.'s features, mitigations and
#   bootstrap intervals: `python experiments/chen2021/run.py` and
#   `python experiments/bertran2024/run.py`.
