"""NVIDIA StyleGAN2-ADA network pickles -> jgan StyleGAN2 modules.

Reads the networks of stylegan2-ada-pytorch (`training.networks`) and the StyleGAN2 configs
that the stylegan3 repository saves (`training.networks_stylegan2`: the same networks with
flat generator kwargs and other defaults): `G_ema` becomes the generator, `G` the raw
generator, `D` the discriminator. The constructor arguments come from the attributes the
networks were built with (widths from the tensor shapes); the tensors are renamed to the
genforce names of `jgan.models.stylegan2` by the tables below, with NVIDIA's layout fixes
(REFERENCE.md §7.4, "ADA-PyTorch -> genforce"):

    mapping.fc{i}, mapping.embed        -> mapping.dense{i}, mapping.embed
    mapping.w_avg                       -> truncation.w_avg
    synthesis.b4.const (C, 4, 4)        -> synthesis.early_layer.const (1, C, 4, 4)
    synthesis.b{res}.conv0 (up)         -> synthesis.layer{2k-1}, weight flipped in space
    synthesis.b{res}.conv1              -> synthesis.layer{2k}          (k: block of res)
    synthesis.b{res}.torgb              -> synthesis.output{k}
    synthesis.b{res}.skip (resnet)      -> synthesis.skip_layer{k-1}
      *.affine.{weight, bias}           -> *.style.{weight, bias - 1}   (genforce adds the 1)
      *.noise_const (res, res)          -> *.noise (1, 1, res, res)
    D b{res}.fromrgb, conv0, conv1, skip -> input{k}, layer{2k}, layer{2k+1}, skip_layer{k}
    D b4.fromrgb, conv, fc, out         -> input{K}, layer{2K}, layer{2K+1}, layer{2K+2}
    D mapping.embed, mapping.fc{i}      -> mapping.embed, mapping.dense{i}

The `resample_filter` buffers must hold the standard [1, 3, 3, 1] filter, which jgan builds
itself. fp16 settings (`num_fp16_res`, `use_fp16`) are ignored: jgan computes in float32, as
NVIDIA's code does with force_fp32.
"""

import re

import numpy as np

from jgan.errors import CheckpointError, InputError
from jgan.models.registry import model_classes
from jgan.models.stylegan2 import DOWN_KERNEL, INIT_RES
from jgan.ports import genforce
from jgan.ports.genforce_stylegan2 import infer_fmaps

GENERATORS = ("training.networks.Generator", "training.networks_stylegan2.Generator")
DISCRIMINATORS = ("training.networks.Discriminator", "training.networks_stylegan2.Discriminator")
_ARCHITECTURES = {"orig": "origin", "skip": "skip", "resnet": "resnet"}
_CONV_LAYERS = ("SynthesisLayer", "ToRGBLayer", "Conv2dLayer")
_UNCLAMPED = ("skip", "b4.fromrgb")
"""Conv layers that NVIDIA builds without conv_clamp (and jgan too)."""
_RESAMPLE_FILTER = {r"(.+\.)?resample_filter": DOWN_KERNEL}
"""NVIDIA keeps the normalised [1, 3, 3, 1] filter (gain applied at run time) in every layer."""


def flip(weight):
    """NVIDIA's up-convs are transposed convs of the unflipped weight; genforce's flip it."""
    return np.ascontiguousarray(weight[:, :, ::-1, ::-1])


def minus_one(bias):
    """Affine biases start at 1 in NVIDIA's file; genforce adds the 1 at run time."""
    return bias - 1


def leading_axes(count):
    """Adds `count` leading axes of size 1 (const (C,4,4), noise_const (H,W))."""
    return lambda value: value.reshape((1,) * count + value.shape)


def apply_key_table(state, table, ignored, source):
    """{target key: array} from `state` by `table` [(source key, target key, fix or None)].

    Every source tensor must be renamed or match a pattern of `ignored` ({regex: expected
    value}, as `load_state` takes); missing and left-over tensors are reported by their names
    in the file.
    """
    missing = [key for key, _, _ in table if key not in state]
    used = {key for key, _, _ in table}
    left = []
    for key, value in state.items():
        if key in used:
            continue
        rule = next((p for p in ignored if re.fullmatch(p, key)), None)
        expected = None if rule is None else ignored[rule]
        if rule is None or (expected is not None and not _close(value, expected)):
            left.append(key)
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(sorted(missing)[:12])}")
    if left:
        problems.append(
            f"tensors jgan does not know (or non-standard filters): {sorted(left)[:12]}"
        )
    if problems:
        raise CheckpointError(f"{source}: {'; '.join(problems)}")
    return {target: (fix(state[key]) if fix else state[key]) for key, target, fix in table}


