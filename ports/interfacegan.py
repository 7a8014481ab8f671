"""InterFaceGAN checkpoints (REFERENCE.md §1.3, format F1): the flat state dict of one
`PGGANGeneratorModel` or `StyleGANGeneratorModel`, written by interfacegan's
`convert_tf_model` from NVIDIA's TF pickles (HiGAN's and mGANprior's PGGAN files are the same
format). There is no 'generator' wrapper: a file is one generator.

The keys are renamed to genforce's (F4), which jgan's modules use, by the tables below; then
the genforce ports infer the architecture from the shapes. Layout fixes: the fused up-conv
weight `layerN.weight` is stored (k, k, in, out) (TF's, with in/out swapped for PGGAN); the
PGGAN 4x4 "dense" layer was already converted to genforce's flipped conv by the original
converter. What the file does not store: StyleGAN's `truncation.truncation` (derived from the
wrapper's settings), and the channel table (interfacegan hard-codes it per resolution with no
constructor argument; widths are read from the shapes, and a table that follows no
fmaps formula becomes the generator's `channels`).

The wrappers' conventions, which jgan leaves to the caller:
- z preprocessing: `preprocess` rescales z to norm sqrt(z_dim). Both generators pixel-normalise
  z first (StyleGAN's mapping; PGGAN's first block), so this changes nothing: pass raw z.
- truncation: interfacegan's StyleGAN applies psi 0.7 on the first 8 layers to every Z or W
  code (`DEFAULT_TRUNCATION`); jgan truncates only when asked
  (`synthesize(..., trunc_psi=0.7, trunc_layers=8)` reproduces the wrapper).
"""

import re

from jgan.errors import CheckpointError
from jgan.models.stylegan import AUTO_FUSED_MIN_RES, INIT_RES
from jgan.ports.keymap import Rule, hwio_to_iohw, hwio_to_oihw, read_generator

DEFAULT_TRUNCATION = (0.7, 8)
"""(psi, layers) that interfacegan's StyleGAN wrapper applies to every generated code."""

PGGAN_RULES = (
    Rule("layer{i}.conv.weight", "layer{i}.weight"),
    Rule("layer{i}.weight", "layer{i}.weight", hwio_to_iohw),  # fused up-conv
    Rule("layer{i}.wscale.bias", "layer{i}.bias"),
    Rule("output{i}.conv.weight", "output{i}.weight"),
    Rule("output{i}.wscale.bias", "output{i}.bias"),
)
"""interfacegan / HiGAN PGGAN -> genforce PGGAN; `lod` keeps its name."""


def stylegan_rules(dense, const):
    """TF-converted StyleGAN v1 names -> genforce's. interfacegan calls the dense layers'
    weight `linear` and the constant `first_layer`; HiGAN and IDInvert say `fc` and `const`."""
    return (
        Rule(f"mapping.dense{{i}}.{dense}.weight", "mapping.dense{i}.weight"),
        Rule("mapping.dense{i}.wscale.bias", "mapping.dense{i}.bias"),
        Rule(f"synthesis.layer0.{const}", "synthesis.layer0.const"),
        Rule("synthesis.layer{i}.conv.weight", "synthesis.layer{i}.weight"),
        Rule("synthesis.layer{i}.weight", "synthesis.layer{i}.weight", hwio_to_oihw),  # fused
        Rule(
            f"synthesis.layer{{i}}.epilogue.style_mod.dense.{dense}.weight",
            "synthesis.layer{i}.style.weight",
        ),
        Rule(
            "synthesis.layer{i}.epilogue.style_mod.dense.wscale.bias",
            "synthesis.layer{i}.style.bias",
        ),
        Rule(
            "synthesis.layer{i}.epilogue.apply_noise.weight",
            "synthesis.layer{i}.apply_noise.weight",
        ),
        Rule(
            "synthesis.layer{i}.epilogue.apply_noise.noise",
            "synthesis.layer{i}.apply_noise.noise",
        ),
        Rule("synthesis.layer{i}.epilogue.bias", "synthesis.layer{i}.bias"),
        Rule("synthesis.output{i}.conv.weight", "synthesis.output{i}.weight"),
    )


STYLEGAN_RULES = stylegan_rules(dense="linear", const="first_layer")
"""interfacegan StyleGAN -> genforce StyleGAN; `truncation.w_avg`, `synthesis.lod`, the
ToRGB `outputK.bias` and the blur kernels keep their names."""

STYLEGAN_IGNORED = {r"truncation\.truncation": None}
"""Present only in state dicts saved without interfacegan's converter: the per-layer psi
coefficients of the wrapper's truncation settings, not weights."""


def _is_state_dict(obj):
    return isinstance(obj, dict) and all(isinstance(k, str) for k in obj)


def is_interfacegan(obj):
    """Whether an unpickled checkpoint is an interfacegan (or HiGAN PGGAN) state dict."""
    if not _is_state_dict(obj):
        return False
    pggan = "layer0.conv.weight" in obj and "layer0.wscale.bias" in obj
    return pggan or "synthesis.layer0.first_layer" in obj or "mapping.dense0.linear.weight" in obj


def fused_blocks(state, prefix, num_blocks):
    """Blocks whose up-conv is fused, by key name: `{prefix}layer{2b}.weight` when fused,
    `{prefix}layer{2b}.conv.weight` otherwise."""
    return {b for b in range(1, num_blocks) if f"{prefix}layer{2 * b}.weight" in state}


def _fused_option(fused, num_blocks, options, source):
    """The fused_scale option among `options` ({value: fused block set}) that matches."""
    for value, blocks in options.items():
        if fused == blocks:
            return value
    raise CheckpointError(
        f"{source}: the up-convs of blocks {sorted(fused)} of {list(range(1, num_blocks))} are "
        "fused (stored as layerN.weight), which no fused_scale option builds"
    )


def stylegan_fused_scale(state, num_blocks, source):
    """StyleGAN's fused_scale from the key names: 'auto' when exactly the blocks from
    resolution 128 up are fused (the originals' default), else True or False."""
    auto = {b for b in range(1, num_blocks) if INIT_RES << b >= AUTO_FUSED_MIN_RES}
    options = {"auto": auto, True: set(range(1, num_blocks)), False: set()}
    fused = fused_blocks(state, "synthesis.", num_blocks)
    return _fused_option(fused, num_blocks, options, source)


def count_blocks(state, pattern):
    """Number of resolutions: how many indices the ToRGB `pattern` (one group) covers."""
    return len({m.group(1) for k in state if (m := re.fullmatch(pattern, k))})


def read(obj, source, **overrides):
    """Bundle fields of an interfacegan (or HiGAN PGGAN) file: dict(arch, generator, ...)."""
    if any(k.startswith(("mapping.", "synthesis.")) for k in obj):
        num_blocks = count_blocks(obj, r"synthesis\.output(\d+)\.conv\.weight")
        fixed = {"fused_scale": stylegan_fused_scale(obj, num_blocks, source)}
        return read_generator(
            "stylegan",
            obj,
            STYLEGAN_RULES,
            source,
            overrides,
            what="interfacegan StyleGAN",
            fixed=fixed,
            ignored=STYLEGAN_IGNORED,
        )
    num_blocks = count_blocks(obj, r"output(\d+)\.conv\.weight")
    options = {True: set(range(1, num_blocks)), False: set()}
    fused = _fused_option(fused_blocks(obj, "", num_blocks), num_blocks, options, source)
    fixed = {"fused_scale": fused}
    return read_generator(
        "pggan", obj, PGGAN_RULES, source, overrides, what="interfacegan PGGAN", fixed=fixed
    )
