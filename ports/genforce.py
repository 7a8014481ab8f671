"""genforce / sefa / fairgen checkpoints (REFERENCE.md F4 and F5).

F4, the model zoo: `{'generator', 'discriminator', 'generator_smooth'}` of plain state dicts.
F5, genforce training checkpoints: the same dicts under `'models'` (keys maybe prefixed with
`module.`), beside `running_metadata`, `optimizers` and `learning_rates`, which hold no model
weights and are ignored. The architecture and its constructor arguments are inferred from the
key sets and tensor shapes; `overrides` (the original constructor argument names) settle what
the file cannot tell.
"""

import inspect

from jgan.errors import CheckpointError, InputError
from jgan.models.registry import build_abstract, model_classes
from jgan.ports import genforce_pggan, genforce_stylegan, genforce_stylegan2
from jgan.ports.state import load_state

MODEL_NAMES = ("generator", "discriminator", "generator_smooth")
TRAINING_ONLY = ("running_metadata", "optimizers", "learning_rates")
_PORTS = {
    "pggan": genforce_pggan,
    "stylegan": genforce_stylegan,
    "stylegan2": genforce_stylegan2,
}


def is_genforce(obj):
    """Whether an unpickled checkpoint has the genforce container layout."""
    if not isinstance(obj, dict):
        return False
    models = obj.get("models", obj)
    return isinstance(models, dict) and any(name in models for name in MODEL_NAMES)


def _state_dicts(obj, source):
    models = obj["models"] if "models" in obj else obj
    extra = set(obj) - set(MODEL_NAMES) - {"models", *TRAINING_ONLY}
    unknown = set(models) - set(MODEL_NAMES)
    if extra or unknown:
        raise CheckpointError(
            f"{source}: genforce checkpoint with entries jgan cannot read: "
            f"{sorted(extra | unknown)} (it reads {MODEL_NAMES})"
        )
    states = {}
    for name, state in models.items():
        if not isinstance(state, dict):
            raise CheckpointError(f"{source}: '{name}' is not a state dict")
        states[name] = {k.removeprefix("module."): v for k, v in state.items()}
    return states


def detect_arch(generator_state):
    """'pggan', 'stylegan' or 'stylegan2' from a genforce generator's key set."""
    keys = set(generator_state)
    if "synthesis.early_layer.const" in keys or any(k.endswith("noise_strength") for k in keys):
        return "stylegan2"
    if any(k.startswith("mapping.") for k in keys):
        return "stylegan"
    if "layer0.weight" in keys and any(k.startswith("output") for k in keys):
        return "pggan"
    raise CheckpointError(
        "unknown genforce generator: no StyleGAN2 (early_layer.const), StyleGAN (mapping.*) "
        f"or PGGAN (layer0.weight, output*) keys among {sorted(keys)[:8]}..."
    )


def constructor_args(cls):
    """Names of the constructor arguments of a model class."""
    return set(inspect.signature(cls.__init__).parameters) - {"self", "rngs"}


def _apply_overrides(cls, config, overrides):
    return {**config, **{k: v for k, v in overrides.items() if k in constructor_args(cls)}}


def build(arch, role, config, state, ignored, source):
    """Builds the `role` ('generator' / 'discriminator') module of `arch` and loads `state`."""
    cls = model_classes(arch)[0 if role == "generator" else 1]
    try:
        module = build_abstract(cls, config)
    except InputError as error:
        raise CheckpointError(f"{source}: cannot build the {arch} {role}: {error}") from error
    return load_state(module, state, ignored=ignored, source=f"{source} [{role}]")


def read(obj, source, **overrides):
    """Modules of a genforce checkpoint: dict with arch, generator, generator_raw, discriminator.

    `generator` is the smoothed (EMA) generator where the file has one, else the raw one.
    """
    states = _state_dicts(obj, source)
    raw, smooth = states.get("generator"), states.get("generator_smooth")
    reference = smooth if smooth is not None else raw
    if reference is None:
        raise CheckpointError(f"{source}: the genforce checkpoint holds no generator")
    arch = overrides.pop("arch", None) or detect_arch(reference)
    port = _PORTS[arch]
    G, D = model_classes(arch)
    unknown = set(overrides) - constructor_args(G) - constructor_args(D)
    if unknown:
        raise InputError(
            f"unknown override(s) {sorted(unknown)} for a {arch} checkpoint; its generator "
            f"takes {sorted(constructor_args(G))} and its discriminator "
            f"{sorted(constructor_args(D))}"
        )
    d_state = states.get("discriminator")
    d_config = None
    if d_state is not None:
        d_config = _apply_overrides(D, port.infer_discriminator_config(d_state), overrides)
    hints = {}
    if arch == "pggan":
        # PGGAN's first layer takes z and the label concatenated: only the discriminator's
        # label logits (or an override) tell the two sizes apart.
        hints["label_size"] = overrides.get("label_size", (d_config or {}).get("label_size", 0))
    g_config = _apply_overrides(G, port.infer_generator_config(reference, **hints), overrides)
    result = {"arch": arch, "generator_raw": None, "discriminator": None}
    result["generator"] = build(
        arch, "generator", g_config, reference, port.GENERATOR_IGNORED, source
    )
    if smooth is not None and raw is not None:
        result["generator_raw"] = build(
            arch, "generator", g_config, raw, port.GENERATOR_IGNORED, source
        )
    if d_state is not None:
        result["discriminator"] = build(
            arch, "discriminator", d_config, d_state, port.DISCRIMINATOR_IGNORED, source
        )
    return result
