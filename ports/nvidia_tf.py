"""NVIDIA's TensorFlow-era pickles of PGGAN, StyleGAN and StyleGAN2 (REFERENCE.md F6), read
without TensorFlow and without running anything from the file.

Such a pickle is a tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects (PGGAN's
older ``tfutil.Network``), each restored by ``__setstate__(state)`` from a dict with ``name``,
``static_kwargs``, ``build_module_src``, ``build_func_name``, ``variables`` (a list of
(TF name, numpy array) pairs) and, from StyleGAN on, ``components`` (sub-networks such as
``G_mapping`` and ``G_synthesis``, each with its own variables). Here a `TFNetwork` stand-in
only records that state. The variables of a network and its components are merged, without
the component prefix, as genforce's converters merge them.

`Gs` becomes the generator, `G` the raw generator and `D` the discriminator. The TF names
are renamed to genforce keys by the tables of `genforce_to_tf`, which follow genforce's own
``pth_to_tf_var_mapping`` (genforce/genforce models/*_generator.py, genforce/sefa
models/*_discriminator.py), with the layout conversions of genforce's converters
(REFERENCE.md §7.4):

    conv weight, HWIO                      -> OIHW, permute(3, 2, 0, 1)
    Dense{i}, Output, mod_weight, StyleMod -> permute(1, 0)
    PGGAN 4x4/Dense/weight (in, out*16)    -> view(in, -1, 4, 4).permute(1, 0, 2, 3).flip(2, 3)
    noise{i}, Noise/weight, LabelConcat, biases (mod_bias too: genforce adds the 1 at run
    time, as TF does after mod_bias), const, lod, dlatent_avg -> as they are

The genforce state dicts are then built by `jgan.ports.genforce.read`, whose config
inference works from the shapes; of the static_kwargs only `STATIC_KWARGS` are used (the
rest, such as StyleGAN's run-time truncation defaults, are not constructor arguments: jgan,
like genforce, truncates only when asked). StyleGAN2 resnet generators name the skip convs
``synthesis.skip_layer{k}``, jgan's name (genforce's own resnet generator is broken).

Unverified: no official TF pickle was available here. The tables and layouts follow
genforce's converters, and the tests check them by round trip (genforce fixtures written out
as TF-style pickles by the inverse tables), not against a file NVIDIA released.
"""

import os
import re

import numpy as np

from jgan.errors import CheckpointError
from jgan.ports import genforce
from jgan.ports.torch_pickle import read_pickle_file

__all__ = [
    "TF_NETWORK_GLOBALS",
    "TFNetwork",
    "detect_arch",
    "LAYOUTS",
    "genforce_to_tf",
    "infer_options",
    "is_tf_pickle",
    "is_tf_networks",
    "network_variables",
    "read",
    "read_tf_pickle",
    "static_kwargs",
    "to_genforce",
    "to_tf",
]

INIT_RES = 4
ROLES = ("generator_raw", "discriminator", "generator")
"""What each entry of the (G, D, Gs) tuple becomes."""
STATIC_KWARGS = {"mapping_lrmul": "mapping_lr_mul"}
"""TF build kwargs (a generator's static_kwargs) -> jgan constructor arguments: what the
variable shapes cannot tell (widths, depths and resolution come from the shapes)."""
_GENFORCE_NAMES = {"generator_raw": "generator", "discriminator": "discriminator",
                   "generator": "generator_smooth"}  # fmt: skip


class TFNetwork(dict):
    """Stand-in for dnnlib.tflib.network.Network / tfutil.Network: the pickled state, as a
    dict; nothing of the embedded build source is run."""

    def __setstate__(self, state):
        if not (isinstance(state, dict) and isinstance(state.get("variables"), (list, tuple))):
            keys = sorted(map(str, state))[:8] if isinstance(state, dict) else type(state)
            raise ValueError(f"a TF Network state has the keys {keys}, without 'variables'")
        self.update(state)


TF_NETWORK_GLOBALS = {
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("tfutil", "Network"): TFNetwork,
}
"""The globals of a TF pickle besides the numpy ones the reader allows anyway."""


def is_tf_pickle(path):
    """Whether the file is a plain pickle (protocol 2+) that starts with a TF Network."""
    try:
        with open(path, "rb") as file:
            head = file.read(64)
    except OSError:
        return False
    if len(head) < 3 or head[0] != 0x80 or head[1] < 2:
        return False
    return any(module.encode() in head for module, _ in TF_NETWORK_GLOBALS)


