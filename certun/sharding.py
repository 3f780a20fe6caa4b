"""Data-parallel placement with ``jax.sharding``: a mesh with a data axis, rows sharded over it.

certun's convex models touch the training rows only through sums over rows
(gradients, Hessian-vector products, ``X^T D X``, ``X^T X``), so sharding the rows
of ``X``, ``Y`` and the row mask over a mesh axis and replicating everything else
(parameters, ``d x d`` factors) lets ``jax.jit`` (GSPMD) run every step
data-parallel, inserting the all-reduce of each row sum itself. The *same* jitted
code then runs on one CPU, several GPUs or a TPU slice; on one device these
helpers are no-ops.

Use :func:`data_mesh` to build the mesh and pass it to
``certified_removal(...).init(X, y, key, mesh=mesh)`` (or :func:`shard_rows` your own
arrays). To test on a CPU, start Python with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the flag must be set before
JAX starts); on a 2-core machine that proves correctness and measures overhead,
not speed-up.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from certun import _validate

__all__ = ["DATA_AXIS", "data_mesh", "row_sharding", "shard_rows", "replicate", "shard_info"]

#: Name of the mesh axis the training rows are sharded over.
DATA_AXIS = "data"


def data_mesh(num_devices: int | None = None, axis: str = DATA_AXIS,
              devices: Any = None) -> Mesh:
    """A one-dimensional mesh whose only axis (``axis``) shards the data rows.

    Args:
      num_devices: how many of the available devices to use (default: all).
      axis: the axis name (default ``"data"``).
      devices: explicit devices (default ``jax.devices()``).
    """
    devs = list(jax.devices() if devices is None else devices)
    if num_devices is not None:
        num_devices = _validate.integer(num_devices=num_devices, minimum=1)
        if num_devices > len(devs):
            raise _validate.ValidationError(
                f"num_devices={num_devices} exceeds the {len(devs)} available devices; on a CPU "
                "set XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts")
        devs = devs[:num_devices]
    return Mesh(np.asarray(devs), (axis,))


def row_sharding(mesh: Mesh, ndim: int, axis: str | None = None) -> NamedSharding:
    """``NamedSharding`` splitting dimension 0 over ``axis`` (the mesh's first axis by default)."""
    axis = mesh.axis_names[0] if axis is None else axis
    return NamedSharding(mesh, PartitionSpec(axis, *([None] * (ndim - 1))))


def shard_rows(x: Any, mesh: Mesh, axis: str | None = None, name: str = "x") -> jax.Array:
    """Place ``x`` with its rows split evenly over ``axis`` of ``mesh``.

    Raises:
      ValidationError: if the number of rows is not divisible by the axis size (naming ``name``).
    """
    axis = mesh.axis_names[0] if axis is None else axis
    size = mesh.shape[axis]
    n = int(np.shape(x)[0])
    if n % size:
        raise _validate.ValidationError(
            f"{name} has {n} rows, not divisible by the {size} devices of mesh axis {axis!r}; "
            f"drop {n % size} rows or use a mesh whose size divides {n}")
    return jax.device_put(x, row_sharding(mesh, np.ndim(x), axis))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of ``tree`` fully replicated on ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_info(x: jax.Array) -> dict:
    """How ``x`` is laid out: number of devices and the row count of each addressable shard."""
    shards = x.addressable_shards
    return {"num_devices": len(x.sharding.device_set),
            "shard_rows": [int(s.data.shape[0]) for s in shards],
            "spec": str(getattr(x.sharding, "spec", None))}
