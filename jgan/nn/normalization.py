"""Normalisations of the progressive and style-based GANs, and StyleGAN v1's style modulation."""

import jax.numpy as jnp
from jax import lax


def pixel_norm(x, axis=-1, eps=1e-8):
    """x / sqrt(mean(x^2) + eps) over `axis` (channels of NHWC maps, or latent dims)."""
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def instance_norm(x, eps=1e-8):
    """Per-sample, per-channel normalisation over H and W of NHWC maps (no affine)."""
    x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) + eps)


def style_modulate(x, style):
    """StyleGAN v1 AdaIN: x * (scale + 1) + shift with style = [scale | shift] of shape (N, 2C)."""
    c = x.shape[-1]
    scale = style[:, None, None, :c].astype(x.dtype)
    shift = style[:, None, None, c:].astype(x.dtype)
    return x * (scale + 1) + shift


def minibatch_stddev(x, group_size=4, num_features=1, eps=1e-8):
    """Appends the group standard deviation as `num_features` extra channels.

    Groups are strided over the batch as in the official code (sample n = g * M + m belongs to
    group m); the group is min(group_size, N), which must divide N. The std is averaged over
    channels (per feature chunk) and space.
    """
    n, h, w, c = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch-stddev needs the batch ({n}) divisible by the group ({g})")
    y = x.reshape(g, n // g, h, w, num_features, c // num_features).astype(jnp.float32)
    y = y - jnp.mean(y, axis=0)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + eps)  # (M, H, W, F, C/F)
    y = jnp.mean(y, axis=(1, 2, 4))  # (M, F)
    y = jnp.tile(y, (g, 1)).astype(x.dtype)  # (N, F)
    y = jnp.broadcast_to(y[:, None, None, :], (n, h, w, num_features))
    return jnp.concatenate([x, y], axis=-1)
