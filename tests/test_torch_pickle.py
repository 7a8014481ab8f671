"""The torch-free checkpoint reader: real fixture files, hand-built files of both torch.save
formats, and bad or malicious files, which must raise CheckpointError and run nothing."""

import argparse
import collections
import pickle
import struct
import types
import zipfile
from typing import NamedTuple

import ml_dtypes
import numpy as np
import pytest

from conftest import FIXTURES, fixture_dir
from jgan.errors import CheckpointError
from jgan.ports import torch_pickle
from jgan.ports.torch_pickle import read_torch_file

# --- A tiny pickle writer: torch is not installed, so globals such as torch.FloatStorage are
# --- spelled as opcodes instead of being pickled from real objects.


class Global(NamedTuple):
    module: str
    name: str


class Call(NamedTuple):
    """function(*args), pickled as REDUCE."""

    function: object
    args: tuple


class Persistent(NamedTuple):
    """A persistent id, pickled as BINPERSID."""

    pid: tuple


class Build(NamedTuple):
    """obj with BUILD(state) applied."""

    obj: object
    state: object


class Remember(NamedTuple):
    """obj, also stored in the memo under `slot` (BINPUT); Recall(slot) pushes it again."""

    slot: int
    obj: object


class Recall(NamedTuple):
    slot: int


class Spliced(NamedTuple):
    """An expression taken from a standard-library pickle (PROTO and STOP cut off); its memo
    slots count from 0, so Remember uses high slots."""

    opcodes: bytes


def spliced(value):
    return Spliced(pickle.dumps(value, protocol=2)[2:-1])


def expression(obj) -> bytes:
    """Opcodes that push `obj`."""
    if isinstance(obj, Global):
        return b"c" + f"{obj.module}\n{obj.name}\n".encode()
    if isinstance(obj, Call):
        return expression(obj.function) + expression(tuple(obj.args)) + b"R"
    if isinstance(obj, Persistent):
        return expression(obj.pid) + b"Q"
    if isinstance(obj, Build):
        return expression(obj.obj) + expression(obj.state) + b"b"
    if isinstance(obj, Remember):
        return expression(obj.obj) + b"q" + bytes([obj.slot])
    if isinstance(obj, Recall):
        return b"h" + bytes([obj.slot])
    if isinstance(obj, Spliced):
        return obj.opcodes
    if type(obj) is tuple:
        return b"(" + b"".join(expression(item) for item in obj) + b"t"
    if type(obj) is list:
        return b"(" + b"".join(expression(item) for item in obj) + b"l"
    if type(obj) is dict:
        return b"(" + b"".join(expression(k) + expression(v) for k, v in obj.items()) + b"d"
    return pickle.dumps(obj, protocol=3)[2:-1]  # str, int, float, bool, None, bytes


def pickled(obj) -> bytes:
    return b"\x80\x02" + expression(obj) + b"."


ORDERED_DICT = Global("collections", "OrderedDict")


def ordered_dict(items):
    return Call(ORDERED_DICT, ([tuple(item) for item in items.items()],))


def storage(key, storage_class="FloatStorage", numel=1, location="cpu"):
    """A zip-format storage persistent id."""
    return ("storage", Global("torch", storage_class), key, location, numel)


def tensor(pid, offset, size, stride):
    """torch._utils._rebuild_tensor_v2 of the storage `pid`."""
    args = (Persistent(pid), offset, tuple(size), tuple(stride), False, Call(ORDERED_DICT, ()))
    return Call(Global("torch._utils", "_rebuild_tensor_v2"), args)


def write_zip(path, tree, records, prefix="archive", byteorder="little"):
    """A torch.save zip archive: <prefix>/data.pkl, <prefix>/data/<key>, <prefix>/byteorder."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{prefix}/data.pkl", pickled(tree))
        archive.writestr(f"{prefix}/byteorder", byteorder)
        for key, data in records.items():
            archive.writestr(f"{prefix}/data/{key}", data)
        archive.writestr(f"{prefix}/version", "3\n")
    return path


def write_legacy(path, tree, records):
    """A legacy torch.save stream; `records` maps storage keys to little-endian arrays."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    parts = [
        pickle.dumps(torch_pickle.LEGACY_MAGIC_NUMBER, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps(sys_info, protocol=2),
        pickled(tree),
        pickle.dumps(list(records), protocol=2),
    ]
    for values in records.values():
        parts += [struct.pack("<q", values.size), values.tobytes()]
    path.write_bytes(b"".join(parts))
    return path


