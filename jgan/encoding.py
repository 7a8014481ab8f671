"""Encoding images to latent codes with a jgan encoder: jitted once per shape, data-parallel.

    encoder = jgan.load("styleganinv_ffhq256_encoder.pth").encoder
    codes = jgan.encode(encoder, images)       # (N, num_layers, w_space_dim), W+ codes
    jgan.synthesize(generator, codes, space="wp")
    features = extract_features(ghfeat_encoder, images)   # GH-Feat: per-layer codes

The encoder crosses into `jax.jit` as (graph definition, state), as in `jgan.api`.
"""

import functools

import jax
from flax import nnx

from jgan import parallel
from jgan.api import as_input_array, placed
from jgan.errors import InputError
from jgan.models.encoders import StyleGANEncoder


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _encode(graphdef, state, images):
    return nnx.merge(graphdef, state)(images)


def encode(encoder, images):
    """Latent codes of NHWC RGB `images` in [-1, 1]: (N, num_layers, w_space_dim) W+ codes
    for IDInvert's encoder, (N, num_layers, latent_dim) codes in `encoder.latent_space` for
    GH-Feat's. The batch is sharded over all devices."""
    from jgan.models.ghfeat import GHFeatEncoder  # here: keeps `import jgan` light

    if not isinstance(encoder, StyleGANEncoder | GHFeatEncoder):
        raise InputError(f"encode needs a jgan encoder module; got {type(encoder).__name__}")
    images = as_input_array(images, "images")
    side, channels = encoder.resolution, encoder.image_channels
    if images.ndim != 4 or images.shape[1:] != (side, side, channels):
        nchw = images.ndim == 4 and images.shape[1:] == (channels, side, side)
        hint = " (NCHW? transpose with x.transpose(0, 2, 3, 1))" if nchw else ""
        raise InputError(
            f"images must have shape (N, {side}, {side}, {channels}) (NHWC, RGB in [-1, 1]); "
            f"got {images.shape}{hint}"
        )
    graphdef, state = placed(encoder)
    return _encode(graphdef, state, parallel.shard_batch(images))


def extract_features(encoder, images):
    """GH-Feat's hierarchical features of `images`: one (N, width_i) array per generator
    layer, coarsest first, each layer's code at its true width (for a StyleGAN's Y space
    2 x its channels; `encode` gives the same codes tiled to one width, as ghfeat.npy)."""
    from jgan.models.ghfeat import GHFeatEncoder

    if not isinstance(encoder, GHFeatEncoder):
        raise InputError(
            f"extract_features needs a GH-Feat encoder (jgan.models.ghfeat.GHFeatEncoder); got "
            f"{type(encoder).__name__}"
        )
    return encoder.layer_features(encode(encoder, images))
