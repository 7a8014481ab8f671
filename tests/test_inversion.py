"""GAN inversion: known answers on the tiny genforce StyleGAN fixture (W+ codes recovered to
>= 40 dB), batching over devices and the domain regulariser (on a tiny StyleGAN2), NaN
handling, mGANprior's feature composition on PGGAN / StyleGAN / StyleGAN2, settings errors and
the `jgan invert` command. Multi-code inversion runs in test_restoration.py.

Every inversion here uses one settings structure and batch shape where it can: learning rates,
weights and step counts are traced, so those runs share one compiled function."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

import jgan
from conftest import fixture_dir
from jgan.cli.main import main as cli
from jgan.inversion import MGANPRIOR, multicode, optimize
from jgan.inversion.metrics import psnr
from jgan.models.encoders import StyleGANEncoder
from jgan.models.stylegan2 import StyleGAN2Generator
from jgan.models.vgg import VGG16

STEPS, LR = 100, 0.03
"""Adam in W+ from w_avg: enough to recover codes within 0.05 of w_avg to about 50 dB."""


def load_generator(name):
    return jgan.load(fixture_dir(name) / f"{name}.pth").generator


def known_codes(generator, n, seed):
    """W+ codes w_avg + 0.05 N(0, 1), independent per layer (not in W)."""
    w_avg = np.asarray(generator.truncation.w_avg[...]).reshape(1, 1, -1)
    shape = (n, generator.num_layers, generator.w_space_dim)
    return w_avg + 0.05 * np.asarray(jax.random.normal(jax.random.key(seed), shape))


@pytest.fixture(scope="module")
def generator():
    return load_generator("genforce_stylegan_r32")


@pytest.fixture(scope="module")
def targets(generator):
    """(W+ codes, their images) for 8 images."""
    codes = known_codes(generator, 8, seed=3)
    return codes, np.asarray(jgan.synthesize(generator, codes, space="wp")["image"])


@pytest.fixture(scope="module")
def inverted(generator, targets):
    return jgan.invert(generator, targets[1][:4], steps=STEPS, learning_rate=LR)


def test_known_wp_codes_are_recovered_to_40db(generator, targets, inverted):
    _, images = targets
    out = inverted
    assert out["codes"].shape == (4, generator.num_layers, generator.w_space_dim)
    assert out["losses"]["total"].shape == out["losses"]["pixel"].shape == (4, STEPS)
    assert np.all(np.asarray(psnr(out["images"], images[:4])) >= 40.0)
    total = out["losses"]["total"]
    assert np.all(total[:, -1] < 1e-2 * total[:, 0])
    # The losses are those of the codes each step started from: step 0 is the start, w_avg.
    w_avg = np.tile(np.asarray(generator.truncation.w_avg[...]), (4, generator.num_layers, 1))
    np.testing.assert_allclose(out["init_codes"], w_avg, rtol=1e-6)
    start = np.asarray(jgan.synthesize(generator, w_avg, space="wp")["image"])
    np.testing.assert_allclose(out["init_images"], start, atol=1e-5)
    np.testing.assert_allclose(total[:, 0], np.mean((start - images[:4]) ** 2, (1, 2, 3)), 1e-5)


def test_style_space_inversion(generator, targets, inverted):
    """StyleGAN's Y space (per-layer styles): it starts from the styles of w_avg, the same image
    as W+ from w_avg, and lowers the loss."""
    out = jgan.invert(generator, targets[1][:4], space="y", steps=20, learning_rate=LR)
    assert out["codes"].shape == (4, generator.num_layers, generator.y_space_dim)
    np.testing.assert_allclose(out["init_images"], inverted["init_images"], atol=1e-5)
    total = out["losses"]["total"]
    assert np.all(total[:, -1] < 0.2 * total[:, 0])


@pytest.fixture(scope="module")
def tiny():
    """A tiny StyleGAN2 with jgan's own initialisation: well conditioned, fast to compile."""
    config = dict(z_space_dim=8, w_space_dim=8, mapping_layers=1, mapping_fmaps=8)
    return StyleGAN2Generator(8, **config, fmaps_base=64, fmaps_max=8, rngs=nnx.Rngs(0))


def tiny_images(tiny, n, seed):
    return np.asarray(
        jgan.synthesize(tiny, jax.random.normal(jax.random.key(seed), (n, 8)))["image"]
    )


