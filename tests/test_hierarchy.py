"""HiGAN re-scoring: known answers on a constructed generator, a real one, and `jgan rescore`."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import jgan
from conftest import fixture_dir
from jgan.analysis.generate import codes_of, score_codes
from jgan.analysis.hierarchy import mean_positive_change, rescore
from jgan.analysis.predictors import mean_color
from jgan.cli.main import main as cli
from jgan.errors import InputError
from jgan.models.base import Generator
from jgan.nn import Buffer

NAME = "genforce_stylegan2_r32"
LAYER_WEIGHTS = np.array([0, 0, 1, 0.5, 0, 0, 0, 0], np.float32)  # layers 2 and 3 carry it


class LinearGenerator(Generator):
    """A constructed generator: every pixel of every channel is sum_l c_l <wp_l, u>, so
    moving layer l by d along u changes the image by d c_l, and along any v orthogonal to u
    changes nothing."""

    latent_spaces = ("z", "w", "wp")

    def __init__(self, layer_weights, direction):
        self.num_layers = len(layer_weights)
        self.layer_weights = Buffer(jnp.asarray(layer_weights))
        self.direction = Buffer(jnp.asarray(direction))

    def generate(
        self,
        codes,
        *,
        space="z",
        label=None,
        trunc_psi=None,
        trunc_layers=None,
        noise_mode="const",
        key=None,
    ):
        n = codes.shape[0]
        wp = (
            codes
            if space == "wp"
            else jnp.broadcast_to(codes[:, None], (n, self.num_layers, codes.shape[-1]))
        )
        value = jnp.einsum("nld,l,d->n", wp, self.layer_weights[...], self.direction[...])
        return {"image": jnp.broadcast_to(value[:, None, None, None], (n, 4, 4, 3)), "wp": wp}


def first_pixel(images):
    return images[:, 0, 0, 0]


@pytest.fixture(scope="module")
def constructed():
    rng = np.random.default_rng(0)
    u = rng.standard_normal(16).astype(np.float32)
    u /= np.linalg.norm(u)
    v = rng.standard_normal(16).astype(np.float32)
    v -= (v @ u) * u
    v /= np.linalg.norm(v)
    wp = rng.standard_normal((6, 8, 16)).astype(np.float32)
    return LinearGenerator(LAYER_WEIGHTS, u), u[None], v[None], wp


def test_rescore_ranks_the_boundary_that_changes_the_score_and_the_layers_that_carry_it(
    constructed,
):
    generator, u, v, wp = constructed
    result = rescore(generator, wp, [v, u, -u], first_pixel, layerwise=True, batch_size=8)
    # Moving +2 along u on all layers adds 2 * sum(c) = 3 to every score; v and -u add nothing.
    np.testing.assert_allclose(result.semantic_change, [0, 3, 0], atol=1e-4)
    np.testing.assert_allclose(result.layer_change[1], 2 * LAYER_WEIGHTS, atol=1e-4)
    np.testing.assert_allclose(result.layer_change[[0, 2]], 0, atol=1e-4)
    assert result.semantic_order[0] == 1
    assert list(result.layer_order[1][:2]) == [2, 3]
    assert result.scores.shape == (3, 6, 10)
    before = np.einsum("nld,l,d->n", wp, LAYER_WEIGHTS, u[0])
    np.testing.assert_allclose(result.scores[:, :, 0], np.broadcast_to(before, (3, 6)), atol=1e-4)
    np.testing.assert_allclose(result.scores[2, :, 1], before - 3, atol=1e-4)
    np.testing.assert_allclose(
        mean_positive_change(result.scores[1, :, 0], result.scores[1, :, 1]), 3, atol=1e-4
    )


def test_rescore_compensates_truncation_for_w_boundaries(constructed):
    generator, u, _, wp = constructed
    # Codes truncated with psi 0.5 on layers 0-2: a W move of 2 is a W+ move of 1 there.
    result = rescore(generator, wp, [u], first_pixel, layerwise=True, trunc_psi=0.5, trunc_layers=3)
    np.testing.assert_allclose(result.layer_change[0], [0, 0, 1, 1, 0, 0, 0, 0], atol=1e-4)
    np.testing.assert_allclose(result.semantic_change, [2.0], atol=1e-4)
    # A W+ boundary lives in the truncated space already: no compensation.
    layerwise_u = np.broadcast_to(u[:, None], (1, 8, 16))
    result = rescore(generator, wp, [layerwise_u], first_pixel, trunc_psi=0.5, trunc_layers=3)
    np.testing.assert_allclose(result.semantic_change, [3.0], atol=1e-4)


def test_rescore_in_z_space_and_score_columns(constructed):
    generator, u, _, wp = constructed
    z = wp[:, 0]

    def two_columns(images):
        return jnp.stack([first_pixel(images), -first_pixel(images)], axis=1)

    result = rescore(generator, z, [u, -u], two_columns, space="z", distance=1.0)
    np.testing.assert_allclose(result.semantic_change, [1.5, 1.5], atol=1e-4)  # column b each
    result = rescore(generator, z, [u, -u], two_columns, space="z", distance=1.0, columns=[1, 1])
    np.testing.assert_allclose(result.semantic_change, [0.0, 1.5], atol=1e-4)
    assert result.layer_change.shape == (2, 0)


def test_rescore_bad_input(constructed):
    generator, u, _, wp = constructed
    calls = []

    def counting(images):
        calls.append(1)
        return first_pixel(images)

    with pytest.raises(InputError, match=r"boundary must have shape \(1, 16\)"):
        rescore(generator, wp, [u, np.ones((1, 512))], counting)
    assert not calls  # the bad boundary is caught before any image is made
    with pytest.raises(InputError, match="needs W\\+ codes"):
        rescore(generator, wp[:, 0], [u], counting, space="w", layerwise=True)
    with pytest.raises(InputError, match="got shape \\(6, 8, 16\\) with space='z'"):
        rescore(generator, wp, [u], counting, space="z")
    with pytest.raises(InputError, match="one index in \\[0, 2\\) per boundary"):
        rescore(generator, wp, [u], lambda x: jnp.stack([x[:, 0, 0, 0]] * 2, 1), columns=[2])
    with pytest.raises(InputError, match="pass columns"):
        rescore(generator, wp, [u], lambda x: jnp.stack([x[:, 0, 0, 0]] * 3, 1))
    with pytest.raises(InputError, match=r"scores of shape \(8, 4, 3\)"):
        rescore(generator, wp, [u], lambda x: x[:, 0], batch_size=8)
    with pytest.raises(InputError, match="at least one boundary"):
        rescore(generator, wp, [], counting)


@pytest.fixture(scope="module")
def model_path():
    return fixture_dir(NAME) / f"{NAME}.pth"


@pytest.fixture(scope="module")
def redness_boundaries(model_path):
    """The direction in W that a linear fit finds for the mean redness of a real generator's
    images (truncated with psi 0.7), and a direction orthogonal to it."""
    generator = jgan.load(model_path).generator
    z = np.random.default_rng(1).standard_normal((256, 32)).astype(np.float32)
    redness = score_codes(generator, z, red, batch_size=8, trunc_psi=0.7)
    w = codes_of(generator, z, "w", batch_size=8, trunc_psi=0.7)
    fit = np.linalg.lstsq(np.concatenate([w, np.ones((256, 1))], 1), redness, rcond=None)[0]
    g = fit[:48] / np.linalg.norm(fit[:48])
    o = np.random.default_rng(2).standard_normal(48)
    o -= (o @ g) * g
    return (
        generator,
        z[:16],
        g[None].astype(np.float32),
        (o / np.linalg.norm(o))[None].astype(np.float32),
    )


def red(images):
    return mean_color(images)[:, 0]


def test_rescore_on_a_real_generator_ranks_the_redness_direction_first(redness_boundaries):
    generator, z, g, o = redness_boundaries
    wp = codes_of(generator, z, "wp", batch_size=8, trunc_psi=0.7)
    result = rescore(generator, wp, [o, -g, g], red, trunc_psi=0.7, batch_size=8)
    assert result.semantic_order[0] == 2
    assert result.semantic_change[2] > 2 * max(result.semantic_change[:2])


def test_rescore_command_writes_scores_ranking_and_page(tmp_path, model_path, redness_boundaries):
    _, _, g, o = redness_boundaries
    np.save(tmp_path / "red.npy", g)
    np.save(tmp_path / "other.npy", o)
    out = tmp_path / "rescore"
    args = [
        "--boundary",
        str(tmp_path / "other.npy"),
        "--boundary",
        f"redness={tmp_path / 'red.npy'}",
    ]
    args += ["--predictor", "jgan.analysis.predictors:mean_color", "--score-column", "0"]
    args += ["--score-column", "0", "--num", "8", "--layerwise", "--trunc-psi", "0.7"]
    args += ["--batch-size", "8", "--preview", "2", "--outdir", str(out)]
    assert cli(["rescore", str(model_path), *args]) == 0
    report = json.loads((out / "rescore.json").read_text())
    assert [e["name"] for e in report["ranking"]] == ["redness", "other"]
    scores = np.load(out / "redness_scores.npy")
    assert scores.shape == (8, 10) and np.load(out / "z.npy").shape == (8, 32)
    assert np.load(out / "wp.npy").shape == (8, 8, 48)
    change = np.load(out / "semantic_change.npy")
    np.testing.assert_allclose(
        change[1], np.maximum(scores[:, 1] - scores[:, 0], 0).mean(), rtol=1e-6
    )
    layer_change = np.load(out / "layer_change.npy")
    np.testing.assert_allclose(
        layer_change[1], np.maximum(scores[:, 2:] - scores[:, :1], 0).mean(0), rtol=1e-6
    )
    np.testing.assert_array_equal(np.load(out / "redness_boundary.npy"), g)
    assert (out / "index.html").read_text().count("<img") == 2 * 2 * 10
    # The same W+ codes given back, without layer-wise moves: the same semantic ranking.
    again = [*args[:6], "--score-column", "0", "--score-column", "0", "--trunc-psi", "0.7"]
    again += ["--codes", str(out / "wp.npy"), "--codes-space", "wp", "--batch-size", "8"]
    assert cli(["rescore", str(model_path), *again, "--outdir", str(tmp_path / "again")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "semantic_change.npy"), change)
    assert not (tmp_path / "again" / "layer_change.npy").exists()
    # A boundary of another generator, or a layer-wise request in Z: errors, nothing written.
    np.save(tmp_path / "wide.npy", np.ones((1, 512), np.float32))
    bad = [
        "--boundary",
        str(tmp_path / "wide.npy"),
        "--predictor",
        "jgan.analysis.predictors:mean_color",
    ]
    assert (
        cli(["rescore", str(model_path), *bad, "--num", "4", "--outdir", str(tmp_path / "x")]) == 2
    )
    bad[1] = str(tmp_path / "red.npy")
    assert (
        cli(
            [
                "rescore",
                str(model_path),
                *bad,
                "--space",
                "z",
                "--layerwise",
                "--num",
                "4",
                "--outdir",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
