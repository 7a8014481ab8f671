"""Editing codes: layer-wise manipulation, truncation compensation, interpolation, `jgan edit`."""

import re

import numpy as np
import pytest

import jgan
from conftest import assert_parity, fixture_dir
from jgan.analysis import editing
from jgan.analysis.editing import interpolate, manipulate, truncation_compensation
from jgan.analysis.generate import codes_of, score_codes
from jgan.analysis.predictors import mean_color
from jgan.cli.main import main as cli
from jgan.errors import InputError
from jgan.models import latent

NAME = "genforce_stylegan2_r32"  # 8 W+ layers of 48 dimensions, 32 x 32 images


@pytest.fixture(scope="module")
def model_path():
    return fixture_dir(NAME) / f"{NAME}.pth"


@pytest.fixture(scope="module")
def generator(model_path):
    return jgan.load(model_path).generator


def unit(rng, *shape):
    v = rng.standard_normal(shape).astype(np.float32)
    return v / np.linalg.norm(v)


def test_layerwise_manipulation_moves_only_the_chosen_layers_by_relative_offsets():
    rng = np.random.default_rng(0)
    wp = rng.standard_normal((3, 8, 48)).astype(np.float32)
    boundary = unit(rng, 1, 48)
    edited = np.asarray(manipulate(wp, boundary, layers="2-4", start_distance=-3, steps=7))
    assert edited.shape == (3, 7, 8, 48)
    distances = np.linspace(-3, 3, 7)
    others = [0, 1, 5, 6, 7]
    np.testing.assert_array_equal(
        edited[:, :, others], np.broadcast_to(wp[:, None, others], (3, 7, 5, 48))
    )
    offsets = edited[:, :, 2:5] - wp[:, None, 2:5]
    expected = distances[None, :, None, None] * boundary[0]
    np.testing.assert_allclose(offsets, np.broadcast_to(expected, offsets.shape), atol=1e-5)
    # Relative: the move along the unit boundary is d whatever the code's own position.
    along = offsets @ boundary[0]
    np.testing.assert_allclose(
        along, np.broadcast_to(distances[None, :, None], along.shape), atol=1e-5
    )
    # Distance 0 (the middle of 7 steps) is the code itself, exactly.
    np.testing.assert_array_equal(edited[:, 3], wp)


def test_manipulation_of_z_codes_and_with_a_layerwise_boundary():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4, 32)).astype(np.float32)
    boundary = unit(rng, 1, 32)
    edited = np.asarray(manipulate(z, boundary, start_distance=1.0, end_distance=2.0, steps=2))
    np.testing.assert_allclose(edited[:, 1] - z, np.broadcast_to(2 * boundary, z.shape), atol=1e-6)
    # A W+ boundary moves each layer along its own direction; compensation leaves it as it is.
    wp = rng.standard_normal((2, 8, 48)).astype(np.float32)
    per_layer = rng.standard_normal((1, 8, 48)).astype(np.float32)
    moved = manipulate(wp, per_layer, layers=[1, 6], start_distance=1.5, steps=1, trunc_psi=0.5)
    expected = wp.copy()
    expected[:, [1, 6]] += 1.5 * per_layer[:, [1, 6]]
    np.testing.assert_allclose(np.asarray(moved)[:, 0], expected, atol=1e-6)


