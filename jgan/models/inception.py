"""The InceptionV3 of FID and KID (Szegedy et al. 2016, Heusel et al. 2017): pool3 features.

FID is defined by one network: the TF-slim graph `inception-2015-12-05` that TTUR's reference
`fid.py` uses. pytorch-fid ported it as torchvision's `inception_v3` with patched blocks, and
its weights file `pt_inception-2015-12-05-6726825d.pth` is what users have. This module is that
network on NHWC images, its attribute paths equal to the file's keys (`Conv2d_1a_3x3.conv.weight`,
`Mixed_5b.branch5x5_2.bn.running_var`, ...), so `jgan.ports.inception` is a plain key match.

Where it differs from torchvision's InceptionV3 (as TF's graph computes):
  - the 3x3 average pools of the A, C and E blocks ignore the zero padding in their mean;
  - the last E block (Mixed_7c) pools its branch with a 3x3 max-pool instead;
  - inputs are resized to 299x299 bilinearly (half-pixel centres, no antialiasing) and taken
    in [-1, 1] (jgan's image range: no further scaling);
  - batch norm has eps 1e-3 (TF's), and there is no auxiliary classifier.
The features are the 2048-d global average of Mixed_7c ("pool3"). The 1008-way classifier of
the file (`fc.*`) is not part of this module.
"""

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jgan.errors import InputError
from jgan.models.base import ConfiguredModule
from jgan.nn import Buffer, conv2d

FEATURES = 2048
INPUT_SIZE = 299
MIN_SIZE = 75
"""Smallest input side the stride-2 stages reduce to at least 1x1 (when not resized)."""
BN_EPS = 1e-3


class Conv(nnx.Module):
    """Holds a bias-free convolution's OIHW `weight`."""

    def __init__(self, shape, *, rngs):
        std = math.sqrt(2.0 / math.prod(shape[1:]))
        self.weight = nnx.Param(jax.random.normal(rngs.params(), shape, jnp.float32) * std)


class BatchNorm(nnx.Module):
    """Holds batch-norm parameters and its (frozen) running statistics."""

    def __init__(self, channels):
        self.weight = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.running_mean = Buffer(jnp.zeros((channels,), jnp.float32))
        self.running_var = Buffer(jnp.ones((channels,), jnp.float32))

    def __call__(self, x):
        scale = self.weight[...] * jax.lax.rsqrt(self.running_var[...] + BN_EPS)
        return x * scale + (self.bias[...] - self.running_mean[...] * scale)


class BasicConv2d(nnx.Module):
    """Convolution without bias, batch norm with inference statistics, ReLU: paths
    `conv.weight` and `bn.{weight,bias,running_mean,running_var}`."""

    def __init__(self, in_channels, out_channels, kernel, *, stride=1, padding=0, rngs):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        self.conv = Conv((out_channels, in_channels, kh, kw), rngs=rngs)
        self.bn = BatchNorm(out_channels)

    def __call__(self, x):
        x = conv2d(x, self.conv.weight[...], stride=self.stride, padding=self.padding)
        return jax.nn.relu(self.bn(x))


def max_pool(x, *, stride, padding=0):
    """3x3 max-pool (padding with -inf, as torch's `max_pool2d`)."""
    pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pads
    )


def avg_pool_valid(x):
    """3x3 stride-1 average pool, padding 1, each mean over the in-image pixels only (TF's
    'SAME' average pool; torch's `count_include_pad=False`)."""
    pads = ((0, 0), (1, 1), (1, 1), (0, 0))
    window, strides = (1, 3, 3, 1), (1, 1, 1, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pads)
    return total / count


def resize_bilinear(images, size):
    """Bilinear resize to size x size with half-pixel centres and no antialiasing (torch's
    `interpolate(mode='bilinear', align_corners=False)`)."""
    n, _, _, c = images.shape
    return jax.image.resize(images, (n, size, size, c), "bilinear", antialias=False)