def assert_owned_c_array(array, dtype):
    assert isinstance(array, np.ndarray) and array.dtype == dtype
    assert array.flags.c_contiguous and array.flags.owndata and array.flags.writeable
    assert array.dtype.isnative


# --- Real checkpoints.

STYLEGAN2 = "genforce_stylegan2_r32"


@pytest.fixture(scope="module")
def stylegan2_path():
    return fixture_dir(STYLEGAN2) / f"{STYLEGAN2}.pth"


def count_arrays(obj):
    if isinstance(obj, np.ndarray):
        return 1
    if isinstance(obj, dict):
        return sum(count_arrays(value) for value in obj.values())
    return 0


def test_genforce_stylegan2(stylegan2_path):
    contents = read_torch_file(stylegan2_path)
    assert set(contents) == {"generator", "discriminator", "generator_smooth"}
    generator = contents["generator"]
    assert type(generator) is type(contents["generator_smooth"]) is collections.OrderedDict
    const = generator["synthesis.early_layer.const"]
    assert const.shape == (1, 64, 4, 4)
    assert_owned_c_array(const, np.float32)
    np.testing.assert_allclose(const.ravel()[:3], [0.5130566, 0.1829352, -0.8618221], rtol=1e-6)
    assert generator["mapping.dense0.weight"].shape == (64, 32)
    assert generator["synthesis.layer0.noise_strength"].shape == ()
    fir = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64 * 4
    for name in ("synthesis.upsample.kernel", "synthesis.layer1.filter.kernel"):
        np.testing.assert_allclose(generator[name], fir.reshape(1, 1, 4, 4), atol=1e-7)
    assert not np.array_equal(
        generator["truncation.w_avg"], contents["generator_smooth"]["truncation.w_avg"]
    )
    counts = {name: count_arrays(state) for name, state in contents.items()}
    assert counts == {"generator": 80, "discriminator": 29, "generator_smooth": 80}
    with zipfile.ZipFile(stylegan2_path) as archive:
        records = [n for n in archive.namelist() if n.startswith(f"{STYLEGAN2}/data/")]
    assert sum(counts.values()) == len(records)  # every tensor has a storage of its own here


def test_every_fixture_checkpoint_reads():
    paths = sorted(FIXTURES.glob("*/*.pth")) + sorted(FIXTURES.glob("*/*.pt"))
    if not paths:
        pytest.skip(f"no reference checkpoints under {FIXTURES} (set JGAN_FIXTURES)")
    for path in paths:
        contents = read_torch_file(path)
        assert count_arrays(contents) > 0, path
        assert isinstance(contents, dict), path


def test_vgg16_checkpoints_hold_the_same_weights():
    idinvert = read_torch_file(fixture_dir("idinvert_vgg16") / "vgg16.pth")
    torchvision = read_torch_file(fixture_dir("torchvision_vgg16") / "vgg16_features.pth")
    assert len(idinvert) == len(torchvision) == 26
    assert (
        idinvert["layer0.weight"].shape == torchvision["features.0.weight"].shape == (64, 3, 3, 3)
    )
    assert idinvert["layer28.weight"].shape == (512, 512, 3, 3)
    assert torchvision["features.28.bias"].shape == (512,)
    for name, weights in idinvert.items():
        np.testing.assert_array_equal(weights, torchvision["features." + name[len("layer") :]])


def test_rosinality_args_become_a_namespace():
    contents = read_torch_file(fixture_dir("rosinality_sg2_r32") / "000000.pt")
    assert isinstance(contents["args"], types.SimpleNamespace)
    assert contents["args"].size == 32 and contents["args"].arch == "stylegan2"
    assert contents["g_ema"]["input.input"].shape == (1, 64, 4, 4)
    assert contents["g_ema"]["conv1.conv.weight"].shape == (1, 64, 64, 3, 3)
    assert contents["g_optim"]["state"] == {}


# --- Hand-built zip checkpoints.


