"""Encoders that map images to latent codes.

`StyleGANEncoder`: the domain-guided encoder of IDInvert (Zhu et al., "In-Domain GAN Inversion
for Real Image Editing", arXiv 2004.00049), as released with idinvert_pytorch
(`models/stylegan_encoder_network.py`, `StyleGANEncoderNet`; the 1024-channel BatchNorm
design, which differs from the TF code of the paper's repository). Module and parameter names
follow that file, so its `styleganinv_*_encoder.pth` state dicts load as they are.

NHWC RGB images in [-1, 1] (the original takes the same range as NCHW) -> W+ codes
(N, num_layers, w_space_dim) of a StyleGAN generator with `num_layers = 2 * log2(res / 2)`:
  block0         conv 3x3 -> BN -> lrelu(0.2), at full resolution;
  block1..n-2    2x average pooling, then a residual block: two conv 3x3 (+ bias) -> BN ->
                 lrelu(0.2), the first to min(in, out) channels, plus a shortcut that is
                 1x1 conv -> BN -> lrelu(0.2) where the width changes and the identity
                 elsewhere (no activation after the sum);
  block{n-1}     the 4x4 map flattened (NCHW order) -> dense (1 / sqrt(fan_in)) -> BN.
with n = log2(resolution) blocks and widths encoder_channels_base * 2**b capped at
encoder_channels_max. Batch norms run in inference mode on their stored statistics (eps 1e-5)
unless `encoder.train()` switches them to batch statistics (`jgan.training.encoder`); their
scale (gamma) is a Buffer because IDInvert froze it (TF had none) though it is used.
The convs store effective weights when `use_wscale=False` (the release): the original divides
each residual conv by its wscale factor and its `WScaleLayer` multiplies the same factor back,
so here each conv applies its own equalized-lr scale only with `use_wscale=True`.
"""

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jgan.errors import InputError
from jgan.models.base import ConfiguredModule
from jgan.nn import SQRT2, Buffer, EqualizedConv, EqualizedDense, avg_pool2x, lrelu

RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)
INIT_RES = 4
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


class BatchNorm(nnx.Module):
    """torch's `BatchNorm2d` over the last axis: `weight`, `bias` and the running statistics
    `running_mean`, `running_var`. Eval mode by default; `module.train()` (which sets
    `use_running_average=False`) normalises by the batch statistics and moves the running ones
    towards them by `BN_MOMENTUM` (torch's default; TF's decay 0.9), for encoder training."""

    def __init__(self, channels):
        self.weight = Buffer(jnp.ones((channels,)))
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self.running_mean = Buffer(jnp.zeros((channels,)))
        self.running_var = Buffer(jnp.ones((channels,)))
        self.use_running_average = True

    def __call__(self, x):
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            count = x.size // x.shape[-1]
            unbiased = jax.lax.stop_gradient(var) * count / max(count - 1, 1)
            for stat, value in ((self.running_mean, mean), (self.running_var, unbiased)):
                stat[...] = stat[...] + BN_MOMENTUM * (jax.lax.stop_gradient(value) - stat[...])
        scale = self.weight[...] * jax.lax.rsqrt(var + BN_EPS)
        return (x - mean.astype(x.dtype)) * scale.astype(x.dtype) + self.bias[...].astype(x.dtype)


class BatchNormLayer(nnx.Module):
    """IDInvert's wrapper around the batch norm (its parameters read `bn.bn.*`)."""

    def __init__(self, channels):
        self.bn = BatchNorm(channels)

    def __call__(self, x):
        return self.bn(x)


class Bias(nnx.Module):
    """The `bias` of IDInvert's `WScaleLayer`, whose scale folds into the conv before it."""

    def __init__(self, channels):
        self.bias = nnx.Param(jnp.zeros((channels,)))

    def __call__(self, x):
        return x + self.bias[...].astype(x.dtype)


def _conv(in_channels, out_channels, kernel_size, use_wscale, rngs):
    return EqualizedConv(
        in_channels,
        out_channels,
        kernel_size,
        gain=SQRT2,
        use_wscale=use_wscale,
        use_bias=False,
        rngs=rngs,
    )


def _norm(channels, use_bn):
    return BatchNormLayer(channels) if use_bn else None


def _bn(norm, x):
    return x if norm is None else norm(x)


class FirstBlock(nnx.Module):
    """`block0`: conv 3x3 (no bias) -> BN -> lrelu."""

    def __init__(self, in_channels, out_channels, *, use_wscale, use_bn, rngs):
        self.conv = _conv(in_channels, out_channels, 3, use_wscale, rngs)
        self.bn = _norm(out_channels, use_bn)

    def __call__(self, x):
        return lrelu(_bn(self.bn, self.conv(x)))


