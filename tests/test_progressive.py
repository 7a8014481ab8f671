"""Progressive growing (PGGAN, StyleGAN): genforce's lod schedule at its stage boundaries, the
reals and the models at a lod, real learning through a fade-in, the exported model, resume.

The runs train the tiny configs at 8x8 (init 4x4: lod 1 for 50 steps, a 50-step fade-in, lod 0
from step 100 on), which compiles in half the time of 16x16.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgan
from jgan import parallel
from jgan.checkpoint import TrainCheckpoints
from jgan.cli.train import apply_overrides, load_config
from jgan.configs.pggan import get_config as pggan_config
from jgan.configs.stylegan import get_config as stylegan_config
from jgan.data import Blobs
from jgan.errors import InputError
from jgan.training import train
from jgan.training.distance import sliced_wasserstein
from jgan.training.loop import compiled_init, make_trainer, run_keys
from jgan.training.progressive import lod_reals, lod_schedule

RESOLUTION = 8
STEPS = 300
OVERRIDES = [f"--config.{net}.resolution={RESOLUTION}" for net in ("generator", "discriminator")]
OVERRIDES += [f"--config.data.resolution={RESOLUTION}"]
CONFIGS = {"pggan": pggan_config, "stylegan": stylegan_config}


def tiny_config(arch, **fields):
    config = apply_overrides(CONFIGS[arch]("tiny"), OVERRIDES)
    config.update(fields)
    return config


def leaves(state):
    return jax.tree.leaves(jax.device_get(state))


def generator_lod(generator):
    return generator.synthesis.lod if generator.arch == "stylegan" else generator.lod


@pytest.fixture(scope="module", params=["pggan", "stylegan"])
def learned(request, tmp_path_factory):
    """A 300-step run on blobs: (arch, trainer, workdir, final state)."""
    arch = request.param
    workdir = tmp_path_factory.mktemp(arch)
    trainer, state = train(tiny_config(arch, total_steps=STEPS, log_every=25), workdir,
                           progress=False)  # fmt: skip
    return arch, trainer, workdir, state


def test_lod_schedule_at_stage_boundaries():
    """genforce's stylegan_ffhq256 schedule (256 px from 8 px: lod 5, 600k + 600k images)."""
    images = [0, 599_999, 600_000, 900_000, 1_200_000, 1_800_000, 2_100_000, 5_700_000,
              6_000_000, 25_000_000]  # fmt: skip
    expected = [5.0, 5.0, 5.0, 4.5, 4.0, 4.0, 3.5, 0.5, 0.0, 0.0]
    np.testing.assert_allclose(lod_schedule(np.array(images), 5, 600_000, 600_000), expected)
    np.testing.assert_allclose(lod_schedule(np.array([0, 599, 600, 1200]), 2, 600, 0), [2, 2, 1, 0])
    np.testing.assert_allclose(lod_schedule(np.array([0, 10**6]), 3, 0, 0), [3, 3])  # no growing

    trainer = make_trainer(load_config("stylegan"))
    assert (trainer.init_lod, trainer.batch_size, trainer.minibatch_repeats) == (5, 32, 4)
    # The lod of a step is the schedule at the start of its group of 4 steps (32 images each).
    steps = np.array([18_750, 18_751, 18_752, 28_125, 28_128, 187_500])
    expected = [5.0, 5.0, 5 - 64 / 600_000, 5 - 299_968 / 600_000, 5 - 300_096 / 600_000, 0.0]
    np.testing.assert_allclose(trainer.lod(steps), expected, rtol=1e-6)
    # Learning-rate scale of the resolution being trained (8 px at lod 5, 128 px while it
    # fades in at lod 1.5, 256 px from lod 1 down).
    scales = [trainer.lr_scale(lod) for lod in (5.0, 2.0, 1.5, 1.0, 0.5, 0.0)]
    np.testing.assert_allclose(scales, [1.0, 1.0, 1.5, 1.5, 2.0, 2.0])

    pggan = make_trainer(load_config("pggan"))
    assert (pggan.init_lod, pggan.resolution) == (8, 1024)
    assert float(pggan.lod(9_600_000 // 32)) == 0.0 and float(pggan.lod(9_599_968 // 32)) > 0
    np.testing.assert_allclose(pggan.lr_scale(0.0), 3.0)


def block_means(images, size):
    """Mean over size x size blocks, repeated back to full size (numpy)."""
    n, h, w, c = images.shape
    means = images.reshape(n, h // size, size, w // size, size, c).mean(axis=(2, 4))
    return means.repeat(size, axis=1).repeat(size, axis=2)


def test_lod_reals_match_the_resolution_structure():
    images = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(lod_reals(images, 0.0, 2), images)
    np.testing.assert_allclose(lod_reals(images, 2.0, 2), block_means(images, 4), atol=1e-6)
    np.testing.assert_allclose(lod_reals(images, 1.0, 2), block_means(images, 2), atol=1e-6)
    blend = 0.75 * block_means(images, 2) + 0.25 * block_means(images, 4)
    np.testing.assert_allclose(lod_reals(images, jnp.float32(1.25), 2), blend, atol=1e-6)


def test_training_passes_the_fade_in_and_learns(learned):
    """The lod goes 1 -> 0 as scheduled, and the EMA generator's samples end much closer to
    the data than the initial generator's: sliced Wasserstein distance on the 8x8x3 pixels, 512
    samples each (measured: PGGAN 0.61 -> 0.22, StyleGAN 0.70 -> 0.17)."""
    arch, trainer, workdir, state = learned
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    lods = {r["step"]: r["lod"] for r in records}
    assert lods[25] == lods[50] == 1.0  # steps 0-49 show lod 1
    assert 0 < lods[75] < 1 and 0 < lods[100] < lods[75]  # the fade-in, steps 52-99
    assert all(lods[step] == 0.0 for step in range(125, STEPS + 1, 25))
    assert all(np.isfinite(r["g_loss"]) and np.isfinite(r["d_loss"]) for r in records)

    initial = compiled_init(trainer, parallel.data_mesh())(run_keys(0)[0])
    z = jax.random.normal(jax.random.key(123), (512, 32))
    reals = Blobs(RESOLUTION, 4096).images(np.arange(2048, 2560)) / 127.5 - 1.0
    key = jax.random.key(0)

    def distance(state):
        generator, _ = trainer.modules(state)
        return float(sliced_wasserstein(jgan.synthesize(generator, z)["image"], reals, key))

    before, after = distance(initial), distance(state)
    print(f"{arch}: sliced Wasserstein to the data: initial {before:.3f}, after {after:.3f}")
    assert after < 0.5 * before


def test_exported_model_renders_at_the_final_lod(learned):
    """The exported model holds lod 0 (G and D) and renders as the trained state; set to
    lod 1 it renders 2x2 blocks, as genforce's models do at a coarser level."""
    arch, trainer, workdir, state = learned
    bundle = jgan.load(workdir / "model")
    assert bundle.arch == arch
    generator = bundle.generator
    assert float(generator_lod(generator)[...]) == 0.0
    assert float(bundle.discriminator.lod[...]) == 0.0
    z = jax.random.normal(jax.random.key(5), (8, 32))
    expected, _ = trainer.modules(state)
    fine = np.asarray(jgan.synthesize(generator, z)["image"])
    np.testing.assert_array_equal(fine, jgan.synthesize(expected, z)["image"])
    assert np.abs(fine - block_means(fine, 2)).max() > 0.01  # real 8x8 detail

    generator_lod(generator)[...] = jnp.float32(1.0)
    coarse = np.asarray(jgan.synthesize(generator, z)["image"])
    np.testing.assert_allclose(coarse, block_means(coarse, 2), atol=1e-5)
    generator_lod(generator)[...] = jnp.float32(0.5)
    half = np.asarray(jgan.synthesize(generator, z)["image"])
    np.testing.assert_allclose(half, 0.5 * fine + 0.5 * coarse, atol=1e-4)


@pytest.mark.parametrize("learned", ["stylegan"], indirect=True)  # the schedule is shared
def test_resumed_run_matches_the_uninterrupted_one(learned, tmp_path):
    """Stopped at step 60 (in the fade-in) and resumed to 200 (past the optimizer reset at
    lod 0): exactly the uninterrupted run's checkpoint at step 200."""
    arch, trainer, workdir, _ = learned
    train(tiny_config(arch, total_steps=60), tmp_path, progress=False)
    _, resumed = train(tiny_config(arch, total_steps=200), tmp_path, progress=False)
    like = jax.device_get(resumed)
    straight, _ = TrainCheckpoints(workdir / "checkpoints").restore(like, step=200)
    for a, b in zip(leaves(resumed), leaves(straight), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_schedules_are_refused():
    config = tiny_config("stylegan")
    config.schedule.init_res = 6
    with pytest.raises(InputError, match=r"init_res must be a power of two in \[4, 8\]; got 6"):
        make_trainer(config)
    config = tiny_config("pggan")
    config.schedule.lr_schedule = {"256": 2.0}
    with pytest.raises(InputError, match="lr_schedule keys must be 'res<resolution>'"):
        make_trainer(config)
    config = tiny_config("pggan", ema_decay=1.0)
    with pytest.raises(InputError, match=r"ema_decay must be in \[0, 1\)"):
        make_trainer(config)
