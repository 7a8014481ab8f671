"""FairGen: shifts to boundary cells, one GMM per cell, equal shares, the official GMM file
format read safely, the fairness report, and `jgan fairgen` on a tiny StyleGAN2."""

import json
import os
import pickle

import jax
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import jgan
from conftest import fixture_dir
from jgan.analysis import fairgen, project_boundary, train_boundary
from jgan.analysis.generate import score_codes
from jgan.analysis.predictors import mean_color
from jgan.cli.fairgen import latent_codes
from jgan.cli.main import main as cli
from jgan.errors import CheckpointError, InputError

NAME = "genforce_stylegan2_r32"  # W of 48 dimensions, 32 x 32 images
OFFICIAL_KEYS = ["-3.0_-3.0", "-3.0_3.0", "3.0_-3.0", "3.0_3.0"]


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """sklearn's EM slows down a hundredfold when a BLAS thread per core competes with other
    processes on a shared 2-core machine."""
    with threadpool_limits(1):
        yield


def unit(rng, *shape):
    v = rng.standard_normal(shape)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def two_blobs(rng, num=300, dim=3):
    """Codes from two well separated Gaussians: BIC must choose two components."""
    centres = np.array([[-6.0] + [0.0] * (dim - 1), [6.0] + [0.0] * (dim - 1)])
    return centres[rng.integers(2, size=num)] + rng.standard_normal((num, dim))


def test_shift_moves_codes_to_signed_distances_of_the_orthogonalised_boundaries():
    rng = np.random.default_rng(0)
    n1, n2 = unit(rng, 1, 16), unit(rng, 1, 16)
    n2 = (n2 + 0.6 * n1) / np.linalg.norm(n2 + 0.6 * n1)  # correlated attributes
    codes = rng.standard_normal((50, 16)) * 2
    cells = fairgen.shift_to_cells(codes, [n1, n2], origin="zero")  # InterFaceGAN's distances
    assert list(cells) == OFFICIAL_KEYS
    n2_conditional = project_boundary(n2, n1)[0].astype(np.float64)
    rest = np.linalg.qr(np.concatenate([n1, n2_conditional[None]]).T, mode="complete")[0][:, 2:]
    for key, shifted in cells.items():
        v1, v2 = fairgen.cell_signs(key)
        np.testing.assert_allclose(shifted @ n1[0], 3.0 * v1, atol=1e-4)
        np.testing.assert_allclose(shifted @ n2_conditional, 3.0 * v2, atol=1e-4)
        np.testing.assert_allclose(shifted @ rest, codes @ rest, atol=1e-4)  # the rest is kept
    origin = rng.standard_normal(16)
    moved = fairgen.shift_codes(codes, [n1], (-1,), distance=2.0, origin=origin)
    np.testing.assert_allclose((moved - origin) @ n1[0], -2.0, atol=1e-4)
    moved = fairgen.shift_codes(codes, [n1], (1,))  # by default from the codes' mean
    np.testing.assert_allclose((moved - codes.mean(axis=0)) @ n1[0], 3.0, atol=1e-4)
    added = fairgen.shift_codes(codes, [n1, n2], (1, -1), mode="offset")
    np.testing.assert_allclose(added, codes + 3.0 * (n1[0] - n2_conditional), atol=1e-5)
    assert fairgen.cell_signs("3.0_-3.0") == (1, -1)


def test_fit_chooses_components_by_bic_and_the_gmm_file_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    gmm, bic = fairgen.fit_gmm(two_blobs(rng), max_components=4)
    assert sorted(bic) == [1, 2, 3, 4] and min(bic, key=bic.get) == 2
    assert len(gmm["weights"]) == 2 and gmm["params"] == "kmeans"
    np.testing.assert_allclose(np.sort(gmm["mean"][:, 0]), [-6, 6], atol=0.5)
    gmms = {"-3.0": gmm, "3.0": fairgen.fit_gmm(two_blobs(rng) + 1, 3)[0]}
    path = fairgen.save_gmms(tmp_path / "gmm.p", gmms)
    loaded = fairgen.load_gmms(path)
    assert list(loaded) == ["-3.0", "3.0"]
    for key in gmms:
        for field in ("cov", "mean", "weights"):
            np.testing.assert_array_equal(loaded[key][field], gmms[key][field])
    # The Colab's recipe: a default GaussianMixture with the fields set by hand, sample()[0].
    from sklearn.mixture import GaussianMixture

    colab = GaussianMixture(init_params=loaded["3.0"]["params"], random_state=5)
    colab.covariances_, colab.means_ = loaded["3.0"]["cov"], loaded["3.0"]["mean"]
    colab.weights_ = loaded["3.0"]["weights"]
    np.testing.assert_array_equal(
        fairgen.sample_gmm(loaded["3.0"], 40, seed=5), colab.sample(40)[0].astype(np.float32)
    )
    np.testing.assert_array_equal(
        fairgen.sample_gmm(gmms["3.0"], 40, seed=5), fairgen.sample_gmm(loaded["3.0"], 40, 5)
    )
    # What jgan writes is what the Colab loads: a plain pickle of the official structure.
    with open(path, "rb") as f:
        assert pickle.load(f).keys() == gmms.keys()


