"""Architecture names -> model classes, imported on first use: (generator, discriminator) per
GAN architecture, and the class of each single-module architecture (encoders, perceptual
networks), looked up by the module's own `arch`."""

import importlib

from jgan.errors import InputError

_ARCHITECTURES = {
    "pggan": ("jgan.models.pggan", "PGGANGenerator", "PGGANDiscriminator"),
    "stylegan": ("jgan.models.stylegan", "StyleGANGenerator", "StyleGANDiscriminator"),
    "stylegan2": ("jgan.models.stylegan2", "StyleGAN2Generator", "StyleGAN2Discriminator"),
    "stylegan3": ("jgan.models.stylegan3", "StyleGAN3Generator", "StyleGAN2Discriminator"),
    "trgan": ("jgan.models.trgan", "TrGANGenerator", "TrGANDiscriminator"),
}

_MODULES = {
    "idinvert_encoder": ("jgan.models.encoders", "StyleGANEncoder"),
    "ghfeat_encoder": ("jgan.models.ghfeat", "GHFeatEncoder"),
    "vgg16": ("jgan.models.vgg", "VGG16"),
    "lpips": ("jgan.models.lpips", "LPIPS"),
    "attribute_classifier": ("jgan.models.classifier", "AttributeClassifier"),
    "fid_inception": ("jgan.models.inception", "FIDInceptionV3"),
    "resnet": ("jgan.models.resnet", "ResNet"),
    "split_resnet": ("jgan.models.resnet", "SplitResNet"),
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


def module_class(arch):
    """The class of the single-module architecture `arch` (an encoder or perceptual network)."""
    if arch not in _MODULES:
        raise InputError(f"unknown module architecture {arch!r}; jgan knows {tuple(_MODULES)}")
    module_name, name = _MODULES[arch]
    return getattr(importlib.import_module(module_name), name)


def build_abstract(cls, config):
    """`cls(**config)` with shapes and dtypes only (no random initialisation, no compiling):
    the fast start for a module whose values are loaded next."""
    from flax import nnx

    return nnx.eval_shape(lambda: cls(**config, rngs=nnx.Rngs(0)))
