"""generate-data: codes and scores streamed to .npy, resumable; predictors by import path."""

import json

import jax
import numpy as np
import pytest

import jgan
from conftest import fixture_dir
from jgan.analysis.generate import generate_data, score_codes
from jgan.analysis.predictors import load_predictor, mean_color, predict
from jgan.cli.main import main as cli
from jgan.errors import InputError, JganError

NAME = "genforce_stylegan2_r32"
TRUNCATION = {"trunc_psi": 0.7, "trunc_layers": 4}
SETTINGS = {"num": 45, "batch_size": 8, "chunk": 8, **TRUNCATION}


@pytest.fixture(scope="module")
def model_path():
    return fixture_dir(NAME) / f"{NAME}.pth"


@pytest.fixture(scope="module")
def generator(model_path):
    return jgan.load(model_path).generator


def green(images):
    return mean_color(images)[:, 1]


class Flaky:
    """mean_color that fails on call number `fail_at` (an interruption mid-run)."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, images):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return mean_color(images)


@pytest.fixture(scope="module")
def uninterrupted(generator, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "full"
    generate_data(generator, out, predictor=Flaky(), codes=("z", "w", "wp"), **SETTINGS)
    return out


def test_generated_codes_and_scores_are_those_of_synthesize(generator, uninterrupted):
    z, w, wp = (np.load(uninterrupted / f"{k}.npy") for k in ("z", "w", "wp"))
    scores = np.load(uninterrupted / "scores.npy")
    assert z.shape == (45, 32) and w.shape == (45, 48) and wp.shape == (45, 8, 48)
    assert scores.shape == (45, 3) and scores.dtype == np.float32
    # Sample i has z = normal(fold_in(key(seed), i)), whatever the batching.
    key = jax.random.split(jax.random.key(0))[0]
    np.testing.assert_array_equal(
        z[44], np.asarray(jax.random.normal(jax.random.fold_in(key, 44), (32,)))
    )
    out = jgan.synthesize(generator, z[37:], trunc_psi=0.7, trunc_layers=4)
    np.testing.assert_allclose(w[37:], out["w"], atol=1e-5)
    np.testing.assert_allclose(wp[37:], out["wp"], atol=1e-5)
    np.testing.assert_allclose(scores[37:], mean_color(out["image"]), atol=1e-5)
    settings = json.loads((uninterrupted / "generate_data.json").read_text())
    assert settings["done"] == 45 and settings["settings"]["predictor"].endswith("Flaky")
    assert (uninterrupted / "index.html").read_text().count("<img") == 16
    assert not list(uninterrupted.parent.glob(".*partial"))


def test_interrupted_run_resumes_to_identical_files(generator, uninterrupted, tmp_path):
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        generate_data(
            generator, out, predictor=Flaky(fail_at=5), codes=("z", "w", "wp"), **SETTINGS
        )
    staging = tmp_path / ".resumed.partial"
    assert not out.exists()
    assert json.loads((staging / "generate_data.json").read_text())["done"] == 24
    # Other settings cannot continue it.
    with pytest.raises(InputError, match=r"other settings \(seed\)"):
        generate_data(generator, out, predictor=Flaky(), codes=("z", "w", "wp"), seed=1, **SETTINGS)
    resumed = Flaky()
    generate_data(generator, out, predictor=resumed, codes=("z", "w", "wp"), **SETTINGS)
    assert resumed.calls == 3  # samples 24-44 only, in 3 batches of 8
    for name in ("z", "w", "wp", "scores"):
        np.testing.assert_array_equal(
            np.load(out / f"{name}.npy"), np.load(uninterrupted / f"{name}.npy")
        )
    assert not staging.exists()
    with pytest.raises(InputError, match="exists"):
        generate_data(generator, out, predictor=resumed, **SETTINGS)


def test_codes_only(generator, tmp_path):
    out = tmp_path / "w_only"
    generate_data(generator, out, num=8, batch_size=8, codes=("w",), preview=2, **TRUNCATION)
    assert sorted(p.name for p in out.iterdir()) == ["generate_data.json", "index.html", "w.npy"]
    assert (out / "index.html").read_text().count("<img") == 2


def test_generate_data_bad_input(generator, tmp_path):
    with pytest.raises(InputError, match=r"chosen among \('z', 'w', 'wp'\)"):
        generate_data(generator, tmp_path / "a", num=4, codes=("y",))
    with pytest.raises(InputError, match="must be positive"):
        generate_data(generator, tmp_path / "b", num=0)
    with pytest.raises(InputError, match=r"returned scores of shape \(8, 4, 3\)"):
        generate_data(
            generator,
            tmp_path / "c",
            num=8,
            batch_size=8,
            predictor=lambda x: x[:, 0, :4],
            **TRUNCATION,
        )


def test_score_codes_pads_batches_and_predict_checks_scores(generator, uninterrupted):
    z = np.load(uninterrupted / "z.npy")[:13]  # one full batch of 8 and one padded
    scores = score_codes(generator, z, green, batch_size=8, trunc_psi=0.7, trunc_layers=4)
    expected = np.load(uninterrupted / "scores.npy")[:13, 1]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    images = np.zeros((2, 4, 4, 3), np.float32)
    with pytest.raises(InputError, match="NaN or infinite"):
        predict(lambda x: np.full(2, np.nan), images)
    with pytest.raises(InputError, match=r"expected \(2,\) or \(2, K\)"):
        predict(lambda x: np.zeros(3), images)
    with pytest.raises(InputError, match="not numeric scores"):
        predict(lambda x: "high", images)


def test_load_predictor_by_import_path_and_its_errors(tmp_path):
    assert load_predictor("jgan.analysis.predictors:mean_color") is mean_color
    assert load_predictor(mean_color) is mean_color
    (tmp_path / "mine.py").write_text("def blue(images):\n    return images[..., 2].mean((1, 2))\n")
    blue = load_predictor(f"{tmp_path / 'mine.py'}:blue")
    np.testing.assert_allclose(blue(np.ones((2, 3, 3, 3)) * [0, 0, 0.5]), [0.5, 0.5])
    with pytest.raises(InputError, match="cannot import 'no_such_module_xyz'"):
        load_predictor("no_such_module_xyz:f")
    with pytest.raises(InputError, match="has no attribute 'nope'"):
        load_predictor("jgan.analysis.predictors:nope")
    with pytest.raises(InputError, match="is a str, not a callable"):
        load_predictor("jgan.analysis.generate:PROGRESS")
    with pytest.raises(InputError, match="'package.module:function'"):
        load_predictor("mean_color")
    with pytest.raises(InputError, match="does not exist"):
        load_predictor(f"{tmp_path / 'missing.py'}:f")
    with pytest.raises(JganError, match="not a jgan model directory"):
        load_predictor(tmp_path)


def test_generate_data_command(tmp_path, model_path, uninterrupted):
    out = tmp_path / "data"
    args = "--num 10 --batch-size 8 --trunc-psi 0.7 --trunc-layers 4 --codes z,w --preview 3"
    args = [*args.split(), "--predictor", "jgan.analysis.predictors:mean_color"]
    assert cli(["generate-data", str(model_path), *args, "--outdir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "generate_data.json",
        "index.html",
        "scores.npy",
        "w.npy",
        "z.npy",
    ]
    # Sample i depends on the seed and i only: the first 10 of the 45 above.
    for name in ("z", "w", "scores"):
        reference = np.load(uninterrupted / f"{name}.npy")[:10]
        np.testing.assert_allclose(np.load(out / f"{name}.npy"), reference, atol=1e-6)
    assert (out / "index.html").read_text().count("<img") == 3
    settings = json.loads((out / "generate_data.json").read_text())["settings"]
    assert settings["predictor"] == "jgan.analysis.predictors:mean_color"
    assert cli(["generate-data", str(model_path), *args, "--outdir", str(out)]) == 2  # exists
    bad = ["--num", "4", "--predictor", "nowhere:f", "--outdir", str(tmp_path / "x")]
    assert cli(["generate-data", str(model_path), *bad]) == 2
    assert not (tmp_path / "x").exists()
