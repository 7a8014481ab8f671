"""InterFaceGAN (jgan.analysis.boundaries, jgan.analysis.svm) against genforce/interfacegan's
manipulator on the interfacegan_reference fixture, against sklearn's SVC, known answers
(recovering a known direction, conditional directions orthogonal to their conditions, an edit
along a trained boundary raising its score on a real generator), boundary files, bad input and
`jgan boundary`."""

import json
import os

import numpy as np
import pytest
from sklearn import svm

import jgan
from conftest import assert_parity, fixture_dir, fixture_io
from jgan.analysis import (
    linear_interpolate,
    load_boundary,
    project_boundary,
    save_boundary,
    train_boundary,
)
from jgan.analysis.svm import linear_svm
from jgan.cli.main import main as cli
from jgan.errors import InputError

# fixture output -> (score column or the invalid-value scores, train_boundary arguments); the
# seed is the one the fixture gave np.random.seed before the official call.
TRAIN_CALLS = {
    "boundary_attr0_default": (0, dict(seed=0)),
    "boundary_attr0": (0, dict(chosen_num_or_ratio=0.2, split_ratio=0.7, seed=10)),
    "boundary_attr1": (1, dict(chosen_num_or_ratio=0.2, split_ratio=0.7, seed=11)),
    "boundary_attr2": (2, dict(chosen_num_or_ratio=0.2, split_ratio=0.7, seed=12)),
    "boundary_attr3": (3, dict(chosen_num_or_ratio=0.2, split_ratio=0.7, seed=13)),
    "boundary_attr0_invalid_filtered": (
        "scores_attr0_with_invalid",
        dict(chosen_num_or_ratio=300, split_ratio=0.8, invalid_value=-100.0, seed=20),
    ),
}


@pytest.fixture(scope="module")
def io():
    return fixture_io("interfacegan_reference")[0]


def scores_for(io, column):
    return io[column] if isinstance(column, str) else io["scores"][:, column : column + 1]


def unit(rng, *shape):
    v = rng.standard_normal(shape)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("name", sorted(TRAIN_CALLS))
def test_train_boundary_parity(io, name):
    column, kwargs = TRAIN_CALLS[name]
    boundary, report = train_boundary(
        io["latent_codes"], scores_for(io, column), return_report=True, **kwargs
    )
    reference = io[name]
    assert boundary.shape == reference.shape == (1, 16) and boundary.dtype == np.float32
    assert abs(np.linalg.norm(boundary) - 1) < 1e-6
    assert (boundary @ reference.T).item() >= 0.9999
    if f"{name}__train_indices" in io:  # the same split as the original, sample for sample
        np.testing.assert_array_equal(report["train_indices"], io[f"{name}__train_indices"])
        positive = np.asarray(report["train_indices"])[: report["train_num"]]
        np.testing.assert_array_equal(
            io[f"{name}__train_labels"], np.isin(report["train_indices"], positive)
        )


def test_report_counts(io):
    _, report = train_boundary(
        io["latent_codes"],
        io["scores_attr0_with_invalid"],
        300,
        0.8,
        invalid_value=-100.0,
        seed=20,
        return_report=True,
    )
    invalid = int(np.sum(io["scores_attr0_with_invalid"] == -100.0))
    assert report["num_codes"] == 2000 and report["num_invalid"] == invalid > 0
    assert (report["chosen_num"], report["train_num"], report["val_num"]) == (300, 240, 60)
    assert report["remaining_num"] == 2000 - invalid - 600
    assert report["remaining_positive"] + report["remaining_negative"] == report["remaining_num"]
    assert 0.9 < report["validation_accuracy"] <= 1 and 0.8 < report["remaining_accuracy"] <= 1