def test_eight_images_on_four_devices_match_one_at_a_time(tiny):
    """Two images per device, or one (padded to the device count): the same codes. XLA:CPU
    rounds some products differently for 2 and 1 samples per device (about 1e-7 of the loss),
    and Adam's normalised steps amplify rounding along directions of near-zero gradient, so
    the comparison uses a well-conditioned generator; on the genforce fixture, whose weights
    are randomised to extreme scales, codes differ by about 1e-3 after 100 steps while the
    reconstructions agree to 77 dB."""
    images = tiny_images(tiny, 8, seed=3)
    steps = 20
    together = jgan.invert(tiny, images, steps=steps, learning_rate=0.01)
    assert jax.device_count() == 4 and len(together["codes"].sharding.device_set) == 4
    for i in range(8):
        alone = jgan.invert(tiny, images[i : i + 1], steps=steps, learning_rate=0.01)
        np.testing.assert_allclose(alone["codes"][0], together["codes"][i], rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            alone["losses"]["total"][0], together["losses"]["total"][i], rtol=1e-5
        )
    total = together["losses"]["total"]
    assert np.all(total[:, -1] < total[:, 0])


def test_domain_regulariser_pulls_codes_into_the_encoder_domain(tiny):
    """||code - E(G(code))|| after inversion is smaller with IDInvert's regulariser than without
    it, from the same encoder start (a tiny random IDInvert encoder)."""
    images = tiny_images(tiny, 4, seed=4)
    encoder = StyleGANEncoder(
        8, w_space_dim=8, encoder_channels_base=8, encoder_channels_max=8, rngs=nnx.Rngs(0)
    )
    start = np.asarray(jgan.encode(encoder, images))
    common = dict(steps=60, learning_rate=0.03, init_codes=start)
    plain = jgan.invert(tiny, images, **common)
    regularised = jgan.invert(tiny, images, encoder=encoder, encoder_weight=2.0, **common)

    def distance(out):
        encoded = jgan.encode(encoder, out["images"])
        return np.sqrt(np.mean((np.asarray(out["codes"]) - np.asarray(encoded)) ** 2, (1, 2)))

    assert np.all(distance(regularised) < 0.8 * distance(plain))
    assert set(regularised["losses"]) == {"total", "pixel", "encoder"}
    # The first value is mean((c - E(G(c)))^2) of the starting codes.
    encoded = jgan.encode(encoder, regularised["init_images"])
    gap = np.mean((start - np.asarray(encoded)) ** 2, (1, 2))
    np.testing.assert_allclose(regularised["losses"]["encoder"][:, 0], gap, rtol=1e-4)


def test_nan_loss_is_an_input_error(generator, targets):
    broken = nnx.clone(generator)
    weight = broken.synthesis.layer3.weight
    weight[...] = jnp.full_like(weight[...], jnp.nan)
    with pytest.raises(jgan.InputError, match=r"loss became nan at step 0 of image 0"):
        jgan.invert(broken, targets[1][:4], steps=4, learning_rate=LR)
    with pytest.raises(jgan.InputError, match="NaN"):
        jgan.invert(generator, np.full((1, 32, 32, 3), np.nan, np.float32))


# --- multi-code (mGANprior) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, layer, space",
    [
        ("genforce_pggan_r32", 6, "z"),
        ("genforce_stylegan_r32", 3, "wp"),
        ("genforce_stylegan2_r32", 4, "w"),
    ],
)
def test_composing_identical_codes_with_unit_importance_is_the_generator(name, layer, space):
    """sum(alpha F) / K with K copies of one code and alpha = 1 is F: the split generator then
    gives the whole generator's image."""
    generator = load_generator(name)
    shape = optimize.code_shape(generator, space)
    channels = multicode.feature_channels(generator, shape, layer, space)
    graphdef, state = nnx.split(generator)

    @jax.jit
    def both(state, code):
        generator = nnx.merge(graphdef, state)
        codes = jnp.broadcast_to(code, (3, *shape))
        composed = multicode.compose(generator, codes, jnp.ones((3, channels)), layer, space)
        return composed, generator.generate(code, space=space)["image"]

    z = jax.random.normal(jax.random.key(0), (1, shape[-1] if space == "z" else 1))
    if space == "z":
        code = z
    else:
        z = jax.random.normal(jax.random.key(0), (1, generator.mapping.z_dim))
        code = generator.mapping(z)
        code = code if space == "w" else generator.truncation.broadcast(code)
    composed, image = both(state, code)
    np.testing.assert_allclose(composed, image, atol=1e-5)