def test_truncation_compensation_strengths():
    np.testing.assert_array_equal(truncation_compensation(5, 0.75, 2), [0.75, 0.75, 1, 1, 1])
    np.testing.assert_array_equal(truncation_compensation(3, 0.5), [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(truncation_compensation(2, 0.5, 0), [1, 1])


def test_truncation_compensation_equals_editing_w_before_truncation(generator):
    """Known answer: with psi 0.5 on layers 0-3, editing the truncated W+ codes of w with
    compensation gives exactly truncate(w + d n): the codes (to float rounding) and hence the
    images. Without compensation, the truncated layers move (1 - psi) d n too far."""
    psi, cutoff = 0.5, 4
    rng = np.random.default_rng(2)
    z = rng.standard_normal((16, 32)).astype(np.float32)  # 16 codes: the CLI tests' compile
    boundary = unit(rng, 1, 48)
    out = jgan.synthesize(generator, z, trunc_psi=psi, trunc_layers=cutoff)
    w, wp = np.asarray(out["w"]), np.asarray(out["wp"])
    distances = np.array([-2.0, 0.5, 3.0], np.float32)
    move = {"start_distance": -2.0, "end_distance": 3.0, "steps": 3}
    edited = np.asarray(manipulate(wp, boundary, trunc_psi=psi, trunc_layers=cutoff, **move))
    plain = np.asarray(manipulate(wp, boundary, **move))
    for k, d in enumerate(distances):
        target = jgan.synthesize(
            generator, w + d * boundary, space="w", trunc_psi=psi, trunc_layers=cutoff
        )
        np.testing.assert_allclose(edited[:, k], np.asarray(target["wp"]), atol=1e-5)
        image = jgan.synthesize(generator, edited[:, k], space="wp")["image"]
        assert_parity(image, target["image"], f"image at distance {d}")
        excess = plain[:, k] - np.asarray(target["wp"])
        np.testing.assert_allclose(
            excess[:, :cutoff],
            np.broadcast_to((1 - psi) * d * boundary, excess[:, :cutoff].shape),
            atol=1e-5,
        )
        np.testing.assert_allclose(excess[:, cutoff:], 0, atol=1e-5)


def test_interpolate_and_mix_styles():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 3, 8, 48)).astype(np.float32)
    path = np.asarray(interpolate(a, b, steps=5))
    assert path.shape == (3, 5, 8, 48)
    np.testing.assert_array_equal(path[:, 0], a)
    np.testing.assert_allclose(path[:, 4], b, atol=1e-6)
    np.testing.assert_allclose(path[:, 2], (a + b) / 2, atol=1e-6)
    assert editing.mix_styles is latent.mix_styles
    mixed = np.asarray(editing.mix_styles(a, b, [0, 1]))
    np.testing.assert_array_equal(mixed[:, :2], b[:, :2])
    np.testing.assert_array_equal(mixed[:, 2:], a[:, 2:])


@pytest.mark.parametrize(
    ("codes_shape", "boundary_shape", "options", "message"),
    [
        ((2, 8, 48), (1, 48), {"layers": "6-11"}, r"out of range: this model has 8 layers"),
        ((2, 8, 48), (1, 48), {"layers": [-1]}, r"out of range"),
        ((2, 8, 48), (1, 512), {}, r"boundary must have shape \(1, 48\) or \(1, 8, 48\)"),
        ((2, 8, 48), (1, 14, 48), {}, r"got \(1, 14, 48\)"),
        ((2, 32), (1, 48), {}, r"boundary must have shape \(1, 32\)"),
        ((2, 32), (1, 32), {"layers": "0-3"}, r"needs W\+ codes"),
        ((2, 32), (1, 32), {"trunc_psi": 0.7}, r"pass no trunc_psi"),
        ((2, 8, 48), (1, 48), {"steps": 0}, r"steps must be a positive integer"),
        ((2,), (1, 48), {}, r"codes must be Z/W codes"),
    ],
)
def test_manipulate_bad_input(codes_shape, boundary_shape, options, message):
    with pytest.raises(InputError, match=message):
        manipulate(np.zeros(codes_shape), np.zeros(boundary_shape), **options)


def test_interpolate_bad_input():
    with pytest.raises(InputError, match="same shape"):
        interpolate(np.zeros((2, 4)), np.zeros((3, 4)))
    with pytest.raises(InputError, match="steps"):
        interpolate(np.zeros((2, 4)), np.zeros((2, 4)), steps=1)


