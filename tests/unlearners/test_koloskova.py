"""Bring-your-own-model noisy fine-tuning (Koloskova et al. 2025).

Three models trained *outside* certun with an optax loop -- a flax linen MLP, a flax nnx CNN
and a hand-written function -- are unlearned and certified, jitted and unjitted. References:

* an independent step-by-step loop (plain Python over the same keys) of the published update
  rule, for each variant;
* the forgotten rows are never read: replacing them by garbage leaves the output bit-identical;
* jitted and unjitted runs agree to 1e-12;
* the certificate's noise equals the accountant's calibration.
"""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from certun import ValidationError
from certun.accounting import koloskova as acct
from certun.accounting.gaussian import analytic_sigma
from certun.nn.byo import as_apply, tree_clip
from certun.unlearners.koloskova import noisy_finetuning, softmax_cross_entropy

N, D, K = 60, 16, 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D)) / 4.0
    y = rng.integers(0, K, N)
    return X, y


def _train(apply, params, X, y, steps=30):
    """The user's own optax loop (not certun's)."""
    opt = optax.adam(1e-2)
    s = opt.init(params)

    @jax.jit
    def step(p, s):
        g = jax.grad(lambda q: softmax_cross_entropy(apply(q, X), y))(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    for _ in range(steps):
        params, s = step(params, s)
    return params


class _LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(K, param_dtype=jnp.float64)(
            jnp.tanh(nn.Dense(8, param_dtype=jnp.float64)(x)))


class _NnxCNN(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 2, (3, 3), rngs=rngs, param_dtype=jnp.float64)
        self.out = nnx.Linear(2 * D, K, rngs=rngs, param_dtype=jnp.float64)

    def __call__(self, x):
        h = jnp.tanh(self.conv(x.reshape(x.shape[0], 4, 4, 1)))
        return self.out(h.reshape(x.shape[0], -1))


def _hand(params, x):
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


@pytest.fixture(scope="module")
def models(data):
    X, y = data
    lin = _LinenMLP()
    lin_apply = as_apply(lin)
    lin_p = _train(lin_apply, lin.init(jax.random.key(1), X[:1])["params"], X, y)
    graphdef, state = nnx.split(_NnxCNN(nnx.Rngs(2)))
    nnx_apply = as_apply(graphdef)
    nnx_p = _train(nnx_apply, state, X, y)
    hp = {"w1": jax.random.normal(jax.random.key(3), (D, 6), jnp.float64) / 4,
          "w2": jax.random.normal(jax.random.key(4), (6, K), jnp.float64) / 4}
    hand_p = _train(as_apply(_hand), hp, X, y)
    return {"linen": (lin_apply, lin_p), "nnx": (nnx_apply, nnx_p), "function": (_hand, hand_p)}


CONFIGS = {
    "gradient_clipping": dict(init_clip=1.0, lr=0.5, grad_clip=1.0, weight_decay=0.1),
    "model_clipping": dict(init_clip=1.0, lr=0.2, model_clip=1.0, init_sigma=1.0, steps=2),
    "output_perturbation": dict(init_clip=1.0),
}


def _reference(apply, params, X, y, retained, key, variant, unl_diag, cfg, batch, post):
    """Plain-Python loop of the published rule over the same keys."""
    k0, kloop, kpost = jax.random.split(key, 3)

    def noise(k, tree, s):
        leaves, tdef = jax.tree.flatten(tree)
        ks = jax.random.split(k, len(leaves))
        return jax.tree.unflatten(tdef, [x + s * jax.random.normal(kk, x.shape, x.dtype)
                                         for kk, x in zip(ks, leaves, strict=True)])

    def clip(tree, c):
        nrm = float(np.sqrt(sum(float(jnp.sum(x * x)) for x in jax.tree.leaves(tree))))
        return tree if nrm <= c else jax.tree.map(lambda x: x * (c / nrm), tree)

    p = retained / retained.sum()
    s0 = unl_diag["init_sigma"]
    x = noise(k0, clip(params, cfg["init_clip"]), s0)
    T, sig = unl_diag["steps"], unl_diag["sigma"]
    lam, lr = cfg.get("weight_decay", 0.0), cfg.get("lr", 0.1)

    def grad(w, k):
        idx = jax.random.choice(k, X.shape[0], (batch,), replace=True, p=jnp.asarray(p))
        return jax.grad(lambda v: softmax_cross_entropy(apply(v, X[idx]), y[idx]))(w)

    for k in jax.random.split(kloop, T) if T else []:
        kb, kn = jax.random.split(k)
        g = grad(x, kb)
        if variant == "gradient_clipping":
            g = clip(g, cfg["grad_clip"])
            x = jax.tree.map(lambda a, b: (1 - lr * lam) * a - lr * b, x, g)
        else:
            u = clip(jax.tree.map(lambda a, b: b + lam * a, x, g), cfg.get("grad_clip", 1.0))
            x = clip(jax.tree.map(lambda a, b: a - lr * b, x, u), cfg["model_clip"])
        x = noise(kn, x, sig)
    opt = optax.adam(1e-3)
    s = opt.init(x)
    for k in jax.random.split(kpost, post):
        u, s = opt.update(grad(x, k), s, x)
        x = optax.apply_updates(x, u)
    return x


def _close(a, b, tol):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


VARIANT_OF = {"linen": "gradient_clipping", "nnx": "model_clipping",
              "function": "gradient_clipping"}
EPS = {"gradient_clipping": 50.0, "model_clipping": 2.0, "output_perturbation": 50.0}


def _unlearn(apply, params, X, y, forget, key, variant, jit=True, post=1):
    unl = noisy_finetuning(apply, variant=variant, epsilon=EPS[variant], delta=1e-5,
                           batch_size=8, post_steps=post, jit=jit, **CONFIGS[variant])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return unl.unlearn(unl.init(X, y, params=params), forget, key)


FORGET = np.arange(0, N, 7)


@pytest.mark.parametrize("which", ["linen", "nnx", "function"])
def test_bring_your_own_model(models, data, which):
    X, y = data
    apply, params = models[which]
    variant = VARIANT_OF[which]
    key = jax.random.key(5)
    res = _unlearn(apply, params, X, y, FORGET, key, variant, jit=True)
    cert = res.certificate
    assert cert.status == "holds" and cert.valid
    assert cert.removed == FORGET.size and cert.sensitivity == pytest.approx(2.0)
    eps = EPS[variant]
    # the noise is the accountant's, from public quantities only
    if variant == "gradient_clipping":
        cal = acct.gradient_clipping_sigma(epsilon=eps, delta=1e-5, init_clip=1.0, grad_clip=1.0,
                                           lr=0.5, weight_decay=0.1)
        assert cert.sigma == cal.sigma and res.diagnostics["steps"] == cal.steps
    else:
        d = acct.model_clipping_deltas(epsilon=eps, init_clip=1.0, init_sigma=1.0,
                                       model_clip=1.0, sigma=cert.sigma, steps=2)
        d_less = acct.model_clipping_deltas(epsilon=eps, init_clip=1.0, init_sigma=1.0,
                                            model_clip=1.0, sigma=cert.sigma * 0.999, steps=2)
        assert d[-1] <= 1e-5 < d_less[-1]
    # the forgotten rows are never read: garbage in them changes no bit of the output
    Xg, yg = X.copy(), y.copy()
    Xg[FORGET] = 1e3
    yg[FORGET] = (yg[FORGET] + 1) % K
    _close(res.params, _unlearn(apply, params, Xg, yg, FORGET, key, variant).params, 0.0)
    # the public view holds no data-dependent number: unrelated data of the same shape and an
    # unrelated model give the same public view
    rng = np.random.default_rng(9)
    other = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
    res_o = _unlearn(apply, other, rng.normal(size=X.shape), rng.integers(0, K, N), FORGET,
                     jax.random.key(8), variant)
    assert res_o.certificate.public() == cert.public()
    pub = cert.public()
    assert pub["public_inputs"]["variant"] == variant and "bounds" not in pub


@pytest.mark.parametrize("which", [
    "function", pytest.param("linen", marks=pytest.mark.slow),
    pytest.param("nnx", marks=pytest.mark.slow)])
def test_bring_your_own_model_unjitted(models, data, which):
    """``jit=False`` (eager, only the loop bodies compiled) gives the jitted result."""
    X, y = data
    apply, params = models[which]
    variant = VARIANT_OF[which]
    key = jax.random.key(5)
    res = _unlearn(apply, params, X, y, FORGET, key, variant, jit=True)
    res_eager = _unlearn(apply, params, X, y, FORGET, key, variant, jit=False)
    _close(res.params, res_eager.params, 1e-12)
    assert res_eager.certificate.status == "holds"


def _check_reference(models, data, which, variant):
    X, y = data
    apply, params = models[which]
    key = jax.random.key(6)
    res = _unlearn(apply, params, X, y, FORGET, key, variant)
    retained = np.ones(N)
    retained[FORGET] = 0.0
    ref = _reference(apply, params, X, y, retained, key, variant, res.diagnostics,
                     CONFIGS[variant], 8, 1)
    _close(res.params, ref, 1e-9)


def test_gradient_clipping_matches_an_independent_loop(models, data):
    _check_reference(models, data, "function", "gradient_clipping")


@pytest.mark.slow
@pytest.mark.parametrize("which,variant", [("function", "model_clipping"),
                                           ("function", "output_perturbation"),
                                           ("linen", "gradient_clipping"),
                                           ("nnx", "model_clipping")])
def test_every_variant_matches_an_independent_loop(models, data, which, variant):
    _check_reference(models, data, which, variant)


def test_output_perturbation_noise(models, data):
    X, y = data
    apply, params = models["function"]
    res = _unlearn(apply, params, X, y, FORGET, jax.random.key(7), "output_perturbation", post=0)
    assert res.certificate.sigma == pytest.approx(analytic_sigma(50.0, 1e-5, 2.0), rel=1e-12)
    assert res.diagnostics["steps"] == 0


def test_clip_is_inside_the_ball():
    t = {"a": jnp.full((5,), 3.0), "b": jnp.full((2, 2), -4.0)}
    c = tree_clip(t, 1.0)
    nrm = float(jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(c))))
    assert nrm <= 1.0 and nrm == pytest.approx(1.0, rel=1e-12)
    _close(tree_clip(t, 100.0), t, 0.0)


