"""Format recognition: every fixture fits exactly one format; an unknown file gets a message
that lists every format jgan reads and what the file holds; an ambiguous one names the
candidates and the override that settles it, and the override does."""

import pickle

import numpy as np
import pytest

import jgan
from conftest import FIXTURES, fixture_dir
from jgan.cli.main import main as cli
from jgan.ports import formats
from jgan.ports.state import module_tensors
from jgan.ports.torch_pickle import read_torch_file
from jgan.ports.torch_writer import write_torch_file


def fits(path):
    reader = next(r for r in formats.READERS if r.accepts(str(path)))
    contents = reader.read(str(path))
    return [f.name for f in formats.FORMATS if f.reader is reader and f.detect(contents)]


def test_every_fixture_fits_exactly_one_format():
    expected = {
        "genforce_pggan_r32.pth": "genforce",
        "genforce_stylegan_r32.pth": "genforce",
        "genforce_stylegan2_r32.pth": "genforce",
        "pggan_r16.pth": "interfacegan",
        "stylegan_r32.pth": "interfacegan",
        "stylegan2_r32_generator.pth": "higan",
        "styleganinv_r128_generator.pth": "idinvert",
        "styleganinv_r128_encoder.pth": "idinvert",
        "000000.pt": "rosinality",
        "vgg16.pth": "vgg16",
        "vgg16_features.pth": "vgg16",
    }
    paths = sorted(FIXTURES.glob("*/*.pt*")) + sorted(FIXTURES.glob("nvidia_*/*.pkl"))
    if not paths:
        pytest.skip(f"no reference checkpoints under {FIXTURES} (set JGAN_FIXTURES)")
    for path in paths:
        name = "nvidia-stylegan3" if "sg3" in path.parent.name else "nvidia-stylegan2"
        assert fits(path) == [expected.get(path.name, name)], path


def test_unknown_file_lists_the_formats_and_what_it_holds(tmp_path):
    path = write_torch_file(
        tmp_path / "optimizer.pth",
        {"state": {"exp_avg": np.zeros(2), "step": 3}, "param_groups": [{"lr": 0.1}]},
    )
    with pytest.raises(jgan.CheckpointError) as caught:
        jgan.load(path)
    message = str(caught.value)
    assert "a PyTorch (torch.save) file of no format jgan knows" in message
    assert "top-level keys ['param_groups', 'state']; 'state': ['exp_avg', 'step']" in message
    for known in formats.FORMATS:
        assert f"\n  {known.name}: {known.description}" in message


@pytest.mark.parametrize(
    "contents, seen",
    [
        ([np.zeros(2), np.ones(3)], "it holds a list, not a dict"),
        (np.zeros((3, 4), np.float32), r"it holds a single array of shape \(3, 4\)"),
    ],
)
def test_unknown_contents_that_are_not_dicts(tmp_path, contents, seen):
    path = write_torch_file(tmp_path / "other.pth", contents)
    with pytest.raises(jgan.CheckpointError, match=seen):
        jgan.load(path)


def test_unknown_network_pickle(tmp_path):
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(pickle.dumps({"augment_pipe": None, "progress": {"kimg": 1}}, protocol=4))
    pattern = (
        r"an NVIDIA network pickle of no format jgan knows; it holds top-level keys "
        r"\['augment_pipe', 'progress'\]; 'progress': \['kimg'\]\. jgan reads:\n  genforce: "
    )
    with pytest.raises(jgan.CheckpointError, match=pattern):
        jgan.load(path)


@pytest.fixture(scope="module")
def ambiguous(tmp_path_factory):
    """The rosinality fixture with a genforce 'generator' entry added: both formats fit."""
    contents = read_torch_file(fixture_dir("rosinality_sg2_r32") / "000000.pt")
    del contents["args"]  # a Namespace, which the torch.save writer does not write
    contents["generator"] = {}
    return write_torch_file(tmp_path_factory.mktemp("formats") / "both.pt", contents)


def test_ambiguous_file_names_candidates_and_the_override(ambiguous):
    pattern = (
        r"fits several formats, \['genforce', 'rosinality'\] \(top-level keys .*\); name the "
        r"one it is with the override format=NAME \(jgan\.load\(path, format='genforce'\) or "
        r"--override format=genforce\)"
    )
    with pytest.raises(jgan.CheckpointError, match=pattern):
        jgan.load(ambiguous)
    with pytest.raises(jgan.InputError, match=r"unknown format 'stylegan'; jgan reads \("):
        jgan.load(ambiguous, format="stylegan")


def test_the_format_override_settles_it(ambiguous, tmp_path):
    chosen = jgan.load(ambiguous, format="rosinality")
    original = jgan.load(fixture_dir("rosinality_sg2_r32") / "000000.pt")
    assert chosen.config == {**original.config, "source": str(ambiguous)}
    for role in ("generator", "generator_raw", "discriminator"):
        tensors = module_tensors(getattr(original, role))
        for key, var in module_tensors(getattr(chosen, role)).items():
            np.testing.assert_array_equal(var[...], tensors[key][...], err_msg=f"{role} {key}")
    destination = tmp_path / "model"
    assert (
        cli(["convert", str(ambiguous), str(destination), "--override", "format=rosinality"]) == 0
    )
    assert (destination / "jgan_model.json").is_file()