def test_fair_sample_draws_equal_shares_shuffled_and_seeded():
    means = {key: np.full((1, 2), 10.0 * i) for i, key in enumerate(OFFICIAL_KEYS)}
    gmms = {
        key: {"params": "kmeans", "cov": np.eye(2)[None], "mean": mean, "weights": np.ones(1)}
        for key, mean in means.items()
    }
    codes, cells = fairgen.fair_sample(gmms, 402, seed=3)
    assert codes.shape == (402, 2) and codes.dtype == np.float32
    counts = [int(np.sum(cells == key)) for key in OFFICIAL_KEYS]
    assert sorted(counts) == [100, 100, 101, 101]
    for key in OFFICIAL_KEYS:  # each code comes from the mixture of its cell
        assert np.abs(codes[cells == key] - means[key]).max() < 6
    assert len(set(cells[:40])) == 4  # shuffled, not in blocks
    again, _ = fairgen.fair_sample(gmms, 402, seed=3)
    np.testing.assert_array_equal(codes, again)
    assert not np.array_equal(codes, fairgen.fair_sample(gmms, 402, seed=4)[0])
    subgroup, cells = fairgen.fair_sample(gmms, 10, cells=["3.0_-3.0"])
    assert set(cells) == {"3.0_-3.0"} and np.abs(subgroup - 20).max() < 6


def test_attribute_distribution_and_report_known_answers():
    signs = np.array([[1]] * 85 + [[-1]] * 15)
    stats = fairgen.attribute_distribution(signs)
    assert stats["cells"] == ["-3.0", "3.0"] and stats["counts"] == [15, 85]
    kl = 0.85 * np.log(0.85 / 0.5) + 0.15 * np.log(0.15 / 0.5)
    np.testing.assert_allclose(stats["kl_to_uniform"], kl, rtol=1e-12)
    np.testing.assert_allclose(stats["l2_discrepancy"], np.sqrt(2) * 0.35, rtol=1e-12)
    one_cell = fairgen.attribute_distribution(np.ones((7, 2), np.int8))
    np.testing.assert_allclose(one_cell["kl_to_uniform"], np.log(4), rtol=1e-12)
    scores = np.array([[0.2, -1.0], [0.6, 1.0], [0.9, 2.0]])
    np.testing.assert_array_equal(
        fairgen.attribute_signs(scores, [0.5, 0.7], columns=[1, 0]), [[-1, -1], [1, -1], [1, 1]]
    )
    codes = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    np.testing.assert_allclose(fairgen.mean_pairwise_distance(codes), 20 / 3)
    np.testing.assert_allclose(fairgen.mean_pairwise_distance(codes, [np.array([[0.0, 1.0]])]), 4.0)


def _official_pickle(path, gmms, numpy_module="numpy.core.multiarray"):
    """The Colab's file as an older numpy and pickle.dump wrote it (protocol 2, numpy 1.x)."""
    data = pickle.dumps(gmms, protocol=2)
    path.write_bytes(data.replace(b"numpy._core.multiarray", numpy_module.encode()))