def test_edit_command_writes_codes_grid_and_follows_the_boundary_meta(tmp_path, model_path, capsys):
    from jgan.analysis import save_boundary

    rng = np.random.default_rng(4)
    boundary = unit(rng, 1, 48)
    save_boundary(tmp_path / "b.npy", boundary, {"manipulate_layers": "2-3"})
    out = tmp_path / "edit"
    args = ["--boundary", str(tmp_path / "b.npy"), "--num", "3", "--steps", "5"]
    args += ["--trunc-psi", "0.7", "--trunc-layers", "3", "--save-images", "--outdir", str(out)]
    assert cli(["edit", str(model_path), *args]) == 0
    w = np.load(out / "w.npy")
    edited = np.load(out / "manipulated_wp.npy")
    assert np.load(out / "z.npy").shape == (3, 32) and edited.shape == (3, 5, 8, 48)
    np.testing.assert_array_equal(np.load(out / "distances.npy"), np.linspace(-3, 3, 5))
    np.testing.assert_array_equal(np.load(out / "boundary.npy"), boundary)
    # Layers 2-3 from the file's meta data; layer 2 is truncated (psi 0.7), layer 3 is not.
    truncation = {"trunc_psi": 0.7, "trunc_layers": 3}
    wp = codes_of(jgan.load(model_path).generator, w, "wp", batch_size=16, space="w", **truncation)
    np.testing.assert_allclose(edited[:, 2], wp, atol=1e-6)  # distance 0
    offsets = (edited[:, :, 2:4] - wp[:, None, 2:4]) @ boundary[0]
    d = np.linspace(-3, 3, 5)[None, :]
    np.testing.assert_allclose(offsets[..., 0], np.broadcast_to(0.7 * d, (3, 5)), atol=1e-5)
    np.testing.assert_allclose(offsets[..., 1], np.broadcast_to(d, (3, 5)), atol=1e-5)
    np.testing.assert_array_equal(
        edited[:, :, [0, 1, 4, 5, 6, 7]],
        np.broadcast_to(wp[:, None, [0, 1, 4, 5, 6, 7]], (3, 5, 6, 48)),
    )
    page = (out / "index.html").read_text()
    assert page.count("<img") == 15 and "offset +1.50" in page
    assert len(list(out.glob("*_*.png"))) == 15

    # Given codes; layers out of range, a boundary of the wrong size, images: clear errors.
    def edit(*argv):
        return cli(["edit", str(model_path), *argv])

    given = ["--codes", str(out / "w.npy"), "--boundary", str(tmp_path / "b.npy")]
    assert edit(*given, "--layers", "0", "--steps", "1", "--outdir", str(tmp_path / "e1")) == 0
    moved = np.load(tmp_path / "e1" / "manipulated_wp.npy")[:, 0]
    np.testing.assert_allclose(moved[:, 0], w - 3 * boundary, atol=1e-5)  # untruncated
    np.testing.assert_array_equal(moved[:, 1:], np.broadcast_to(w[:, None], (3, 7, 48)))
    capsys.readouterr()
    assert edit(*given, "--layers", "6-11", "--outdir", str(tmp_path / "e2")) == 2
    assert "layer indices [8, 9, 10, 11] are out of range" in capsys.readouterr().err
    np.save(tmp_path / "wide.npy", np.ones((1, 512), np.float32))
    assert edit("--boundary", str(tmp_path / "wide.npy"), "--outdir", str(tmp_path / "e3")) == 2
    assert "boundary must have shape (1, 48) or (1, 8, 48)" in capsys.readouterr().err
    assert edit("--resize", *given, "--outdir", str(tmp_path / "e4")) == 2
    assert "--resize only apply to --images" in capsys.readouterr().err
    assert not any((tmp_path / f"e{i}").exists() for i in (2, 3, 4))


def test_edit_command_absolute_distances_on_w(tmp_path, model_path):
    rng = np.random.default_rng(5)
    boundary = unit(rng, 1, 48)
    np.save(tmp_path / "b.npy", boundary)
    out = tmp_path / "abs"
    args = ["--boundary", str(tmp_path / "b.npy"), "--num", "2", "--steps", "3", "--absolute"]
    args += ["--trunc-psi", "0.7", "--trunc-layers", "3"]  # compiled already by the test above
    assert cli(["edit", str(model_path), *args, "--outdir", str(out)]) == 0
    edited = np.load(out / "manipulated_w.npy")
    # InterFaceGAN: each edited W code lies exactly at the signed distance d from n.w = 0.
    np.testing.assert_allclose(
        edited @ boundary[0], np.broadcast_to([-3.0, 0.0, 3.0], (2, 3)), atol=1e-4
    )


