"""mGANprior's multi-code inversion (Gu, Shen, Zhou, "Image Processing Using Multi-Code GAN
Prior", CVPR 2020): K latent codes each run the generator up to an intermediate layer, their
feature maps are composed with per-channel importances alpha,

    F = sum_k alpha_k * F_k / K        (alpha initialised to 1 / K, as the original)

and the rest of the generator turns F into the image. Codes and alphas are optimised together.

mGANprior does this for PGGAN only. jgan also splits StyleGAN and StyleGAN2 (the original's
StyleGAN version was never finished), with two decisions of its own:
- the layers after the split take the mean of the K codes' per-layer codes there, so editing
  all K codes by one offset (as mGANprior's face editing does) moves them by that offset;
- StyleGAN2's skip architecture carries a partial image next to the features; it is averaged
  over the K codes (it has three channels, not the features' C, so alpha does not apply).
"""

import jax
import jax.numpy as jnp

from jgan.errors import InputError
from jgan.models.pggan import PGGANGenerator
from jgan.models.stylegan import StyleGANGenerator
from jgan.models.stylegan2 import StyleGAN2Generator


def _halves(generator, layer, space):
    """(first, second): per-layer codes (K, ...) -> (features, extra), and (features, extra,
    per-layer codes) -> image, for `generator` split after `layer` layers."""
    if isinstance(generator, PGGANGenerator):
        return (
            lambda z: (generator.features(z, layer), None),
            lambda x, extra, z: generator.from_features(x, layer),
        )
    synthesis = getattr(generator, "synthesis", None)
    if isinstance(generator, StyleGANGenerator):
        return (
            lambda codes: (synthesis.features(codes, layer, space=space), None),
            lambda x, extra, codes: synthesis.from_features(x, codes, layer, space=space),
        )
    if isinstance(generator, StyleGAN2Generator):
        return (
            lambda wp: synthesis.features(wp, layer),
            lambda x, image, wp: synthesis.from_features(x, image, wp, layer),
        )
    raise InputError(
        f"multi-code inversion needs a generator that can be split at a layer (PGGAN, StyleGAN, "
        f"StyleGAN2 in the genforce layout); got {type(generator).__name__}"
    )


def layer_codes(generator, codes, space):
    """What the synthesis layers read: Z codes for PGGAN; per-layer W+ (or Y) codes for the
    style-based generators, mapped and broadcast from Z and W codes."""
    if isinstance(generator, PGGANGenerator) or space in ("wp", "y"):
        return codes
    w = generator.mapping(codes) if space == "z" else codes
    return generator.truncation.broadcast(w)


def compose(generator, codes, alphas, layer, space):
    """The image (1, H, W, C) of K codes (K, *code_shape) composed with `alphas` (K, C) after
    `layer` layers."""
    first, second = _halves(generator, layer, space)
    per_layer = layer_codes(generator, codes, space)
    features, extra = first(per_layer)
    composed = jnp.sum(features * alphas[:, None, None, :], axis=0, keepdims=True)
    composed = composed / codes.shape[0]
    if extra is not None:
        extra = jnp.mean(extra, axis=0, keepdims=True)
    return second(composed, extra, jnp.mean(per_layer, axis=0, keepdims=True))


def feature_channels(generator, code_shape, layer, space):
    """C, the channels of the features composed after `layer` layers (shapes only)."""
    first, _ = _halves(generator, layer, space)
    codes = jax.ShapeDtypeStruct((1, *code_shape), jnp.float32)
    features = jax.eval_shape(lambda c: first(layer_codes(generator, c, space))[0], codes)
    return features.shape[-1]