def test_loads_a_hand_built_official_gmm_file(tmp_path):
    rng = np.random.default_rng(3)
    gmms = {}
    for key in OFFICIAL_KEYS:
        a = rng.standard_normal((2, 5, 5))
        gmms[key] = {
            "params": "kmeans",
            "cov": a @ a.transpose(0, 2, 1) + np.eye(5),
            "mean": rng.standard_normal((2, 5)),
            "weights": np.array([0.25, 0.75]),
        }
    _official_pickle(tmp_path / "age_gender_gmm.p", gmms)
    assert b"numpy.core.multiarray" in (tmp_path / "age_gender_gmm.p").read_bytes()
    loaded = fairgen.load_gmms(tmp_path / "age_gender_gmm.p")
    assert list(loaded) == OFFICIAL_KEYS
    np.testing.assert_array_equal(loaded["3.0_-3.0"]["cov"], gmms["3.0_-3.0"]["cov"])
    codes, cells = fairgen.fair_sample(loaded, 8)
    assert codes.shape == (8, 5) and sorted(cells) == sorted(OFFICIAL_KEYS * 2)


class _RunsCode:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_malicious_and_malformed_gmm_files_are_refused(tmp_path):
    marker = str(tmp_path / "ran")
    good = {"params": "kmeans", "cov": np.eye(2)[None], "mean": np.zeros((1, 2))}
    good["weights"] = np.ones(1)
    evil = {"3.0": {**good, "params": _RunsCode(marker)}}
    (tmp_path / "evil.p").write_bytes(pickle.dumps(evil, protocol=4))
    with pytest.raises(CheckpointError, match="mkdir', which is refused.*sklearn objects"):
        fairgen.load_gmms(tmp_path / "evil.p")
    assert not os.path.exists(marker)
    from sklearn.mixture import GaussianMixture  # the Colab's first files: sklearn objects

    fitted = GaussianMixture(1).fit(np.random.default_rng(0).standard_normal((20, 2)))
    (tmp_path / "sklearn.p").write_bytes(pickle.dumps({"3.0": fitted}, protocol=4))
    with pytest.raises(CheckpointError, match="GaussianMixture', which is refused"):
        fairgen.load_gmms(tmp_path / "sklearn.p")
    cases = [
        ({"3.0": {k: v for k, v in good.items() if k != "cov"}}, r"\['3.0'\] must be a dict with"),
        ({"3.0": {**good, "cov": np.ones((1, 2))}}, r"full covariances 'cov' \(1, 2, 2\)"),
        ({"3.0": {**good, "weights": np.array([0.5])}}, "summing to 1"),
        ({"3.0": {**good, "cov": -np.eye(2)[None]}}, "not positive definite"),
        ({"male": good}, "'male' is not of the form '3.0_-3.0'"),
        ({"3.0": good, "3.0_3.0": good}, "has 2 attributes, the others 1"),
        ([good], "must be a non-empty dict"),
    ]
    with pytest.raises(CheckpointError, match="missing.p does not exist"):
        fairgen.load_gmms(tmp_path / "missing.p")
    for content, message in cases:
        (tmp_path / "bad.p").write_bytes(pickle.dumps(content, protocol=4))
        with pytest.raises(CheckpointError, match=message):
            fairgen.load_gmms(tmp_path / "bad.p")


def test_bad_input_is_reported():
    rng = np.random.default_rng(4)
    codes = rng.standard_normal((20, 8))
    with pytest.raises(InputError, match="codes have dimension 8 but the boundaries 6"):
        fairgen.shift_to_cells(codes, [unit(rng, 1, 6)])
    with pytest.raises(InputError, match="boundary 1 has dimension 6, boundary 0 8"):
        fairgen.shift_to_cells(codes, [unit(rng, 1, 8), unit(rng, 1, 6)])
    b = unit(rng, 1, 8)
    with pytest.raises(InputError, match="boundary 1: the primal boundary lies in the span"):
        fairgen.shift_to_cells(codes, [b, -2 * b])
    with pytest.raises(InputError, match="layer-wise"):
        fairgen.shift_to_cells(codes, [np.ones((1, 3, 8))])
    with pytest.raises(InputError, match="cell '3.0' has no codes"):
        fairgen.fit_cell_gmms({"-3.0": codes, "3.0": codes[:0]}, 1, progress=False)
    with pytest.raises(InputError, match="between 1 and the number of codes"):
        fairgen.fit_gmm(codes, 30)
    gmms, _ = fairgen.fit_cell_gmms({"-3.0": codes, "3.0": codes + 1}, 1, progress=False)
    with pytest.raises(InputError, match="at least the number of cells"):
        fairgen.fair_sample(gmms, 1)
    with pytest.raises(InputError, match="cells must be among"):
        fairgen.fair_sample(gmms, 4, cells=["3.0_3.0"])
    with pytest.raises(InputError, match="one number or one per attribute"):
        fairgen.attribute_signs(np.zeros((4, 2)), [0.0, 1.0, 2.0])
    with pytest.raises(InputError, match="mode must be one of"):
        fairgen.shift_codes(codes, [b], (1,), mode="add")
    with pytest.raises(InputError, match="origin must be one of"):
        fairgen.shift_codes(codes, [b], (1,), origin="median")
    with pytest.raises(InputError, match="origin must be 8 finite values"):
        fairgen.shift_codes(codes, [b], (1,), origin=np.zeros(6))