def test_generate_train_edit_moves_the_score_the_boundary_was_trained_on(tmp_path, model_path):
    """generate-data (mean redness as the predictor) -> boundary on W -> edit: the redness of the
    edited images rises with the distance, for every sample."""
    data, trained, edited = tmp_path / "data", tmp_path / "boundary", tmp_path / "edit"
    truncation = ["--trunc-psi", "0.7", "--trunc-layers", "3", "--batch-size", "16"]
    args = ["--num", "256", "--predictor", "jgan.analysis.predictors:mean_color", "--preview", "0"]
    assert cli(["generate-data", str(model_path), *args, *truncation, "--outdir", str(data)]) == 0
    codes, scores = str(data / "w.npy"), str(data / "scores.npy")
    assert (
        cli(
            [
                "boundary",
                codes,
                scores,
                "--column",
                "0",
                "--ratio",
                "0.25",
                "--outdir",
                str(trained),
            ]
        )
        == 0
    )
    args = [
        "--boundary",
        str(trained / "boundary.npy"),
        "--num",
        "6",
        "--seed",
        "1",
        "--steps",
        "3",
    ]
    assert cli(["edit", str(model_path), *args, *truncation, "--outdir", str(edited)]) == 0
    wp = np.load(edited / "manipulated_wp.npy")
    generator = jgan.load(model_path).generator
    red = [
        score_codes(generator, wp[:, k], lambda x: mean_color(x)[:, 0], batch_size=16, space="wp")
        for k in range(3)
    ]
    assert np.all(red[0] < red[1]) and np.all(red[1] < red[2]), red


def test_edit_command_inverts_images_then_edits_them_along_a_sefa_direction(tmp_path, model_path):
    """Images the generator made are inverted in W+, then moved along SeFa's top direction of
    layers 0-1: the codes at offset 0 are the inversions, and they reproduce their inputs."""
    from jgan.analysis import sefa
    from jgan.inversion.metrics import image_metrics
    from jgan.viz.images import save_png, to_uint8

    generator = jgan.load(model_path).generator
    z = np.random.default_rng(6).standard_normal((2, 32)).astype(np.float32)
    targets = np.asarray(generator.generate(z, trunc_psi=0.7)["image"])
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for path, image in zip(paths, targets, strict=True):
        save_png(path, to_uint8(image))
    out = tmp_path / "real"
    args = ["--images", *map(str, paths), "--sefa", "0", "--layers", "0-1", "--steps", "3"]
    args += ["--inversion-steps", "60", "--outdir", str(out)]
    assert cli(["edit", str(model_path), *args]) == 0
    wp, edited = np.load(out / "wp.npy"), np.load(out / "manipulated_wp.npy")
    assert wp.shape == (2, 8, 48) and edited.shape == (2, 3, 8, 48)
    np.testing.assert_allclose(edited[:, 1], wp, atol=1e-6)
    _, directions = sefa(generator, "0-1")
    np.testing.assert_allclose(np.load(out / "boundary.npy"), directions[:1])
    moved = (edited[:, 2, :2] - wp[:, :2]) @ directions[0]
    np.testing.assert_allclose(moved, np.full((2, 2), 3.0), atol=1e-5)
    assert (out / "image_list.txt").read_text().split() == ["a", "b"]
    page = (out / "index.html").read_text()
    assert page.count("<img") == 2 * (2 + 3) and "SeFa direction 0" in page
    psnr = [float(v) for v in re.findall(r"inversion PSNR ([0-9.]+) dB", page)]
    start = generator.generate(np.zeros((1, 32), np.float32), trunc_psi=0.0)["image"]  # w_avg
    before = image_metrics(np.broadcast_to(np.asarray(start), targets.shape), targets)["psnr"]
    assert len(psnr) == 2 and np.all(np.array(psnr) > before + 3), (psnr, before)