def _close(value, expected):
    return np.shape(value) == np.shape(expected) and np.allclose(value, expected, atol=1e-6)


def _layer(nvidia, jgan, fix=None):
    """The rows of one NVIDIA SynthesisLayer / ToRGBLayer (weight layout fix `fix`)."""
    rows = [
        (f"{nvidia}.weight", f"{jgan}.weight", fix),
        (f"{nvidia}.bias", f"{jgan}.bias", None),
        (f"{nvidia}.affine.weight", f"{jgan}.style.weight", None),
        (f"{nvidia}.affine.bias", f"{jgan}.style.bias", minus_one),
    ]
    if not nvidia.endswith("torgb"):
        rows += [
            (f"{nvidia}.noise_strength", f"{jgan}.noise_strength", None),
            (f"{nvidia}.noise_const", f"{jgan}.noise", leading_axes(2)),
        ]
    return rows


def dense_rows(nvidia, jgan):
    """The rows of a layer with a weight and a bias, renamed as they are."""
    return [(f"{nvidia}.weight", f"{jgan}.weight", None), (f"{nvidia}.bias", f"{jgan}.bias", None)]


def _mapping(config_layers, conditional):
    rows = dense_rows("mapping.embed", "mapping.embed") if conditional else []
    for i in range(config_layers):
        rows += dense_rows(f"mapping.fc{i}", f"mapping.dense{i}")
    return rows


def generator_table(config):
    """[(NVIDIA key, jgan key, fix)] of a generator with the jgan `config`."""
    rows = _mapping(config["mapping_layers"], config["label_size"] > 0)
    if config["has_w_avg"]:
        rows.append(("mapping.w_avg", "truncation.w_avg", None))
    resolutions = _resolutions(config["resolution"])
    for block, res in enumerate(resolutions):
        nvidia = f"synthesis.b{res}"
        if block == 0:
            rows.append((f"{nvidia}.const", "synthesis.early_layer.const", leading_axes(1)))
        else:
            rows += _layer(f"{nvidia}.conv0", f"synthesis.layer{2 * block - 1}", flip)
            if config["architecture"] == "resnet":
                rows.append(
                    (f"{nvidia}.skip.weight", f"synthesis.skip_layer{block - 1}.weight", flip)
                )
        rows += _layer(f"{nvidia}.conv1", f"synthesis.layer{2 * block}")
        if config["architecture"] == "skip" or block == len(resolutions) - 1:
            rows += _layer(f"{nvidia}.torgb", f"synthesis.output{block}")
    return rows


def discriminator_table(config):
    """[(NVIDIA key, jgan key, fix)] of a discriminator with the jgan `config`."""
    rows = _mapping(config["cmap_layers"], True) if config["cmap_dim"] else []
    resolutions = _resolutions(config["resolution"])[::-1]
    last = len(resolutions) - 1
    for block, res in enumerate(resolutions):
        nvidia = f"b{res}"
        if block == 0 or config["architecture"] == "skip":
            rows += dense_rows(f"{nvidia}.fromrgb", f"input{block}")
        if block < last:
            rows += dense_rows(f"{nvidia}.conv0", f"layer{2 * block}")
            rows += dense_rows(f"{nvidia}.conv1", f"layer{2 * block + 1}")
            if config["architecture"] == "resnet":
                rows.append((f"{nvidia}.skip.weight", f"skip_layer{block}.weight", None))
    rows += dense_rows("b4.conv", f"layer{2 * last}")
    rows += dense_rows("b4.fc", f"layer{2 * last + 1}")
    rows += dense_rows("b4.out", f"layer{2 * last + 2}")
    return rows


