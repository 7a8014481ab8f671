"""jgan: load, understand, invert, edit and train GANs in JAX.

bundle = jgan.load("stylegan2_ffhq1024.pth")        # or a jgan model directory
out = jgan.synthesize(bundle.generator, z, trunc_psi=0.7)
logits = jgan.discriminate(bundle.discriminator, out["image"])
"""

from jgan.api import discriminate, synthesize
from jgan.bundle import Bundle, load, save_model_dir
from jgan.encoding import encode
from jgan.errors import CheckpointError, InputError, JganError
from jgan.inversion import invert
from jgan.perceptual import lpips, perceptual_features

__all__ = [
    "Bundle",
    "CheckpointError",
    "InputError",
    "JganError",
    "discriminate",
    "encode",
    "invert",
    "load",
    "lpips",
    "perceptual_features",
    "save_model_dir",
    "synthesize",
]
