"""NVIDIA network pickles read as plain data: the real fixtures, and hand-built pickles whose
embedded source or nested storages try to run code."""

import numpy as np
import pytest
from test_torch_pickle import (
    ORDERED_DICT,
    Call,
    Global,
    Persistent,
    pickled,
    write_legacy,
    write_zip,
)

from conftest import fixture_dir, fixture_io
from jgan.errors import CheckpointError
from jgan.ports.nvidia_pickle import is_network_pickle, read_network_pickle

ADA = "nvidia_sg2ada_r32"
SG3 = "nvidia_sg3t_r32"


@pytest.fixture(scope="module")
def ada():
    return read_network_pickle(fixture_dir(ADA) / "network-snapshot-000000.pkl")


def test_stylegan2_ada_snapshot(ada):
    io, meta = fixture_io(ADA)
    assert set(ada) == {"training_set_kwargs", "G", "D", "G_ema", "augment_pipe"}
    assert ada["training_set_kwargs"]["resolution"] == 32
    for net in ("G", "G_ema", "D"):
        kind = "Discriminator" if net == "D" else "Generator"
        assert ada[net]["class"] == f"training.networks.{kind}"
        assert ada[net]["init_kwargs"] == meta["constructor_kwargs"]["D" if net == "D" else "G"]
        shapes = {r["name"]: tuple(r["shape"]) for r in meta["randomized"] if r["net"] == net}
        assert {k: v.shape for k, v in ada[net]["tensors"].items()} == shapes
    assert ada["augment_pipe"]["class"] == "training.augment.AugmentPipe"
    assert type(ada["G"]["init_kwargs"]["synthesis_kwargs"]) is dict  # EasyDict
    np.testing.assert_array_equal(ada["G_ema"]["tensors"]["mapping.w_avg"], io["w_avg"])
    weights = "mapping.fc0.weight"
    assert not np.array_equal(ada["G"]["tensors"][weights], ada["G_ema"]["tensors"][weights])
    block = ada["G_ema"]["modules"]["synthesis.b32"]
    assert block["class"] == "training.networks.SynthesisBlock"
    assert block["attributes"]["use_fp16"] is True and block["attributes"]["architecture"] == "skip"
    fc = ada["D"]["modules"]["b4.fc"]["attributes"]
    assert type(fc["weight_gain"]) is float and fc["weight_gain"] == pytest.approx(1 / 32)


def test_stylegan3_snapshot():
    contents = read_network_pickle(fixture_dir(SG3) / "network-snapshot-000000.pkl")
    assert contents["G_ema"]["class"] == "training.networks_stylegan3.Generator"
    assert contents["D"]["class"] == "training.networks_stylegan2.Discriminator"
    assert contents["G_ema"]["init_kwargs"]["channel_base"] == 1024  # flat, no synthesis_kwargs
    assert contents["G_ema"]["tensors"]["synthesis.input.transform"].shape == (3, 3)


def test_network_pickles_are_told_from_torch_save_files():
    assert is_network_pickle(fixture_dir(ADA) / "network-snapshot-000000.pkl")
    assert not is_network_pickle(
        fixture_dir("genforce_stylegan2_r32") / "genforce_stylegan2_r32.pth"
    )


# --- Hand-built pickles.

PERSISTENT = Global("torch_utils.persistence", "_reconstruct_persistent_obj")


def nested_storage(tmp_path, values, form):
    """torch.storage._load_from_bytes(<torch.save bytes of one float storage>), in the legacy
    form that torch writes there or the zip form."""
    pid = ("storage", Global("torch", "FloatStorage"), "0", "cpu", values.size)
    path = tmp_path / "nested"
    if form == "legacy":
        write_legacy(path, Persistent((*pid, None)), {"0": values})
    else:
        write_zip(path, Persistent(pid), {"0": values.tobytes()})
    return Call(Global("torch.storage", "_load_from_bytes"), (path.read_bytes(),))


def module(source, state):
    meta = {"type": "class", "version": 6, "module_src": source, "class_name": "Tiny"}
    return Call(PERSISTENT, ({**meta, "state": state},))


def write_network(tmp_path, entries):
    path = tmp_path / "network.pkl"
    path.write_bytes(pickled(entries))
    return path


@pytest.mark.parametrize("form", ["legacy", "zip"])
def test_embedded_source_is_never_run(tmp_path, form):
    sentinel = tmp_path / "executed"
    source = f"open({str(sentinel)!r}, 'w').close()\nclass SynthesisBlock(object): pass\n"
    values = np.arange(6, dtype="<f4")
    weight = Call(
        Global("torch._utils", "_rebuild_tensor_v2"),
        (nested_storage(tmp_path, values, form), 0, (2, 3), (3, 1), False, Call(ORDERED_DICT, ())),
    )
    gain = Call(
        Global("numpy.core.multiarray", "scalar"),
        (Call(Global("numpy", "dtype"), ("f8", False, True)), np.float64(0.5).tobytes()),
    )
    child = module(source, {"_parameters": {"weight": weight, "bias": None}, "gain": gain})
    kwargs = Call(Global("dnnlib.util", "EasyDict"), ())
    state = {"_modules": {"fc": child}, "_buffers": {}, "_init_kwargs": kwargs, "training": False}
    path = write_network(tmp_path, {"G": module(source, state), "step": 3})
    contents = read_network_pickle(path)
    assert not sentinel.exists()
    network = contents["G"]
    assert network["class"] == "training.networks.Tiny" and network["init_kwargs"] == {}
    np.testing.assert_array_equal(network["tensors"]["fc.weight"], values.reshape(2, 3))
    assert network["modules"]["fc"]["attributes"] == {"gain": 0.5}
    assert contents["step"] == 3


def hostile_nested(tmp_path, tree):
    """A nested torch.save file whose pickle is `tree`."""
    path = tmp_path / "hostile"
    write_legacy(path, tree, {})
    return Call(Global("torch.storage", "_load_from_bytes"), (path.read_bytes(),))


@pytest.mark.parametrize(
    "tree, message",
    [
        (Call(Global("os", "system"), ("touch executed",)), "'os.system', which is refused"),
        (Call(Global("torch.storage", "_load_from_bytes"), (b"",)), "_load_from_bytes"),
    ],
)
def test_hostile_nested_storages_are_refused(tmp_path, tree, message):
    path = write_network(tmp_path, {"G": hostile_nested(tmp_path, tree)})
    with pytest.raises(CheckpointError, match=message):
        read_network_pickle(path)


def test_bad_persistent_meta(tmp_path):
    path = write_network(tmp_path, {"G": Call(PERSISTENT, ({"type": "function"},))})
    with pytest.raises(CheckpointError, match="not a class with module_src and state"):
        read_network_pickle(path)


def test_not_a_dict(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickled([1, 2]))
    with pytest.raises(CheckpointError, match="not the dict of an NVIDIA network pickle"):
        read_network_pickle(path)