def is_tf_networks(contents):
    """Whether unpickled contents are the (G, D, Gs) tuple of TF Networks."""
    return (
        isinstance(contents, tuple)
        and len(contents) == 3
        and all(isinstance(network, TFNetwork) for network in contents)
    )


def read_tf_pickle(path):
    """The (G, D, Gs) tuple of a TF pickle, each a `TFNetwork` (its pickled state)."""
    path = os.fspath(path)
    contents = read_pickle_file(path, extra_globals=TF_NETWORK_GLOBALS)
    if not is_tf_networks(contents):
        raise CheckpointError(
            f"{path} holds {type(contents).__name__}, not the (G, D, Gs) tuple of TF Networks "
            "of an NVIDIA PGGAN / StyleGAN / StyleGAN2 pickle"
        )
    return contents


def network_variables(network, source):
    """{TF name: array} of a network and its components (merged without their prefix)."""
    found = {}

    def collect(node, where):
        for pair in node.get("variables") or ():
            if not (
                isinstance(pair, tuple)
                and len(pair) == 2
                and isinstance(pair[0], str)
                and isinstance(pair[1], (np.ndarray, np.generic))
            ):
                raise CheckpointError(f"{where}: a variable is not a (name, array) pair")
            name, value = pair
            if name in found:
                raise CheckpointError(f"{where}: the variable {name} occurs twice")
            found[name] = np.asarray(value)
        for key, component in (node.get("components") or {}).items():
            if not isinstance(component, TFNetwork):
                raise CheckpointError(f"{where}: component {key!r} is not a TF Network")
            collect(component, f"{where}/{component.get('name', key)}")

    collect(network, source)
    return found


def static_kwargs(network):
    """The static_kwargs of a network and its components, merged (the network's own win)."""
    merged = {}
    for component in (network.get("components") or {}).values():
        merged.update(static_kwargs(component))
    own = network.get("static_kwargs")
    merged.update(own if isinstance(own, dict) else {})
    return merged


def detect_arch(names):
    """'pggan', 'stylegan' or 'stylegan2' from the variable names of a generator."""
    names = set(names)
    if "4x4/Const/const" in names and any(n.endswith("/mod_weight") for n in names):
        return "stylegan2"
    if any(n.endswith("/StyleMod/weight") for n in names):
        return "stylegan"
    if "4x4/Dense/weight" in names and any(n.startswith("ToRGB_lod") for n in names):
        return "pggan"
    raise CheckpointError(
        "unknown TF generator: no StyleGAN2 (4x4/Const/const, */mod_weight), StyleGAN "
        "(*/StyleMod/weight) or PGGAN (4x4/Dense/weight, ToRGB_lod*) variables among "
        f"{sorted(names)[:8]}..."
    )


def _resolution(names):
    sizes = [int(m.group(1)) for n in names if (m := re.match(r"(\d+)x\1/", n))]
    if not sizes:
        raise CheckpointError(f"no {{res}}x{{res}}/ variables among {sorted(names)[:8]}...")
    return max(sizes)


def _log2(value):
    return int(value).bit_length() - 1


def _blocks(resolution):
    """(block index, resolution) from 4x4 up."""
    return [(b, INIT_RES << b) for b in range(_log2(resolution) - _log2(INIT_RES) + 1)]


def _layer(key, tf_layer):
    return {f"{key}.weight": f"{tf_layer}/weight", f"{key}.bias": f"{tf_layer}/bias"}


def _mapping(options):
    table = {"truncation.w_avg": "dlatent_avg"}
    for i in range(options["mapping_layers"]):
        table.update(_layer(f"mapping.dense{i}", f"Dense{i}"))
    if options["label"]:
        table["mapping.label_weight"] = "LabelConcat/weight"
    return table


def _pggan_generator(resolution, options):
    table = {"lod": "lod"}
    for b, res in _blocks(resolution):
        first = "Dense" if res == INIT_RES else ("Conv0_up" if options["fused"] else "Conv0")
        second = "Conv" if res == INIT_RES else "Conv1"
        table.update(_layer(f"layer{2 * b}", f"{res}x{res}/{first}"))
        table.update(_layer(f"layer{2 * b + 1}", f"{res}x{res}/{second}"))
        table.update(_layer(f"output{b}", f"ToRGB_lod{_log2(resolution // res)}"))
    return table


