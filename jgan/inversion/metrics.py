"""Image-quality metrics of reconstructions, one value per image of NHWC batches.

Images are compared in the range they are given in; `data_range` is its width, 2.0 for
jgan's [-1, 1] (255 for uint8 pixels). SSIM is Wang et al.'s (IEEE TIP 2004): an 11x11
Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, statistics over the positions where the
window fits ('valid'), averaged over those positions and over the channels (as scikit-image's
`structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jgan.errors import InputError
from jgan.perceptual import lpips as lpips_distance

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pair(x, y):
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    if x.ndim != 4 or x.shape != y.shape:
        raise InputError(
            f"metrics compare two NHWC batches of one shape; got {x.shape} and {y.shape}"
        )
    return x, y


def mse(x, y):
    """Mean squared error per image."""
    x, y = _pair(x, y)
    return jnp.mean(jnp.square(x - y), axis=(1, 2, 3))


def psnr(x, y, data_range=2.0):
    """Peak signal-to-noise ratio in dB per image: 10 log10(data_range^2 / MSE) (inf when
    the images are equal)."""
    return 10.0 * jnp.log10(data_range**2 / mse(x, y))


def gaussian_window(size=SSIM_WINDOW, sigma=SSIM_SIGMA):
    """The normalised 1-D Gaussian of SSIM's separable window."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window = np.exp(-(offsets**2) / (2 * sigma**2))
    return (window / window.sum()).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("data_range",))
def _ssim(x, y, *, data_range):
    channels = x.shape[-1]
    window = jnp.asarray(gaussian_window())

    def blur(v):  # separable 'valid' Gaussian filter, one channel at a time
        dims = ("NHWC", "HWIO", "NHWC")
        rows = jnp.tile(window.reshape(-1, 1, 1, 1), (1, 1, 1, channels))
        cols = rows.reshape(1, -1, 1, channels)
        for kernel in (rows, cols):
            v = lax.conv_general_dilated(
                v, kernel, (1, 1), "VALID", dimension_numbers=dims, feature_group_count=channels
            )
        return v

    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return jnp.mean(ssim_map, axis=(1, 2, 3))


def ssim(x, y, data_range=2.0):
    """Structural similarity per image (see the module docstring for the definition)."""
    x, y = _pair(x, y)
    if min(x.shape[1:3]) < SSIM_WINDOW:
        raise InputError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}; got "
            f"{x.shape[1]}x{x.shape[2]}"
        )
    return _ssim(x, y, data_range=float(data_range))


def image_metrics(x, y, *, lpips=None, data_range=2.0):
    """{'mse', 'psnr', 'ssim'} and, given an LPIPS network (`jgan.ports.vgg.load_lpips`),
    'lpips': numpy arrays (N,) comparing images `x` with references `y`. SSIM is left out for
    images smaller than its window; LPIPS takes images in [-1, 1] (data_range 2)."""
    if lpips is not None and data_range != 2.0:
        raise InputError(f"LPIPS compares images in [-1, 1] (data_range 2); got {data_range}")
    out = {"mse": mse(x, y), "psnr": psnr(x, y, data_range)}
    if min(np.shape(x)[1:3]) >= SSIM_WINDOW:
        out["ssim"] = ssim(x, y, data_range)
    if lpips is not None:
        out["lpips"] = lpips_distance(lpips, x, y)
    return {name: np.asarray(value) for name, value in out.items()}
