"""NVIDIA TF pickles (PGGAN, StyleGAN, StyleGAN2), tested by construction: no official TF pickle
is available, so each genforce fixture is written out as a TF-style (G, D, Gs) pickle through
the inverse tables (by the standard pickler, as NVIDIA's code wrote them) and read back."""

import pickle
import re
import sys
import types

import numpy as np
import pytest

import jgan
from conftest import assert_parity, fixture_dir, fixture_io, nchw
from jgan.errors import CheckpointError
from jgan.ports import nvidia_tf
from jgan.ports.formats import read_checkpoint
from jgan.ports.torch_pickle import read_torch_file

FIXTURES = ["genforce_pggan_r32", "genforce_stylegan_r32", "genforce_stylegan2_r32"]
ARCHES = {"genforce_pggan_r32": "pggan", "genforce_stylegan_r32": "stylegan",
          "genforce_stylegan2_r32": "stylegan2"}  # fmt: skip
TF_MODULES = {"pggan": "tfutil", "stylegan": "dnnlib.tflib.network",
              "stylegan2": "dnnlib.tflib.network"}  # fmt: skip
OPTIONS = {
    "pggan": {"generator": {"fused": False}, "discriminator": {"fused": False}},
    "stylegan": {"generator": {"mapping_layers": 8, "label": False}, "discriminator": {}},
    "stylegan2": {
        "generator": {"mapping_layers": 8, "label": False, "architecture": "skip"},
        "discriminator": {"architecture": "resnet"},
    },
}
"""What the fixtures are (skip G and resnet D in StyleGAN2, no fused PGGAN convs)."""
STRUCTURAL = re.compile(r".*\.kernel")
"""genforce buffers that TF does not store (FIR and blur kernels): jgan rebuilds them."""


class Network:
    """Pickles like a TF Network: the class global, then BUILD with the state dict."""

    def __init__(self, state):
        self.state = state

    def __getstate__(self):
        return self.state


def network(name, variables, components=None):
    state = {
        "version": 4 if components is not None else 2,
        "name": name,
        "static_kwargs": {"resolution": 32},
        "build_module_src": "raise SystemExit('the embedded source must never run')",
        "build_func_name": name,
        "variables": list(variables.items()),
    }
    if components is not None:
        state["components"] = components
    return Network(state)


def tf_networks(arch, states):
    """(G, D, Gs) Networks of genforce state dicts, style generators split into components."""

    def generator(state, name):
        options = OPTIONS[arch]["generator"]
        table = nvidia_tf.genforce_to_tf(arch, "generator", 32, **options)
        tf_vars = nvidia_tf.to_tf(without_structural(state), table)
        if arch == "pggan":
            return network(name, tf_vars)
        mapping = {k: v for k, v in tf_vars.items() if k.startswith(("Dense", "LabelConcat"))}
        own = {"dlatent_avg": tf_vars["dlatent_avg"]}
        synthesis = {k: v for k, v in tf_vars.items() if k not in mapping and k not in own}
        components = {
            "mapping": network("G_mapping", mapping, {}),
            "synthesis": network("G_synthesis", synthesis, {}),
        }
        return network(name, own, components)

    table = nvidia_tf.genforce_to_tf(arch, "discriminator", 32, **OPTIONS[arch]["discriminator"])
    discriminator = network(
        "D", nvidia_tf.to_tf(without_structural(states["discriminator"]), table)
    )
    return (
        generator(states["generator"], "G"),
        discriminator,
        generator(states["generator_smooth"], "Gs"),
    )


def without_structural(state):
    return {k: v for k, v in state.items() if not STRUCTURAL.fullmatch(k)}


def genforce_states(name):
    return read_torch_file(fixture_dir(name) / f"{name}.pth")


def write_tf_pickle(path, arch, networks):
    """pickle.dump as NVIDIA's code ran it, with Network named as the TF module's class."""
    module_name = TF_MODULES[arch]
    protocol = 2 if arch == "pggan" else 4
    modules = {}
    for depth in range(1, module_name.count(".") + 2):
        modules[".".join(module_name.split(".")[:depth])] = types.ModuleType(module_name)
    modules[module_name].Network = Network
    with pytest.MonkeyPatch.context() as patch:
        for name, module in modules.items():
            patch.setitem(sys.modules, name, module)
        patch.setattr(Network, "__module__", module_name)
        path.write_bytes(pickle.dumps(networks, protocol=protocol))
    return path


@pytest.fixture(scope="module", params=FIXTURES)
def converted(request, tmp_path_factory):
    name = request.param
    arch = ARCHES[name]
    path = tmp_path_factory.mktemp(name) / "network-final.pkl"
    write_tf_pickle(path, arch, tf_networks(arch, genforce_states(name)))
    io, _ = fixture_io(name)
    return name, path, jgan.load(path), io


def test_round_trip_parity(converted):
    name, path, bundle, io = converted
    assert bundle.arch == ARCHES[name]
    assert nvidia_tf.is_tf_pickle(path)
    out = jgan.synthesize(bundle.generator, io["z"])
    assert_parity(nchw(out["image"]), io["image"], f"{name} image")
    raw = jgan.synthesize(bundle.generator_raw, io["z"])
    assert_parity(nchw(raw["image"]), io["image_generator"], f"{name} image_generator")
    if "w" in io:
        assert_parity(out["wp"], io["wp"], f"{name} wp")
    scores = jgan.discriminate(bundle.discriminator, np.transpose(io["image"], (0, 2, 3, 1)))
    assert_parity(scores, io["d_score"], f"{name} d_score")


