"""LPIPS v0.1 with the VGG16 trunk (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric"), as the `lpips` package computes it.

Both images (NHWC, [-1, 1]) are shifted and scaled per channel, run through the torchvision VGG16
to relu1_2 ... relu5_3, unit-normalised over channels, and their squared differences weighted by
one non-negative 1x1 "lin" head per tap; the distance is the sum over taps of the spatial means.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jgan.models.base import ConfiguredModule
from jgan.models.vgg import VGG16, Sequence
from jgan.nn import conv2d

TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


class PointwiseConv(nnx.Module):
    """Bias-free 1x1 convolution to one channel; weight (1, C, 1, 1) as lpips stores it.

    Initialised to ones: untrained heads sum the channels, which is lpips' `lpips=False`
    baseline.
    """

    def __init__(self, channels):
        self.weight = nnx.Param(jnp.ones((1, channels, 1, 1), jnp.float32))

    def __call__(self, x):
        return conv2d(x, self.weight[...])


class NetLinLayer(nnx.Module):
    """lpips' head `Sequential(Dropout, Conv1x1)`: dropout does nothing at inference, so only
    index 1 holds weights (path `lin{k}.model.1.weight`)."""

    def __init__(self, channels):
        self.model = Sequence({1: PointwiseConv(channels)})

    def __call__(self, x):
        return self.model[1](x)


def unit_normalize(x):
    """x / (L2 norm over channels + 1e-10), lpips' `normalize_tensor`."""
    return x / (jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)) + EPS)


class LPIPS(ConfiguredModule):
    """LPIPS distance between NHWC images in [-1, 1]: `net` is the VGG16 trunk (torchvision
    convention), `lin0` ... `lin4` the heads."""

    arch: ClassVar[str] = "lpips"

    def __init__(self, *, rngs: nnx.Rngs):
        self._remember_config()
        self.net = VGG16("torchvision", rngs=rngs)
        for k, channels in enumerate(CHANNELS):
            setattr(self, f"lin{k}", NetLinLayer(channels))

    def scale(self, images):
        """lpips' ScalingLayer (v0.1): per-channel (x - shift) / scale."""
        shift, scale = jnp.asarray(SHIFT, images.dtype), jnp.asarray(SCALE, images.dtype)
        return (images - shift) / scale

    def layer_maps(self, x0, x1):
        """The per-tap distance maps, (N, h_k, w_k) each, before the spatial mean."""
        # One trunk pass over x0[0], x1[0], x0[1], ...: a sharded batch keeps each pair on one
        # device.
        pairs = jnp.stack([x0, x1], axis=1).reshape(-1, *x0.shape[1:])
        taps = self.net.taps(self.scale(pairs), TAPS)
        maps = []
        for k, name in enumerate(TAPS):
            feats = unit_normalize(taps[name]).reshape(x0.shape[0], 2, *taps[name].shape[1:])
            diff = (feats[:, 0] - feats[:, 1]) ** 2
            maps.append(getattr(self, f"lin{k}")(diff)[..., 0])
        return maps

    def __call__(self, x0, x1, *, spatial=False):
        """{'distance': (N,), 'layers': (N, 5)} and, with `spatial`, 'spatial': (N, H, W), the
        sum of the per-tap maps bilinearly resized to the input size (lpips' spatial=True)."""
        maps = self.layer_maps(x0, x1)
        layers = jnp.stack([m.mean(axis=(1, 2)) for m in maps], axis=1)
        out = {"distance": layers.sum(axis=1), "layers": layers}
        if spatial:
            size = x0.shape[:3]
            out["spatial"] = sum(jax.image.resize(m, size, "linear") for m in maps)
        return out
