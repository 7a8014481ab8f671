"""StyleGAN2's modulated convolution with demodulation.

Two exact equivalents: the default scales activations by the styles and the outputs by the
demodulation coefficients around one shared convolution (plain-conv speed at any batch size);
`grouped=True` builds per-sample weights and runs a grouped convolution, as the official
`fused_modulate` path does.
"""

import jax.numpy as jnp
from jax import lax

from jgan.nn.conv import conv2d, upconv2d
from jgan.nn.fir import filter2d


def demodulation(weight, styles, eps=1e-8):
    """Per-sample, per-output-channel 1 / ||W * s|| over (in, kh, kw); shape (N, out)."""
    w2 = jnp.sum(jnp.square(weight), axis=(2, 3))  # (out, in)
    return lax.rsqrt(jnp.square(styles) @ w2.T + eps)


def modulated_conv2d(
    x, weight, styles, *, demodulate=True, up=False, up_kernel=None, eps=1e-8, grouped=False
):
    """Convolves NHWC `x` with `weight` (out, in, k, k) modulated per sample by `styles` (N, in).

    With `up`, the convolution is genforce's stride-2 transposed form followed by the FIR
    `up_kernel` (which carries its gain), giving exactly twice the input size.
    """
    n = x.shape[0]
    out_c, in_c, k, _ = weight.shape
    dcoefs = demodulation(weight, styles, eps) if demodulate else None
    if grouped:
        w = weight[None] * styles[:, None, :, None, None]
        if demodulate:
            w = w * dcoefs[:, :, None, None, None]
        w = w.reshape(n * out_c, in_c, k, k)
        xg = x.transpose(1, 2, 0, 3).reshape(1, x.shape[1], x.shape[2], n * in_c)
        y = upconv2d(xg, w, groups=n) if up else conv2d(xg, w, padding=k // 2, groups=n)
        y = y.reshape(y.shape[1], y.shape[2], n, out_c).transpose(2, 0, 1, 3)
    else:
        xs = x * styles[:, None, None, :].astype(x.dtype)
        y = upconv2d(xs, weight) if up else conv2d(xs, weight, padding=k // 2)
    if up:
        pad = up_kernel.shape[0] + 1 - k
        y = filter2d(y, up_kernel, ((pad + 1) // 2, pad // 2))
    if demodulate and not grouped:
        y = y * dcoefs[:, None, None, :].astype(y.dtype)
    return y