def test_views_offsets_and_dtypes(tmp_path):
    floats = np.arange(14, dtype="<f4") / 2
    halves = np.array([1.5, -2.0, 65504.0], dtype="<f2")
    longs = np.array([2**40, -3], dtype="<i8")
    bfloats = np.array([1.0, -0.5], dtype=ml_dtypes.bfloat16)
    bools = np.array([True, False, True])
    tree = {
        "transposed": tensor(storage("0", numel=14), 2, (3, 2), (1, 3)),
        "tail": tensor(storage("0", numel=14), 8, (6,), (1,)),
        "broadcast": tensor(storage("0", numel=14), 5, (2, 3), (0, 1)),
        "half": tensor(storage("1", "HalfStorage", 3), 0, (3,), (1,)),
        "long": tensor(storage("2", "LongStorage", 2), 0, (2, 1), (1, 1)),
        "bfloat": tensor(storage("3", "BFloat16Storage", 2), 1, (1,), (1,)),
        "bool": tensor(storage("4", "BoolStorage", 3), 0, (3,), (1,)),
        "empty": tensor(storage("4", "BoolStorage", 3), 3, (0, 5), (5, 1)),
        "size": Call(Global("torch", "Size"), ((2, 3),)),
    }
    records = {
        "0": floats.tobytes(),
        "1": halves.tobytes(),
        "2": longs.tobytes(),
        "3": bfloats.tobytes(),
        "4": bools.tobytes(),
    }
    contents = read_torch_file(write_zip(tmp_path / "views.pth", tree, records, prefix="any_name"))
    np.testing.assert_array_equal(contents["transposed"], floats[2:8].reshape(2, 3).T)
    np.testing.assert_array_equal(contents["tail"], floats[8:])
    np.testing.assert_array_equal(contents["broadcast"], np.tile(floats[5:8], (2, 1)))
    np.testing.assert_array_equal(contents["half"], halves)
    np.testing.assert_array_equal(contents["long"], longs.reshape(2, 1))
    np.testing.assert_array_equal(contents["bfloat"], bfloats[1:])
    np.testing.assert_array_equal(contents["bool"], bools)
    assert contents["empty"].shape == (0, 5)
    assert contents["size"] == (2, 3)
    expected_dtypes = {
        "transposed": np.float32,
        "tail": np.float32,
        "broadcast": np.float32,
        "half": np.float16,
        "long": np.int64,
        "bfloat": ml_dtypes.bfloat16,
        "bool": np.bool_,
        "empty": np.bool_,
    }
    for name, dtype in expected_dtypes.items():
        assert_owned_c_array(contents[name], dtype)


def test_big_endian_archive(tmp_path):
    values = np.array([[1.25, -2.5], [3e-3, 7e8]])
    tree = {"w": tensor(storage("0", "DoubleStorage", 4), 0, (2, 2), (2, 1))}
    path = write_zip(
        tmp_path / "big.pth", tree, {"0": values.astype(">f8").tobytes()}, byteorder="big"
    )
    weights = read_torch_file(path)["w"]
    assert_owned_c_array(weights, np.float64)
    np.testing.assert_array_equal(weights, values)


def test_untyped_storages_dtype_ids_and_parameters(tmp_path):
    untyped = ("storage", Global("torch.storage", "UntypedStorage"), "u", "cpu", 8)
    v3_args = (
        Persistent(untyped),
        0,
        (4,),
        (1,),
        False,
        Call(ORDERED_DICT, ()),
        Global("torch", "uint16"),
    )
    by_dtype = ("storage", Global("torch", "float64"), "d", "cpu", 2)
    parameter = Call(
        Global("torch._utils", "_rebuild_parameter"),
        (tensor(by_dtype, 0, (2,), (1,)), True, Call(ORDERED_DICT, ())),
    )
    tree = ordered_dict(
        {"v3": Call(Global("torch._utils", "_rebuild_tensor_v3"), v3_args), "parameter": parameter}
    )
    records = {
        "u": np.array([1, 2, 3, 65535], "<u2").tobytes(),
        "d": np.array([0.5, -1.0]).tobytes(),
    }
    contents = read_torch_file(write_zip(tmp_path / "untyped.pth", tree, records))
    assert type(contents) is collections.OrderedDict
    assert list(contents) == ["v3", "parameter"]
    np.testing.assert_array_equal(contents["v3"], [1, 2, 3, 65535])
    assert_owned_c_array(contents["v3"], np.uint16)
    np.testing.assert_array_equal(contents["parameter"], [0.5, -1.0])


