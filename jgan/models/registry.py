"""Architecture names -> (generator class, discriminator class), imported on first use."""

import importlib

from jgan.errors import InputError

_ARCHITECTURES = {
    "pggan": ("jgan.models.pggan", "PGGANGenerator", "PGGANDiscriminator"),
    "stylegan": ("jgan.models.stylegan", "StyleGANGenerator", "StyleGANDiscriminator"),
    "stylegan2": ("jgan.models.stylegan2", "StyleGAN2Generator", "StyleGAN2Discriminator"),
}


def architectures():
    """Names of the architectures jgan can build."""
    return tuple(_ARCHITECTURES)


def model_classes(arch):
    """(generator class, discriminator class) of architecture `arch`."""
    if arch not in _ARCHITECTURES:
        raise InputError(f"unknown architecture {arch!r}; jgan knows {architectures()}")
    module_name, generator, discriminator = _ARCHITECTURES[arch]
    module = importlib.import_module(module_name)
    return getattr(module, generator), getattr(module, discriminator)


def build_abstract(cls, config):
    """`cls(**config)` with shapes and dtypes only (no random initialisation, no compiling):
    the fast start for a module whose values are loaded next."""
    from flax import nnx

    return nnx.eval_shape(lambda: cls(**config, rngs=nnx.Rngs(0)))