@pytest.mark.parametrize("name", FIXTURES)
def test_tables_are_exact_inverses(name):
    arch = ARCHES[name]
    states = genforce_states(name)
    for role, state in (("generator", states["generator_smooth"]),
                        ("discriminator", states["discriminator"])):  # fmt: skip
        state = without_structural(state)
        table = nvidia_tf.genforce_to_tf(arch, role, 32, **OPTIONS[arch][role])
        assert set(table) == set(state), f"{name} {role}"
        assert len(set(table.values())) == len(table), "TF names are unique"
        tf_vars = nvidia_tf.to_tf(state, table)
        assert nvidia_tf.infer_options(arch, role, tf_vars) == OPTIONS[arch][role]
        back = nvidia_tf.to_genforce(tf_vars, table, name)
        assert set(back) == set(state)
        for key, value in state.items():
            np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_layouts():
    conv = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)  # H W I O
    genforce_conv = nvidia_tf._layout("8x8/Conv1/weight")[2](conv)
    assert genforce_conv.shape == (7, 5, 2, 3)
    assert genforce_conv[6, 4, 1, 2] == conv[1, 2, 4, 6]
    # PGGAN's first layer: a dense of z (in 2) to 3 x 4 x 4, as a spatially flipped 4x4 conv.
    dense = np.arange(2 * 48, dtype=np.float32).reshape(2, 48)
    first = nvidia_tf._layout("4x4/Dense/weight")[2](dense)
    assert first.shape == (3, 2, 4, 4)
    assert first[1, 0, 3, 3] == dense[0, 16 * 1 + 0]
    assert nvidia_tf._layout("4x4/Conv/mod_bias")[1] == "as is"
    assert nvidia_tf._layout("4x4/Conv/mod_weight")[1] == "dense"
    assert nvidia_tf._layout("8x8/Conv0_up/Noise/weight")[1] == "as is"


def test_static_kwargs_give_the_mapping_lr_multiplier(tmp_path):
    G, D, Gs = tf_networks("stylegan", genforce_states("genforce_stylegan_r32"))
    Gs.state["components"]["mapping"].state["static_kwargs"] = {"mapping_lrmul": 0.5}
    bundle = jgan.load(write_tf_pickle(tmp_path / "lrmul.pkl", "stylegan", (G, D, Gs)))
    assert bundle.generator.config["mapping_lr_mul"] == 0.5
    assert bundle.generator_raw.config["mapping_lr_mul"] == 0.5


def test_unknown_variable_is_named(tmp_path):
    name = "genforce_stylegan2_r32"
    G, D, Gs = tf_networks("stylegan2", genforce_states(name))
    D.state["variables"].append(("4x4/Mystery/weight", np.zeros((3, 3, 1, 1), np.float32)))
    path = write_tf_pickle(tmp_path / "extra.pkl", "stylegan2", (G, D, Gs))
    with pytest.raises(CheckpointError, match=r"unknown TF variable\(s\) \['4x4/Mystery/weight'\]"):
        jgan.load(path)


def test_missing_variable_is_named(tmp_path):
    G, D, Gs = tf_networks("pggan", genforce_states("genforce_pggan_r32"))
    Gs.state["variables"] = [p for p in Gs.state["variables"] if p[0] != "ToRGB_lod0/bias"]
    path = write_tf_pickle(tmp_path / "missing.pkl", "pggan", (G, D, Gs))
    with pytest.raises(CheckpointError, match=r"missing TF variable\(s\) \['ToRGB_lod0/bias'\]"):
        read_checkpoint(path)


def test_other_globals_are_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"\x80\x02cdnnlib.tflib.network\nNetwork\ncos\nsystem\n.")
    with pytest.raises(CheckpointError, match=r"the global 'os\.system', which is refused"):
        jgan.load(path)


def test_not_a_network_triple_is_refused(tmp_path):
    pair = (network("G", {}), network("D", {}))
    path = write_tf_pickle(tmp_path / "pair.pkl", "stylegan2", pair)
    with pytest.raises(CheckpointError, match=r"holds tuple, not the \(G, D, Gs\) tuple"):
        jgan.load(path)


def test_network_state_without_variables_is_refused(tmp_path):
    broken = network("G", {})
    del broken.state["variables"]
    path = write_tf_pickle(tmp_path / "broken.pkl", "pggan", (broken,) * 3)
    with pytest.raises(CheckpointError, match=r"a TF Network state has the keys .*without 'var"):
        jgan.load(path)


def test_fused_pggan_names():
    generator = nvidia_tf.genforce_to_tf("pggan", "generator", 16, fused=True)
    discriminator = nvidia_tf.genforce_to_tf("pggan", "discriminator", 16, fused=True)
    assert generator["layer2.weight"] == "8x8/Conv0_up/weight"
    assert generator["layer0.weight"] == "4x4/Dense/weight"
    assert generator["output2.weight"] == "ToRGB_lod0/weight"
    assert discriminator["layer1.weight"] == "16x16/Conv1_down/weight"
    assert discriminator["layer6.weight"] == "4x4/Dense1/weight"
    for role, table in (("generator", generator), ("discriminator", discriminator)):
        assert nvidia_tf.infer_options("pggan", role, table.values()) == {"fused": True}