@pytest.mark.parametrize("numpy_core", [b"numpy._core", b"numpy.core"])
def test_numpy_values_and_namespaces_inside_a_checkpoint(tmp_path, numpy_core):
    numpy_values = {
        "scalar": np.float32(1.5),
        "big_endian": np.arange(6, dtype=">i2").reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "text": np.str_("abc"),
    }
    tree = {
        "numpy": Spliced(spliced(numpy_values).opcodes.replace(b"numpy._core.", numpy_core + b".")),
        "args": spliced(argparse.Namespace(size=32, lr=0.002)),
        "shared": [Remember(250, tensor(storage("0", numel=1), 0, (), ())), Recall(250)],
        "set": spliced({1, 2}),
    }
    path = write_zip(tmp_path / "numpy.pth", tree, {"0": np.float32(4).tobytes()})
    contents = read_torch_file(path)
    numpy = contents["numpy"]
    assert numpy["scalar"] == np.float32(1.5) and type(numpy["scalar"]) is np.float32
    assert numpy["text"] == "abc"
    for name in ("big_endian", "fortran"):
        assert_owned_c_array(numpy[name], numpy_values[name].dtype.newbyteorder("="))
        np.testing.assert_array_equal(numpy[name], numpy_values[name])
    assert contents["args"] == types.SimpleNamespace(size=32, lr=0.002)
    first, second = contents["shared"]
    assert first is second and first.shape == () and first == 4
    assert contents["set"] == {1, 2}


def test_extra_globals_allow_more_stand_ins(tmp_path):
    tree = {"kwargs": Call(Global("dnnlib.util", "EasyDict"), ({"channels": 64},))}
    path = write_zip(tmp_path / "extra.pth", tree, {})
    with pytest.raises(CheckpointError, match="global 'dnnlib.util.EasyDict', which is refused"):
        read_torch_file(path)
    contents = read_torch_file(path, extra_globals={("dnnlib.util", "EasyDict"): dict})
    assert contents == {"kwargs": {"channels": 64}}


def test_legacy_format(tmp_path):
    weights = np.linspace(0, 1, 4, dtype="<f4")
    root = np.arange(10, dtype="<f4")
    longs = np.array([7, -8, 9], dtype="<i8")
    lin = ("storage", Global("torch", "FloatStorage"), "94", "cuda:0", 4, None)
    view = ("storage", Global("torch", "FloatStorage"), "7", "cpu", 10, ("8", 4, 6))
    old = ("storage", Global("torch", "LongStorage"), "3", "cpu", 3, None)
    tree = ordered_dict(
        {
            "lin0.model.1.weight": tensor(lin, 0, (1, 4, 1, 1), (4, 1, 1, 1)),
            "view": tensor(view, 1, (2, 2), (2, 1)),
            "old": Call(
                Global("torch._utils", "_rebuild_tensor"), (Persistent(old), 1, (2,), (1,))
            ),
        }
    )
    path = write_legacy(tmp_path / "lpips.pth", tree, {"3": longs, "7": root, "94": weights})
    contents = read_torch_file(path)
    np.testing.assert_array_equal(contents["lin0.model.1.weight"], weights.reshape(1, 4, 1, 1))
    np.testing.assert_array_equal(contents["view"], root[5:9].reshape(2, 2))
    np.testing.assert_array_equal(contents["old"], longs[1:])
    assert_owned_c_array(contents["old"], np.int64)


# --- Bad and malicious input.


@pytest.mark.parametrize("data", [b"these are not weights", b"", pickle.dumps({"a": 1})])
def test_other_files_are_not_checkpoints(tmp_path, data):
    path = tmp_path / "notes.pth"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"notes\.pth is not a PyTorch checkpoint"):
        read_torch_file(path)


