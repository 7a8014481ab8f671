"""One entry point for every foreign checkpoint file: read it safely, recognise its format,
and build the jgan modules it holds.

Two tables drive it. `READERS` say how a kind of file is unpickled (the first that accepts
the file reads it); `FORMATS` name each format jgan knows, with a one-line description, the
reader its files need, a test on the unpickled contents and the function that builds the
modules. A new format is one more `Format` row; the messages for unknown and ambiguous files
list the table, so they stay complete.
"""

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jgan.errors import CheckpointError, InputError
from jgan.ports import (
    genforce,
    higan,
    idinvert,
    inception,
    interfacegan,
    nvidia,
    nvidia_pickle,
    nvidia_sg3,
    nvidia_tf,
    rosinality,
    vgg,
)
from jgan.ports.torch_pickle import read_torch_file

FORMAT_OVERRIDE = "format"
"""The override that names a file's format, for files that several formats could hold."""


class Reader(NamedTuple):
    """How a kind of checkpoint file is unpickled, without running anything in it."""

    description: str
    accepts: Callable[[str], bool]  # path -> whether this reader is for the file
    read: Callable[[str], Any]  # path -> contents


class Format(NamedTuple):
    """A checkpoint format jgan reads."""

    name: str
    description: str
    reader: Reader
    detect: Callable[[Any], bool]  # contents -> whether they have this format's layout
    read: Callable[..., dict]  # (contents, path, **overrides) -> Bundle fields


def _nvidia_generator(classes):
    """contents -> whether an NVIDIA network pickle's G_ema or G is of one of `classes`."""

    def detect(contents):
        networks = [contents.get(name) for name in ("G_ema", "G")]
        return any(isinstance(n, dict) and n.get("class") in classes for n in networks)

    return detect


NETWORK_PICKLE = Reader(
    "an NVIDIA network pickle", nvidia_pickle.is_network_pickle, nvidia_pickle.read_network_pickle
)
TORCH_SAVE = Reader("a PyTorch (torch.save) file", lambda path: True, read_torch_file)
TF_PICKLE = Reader("an NVIDIA TensorFlow pickle", nvidia_tf.is_tf_pickle, nvidia_tf.read_tf_pickle)
READERS = (NETWORK_PICKLE, TF_PICKLE, TORCH_SAVE)

FORMATS = (
    Format(
        "genforce",
        "genforce model zoo or training checkpoint of PGGAN, StyleGAN or StyleGAN2: "
        "{'generator', 'discriminator', 'generator_smooth'} or {'models': ...}",
        TORCH_SAVE,
        genforce.is_genforce,
        genforce.read,
    ),
    Format(
        "vgg16",
        "VGG16 state dict: torchvision features.N.* or IDInvert/genforce caffe layerN.*",
        TORCH_SAVE,
        vgg.is_vgg,
        vgg.read,
    ),
    Format(
        "fid-inception",
        "pytorch-fid's FID InceptionV3 state dict (pt_inception-2015-12-05-6726825d.pth): "
        "Conv2d_1a_3x3.conv.weight ... Mixed_7c.*, fc.weight (1008, 2048)",
        TORCH_SAVE,
        inception.is_inception,
        inception.read,
    ),
    Format(
        "interfacegan",
        "InterFaceGAN (or HiGAN PGGAN) generator state dict: layer0.conv.weight + "
        "layer0.wscale.bias, or StyleGAN mapping.dense0.linear.* / synthesis.layer0.first_layer",
        TORCH_SAVE,
        interfacegan.is_interfacegan,
        interfacegan.read,
    ),
    Format(
        "higan",
        "HiGAN / mGANprior StyleGAN or StyleGAN2 generator state dict: mapping.dense0.fc.*, "
        "synthesis.layer0.const / synthesis.early_layer.const",
        TORCH_SAVE,
        higan.is_higan,
        higan.read,
    ),
    Format(
        "idinvert",
        "IDInvert styleganinv generator (one w per layer) or encoder (block*.fc) state dict",
        TORCH_SAVE,
        idinvert.is_idinvert,
        idinvert.read,
    ),
    Format(
        "rosinality",
        "rosinality stylegan2-pytorch checkpoint: {'g', 'g_ema', 'd', 'args', ...} with "
        "style.1.weight, input.input",
        TORCH_SAVE,
        rosinality.is_rosinality,
        rosinality.read,
    ),
    Format(
        "nvidia-stylegan2",
        "NVIDIA stylegan2-ada-pytorch (or stylegan3 repository StyleGAN2) network pickle: "
        "{'G', 'G_ema', 'D', ...}",
        NETWORK_PICKLE,
        _nvidia_generator(nvidia.GENERATORS),
        nvidia.read,
    ),
    Format(
        "nvidia-stylegan3",
        "NVIDIA stylegan3 network pickle with a StyleGAN3 (T or R) generator",
        NETWORK_PICKLE,
        nvidia_sg3.is_stylegan3,
        nvidia_sg3.read,
    ),
    Format(
        "nvidia-tf",
        "NVIDIA TensorFlow pickle of PGGAN, StyleGAN or StyleGAN2: (G, D, Gs) of "
        "dnnlib.tflib / tfutil Networks",
        TF_PICKLE,
        nvidia_tf.is_tf_networks,
        nvidia_tf.read,
    ),
)


