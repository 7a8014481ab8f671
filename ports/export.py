"""Write jgan models back as genforce model-zoo checkpoints, without torch.

The file is what genforce's converters write and its `synthesize.py` reads:
`{'generator', 'discriminator', 'generator_smooth'}` of state dicts, saved with torch.save's
zip format. jgan modules already name their tensors as genforce does, so a state dict is the
module's own variables plus the fixed buffers genforce stores and jgan rebuilds from the
architecture (the ones the genforce ports check and ignore on reading): StyleGAN's
per-channel blur kernels and StyleGAN2's FIR filters.
"""

from __future__ import annotations

import collections
import os

import numpy as np
from flax import nnx

from jgan.errors import CheckpointError, InputError
from jgan.models import stylegan, stylegan2
from jgan.models.registry import model_classes
from jgan.nn import BLUR_KERNEL
from jgan.ports import genforce
from jgan.ports.state import module_tensors
from jgan.ports.torch_writer import write_torch_file

__all__ = ["export_genforce", "genforce_state"]

FORMATS = ("genforce",)
"""Formats `jgan export` writes."""
GENFORCE_ARCHITECTURES = ("pggan", "stylegan", "stylegan2")
"""Architectures a genforce model-zoo checkpoint can hold."""


def _fixed_buffers(module) -> dict[str, np.ndarray]:
    """{genforce key: value} of the fixed filters genforce stores for `module` and jgan does not.

    StyleGAN: a (C, 1, 3, 3) blur after each upsampling conv (C its outputs) and before each
    downsampling conv (C its inputs). StyleGAN2: the [1, 3, 3, 1] FIR of each resampling conv
    and skip conv, and of the image skip path (`upsample` in G, `downsample` in D). Each is
    an array of its own, as torch saves each buffer in a storage of its own.
    """
    buffers = {}
    up, down = stylegan2.UP_KERNEL[None, None], stylegan2.DOWN_KERNEL[None, None]
    for path, sub in nnx.iter_modules(module):
        name = ".".join(map(str, path))
        if isinstance(sub, stylegan.SynthesisLayer) and sub.upsample:
            buffers[f"{name}.blur.kernel"] = _blur(sub.weight.shape[0])
        elif isinstance(sub, stylegan.DiscriminatorLayer) and sub.downsample:
            buffers[f"{name}.blur.kernel"] = _blur(sub.weight.shape[1])
        elif isinstance(sub, stylegan2.ModulatedConv) and sub.up:
            buffers[f"{name}.filter.kernel"] = up.copy()
        elif isinstance(sub, stylegan2.UpSkip):
            buffers[f"{name}.filter.kernel"] = up.copy()
        elif isinstance(sub, stylegan2.ConvBlock) and sub.down:
            buffers[f"{name}.filter.kernel"] = down.copy()
        elif isinstance(sub, stylegan2.Synthesis) and sub.architecture == "skip":
            buffers[f"{name}.upsample.kernel"] = up.copy()
        elif isinstance(sub, stylegan2.StyleGAN2Discriminator) and sub.architecture == "skip":
            buffers["downsample.kernel"] = down.copy()
    return buffers


def _blur(channels):
    """StyleGAN's depthwise [1, 2, 1] blur kernel for `channels` channels, as genforce stores it."""
    return np.tile(BLUR_KERNEL, (channels, 1, 1, 1))


def genforce_state(module) -> collections.OrderedDict:
    """The genforce state dict of a jgan PGGAN, StyleGAN or StyleGAN2 module (numpy arrays)."""
    tensors = {key: np.asarray(var[...]) for key, var in module_tensors(module).items()}
    return collections.OrderedDict(sorted({**tensors, **_fixed_buffers(module)}.items()))


def _modules(bundle) -> dict[str, object]:
    """{genforce entry: module}: generator_smooth is the EMA generator when there is a raw one."""
    if bundle.generator is None:
        raise InputError(f"{bundle.source or 'the model'} holds no generator to export")
    if bundle.generator_raw is None:
        entries = {"generator": bundle.generator}
    else:
        entries = {"generator": bundle.generator_raw, "generator_smooth": bundle.generator}
    if bundle.discriminator is not None:
        entries["discriminator"] = bundle.discriminator
    return entries


def _check_exportable(bundle, modules) -> None:
    if bundle.arch not in GENFORCE_ARCHITECTURES:
        raise InputError(
            f"a {bundle.arch} model cannot be written as a genforce checkpoint; genforce has "
            f"{GENFORCE_ARCHITECTURES}"
        )
    generator_class, discriminator_class = model_classes(bundle.arch)
    for entry, module in modules.items():
        expected = discriminator_class if entry == "discriminator" else generator_class
        if type(module) is not expected:
            raise InputError(
                f"the {entry} is a {type(module).__name__}; a genforce {bundle.arch} checkpoint "
                f"holds {expected.__name__} modules"
            )


def _read_back_overrides(bundle, checkpoint, path) -> dict[str, dict]:
    """{entry: {argument: value}} of the constructor arguments a reader must be told.

    The file is read back in memory as `jgan.load` would read it; what its config inference
    gets differently from the modules (arguments that leave no trace in the weights, such as
    `final_tanh` or a non-default `fused_scale`) is returned.
    """
    try:
        read = genforce.read(checkpoint, path, arch=bundle.arch)
    except CheckpointError as error:
        raise InputError(f"the model cannot be written as a genforce checkpoint: {error}") from None
    raw = "generator_raw" if "generator_smooth" in checkpoint else "generator"
    roles = {"generator": raw, "generator_smooth": "generator", "discriminator": "discriminator"}
    overrides = {}
    for entry, module in _modules(bundle).items():
        inferred = read[roles[entry]].config
        differing = {k: v for k, v in module.config.items() if inferred.get(k) != v}
        if differing:
            overrides[entry] = differing
    return overrides


def export_genforce(bundle, path: str | os.PathLike) -> dict[str, dict]:
    """Writes `bundle` (a `jgan.Bundle` of a PGGAN, StyleGAN or StyleGAN2) as a genforce
    model-zoo .pth at `path`, atomically.

    The file holds `generator` (the raw generator, or the only one), `generator_smooth` (the
    EMA generator, when the bundle has both) and `discriminator` (when present). Returns the
    constructor arguments that the weights cannot tell, per entry, which reading the file
    back needs as overrides (`jgan.load(path, **overrides)`; genforce's own `build_generator`
    takes the same names); empty for a model built with genforce's defaults.
    """
    modules = _modules(bundle)
    _check_exportable(bundle, modules)
    checkpoint = {entry: genforce_state(module) for entry, module in modules.items()}
    overrides = _read_back_overrides(bundle, checkpoint, os.fspath(path))
    write_torch_file(path, checkpoint)
    return overrides
