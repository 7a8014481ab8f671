"""Writing torch.save files without torch, and jgan models back as genforce checkpoints: the
exported fixture files equal the originals tensor for tensor and read back to the same model."""

import collections
import os
import stat
import struct
import zipfile

import jax
import ml_dtypes
import numpy as np
import pytest

import jgan
from conftest import fixture_dir
from jgan.cli.main import main as cli
from jgan.models.registry import build_abstract, model_classes
from jgan.models.stylegan import StyleGANGenerator
from jgan.ports.export import export_genforce
from jgan.ports.state import load_state, module_tensors
from jgan.ports.torch_pickle import read_torch_file
from jgan.ports.torch_writer import STORAGE_ALIGNMENT, write_torch_file

GENFORCE = ["genforce_pggan_r32", "genforce_stylegan_r32", "genforce_stylegan2_r32"]


def original_path(name):
    return fixture_dir(name) / f"{name}.pth"


@pytest.fixture(scope="module", params=GENFORCE)
def exported(request, tmp_path_factory):
    """(fixture name, its bundle, the exported path, the overrides export_genforce returned)."""
    name = request.param
    bundle = jgan.load(original_path(name))
    path = tmp_path_factory.mktemp("export") / f"{name}.pth"
    return name, bundle, path, export_genforce(bundle, path)


def local_data_offsets(path):
    """{member name: offset of its data in the file}, from the local headers."""
    raw = path.read_bytes()
    offsets = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name_size, extra_size = struct.unpack_from("<HH", raw, info.header_offset + 26)
            offsets[info.filename] = info.header_offset + 30 + name_size + extra_size
    return offsets


# --- genforce export of the fixtures.


def test_exported_tensors_equal_the_original_file(exported):
    name, _, path, overrides = exported
    assert overrides == {}
    original, written = read_torch_file(original_path(name)), read_torch_file(path)
    assert list(written) == ["generator", "generator_smooth", "discriminator"]
    assert set(written) == set(original)
    for entry, state in original.items():
        assert type(written[entry]) is collections.OrderedDict
        assert set(written[entry]) == set(state), entry
        for key, value in state.items():
            exported_value = written[entry][key]
            assert exported_value.dtype == value.dtype and exported_value.shape == value.shape
            np.testing.assert_array_equal(exported_value, value, err_msg=f"{entry}/{key}")


def test_exported_archive_has_torch_layout(exported):
    name, _, path, _ = exported
    with zipfile.ZipFile(original_path(name)) as archive:
        expected = {n.split("/", 1)[1] for n in archive.namelist()} - {".data/serialization_id"}
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        assert {info.filename.split("/", 1)[1] for info in infos} == expected
        assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)
        assert archive.read("archive/data.pkl")[:2] == b"\x80\x02"  # protocol 2, as torch.save
        assert archive.read("archive/.storage_alignment") == b"64"
        assert archive.read("archive/byteorder") == b"little"
        assert archive.read("archive/version") == b"3\n"
    assert all(offset % STORAGE_ALIGNMENT == 0 for offset in local_data_offsets(path).values())


def test_exported_file_reads_back_with_identical_outputs(exported):
    _, bundle, path, _ = exported
    again = jgan.load(path)
    assert again.arch == bundle.arch and again.config["generator"] == bundle.config["generator"]
    z = jax.random.normal(jax.random.key(0), (4, bundle.generator.config["z_space_dim"]))
    for role in ("generator", "generator_raw"):
        image = jgan.synthesize(getattr(bundle, role), z)["image"]
        np.testing.assert_array_equal(jgan.synthesize(getattr(again, role), z)["image"], image)
    scores = jgan.discriminate(bundle.discriminator, image)
    np.testing.assert_array_equal(jgan.discriminate(again.discriminator, image), scores)