def format_names():
    """Names of the formats jgan reads, as the `format` override takes them."""
    return tuple(f.name for f in FORMATS)


def _listing():
    return "\n".join(f"  {f.name}: {f.description}" for f in FORMATS)


def _summary(contents, shown=8):
    """What a file holds, in a few words: its top-level keys and the first keys under them."""
    if isinstance(contents, np.ndarray):
        return f"a single array of shape {contents.shape}"
    if not isinstance(contents, dict):
        return f"a {type(contents).__name__}, not a dict"
    keys = sorted(map(str, contents))
    parts = [f"top-level keys {keys[:shown]}{' ...' if len(keys) > shown else ''}"]
    for key, value in list(contents.items())[:3]:
        if isinstance(value, dict) and isinstance(value.get("class"), str):
            parts.append(f"{key!r}: class {value['class']}")
        elif isinstance(value, dict):
            inner = sorted(map(str, value))
            parts.append(f"{key!r}: {inner[:3]}{' ...' if len(inner) > 3 else ''}")
    return "; ".join(parts)


def _chosen_format(name):
    for candidate in FORMATS:
        if candidate.name == name:
            return candidate
    raise InputError(f"unknown format {name!r}; jgan reads {format_names()}")


def read_checkpoint(path, **overrides):
    """Modules of a foreign checkpoint: dict with arch, generator, generator_raw, discriminator
    (and encoder or perceptual), from the one format its contents fit.

    `format=NAME` (one of `format_names()`) skips the recognition, for a file that several
    formats could hold; the other overrides go to the format's reader.
    """
    path = os.fspath(path)
    chosen = overrides.pop(FORMAT_OVERRIDE, None)
    if chosen is not None:
        fmt = _chosen_format(chosen)
        return fmt.read(fmt.reader.read(path), path, **overrides)
    reader = next(r for r in READERS if r.accepts(path))
    contents = reader.read(path)
    matches = [f for f in FORMATS if f.reader is reader and f.detect(contents)]
    if len(matches) == 1:
        return matches[0].read(contents, path, **overrides)
    if not matches:
        raise CheckpointError(
            f"{path}: {reader.description} of no format jgan knows; it holds "
            f"{_summary(contents)}. jgan reads:\n{_listing()}"
        )
    names = [f.name for f in matches]
    raise CheckpointError(
        f"{path}: {reader.description} that fits several formats, {names} ({_summary(contents)});"
        f" name the one it is with the override {FORMAT_OVERRIDE}=NAME (jgan.load(path, "
        f"{FORMAT_OVERRIDE}={names[0]!r}) or --override {FORMAT_OVERRIDE}={names[0]})"
    )
