"""Data parallelism: one mesh over every device, parameters replicated, batches sharded."""

import functools

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


@functools.cache
def data_mesh():
    """A 1-D mesh named 'data' over all devices of all processes.

    Auto axes: the compiler propagates shardings through reshapes (minibatch-stddev groups,
    pooling) instead of asking every op to state them.
    """
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def replicated():
    """Sharding that keeps a full copy on every device (parameters, keys, scalars)."""
    return NamedSharding(data_mesh(), P())


def batch_sharded():
    """Sharding that splits the leading (batch) axis over the 'data' axis."""
    return NamedSharding(data_mesh(), P("data"))


def shard_batch(x):
    """Places `x` split over devices along its batch axis, or replicated when the batch does not
    divide evenly (results are the same; only the placement differs)."""
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if x.ndim and x.shape[0] % jax.device_count() == 0:
        return jax.device_put(x, batch_sharded())
    return jax.device_put(x, replicated())


def replicate(tree):
    """Places every leaf of `tree` on all devices."""
    return jax.device_put(tree, replicated())