def _resolutions(resolution):
    return [INIT_RES << k for k in range(int(np.log2(resolution // INIT_RES)) + 1)]


def widths_config(widths, resolution):
    """fmaps_base / fmaps_max when the widths {res: width} follow their formula (including the
    discriminator's dense width at res 2, if given), else a channel table (4x4 first)."""
    try:
        fmaps_base, fmaps_max = infer_fmaps(widths, resolution)
        return {"fmaps_base": fmaps_base, "fmaps_max": fmaps_max, "channels": None}
    except CheckpointError:
        table = tuple(widths[res] for res in _resolutions(resolution))
        return {"fmaps_base": 32 << 10, "fmaps_max": 512, "channels": table}


class _Network:
    """One described network of the pickle, with checked access to what it was built with."""

    def __init__(self, description, source):
        self.tensors, self.modules = description["tensors"], description["modules"]
        self.attributes, self.source = description["attributes"], source

    def attribute(self, module, name):
        """Attribute `name` of submodule `module` ('' for the network itself)."""
        attributes = (
            self.modules.get(module, {}).get("attributes", {}) if module else self.attributes
        )
        if name not in attributes:
            raise CheckpointError(f"{self.source}: {module or 'the network'} has no {name!r}")
        return attributes[name]

    def shape(self, key):
        if key not in self.tensors:
            raise CheckpointError(f"{self.source}: the network has no tensor {key}")
        return self.tensors[key].shape

    def conv_clamp(self):
        """The one conv_clamp of all conv layers (jgan has one per network)."""
        clamps = {
            self.attribute(name, "conv_clamp")
            for name, module in self.modules.items()
            if module["class"].endswith(_CONV_LAYERS) and not name.endswith(_UNCLAMPED)
        }
        if len(clamps) > 1:
            raise CheckpointError(f"{self.source}: layers with different conv_clamp {clamps}")
        return clamps.pop() if clamps else None

    def require(self, module, name, allowed):
        value = self.attribute(module, name)
        if value not in allowed:
            raise CheckpointError(
                f"{self.source}: {module}.{name} is {value!r}; jgan's StyleGAN2 supports {allowed}"
            )
        return value


def generator_config(description, source):
    """StyleGAN2Generator constructor kwargs of a described NVIDIA generator."""
    net = _Network(description, source)
    resolution = net.attribute("synthesis", "img_resolution")
    resolutions = _resolutions(resolution)
    c_dim, w_dim = net.attribute("mapping", "c_dim"), net.attribute("mapping", "w_dim")
    mapping_layers = net.attribute("mapping", "num_layers")
    net.require("mapping.fc0", "activation", ("lrelu",))
    net.require("synthesis.b4.conv1", "activation", ("lrelu",))
    net.require("synthesis.b4.conv1", "use_noise", (True,))
    architecture = net.require("synthesis.b4", "architecture", tuple(_ARCHITECTURES))
    widths = {INIT_RES: net.shape("synthesis.b4.const")[0]}
    for res in resolutions:
        widths[res] = net.shape(f"synthesis.b{res}.conv1.weight")[0]
    return {
        "resolution": resolution,
        "z_space_dim": net.attribute("mapping", "z_dim"),
        "w_space_dim": w_dim,
        "label_size": c_dim,
        "mapping_layers": mapping_layers,
        "mapping_fmaps": net.shape("mapping.fc0.weight")[0] if mapping_layers > 1 else w_dim,
        "mapping_lr_mul": float(net.attribute("mapping.fc0", "bias_gain")),
        "repeat_w": True,
        "image_channels": net.attribute("synthesis", "img_channels"),
        "final_tanh": False,
        "const_input": True,
        "architecture": _ARCHITECTURES[architecture],
        "fused_modulate": False,
        "demodulate": True,
        "use_wscale": True,
        **widths_config(widths, resolution),
        "conv_clamp": net.conv_clamp(),
        "label_embedding": "embed" if c_dim else "concat",
        "label_embed_dim": net.shape("mapping.embed.weight")[0] if c_dim else None,
        "has_w_avg": "mapping.w_avg" in net.tensors,
    }


def discriminator_config(description, source):
    """StyleGAN2Discriminator constructor kwargs of a described NVIDIA discriminator."""
    net = _Network(description, source)
    resolution = net.attribute("", "img_resolution")
    top = f"b{resolution}"
    architecture = net.require(top, "architecture", tuple(_ARCHITECTURES))
    net.require(f"{top}.conv0", "activation", ("lrelu",))
    cmap_dim = net.attribute("b4", "cmap_dim")
    if cmap_dim:
        net.require("mapping.fc0", "activation", ("lrelu",))
        net.require("mapping.fc0", "bias_gain", (0.01,))
    mbstd_channels, mbstd_group = 0, 0
    if "b4.mbstd" in net.modules:
        mbstd_channels = net.attribute("b4.mbstd", "num_channels")
        mbstd_group = net.attribute("b4.mbstd", "group_size")
        if mbstd_group is None:
            raise CheckpointError(
                f"{source}: minibatch-stddev over the entire batch (group_size None) is not "
                "supported; jgan needs a fixed group size"
            )
    widths = {INIT_RES // 2: net.shape("b4.fc.weight")[0], INIT_RES: net.shape("b4.conv.weight")[0]}
    for res in _resolutions(resolution)[1:]:
        widths[res] = net.shape(f"b{res}.conv0.weight")[0]
    return {
        "resolution": resolution,
        "image_channels": net.attribute("", "img_channels"),
        "label_size": net.attribute("", "c_dim"),
        "architecture": _ARCHITECTURES[architecture],
        "use_wscale": True,
        "minibatch_std_group_size": mbstd_group if mbstd_channels else 0,
        "minibatch_std_channels": mbstd_channels or 1,
        **widths_config(widths, resolution),
        "conv_clamp": net.conv_clamp(),
        "cmap_dim": cmap_dim or None,
        "cmap_layers": net.attribute("mapping", "num_layers") if cmap_dim else 8,
    }


def _build(role, description, config, table, source):
    tensors = apply_key_table(description["tensors"], table, _RESAMPLE_FILTER, source)
    return genforce.build("stylegan2", role, config, tensors, {}, source)


def convert_generator(description, source, **overrides):
    """A jgan StyleGAN2Generator from a described NVIDIA generator (`read_network_pickle`)."""
    config = {**generator_config(description, source), **overrides}
    return _build("generator", description, config, generator_table(config), source)


def convert_discriminator(description, source, **overrides):
    """A jgan StyleGAN2Discriminator from a described NVIDIA discriminator."""
    config = {**discriminator_config(description, source), **overrides}
    return _build("discriminator", description, config, discriminator_table(config), source)


def split_overrides(overrides, what):
    """(generator overrides, discriminator overrides) of jgan's StyleGAN2 constructor
    arguments; an unknown name is an error that lists the known ones."""
    G, D = model_classes("stylegan2")
    g_args, d_args = genforce.constructor_args(G), genforce.constructor_args(D)
    unknown = set(overrides) - g_args - d_args
    if unknown:
        raise InputError(
            f"unknown override(s) {sorted(unknown)} for {what}; its generator takes "
            f"{sorted(g_args)} and its discriminator {sorted(d_args)}"
        )
    return (
        {k: v for k, v in overrides.items() if k in g_args},
        {k: v for k, v in overrides.items() if k in d_args},
    )


def read(contents, source, **overrides):
    """Modules of an NVIDIA StyleGAN2 pickle: dict with arch, generator, generator_raw,
    discriminator. `overrides` take jgan's constructor argument names."""
    g_overrides, d_overrides = split_overrides(overrides, "an NVIDIA StyleGAN2 pickle")
    result = {"arch": "stylegan2", "generator": None, "generator_raw": None, "discriminator": None}
    for role, name in (("generator", "G_ema"), ("generator_raw", "G")):
        network = contents.get(name)
        if network is None:
            continue
        _expect_class(network, GENERATORS, name, source)
        result[role] = convert_generator(network, f"{source}[{name}]", **g_overrides)
    if result["generator"] is None:
        result["generator"], result["generator_raw"] = result["generator_raw"], None
    if result["generator"] is None:
        raise CheckpointError(f"{source}: the network pickle holds no generator (G_ema or G)")
    if contents.get("D") is not None:
        _expect_class(contents["D"], DISCRIMINATORS, "D", source)
        result["discriminator"] = convert_discriminator(
            contents["D"], f"{source}[D]", **d_overrides
        )
    return result


def _expect_class(network, classes, name, source):
    if not isinstance(network, dict) or network.get("class") not in classes:
        found = network.get("class") if isinstance(network, dict) else type(network).__name__
        raise CheckpointError(f"{source}: {name} is {found}; expected one of {classes}")