def test_arguments_the_weights_cannot_tell_are_returned(tmp_path):
    name = "genforce_stylegan_r32"
    state = read_torch_file(original_path(name))["generator_smooth"]
    config = {**jgan.load(original_path(name)).generator.config, "final_tanh": True}
    generator = build_abstract(StyleGANGenerator, config)
    ignored = {r"synthesis\.layer\d+\.blur\.kernel": None}
    load_state(generator, state, ignored=ignored)
    path = tmp_path / "tanh.pth"
    overrides = export_genforce(jgan.Bundle(arch="stylegan", generator=generator), path)
    assert overrides == {"generator": {"final_tanh": True}}
    assert list(read_torch_file(path)) == ["generator"]
    assert jgan.load(path).generator.config["final_tanh"] is False
    again = jgan.load(path, **overrides["generator"])
    assert again.generator.config == config and again.generator_raw is None


SMALL = {"resolution": 16, "fmaps_base": 128, "fmaps_max": 16}
MAPPING = {"z_space_dim": 8, "w_space_dim": 8, "mapping_layers": 2, "mapping_fmaps": 8}


def randomized(cls, config, seed):
    module = build_abstract(cls, config)
    rng = np.random.default_rng(seed)
    tensors = module_tensors(module)
    return load_state(
        module, {k: rng.standard_normal(v.shape, np.float32) for k, v in tensors.items()}
    )


@pytest.mark.parametrize(
    "arch, g_config, d_config, present, absent",
    [
        (
            "stylegan2",
            {"architecture": "resnet"},
            {"architecture": "skip"},
            ["synthesis.skip_layer0.filter.kernel", "downsample.kernel", "layer1.filter.kernel"],
            ["synthesis.upsample.kernel", "skip_layer0.filter.kernel"],
        ),
        (
            "stylegan2",
            {"architecture": "origin"},
            {"architecture": "origin"},
            ["synthesis.layer1.filter.kernel", "layer1.filter.kernel"],
            ["synthesis.upsample.kernel", "downsample.kernel", "skip_layer0.filter.kernel"],
        ),
        (
            "stylegan",
            {"fused_scale": True},
            {"fused_scale": True},
            ["synthesis.layer2.blur.kernel", "layer1.blur.kernel"],
            [],
        ),
    ],
)
def test_architectures_the_fixtures_do_not_cover(
    tmp_path, arch, g_config, d_config, present, absent
):
    G, D = model_classes(arch)
    generator = randomized(G, {**SMALL, **MAPPING, **g_config}, 0)
    discriminator = randomized(D, {**SMALL, **d_config}, 1)
    path = tmp_path / f"{arch}.pth"
    bundle = jgan.Bundle(arch, generator=generator, discriminator=discriminator)
    overrides = export_genforce(bundle, path)
    written = read_torch_file(path)
    keys = set(written["generator"]) | set(written["discriminator"])
    assert set(present) <= keys and not set(absent) & keys
    expected = {k: v for k, v in {**g_config, **d_config}.items() if k == "fused_scale"}
    needed = {entry: expected for entry in ("generator", "discriminator")} if expected else {}
    assert overrides == needed
    again = jgan.load(path, **expected)
    for role, original in (("generator", generator), ("discriminator", discriminator)):
        assert getattr(again, role).config == original.config
        tensors = module_tensors(original)
        for key, var in module_tensors(getattr(again, role)).items():
            np.testing.assert_array_equal(var[...], tensors[key][...], err_msg=f"{role} {key}")


