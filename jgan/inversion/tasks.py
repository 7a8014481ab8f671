"""Restoration tasks on top of any inversion (mGANprior, IDInvert): each says what the loss
sees of an image (`observe`, applied to the target and to the reconstruction alike), what the
naive restoration looks like (`degraded`) and how the answer is formed (`result`).

Tasks are small pytrees: options (factor, mode) are static, masks are arrays with one entry per
image, so a task crosses `jax.jit` and `jax.vmap` with the images it belongs to.

- `Colorize()`: the loss compares luminances (0.299 R + 0.587 G + 0.114 B, as mGANprior); the
  result keeps the input's luminance and takes the chroma (JPEG YCbCr) of the reconstruction.
- `SuperResolve(factor, mode)`: the loss compares images downsampled by `factor`.
- `Inpaint(hole)`: the loss ignores the `hole` (1 = missing, mGANprior's white mask pixels); the
  result keeps the known pixels and fills the hole from the reconstruction.
- `Diffuse(crop)`: IDInvert's semantic diffusion: the loss sees only the pasted `crop` region
  (build it with `paste`); the result is the whole reconstruction, which blends the crop into
  its context.
"""

import dataclasses
import numbers
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jgan.errors import InputError

LUMA = (0.299, 0.587, 0.114)
DOWN_MODES = ("bilinear", "bicubic", "area", "nearest")


def luminance(images):
    """0.299 R + 0.587 G + 0.114 B of NHWC RGB images, keeping a channel axis (N, H, W, 1)."""
    return jnp.sum(images * jnp.asarray(LUMA, images.dtype), axis=-1, keepdims=True)


