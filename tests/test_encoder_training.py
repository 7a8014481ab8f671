"""IDInvert encoder training: a tiny encoder learns to reconstruct, its batch norms train on
batch statistics, the exported model directory initialises inversion better than the mean
code, and configurations that cannot run say why.

One 8x8 run of the tiny config (a random tiny StyleGAN on blobs, adversarial term on) is
shared by the tests through a module-scope fixture.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jgan
from jgan import parallel
from jgan.cli.train import apply_overrides
from jgan.configs.idinvert_encoder import get_config
from jgan.data import Blobs, global_batch
from jgan.errors import InputError
from jgan.models.encoders import StyleGANEncoder
from jgan.training import train
from jgan.training.loop import compiled_init, compiled_step, make_trainer, run_keys
from jgan.training.state import split_module

RESOLUTION = 8
STEPS = 300
OVERRIDES = [f"--config.{part}.resolution={RESOLUTION}" for part in ("generator", "data")]
OVERRIDES += [f"--config.discriminator.resolution={RESOLUTION}"]


def tiny_config(**fields):
    config = apply_overrides(get_config("tiny"), OVERRIDES)
    config.update(fields)
    return config


def mse(x, y):
    return float(jnp.mean(jnp.square(jnp.asarray(x) - jnp.asarray(y))))


@pytest.fixture(scope="module")
def held_out():
    """Blobs the run never sees (another seed), as float images in [-1, 1]."""
    images = Blobs(RESOLUTION, 16, seed=7).images(np.arange(16))
    return images.astype(np.float32) / 127.5 - 1.0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(trainer, initial state, workdir) of a STEPS-step run of the tiny config."""
    workdir = tmp_path_factory.mktemp("encoder")
    config = tiny_config(total_steps=STEPS, log_every=100)
    trainer = make_trainer(config)
    initial = compiled_init(trainer, parallel.data_mesh())(run_keys(config.seed)[0])
    initial = jax.device_get(initial)  # the run donates its own copy
    train(config, workdir, progress=False)
    return trainer, initial, workdir


@pytest.fixture(scope="module")
def model(run):
    return jgan.load(run[2] / "model")


def mean_code_error(generator, images):
    """MSE of the image of w_avg (the mean code) against `images`."""
    w_avg = np.asarray(generator.truncation.w_avg[...]).reshape(1, -1)
    codes = np.repeat(w_avg, len(images), axis=0)
    return mse(jgan.synthesize(generator, codes, space="w")["image"], images)


def test_tiny_encoder_lowers_reconstruction_error(run, model, held_out):
    trainer, initial, _ = run
    before = mse(jax.jit(trainer.reconstruct)(initial, held_out), held_out)
    codes = jgan.encode(model.encoder, held_out)
    after = mse(jgan.synthesize(model.generator, codes, space="wp")["image"], held_out)
    baseline = mean_code_error(model.generator, held_out)
    print(f"held-out MSE {before:.4f} at init, {after:.4f} after {STEPS} steps", end="")
    print(f" (mean code {baseline:.4f})")
    # Better than at the start, and better than the best code-free guess, the mean image.
    assert after < 0.25 * before
    assert after < 0.8 * baseline


def test_run_trains_encoder_and_discriminator(run, model):
    _, initial, workdir = run
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [100, 200, 300]
    assert records[-1]["pixel_loss"] < records[0]["pixel_loss"]
    for name in ("adversarial_loss", "d_loss", "r1_penalty"):
        assert np.isfinite(records[-1][name])
    # The discriminator was fine-tuned; the generator is exactly the one the run started with.
    d_pairs = zip(
        jax.tree.leaves(initial.discriminator),
        jax.tree.leaves(split_module(model.discriminator)[1]),
        strict=True,
    )
    assert not all(np.array_equal(a, b) for a, b in d_pairs)
    g_pairs = zip(
        jax.tree.leaves(initial.frozen["generator"]),
        jax.tree.leaves(nnx.to_pure_dict(nnx.state(model.generator))),
        strict=True,
    )
    assert all(np.array_equal(a, b) for a, b in g_pairs)