def _stylegan_generator(resolution, options):
    table = {**_mapping(options), "synthesis.lod": "lod"}
    for b, res in _blocks(resolution):
        for index, tf_layer in ((2 * b, "Const" if b == 0 else "Conv0_up"),
                                (2 * b + 1, "Conv" if b == 0 else "Conv1")):  # fmt: skip
            key, tf_name = f"synthesis.layer{index}", f"{res}x{res}/{tf_layer}"
            if tf_layer == "Const":
                table[f"{key}.const"] = f"{tf_name}/const"
                table[f"{key}.bias"] = f"{tf_name}/bias"
            else:
                table.update(_layer(key, tf_name))
            table.update(_layer(f"{key}.style", f"{tf_name}/StyleMod"))
            table[f"{key}.apply_noise.weight"] = f"{tf_name}/Noise/weight"
            table[f"{key}.apply_noise.noise"] = f"noise{index}"
        table.update(_layer(f"synthesis.output{b}", f"ToRGB_lod{_log2(resolution // res)}"))
    return table


def _stylegan2_generator(resolution, options):
    table = {**_mapping(options), "synthesis.early_layer.const": "4x4/Const/const"}
    last = len(_blocks(resolution)) - 1
    for b, res in _blocks(resolution):
        layers = [(2 * b, "Conv" if b == 0 else "Conv1")]
        if b > 0:
            layers.insert(0, (2 * b - 1, "Conv0_up"))
            if options["architecture"] == "resnet":
                table[f"synthesis.skip_layer{b - 1}.weight"] = f"{res}x{res}/Skip/weight"
        for index, tf_layer in layers:
            key, tf_name = f"synthesis.layer{index}", f"{res}x{res}/{tf_layer}"
            table.update(_layer(key, tf_name))
            table[f"{key}.style.weight"] = f"{tf_name}/mod_weight"
            table[f"{key}.style.bias"] = f"{tf_name}/mod_bias"
            table[f"{key}.noise_strength"] = f"{tf_name}/noise_strength"
            table[f"{key}.noise"] = f"noise{index}"
        if b == last or options["architecture"] == "skip":
            key, tf_name = f"synthesis.output{b}", f"{res}x{res}/ToRGB"
            table.update(_layer(key, tf_name))
            table[f"{key}.style.weight"] = f"{tf_name}/mod_weight"
            table[f"{key}.style.bias"] = f"{tf_name}/mod_bias"
    return table


def _discriminator(arch, resolution, options):
    """PGGAN / StyleGAN (FromRGB_lod{k}, lod) and StyleGAN2 ({res}x{res}/FromRGB, Output)."""
    table = {} if arch == "stylegan2" else {"lod": "lod"}
    blocks = _blocks(resolution)[::-1]
    for b, (_, res) in enumerate(blocks):
        if arch != "stylegan2":
            table.update(_layer(f"input{b}", f"FromRGB_lod{b}"))
        elif b == 0 or options["architecture"] == "skip":
            table.update(_layer(f"input{b}", f"{res}x{res}/FromRGB"))
        if res == INIT_RES:
            first, second = "Conv", "Dense0"
        else:
            down = arch != "pggan" or options["fused"]
            first, second = "Conv0", "Conv1_down" if down else "Conv1"
            if arch == "stylegan2" and options["architecture"] == "resnet":
                table[f"skip_layer{b}.weight"] = f"{res}x{res}/Skip/weight"
        table.update(_layer(f"layer{2 * b}", f"{res}x{res}/{first}"))
        table.update(_layer(f"layer{2 * b + 1}", f"{res}x{res}/{second}"))
    final = "Output" if arch == "stylegan2" else f"{INIT_RES}x{INIT_RES}/Dense1"
    table.update(_layer(f"layer{2 * len(blocks)}", final))
    return table


_GENERATOR_TABLES = {
    "pggan": _pggan_generator,
    "stylegan": _stylegan_generator,
    "stylegan2": _stylegan2_generator,
}


def genforce_to_tf(arch, role, resolution, **options):
    """{genforce key: TF variable name} of a network, as genforce's pth_to_tf_var_mapping.

    `role` is 'generator' or 'discriminator'; `options`: mapping_layers and label (style
    generators), fused (PGGAN: Conv0_up / Conv1_down), architecture (StyleGAN2: 'skip',
    'resnet' or 'origin').
    """
    if role == "generator":
        return _GENERATOR_TABLES[arch](resolution, options)
    return _discriminator(arch, resolution, options)