@pytest.mark.parametrize("noise", [0.1, 2.0])
def test_linear_svm_solves_the_problem_of_sklearn_svc(noise):
    """The interior-point solver and libsvm's SVC(kernel='linear') give the same hyperplane,
    on separable and on heavily overlapping classes."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 24))
    positive = x @ unit(rng, 24) + noise * rng.standard_normal(400) > 0
    w, b = linear_svm(x, positive)
    reference = svm.SVC(kernel="linear").fit(x, positive)
    expected = reference.coef_[0]
    assert w @ expected / np.linalg.norm(w) / np.linalg.norm(expected) >= 0.9999
    np.testing.assert_allclose(w, expected, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(b, reference.intercept_[0], atol=5e-3)


def test_train_boundary_recovers_a_known_direction():
    rng = np.random.default_rng(2)
    direction = unit(rng, 32)
    codes = rng.standard_normal((20000, 32)).astype(np.float32)
    scores = codes @ direction + 0.05 * rng.standard_normal(20000)
    boundary, report = train_boundary(codes, scores, return_report=True)
    assert float(boundary[0] @ direction) >= 0.99
    assert report["validation_accuracy"] == 1.0 and report["remaining_accuracy"] > 0.95


def test_layerwise_boundaries_for_wp_codes():
    """One SVM per layer on the same samples, each layer normalized on its own: only the layer
    the score reads finds the direction."""
    rng = np.random.default_rng(3)
    direction = unit(rng, 16)
    codes = rng.standard_normal((4000, 3, 16)).astype(np.float32)
    scores = codes[:, 1] @ direction
    boundary, report = train_boundary(codes, scores, 0.1, return_report=True)
    assert boundary.shape == (1, 3, 16) and boundary.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(boundary[0], axis=1), 1, atol=1e-6)
    assert float(boundary[0, 1] @ direction) >= 0.99
    assert max(abs(float(boundary[0, i] @ direction)) for i in (0, 2)) < 0.5
    assert len(report["validation_accuracy"]) == 3 and report["validation_accuracy"][1] == 1.0


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_project_boundary_parity(io, count):
    names = ["project_none", "project_1cond", "project_2cond", "project_3cond"]
    conditions = [io[f"boundary_attr{i}"] for i in range(1, count + 1)]
    projected = project_boundary(io["boundary_attr0"], *conditions)
    assert_parity(projected, io[names[count]], names[count])


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_conditional_direction_is_orthogonal_to_its_conditions(count):
    rng = np.random.default_rng(count)
    primal = unit(rng, 1, 64)
    conditions = [unit(rng, 1, 64) for _ in range(count)]
    projected = project_boundary(primal, *conditions).astype(np.float64)
    assert abs(np.linalg.norm(projected) - 1) < 1e-6
    for condition in conditions:
        assert abs((projected @ condition.T).item()) < 1e-6
    # It is the primal direction with its component in the conditions' span removed.
    span = np.linalg.qr(np.concatenate(conditions).T)[0]
    rest = primal[0] - span @ (span.T @ primal[0])
    np.testing.assert_allclose(projected[0], rest / np.linalg.norm(rest), atol=1e-6)


def test_linear_interpolate_parity(io):
    assert_parity(
        linear_interpolate(io["interp_input_code"], io["boundary_attr0"]), io["interp_default"]
    )
    custom = linear_interpolate(io["interp_input_code"], io["project_1cond"], -2.0, 5.0, 7)
    assert_parity(custom, io["interp_custom"])
    wp = linear_interpolate(io["interp_wp_input_code"], io["boundary_attr0"], -3.0, 3.0, 5)
    assert_parity(wp, io["interp_wp"])


def test_linear_interpolate_distances_are_absolute_for_codes_and_relative_for_wp():
    rng = np.random.default_rng(4)
    boundary = unit(rng, 1, 8)
    code = rng.standard_normal((1, 8))
    moved = linear_interpolate(code, boundary, -1.0, 2.0, 4)
    np.testing.assert_allclose(moved @ boundary[0], [-1, 0, 1, 2], atol=1e-6)
    wp = rng.standard_normal((1, 3, 8))
    moved = linear_interpolate(wp, boundary, -1.0, 2.0, 4)
    np.testing.assert_allclose(
        (moved - wp) @ boundary[0], np.repeat([[-1], [0], [1], [2]], 3, axis=1), atol=1e-6
    )


def test_an_edit_along_a_trained_boundary_moves_its_score():
    """On the genforce StyleGAN2 fixture: score = a fixed linear function of the image; a W
    boundary trained from samples and their scores raises the score of new samples."""
    name = "genforce_stylegan2_r32"
    generator = jgan.load(fixture_dir(name) / f"{name}.pth").generator
    pattern = np.random.default_rng(5).standard_normal((32, 32, 3)).astype(np.float32)

    def score(images):
        return np.einsum("nhwc,hwc->n", np.asarray(images), pattern)

    z = np.random.default_rng(6).standard_normal((528, 32)).astype(np.float32)
    out = jgan.synthesize(generator, z)
    w, scores = np.asarray(out["w"]), score(out["image"])
    boundary = train_boundary(w[:512], scores[:512], 0.1, seed=0)
    before, held_out = scores[512:], w[512:]  # 16 samples the boundary was not trained on
    after = score(jgan.synthesize(generator, held_out + 2.0 * boundary, space="w")["image"])
    assert np.mean(after > before) >= 0.9
    assert np.mean(after - before) > 0


def test_boundary_files_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    boundary = unit(rng, 1, 16)
    path = save_boundary(tmp_path / "b.npy", boundary)
    plain = np.load(path, allow_pickle=False)  # what the original's np.load reads
    assert plain.dtype == np.float32 and plain.shape == (1, 16)
    loaded, meta = load_boundary(path)
    assert meta is None and loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, boundary, rtol=1e-6)
    # HiGAN's dict form, written by jgan or by np.save as HiGAN does, and W+ boundaries.
    meta = {"type": "attribute", "manipulate_layers": "6-11"}
    layerwise = unit(rng, 1, 4, 16).astype(np.float32)
    save_boundary(tmp_path / "d.npy", layerwise, meta)
    loaded, loaded_meta = load_boundary(tmp_path / "d.npy")
    np.testing.assert_array_equal(loaded, layerwise)
    assert loaded_meta == meta
    meta = {"type": "attribute", "manipulate_layers": [6, 7, np.int64(8)]}
    np.save(tmp_path / "higan.npy", {"boundary": boundary, "meta_data": meta})
    loaded, loaded_meta = load_boundary(tmp_path / "higan.npy")
    np.testing.assert_allclose(loaded, boundary, rtol=1e-6)
    assert loaded_meta == meta
    # The shipped InterFaceGAN boundaries are float64.
    np.save(tmp_path / "f64.npy", boundary.astype(np.float64))
    assert load_boundary(tmp_path / "f64.npy")[0].dtype == np.float32


class _RunsCode:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_boundary_file_cannot_run_code(tmp_path):
    marker = str(tmp_path / "ran")
    np.save(tmp_path / "evil.npy", {"boundary": np.zeros((1, 4)), "meta_data": _RunsCode(marker)})
    with pytest.raises(InputError, match="posix.mkdir|os.mkdir"):
        load_boundary(tmp_path / "evil.npy")
    assert not os.path.exists(marker)
    with pytest.raises(InputError, match=r"meta_data\['f'\] must hold only"):
        save_boundary(tmp_path / "x.npy", np.ones((1, 4)), {"f": _RunsCode(marker)})


def test_bad_input():
    rng = np.random.default_rng(8)
    codes = rng.standard_normal((100, 8)).astype(np.float32)
    scores = rng.standard_normal(100)
    cases = [
        (lambda: train_boundary(codes, scores[:99]), "same length; got 100 codes and 99"),
        (lambda: train_boundary(codes, np.where(scores > 1, np.nan, scores)), "NaN"),
        (lambda: train_boundary(codes, np.ones(100)), "constant"),
        (lambda: train_boundary(codes[:10], scores[:10]), "too few samples"),
        (lambda: train_boundary(codes, scores, 0), "chosen_num_or_ratio"),
        (lambda: train_boundary(codes, scores, split_ratio=0), "split_ratio"),
        (lambda: train_boundary(codes[:, 0], scores), "codes must be"),
        (lambda: train_boundary(codes, np.stack([scores, scores], 1)), "one attribute"),
        (lambda: train_boundary(codes, np.r_[np.ones(60), np.zeros(40)], 0.5), "share scores"),
        (lambda: train_boundary(codes, scores, invalid_value="x"), "invalid_value"),
        (lambda: train_boundary(np.where(scores[:, None] > 2.5, np.inf, codes), scores), "inf"),
        (
            lambda: train_boundary(np.where(np.abs(scores[:, None]) < 0.1, np.nan, codes), scores),
            "NaN",
        ),
        (lambda: project_boundary(unit(rng, 1, 8), unit(rng, 1, 9)), "dimension 9"),
        (lambda: project_boundary(unit(rng, 1, 8), np.eye(8)[:1], np.eye(8)[:1]), "dependent"),
        (lambda: project_boundary(np.eye(8)[:1] + np.eye(8)[1:2], *np.eye(8)[:2, None]), "span"),
        (lambda: project_boundary(unit(rng, 8)), r"\(1, dim\)"),
        (lambda: linear_interpolate(codes[:1], unit(rng, 1, 9)), "does not match"),
        (lambda: linear_interpolate(codes[:2], unit(rng, 1, 8)), "shape"),
    ]
    for call, match in cases:
        with pytest.raises(InputError, match=match):
            call()
    # NaN scores are dropped when NaN is the invalid value.
    with_nan = np.where(np.arange(100) % 10 == 0, np.nan, scores)
    _, report = train_boundary(codes, with_nan, 0.2, invalid_value=np.nan, return_report=True)
    assert report["num_invalid"] == 10


def test_bad_boundary_files(tmp_path):
    np.save(tmp_path / "wrong.npy", np.ones((3, 16)))
    with pytest.raises(InputError, match=r"\(1, dim\) or \(1, num_layers, dim\)"):
        load_boundary(tmp_path / "wrong.npy")
    with pytest.raises(InputError, match="does not exist"):
        load_boundary(tmp_path / "missing.npy")
    np.save(tmp_path / "list.npy", np.array([1, "a"], dtype=object))
    with pytest.raises(InputError, match="Python object"):
        load_boundary(tmp_path / "list.npy")


def test_cli_trains_projects_and_reports(tmp_path, io):
    np.save(tmp_path / "codes.npy", io["latent_codes"])
    np.save(tmp_path / "scores.npy", io["scores"])
    save_boundary(tmp_path / "attr1.npy", io["boundary_attr1"])
    out = tmp_path / "out"
    args = ["--column", "0", "--ratio", "0.2", "--split", "0.7", "--seed", "10"]
    args += ["--condition", str(tmp_path / "attr1.npy"), "--outdir", str(out)]
    assert cli(["boundary", str(tmp_path / "codes.npy"), str(tmp_path / "scores.npy"), *args]) == 0
    boundary, meta = load_boundary(out / "boundary.npy")
    assert meta is None and (boundary @ io["boundary_attr0"].T).item() >= 0.9999
    conditional = load_boundary(out / "boundary_conditional.npy")[0]
    np.testing.assert_allclose(conditional, project_boundary(boundary, io["boundary_attr1"]))
    np.testing.assert_array_equal(
        np.load(out / "train_indices.npy"), io["boundary_attr0__train_indices"]
    )
    report = json.loads((out / "report.json").read_text())
    assert report["chosen_num"] == 400 and report["settings"]["seed"] == 10
    # Bad input fails before anything is written.
    bad = ["--outdir", str(tmp_path / "bad")]
    np.save(tmp_path / "short.npy", io["scores"][:10, 0])
    assert cli(["boundary", str(tmp_path / "codes.npy"), str(tmp_path / "short.npy"), *bad]) == 2
    assert cli(["boundary", str(tmp_path / "codes.npy"), str(tmp_path / "scores.npy"), *bad]) == 2
    assert not any(p.name.startswith((".jgan", "bad")) for p in tmp_path.iterdir())
