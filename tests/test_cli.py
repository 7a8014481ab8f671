"""The `jgan` command: convert and synthesize end to end."""

import pathlib
import subprocess
import sys

import numpy as np

from conftest import fixture_dir
from jgan.cli.main import main as cli

NAME = "genforce_stylegan2_r32"


def test_convert_then_synthesize(tmp_path):
    source = fixture_dir(NAME) / f"{NAME}.pth"
    model = tmp_path / "model"
    assert cli(["convert", str(source), str(model)]) == 0
    assert (model / "jgan_model.json").is_file()
    args = ["--num", "5", "--batch-size", "4", "--seed", "7", "--trunc-psi", "0.7"]
    assert cli(["synthesize", str(source), *args, "--outdir", str(tmp_path / "a")]) == 0
    assert cli(["synthesize", str(model), *args, "--outdir", str(tmp_path / "b")]) == 0
    # A missing parent directory is created.
    assert cli(["synthesize", str(model), "--num", "1", "--outdir", str(tmp_path / "x/y")]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert sorted(p.name for p in a.glob("*.png")) == [f"{i:06d}.png" for i in range(5)] + [
        "grid.png"
    ]
    z = np.load(a / "z.npy")
    assert z.shape == (5, 32)
    assert np.load(a / "wp.npy").shape == (5, 8, 48)
    np.testing.assert_array_equal(np.load(a / "wp.npy"), np.load(b / "wp.npy"))
    assert (a / "index.html").read_text().count("<img") == 5
    # The existing directory is kept unless --overwrite.
    assert cli(["synthesize", str(model), *args, "--outdir", str(a)]) == 2
    assert cli(["synthesize", str(model), "--num", "2", "--outdir", str(a), "--overwrite"]) == 0
    assert len(list(a.glob("0*.png"))) == 2


def test_console_script_is_installed():
    exe = pathlib.Path(sys.executable).parent / "jgan"
    assert exe.is_file(), "no jgan console script beside python: install with pip install -e ."
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "synthesize" in result.stdout and "convert" in result.stdout
