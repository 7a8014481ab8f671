"""HiGAN and mGANprior checkpoints (REFERENCE.md §2.3, format F2): the flat state dict of one
`StyleGANGeneratorNet` or `StyleGAN2GeneratorNet`, as `models/pretrain/pytorch/
<name>_generator.pth` (the `models/` code of higan and mganprior is byte-identical, so one
reader serves both). There is no 'generator' wrapper: a file is one generator. HiGAN's PGGAN
files are interfacegan's format, read by `jgan.ports.interfacegan`.

The keys are renamed to genforce's (F4), which jgan's modules use, by the tables below; then
the genforce ports infer the architecture from the shapes. Layout fixes:
- StyleGAN: the fused up-conv `synthesis.layerN.weight` is TF's (k, k, in, out).
- StyleGAN2: HiGAN's converter transposed only names containing 'conv' or 'fc', so every
  modulated conv `synthesis.layerN.weight` and ToRGB `synthesis.outputN.weight` is still TF's
  (k, k, in, out); they become OIHW.
The files omit `truncation.truncation` (derived from the wrapper's settings) and keep the
structural FIR kernels, which jgan checks and rebuilds. HiGAN's StyleGAN2 `resnet` generator
cannot run in the original (its forward calls `layer0` without a style), so it is not read.

The wrappers' conventions, which jgan leaves to the caller:
- z preprocessing: `preprocess` rescales z to norm sqrt(z_dim); the mapping pixel-normalises z
  first, so this changes nothing: pass raw z.
- truncation: the generators bake in the model settings' psi and layers (`DEFAULT_TRUNCATION`)
  and apply them to every Z or W code; jgan truncates only when asked.
"""

import numpy as np

from jgan.ports import interfacegan
from jgan.ports.keymap import Rule, hwio_to_oihw, read_generator

DEFAULT_TRUNCATION = {"stylegan": (0.7, 8), "stylegan2": (0.5, 18)}
"""(psi, layers) that HiGAN's wrappers apply to every generated code, per architecture."""

STYLEGAN_RULES = interfacegan.stylegan_rules(dense="fc", const="const")
"""HiGAN StyleGAN (and IDInvert's generator) -> genforce StyleGAN."""

STYLEGAN2_RULES = (
    Rule("mapping.dense{i}.fc.weight", "mapping.dense{i}.weight"),
    Rule("synthesis.layer{i}.weight", "synthesis.layer{i}.weight", hwio_to_oihw),
    Rule("synthesis.layer{i}.style.fc.weight", "synthesis.layer{i}.style.weight"),
    Rule("synthesis.output{i}.weight", "synthesis.output{i}.weight", hwio_to_oihw),
    Rule("synthesis.output{i}.style.fc.weight", "synthesis.output{i}.style.weight"),
)
"""HiGAN StyleGAN2 -> genforce StyleGAN2; the mapping biases, `early_layer.const`, the
per-layer `bias`, `noise`, `noise_strength`, `style.bias`, `truncation.w_avg` and the FIR
kernels keep their names."""


def _is_state_dict(obj):
    return isinstance(obj, dict) and all(isinstance(k, str) for k in obj)


def is_stylegan2(obj):
    """Whether `obj` is a HiGAN StyleGAN2 state dict."""
    return (
        _is_state_dict(obj)
        and "synthesis.early_layer.const" in obj
        and "mapping.dense0.fc.weight" in obj
    )


def is_stylegan(obj):
    """Whether `obj` has the HiGAN / IDInvert StyleGAN names (`fc`, `const`, `epilogue`)."""
    return (
        _is_state_dict(obj)
        and "synthesis.layer0.const" in obj
        and "synthesis.layer0.epilogue.bias" in obj
    )


def mapping_repeats_w(state):
    """Whether the mapping outputs one w (HiGAN) rather than one per layer (IDInvert)."""
    dense = [k for k in state if k.startswith("mapping.dense") and k.endswith(".fc.weight")]
    style = state.get("synthesis.layer0.epilogue.style_mod.dense.fc.weight")
    if not dense or style is None:
        return True  # the reader reports what is missing
    last = max(dense, key=lambda k: int(k.split(".")[1].removeprefix("dense")))
    return np.shape(state[last])[0] == np.shape(style)[1]


def is_higan(obj):
    """Whether an unpickled checkpoint is a HiGAN / mGANprior StyleGAN or StyleGAN2 file."""
    return is_stylegan2(obj) or (is_stylegan(obj) and mapping_repeats_w(obj))


def read_stylegan(state, source, overrides, *, what, fixed=None):
    """Bundle fields of a HiGAN-named StyleGAN file; `fixed` adds config values the format
    implies (IDInvert's final tanh)."""
    num_blocks = interfacegan.count_blocks(state, r"synthesis\.output(\d+)\.conv\.weight")
    fused = {"fused_scale": interfacegan.stylegan_fused_scale(state, num_blocks, source)}
    return read_generator(
        "stylegan",
        state,
        STYLEGAN_RULES,
        source,
        overrides,
        what=what,
        fixed={**fused, **(fixed or {})},
        ignored=interfacegan.STYLEGAN_IGNORED,
    )


def read(obj, source, **overrides):
    """Bundle fields of a HiGAN / mGANprior file: dict(arch, generator, ...)."""
    if is_stylegan2(obj):
        return read_generator(
            "stylegan2",
            obj,
            STYLEGAN2_RULES,
            source,
            overrides,
            what="HiGAN StyleGAN2",
            ignored=interfacegan.STYLEGAN_IGNORED,
        )
    return read_stylegan(obj, source, overrides, what="HiGAN StyleGAN")