class ResBlock(nnx.Module):
    """Residual block: `conv1` + `wscale1` -> `bn1` -> lrelu, `conv2` + `wscale2` -> `bn2` ->
    lrelu, plus the shortcut (`conv` 1x1 -> `bn` -> lrelu where the width changes)."""

    def __init__(self, in_channels, out_channels, *, use_wscale, use_bn, rngs):
        self.add_shortcut = in_channels != out_channels
        if self.add_shortcut:
            self.conv = _conv(in_channels, out_channels, 1, use_wscale, rngs)
            self.bn = _norm(out_channels, use_bn)
        hidden = min(in_channels, out_channels)
        self.conv1 = _conv(in_channels, hidden, 3, use_wscale, rngs)
        self.wscale1 = Bias(hidden)
        self.bn1 = _norm(hidden, use_bn)
        self.conv2 = _conv(hidden, out_channels, 3, use_wscale, rngs)
        self.wscale2 = Bias(out_channels)
        self.bn2 = _norm(out_channels, use_bn)

    def __call__(self, x):
        shortcut = lrelu(_bn(self.bn, self.conv(x))) if self.add_shortcut else x
        x = lrelu(_bn(self.bn1, self.wscale1(self.conv1(x))))
        x = lrelu(_bn(self.bn2, self.wscale2(self.conv2(x))))
        return x + shortcut


class LastBlock(nnx.Module):
    """The head: NCHW-flattened features -> `fc` (no bias, 1 / sqrt(fan_in)) -> `bn`."""

    def __init__(self, in_features, out_features, *, use_bn, rngs):
        self.fc = EqualizedDense(in_features, out_features, gain=1.0, use_bias=False, rngs=rngs)
        self.bn = _norm(out_features, use_bn)

    def __call__(self, x):
        return _bn(self.bn, self.fc(x.transpose(0, 3, 1, 2)))


class StyleGANEncoder(ConfiguredModule):
    """IDInvert's `StyleGANEncoderNet` (same arguments and defaults): NHWC images in [-1, 1]
    -> W+ codes (N, num_layers, w_space_dim)."""

    arch: ClassVar[str] = "idinvert_encoder"

    def __init__(
        self,
        resolution,
        w_space_dim=512,
        image_channels=3,
        encoder_channels_base=64,
        encoder_channels_max=1024,
        use_wscale=False,
        use_bn=False,
        *,
        rngs: nnx.Rngs,
    ):
        if resolution not in RESOLUTIONS:
            raise InputError(f"encoder resolution must be one of {RESOLUTIONS}; got {resolution!r}")
        for name, value in [
            ("w_space_dim", w_space_dim),
            ("image_channels", image_channels),
            ("encoder_channels_base", encoder_channels_base),
            ("encoder_channels_max", encoder_channels_max),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer; got {value!r}")
        self._remember_config(
            resolution=resolution,
            w_space_dim=w_space_dim,
            image_channels=image_channels,
            encoder_channels_base=encoder_channels_base,
            encoder_channels_max=encoder_channels_max,
            use_wscale=bool(use_wscale),
            use_bn=bool(use_bn),
        )
        self.resolution, self.image_channels = resolution, image_channels
        self.w_space_dim = w_space_dim
        self.num_blocks = int(math.log2(resolution))
        self.num_layers = 2 * (self.num_blocks - 1)
        options = dict(use_wscale=bool(use_wscale), use_bn=bool(use_bn), rngs=rngs)
        in_channels, out_channels = image_channels, encoder_channels_base
        for block in range(self.num_blocks):
            if block == 0:
                layer = FirstBlock(in_channels, out_channels, **options)
            elif block == self.num_blocks - 1:
                in_channels *= INIT_RES * INIT_RES
                out_channels = w_space_dim * self.num_layers
                layer = LastBlock(in_channels, out_channels, use_bn=bool(use_bn), rngs=rngs)
            else:
                layer = ResBlock(in_channels, out_channels, **options)
            setattr(self, f"block{block}", layer)
            in_channels, out_channels = out_channels, min(out_channels * 2, encoder_channels_max)

    def __call__(self, images):
        shape = (self.resolution, self.resolution, self.image_channels)
        if images.ndim != 4 or tuple(images.shape[1:]) != shape:
            raise InputError(
                f"images must have shape (N, {shape[0]}, {shape[1]}, {shape[2]}) (NHWC, in "
                f"[-1, 1]); got {tuple(images.shape)}"
            )
        x = images
        for block in range(self.num_blocks):
            if 0 < block < self.num_blocks - 1:
                x = avg_pool2x(x)
            x = getattr(self, f"block{block}")(x)
        return x.reshape(x.shape[0], self.num_layers, self.w_space_dim)