def test_unclipped_gradients_make_the_certificate_conditional(models, data):
    X, y = data
    apply, params = models["function"]
    unl = noisy_finetuning(apply, variant="gradient_clipping", epsilon=50.0, delta=1e-5,
                           init_clip=1.0, lr=0.5, grad_clip=None, assumed_grad_bound=1.0,
                           batch_size=8, steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = unl.unlearn(unl.init(X, y, params=params), [0], jax.random.key(0))
    assert res.certificate.status == "conditional"
    assert "gradient_bound" in res.certificate.reason


def test_noise_that_swamps_the_model_warns(models, data):
    X, y = data
    apply, params = models["function"]
    unl = noisy_finetuning(apply, variant="output_perturbation", epsilon=1.0, delta=1e-5,
                           init_clip=1.0)
    with pytest.warns(UserWarning, match="amounts to retraining"):
        res = unl.unlearn(unl.init(X, y, params=params), [0], jax.random.key(0))
    assert any("noise dominates" in n for n in res.certificate.notes)


def test_bad_inputs(models, data):
    X, y = data
    apply, params = models["function"]
    with pytest.raises(ValidationError, match="variant"):
        noisy_finetuning(apply, variant="nope", epsilon=1.0, delta=1e-5, init_clip=1.0)
    with pytest.raises(ValidationError, match="init_sigma"):
        noisy_finetuning(apply, variant="model_clipping", epsilon=1.0, delta=1e-5,
                         init_clip=1.0, sigma=1.0)
    with pytest.raises(ValidationError, match="grad_clip"):
        noisy_finetuning(apply, variant="gradient_clipping", epsilon=1.0, delta=1e-5,
                         init_clip=1.0, grad_clip=None)
    with pytest.raises(ValidationError, match="nnx.split"):
        as_apply(_NnxCNN(nnx.Rngs(0)))
    unl = noisy_finetuning(apply, variant="output_perturbation", epsilon=1.0, delta=1e-5,
                           init_clip=1.0)
    with pytest.raises(ValidationError, match="key"):
        unl.unlearn(unl.init(X, y, params=params), [0])


def test_post_rescale_maps_every_layer_onto_the_reference_norms(models, data):
    """post_rescale: each leaf ends with its reference leaf's norm (zeros stay zeros)."""
    from certun.nn.byo import leaf_norms, tree_rescale

    t = {"w": jnp.arange(6.0).reshape(2, 3) - 2.5, "b": jnp.ones(3), "z": jnp.zeros(2)}
    ref = {"w": jnp.full((2, 3), 0.5), "b": jnp.zeros(3), "z": jnp.ones(2)}
    out = jax.jit(tree_rescale)(t, leaf_norms(ref))
    w = np.asarray(t["w"])
    np.testing.assert_allclose(np.asarray(out["w"]), w * np.sqrt(6 * 0.25) / np.linalg.norm(w),
                               rtol=1e-14)
    assert not np.any(np.asarray(out["b"])) and not np.any(np.asarray(out["z"]))
    X, y = data
    apply, params = models["function"]
    ref_p = {"w1": jnp.full_like(params["w1"], 0.1), "w2": jnp.zeros_like(params["w2"])}
    # eager (T = 0: no loop); the jitted path runs in the experiment's smoke test
    unl = noisy_finetuning(apply, variant="output_perturbation", epsilon=1.0, delta=1e-5,
                           init_clip=1.0, post_rescale=ref_p, jit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = unl.unlearn(unl.init(X, y, params=params), [0], jax.random.key(0))
    assert float(jnp.linalg.norm(res.params["w1"])) == pytest.approx(
        0.1 * np.sqrt(params["w1"].size), rel=1e-12)
    assert not np.any(np.asarray(res.params["w2"]))
    assert res.certificate.public_inputs["post_rescale"] is True
    bad = noisy_finetuning(apply, variant="output_perturbation", epsilon=1.0, delta=1e-5,
                           init_clip=1.0, post_rescale={"w1": ref_p["w1"]}, jit=False)
    with pytest.raises(ValidationError, match="post_rescale"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bad.unlearn(bad.init(X, y, params=params), [0], jax.random.key(0))


def test_unlearners_of_one_model_share_one_compiled_program(models, data):
    """The jitted programs are keyed on apply and the optimizers: no program per unlearner.

    Before the fix, a fresh default ``optax.adam`` per call (noisy fine-tuning, DP-SGD) and a
    fresh ``Network`` per Zhang unlearner compiled, and kept, a new program per unlearner: the
    memory growth that killed experiments/koloskova2025's full grid.
    """
    import gc

    from certun.unlearners import koloskova, zhang

    X, y = data
    apply, params = models["function"]
    sizes, keep = [], []
    for eps in (1.0, 2.0, 3.0):  # output perturbation: no noisy step, post_steps=2
        unl = noisy_finetuning(apply, variant="output_perturbation", epsilon=eps, delta=1e-5,
                               init_clip=1.0, post_steps=2)
        unl.unlearn(unl.init(X, y, params=params), FORGET, jax.random.key(1))
        keep.append(unl)  # alive: a program keyed on it would stay in the cache and count
        gc.collect()  # programs of other tests' dead objects leave the cache before we count
        sizes.append(koloskova._run._cache_size())
    assert sizes[1] == sizes[0] and sizes[2] == sizes[0], sizes
    nets = {zhang._byo_network(apply, None) for _ in range(3)}
    assert len(nets) == 1


@pytest.mark.slow
def test_dp_sgd_and_zhang_of_one_model_share_one_compiled_program(models, data):
    """DP-SGD (default optimizer) and Zhang's Newton step: one program per model."""
    from certun.nn import TrainConfig
    from certun.nn.dp import _train, dp_sgd_train
    from certun.unlearners import zhang

    X, y = data
    apply, params = models["function"]
    dsz = []
    for eps in (1.0, 2.0):
        dp_sgd_train(apply, params, X, y, jax.random.key(2), epsilon=eps, delta=1e-5, steps=2,
                     batch_size=N)
        dsz.append(_train._cache_size())
    assert dsz[1] == dsz[0]
    tc = TrainConfig(radius=5.0, weight_decay=0.0, dtype="float64")
    z1 = zhang.zhang_unlearning(apply, tc, epsilon=1.0, lam_min="none", cg_max_steps=3)
    z2 = zhang.zhang_unlearning(apply, tc, epsilon=2.0, lam_min="none", cg_max_steps=3)
    st = z1.init(X, y, jax.random.key(3), params=params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        z1.unlearn(st, FORGET, jax.random.key(4))
        n1 = zhang._step_fn.cache_info().currsize
        z2.unlearn(z2.init(X, y, jax.random.key(3), params=params), FORGET, jax.random.key(4))
    assert zhang._step_fn.cache_info().currsize == n1
