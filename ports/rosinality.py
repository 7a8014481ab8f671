"""rosinality/stylegan2-pytorch checkpoints -> jgan StyleGAN2 modules.

A training checkpoint is `torch.save({'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args', ...})`;
one converted from NVIDIA's TF weights is `{'g_ema', 'latent_avg'}` (plus 'g', 'd'). `g_ema`
becomes the generator, `g` the raw generator, `d` the discriminator. The networks are
genforce's skip generator and resnet discriminator; the widths come from the tensor shapes
(the channel table is hard-coded in model.py and only partly set by `channel_multiplier`), the
rest from the keys. Renaming, with rosinality's layout fixes:

    style.{n} (n = 1, 2, ...)           -> mapping.dense{n-1}          (PixelNorm is style.0)
    input.input                         -> synthesis.early_layer.const
    conv1, convs.{j}                    -> synthesis.layer0, synthesis.layer{j+1}
      .conv.weight (1, out, in, k, k)   -> .weight (out, in, k, k); flipped in space for the
                                           up-convs (convs.{even}: transposed, not flipped)
      .conv.modulation.{weight, bias}   -> .style.{weight, bias - 1}   (genforce adds the 1)
      .noise.weight (1,)                -> .noise_strength ()
      .activate.bias                    -> .bias
    noises.noise_{i}                    -> synthesis.layer{i}.noise
    to_rgb1, to_rgbs.{j}                -> synthesis.output0, synthesis.output{j+1}
                                           (bias (1, 3, 1, 1) -> (3,))
    latent_avg (TF-converted files)     -> truncation.w_avg
    D convs.0                           -> input0
    D convs.{k}.conv1 / conv2 / skip    -> layer{2k-2} / layer{2k-1} / skip_layer{k-1}
    D final_conv, final_linear.{0,1}    -> layer{2K}, layer{2K+1}, layer{2K+2}

Blur and upsample kernels (stored x4 in the generator, sum 1 in the discriminator) must be
the standard [1, 3, 3, 1] filter. Training checkpoints store no average w: the generator
cannot truncate until one is set (`jgan.models.latent.set_w_avg` / `estimate_w_avg`).
"""

import re

import numpy as np

from jgan.errors import CheckpointError
from jgan.models.stylegan2 import DOWN_KERNEL, INIT_RES, UP_KERNEL
from jgan.ports import genforce
from jgan.ports.genforce_stylegan2 import GENFORCE_DISCRIMINATOR, GENFORCE_GENERATOR
from jgan.ports.nvidia import (
    apply_key_table,
    dense_rows,
    flip,
    minus_one,
    split_overrides,
    widths_config,
)

GENERATOR_IGNORED = {r"(convs\.\d+\.conv\.blur|to_rgbs\.\d+\.upsample)\.kernel": UP_KERNEL}
DISCRIMINATOR_IGNORED = {r"convs\.\d+\.(conv2|skip)\.0\.kernel": DOWN_KERNEL}
MAPPING_LR_MUL = 0.01
"""model.Generator's lr_mlp, which train.py never changes and the checkpoint does not store."""
MBSTD_GROUP, MBSTD_CHANNELS = 4, 1
"""model.Discriminator's hard-coded stddev_group and stddev_feat."""


def is_rosinality(obj):
    """Whether an unpickled checkpoint is a rosinality one (a g_ema or g state dict)."""
    if not isinstance(obj, dict):
        return False
    states = [obj.get("g_ema"), obj.get("g")]
    return any(isinstance(s, dict) and {"style.1.weight", "input.input"} <= set(s) for s in states)


def _count(state, pattern, what, start=0):
    """How many indices `pattern` captures over the keys, checked to run start, start+1, ..."""
    found = sorted({int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))})
    if found != list(range(start, start + len(found))):
        raise CheckpointError(f"{what} are not numbered {start}, {start + 1}, ...: {found}")
    return len(found)


def _shape(state, key):
    if key not in state:
        raise CheckpointError(f"the state dict lacks {key}")
    return np.shape(state[key])


