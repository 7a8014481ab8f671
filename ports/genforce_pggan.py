"""genforce PGGAN state dicts: constructor arguments inferred from key sets and shapes.

The state dicts load onto `jgan.models.pggan` modules as they are (same names and layouts);
genforce's PGGAN stores no structural buffers besides `lod`, which jgan keeps.
"""

import re

import numpy as np

from jgan.errors import CheckpointError
from jgan.models.pggan import INIT_RES, RESOLUTIONS

GENERATOR_IGNORED = {}
DISCRIMINATOR_IGNORED = {}

_DEFAULT_FMAPS_BASE = 16 << 10


def _shape(state, key, role):
    if key not in state:
        raise CheckpointError(f"genforce PGGAN {role}: tensor '{key}' is missing")
    return tuple(np.shape(state[key]))


def _num_blocks(state, prefix, role):
    """Number of resolutions, from the consecutive `{prefix}{k}.weight` keys (ToRGB/FromRGB)."""
    found = sorted(
        int(m.group(1)) for k in state if (m := re.fullmatch(rf"{prefix}(\d+)\.weight", k))
    )
    if not found or found != list(range(len(found))):
        raise CheckpointError(
            f"genforce PGGAN {role}: expected {prefix}0.weight, {prefix}1.weight, ... "
            f"(one per resolution); found indices {found}"
        )
    resolution = INIT_RES << (len(found) - 1)
    if resolution not in RESOLUTIONS:
        raise CheckpointError(
            f"genforce PGGAN {role}: {len(found)} {prefix}* layers give resolution "
            f"{resolution}, not one of {RESOLUTIONS}"
        )
    return len(found), resolution


def _fmaps(widths, role):
    """(fmaps_base, fmaps_max) with min(fmaps_base // res, fmaps_max) == widths[res] for all res.

    fmaps_max is the widest layer; fmaps_base comes from the highest resolution whose width is
    below that (the genforce default when every width is capped and the default fits).
    """
    fmaps_max = max(widths.values())
    below = [res for res, width in widths.items() if width < fmaps_max]
    if below:
        res = max(below)
        candidates = [_DEFAULT_FMAPS_BASE, widths[res] * res]
    else:
        candidates = [_DEFAULT_FMAPS_BASE, fmaps_max * max(widths)]
    for fmaps_base in candidates:
        if all(min(fmaps_base // r, fmaps_max) == w for r, w in widths.items()):
            return fmaps_base, fmaps_max
    listing = ", ".join(f"{r}: {w}" for r, w in sorted(widths.items()))
    raise CheckpointError(
        f"genforce PGGAN {role}: the feature-map widths per resolution ({listing}) do not follow "
        "min(fmaps_base // res, fmaps_max) for any fmaps_base"
    )


def _fused_scale(state, num_blocks, role):
    """Whether the upsampling convs are fused: their raw weight is then (in, out, k, k).

    Decidable only where a layer changes the width; otherwise the genforce default False.
    """
    votes = set()
    for block in range(1, num_blocks):
        shape = _shape(state, f"layer{2 * block}.weight", role)
        width_in = _shape(state, f"layer{2 * block - 1}.weight", role)[0]
        width_out = _shape(state, f"layer{2 * block + 1}.weight", role)[1]
        if width_in == width_out:
            continue
        if shape[:2] == (width_out, width_in):
            votes.add(False)
        elif shape[:2] == (width_in, width_out):
            votes.add(True)
        else:
            raise CheckpointError(
                f"genforce PGGAN {role}: layer{2 * block}.weight {shape} connects neither "
                f"{width_in} to {width_out} channels (OIHW) nor the reverse (fused, IOHW)"
            )
    if len(votes) > 1:
        raise CheckpointError(
            f"genforce PGGAN {role}: some upsampling convs are fused (IOHW) and others not"
        )
    return votes.pop() if votes else False


def infer_generator_config(state, *, label_size=0):
    """`PGGANGenerator` arguments from a genforce PGGAN generator state dict.

    layer0 takes z_space_dim + label_size inputs, which the generator's tensors cannot tell
    apart: pass `label_size` (the discriminator's, see `infer_discriminator_config`) for a
    conditional model. final_tanh and use_wscale leave no trace in the file (defaults). Widths
    that follow no fmaps formula are returned as the `channels` table.
    """
    role = "generator"
    num_blocks, resolution = _num_blocks(state, "output", role)
    inputs = _shape(state, "layer0.weight", role)[1]
    if inputs <= label_size:
        raise CheckpointError(
            f"genforce PGGAN {role}: layer0 takes {inputs} inputs, no room for z besides "
            f"{label_size} label entries"
        )
    widths = {
        INIT_RES << block: _shape(state, f"layer{2 * block + 1}.weight", role)[0]
        for block in range(num_blocks)
    }
    try:
        fmaps_base, fmaps_max = _fmaps(widths, role)
        channels = None
    except CheckpointError:  # a hand-set width table (interfacegan's): kept as it is
        fmaps_base, fmaps_max = _DEFAULT_FMAPS_BASE, 512
        channels = tuple(widths[res] for res in sorted(widths))
    return {
        "resolution": resolution,
        "z_space_dim": inputs - label_size,
        "image_channels": _shape(state, "output0.weight", role)[0],
        "final_tanh": False,
        "label_size": label_size,
        "fused_scale": _fused_scale(state, num_blocks, role),
        "use_wscale": True,
        "fmaps_base": fmaps_base,
        "fmaps_max": fmaps_max,
        "channels": channels,
    }


def infer_discriminator_config(state):
    """`PGGANDiscriminator` arguments from a genforce PGGAN discriminator state dict.

    The minibatch-stddev layer shows as one extra input channel of the 4x4 conv; its group
    size is not stored (genforce default 16). fused_scale keeps the weight layout, so it is
    not recorded either (default False).
    """
    role = "discriminator"
    num_blocks, resolution = _num_blocks(state, "input", role)
    widths = {
        resolution >> block: _shape(state, f"input{block}.weight", role)[0]
        for block in range(num_blocks)
    }
    last = num_blocks - 1
    widths[INIT_RES // 2] = _shape(state, f"layer{2 * last + 1}.weight", role)[0]
    fmaps_base, fmaps_max = _fmaps(widths, role)
    conv_inputs = _shape(state, f"layer{2 * last}.weight", role)[1]
    if conv_inputs not in (widths[INIT_RES], widths[INIT_RES] + 1):
        raise CheckpointError(
            f"genforce PGGAN {role}: layer{2 * last}.weight takes {conv_inputs} channels; "
            f"expected {widths[INIT_RES]} (+1 with minibatch stddev)"
        )
    return {
        "resolution": resolution,
        "image_channels": _shape(state, "input0.weight", role)[1],
        "label_size": _shape(state, f"layer{2 * num_blocks}.weight", role)[0] - 1,
        "fused_scale": False,
        "use_wscale": True,
        "minibatch_std_group_size": 16 if conv_inputs == widths[INIT_RES] + 1 else 0,
        "fmaps_base": fmaps_base,
        "fmaps_max": fmaps_max,
    }