def test_split_halves_read_their_own_layers():
    """StyleGAN2 (skip): the first half reads codes[:, :layer] only, and the halves together
    are the synthesis; a resnet synthesis refuses to split inside a block."""
    generator = load_generator("genforce_stylegan2_r32")
    graphdef, state = nnx.split(generator.synthesis)

    @jax.jit
    def halves(state, wp):
        synthesis = nnx.merge(graphdef, state)
        first = synthesis.features(wp, 3)
        changed = synthesis.features(wp.at[:, 3:].set(0.0), 3)
        return first, changed, synthesis.from_features(*first, wp, 3), synthesis(wp)

    wp = jax.random.normal(jax.random.key(1), (1, generator.num_layers, generator.w_space_dim))
    first, changed, whole, image = halves(state, wp)
    for a, b in zip(first, changed, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(whole, image, atol=1e-5)
    with pytest.raises(jgan.InputError, match=r"integer in \[1, 7\]"):
        generator.synthesis.features(wp, 8)
    resnet = nnx.eval_shape(
        lambda: StyleGAN2Generator(8, architecture="resnet", fmaps_base=64, rngs=nnx.Rngs(0))
    )
    with pytest.raises(jgan.InputError, match="between blocks"):
        resnet.synthesis.features(jnp.zeros((1, 6, 512)), 2)


# --- settings and errors -------------------------------------------------------------------------


def test_presets_follow_the_originals():
    assert optimize.IDINVERT.learning_rate == 0.01 and optimize.IDINVERT.steps == 100
    assert optimize.IDINVERT.perceptual_weight == 5e-5
    assert optimize.IDINVERT.perceptual_layer == "relu4_3"
    assert optimize.IDINVERT.perceptual_convention == "caffe"
    assert optimize.IDINVERT.encoder_weight == 2.0 and optimize.IDINVERT.optimizer == "adam"
    assert (MGANPRIOR.num_codes, MGANPRIOR.composing_layer, MGANPRIOR.steps) == (30, 6, 3000)
    assert (MGANPRIOR.optimizer, MGANPRIOR.learning_rate) == ("sgd", 1.0)
    assert optimize.preset("multicode", "colorize").num_codes == 20
    assert optimize.preset("multicode", "inpaint").perceptual_weight == 1e-4
    assert optimize.preset("idinvert", "diffuse").encoder_weight == 0.0


def test_bad_settings_are_input_errors(generator, targets):
    images = targets[1][:1]
    with pytest.raises(jgan.InputError, match="unknown setting.*'lr'"):
        jgan.invert(generator, images, lr=0.1)
    with pytest.raises(jgan.InputError, match="encoder="):
        jgan.invert(generator, images, method="idinvert")
    with pytest.raises(jgan.InputError, match="perceptual= a VGG16"):
        jgan.invert(generator, images, perceptual_weight=1.0)
    with pytest.raises(jgan.InputError, match=r"\(N, 32, 32, 3\).*--resize"):
        jgan.invert(generator, np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(jgan.InputError, match="spaces"):
        jgan.invert(load_generator("genforce_pggan_r32"), np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(jgan.InputError, match="identical"):
        jgan.invert(generator, images, method="multicode", init="mean", perceptual_weight=0.0)
    with pytest.raises(jgan.InputError, match="steps"):
        jgan.invert(generator, images, steps=0)
    with pytest.raises(jgan.InputError, match="init_codes must have shape"):
        jgan.invert(generator, images, init_codes=np.zeros((1, 8, 47), np.float32))


def test_perceptual_convention_is_checked(generator, targets):
    vgg = nnx.eval_shape(lambda: VGG16("torchvision", rngs=nnx.Rngs(0)))  # checked, not run
    encoder = nnx.eval_shape(lambda: StyleGANEncoder(32, w_space_dim=48, rngs=nnx.Rngs(0)))
    with pytest.raises(jgan.InputError, match="caffe-convention VGG16.*torchvision"):
        jgan.invert(generator, targets[1][:1], method="idinvert", encoder=encoder, perceptual=vgg)


# --- the command ---------------------------------------------------------------------------------


def test_invert_command_writes_codes_images_and_page(generator, targets, tmp_path):
    model = fixture_dir("genforce_stylegan_r32") / "genforce_stylegan_r32.pth"
    image = ((np.clip(targets[1][0], -1, 1) + 1) * 127.5).round().astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "face.png")
    wide = np.concatenate([image, image[:, :8]], axis=1)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    outdir = tmp_path / "out"
    args = [
        "invert",
        str(model),
        str(tmp_path / "face.png"),
        str(tmp_path / "wide.png"),
        "--steps",
        "6",
        "--learning-rate",
        str(LR),
        "--outdir",
        str(outdir),
    ]
    assert cli(args) == 2 and not outdir.exists()  # wide.png is 40x32: needs --resize
    assert cli([*args, "--resize"]) == 0
    codes = np.load(outdir / "codes.npy")
    assert codes.shape == (2, 8, 48)
    losses = np.load(outdir / "losses.npz")
    assert losses["total"].shape == (2, 6) and np.all(
        losses["total"][:, -1] < losses["total"][:, 0]
    )
    for name in ("face", "wide"):
        for part in ("input", "start", "inv"):
            assert (outdir / f"{name}_{part}.png").is_file()
    metrics = json.loads((outdir / "metrics.json").read_text())
    assert set(metrics["face"]) == {"inversion_mse", "inversion_psnr", "inversion_ssim"}
    page = (outdir / "index.html").read_text()
    assert all(title in page for title in ("input", "start (mean)", "inversion", "metrics"))
    assert (outdir / "image_list.txt").read_text() == "face\nwide\n"