def generator_config(state, has_w_avg=False):
    """StyleGAN2Generator constructor kwargs of a rosinality generator state dict."""
    mapping_layers = _count(state, r"style\.(\d+)\.weight", "style (mapping) layers", start=1)
    num_blocks = 1 + _count(state, r"to_rgbs\.(\d+)\.conv\.weight", "to_rgbs")
    if mapping_layers == 0 or "to_rgb1.conv.weight" not in state:
        raise CheckpointError("not a rosinality generator: no style.1 or to_rgb1 layers")
    style_dim = _shape(state, "style.1.weight")[1]
    resolution = INIT_RES << (num_blocks - 1)
    widths = {INIT_RES: _shape(state, "input.input")[1]}
    for block in range(1, num_blocks):
        widths[INIT_RES << block] = _shape(state, f"convs.{2 * block - 1}.conv.weight")[1]
    return {
        **GENFORCE_GENERATOR,
        "resolution": resolution,
        "z_space_dim": style_dim,
        "w_space_dim": style_dim,
        "label_size": 0,
        "mapping_layers": mapping_layers,
        "mapping_fmaps": style_dim,
        "mapping_lr_mul": MAPPING_LR_MUL,
        "repeat_w": True,
        "image_channels": _shape(state, "to_rgb1.conv.weight")[1],
        "final_tanh": False,
        "const_input": True,
        "architecture": "skip",
        "fused_modulate": False,
        "demodulate": True,
        "use_wscale": True,
        **widths_config(widths, resolution),
        "has_w_avg": has_w_avg,
    }


