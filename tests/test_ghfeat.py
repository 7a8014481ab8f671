"""GH-Feat's hierarchical encoder: the original's layout at 256x256, which head predicts which
generator layers, tiling, batch norm in training mode, and a tiny trained encoder whose
per-layer styles reconstruct images and initialise Y-space inversion.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jgan
from jgan.cli.train import apply_overrides
from jgan.configs.ghfeat import get_config
from jgan.data import Blobs
from jgan.encoding import extract_features
from jgan.errors import InputError
from jgan.models.ghfeat import GHFeatEncoder
from jgan.models.registry import build_abstract
from jgan.models.stylegan import StyleGANGenerator
from jgan.training import train
from jgan.training.encoder import GHFeatTrainer
from jgan.training.loop import compiled_init, make_trainer, run_keys

GHFEAT_WIDTHS = (1024,) * 8 + (512,) * 2 + (256,) * 2 + (128,) * 2
"""ghfeat's `dsize`: twice the channels of StyleGAN-256's 14 synthesis layers."""
RESOLUTION = 16
STEPS = 300
TINY = dict(depth=10, backbone_width=8, fpn_channels=16)


def mse(x, y):
    return float(jnp.mean(jnp.square(jnp.asarray(x) - jnp.asarray(y))))


def test_original_layout_at_256():
    def build():
        encoder = GHFeatEncoder(256, GHFEAT_WIDTHS, rngs=nnx.Rngs(0))
        codes = encoder(jnp.zeros((2, 256, 256, 3)))
        return encoder, codes, encoder.layer_features(codes)

    encoder, codes, features = nnx.eval_shape(build)
    assert codes.shape == (2, 14, 1024)  # ghfeat.npy's (N, 14, 1024)
    assert [f.shape for f in features] == [(2, w) for w in GHFEAT_WIDTHS]
    assert encoder.latents_per_head == (4, 4, 6)
    assert encoder.level_sizes() == (16, 8, 4)  # res4, res5, res6
    # Heads read the 4x4x512 SAM maps: HighLevel/MidLevel give 4 x 1024, LowLevel 1792.
    assert encoder.high.dense.weight.shape == (4 * 1024, 4 * 4 * 512)
    assert encoder.mid.dense.weight.shape == (4 * 1024, 4 * 4 * 512)
    assert encoder.low.dense.weight.shape == (2 * 512 + 2 * 256 + 2 * 128, 4 * 4 * 512)
    assert encoder.stage5.conv3.weight.shape == (2048, 512, 1, 1)  # the extra res6 stage


def test_trainer_reads_layer_widths_from_the_generator():
    generator = build_abstract(StyleGANGenerator, dict(resolution=256))
    trainer = GHFeatTrainer(batch_size=8, generator=(("resolution", 256),), perceptual_weight=0)
    config = trainer.encoder_config(generator)
    assert config["layer_widths"] == GHFEAT_WIDTHS
    assert config["latent_space"] == "y"
    assert max(config["layer_widths"]) == generator.y_space_dim


@pytest.fixture(scope="module")
def encoder():
    """A fresh tiny encoder, initialised in one jitted call with an 'rbg' key (many times
    faster to compile than threefry, as the training loop's init)."""

    def build():
        rngs = nnx.Rngs(jax.random.key(1, impl="rbg"))
        return GHFeatEncoder(RESOLUTION, (64, 64, 32, 32, 16, 16), rngs=rngs, **TINY)

    module = nnx.eval_shape(build)
    nnx.update(module, jax.jit(lambda: nnx.state(build()))())
    return module


@functools.partial(jax.jit, static_argnames=("graphdef", "train"))
def _apply(graphdef, state, images, train=False):
    return nnx.merge(graphdef, state)(images, train=train)


def apply(encoder, images, train=False):
    return _apply(*nnx.split(encoder), images, train=train)


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(0), (8, RESOLUTION, RESOLUTION, 3), minval=-1)


