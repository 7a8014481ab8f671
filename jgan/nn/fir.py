"""FIR resampling (upfirdn2d) with the official filters and gains, and StyleGAN's blur."""

import jax.numpy as jnp
import numpy as np
from jax import lax


def make_kernel(taps=(1, 3, 3, 1), gain=1.0):
    """Separable 2-D kernel from 1-D taps, normalised to sum `gain` (float32 numpy)."""
    taps = np.asarray(taps, np.float32)
    kernel = np.outer(taps, taps)
    return (kernel / kernel.sum() * gain).astype(np.float32)


def _separable_taps(kernel):
    """(vertical taps, horizontal taps) if `kernel` is an outer product, else None."""
    u, sv, vt = np.linalg.svd(kernel.astype(np.float64))
    if sv[1:].max(initial=0.0) > 1e-6 * sv[0]:
        return None
    return u[:, 0] * sv[0], vt[0]


def _fir_1d(x, taps, axis, down):
    """Valid 1-D convolution of `x` along `axis` with `taps` (already flipped), stride `down`,
    as a sum of shifted strided slices: much faster on CPU than a depthwise convolution."""
    out = (x.shape[axis] - len(taps)) // down + 1
    total = None
    for k, tap in enumerate(taps):
        if tap == 0:
            continue
        part = lax.slice_in_dim(x, k, k + down * (out - 1) + 1, down, axis) * tap
        total = part if total is None else total + part
    return total


def upfirdn2d(x, kernel, *, up=1, down=1, pad=(0, 0, 0, 0)):
    """Upsample by zero insertion, pad, convolve with `kernel`, keep every `down`-th pixel.

    The semantics of NVIDIA's `upfirdn2d` (true convolution, `pad = (x0, x1, y0, y1)`, negative
    values crop) on NHWC input; the kernel is applied per channel. Separable kernels (every
    official filter) run as two passes of shifted slices.
    """
    x0, x1, y0, y1 = pad
    kernel = np.flip(np.asarray(kernel, np.float32), (0, 1))
    x = lax.pad(
        x,
        jnp.zeros((), x.dtype),
        ((0, 0, 0), (y0, y1 + up - 1, up - 1), (x0, x1 + up - 1, up - 1), (0, 0, 0)),
    )
    taps = _separable_taps(kernel)
    if taps is not None:
        x = _fir_1d(x, [float(t) for t in taps[0]], 1, down)
        return _fir_1d(x, [float(t) for t in taps[1]], 2, down)
    channels = x.shape[-1]
    weight = jnp.broadcast_to(
        jnp.asarray(kernel, x.dtype)[:, :, None, None], kernel.shape + (1, channels)
    )
    return lax.conv_general_dilated(
        x,
        weight,
        window_strides=(down, down),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
    )


def upsample2d(x, kernel):
    """2x FIR upsampling that keeps the size exactly doubled; `kernel` carries its gain (4)."""
    taps = kernel.shape[0]
    pad0, pad1 = (taps + 1) // 2, (taps - 2) // 2
    return upfirdn2d(x, kernel, up=2, pad=(pad0, pad1, pad0, pad1))


def downsample2d(x, kernel):
    """2x FIR downsampling that keeps the size exactly halved."""
    taps = kernel.shape[0]
    pad0, pad1 = (taps - 1) // 2, taps // 2 - 1
    return upfirdn2d(x, kernel, down=2, pad=(pad0, pad1, pad0, pad1))


def filter2d(x, kernel, pad):
    """Same-rate FIR filtering with explicit symmetric or (lo, hi) padding."""
    lo, hi = (pad, pad) if isinstance(pad, int) else pad
    return upfirdn2d(x, kernel, pad=(lo, hi, lo, hi))


BLUR_KERNEL = make_kernel((1, 2, 1))
"""StyleGAN v1's [1, 2, 1] blur, normalised to sum 1."""


def blur(x):
    """StyleGAN v1 blur: depthwise [1, 2, 1]^2 / 16, same size."""
    return filter2d(x, BLUR_KERNEL, 1)


def upsample_nearest(x, factor=2):
    """Nearest-neighbour upsampling of NHWC maps."""
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
    return x.reshape(n, h * factor, w * factor, c)


def avg_pool2x(x):
    """2x2 average pooling with stride 2 (PGGAN / StyleGAN discriminators)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
