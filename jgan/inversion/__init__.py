"""GAN inversion and restoration: latent optimisation (Z, W, W+, Y; IDInvert's domain-regularised
inversion), mGANprior's multi-code inversion, restoration tasks and image-quality metrics."""

from jgan.inversion.optimize import (
    IDINVERT,
    MGANPRIOR,
    OPTIMIZE,
    MultiCodeSettings,
    Settings,
    invert,
    preset,
)
from jgan.inversion.tasks import Colorize, Diffuse, Inpaint, SuperResolve, paste

__all__ = [
    "IDINVERT",
    "MGANPRIOR",
    "OPTIMIZE",
    "Colorize",
    "Diffuse",
    "Inpaint",
    "MultiCodeSettings",
    "Settings",
    "SuperResolve",
    "invert",
    "paste",
    "preset",
]
