"""Reading the images people have into jgan's float range [-1, 1], HWC.

- PNG, JPEG and whatever else Pillow opens, turned upright by their EXIF orientation;
  NumPy `.npy` arrays (H, W), (H, W, C) or batches (N, H, W, C): uint8 (0-255), uint16
  (0-65535), or floats in jgan's range [-1, 1] (floats outside it are refused; rescale
  [0, 1] data first, which cannot be told from [-1, 1] data by its values).
- Grayscale is repeated to RGB; colour becomes luminance (0.299 R + 0.587 G + 0.114 B) for a
  one-channel generator.
- Alpha is composited over a background (white by default): transparent pixels store
  arbitrary colours, which dropping the alpha channel would show.
- 16-bit grayscale PNGs and uint16 arrays keep their precision; Pillow reads 16-bit colour PNGs
  at 8 bits (save a uint16 .npy to keep them).

Sizes never change silently: `fit(..., resize_to_fit=True)` center-crops to a square and resizes
(Lanczos) to the generator's resolution; without it a wrong size is an InputError.
"""

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jgan.errors import InputError

LUMA = (0.299, 0.587, 0.114)
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _unit_from_pil(image, background):
    """A Pillow image as float HWC in [0, 1] (1 or 3 channels), alpha composited."""
    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image).astype(np.float64)
        if pixels.min() < 0 or pixels.max() > 65535:
            raise InputError(f"a {image.mode} image with values outside 0-65535")
        return (pixels / 65535.0)[..., None]
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode == "1":
        image = image.convert("L")
    if image.mode not in ("L", "RGB", *ALPHA_MODES):
        if image.mode == "F":
            raise InputError("32-bit float images are not read; save a 16-bit PNG or a .npy")
        image = image.convert("RGB")
    pixels = np.asarray(image).astype(np.float64) / 255.0
    if image.mode in ALPHA_MODES:
        color, alpha = pixels[..., :-1], pixels[..., -1:]
        if image.mode in ("La", "RGBa"):  # premultiplied
            return color + (1.0 - alpha) * background
        return color * alpha + (1.0 - alpha) * background
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _pm1_from_array(array, name):
    """A NumPy image or batch as float in [-1, 1] with a channel axis."""
    if array.dtype == np.uint8:
        array = array / 127.5 - 1.0
    elif array.dtype == np.uint16:
        array = array / 32767.5 - 1.0
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InputError(f"{name} contains NaN or inf values")
        if array.size and (array.min() < -1.001 or array.max() > 1.001):
            raise InputError(
                f"{name}: float arrays are read as jgan's range [-1, 1]; the values span "
                f"[{array.min():.3g}, {array.max():.3g}] (save uint8 or uint16 for 0-255 or "
                "0-65535 pixels, or rescale)"
            )
    else:
        raise InputError(f"{name}: arrays of uint8, uint16 or float are read; got {array.dtype}")
    return np.clip(array, -1.0, 1.0)


def _with_channels(image, channels, name):
    """An HWC image with 1 or 3 channels (RGBA arrays composited already) as `channels`."""
    have = image.shape[-1]
    if have == channels:
        return image
    if have == 1 and channels == 3:
        return np.repeat(image, 3, axis=-1)
    if have == 3 and channels == 1:
        return image @ np.asarray(LUMA).reshape(3, 1)
    raise InputError(f"{name} has {have} channels; expected 1 or 3 for a {channels}-channel model")


def read_images(path, channels=3, background=1.0):
    """[(name, image)] of one file: float32 HWC images in [-1, 1] with `channels` channels.

    A `.npy` batch (N, H, W, C) gives N images named `stem_0`, `stem_1`, ...; everything else
    one image named by the file's stem. `background` (in [0, 1]: 1 white, 0 black) fills
    transparent pixels.
    """
    path = os.fspath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    if not os.path.isfile(path):
        raise InputError(f"no such image file: {path}")
    if path.lower().endswith(".npy"):
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise InputError(f"{path}: not a plain NumPy array ({error})") from error
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim not in (3, 4) or array.shape[-1] not in (1, 3, 4):
            raise InputError(
                f"{path}: expected an image (H, W), (H, W, C) or a batch (N, H, W, C) with C "
                f"1, 3 or 4; got shape {array.shape}"
            )
        batch = _pm1_from_array(array, path)
        if batch.shape[-1] == 4:
            unit = (batch + 1.0) / 2.0
            color, alpha = unit[..., :3], unit[..., 3:]
            batch = (color * alpha + (1.0 - alpha) * background) * 2.0 - 1.0
        images = [batch] if batch.ndim == 3 else list(batch)
        names = [stem] if batch.ndim == 3 else [f"{stem}_{i}" for i in range(len(batch))]
    else:
        try:
            with Image.open(path) as image:
                unit = _unit_from_pil(image, background)
        except (UnidentifiedImageError, OSError) as error:
            raise InputError(f"{path}: not an image Pillow can read ({error})") from error
        images, names = [unit * 2.0 - 1.0], [stem]
    return [
        (name, _with_channels(image, channels, path).astype(np.float32))
        for name, image in zip(names, images, strict=True)
    ]


def center_crop(image):
    """The largest centred square of an HWC image."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def resize(image, size):
    """An HWC float image resized to `size` x `size` with Lanczos filtering (each channel as a
    Pillow 'F' image), clipped to [-1, 1] against the filter's overshoot."""
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F").resize(
                (size, size), Image.Resampling.LANCZOS
            )
        )
        for c in range(image.shape[-1])
    ]
    return np.clip(np.stack(channels, axis=-1), -1.0, 1.0).astype(np.float32)


def fit(image, resolution, *, resize_to_fit=False, name="image"):
    """`image` (HWC) at `resolution` x `resolution`: as it is when it has that size; center-
    cropped and resized with `resize_to_fit`; an InputError otherwise."""
    h, w = image.shape[:2]
    if (h, w) == (resolution, resolution):
        return image
    if not resize_to_fit:
        raise InputError(
            f"{name} is {w}x{h} pixels; the generator makes {resolution}x{resolution} images: "
            "pass --resize (resize_to_fit=True) to center-crop and resize it, or crop it first"
        )
    return resize(center_crop(image), resolution)


def load_batch(paths, resolution, *, channels=3, resize_to_fit=False, background=1.0):
    """(names, images (N, resolution, resolution, channels) float32 in [-1, 1]) of image files."""
    names, images = [], []
    for path in paths:
        for name, image in read_images(path, channels, background):
            names.append(name)
            images.append(fit(image, resolution, resize_to_fit=resize_to_fit, name=name))
    if not images:
        raise InputError("no images given")
    return names, np.stack(images)
