"""genforce StyleGAN2 state dicts (REFERENCE.md §7.4): constructor arguments from keys and shapes.

The state dicts load onto `jgan.models.stylegan2` modules as they are (same dotted names, raw
equalized-lr parameters); only the FIR kernels, which jgan rebuilds from the architecture,
are ignored after checking that they hold the standard [1, 3, 3, 1] filters.

What the file cannot tell is returned as genforce's default: `mapping_lr_mul`, `final_tanh`,
`demodulate`, `use_wscale`, the discriminator's minibatch-stddev group size (4 when the last
conv has extra inputs, else disabled), a discriminator `label_size` of 1 (one output, like an
unconditional model), and `mapping_fmaps` of a one-layer mapping. `fused_modulate` is jgan's
choice of computation path (False), not a property of the weights.
"""

import re

import numpy as np

from jgan.errors import CheckpointError
from jgan.models.stylegan2 import DOWN_KERNEL, INIT_RES, RESOLUTIONS, UP_KERNEL

GENERATOR_IGNORED = {
    r"synthesis\.(layer\d+\.filter|skip_layer\d+\.filter|upsample)\.kernel": UP_KERNEL[None, None],
}
DISCRIMINATOR_IGNORED = {
    r"((skip_)?layer\d+\.filter|downsample)\.kernel": DOWN_KERNEL[None, None],
}
_FMAPS_BASE, _FMAPS_MAX = 32 << 10, 512
GENFORCE_GENERATOR = {
    "channels": None,
    "conv_clamp": None,
    "label_embedding": "concat",
    "label_embed_dim": None,
    "has_w_avg": True,
}
"""The options genforce's generator does not have (NVIDIA's and rosinality's), switched off."""
GENFORCE_DISCRIMINATOR = {"channels": None, "conv_clamp": None, "cmap_dim": None, "cmap_layers": 8}
"""The same for the discriminator."""


def _indices(state, pattern):
    """Sorted integers captured by `pattern` (one group) over the keys of `state`."""
    found = {int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))}
    return sorted(found)


def _contiguous(indices, what):
    if indices != list(range(len(indices))):
        raise CheckpointError(f"{what} are not numbered 0..{len(indices) - 1}: {indices}")
    return len(indices)


def _resolution(num_blocks, what):
    resolution = INIT_RES << (num_blocks - 1)
    if resolution not in RESOLUTIONS:
        raise CheckpointError(
            f"a StyleGAN2 {what} with {num_blocks} resolution blocks (resolution {resolution}); "
            f"supported resolutions are {RESOLUTIONS}"
        )
    return resolution


def _shape(state, key):
    if key not in state:
        raise CheckpointError(f"the state dict lacks {key}")
    return tuple(np.shape(state[key]))


