"""Perceptual features (VGG16) and LPIPS distances of NHWC images in [-1, 1].

Jitted once per shape and set of taps, with the batch sharded over all devices, in the same
(graph definition, state) pattern as `jgan.api`.

    import jgan.ports.vgg                              # for load_lpips
    vgg = jgan.load("vgg16.pth").perceptual            # IDInvert's file or torchvision's
    feats = jgan.perceptual_features(vgg, images, layers=("relu3_3", "relu4_3"))
    net = jgan.ports.vgg.load_lpips("vgg16-397923af.pth", "lpips/weights/v0.1/vgg.pth")
    d = jgan.lpips(net, x0, x1)                        # (N,)
"""

import functools

import jax
from flax import nnx

from jgan import parallel
from jgan.api import as_input_array, placed
from jgan.errors import InputError
from jgan.models.lpips import LPIPS, TAPS
from jgan.models.vgg import VGG16, check_layers, min_size


@functools.partial(jax.jit, static_argnames=("graphdef", "layers"))
def _features(graphdef, state, images, *, layers):
    return nnx.merge(graphdef, state)(images, layers)


@functools.partial(jax.jit, static_argnames=("graphdef", "spatial"))
def _lpips(graphdef, state, x0, x1, *, spatial):
    return nnx.merge(graphdef, state)(x0, x1, spatial=spatial)


def _images(images, name, layers):
    images = as_input_array(images, name)
    if images.ndim != 4 or images.shape[-1] != 3:
        nchw = images.ndim == 4 and images.shape[1] == 3
        hint = " (NCHW? transpose with x.transpose(0, 2, 3, 1))" if nchw else ""
        raise InputError(
            f"{name} must be RGB images (N, H, W, 3) in [-1, 1]; got shape {images.shape}{hint}"
        )
    side = min_size(layers)
    if min(images.shape[1:3]) < side:
        raise InputError(
            f"{name} of size {images.shape[1]}x{images.shape[2]} are too small for VGG16 layers "
            f"{layers}: they need at least {side}x{side}"
        )
    return images


def _check_module(net, cls, what):
    if not isinstance(net, cls):
        raise InputError(f"{what} needs a jgan {cls.__name__} module; got {type(net).__name__}")


def perceptual_features(net, images, layers=("relu4_3",)):
    """{layer: NHWC features} of RGB `images` (N, H, W, 3) in [-1, 1] through VGG16 `net`.

    Layers are named relu{block}_{conv} and pool{block} (e.g. relu4_3, IDInvert's default;
    relu3_3, mGANprior's `features[:16]`); preprocessing follows the weights' convention.
    """
    _check_module(net, VGG16, "perceptual_features")
    layers = check_layers(layers)
    images = _images(images, "images", layers)
    graphdef, state = placed(net)
    return _features(graphdef, state, parallel.shard_batch(images), layers=layers)


def lpips(net, x0, x1, *, details=False):
    """LPIPS distances (N,) between RGB images `x0` and `x1` (N, H, W, 3) in [-1, 1].

    With `details`, a dict: 'distance' (N,), 'layers' (N, 5) (the per-tap terms, relu1_2 ...
    relu5_3, that sum to it) and 'spatial' (N, H, W) (lpips' spatial map: per-tap maps resized
    bilinearly to the input size and summed).
    """
    _check_module(net, LPIPS, "lpips")
    x0, x1 = _images(x0, "x0", TAPS), _images(x1, "x1", TAPS)
    if x0.shape != x1.shape:
        raise InputError(f"x0 and x1 must have the same shape; got {x0.shape} and {x1.shape}")
    graphdef, state = placed(net)
    out = _lpips(
        graphdef,
        state,
        parallel.shard_batch(x0),
        parallel.shard_batch(x1),
        spatial=details,
    )
    return out if details else out["distance"]