def infer_options(arch, role, names):
    """The `genforce_to_tf` options of one network, told by its TF variable names."""
    names = set(names)
    options = {}
    if arch == "pggan":
        up = ("/Conv0_up/weight", "/Conv1_down/weight")
        options["fused"] = any(n.endswith(up) for n in names)
    if arch != "pggan" and role == "generator":
        options["mapping_layers"] = sum(bool(re.fullmatch(r"Dense\d+/weight", n)) for n in names)
        options["label"] = "LabelConcat/weight" in names
    if arch == "stylegan2":
        rgb = "ToRGB" if role == "generator" else "FromRGB"
        if any(n.endswith("/Skip/weight") for n in names):
            options["architecture"] = "resnet"
        elif sum(n.endswith(f"/{rgb}/weight") for n in names) > 1:
            options["architecture"] = "skip"
        else:
            options["architecture"] = "origin"
    return options


# Layout conversions, TF -> genforce, chosen by the TF name (first match), and their inverses.
def _first_dense(value):
    """PGGAN/StyleGAN 4x4/Dense (in, out*16) -> the flipped 4x4 conv (out, in, 4, 4)."""
    grid = value.reshape(value.shape[0], -1, INIT_RES, INIT_RES).transpose(1, 0, 2, 3)
    return grid[:, :, ::-1, ::-1]


def _first_dense_inverse(value):
    return value[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(value.shape[1], -1)


LAYOUTS = (
    (r"LabelConcat/weight|.*/Noise/weight", "as is", lambda v: v, lambda v: v, None),
    (r"4x4/Dense/weight", "4x4 dense", _first_dense, _first_dense_inverse, 2),
    (r"(.*/)?(Dense\d+|Output|mod_weight|StyleMod/weight)(/weight)?", "dense",
     np.transpose, np.transpose, 2),
    (r".*/weight", "conv", lambda v: v.transpose(3, 2, 0, 1), lambda v: v.transpose(2, 3, 1, 0),
     4),
    (r".*", "as is", lambda v: v, lambda v: v, None),
)  # fmt: skip
"""(TF name pattern, layout, TF -> genforce, genforce -> TF, rank of the TF array)."""


def _layout(tf_name):
    return next(layout for layout in LAYOUTS if re.fullmatch(layout[0], tf_name))


def to_genforce(variables, table, what):
    """The genforce state dict of one network's {TF name: array}, by `table` (genforce key
    -> TF name); unknown and missing TF names are reported by name."""
    by_tf_name = {tf_name: key for key, tf_name in table.items()}
    unknown = sorted(set(variables) - set(by_tf_name))
    missing = sorted(set(by_tf_name) - set(variables))
    if unknown or missing:
        problems = [f"unknown TF variable(s) {unknown}"] if unknown else []
        problems += [f"missing TF variable(s) {missing}"] if missing else []
        raise CheckpointError(f"{what}: {'; '.join(problems)}")
    state = {}
    for tf_name, value in variables.items():
        _, layout, forward, _, rank = _layout(tf_name)
        if rank is not None and value.ndim != rank:
            raise CheckpointError(
                f"{what}: {tf_name} has shape {value.shape}; a {layout} weight has {rank} axes"
            )
        state[by_tf_name[tf_name]] = np.array(forward(value), order="C")
    return state


def to_tf(state, table):
    """The inverse of `to_genforce`: {TF name: array} of a genforce state dict (for tests);
    every key of `state` must be in `table`."""
    unknown = sorted(set(state) - set(table))
    if unknown:
        raise CheckpointError(f"genforce keys without a TF name: {unknown}")
    return {
        table[key]: np.array(_layout(table[key])[3](np.asarray(value)), order="C")
        for key, value in state.items()
    }


def read(contents, source, **overrides):
    """Modules of a TF pickle: dict with arch, generator (Gs), generator_raw (G),
    discriminator (D), built by the genforce reader; `overrides` as for genforce files."""
    networks = dict(zip(ROLES, contents, strict=True))
    variables = {
        role: network_variables(network, f"{source}[{role}]") for role, network in networks.items()
    }
    arch = overrides.pop("arch", None) or detect_arch(variables["generator"])
    resolution = _resolution(variables["generator"])
    states, fused = {}, set()
    for role, found in variables.items():
        kind = "discriminator" if role == "discriminator" else "generator"
        options = infer_options(arch, kind, found)
        table = genforce_to_tf(arch, kind, resolution, **options)
        what = f"{source}[{role}] ({arch} {kind} at resolution {resolution})"
        states[_GENFORCE_NAMES[role]] = to_genforce(found, table, what)
        fused.add(options.get("fused"))
    if arch == "pggan" and len(fused) == 1:
        overrides.setdefault("fused_scale", fused.pop())
    if arch != "pggan":
        for name, value in static_kwargs(networks["generator"]).items():
            if name in STATIC_KWARGS:
                overrides.setdefault(STATIC_KWARGS[name], value)
    return genforce.read(states, source, arch=arch, **overrides)