def infer_fmaps(widths, resolution):
    """(fmaps_base, fmaps_max) with min(fmaps_base // res, fmaps_max) == widths[res] for all.

    The genforce defaults are preferred when they fit; otherwise fmaps_max is the widest layer
    and fmaps_base = width * res at the highest resolution narrower than that (or
    fmaps_max * resolution when none is).
    """
    widest = max(widths.values())
    narrower = [res for res, width in widths.items() if width < widest]
    derived = widths[max(narrower)] * max(narrower) if narrower else widest * resolution
    for base, top in (
        (_FMAPS_BASE, _FMAPS_MAX),
        (_FMAPS_BASE, widest),
        (derived, _FMAPS_MAX),
        (derived, widest),
    ):
        if all(min(base // res, top) == width for res, width in widths.items()):
            return base, top
    raise CheckpointError(
        f"channel widths per resolution {dict(sorted(widths.items()))} do not follow "
        "min(fmaps_base // res, fmaps_max) for any fmaps_base, fmaps_max"
    )


def infer_generator_config(state):
    """StyleGAN2Generator constructor kwargs of a genforce generator state dict."""
    mapping_layers = _contiguous(_indices(state, r"mapping\.dense(\d+)\.weight"), "mapping layers")
    convs = _contiguous(_indices(state, r"synthesis\.layer(\d+)\.weight"), "synthesis layers")
    outputs = _indices(state, r"synthesis\.output(\d+)\.weight")
    if mapping_layers == 0 or convs < 3 or convs % 2 == 0 or not outputs:
        raise CheckpointError(
            f"not a StyleGAN2 generator: {mapping_layers} mapping layers, {convs} synthesis "
            f"layers (odd, >= 3 expected), ToRGB outputs {outputs}"
        )
    num_blocks = (convs + 1) // 2
    num_layers = convs + 1
    resolution = _resolution(num_blocks, "generator")
    if "synthesis.early_layer.const" not in state:
        raise CheckpointError(
            "the generator has no synthesis.early_layer.const: genforce's non-constant input "
            "(const_input=False) is not supported"
        )

    if any(k.startswith("synthesis.skip_layer") for k in state):
        architecture = "resnet"
    elif outputs == list(range(num_blocks)):
        architecture = "skip"
    elif outputs == [num_blocks - 1]:
        architecture = "origin"
    else:
        raise CheckpointError(f"ToRGB outputs {outputs} fit no architecture ({num_blocks} blocks)")

    label_size = 0
    z_dim = _shape(state, "mapping.dense0.weight")[1]
    if "mapping.label_weight" in state:
        label_size, z_dim = _shape(state, "mapping.label_weight")
        if _shape(state, "mapping.dense0.weight")[1] != 2 * z_dim:
            raise CheckpointError(
                f"mapping.dense0 takes {_shape(state, 'mapping.dense0.weight')[1]} inputs; a "
                f"conditional model with z_space_dim {z_dim} needs {2 * z_dim}"
            )
    w_dim = _shape(state, "synthesis.layer0.style.weight")[1]
    mapping_out = _shape(state, f"mapping.dense{mapping_layers - 1}.weight")[0]
    if mapping_out not in (w_dim, w_dim * num_layers):
        raise CheckpointError(
            f"the mapping outputs {mapping_out} values; expected w_space_dim {w_dim} "
            f"(repeat_w) or {w_dim} x {num_layers} layers"
        )
    mapping_fmaps = _shape(state, "mapping.dense0.weight")[0] if mapping_layers > 1 else 512

    widths = {INIT_RES: _shape(state, "synthesis.early_layer.const")[1]}
    for block in range(num_blocks):
        widths[INIT_RES << block] = _shape(state, f"synthesis.layer{2 * block}.weight")[0]
    fmaps_base, fmaps_max = infer_fmaps(widths, resolution)
    return {
        "resolution": resolution,
        "z_space_dim": z_dim,
        "w_space_dim": w_dim,
        "label_size": label_size,
        "mapping_layers": mapping_layers,
        "mapping_fmaps": mapping_fmaps,
        "mapping_lr_mul": 0.01,
        "repeat_w": mapping_out == w_dim,
        "image_channels": _shape(state, f"synthesis.output{outputs[-1]}.weight")[0],
        "final_tanh": False,
        "const_input": True,
        "architecture": architecture,
        "fused_modulate": False,
        "demodulate": True,
        "use_wscale": True,
        "fmaps_base": fmaps_base,
        "fmaps_max": fmaps_max,
        **GENFORCE_GENERATOR,
    }


def infer_discriminator_config(state):
    """StyleGAN2Discriminator constructor kwargs of a genforce discriminator state dict.

    A single output logit reads as label_size 0 (a label_size of 1 looks the same).
    """
    layers = _contiguous(_indices(state, r"layer(\d+)\.weight"), "discriminator layers")
    if layers < 5 or layers % 2 == 0:
        raise CheckpointError(f"not a StyleGAN2 discriminator: {layers} layers (odd, >= 5)")
    num_blocks = (layers - 1) // 2
    resolution = _resolution(num_blocks, "discriminator")
    inputs = _indices(state, r"input(\d+)\.weight")
    if any(k.startswith("skip_layer") for k in state):
        architecture = "resnet"
    elif inputs == list(range(num_blocks)):
        architecture = "skip"
    elif inputs == [0]:
        architecture = "origin"
    else:
        raise CheckpointError(f"FromRGB inputs {inputs} fit no architecture ({num_blocks} blocks)")

    last = num_blocks - 1
    widths = {res: _shape(state, f"layer{2 * b}.weight")[0] for b, res in _d_blocks(resolution)}
    widths[INIT_RES // 2] = _shape(state, f"layer{2 * last + 1}.weight")[0]
    fmaps_base, fmaps_max = infer_fmaps(widths, resolution)
    mbstd_channels = _shape(state, f"layer{2 * last}.weight")[1] - widths[INIT_RES]
    if mbstd_channels < 0:
        raise CheckpointError(
            f"layer{2 * last} takes {mbstd_channels + widths[INIT_RES]} channels, fewer than the "
            f"{widths[INIT_RES]} of the 4x4 features"
        )
    outputs = _shape(state, f"layer{2 * last + 2}.weight")[0]
    return {
        "resolution": resolution,
        "image_channels": _shape(state, "input0.weight")[1],
        "label_size": outputs if outputs > 1 else 0,
        "architecture": architecture,
        "use_wscale": True,
        "minibatch_std_group_size": 4 if mbstd_channels > 0 else 0,
        "minibatch_std_channels": mbstd_channels if mbstd_channels > 0 else 1,
        "fmaps_base": fmaps_base,
        "fmaps_max": fmaps_max,
        **GENFORCE_DISCRIMINATOR,
    }


def _d_blocks(resolution):
    """(block index, resolution) of the discriminator, highest resolution first."""
    count = int(np.log2(resolution // INIT_RES)) + 1
    return [(b, resolution >> b) for b in range(count)]
