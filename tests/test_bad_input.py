"""Bad input gets a jgan error that names the problem; nothing runs, nothing partial is written."""

import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest

import jgan
from conftest import fixture_dir
from jgan.cli.main import main as cli
from jgan.ports import genforce
from jgan.ports.torch_pickle import read_torch_file

NAME = "genforce_stylegan2_r32"


@pytest.fixture(scope="module")
def checkpoint():
    return fixture_dir(NAME) / f"{NAME}.pth"


class _RunsShell:
    """Pickles as a call of os.system, the classic malicious checkpoint."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _zip_checkpoint(path, payload):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
        archive.writestr("archive/version", "3\n")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights")
    with pytest.raises(jgan.CheckpointError, match="not a PyTorch checkpoint"):
        jgan.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(jgan.CheckpointError, match="no such model"):
        jgan.load(tmp_path / "absent.pth")


def test_truncated_checkpoint(checkpoint, tmp_path):
    data = checkpoint.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(jgan.CheckpointError, match="truncated|corrupt|not a PyTorch"):
        jgan.load(path)


@pytest.mark.parametrize("zipped", [True, False])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, zipped):
    marker = tmp_path / "pwned"
    payload = {"generator": {"x": _RunsShell(f"touch {marker}")}}
    path = tmp_path / "evil.pth"
    if zipped:
        _zip_checkpoint(path, payload)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(jgan.CheckpointError, match="system"):
        jgan.load(path)
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    class _Evaluates:
        def __reduce__(self):
            return (eval, ("1 + 1",))

    path = tmp_path / "eval.pth"
    _zip_checkpoint(path, {"generator": {"x": _Evaluates()}})
    with pytest.raises(jgan.CheckpointError, match="eval"):
        jgan.load(path)


@pytest.fixture(scope="module")
def contents(checkpoint):
    return read_torch_file(checkpoint)


def _edited(contents, edit):
    copy = {name: dict(state) for name, state in contents.items()}
    edit(copy["generator_smooth"])
    return copy


def test_missing_tensor_is_named(contents):
    obj = _edited(contents, lambda s: s.pop("synthesis.layer3.style.weight"))
    with pytest.raises(jgan.CheckpointError, match=r"missing tensors: synthesis\.layer3\.style"):
        genforce.read(obj, "edited.pth")


def test_extra_tensor_is_named(contents):
    obj = _edited(contents, lambda s: s.update({"synthesis.layer3.extra": np.zeros(3)}))
    with pytest.raises(jgan.CheckpointError, match=r"unexpected tensors: synthesis\.layer3\.extra"):
        genforce.read(obj, "edited.pth")


def test_misshaped_tensor_is_named(contents):
    def edit(state):
        state["synthesis.layer2.bias"] = np.zeros(7, np.float32)

    with pytest.raises(jgan.CheckpointError, match=r"synthesis\.layer2\.bias \(7,\)"):
        genforce.read(_edited(contents, edit), "edited.pth")


def test_nan_tensor_is_named(contents):
    def edit(state):
        state["synthesis.layer2.bias"] = np.full_like(state["synthesis.layer2.bias"], np.nan)

    with pytest.raises(jgan.CheckpointError, match=r"NaN.*synthesis\.layer2\.bias"):
        genforce.read(_edited(contents, edit), "edited.pth")


def test_unknown_and_contradicting_overrides(checkpoint):
    with pytest.raises(jgan.InputError, match="unknown override.*colour"):
        jgan.load(checkpoint, colour="blue")
    with pytest.raises(jgan.CheckpointError, match="wrong shapes|missing|unexpected"):
        jgan.load(checkpoint, resolution=64)


def test_codes_of_wrong_dimension(checkpoint):
    bundle = jgan.load(checkpoint)
    with pytest.raises(jgan.InputError, match=r"\(N, 32\).*\(2, 31\)"):
        jgan.synthesize(bundle.generator, np.zeros((2, 31), np.float32))
    with pytest.raises(jgan.InputError, match="W\\+ codes"):
        jgan.synthesize(bundle.generator, np.zeros((2, 5, 48), np.float32), space="wp")
    with pytest.raises(jgan.InputError, match="NaN"):
        jgan.synthesize(bundle.generator, np.full((2, 32), np.nan, np.float32))
    with pytest.raises(jgan.InputError, match="space"):
        jgan.synthesize(bundle.generator, np.zeros((2, 32), np.float32), space="q")


def test_nothing_partial_is_written(tmp_path, checkpoint):
    bad = tmp_path / "bad.pth"
    shutil.copy(checkpoint, bad)
    with open(bad, "r+b") as f:
        f.truncate(1000)
    assert cli(["convert", str(bad), str(tmp_path / "out")]) == 2
    assert cli(["synthesize", str(bad), "--outdir", str(tmp_path / "samples")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth"]