def test_step_agrees_on_one_and_four_devices(run):
    """Batch norm sees the statistics of the whole batch (TF's SyncBN), however it is split:
    with per-device statistics (2 images) the reconstructions, hence the losses, would differ.
    (Parameters are not compared: a bias before a batch norm has a zero gradient up to
    rounding, which Adam turns into a step of about lr, differently for each reduction order.)"""
    trainer, initial, _ = run
    batch = {"image": Blobs(RESOLUTION, 16).images(np.arange(8))}
    results = []
    for mesh in (parallel.data_mesh(), Mesh(np.array(jax.devices()[:1]), ("data",))):
        state = jax.device_put(initial, NamedSharding(mesh, P()))
        sharded = global_batch(batch, NamedSharding(mesh, P("data")))
        _, metrics = compiled_step(trainer, mesh)(state, sharded, run_keys(0)[1])
        results.append(jax.device_get(metrics))
    metrics4, metrics1 = results
    for name in ("pixel_loss", "adversarial_loss", "d_loss", "r1_penalty"):
        np.testing.assert_allclose(metrics4[name], metrics1[name], rtol=1e-5)


def test_batch_norm_trained_on_batch_statistics(model):
    encoder = model.encoder
    assert isinstance(encoder, StyleGANEncoder)
    bn = encoder.block1.bn1.bn
    # Exported in eval mode, with running statistics moved away from their (0, 1) start.
    assert bn.use_running_average
    assert np.abs(np.asarray(bn.running_mean[...])).max() > 1e-3
    assert np.abs(np.asarray(bn.running_var[...]) - 1).max() > 1e-3


def test_exported_encoder_initialises_inversion(model, held_out):
    generator, encoder = model.generator, model.encoder
    images = held_out[:4]
    common = dict(steps=1, learning_rate=1e-9)
    from_mean = jgan.invert(generator, images, **common)
    from_encoder = jgan.invert(generator, images, init="encoder", encoder=encoder, **common)
    start_mean = from_mean["losses"]["total"][:, 0]
    start_encoder = from_encoder["losses"]["total"][:, 0]
    print(f"inversion start loss: mean code {start_mean.mean():.4f}, ", end="")
    print(f"encoder {start_encoder.mean():.4f}")
    assert start_encoder.mean() < 0.8 * start_mean.mean()
    # IDInvert's method takes the same encoder (init and domain regulariser).
    idinvert = jgan.invert(
        generator, images, method="idinvert", encoder=encoder, perceptual_weight=0.0, **common
    )
    np.testing.assert_allclose(idinvert["losses"]["pixel"][:, 0], start_encoder, rtol=1e-4)
    assert np.all(idinvert["losses"]["encoder"][:, 0] >= 0)


def test_generator_and_discriminator_come_from_the_model_file(run, model):
    """A run on a trained model starts from its generator and discriminator (here the tiny
    run's own export), with a fresh encoder."""
    config = tiny_config(model=str(run[2] / "model"))
    config.generator = None
    trainer = make_trainer(config)
    assert trainer.resolution == RESOLUTION  # as the loop, which builds shapes first
    state = trainer.init(jax.random.key(1, impl="rbg"))
    pairs = [
        (state.frozen["generator"], nnx.to_pure_dict(nnx.state(model.generator))),
        (state.discriminator, split_module(model.discriminator)[1]),
    ]
    for loaded, expected in pairs:
        for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(a, b)


def test_settings_that_cannot_run_say_why():
    config = tiny_config()
    config.generator = None
    with pytest.raises(InputError, match="config.model"):
        make_trainer(config)
    with pytest.raises(InputError, match="config.perceptual"):
        config = tiny_config()
        config.loss.perceptual_weight = 5e-5
        make_trainer(config)
    with pytest.raises(InputError, match="lr_decay_steps"):
        config = tiny_config()
        config.optimizer.lr_decay_steps = 0
        make_trainer(config)