class InceptionA(nnx.Module):
    def __init__(self, in_channels, pool_features, *, rngs):
        self.branch1x1 = BasicConv2d(in_channels, 64, 1, rngs=rngs)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1, rngs=rngs)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1, rngs=rngs)

    def __call__(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = self.branch_pool(avg_pool_valid(x))
        return jnp.concatenate([self.branch1x1(x), b5, b3, pool], axis=-1)


class InceptionB(nnx.Module):
    """Grid reduction 35 -> 17."""

    def __init__(self, in_channels, *, rngs):
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([self.branch3x3(x), b3, max_pool(x, stride=2)], axis=-1)


class InceptionC(nnx.Module):
    """Factorised 7x7 convolutions (1x7 then 7x1)."""

    def __init__(self, in_channels, channels_7x7, *, rngs):
        c = channels_7x7
        row, col = (
            dict(kernel=(1, 7), padding=((0, 0), (3, 3))),
            dict(kernel=(7, 1), padding=((3, 3), (0, 0))),
        )
        self.branch1x1 = BasicConv2d(in_channels, 192, 1, rngs=rngs)
        self.branch7x7_1 = BasicConv2d(in_channels, c, 1, rngs=rngs)
        self.branch7x7_2 = BasicConv2d(c, c, **row, rngs=rngs)
        self.branch7x7_3 = BasicConv2d(c, 192, **col, rngs=rngs)
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c, 1, rngs=rngs)
        self.branch7x7dbl_2 = BasicConv2d(c, c, **col, rngs=rngs)
        self.branch7x7dbl_3 = BasicConv2d(c, c, **row, rngs=rngs)
        self.branch7x7dbl_4 = BasicConv2d(c, c, **col, rngs=rngs)
        self.branch7x7dbl_5 = BasicConv2d(c, 192, **row, rngs=rngs)
        self.branch_pool = BasicConv2d(in_channels, 192, 1, rngs=rngs)

    def __call__(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for k in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{k}")(d)
        pool = self.branch_pool(avg_pool_valid(x))
        return jnp.concatenate([self.branch1x1(x), b7, d, pool], axis=-1)


class InceptionD(nnx.Module):
    """Grid reduction 17 -> 8."""

    def __init__(self, in_channels, *, rngs):
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1, rngs=rngs)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=((0, 0), (3, 3)), rngs=rngs)
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=((3, 3), (0, 0)), rngs=rngs)
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for k in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{k}")(b7)
        return jnp.concatenate([b3, b7, max_pool(x, stride=2)], axis=-1)


class InceptionE(nnx.Module):
    """Expanded filter bank (1x3 and 3x1 side by side); `pool` is 'avg' (padding-excluding)
    or 'max' (the FID graph's Mixed_7c)."""

    def __init__(self, in_channels, pool, *, rngs):
        row, col = (
            dict(kernel=(1, 3), padding=((0, 0), (1, 1))),
            dict(kernel=(3, 1), padding=((1, 1), (0, 0))),
        )
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1, rngs=rngs)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1, rngs=rngs)
        self.branch3x3_2a = BasicConv2d(384, 384, **row, rngs=rngs)
        self.branch3x3_2b = BasicConv2d(384, 384, **col, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, **row, rngs=rngs)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, **col, rngs=rngs)
        self.branch_pool = BasicConv2d(in_channels, 192, 1, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = max_pool(x, stride=1, padding=1) if self.pool == "max" else avg_pool_valid(x)
        branches = [
            self.branch1x1(x),
            self.branch3x3_2a(b3),
            self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d),
            self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ]
        return jnp.concatenate(branches, axis=-1)


class FIDInceptionV3(ConfiguredModule):
    """pool3 features (N, 2048) of NHWC RGB images in [-1, 1], any size: resized to
    `resize` x `resize` first (299, the FID definition; None keeps the input size, which
    must then be at least 75)."""

    arch: ClassVar[str] = "fid_inception"

    def __init__(self, resize=INPUT_SIZE, *, rngs: nnx.Rngs):
        if resize is not None and (not isinstance(resize, int) or resize < MIN_SIZE):
            raise InputError(f"resize must be None or an integer >= {MIN_SIZE}; got {resize!r}")
        self._remember_config(resize=resize)
        self.resize = resize
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3, rngs=rngs)
        self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = InceptionB(288, rngs=rngs)
        self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
        self.Mixed_7a = InceptionD(768, rngs=rngs)
        self.Mixed_7b = InceptionE(1280, "avg", rngs=rngs)
        self.Mixed_7c = InceptionE(2048, "max", rngs=rngs)

    def __call__(self, images):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"images must be (N, H, W, 3) RGB; got shape {images.shape}")
        x = images.astype(jnp.float32)
        if self.resize is not None:
            x = resize_bilinear(x, self.resize)
        elif min(x.shape[1:3]) < MIN_SIZE:
            raise InputError(
                f"images of {x.shape[1]}x{x.shape[2]} are too small for InceptionV3 without "
                f"resizing (at least {MIN_SIZE}x{MIN_SIZE})"
            )
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = max_pool(x, stride=2)
        x = max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return jnp.mean(x, axis=(1, 2))