def test_zip_without_data_pkl_is_not_a_checkpoint(tmp_path):
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        read_torch_file(tmp_path / "other.zip")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"absent\.pth does not exist"):
        read_torch_file(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_torch_file(tmp_path)


def test_truncated_fixture(stylegan2_path, tmp_path):
    data = stylegan2_path.read_bytes()
    path = tmp_path / "half.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"half\.pth is truncated or corrupt"):
        read_torch_file(path)


@pytest.mark.parametrize(
    "module, name, make_args",
    [
        ("os", "system", lambda marker: (f"touch {marker}",)),
        ("posix", "system", lambda marker: (f"touch {marker}",)),
        ("builtins", "eval", lambda marker: (f"__import__('os').system('touch {marker}')",)),
        ("builtins", "exec", lambda marker: (f"open('{marker}', 'w').close()",)),
        ("builtins", "getattr", lambda marker: (Global("os", "path"), "join")),
        ("subprocess", "Popen", lambda marker: (["touch", str(marker)],)),
        ("torch", "load", lambda marker: (str(marker),)),
        ("numpy", "load", lambda marker: (str(marker),)),
    ],
)
def test_malicious_globals_are_refused_and_not_run(tmp_path, module, name, make_args):
    marker = tmp_path / "pwned"
    payload = {"generator": {"x": Call(Global(module, name), make_args(marker))}}
    refused = rf"holds the global '{module}\.{name}', which is refused: only tensors and plain"
    zipped = write_zip(tmp_path / "evil.pth", payload, {})
    legacy = write_legacy(tmp_path / "evil_legacy.pth", payload, {})
    plain = tmp_path / "evil_plain.pkl"
    plain.write_bytes(pickled(payload))
    for path in (zipped, legacy, plain):
        with pytest.raises(CheckpointError, match=refused):
            read_torch_file(path)
    assert not marker.exists()


def test_build_cannot_alter_the_shared_stand_ins(tmp_path):
    rebuild = Global("torch._utils", "_rebuild_tensor_v2")
    path = write_zip(tmp_path / "poison.pth", Build(rebuild, {"poisoned": True}), {})
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_torch_file(path)
    assert not hasattr(torch_pickle.TORCH_GLOBALS["torch._utils", "_rebuild_tensor_v2"], "poisoned")


def test_numpy_object_arrays_are_refused(tmp_path):
    tree = {"objects": spliced(np.array([1, "a"], dtype=object))}
    path = write_zip(tmp_path / "objects.pth", tree, {})
    with pytest.raises(CheckpointError, match="numpy dtype 'O8', which is refused"):
        read_torch_file(path)


@pytest.mark.parametrize(
    "tree, records, message",
    [
        (
            {"w": tensor(storage("0", numel=6), 0, (6,), (1,))},
            {"0": np.zeros(3, "<f4").tobytes()},
            r"storage record archive/data/0 has 12 bytes, its storage 24",
        ),
        (
            {"w": tensor(storage("0", numel=3), 1, (2, 2), (1, 1))},
            {"0": np.zeros(3, "<f4").tobytes()},
            r"a tensor of size \(2, 2\), stride \(1, 1\) and offset 1 needs 16 bytes",
        ),
        (
            {"w": tensor(storage("0", numel=3), 0, (3,), (1,))},
            {},
            r"the storage record archive/data/0 is missing",
        ),
        (
            {"w": Persistent(("module", "x", "source"))},
            {},
            r"unknown persistent id \('module', 'x', 'source'\)",
        ),
        (
            {"w": tensor(storage("0", numel=3), 0, (3,), (-1,))},
            {"0": np.zeros(3, "<f4").tobytes()},
            r"tensor stride \(-1,\) has a negative entry",
        ),
    ],
)
def test_corrupt_zip_checkpoints(tmp_path, tree, records, message):
    path = write_zip(tmp_path / "bad.pth", tree, records)
    with pytest.raises(CheckpointError, match=rf"bad\.pth is truncated or corrupt: .*{message}"):
        read_torch_file(path)


def test_corrupt_legacy_checkpoints(tmp_path):
    pid = ("storage", Global("torch", "FloatStorage"), "0", "cpu", 4, None)
    tree = {"w": tensor(pid, 0, (4,), (1,))}
    path = write_legacy(tmp_path / "legacy.pth", tree, {"0": np.zeros(4, "<f4")})
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CheckpointError, match="file ends inside storage record '0'"):
        read_torch_file(path)
    write_legacy(path, tree, {"0": np.zeros(3, "<f4")})
    with pytest.raises(CheckpointError, match="record '0' has 3 elements, not 4"):
        read_torch_file(path)
