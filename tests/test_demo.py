"""`jgan demo` on the shipped testbed model: the report, and the numbers its model card states
(thresholds set from measurement, below the measured values; see
jgan/assets/testbed_model_card.md). Also the demo on other models, and its errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES
from jgan import assets
from jgan.cli.main import main
from jgan.data.testbed import FACTOR_NAMES
from jgan.demo import DemoSettings, run_demo
from jgan.demo import quality as demo_quality

# Thresholds on the shipped model, set below the values measured on it (model card).
BOUNDARY_ACCURACY = {  # validation accuracy of each factor's best boundary (measured)
    "shape": 0.70,  # 0.789
    "object_hue": 0.90,  # 0.985
    "background_hue": 0.80,  # 0.870
    "background_brightness": 0.90,  # 0.993
    "size": 0.55,  # 0.596
    "position_x": 0.90,  # 0.996
    "position_y": 0.90,  # 1.000
}
SEFA_EFFECT = 0.20  # score change of the column each top-5 direction moves most (min 0.247)
ENCODER_PSNR, INVERSION_PSNR = 22.0, 24.0  # dB on held-out test images (24.1, 25.8)
CLASSIFIER_TEST_ACCURACY = 0.98  # every factor: 1.000
GENERATED_AGREEMENT = {  # classifier vs read_factors on generated images (measured)
    "shape": 0.40,  # 0.523
    "object_hue": 0.80,  # 0.916
    "background_hue": 0.35,  # 0.470
    "background_brightness": 0.90,  # 0.980
    "size": 0.40,  # 0.549
    "position_x": 0.85,  # 0.943
    "position_y": 0.85,  # 0.945
}
FRECHET_DISTANCE = 8.0  # in the classifier's feature space (3.97; training images: 0.011)

SECTIONS = (
    "Random samples",
    "SeFa: closed-form directions",
    "InterFaceGAN boundaries",
    "Conditional editing",
    "Layer-wise ranking (HiGAN)",
    "Inverting held-out images, then editing them",
    "Multi-code restoration (mGANprior)",
    "Fair sampling (FairGen)",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The demo of the shipped model, run as a user runs it (its own process, so its compiled
    functions do not stay in the test process): (directory, metrics)."""
    out = tmp_path_factory.mktemp("demo") / "report"
    command = [sys.executable, "-m", "jgan.cli.main", "demo", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True)
    with open(out / "metrics.json") as f:
        return out, json.load(f)


def test_report_is_one_self_contained_page_with_every_section(report):
    out, metrics = report
    page = (out / "index.html").read_text()
    for title in SECTIONS:
        assert f">{title}</h2>" in page
    assert not re.search(r'src="(?!data:image/png;base64,)', page)  # nothing fetched
    assert page.count("<img") == len(list(out.glob("*.png")))  # each figure also as a PNG
    assert metrics["notes"]["test images"].startswith("the testbed's test split")
    assert (out / "fairgen" / "gmm.p").is_file()


def test_every_factor_has_an_accurate_boundary_that_edits_it(report):
    _, metrics = report
    accuracy = metrics["boundaries"]["validation_accuracy"]
    change = metrics["boundaries"]["edit_change"]
    assert {c.split("=")[0] for c in accuracy} == set(FACTOR_NAMES)
    for factor in FACTOR_NAMES:
        best = max((c for c in accuracy if c.split("=")[0] == factor), key=accuracy.get)
        assert accuracy[best] >= BOUNDARY_ACCURACY[factor], (factor, accuracy[best])
        assert change[best] > 0, (best, change[best])  # the edit moves its own score up


def test_top_sefa_directions_each_change_some_factor(report):
    _, metrics = report
    effects = metrics["sefa"]["largest_effect"]
    assert len(effects) == DemoSettings().sefa_directions
    assert min(effects) >= SEFA_EFFECT, effects
    eigenvalues = np.array(metrics["sefa"]["eigenvalues"])
    assert np.all(np.diff(eigenvalues) <= 0)


def test_conditional_edit_holds_the_condition_better(report):
    change = report[1]["conditional"]["change"]
    assert abs(change["conditional"][1]) < abs(change["plain"][1])


def test_layer_ranking_covers_every_layer(report):
    layers = report[1]["layers"]["layer_change"]
    assert all(len(v) == 8 and min(v) >= 0 for v in layers.values())


def test_inversion_reconstructs_held_out_images(report):
    inversion = report[1]["inversion"]
    assert inversion["encoder"]["psnr"] >= ENCODER_PSNR, inversion
    assert inversion["idinvert"]["psnr"] >= INVERSION_PSNR, inversion
    assert inversion["idinvert"]["psnr"] > inversion["encoder"]["psnr"]


def test_restoration_beats_the_naive_restoration(report):
    restoration = report[1]["restoration"]
    for task in ("inpainting", "super-resolution"):
        assert restoration[task]["restored"]["psnr"] > restoration[task]["naive"]["psnr"], task


def test_fairgen_brings_the_imbalanced_factor_toward_uniform(report):
    fairgen = report[1]["fairgen"]
    assert fairgen["attributes"][0] == "background_brightness"
    assert fairgen["kl_to_uniform"]["fair"] < 0.5 * fairgen["kl_to_uniform"]["direct"]
    share = {k: v["background_brightness"] for k, v in fairgen["positive_share"].items()}
    assert abs(share["fair"] - 0.5) < 0.5 * abs(share["direct"] - 0.5), share


def test_model_card_quality_figures_hold():
    quality = demo_quality.testbed_quality(assets.testbed_model_dir(), num=1000)
    for name, figures in quality["factors"].items():
        assert figures["classifier_test_accuracy"] >= CLASSIFIER_TEST_ACCURACY, name
        assert figures["classifier_agreement_on_generated"] >= GENERATED_AGREEMENT[name], name
    floor = quality["frechet_distance_train_floor"]
    assert floor < quality["frechet_distance_generated"] < FRECHET_DISTANCE
    light = quality["factors"]["background_brightness"]["generated_shares"]["light"]
    assert 0.05 < light < 0.4  # the imbalance the GAN learned


def test_demo_runs_on_any_model_jgan_loads(tmp_path):
    """A PGGAN checkpoint (Z space: no layers, no FairGen) with the mean-colour predictor."""
    tiny = DemoSettings(
        boundary_samples=400, edit_steps=3, effect_samples=8, sefa_directions=2, test_images=2,
        inversion_steps=4, restoration_images=2, restoration_steps=4, fair_samples=16,
        fit_samples=400,
    )  # fmt: skip
    model = FIXTURES / "genforce_pggan_r32" / "genforce_pggan_r32.pth"
    page = run_demo(tmp_path / "pggan", model, settings=tiny)
    with open(tmp_path / "pggan" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["notes"]["predictor"].startswith("mean colour")
    assert set(metrics["boundaries"]["validation_accuracy"]) == {"red", "green", "blue"}
    assert "This generator has no per-layer codes." in open(page).read()
    assert "optimize" in metrics["inversion"]


def test_demo_errors_name_the_problem(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert main(["demo", "--out", str(tmp_path / "taken")]) == 2
    assert "exists" in capsys.readouterr().err
    vgg = FIXTURES / "torchvision_vgg16" / "vgg16_features.pth"
    assert main(["demo", "--model", str(vgg), "--out", str(tmp_path / "x")]) == 2
    assert "holds no generator" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
