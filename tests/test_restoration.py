"""Restoration on top of inversion (colorization, super-resolution, inpainting, IDInvert's
semantic diffusion) with known answers on the genforce StyleGAN fixture, mGANprior's multi-code
inversion, the tasks' own arithmetic, and the quality metrics (MSE, PSNR, SSIM against an
independent SciPy computation, LPIPS)."""

import json

import jax
import numpy as np
import pytest
from PIL import Image
from scipy.signal import convolve2d

import jgan
from conftest import fixture_dir
from jgan.cli.main import main as cli
from jgan.inversion import Colorize, Diffuse, Inpaint, SuperResolve, paste
from jgan.inversion.metrics import gaussian_window, image_metrics, mse, psnr, ssim
from jgan.inversion.tasks import luminance
from jgan.ports import vgg as vgg_port
from jgan.ports.torch_pickle import read_torch_file

MODEL = "genforce_stylegan_r32"
STEPS, LR = 100, 0.03


@pytest.fixture(scope="module")
def generator():
    return jgan.load(fixture_dir(MODEL) / f"{MODEL}.pth").generator


@pytest.fixture(scope="module")
def truth(generator):
    """Ground-truth images of 4 known W+ codes near w_avg, and 4 far-away context images."""
    w_avg = np.asarray(generator.truncation.w_avg[...]).reshape(1, 1, -1)
    shape = (4, generator.num_layers, generator.w_space_dim)
    near = w_avg + 0.05 * np.asarray(jax.random.normal(jax.random.key(3), shape))
    far = w_avg + 1.0 * np.asarray(jax.random.normal(jax.random.key(4), shape))
    images = jgan.synthesize(generator, np.concatenate([near, far]), space="wp")["image"]
    images = np.asarray(images)
    return images[:4], images[4:]


def central_square(side, size):
    hole = np.zeros((side, side), np.float32)
    start = (side - size) // 2
    hole[start : start + size, start : start + size] = 1.0
    return hole


def restore(generator, images, task, **options):
    out = jgan.invert(generator, images, task=task, steps=STEPS, learning_rate=LR, **options)
    pixel = out["losses"]["pixel"]
    assert np.all(pixel[:, -1] < 0.1 * pixel[:, 0]), "the task loss must fall"
    return out


def assert_beats_degraded(out, truth):
    restored = np.asarray(psnr(out["result"], truth))
    naive = np.asarray(psnr(out["degraded"], truth))
    assert np.all(restored > naive + 3.0), (restored, naive)


def test_colorization(generator, truth):
    images, _ = truth
    out = restore(generator, images, Colorize())
    assert_beats_degraded(out, images)
    np.testing.assert_allclose(luminance(out["result"]), luminance(images), atol=1e-5)


def test_super_resolution(generator, truth):
    images, _ = truth
    out = restore(generator, images, SuperResolve(4, "bilinear"))
    assert_beats_degraded(out, images)
    np.testing.assert_allclose(out["result"], out["images"])


