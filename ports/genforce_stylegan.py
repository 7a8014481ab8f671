"""genforce StyleGAN (v1) state dicts (REFERENCE.md §7.4): constructor arguments from keys and
shapes.

The state dicts load onto `jgan.models.stylegan` modules as they are (same dotted names, raw
equalized-lr parameters); only the per-channel blur kernels, which jgan rebuilds from the
architecture, are ignored after checking that they hold the [1, 2, 1] blur.

What the file cannot tell is returned as genforce's default: `fused_scale` ('auto'; a fused
layer stores the same (out, in, 3, 3) weight, so a model built with `fused_scale=True` below
resolution 128 needs that override), `final_tanh`, `use_wscale`, `mapping_lr_mul`, the
discriminator's minibatch-stddev group size, and a discriminator `label_size` of 1 (one
output, like an unconditional model).
"""

import re

import numpy as np

from jgan.errors import CheckpointError
from jgan.models.stylegan import INIT_RES, RESOLUTIONS
from jgan.nn import BLUR_KERNEL

_FMAPS_BASE, _FMAPS_MAX = 16 << 10, 512


def _is_blur_kernel(value):
    """Whether a stored `blur.kernel` (C, 1, 3, 3) is the [1, 2, 1]^2 / 16 blur per channel."""
    return (
        value.ndim == 4
        and value.shape[1:] == (1, 3, 3)
        and np.allclose(value, BLUR_KERNEL[None, None], atol=1e-6)
    )


GENERATOR_IGNORED = {r"synthesis\.layer\d+\.blur\.kernel": _is_blur_kernel}
DISCRIMINATOR_IGNORED = {r"layer\d+\.blur\.kernel": _is_blur_kernel}


def _count(state, pattern):
    """How many keys match `pattern` (one integer group), checking they are numbered 0..n-1."""
    found = sorted({int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))})
    if found != list(range(len(found))):
        raise CheckpointError(f"keys {pattern!r} are not numbered 0..{len(found) - 1}: {found}")
    return len(found)


def _shape(state, key):
    if key not in state:
        raise CheckpointError(f"the state dict lacks {key}")
    return tuple(np.shape(state[key]))


