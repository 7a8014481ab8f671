"""Renaming the flat state dicts of the older genforce-lineage formats (InterFaceGAN, HiGAN /
mGANprior, IDInvert: REFERENCE.md F1-F3) to the genforce keys (F4) that jgan's modules use.

A rule reads like the two names it relates, with `{i}` standing for a layer index, plus an
optional layout fix for the tensor (TF-layout weights that the original converters kept).
The rules are kept in both directions, so errors found on the translated state (missing or
mis-shaped tensors) name the tensors as the user's file calls them.
"""

import re
from typing import NamedTuple

import numpy as np

from jgan.errors import CheckpointError, InputError
from jgan.models.registry import model_classes
from jgan.ports import genforce, genforce_pggan, genforce_stylegan, genforce_stylegan2

PORTS = {"pggan": genforce_pggan, "stylegan": genforce_stylegan, "stylegan2": genforce_stylegan2}
"""Config inference and ignorable buffers of the genforce state dicts, per architecture."""


def hwio_to_oihw(value):
    """TF conv layout (kh, kw, in, out) -> PyTorch's (out, in, kh, kw)."""
    return np.transpose(value, (3, 2, 0, 1))


def hwio_to_iohw(value):
    """TF-derived (kh, kw, in, out) -> PyTorch's conv-transpose layout (in, out, kh, kw)."""
    return np.transpose(value, (2, 3, 0, 1))


def _pattern(name):
    return re.escape(name).replace(r"\{i\}", r"(?P<i>\d+)")


class Rule(NamedTuple):
    """`source` name (in the file) -> `target` name (genforce's), `layout` fix or None."""

    source: str
    target: str
    layout: object = None

    def rename(self, key):
        """The target name of `key`, or None when the rule does not apply."""
        match = re.fullmatch(_pattern(self.source), key)
        return None if match is None else self.target.format(**match.groupdict())

    def source_of(self, key):
        """The source name of target name `key`, or None when the rule does not apply."""
        match = re.fullmatch(_pattern(self.target), key)
        return None if match is None else self.source.format(**match.groupdict())


def translate(state, rules):
    """{genforce key: array} of a flat state dict; the first matching rule renames a key (and
    fixes its layout), keys no rule matches keep their name."""
    tensors = {}
    for key, value in state.items():
        rule = next((r for r in rules if r.rename(key) is not None), None)
        if rule is None:
            tensors[key] = value
            continue
        value = np.asarray(value)
        tensors[rule.rename(key)] = value if rule.layout is None else rule.layout(value)
    return tensors


def source_names(message, rules, state):
    """`message` with every genforce key it quotes replaced by the file's name for it (the
    first rule whose source name is present in `state`, else the first that applies)."""

    def original(match):
        key = match.group(0)
        candidates = [s for r in rules if (s := r.source_of(key)) is not None]
        present = [s for s in candidates if s in state]
        return (present or candidates or [key])[0]

    return re.sub(r"[A-Za-z_][\w]*(?:\.\w+)+", original, message)


def shape(state, key, what):
    """Shape of `state[key]`, or a CheckpointError naming the missing tensor."""
    if key not in state:
        raise CheckpointError(f"{what}: tensor '{key}' is missing")
    return tuple(np.shape(state[key]))


def check_overrides(cls, overrides, what):
    """InputError for overrides that are not constructor arguments of `cls`."""
    unknown = set(overrides) - genforce.constructor_args(cls)
    if unknown:
        raise InputError(
            f"unknown override(s) {sorted(unknown)} for {what}; it takes "
            f"{sorted(genforce.constructor_args(cls))}"
        )


def read_generator(arch, state, rules, source, overrides, *, what, fixed=None, ignored=None):
    """The bundle fields of a file holding one `arch` generator in a renamed format.

    `state` is translated with `rules`; the config is inferred from the genforce keys, then
    `fixed` (what the format itself tells, e.g. fused layers by their key names) and then the
    user's `overrides` (constructor argument names) are applied. `ignored` adds source tensors
    that carry nothing jgan needs (on top of the genforce port's rebuilt buffers).
    """
    G = model_classes(arch)[0]
    check_overrides(G, overrides, what)
    tensors = translate(state, rules)
    port = PORTS[arch]
    hints = {"label_size": overrides.get("label_size", 0)} if arch == "pggan" else {}
    label = f"{source} ({what})"
    try:
        inferred = port.infer_generator_config(tensors, **hints)
    except CheckpointError as error:
        message = source_names(str(error), rules, state)
        raise CheckpointError(f"{label}: {message}") from error
    config = {**inferred, **(fixed or {}), **overrides}
    ignored = {**port.GENERATOR_IGNORED, **(ignored or {})}
    try:
        generator = genforce.build(arch, "generator", config, tensors, ignored, label)
    except CheckpointError as error:
        raise CheckpointError(source_names(str(error), rules, state)) from error
    return {"arch": arch, "generator": generator, "generator_raw": None, "discriminator": None}