def test_inpainting(generator, truth, tmp_path):
    images, _ = truth
    hole = central_square(32, 12)
    out = restore(generator, images, Inpaint(hole))
    assert_beats_degraded(out, images)
    known = hole[None, :, :, None] == 0
    np.testing.assert_array_equal(np.where(known, out["result"], 0), np.where(known, images, 0))

    # The command: the mask as a PNG (white = missing), input and outputs as files.
    model = fixture_dir(MODEL) / f"{MODEL}.pth"
    Image.fromarray((hole * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    np.save(tmp_path / "faces.npy", np.clip(images[:2], -1, 1))
    outdir = tmp_path / "out"
    args = ["invert", str(model), str(tmp_path / "faces.npy"), "--task", "inpaint", "--steps"]
    assert cli([*args, "4", "--outdir", str(outdir)]) == 2  # no --mask
    assert cli([*args, "4", "--mask", str(tmp_path / "mask.png"), "--outdir", str(outdir)]) == 0
    for part in ("input", "degraded", "start", "inv", "result"):
        assert (outdir / f"faces_1_{part}.png").is_file()
    metrics = json.loads((outdir / "metrics.json").read_text())
    assert {"inversion_psnr", "result_psnr", "result_ssim"} <= set(metrics["faces_0"])
    assert "task result" in (outdir / "index.html").read_text()


def test_semantic_diffusion(generator, truth):
    """A crop of each ground truth pasted into a far-away image is diffused back towards the
    ground truth: masked pixel and perceptual losses (IDInvert's caffe VGG16, at relu2_2 to keep
    the test fast), from w_avg."""
    images, contexts = truth
    pasted, task = paste(images, contexts, 14, (16, 18))
    assert isinstance(task, Diffuse)
    vgg = jgan.load(fixture_dir("idinvert_vgg16") / "vgg16.pth").perceptual
    out = restore(
        generator, pasted, task, perceptual=vgg, perceptual_weight=1e-4, perceptual_layer="relu2_2"
    )
    assert set(out["losses"]) == {"total", "pixel", "perceptual"}
    np.testing.assert_array_equal(out["degraded"], pasted)
    assert_beats_degraded(out, images)


def test_multicode_inversion_lowers_the_loss():
    """mGANprior on the PGGAN fixture: codes and channel importances after layer 4, plain
    gradient descent with the original's learning rate."""
    generator = jgan.load(fixture_dir("genforce_pggan_r32") / "genforce_pggan_r32.pth").generator
    z = jax.random.normal(jax.random.key(2), (2, generator.z_space_dim))
    images = np.asarray(jgan.synthesize(generator, z)["image"])
    out = jgan.invert(
        generator,
        images,
        method="multicode",
        num_codes=4,
        composing_layer=4,
        steps=40,
        perceptual_weight=0.0,
    )
    assert out["codes"].shape == (2, 4, generator.z_space_dim)
    assert out["alphas"].shape == (2, 4, generator.get_nf(8))
    total = out["losses"]["total"]
    assert np.all(total[:, -1] < 0.5 * total[:, 0])
    assert (out["settings"].optimizer, out["settings"].learning_rate) == ("sgd", 1.0)


# --- the tasks' arithmetic -----------------------------------------------------------------------


def random_images(n=2, side=16, seed=0):
    return np.asarray(jax.random.uniform(jax.random.key(seed), (n, side, side, 3), minval=-1))


def test_colorize_keeps_luminance_and_takes_chroma():
    x, y = random_images(seed=0), random_images(seed=1)
    task = Colorize()
    result = task.result(x, y)
    np.testing.assert_allclose(luminance(result), luminance(x), atol=1e-6)
    np.testing.assert_allclose(result - luminance(result), y - luminance(y), atol=1e-6)
    gray = task.observe(x)
    np.testing.assert_allclose(gray[..., 0], x @ np.array([0.299, 0.587, 0.114]), atol=1e-6)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_super_resolution_observation():
    x, y = random_images(seed=0), random_images(seed=1)
    area = SuperResolve(4, "area")
    low = area.downsample(x)
    np.testing.assert_allclose(low[0, 1, 2], x[0, 4:8, 8:12].mean((0, 1)), atol=1e-6)
    np.testing.assert_allclose(
        mse(area.observe(x), area.observe(y)), mse(low, area.downsample(y)), rtol=1e-6
    )
    np.testing.assert_array_equal(SuperResolve(4, "nearest").downsample(x), x[:, ::4, ::4])
    smooth = np.ones((1, 16, 16, 3), np.float32) * 0.3
    np.testing.assert_allclose(SuperResolve(2).downsample(smooth), 0.3, atol=1e-6)
    with pytest.raises(jgan.InputError, match="divide"):
        SuperResolve(3).for_batch(x)
    with pytest.raises(jgan.InputError, match="at least 2"):
        SuperResolve(1)
    with pytest.raises(jgan.InputError, match="mode"):
        SuperResolve(2, "lanczos")


def test_inpaint_and_paste_geometry():
    x, y = random_images(seed=0), random_images(seed=1)
    hole = central_square(16, 4)
    task = Inpaint(hole).for_batch(x)
    assert task.hole.shape == (2, 16, 16, 1)
    result = task.result(x, y)
    np.testing.assert_array_equal(result[:, 6:10, 6:10], y[:, 6:10, 6:10])
    np.testing.assert_array_equal(result[:, :6], x[:, :6])
    np.testing.assert_array_equal(task.observe(x)[:, 6:10, 6:10], 0)
    with pytest.raises(jgan.InputError, match=r"\(16, 16\)"):
        Inpaint(np.ones((8, 8))).for_batch(x)
    with pytest.raises(jgan.InputError, match=r"\[0, 1\]"):
        Inpaint(hole * 2).for_batch(x)
    with pytest.raises(jgan.InputError, match="3 inpainting masks for 2 images"):
        Inpaint(np.zeros((3, 16, 16))).for_batch(x)
    # IDInvert: mask[y - size//2 : ..., x - size//2 : ...] for centre (x, y).
    pasted, diffuse = paste(x, y[:1], 4, (5, 9))
    crop = np.asarray(diffuse.crop)
    assert crop.sum() == 16 and crop[7:11, 3:7].all()
    np.testing.assert_array_equal(pasted[:, 7:11, 3:7], x[:, 7:11, 3:7])
    np.testing.assert_array_equal(pasted[:, :7], np.broadcast_to(y[:1, :7], pasted[:, :7].shape))
    with pytest.raises(jgan.InputError, match="does not fit"):
        paste(x, y, 8, (14, 8))


# --- metrics -------------------------------------------------------------------------------------


def scipy_ssim(x, y, data_range):
    """Wang et al.'s SSIM with the separable Gaussian window, 'valid' filtering, in float64."""
    window = gaussian_window().astype(np.float64)
    kernel = np.outer(window, window)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for a, b in zip(np.moveaxis(x, -1, 0), np.moveaxis(y, -1, 0), strict=True):
        a, b = a.astype(np.float64), b.astype(np.float64)

        def blur(v):
            return convolve2d(v, kernel, mode="valid")

        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
            (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        )
        values.append(s.mean())
    return np.mean(values)


def test_metrics_known_values():
    x = random_images(n=2, side=24, seed=0)
    y = np.clip(x + 0.2 * random_images(n=2, side=24, seed=1), -1, 1)
    np.testing.assert_allclose(psnr(x, x + 0.1), 10 * np.log10(4 / 0.01), rtol=1e-5)
    np.testing.assert_allclose(
        psnr(x * 127.5, (x + 0.1) * 127.5, 255.0),
        10 * np.log10(255**2 / 127.5**2 / 0.01),
        rtol=1e-5,
    )
    np.testing.assert_allclose(ssim(x, x), 1.0, atol=1e-6)
    expected = [scipy_ssim(a, b, 2.0) for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(ssim(x, y), expected, rtol=1e-4)
    # Constant images: the structure terms are (0 + C2) / (0 + C2) = 1, the luminance term
    # (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 0.2, -0.4, (0.01 * 2) ** 2
    constant = ssim(np.full((1, 16, 16, 1), a), np.full((1, 16, 16, 1), b))
    np.testing.assert_allclose(constant, (2 * a * b + c1) / (a * a + b * b + c1), rtol=1e-4)
    with pytest.raises(jgan.InputError, match="at least 11x11"):
        ssim(x[:, :8, :8], y[:, :8, :8])
    with pytest.raises(jgan.InputError, match="one shape"):
        mse(x, y[:1])


def test_lpips_in_image_metrics():
    trunk = read_torch_file(fixture_dir("torchvision_vgg16") / "vgg16_features.pth")
    rng = np.random.default_rng(0)
    heads = {
        k: rng.uniform(0, 1, (1, c, 1, 1)).astype(np.float32)
        for k, c in zip(vgg_port.HEAD_KEYS, (64, 128, 256, 512, 512), strict=True)
    }
    net = vgg_port.build_lpips(trunk, heads, "random heads")
    x = random_images(n=4, side=16, seed=0)
    y = np.clip(x + 0.3 * random_images(n=4, side=16, seed=1), -1, 1)
    out = image_metrics(x, y, lpips=net)
    assert set(out) == {"mse", "psnr", "ssim", "lpips"} and out["lpips"].shape == (4,)
    np.testing.assert_allclose(out["lpips"], jgan.lpips(net, x, y), rtol=1e-6)
    assert np.all(out["lpips"] > 0)
    np.testing.assert_allclose(image_metrics(x, x, lpips=net)["lpips"], 0.0, atol=1e-6)
    with pytest.raises(jgan.InputError, match="LPIPS compares images in"):
        image_metrics(x * 127.5, y * 127.5, lpips=net, data_range=255.0)


def test_task_errors(generator, truth):
    images, _ = truth
    with pytest.raises(jgan.InputError, match="task must be"):
        jgan.invert(generator, images, task="colorize")
    with pytest.raises(jgan.InputError, match="no encoder regulariser"):
        jgan.invert(generator, images, task=Diffuse(np.ones((32, 32))), encoder_weight=1.0)
