"""A cheap distance between two image distributions, for tests and training monitors."""

import jax
import jax.numpy as jnp

from jgan.errors import InputError


def sliced_wasserstein(x, y, key, num_projections=256):
    """Sliced 1-Wasserstein distance between two samples of equal size (N, ...).

    Each sample is flattened to vectors, projected on `num_projections` random unit
    directions, and the 1-D Wasserstein-1 distances of the projections (the mean gap between
    the sorted values) are averaged. Zero for identical samples; it grows as the two
    distributions differ in any direction, and costs only two matmuls and a sort.
    """
    x = jnp.asarray(x, jnp.float32).reshape(len(x), -1)
    y = jnp.asarray(y, jnp.float32).reshape(len(y), -1)
    if x.shape != y.shape:
        raise InputError(f"samples must have the same shape; got {x.shape} and {y.shape}")
    directions = jax.random.normal(key, (x.shape[1], num_projections))
    directions = directions / jnp.linalg.norm(directions, axis=0, keepdims=True)
    gaps = jnp.sort(x @ directions, axis=0) - jnp.sort(y @ directions, axis=0)
    return jnp.mean(jnp.abs(gaps))