def test_heads_predict_their_layers_and_narrow_layers_are_tiled(encoder, images):
    assert encoder.latents_per_head == (1, 1, 4)
    codes = apply(encoder, images)
    assert codes.shape == (8, 6, 64)
    for i, width in enumerate(encoder.layer_widths):
        np.testing.assert_array_equal(codes[:, i], jnp.tile(codes[:, i, :width], 64 // width))
    features = extract_features(encoder, images)
    assert [f.shape for f in features] == [(8, w) for w in (64, 64, 32, 32, 16, 16)]
    np.testing.assert_allclose(features[3], codes[:, 3, :32], atol=1e-5)
    # Shifting one head's bias moves exactly the layers that head predicts.
    graphdef, state = nnx.split(encoder)
    params = nnx.to_pure_dict(state)
    for head, layers in (("high", [0]), ("mid", [1]), ("low", [2, 3, 4, 5])):
        shifted = jax.tree.map(lambda x: x, params)
        shifted[head]["dense"]["bias"] = shifted[head]["dense"]["bias"] + 1.0
        changed = np.abs(np.asarray(_apply(graphdef, shifted, images) - codes)).max(axis=(0, 2))
        assert sorted(np.flatnonzero(changed > 1e-3)) == layers, head


def test_batch_norm_in_training_mode_normalises_the_batch(encoder, images):
    codes = apply(encoder, images, train=True)
    values = jnp.concatenate(encoder.layer_features(codes), axis=1)
    # The heads' batch norms start at scale 1, shift 0: batch mean 0, variance 1 per value.
    np.testing.assert_allclose(values.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(values.var(axis=0), 1.0, atol=2e-2)
    assert not np.allclose(apply(encoder, images), codes, atol=1e-2)  # eval: running stats


def test_bad_configurations_say_why(encoder):
    with pytest.raises(InputError, match="latents_per_head"):
        GHFeatEncoder(16, (64,) * 6, latents_per_head=(2, 2, 3), rngs=nnx.Rngs(0), **TINY)
    with pytest.raises(InputError, match="divide"):
        GHFeatEncoder(16, (64,) * 5 + (48,), rngs=nnx.Rngs(0), **TINY)
    with pytest.raises(InputError, match="depth"):
        GHFeatEncoder(16, (64,) * 6, depth=101, rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match=r"\(N, 16, 16, 3\)"):
        jgan.encode(encoder, np.zeros((1, 32, 32, 3), np.float32))
    idinvert = build_abstract(jgan.models.encoders.StyleGANEncoder, dict(resolution=16))
    with pytest.raises(InputError, match="GH-Feat encoder"):
        extract_features(idinvert, np.zeros((1, 16, 16, 3), np.float32))


# --- a tiny trained encoder --------------------------------------------------------------------


@pytest.fixture(scope="module")
def held_out():
    images = Blobs(RESOLUTION, 16, seed=7).images(np.arange(16))
    return images.astype(np.float32) / 127.5 - 1.0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(trainer, initial state, trained model) of the tiny config without the adversarial
    term (its code path is IDInvert's, tested in test_encoder_training.py)."""
    workdir = tmp_path_factory.mktemp("ghfeat")
    config = apply_overrides(get_config("tiny"), ["--config.loss.adversarial_weight=0"])
    config.update(total_steps=STEPS, log_every=100)
    trainer = make_trainer(config)
    initial = jax.device_get(compiled_init(trainer, jgan.parallel.data_mesh())(run_keys(0)[0]))
    train(config, workdir, progress=False)
    return trainer, initial, jgan.load(workdir / "model")


def test_tiny_ghfeat_learns_per_layer_styles(run, held_out):
    trainer, initial, model = run
    encoder, generator = model.encoder, model.generator
    assert isinstance(encoder, GHFeatEncoder) and encoder.latent_space == "y"
    # Trained on batch statistics: exported in eval mode, the running ones moved from (0, 1).
    assert encoder.use_running_average
    assert np.abs(np.asarray(encoder.high.bn.running_var[...]) - 1).max() > 1e-2
    before = mse(jax.jit(trainer.reconstruct)(initial, held_out), held_out)
    codes = jgan.encode(encoder, held_out)
    after = mse(jgan.synthesize(generator, codes, space="y")["image"], held_out)
    w_avg = np.asarray(generator.truncation.w_avg[...]).reshape(1, -1)
    mean_image = jgan.synthesize(generator, np.repeat(w_avg, 16, axis=0), space="w")["image"]
    baseline = mse(mean_image, held_out)
    print(f"held-out MSE {before:.4f} at init, {after:.4f} after {STEPS} steps", end="")
    print(f" (mean code {baseline:.4f})")
    assert after < 0.25 * before
    assert after < 0.8 * baseline


def test_ghfeat_styles_initialise_y_space_inversion(run, held_out):
    _, _, model = run
    images = held_out[:4]
    common = dict(space="y", steps=1, learning_rate=1e-9)
    from_mean = jgan.invert(model.generator, images, **common)["losses"]["total"][:, 0]
    from_encoder = jgan.invert(
        model.generator, images, init="encoder", encoder=model.encoder, **common
    )["losses"]["total"][:, 0]
    print(f"Y inversion start loss: mean code {from_mean.mean():.4f}, ", end="")
    print(f"GH-Feat {from_encoder.mean():.4f}")
    assert from_encoder.mean() < 0.8 * from_mean.mean()
    with pytest.raises(InputError, match="predicts 'y' codes"):
        jgan.invert(model.generator, images, init="encoder", encoder=model.encoder, steps=1)
