"""SeFa (jgan.analysis.sefa) against genforce/sefa's factorize_weight on the three genforce
fixtures, its invariants (orthonormal directions, the top one maximizes ||A n||), the layer
selection (parse_layers, PGGAN's first layer only), StyleGAN3, and `jgan sefa`."""

import json

import numpy as np
import pytest
from PIL import Image

import jgan
from conftest import assert_parity, fixture_dir, nchw
from jgan.analysis import parse_layers, sefa, sefa_weight
from jgan.cli.main import main as cli
from jgan.errors import InputError

# (model fixture, layers as jgan takes them, sefa_reference file suffix)
CALLS = [
    ("genforce_stylegan_r32", "all", "all"),
    ("genforce_stylegan_r32", "0-3", "0to3"),
    ("genforce_stylegan2_r32", "all", "all"),
    ("genforce_stylegan2_r32", "4-7", "4to7"),
    ("genforce_pggan_r32", "all", "all"),
]
MODELS = sorted({name for name, _, _ in CALLS})


@pytest.fixture(scope="module")
def generators():
    return {name: jgan.load(fixture_dir(name) / f"{name}.pth").generator for name in MODELS}


def reference(name, suffix):
    with np.load(fixture_dir("sefa_reference") / f"{name}_{suffix}.npz") as ref:
        return {k: ref[k] for k in ref.files}


@pytest.mark.parametrize("name,layers,suffix", CALLS)
def test_parity_with_official_factorize_weight(generators, name, layers, suffix):
    ref = reference(name, suffix)
    generator = generators[name]
    assert_parity(sefa_weight(generator, layers), ref["weight_normalized"], "weight_normalized")
    values, directions = sefa(generator, layers)
    assert values.shape == ref["eigen_values"].shape
    assert directions.shape == ref["boundaries"].shape
    assert np.all(np.diff(values) <= 0), "eigenvalues must be descending"
    # The official order is geev's (unsorted): match each official eigenpair by eigenvalue.
    for value, boundary in zip(ref["eigen_values"], ref["boundaries"], strict=True):
        k = np.argmin(np.abs(values - value))
        assert abs(values[k] - value) <= 1e-5 * abs(value), (k, values[k], value)
        assert abs(directions[k] @ boundary) >= 0.9999, (k, directions[k] @ boundary)


def test_the_official_order_is_not_sorted():
    """Why jgan sorts: the reference's first 'top' direction is not the top eigenvector."""
    ref = reference("genforce_stylegan2_r32", "all")
    assert not np.all(np.diff(ref["eigen_values"]) <= 0)


@pytest.mark.parametrize("name,layers,suffix", CALLS)
def test_directions_are_orthonormal_and_the_first_maximizes_the_response(
    generators, name, layers, suffix
):
    generator = generators[name]
    a = sefa_weight(generator, layers).T.astype(np.float64)  # (out, dim): n -> A n
    values, directions = sefa(generator, layers)
    np.testing.assert_allclose(directions @ directions.T, np.eye(len(values)), atol=2e-6)
    # ||A n_k||^2 is the k-th eigenvalue.
    response = np.sum((directions @ a.T) ** 2, axis=1)
    np.testing.assert_allclose(response, values, rtol=1e-5, atol=1e-5)
    rng = np.random.default_rng(0)
    trials = rng.standard_normal((20000, a.shape[1]))
    trials /= np.linalg.norm(trials, axis=1, keepdims=True)
    best = np.max(np.sum((trials @ a.T) ** 2, axis=1))
    assert best <= response[0] * (1 + 1e-6)
    assert best >= values[-1]


def test_top_directions_only(generators):
    generator = generators["genforce_stylegan_r32"]
    values, directions = sefa(generator)
    top_values, top_directions = sefa(generator, num_directions=5)
    np.testing.assert_allclose(top_values, values[:5], rtol=1e-5)
    assert np.all(np.abs(np.sum(top_directions * directions[:5], axis=1)) >= 0.9999)
    with pytest.raises(InputError, match="num_directions"):
        sefa(generator, num_directions=49)


def test_pggan_factorizes_its_first_layer_and_refuses_other_layers(generators):
    """sefa silently uses layer 0 whatever is asked (the fixture's '2-3' call returns layer 0's
    result); jgan accepts 'all' or 0 and refuses the rest (DESIGN.md)."""
    generator = generators["genforce_pggan_r32"]
    ref = reference("genforce_pggan_r32", "2to3")
    assert list(ref["layers"]) == [0]
    for layers in ("all", 0, "0", [0]):
        assert_parity(sefa_weight(generator, layers), ref["weight_normalized"], str(layers))
    for layers in ("2-3", 1, [0, 1]):
        with pytest.raises(InputError, match="first layer"):
            sefa(generator, layers)


def test_stylegan2_last_layer_is_the_final_torgb(generators):
    generator = generators["genforce_stylegan2_r32"]
    last = generator.num_layers - 1
    torgb = np.asarray(generator.synthesis.output3.style.weight[...])
    expected = (torgb / np.linalg.norm(torgb, axis=1, keepdims=True)).T
    np.testing.assert_allclose(sefa_weight(generator, last), expected, rtol=1e-6)


