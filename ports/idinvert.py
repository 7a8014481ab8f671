"""IDInvert checkpoints (REFERENCE.md §4.3, format F3): idinvert_pytorch's
`styleganinv_<name>_generator.pth` and `styleganinv_<name>_encoder.pth`, flat state dicts of
one module each (`jgan.load(...).generator` / `.encoder`).

Generator: HiGAN's StyleGAN names (`jgan.ports.higan`) with `repeat_w=False` (the mapping
outputs one w per layer, num_layers * w_space_dim values) and a final tanh, which leaves no
trace in the file and is implied by the format (override `final_tanh=False` otherwise). Its
`truncation.w_avg` keeps w_space_dim entries shared by every layer; jgan's per-layer average
repeats it. The file omits `truncation.truncation`; the wrapper applies psi 0.7 on the first
8 layers to Z codes only (`DEFAULT_TRUNCATION`), jgan when asked. Its z preprocessing (norm
sqrt(z_dim)) is undone by the mapping's pixel norm: pass raw z.

Encoder: `StyleGANEncoderNet`, loaded as it is onto `jgan.models.encoders.StyleGANEncoder`
(same names) except the BatchNorm step counters `num_batches_tracked`, which inference does
not use. Its constructor arguments come from the shapes; `use_wscale` leaves no trace (the
release uses False, the default; the weights are then stored with their scale folded in).
"""

import re

import numpy as np

from jgan.errors import CheckpointError, InputError
from jgan.models.encoders import RESOLUTIONS, StyleGANEncoder
from jgan.models.registry import build_abstract
from jgan.ports import higan
from jgan.ports.keymap import check_overrides, shape
from jgan.ports.state import load_state

DEFAULT_TRUNCATION = (0.7, 8)
"""(psi, layers) that IDInvert's generator wrapper applies to Z codes."""

ENCODER_IGNORED = {r"block\d+\.bn\d?\.bn\.num_batches_tracked": None}
_ENCODER = "IDInvert encoder"


def is_encoder(obj):
    """Whether `obj` is an IDInvert encoder state dict."""
    return (
        isinstance(obj, dict)
        and "block0.conv.weight" in obj
        and any(re.fullmatch(r"block\d+\.fc\.weight", str(k)) for k in obj)
    )


def is_generator(obj):
    """Whether `obj` is an IDInvert generator: HiGAN's StyleGAN names, one w per layer."""
    return higan.is_stylegan(obj) and not higan.mapping_repeats_w(obj)


def is_idinvert(obj):
    """Whether an unpickled checkpoint is an IDInvert generator or encoder."""
    return is_encoder(obj) or is_generator(obj)


def infer_encoder_config(state):
    """`StyleGANEncoder` arguments from an IDInvert encoder state dict."""
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"block(\d+)\.", k))})
    if blocks != list(range(len(blocks))) or 2 ** len(blocks) not in RESOLUTIONS:
        raise CheckpointError(
            f"{_ENCODER}: blocks {blocks} do not form block0 ... block(n-1) for a resolution "
            f"2**n in {RESOLUTIONS}"
        )
    num_blocks = len(blocks)
    num_layers = 2 * (num_blocks - 1)
    base, image_channels = shape(state, "block0.conv.weight", _ENCODER)[:2]
    widths = [base] + [
        shape(state, f"block{b}.conv2.weight", _ENCODER)[0] for b in range(1, num_blocks - 1)
    ]
    codes = shape(state, f"block{num_blocks - 1}.fc.weight", _ENCODER)[0]
    if codes % num_layers:
        raise CheckpointError(
            f"{_ENCODER}: block{num_blocks - 1}.fc gives {codes} values, not a multiple of the "
            f"{num_layers} generator layers of resolution {2**num_blocks}"
        )
    return {
        "resolution": 2**num_blocks,
        "w_space_dim": codes // num_layers,
        "image_channels": image_channels,
        "encoder_channels_base": base,
        "encoder_channels_max": max(widths),
        "use_wscale": False,
        "use_bn": "block0.bn.bn.running_mean" in state,
    }


def read_encoder(state, source, overrides):
    """Bundle fields of an IDInvert encoder file: dict(arch='idinvert_encoder', encoder)."""
    check_overrides(StyleGANEncoder, overrides, f"an {_ENCODER}")
    config = {**infer_encoder_config(state), **overrides}
    try:
        module = build_abstract(StyleGANEncoder, config)
    except InputError as error:
        raise CheckpointError(f"{source}: cannot build the {_ENCODER}: {error}") from error
    encoder = load_state(module, state, ignored=ENCODER_IGNORED, source=f"{source} ({_ENCODER})")
    return {"arch": StyleGANEncoder.arch, "encoder": encoder}


def _per_layer_average(state, source):
    """`state` with `truncation.w_avg` (w_space_dim,) repeated for every layer, as jgan's
    non-repeated-w generator keeps one average per layer."""
    what = f"{source} (IDInvert generator)"
    if "truncation.w_avg" not in state:
        return state  # loading reports it missing
    w_dim = shape(state, "synthesis.layer0.epilogue.style_mod.dense.fc.weight", what)[1]
    last = max(int(m.group(1)) for k in state if (m := re.match(r"mapping\.dense(\d+)\.", k)))
    num_layers = shape(state, f"mapping.dense{last}.fc.weight", what)[0] // w_dim
    w_avg = np.asarray(state["truncation.w_avg"])
    if w_avg.shape != (w_dim,):
        raise CheckpointError(
            f"{what}: truncation.w_avg has shape {w_avg.shape}; expected ({w_dim},), one "
            "average shared by every layer"
        )
    return {**state, "truncation.w_avg": np.tile(w_avg, num_layers)}


def read(obj, source, **overrides):
    """Bundle fields of an IDInvert generator or encoder file."""
    if is_encoder(obj):
        return read_encoder(obj, source, overrides)
    return higan.read_stylegan(
        _per_layer_average(obj, source),
        source,
        overrides,
        what="IDInvert generator",
        fixed={"final_tanh": True},
    )
