"""Layers shared by the GAN architectures: equalized-lr dense/conv, modulated conv, FIR
resampling, noise, minibatch-stddev and the normalisations."""

from jgan.nn.conv import conv2d, conv_transpose2d, upconv2d
from jgan.nn.equalized import SQRT2, EqualizedConv, EqualizedDense, lrelu
from jgan.nn.fir import (
    BLUR_KERNEL,
    avg_pool2x,
    blur,
    downsample2d,
    filter2d,
    make_kernel,
    upfirdn2d,
    upsample2d,
    upsample_nearest,
)
from jgan.nn.modulated import demodulation, modulated_conv2d
from jgan.nn.noise import NOISE_MODES, noise_map
from jgan.nn.normalization import instance_norm, minibatch_stddev, pixel_norm, style_modulate
from jgan.nn.variables import Buffer

__all__ = [
    "BLUR_KERNEL",
    "NOISE_MODES",
    "SQRT2",
    "Buffer",
    "EqualizedConv",
    "EqualizedDense",
    "avg_pool2x",
    "blur",
    "conv2d",
    "conv_transpose2d",
    "demodulation",
    "downsample2d",
    "filter2d",
    "instance_norm",
    "lrelu",
    "make_kernel",
    "minibatch_stddev",
    "modulated_conv2d",
    "noise_map",
    "pixel_norm",
    "style_modulate",
    "upconv2d",
    "upfirdn2d",
    "upsample2d",
    "upsample_nearest",
]