@pytest.fixture(scope="module")
def model_path():
    return fixture_dir(NAME) / f"{NAME}.pth"


def test_fairgen_command_balances_imbalanced_attributes(tmp_path, model_path):
    """Redness with a threshold that ~85% of direct samples pass, and greenness split at its
    median: FairGen sampling brings the predicted distribution over the 4 cells close to
    uniform (KL measured) and keeps the spread of the other factors."""
    generator = jgan.load(model_path).generator
    render = {"space": "w", "trunc_psi": 0.7, "trunc_layers": 8, "batch_size": 128}
    codes, space = latent_codes(generator, jax.random.key(11), 512)
    colours = score_codes(generator, codes, mean_color, **render)
    args = ["--predictor", "jgan.analysis.predictors:mean_color", "--num", "256"]
    for column, percentile in ((0, 15), (1, 50)):  # red, green
        boundary = tmp_path / f"boundary{column}.npy"
        np.save(boundary, train_boundary(codes, colours[:, column], 0.25))
        threshold = np.percentile(colours[:, column], percentile)
        args += ["--boundary", str(boundary), "--column", str(column)]
        args += ["--threshold", str(threshold)]
    out = tmp_path / "fair"
    args += ["--fit-num", "512", "--max-components", "3", "--batch-size", "128", "--preview", "8"]
    assert cli(["fairgen", str(model_path), *args, "--outdir", str(out)]) == 0
    report = json.loads((out / "fairgen.json").read_text())["report"]
    direct, fair = report["direct"], report["fair"]
    assert direct["cells"] == OFFICIAL_KEYS and 0.75 < sum(direct["shares"][2:]) < 0.95
    assert sum(fair["counts"]) == 256
    assert fair["kl_to_uniform"] < 0.1 * direct["kl_to_uniform"], (direct, fair)
    assert fair["l2_discrepancy"] < 0.3 * direct["l2_discrepancy"]
    assert report["cell_accuracy"] > 0.9
    assert report["diversity"]["orthogonal_to_attributes"]["ratio"] > 0.8
    fair_w, cells = np.load(out / "fair_w.npy"), np.load(out / "fair_cells.npy")
    assert fair_w.shape == (256, 48) and sorted(set(cells)) == OFFICIAL_KEYS
    np.testing.assert_allclose(
        np.load(out / "fair_scores.npy"),
        score_codes(generator, fair_w, mean_color, **render),
        atol=1e-5,
    )
    assert (out / "index.html").read_text().count("<img") == 2
    assert list(fairgen.load_gmms(out / "gmm.p")) == OFFICIAL_KEYS
    # The fitted mixtures serve again without boundaries; a mismatched model is refused.
    again = tmp_path / "again"
    args = ["--gmm", str(out / "gmm.p"), "--predictor", "jgan.analysis.predictors:mean_color"]
    args += ["--num", "128", "--batch-size", "128", "--preview", "0"]
    assert cli(["fairgen", str(model_path), *args, "--outdir", str(again)]) == 0
    assert json.loads((again / "fairgen.json").read_text())["fit"] is None
    fairgen.save_gmms(tmp_path / "wide.p", {"3.0": _gmm(64), "-3.0": _gmm(64)})
    args[1] = str(tmp_path / "wide.p")
    assert cli(["fairgen", str(model_path), *args, "--outdir", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def _gmm(dim):
    """A one-component mixture of `dim` dimensions in the official format."""
    return {
        "params": "kmeans",
        "cov": np.eye(dim)[None],
        "mean": np.zeros((1, dim)),
        "weights": np.ones(1),
    }
