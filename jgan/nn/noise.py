"""Per-layer noise inputs of the style-based generators."""

import jax
import jax.numpy as jnp

NOISE_MODES = ("const", "random", "none")


def noise_map(fixed, batch, mode="const", key=None, dtype=jnp.float32):
    """Noise (N, H, W, 1) for one layer: the stored `fixed` buffer (1, 1, H, W), fresh N(0, 1)
    samples from `key`, or zeros."""
    height, width = fixed.shape[-2:]
    if mode == "const":
        return jnp.broadcast_to(fixed.reshape(1, height, width, 1), (batch, height, width, 1))
    if mode == "random":
        if key is None:
            raise ValueError("noise_mode='random' needs a PRNG key (key=jax.random.key(...))")
        return jax.random.normal(key, (batch, height, width, 1), dtype)
    if mode == "none":
        return jnp.zeros((batch, height, width, 1), dtype)
    raise ValueError(f"unknown noise_mode {mode!r}; expected one of {NOISE_MODES}")
