"""NVIDIA StyleGAN3 network pickles (NVlabs/stylegan3): `G_ema` and `G` become
`StyleGAN3Generator`s, `D` (StyleGAN2's discriminator) is converted by `jgan.ports.nvidia`.

The pickled `init_kwargs` are `StyleGAN3Generator`'s constructor arguments and the synthesis
state keys are its attribute paths, so a generator is built from its own arguments and loaded
as it is, apart from the mapping (`MAPPING_RULES`: jgan's shared mapping names its layers
`dense{i}` and keeps `w_avg` in `truncation`). The FIR filter buffers (`up_filter`,
`down_filter`) are not loaded: jgan designs them from the configuration, as the original does
at construction, and checks the file's against them.
"""

import inspect
import re

import numpy as np

from jgan.errors import CheckpointError, InputError
from jgan.models.registry import build_abstract, model_classes
from jgan.models.stylegan3 import StyleGAN3Generator
from jgan.ports import genforce, nvidia
from jgan.ports.keymap import Rule, source_names, translate
from jgan.ports.state import load_state

GENERATOR_CLASS = "training.networks_stylegan3.Generator"
MAPPING_RULES = (
    Rule("mapping.fc{i}.weight", "mapping.dense{i}.weight"),
    Rule("mapping.fc{i}.bias", "mapping.dense{i}.bias"),
    Rule("mapping.w_avg", "truncation.w_avg"),
)
"""NVIDIA's mapping keys -> jgan's (`mapping.embed.*` keeps its name)."""


def constructor_args():
    """Names of StyleGAN3Generator's constructor arguments (NVIDIA's init_kwargs)."""
    return set(inspect.signature(StyleGAN3Generator.__init__).parameters) - {"self", "rngs"}


def designed_filters(generator):
    """{state key: filter} of every FIR filter `generator` designed, for `load_state`'s check."""
    filters = {}
    for name in generator.synthesis.layer_names:
        layer = getattr(generator.synthesis, name)
        for kind in ("up_filter", "down_filter"):
            taps = getattr(layer, kind)
            if taps is not None:
                filters[re.escape(f"synthesis.{name}.{kind}")] = np.asarray(taps, np.float32)
    return filters


def read_generator(description, source, **overrides):
    """The StyleGAN3Generator of one `read_network_pickle` entry (`G_ema` or `G`).

    `overrides` replace init_kwargs (e.g. `conv_clamp=None`); they must be constructor
    arguments.
    """
    if description.get("class") != GENERATOR_CLASS:
        raise CheckpointError(
            f"{source}: a {description.get('class')!r}, not a StyleGAN3 generator "
            f"({GENERATOR_CLASS})"
        )
    known = constructor_args()
    unknown_overrides = sorted(set(overrides) - known)
    if unknown_overrides:
        raise InputError(
            f"unknown override(s) {unknown_overrides} for a StyleGAN3 generator; it takes "
            f"{sorted(known)}"
        )
    config = {**description["init_kwargs"], **overrides}
    unknown = sorted(set(config) - known)
    if unknown:
        raise CheckpointError(
            f"{source}: StyleGAN3 init_kwargs {unknown} are not arguments jgan knows "
            f"({sorted(known)})"
        )
    try:
        generator = build_abstract(StyleGAN3Generator, config)
    except InputError as error:
        raise CheckpointError(f"{source}: cannot build its StyleGAN3 generator: {error}") from error
    state = description["tensors"]
    try:
        return load_state(
            generator,
            translate(state, MAPPING_RULES),
            ignored=designed_filters(generator),
            source=source,
        )
    except CheckpointError as error:
        raise CheckpointError(source_names(str(error), MAPPING_RULES, state)) from error


def is_stylegan3(contents):
    """Whether the contents of an NVIDIA network pickle hold a StyleGAN3 generator."""
    networks = [contents.get(name) for name in ("G_ema", "G")]
    return any(isinstance(n, dict) and n.get("class") == GENERATOR_CLASS for n in networks)


def read(contents, source, **overrides):
    """Modules of an NVIDIA StyleGAN3 pickle: dict with arch, generator (`G_ema`, else `G`),
    generator_raw (`G` beside `G_ema`) and discriminator. `overrides` take the constructor
    argument names of StyleGAN3Generator and of the StyleGAN2 discriminator."""
    g_args = constructor_args()
    d_args = genforce.constructor_args(model_classes("stylegan3")[1])
    unknown = sorted(set(overrides) - g_args - d_args)
    if unknown:
        raise InputError(
            f"unknown override(s) {unknown} for an NVIDIA StyleGAN3 pickle; its generator takes "
            f"{sorted(g_args)} and its discriminator {sorted(d_args)}"
        )
    g_overrides = {k: v for k, v in overrides.items() if k in g_args}
    generators = {
        name: read_generator(contents[name], f"{source}[{name}]", **g_overrides)
        for name in ("G_ema", "G")
        if contents.get(name) is not None
    }
    if not generators:
        raise CheckpointError(f"{source}: the network pickle holds no generator (G_ema or G)")
    discriminator = contents.get("D")
    if discriminator is not None:
        found = discriminator.get("class") if isinstance(discriminator, dict) else None
        if found not in nvidia.DISCRIMINATORS:
            raise CheckpointError(
                f"{source}: D is {found or type(discriminator).__name__}; expected one of "
                f"{nvidia.DISCRIMINATORS}"
            )
        d_overrides = {k: v for k, v in overrides.items() if k in d_args}
        discriminator = nvidia.convert_discriminator(discriminator, f"{source}[D]", **d_overrides)
    return {
        "arch": "stylegan3",
        "generator": generators.get("G_ema", generators.get("G")),
        "generator_raw": generators["G"] if len(generators) == 2 else None,
        "discriminator": discriminator,
    }