def _per_image_mask(mask, images, name):
    """`mask` ((H, W), (H, W, 1), (N, H, W) or (N, H, W, 1), values in [0, 1]) as (N, H, W, 1)."""
    mask = np.asarray(mask, np.float32)
    n, h, w = images.shape[:3]
    if mask.ndim in (2, 3) and mask.shape[:2] == (h, w) and mask.shape[2:] in ((), (1,)):
        mask = mask.reshape(1, h, w, 1)
    elif mask.ndim in (3, 4) and mask.shape[1:3] == (h, w) and mask.shape[3:] in ((), (1,)):
        mask = mask.reshape(-1, h, w, 1)
    else:
        raise InputError(
            f"the {name} mask must have shape ({h}, {w}) or (N, {h}, {w}) (optionally with a "
            f"trailing 1) to match the images; got {mask.shape}"
        )
    if mask.shape[0] not in (1, n):
        raise InputError(f"{mask.shape[0]} {name} masks for {n} images: give 1 or {n}")
    if not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 1:
        raise InputError(f"the {name} mask must hold values in [0, 1]")
    return np.broadcast_to(mask, (n, h, w, 1))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Task:
    """Plain reconstruction, and what every task offers (a subclass overrides some of it)."""

    name: ClassVar[str] = "reconstruct"

    def for_batch(self, images):
        """This task checked against NHWC `images`, its masks given one entry per image."""
        return self

    def observe(self, images):
        """What the loss compares of an image (target and reconstruction alike)."""
        return images

    def degraded(self, images):
        """The naive restoration of the observation: the baseline a result should beat."""
        return self.observe(images)

    def result(self, images, reconstructions):
        """The restored image from the inputs and their reconstructions."""
        return reconstructions


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Colorize(Task):
    """Colorization: luminance loss; the result has the input's luminance (Y) and the
    reconstruction's chroma (Cb, Cr)."""

    name: ClassVar[str] = "colorize"

    def observe(self, images):
        return jnp.broadcast_to(luminance(images), images.shape)

    def result(self, images, reconstructions):
        # Y, Cb, Cr are linear in R, G, B, and R = G = B = Y at zero chroma: replacing Y shifts
        # every channel by the same amount.
        return reconstructions + (luminance(images) - luminance(reconstructions))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SuperResolve(Task):
    """Super-resolution: the loss compares images downsampled by `factor` with `mode`.

    'bilinear' and 'bicubic' are antialiased (`jax.image.resize`; mGANprior's `F.interpolate`
    samples without a low-pass filter), 'area' averages factor x factor boxes, 'nearest' takes
    the top-left pixel of each box (as `F.interpolate`). The observation is upsampled back by
    pixel repetition, which leaves the mean squared error that of the small images and gives the
    perceptual network full-size inputs (mGANprior resizes them with 'nearest' too).
    """

    name: ClassVar[str] = "super-resolve"
    factor: int = dataclasses.field(metadata=dict(static=True))
    mode: str = dataclasses.field(default="bilinear", metadata=dict(static=True))

    def __post_init__(self):
        if isinstance(self.factor, bool) or not isinstance(self.factor, numbers.Integral):
            raise InputError(f"the super-resolution factor must be an integer; got {self.factor!r}")
        if self.factor < 2:
            raise InputError(f"the super-resolution factor must be at least 2; got {self.factor}")
        if self.mode not in DOWN_MODES:
            raise InputError(f"downsampling mode must be one of {DOWN_MODES}; got {self.mode!r}")

    def for_batch(self, images):
        h, w = images.shape[1:3]
        if h % self.factor or w % self.factor:
            raise InputError(
                f"images of {h}x{w} cannot be downsampled by {self.factor}: the factor must "
                "divide the resolution"
            )
        return self

    def downsample(self, images):
        n, h, w, c = images.shape
        f = self.factor
        if self.mode == "area":
            return images.reshape(n, h // f, f, w // f, f, c).mean(axis=(2, 4))
        if self.mode == "nearest":
            return images[:, ::f, ::f]
        method = "linear" if self.mode == "bilinear" else "cubic"
        return jax.image.resize(images, (n, h // f, w // f, c), method, antialias=True)

    def observe(self, images):
        low = self.downsample(images)
        return jnp.repeat(jnp.repeat(low, self.factor, axis=1), self.factor, axis=2)

    def degraded(self, images):
        """The low-resolution image upsampled bilinearly."""
        return jax.image.resize(self.downsample(images), images.shape, "linear")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Inpaint(Task):
    """Inpainting: `hole` (H, W) or per image (N, H, W), 1 where pixels are missing; the loss
    sees images * (1 - hole), the result is input * (1 - hole) + reconstruction * hole."""

    name: ClassVar[str] = "inpaint"
    hole: jax.Array

    def for_batch(self, images):
        return Inpaint(_per_image_mask(self.hole, images, "inpainting"))

    def observe(self, images):
        return images * (1.0 - self.hole)

    def result(self, images, reconstructions):
        return images * (1.0 - self.hole) + reconstructions * self.hole


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Diffuse(Task):
    """Semantic diffusion: `crop` (H, W) or (N, H, W) is 1 on the pasted region; the loss sees
    images * crop (pixels and perceptual features, as IDInvert); the result is the whole
    reconstruction. The images to invert are the pasted ones (`paste`)."""

    name: ClassVar[str] = "diffuse"
    crop: jax.Array

    def for_batch(self, images):
        return Diffuse(_per_image_mask(self.crop, images, "diffusion crop"))

    def observe(self, images):
        return images * self.crop

    def degraded(self, images):
        """The pasted image itself."""
        return images


def paste(targets, contexts, crop_size, center):
    """IDInvert's copy and paste: a `crop_size` square (or (height, width)) of `targets`
    centred at `center` = (x, y) replaces the same pixels of `contexts`.

    Returns (pasted images, Diffuse task). Targets and contexts are NHWC of the same size;
    IDInvert's defaults for 256-px faces are crop 110 at (125, 145).
    """
    targets, contexts = np.asarray(targets, np.float32), np.asarray(contexts, np.float32)
    if targets.ndim != 4 or contexts.shape[1:] != targets.shape[1:]:
        raise InputError(
            f"targets and contexts must be NHWC images of one size; got {targets.shape} and "
            f"{contexts.shape}"
        )
    if len(contexts) not in (1, len(targets)) and len(targets) != 1:
        raise InputError(f"{len(targets)} targets and {len(contexts)} contexts: pair them 1:1")
    crop_h, crop_w = (crop_size, crop_size) if np.isscalar(crop_size) else crop_size
    h, w = targets.shape[1:3]
    top, left = center[1] - crop_h // 2, center[0] - crop_w // 2
    if crop_h < 1 or crop_w < 1 or top < 0 or left < 0 or top + crop_h > h or left + crop_w > w:
        raise InputError(
            f"a {crop_h}x{crop_w} crop centred at (x={center[0]}, y={center[1]}) does not fit "
            f"in {h}x{w} images"
        )
    crop = np.zeros((h, w), np.float32)
    crop[top : top + crop_h, left : left + crop_w] = 1.0
    pasted = targets * crop[:, :, None] + contexts * (1.0 - crop[:, :, None])
    return pasted, Diffuse(crop)


TASKS = {cls.name: cls for cls in (Colorize, SuperResolve, Inpaint, Diffuse)}