def test_stylegan3_reads_the_input_and_layer_affines():
    generator = jgan.load(fixture_dir("nvidia_sg3t_r32") / "network-snapshot-000000.pkl").generator
    synthesis = generator.synthesis
    last = getattr(synthesis, synthesis.layer_names[-1])
    for layers, module in ((0, synthesis.input), (generator.num_layers - 1, last)):
        weight = np.asarray(module.affine.weight[...])
        expected = (weight / np.linalg.norm(weight, axis=1, keepdims=True)).T
        np.testing.assert_allclose(sefa_weight(generator, layers), expected, rtol=1e-6)
    values, directions = sefa(generator)
    np.testing.assert_allclose(directions @ directions.T, np.eye(len(values)), atol=2e-6)


@pytest.mark.parametrize(
    "name,space",
    [
        ("genforce_stylegan_r32", "wp"),
        ("genforce_stylegan2_r32", "wp"),
        ("genforce_pggan_r32", "z"),
    ],
)
def test_edits_match_the_official_images(generators, name, space):
    """sefa.py's edit: the codes (W+ after truncation, or pixel-normed z) plus d * boundary on
    the factorized layers, then synthesis; with the official (unsorted) first boundary."""
    ref = reference(name, "all")
    codes, direction = ref["codes"], ref["boundaries"][0]
    for j, distance in enumerate(ref["distances"]):
        edited = codes.copy()
        if space == "wp":
            edited[:, ref["layers"]] += distance * direction
        else:
            edited += distance * direction
        image = jgan.synthesize(generators[name], edited, space=space)["image"]
        assert_parity(nchw(image), ref["edited_images_top1"][:, j], f"distance {distance}")


def test_parse_layers():
    assert parse_layers("all", 4) == [0, 1, 2, 3]
    assert parse_layers(None, 2) == [0, 1]
    assert parse_layers("0-3,8", 18) == [0, 1, 2, 3, 8]
    assert parse_layers(" 6 - 11 ", 14) == [6, 7, 8, 9, 10, 11]
    assert parse_layers(3, 4) == [3]
    assert parse_layers([2, 1, 2], 4) == [1, 2]
    assert parse_layers(np.array([1, 0]), 4) == [0, 1]
    for spec, match in [
        ("0-20", r"out of range: this model has 8 layers"),
        (8, "out of range"),
        (-1, "out of range"),
        ("3-1", "ascending"),
        ("a", "cannot read"),
        ("1,,2", "cannot read"),
        ([], "empty"),
        ([1.5], "integers"),
        (True, "must be"),
    ]:
        with pytest.raises(InputError, match=match):
            parse_layers(spec, 8)


def test_bad_layers_for_sefa(generators):
    with pytest.raises(InputError, match="out of range"):
        sefa(generators["genforce_stylegan2_r32"], "6-9")


def test_cli_writes_directions_edits_and_page(tmp_path, generators):
    name = "genforce_stylegan2_r32"
    source = fixture_dir(name) / f"{name}.pth"
    outdir = tmp_path / "sefa"
    args = ["--layers", "2-5", "--num-directions", "2", "--num-samples", "3"]
    args += ["--distances", "-2", "2", "3", "--trunc-psi", "0.7", "--seed", "4"]
    assert cli(["sefa", str(source), *args, "--outdir", str(outdir)]) == 0
    values, directions = sefa(generators[name], "2-5", num_directions=2)
    np.testing.assert_allclose(np.load(outdir / "eigenvalues.npy"), values, rtol=1e-6)
    np.testing.assert_allclose(np.load(outdir / "directions.npy"), directions, atol=1e-6)
    codes = np.load(outdir / "codes.npy")
    assert codes.shape == (3, 8, 48)
    settings = json.loads((outdir / "sefa.json").read_text())
    assert settings["distances"] == [-2.0, 2.0, 3] and settings["space"] == "wp"
    # A grid of 3 samples x 3 distances of 32 x 32 images per direction, with 2-pixel gaps.
    for k in range(2):
        assert Image.open(outdir / f"direction_{k:02d}.png").size == (3 * 34 + 2, 3 * 34 + 2)
    page = (outdir / "index.html").read_text()
    assert page.count("<img") == 2 * 3 * 3
    assert "+2.00" in page and "eigenvalue" in page
    # Outputs are not overwritten unless asked; a refused request leaves nothing behind.
    assert cli(["sefa", str(source), "--outdir", str(outdir)]) == 2
    pggan = fixture_dir("genforce_pggan_r32") / "genforce_pggan_r32.pth"
    assert cli(["sefa", str(pggan), "--layers", "2-3", "--outdir", str(tmp_path / "x")]) == 2
    bad = ["--distances", "-1", "1", "2.5", "--outdir", str(tmp_path / "y")]
    assert cli(["sefa", str(pggan), *bad]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sefa"]
