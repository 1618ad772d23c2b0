"""Data parallelism over every device, in one process or many.

The shared loop puts params and optimizer state on a one-axis mesh over all
devices (`jax.devices()`, which spans every process after
`jax.distributed.initialize`), replicated, and shards each batch along its
first axis. XLA then inserts the gradient all-reduce. Arrays are built with
`jax.make_array_from_callback`, which works the same in one process and in
many, because each process supplies only the shards of its own devices.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "data"


def data_mesh() -> Mesh | None:
    """Return a mesh over all devices, or None when there is only one."""
    devices = jax.devices()
    if len(devices) == 1:
        return None
    return Mesh(np.asarray(devices), (BATCH_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def put(tree: Any, sharding: NamedSharding) -> Any:
    """Place host or device values as global arrays with `sharding`.

    Every process must pass the same full values; each keeps its own shards.
    """

    def place(value):
        value = np.asarray(host_value(value))
        return jax.make_array_from_callback(
            value.shape, sharding, lambda index: value[index]
        )

    return jax.tree.map(place, tree)


def host_value(value: Any) -> Any:
    """Return a host copy of a replicated or single-device array, in any process."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        return np.asarray(value.addressable_shards[0].data)
    return value


def host_tree(tree: Any) -> Any:
    """`host_value` of every leaf, so the result computes on the local device."""
    return jax.tree.map(lambda x: np.asarray(host_value(x)), tree)


def check_batch_size(batch_size: int, mesh: Mesh | None) -> None:
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {mesh.size} devices "
            f"of the data-parallel mesh; use a multiple of {mesh.size}"
        )