def discriminator_config(state):
    """StyleGAN2Discriminator constructor kwargs of a rosinality discriminator state dict."""
    res_blocks = _count(state, r"convs\.(\d+)\.conv1\.0\.weight", "discriminator ResBlocks", 1)
    if "convs.0.0.weight" not in state or res_blocks == 0:
        raise CheckpointError("not a rosinality discriminator: no convs.0 or ResBlocks")
    resolution = INIT_RES << res_blocks
    widths = {resolution: _shape(state, "convs.0.0.weight")[0]}
    for k in range(1, res_blocks + 1):
        widths[resolution >> k] = _shape(state, f"convs.{k}.conv2.1.weight")[0]
    widths[INIT_RES // 2] = _shape(state, "final_linear.0.weight")[0]
    return {
        **GENFORCE_DISCRIMINATOR,
        "resolution": resolution,
        "image_channels": _shape(state, "convs.0.0.weight")[1],
        "label_size": 0,
        "architecture": "resnet",
        "use_wscale": True,
        "minibatch_std_group_size": MBSTD_GROUP,
        "minibatch_std_channels": MBSTD_CHANNELS,
        **widths_config(widths, resolution),
    }


def _styled_conv(source, target, noise, up):
    """The rows of one StyledConv (conv, noise weight, fused-lrelu bias) and its noise buffer."""
    weight = (lambda w: flip(w[0])) if up else (lambda w: w[0])
    return [
        (f"{source}.conv.weight", f"{target}.weight", weight),
        (f"{source}.conv.modulation.weight", f"{target}.style.weight", None),
        (f"{source}.conv.modulation.bias", f"{target}.style.bias", minus_one),
        (f"{source}.noise.weight", f"{target}.noise_strength", lambda w: w.reshape(())),
        (f"{source}.activate.bias", f"{target}.bias", None),
        (noise, f"{target}.noise", None),
    ]


def _to_rgb(source, target):
    return [
        (f"{source}.conv.weight", f"{target}.weight", lambda w: w[0]),
        (f"{source}.conv.modulation.weight", f"{target}.style.weight", None),
        (f"{source}.conv.modulation.bias", f"{target}.style.bias", minus_one),
        (f"{source}.bias", f"{target}.bias", lambda b: b.reshape(-1)),
    ]


def generator_table(config):
    """[(rosinality key, jgan key, fix)] of a generator with the jgan `config`."""
    rows = []
    for i in range(config["mapping_layers"]):
        rows += dense_rows(f"style.{i + 1}", f"mapping.dense{i}")
    rows.append(("input.input", "synthesis.early_layer.const", None))
    rows += _styled_conv("conv1", "synthesis.layer0", "noises.noise_0", up=False)
    rows += _to_rgb("to_rgb1", "synthesis.output0")
    num_blocks = int(np.log2(config["resolution"] // INIT_RES)) + 1
    for j in range(2 * (num_blocks - 1)):
        layer = f"synthesis.layer{j + 1}"
        rows += _styled_conv(f"convs.{j}", layer, f"noises.noise_{j + 1}", up=j % 2 == 0)
    for j in range(num_blocks - 1):
        rows += _to_rgb(f"to_rgbs.{j}", f"synthesis.output{j + 1}")
    return rows


def discriminator_table(config):
    """[(rosinality key, jgan key, fix)] of a discriminator with the jgan `config`."""
    last = int(np.log2(config["resolution"] // INIT_RES))
    rows = [("convs.0.0.weight", "input0.weight", None), ("convs.0.1.bias", "input0.bias", None)]
    for k in range(1, last + 1):
        rows += [
            (f"convs.{k}.conv1.0.weight", f"layer{2 * k - 2}.weight", None),
            (f"convs.{k}.conv1.1.bias", f"layer{2 * k - 2}.bias", None),
            (f"convs.{k}.conv2.1.weight", f"layer{2 * k - 1}.weight", None),
            (f"convs.{k}.conv2.2.bias", f"layer{2 * k - 1}.bias", None),
            (f"convs.{k}.skip.1.weight", f"skip_layer{k - 1}.weight", None),
        ]
    rows += [
        ("final_conv.0.weight", f"layer{2 * last}.weight", None),
        ("final_conv.1.bias", f"layer{2 * last}.bias", None),
        *dense_rows("final_linear.0", f"layer{2 * last + 1}"),
        *dense_rows("final_linear.1", f"layer{2 * last + 2}"),
    ]
    return rows


def convert_generator(state, source, latent_avg=None, **overrides):
    """A jgan StyleGAN2Generator from a rosinality generator state dict (+ `latent_avg`)."""
    state = dict(state)
    try:
        config = {**generator_config(state, latent_avg is not None), **overrides}
    except CheckpointError as error:
        raise CheckpointError(f"{source}: {error}") from error
    if latent_avg is not None:
        state["latent_avg"] = np.reshape(latent_avg, -1)
    table = generator_table(config)
    if config["has_w_avg"]:
        table.append(("latent_avg", "truncation.w_avg", None))
    tensors = apply_key_table(state, table, GENERATOR_IGNORED, source)
    if not config["has_w_avg"]:
        tensors["truncation.w_avg"] = np.zeros(config["w_space_dim"], np.float32)
    return genforce.build("stylegan2", "generator", config, tensors, {}, source)


def convert_discriminator(state, source, **overrides):
    """A jgan StyleGAN2Discriminator from a rosinality discriminator state dict."""
    try:
        config = {**discriminator_config(state), **overrides}
    except CheckpointError as error:
        raise CheckpointError(f"{source}: {error}") from error
    tensors = apply_key_table(state, discriminator_table(config), DISCRIMINATOR_IGNORED, source)
    return genforce.build("stylegan2", "discriminator", config, tensors, {}, source)


def read(obj, source, **overrides):
    """Modules of a rosinality checkpoint: dict with arch, generator, generator_raw,
    discriminator. `overrides` take jgan's constructor argument names."""
    g_overrides, d_overrides = split_overrides(overrides, "a rosinality checkpoint")
    latent_avg = obj.get("latent_avg")
    result = {"arch": "stylegan2", "generator": None, "generator_raw": None, "discriminator": None}
    for role, name in (("generator", "g_ema"), ("generator_raw", "g")):
        if obj.get(name) is not None:
            where = f"{source}[{name}]"
            result[role] = convert_generator(obj[name], where, latent_avg, **g_overrides)
    if result["generator"] is None:
        result["generator"], result["generator_raw"] = result["generator_raw"], None
    if obj.get("d") is not None:
        result["discriminator"] = convert_discriminator(obj["d"], f"{source}[d]", **d_overrides)
    _check_args(obj.get("args"), result["generator"].config, source)
    return result


def _check_args(args, config, source):
    """The training arguments, where the file has them, must agree with the weights."""
    stored = {"size": "resolution", "latent": "z_space_dim", "n_mlp": "mapping_layers"}
    for name, key in stored.items():
        value = getattr(args, name, None)
        if value is not None and value != config[key]:
            raise CheckpointError(
                f"{source}: args.{name} is {value}, but the weights have {key} {config[key]}"
            )