def infer_fmaps(widths):
    """(fmaps_base, fmaps_max) with min(fmaps_base // res, fmaps_max) == widths[res] for all.

    genforce's defaults are preferred when they fit; otherwise fmaps_max is the widest layer
    and fmaps_base the smallest value that every observed width allows (each width bounds
    fmaps_base from below by width * res; if that smallest value does not fit, none does).
    """
    widest = max(widths.values())
    derived = max(res * width for res, width in widths.items())
    for base, top in ((_FMAPS_BASE, _FMAPS_MAX), (derived, widest)):
        if all(min(base // res, top) == width for res, width in widths.items()):
            return base, top
    raise CheckpointError(
        f"channel widths per resolution {dict(sorted(widths.items()))} do not follow "
        "min(fmaps_base // res, fmaps_max) for any fmaps_base, fmaps_max"
    )


def _resolution(num_blocks, what):
    resolution = INIT_RES << (num_blocks - 1) if num_blocks else 0
    if resolution not in RESOLUTIONS:
        raise CheckpointError(
            f"a StyleGAN {what} with {num_blocks} resolution blocks (resolution {resolution}) "
            f"is not supported; resolutions {RESOLUTIONS}"
        )
    return resolution


def infer_generator_config(state):
    """StyleGANGenerator constructor kwargs of a genforce generator state dict; widths that
    follow no fmaps formula are returned as the `channels` table."""
    mapping_layers = _count(state, r"mapping\.dense(\d+)\.weight")
    num_layers = _count(state, r"synthesis\.layer(\d+)\.style\.weight")
    if mapping_layers == 0 or num_layers % 2:
        raise CheckpointError(
            f"not a StyleGAN generator: {mapping_layers} mapping layers and {num_layers} "
            "styled synthesis layers (an even number expected)"
        )
    num_blocks = num_layers // 2
    resolution = _resolution(num_blocks, "generator")
    label_size = _shape(state, "mapping.label_weight")[0] if "mapping.label_weight" in state else 0
    first = _shape(state, "mapping.dense0.weight")
    z_space_dim = first[1] // 2 if label_size else first[1]
    if label_size and _shape(state, "mapping.label_weight") != (label_size, z_space_dim):
        raise CheckpointError(
            f"mapping.label_weight {_shape(state, 'mapping.label_weight')} does not match "
            f"mapping.dense0.weight {first} (expected (label_size, {z_space_dim}))"
        )
    w_space_dim = _shape(state, "synthesis.layer0.style.weight")[1]
    mapping_out = _shape(state, f"mapping.dense{mapping_layers - 1}.weight")[0]
    if mapping_out not in (w_space_dim, w_space_dim * num_layers):
        raise CheckpointError(
            f"the mapping outputs {mapping_out} values, neither w_space_dim ({w_space_dim}) nor "
            f"num_layers * w_space_dim ({num_layers * w_space_dim})"
        )
    noise_weight = _shape(state, "synthesis.layer0.apply_noise.weight")
    widths = {
        INIT_RES << b: _shape(state, f"synthesis.layer{2 * b + 1}.weight")[0]
        for b in range(num_blocks)
    }
    try:
        fmaps_base, fmaps_max = infer_fmaps(widths)
        channels = None
    except CheckpointError:  # a hand-set width table (interfacegan's): kept as it is
        fmaps_base, fmaps_max = _FMAPS_BASE, _FMAPS_MAX
        channels = tuple(widths[res] for res in sorted(widths))
    return {
        "resolution": resolution,
        "z_space_dim": z_space_dim,
        "w_space_dim": w_space_dim,
        "label_size": label_size,
        "mapping_layers": mapping_layers,
        "mapping_fmaps": first[0] if mapping_layers > 1 else 512,
        "mapping_lr_mul": 0.01,
        "repeat_w": mapping_out == w_space_dim,
        "image_channels": _shape(state, "synthesis.output0.weight")[0],
        "final_tanh": False,
        "const_input": "synthesis.layer0.const" in state,
        "fused_scale": "auto",
        "use_wscale": True,
        "noise_type": "spatial" if len(noise_weight) == 1 else "channel",
        "fmaps_base": fmaps_base,
        "fmaps_max": fmaps_max,
        "channels": channels,
    }


def infer_discriminator_config(state):
    """StyleGANDiscriminator constructor kwargs of a genforce discriminator state dict."""
    num_blocks = _count(state, r"input(\d+)\.weight")
    resolution = _resolution(num_blocks, "discriminator")
    widths = {resolution >> b: _shape(state, f"input{b}.weight")[0] for b in range(num_blocks)}
    last_conv = _shape(state, f"layer{2 * num_blocks - 2}.weight")
    widths[INIT_RES // 2] = _shape(state, f"layer{2 * num_blocks - 1}.weight")[0]
    mbstd_channels = last_conv[1] - widths[INIT_RES]
    if mbstd_channels < 0:
        raise CheckpointError(
            f"layer{2 * num_blocks - 2}.weight {last_conv} has fewer inputs than the "
            f"{widths[INIT_RES]} channels of the 4x4 block"
        )
    outputs = _shape(state, f"layer{2 * num_blocks}.weight")[0]
    fmaps_base, fmaps_max = infer_fmaps(widths)
    return {
        "resolution": resolution,
        "image_channels": _shape(state, "input0.weight")[1],
        "label_size": outputs if outputs > 1 else 0,
        "fused_scale": "auto",
        "use_wscale": True,
        "minibatch_std_group_size": 4 if mbstd_channels else 0,
        "minibatch_std_channels": mbstd_channels or 1,
        "fmaps_base": fmaps_base,
        "fmaps_max": fmaps_max,
    }
