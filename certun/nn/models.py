"""Flax networks used functionally: a params pytree plus a pure ``apply`` function.

certun's curvature primitives (:func:`certun.primitives.hvp`, ``ggn_operator``,
``per_example_grads``) act on any pytree, so a network is exposed as a
:class:`Network`: ``params = net.init(key)`` and ``logits = net.apply(params, X)``,
with ``X`` the flattened, row-normalised inputs (``(n, d)``; the CNN reshapes to
images inside ``apply``). Nothing is stateful: no BatchNorm, no dropout (Zhang et al.
2024's CIFAR-10 and SVHN networks use BatchNorm, whose running statistics are frozen in
evaluation mode and so are never unlearned; the models here avoid the issue altogether).

* :func:`mlp`: fully connected ``d - h_1 - ... - h_k - K``; the paper's MNIST model is
  ``mlp(784, (32, 32), 10, "relu")`` (Zhang et al. 2024, §5; 26,506 parameters).
  Smooth activations (``tanh``, ``softplus``, ``gelu``, ``silu``) make the Hessian
  Lipschitz on bounded sets, which the Newton bound assumes; ReLU networks have a
  piecewise-constant activation derivative, so their Hessian is not Lipschitz.
* :func:`cnn`: two 3x3 convolutions with average pooling and a dense head, for 8x8
  (scikit-learn digits) or 28x28 (MNIST) single-channel images.

Linen modules are used only to build the parameter pytree and the pure apply function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import flax.linen as nn
import jax
import jax.numpy as jnp

from certun import _validate

__all__ = ["ACTIVATIONS", "Network", "mlp", "cnn", "num_params"]

PyTree = Any

#: Activations by name; all but ``relu`` are smooth (C^infinity).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "softplus": nn.softplus,
    "gelu": nn.gelu,
    "silu": nn.silu,
}


class Network(NamedTuple):
    """A network as pure functions.

    Attributes:
      init: ``init(key, dtype=jnp.float32) -> params`` (a pytree of arrays).
      apply: ``apply(params, X) -> logits`` with ``X`` of shape ``(n, input_dim)``
        and logits ``(n, num_classes)``.
      input_dim: number of input features.
      num_classes: number of outputs.
      name: a short description, e.g. ``"mlp-64-32-32-10-tanh"``.
      smooth: whether the activation is smooth (the Hessian is then locally Lipschitz).
    """

    init: Callable[..., PyTree]
    apply: Callable[[PyTree, jax.Array], jax.Array]
    input_dim: int
    num_classes: int
    name: str
    smooth: bool


class _MLP(nn.Module):
    widths: tuple[int, ...]
    num_classes: int
    activation: str
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for w in self.widths:
            x = act(nn.Dense(w, param_dtype=self.param_dtype, dtype=self.param_dtype)(x))
        return nn.Dense(self.num_classes, param_dtype=self.param_dtype,
                        dtype=self.param_dtype)(x)


class _CNN(nn.Module):
    image_shape: tuple[int, int]
    channels: tuple[int, int]
    num_classes: int
    activation: str
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        h, w = self.image_shape
        x = x.reshape(x.shape[0], h, w, 1)
        kw = dict(param_dtype=self.param_dtype, dtype=self.param_dtype)
        x = act(nn.Conv(self.channels[0], (3, 3), padding="SAME", **kw)(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = act(nn.Conv(self.channels[1], (3, 3), padding="SAME", **kw)(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes, **kw)(x)


def _functional(module_for: Callable[[Any], nn.Module], input_dim: int,
                input_scale: float) -> tuple[Callable, Callable]:
    def init(key: jax.Array, dtype: Any = jnp.float32) -> PyTree:
        mod = module_for(dtype)
        return mod.init(key, jnp.zeros((1, input_dim), dtype))["params"]

    def apply(params: PyTree, X: jax.Array) -> jax.Array:
        dtype = jax.tree.leaves(params)[0].dtype
        return cast(jax.Array, module_for(dtype).apply({"params": params},
                                                       input_scale * X.astype(dtype)))

    return init, apply


def mlp(input_dim: int, widths: Sequence[int] = (32, 32), num_classes: int = 10,
        activation: str = "tanh", input_scale: float = 1.0) -> Network:
    """A fully connected network ``input_dim - widths... - num_classes``.

    Args:
      input_dim: number of input features (64 for 8x8 digits, 784 for MNIST).
      widths: hidden-layer widths; Zhang et al.'s MNIST MLP is ``(32, 32)`` with ReLU.
      num_classes: number of outputs.
      activation: one of :data:`ACTIVATIONS`.
      input_scale: a fixed factor applied to the inputs inside ``apply`` (data-independent,
        so nothing leaks): certun's rows have ``||x_i|| <= 1``, i.e. pixels of order
        ``1/sqrt(d)``; ``input_scale = sqrt(d)`` restores unit-order features.

    Returns:
      A :class:`Network` (flax linen ``Dense`` layers with the default initialisers:
      LeCun-normal kernels, zero biases).
    """
    d = _validate.integer(input_dim=input_dim, minimum=1)
    k = _validate.integer(num_classes=num_classes, minimum=2)
    ws = tuple(_validate.integer(**{f"widths[{i}]": w}, minimum=1) for i, w in enumerate(widths))
    act = _validate.choice(tuple(ACTIVATIONS), activation=activation)
    scale = _validate.positive(input_scale=input_scale)
    init, apply = _functional(lambda dt: _MLP(ws, k, act, dt), d, scale)
    name = "mlp-" + "-".join(map(str, (d, *ws, k))) + f"-{act}"
    return Network(init, apply, d, k, name, act != "relu")


def cnn(image_shape: tuple[int, int] = (8, 8), channels: tuple[int, int] = (8, 16),
        num_classes: int = 10, activation: str = "tanh", input_scale: float = 1.0) -> Network:
    """A small CNN: conv3x3 - act - avgpool2 - conv3x3 - act - avgpool2 - dense.

    Args:
      image_shape: ``(height, width)`` of the single-channel images, both divisible by 4
        (``(8, 8)`` for scikit-learn digits, ``(28, 28)`` for MNIST); rows of ``X`` are the
        flattened images.
      channels: output channels of the two convolutions.
      num_classes: number of outputs.
      activation: one of :data:`ACTIVATIONS`.
      input_scale: fixed input factor (see :func:`mlp`).

    Returns:
      A :class:`Network`.
    """
    h = _validate.integer(**{"image_shape[0]": image_shape[0]}, minimum=4)
    w = _validate.integer(**{"image_shape[1]": image_shape[1]}, minimum=4)
    if h % 4 or w % 4:
        raise _validate.ValidationError(
            f"image_shape={image_shape} must have both sides divisible by 4 (two 2x2 poolings)")
    ch = tuple(_validate.integer(**{f"channels[{i}]": c}, minimum=1)
               for i, c in enumerate(channels))
    if len(ch) != 2:
        raise _validate.ValidationError(f"channels must hold 2 integers, got {channels!r}")
    k = _validate.integer(num_classes=num_classes, minimum=2)
    act = _validate.choice(tuple(ACTIVATIONS), activation=activation)
    scale = _validate.positive(input_scale=input_scale)
    init, apply = _functional(lambda dt: _CNN((h, w), ch, k, act, dt), h * w, scale)
    return Network(init, apply, h * w, k, f"cnn-{h}x{w}-{ch[0]}-{ch[1]}-{k}-{act}", act != "relu")


def num_params(params: PyTree) -> int:
    """Number of scalar parameters in a pytree."""
    return sum(int(x.size) for x in jax.tree.leaves(params))
