"""Test set-up: 4 emulated CPU devices (set before jax is imported) and the fixtures folder."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json  # noqa: E402
import pathlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = pathlib.Path(os.environ.get("JGAN_FIXTURES", REPO.parent / "shared" / "fixtures"))


def fixture_dir(name):
    """The folder of reference fixture `name`; skips the test when fixtures are absent."""
    path = FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"reference fixture {name} not found under {FIXTURES} (set JGAN_FIXTURES)")
    return path


def fixture_io(name):
    """(io.npz arrays as a dict, meta.json as a dict) of fixture `name`."""
    path = fixture_dir(name)
    with np.load(path / "io.npz") as io:
        arrays = {k: io[k] for k in io.files}
    return arrays, json.loads((path / "meta.json").read_text())


def assert_parity(actual, reference, name=""):
    """max|actual - reference| <= 1e-4 * max(1, max|reference|), the fixtures' bar."""
    actual, reference = np.asarray(actual), np.asarray(reference)
    assert actual.shape == reference.shape, f"{name}: shape {actual.shape} != {reference.shape}"
    bound = 1e-4 * max(1.0, float(np.abs(reference).max()))
    error = float(np.abs(actual - reference).max())
    assert error <= bound, f"{name}: max abs error {error:.3g} > {bound:.3g}"


def nchw(images):
    """NHWC -> NCHW, to compare with the official outputs."""
    return np.transpose(np.asarray(images), (0, 3, 1, 2))
