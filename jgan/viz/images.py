"""Images at the edges of jgan: float NHWC in [-1, 1] inside, uint8 HWC files outside."""

import os

import numpy as np
from PIL import Image


def to_uint8(images, drange=(-1.0, 1.0)):
    """Float images in `drange` -> uint8, rounded and clipped (NHWC or HWC)."""
    lo, hi = drange
    x = (np.asarray(images, np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def save_png(path, image_uint8):
    """Writes one HWC uint8 image (1 or 3 channels) as PNG."""
    image = image_uint8[..., 0] if image_uint8.shape[-1] == 1 else image_uint8
    Image.fromarray(image).save(os.fspath(path), format="PNG")


def make_grid(images_uint8, cols=None, pad=2, fill=255):
    """Tiles N HWC uint8 images into one image with `cols` columns (about square by default)."""
    n, h, w, c = images_uint8.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
    for i, image in enumerate(images_uint8):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = image
    return grid