def test_only_genforce_architectures_are_exported(tmp_path):
    bundle = jgan.load(original_path("genforce_pggan_r32"))
    with pytest.raises(jgan.InputError, match="a stylegan3 model cannot be written as a genforce"):
        export_genforce(jgan.Bundle(arch="stylegan3", generator=bundle.generator), tmp_path / "x")
    with pytest.raises(jgan.InputError, match="the generator is a PGGANGenerator; a genforce "):
        export_genforce(jgan.Bundle(arch="stylegan", generator=bundle.generator), tmp_path / "x")
    with pytest.raises(jgan.InputError, match="holds no generator"):
        export_genforce(jgan.Bundle(arch="pggan", discriminator=bundle.discriminator), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_export_command(tmp_path):
    source = original_path("genforce_pggan_r32")
    destination = tmp_path / "out" / "pggan.pth"
    assert cli(["export", str(source), str(destination)]) == 0
    assert set(read_torch_file(destination)) == {"generator", "generator_smooth", "discriminator"}
    assert cli(["export", str(source), str(destination)]) == 2  # exists: --overwrite replaces it
    assert cli(["export", str(source), str(destination), "--overwrite"]) == 0
    assert sorted(os.listdir(destination.parent)) == ["pggan.pth"]


def test_export_names_the_overrides_a_reader_needs(tmp_path, capsys):
    """NVIDIA's conv_clamp has no genforce counterpart: the weights round-trip, the clamp is
    named as the override that restores it."""
    source = fixture_dir("nvidia_sg2ada_r32") / "network-snapshot-000000.pkl"
    destination = tmp_path / "nvidia.pth"
    assert cli(["export", str(source), str(destination)]) == 0
    assert "read it back with --override conv_clamp=256\n" in capsys.readouterr().out
    original, again = jgan.load(source), jgan.load(destination, conv_clamp=256)
    for role in ("generator", "generator_raw", "discriminator"):
        assert getattr(again, role).config == getattr(original, role).config
        tensors = module_tensors(getattr(original, role))
        for key, var in module_tensors(getattr(again, role)).items():
            np.testing.assert_array_equal(var[...], tensors[key][...], err_msg=f"{role} {key}")


# --- The torch.save writer itself.


def test_values_and_containers_round_trip(tmp_path):
    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    tree = {
        "state": collections.OrderedDict(
            [
                ("transposed", weights.T),  # written C-contiguous
                ("big_endian", np.arange(5, dtype=">i4")),
                ("half", np.array([1.5, -2.0], np.float16)),
                ("bfloat", np.array([0.5, 3.0], ml_dtypes.bfloat16)),
                ("double", np.array(2.25)),  # 0-d
                ("empty", np.zeros((0, 3), np.int64)),
                ("flags", np.array([True, False])),
                ("bytes", np.arange(-3, 3, dtype=np.int8)),
                ("pixels", np.arange(250, 256, dtype=np.uint8)),
                ("complex", np.array([1 + 2j], np.complex64)),
            ]
        ),
        "tied": [weights, weights],
        "meta": {"epoch": 3, "big": -(2**70), "lr": 2e-3, "name": "résumé", "none": None},
        "flags": (True, False, 512, 70000, -5),
    }
    path = write_torch_file(tmp_path / "tree.pth", tree)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask  # as open() creates files
    back = read_torch_file(path)
    assert type(back["state"]) is collections.OrderedDict and list(back["state"]) == list(
        tree["state"]
    )
    for key, value in tree["state"].items():
        assert back["state"][key].dtype == value.dtype.newbyteorder("="), key
        assert back["state"][key].shape == value.shape, key
        np.testing.assert_array_equal(back["state"][key], value)
    first, second = back["tied"]
    assert first is second  # one storage, as torch.save writes shared tensors
    np.testing.assert_array_equal(first, weights)
    assert back["meta"] == tree["meta"] and back["flags"] == tree["flags"]


def test_unwritable_values_leave_no_file(tmp_path):
    target = tmp_path / "model.pth"
    write_torch_file(target, {"kept": np.ones(2, np.float32)})
    with pytest.raises(jgan.InputError, match="dtype uint16: torch storages hold"):
        write_torch_file(target, {"w": np.ones(2, np.uint16)})
    with pytest.raises(jgan.InputError, match="cannot write a set into a checkpoint"):
        write_torch_file(target, {"w": {1, 2}})
    assert os.listdir(tmp_path) == ["model.pth"]
    np.testing.assert_array_equal(read_torch_file(target)["kept"], [1, 1])
