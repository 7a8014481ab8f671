"""Equalized-learning-rate dense and conv layers (PGGAN, StyleGAN, StyleGAN2).

Raw parameters are stored as every official format stores them (weight ~ N(0, 1) / lr_mul,
layout (out, in[, kh, kw])); the scale gain / sqrt(fan_in) * lr_mul is applied at run time, so
converted weights and training dynamics match the originals.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jgan.nn.conv import conv2d

SQRT2 = math.sqrt(2.0)


def lrelu(x, slope=0.2, gain=1.0):
    """Leaky ReLU times `gain` (StyleGAN2 uses gain sqrt(2))."""
    y = jnp.where(x >= 0, x, x * slope)
    return y if gain == 1.0 else y * gain


def _scales(fan_in, gain, lr_mul, use_wscale):
    """(init std of the stored weight, run-time weight multiplier) as genforce defines them."""
    wscale = gain / math.sqrt(fan_in)
    if use_wscale:
        return 1.0 / lr_mul, wscale * lr_mul
    return wscale / lr_mul, lr_mul


class _Equalized(nnx.Module):
    """Shared parameter handling of the equalized layers."""

    def _init_params(self, shape, fan_in, *, gain, lr_mul, use_wscale, use_bias, bias_init, rngs):
        init_std, self.wscale = _scales(fan_in, gain, lr_mul, use_wscale)
        self.lr_mul = float(lr_mul)
        self.weight = nnx.Param(jax.random.normal(rngs.params(), shape) * init_std)
        if use_bias:
            self.bias = nnx.Param(jnp.full((shape[0],), bias_init / lr_mul, jnp.float32))
        else:
            self.bias = None

    def scaled_weight(self):
        """The weight as used at run time."""
        return self.weight[...] * self.wscale

    def scaled_bias(self):
        """The bias as used at run time (None without bias)."""
        return None if self.bias is None else self.bias[...] * self.lr_mul


class EqualizedDense(_Equalized):
    """Dense layer `x @ (W * wscale).T + b * lr_mul`; inputs are flattened first.

    `bias_offset` is a constant added on top of the bias and not stored (genforce's
    `additional_bias`, TF's `mod_bias` init of 1 for StyleGAN2 styles).
    """

    def __init__(
        self,
        in_features,
        out_features,
        *,
        gain=SQRT2,
        lr_mul=1.0,
        use_wscale=True,
        use_bias=True,
        bias_init=0.0,
        bias_offset=0.0,
        rngs,
    ):
        self._init_params(
            (out_features, in_features),
            in_features,
            gain=gain,
            lr_mul=lr_mul,
            use_wscale=use_wscale,
            use_bias=use_bias,
            bias_init=bias_init,
            rngs=rngs,
        )
        self.bias_offset = float(bias_offset)

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        y = x @ self.scaled_weight().T.astype(x.dtype)
        if self.bias is not None:
            y = y + self.scaled_bias().astype(x.dtype)
        return y + self.bias_offset if self.bias_offset else y


class EqualizedConv(_Equalized):
    """2-D convolution with OIHW raw weight (out, in, k, k), stride 1, 'same' padding."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        *,
        gain=SQRT2,
        lr_mul=1.0,
        use_wscale=True,
        use_bias=True,
        rngs,
    ):
        self._init_params(
            (out_channels, in_channels, kernel_size, kernel_size),
            in_channels * kernel_size * kernel_size,
            gain=gain,
            lr_mul=lr_mul,
            use_wscale=use_wscale,
            use_bias=use_bias,
            bias_init=0.0,
            rngs=rngs,
        )

    def add_bias(self, x):
        """Adds the scaled bias (if any) to NHWC `x`."""
        return x if self.bias is None else x + self.scaled_bias().astype(x.dtype)

    def __call__(self, x):
        k = self.weight.shape[-1]
        return self.add_bias(conv2d(x, self.scaled_weight(), padding=k // 2))
