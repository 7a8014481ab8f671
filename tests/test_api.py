"""The public contract: jgan.load / synthesize / discriminate against the genforce fixtures,
with the batch sharded over the 4 emulated devices, and jgan model directories."""

import jax
import numpy as np
import pytest

import jgan
from conftest import assert_parity, fixture_dir, fixture_io, nchw
from jgan import api
from jgan.models.latent import mix_styles

STYLE_FIXTURES = ["genforce_stylegan_r32", "genforce_stylegan2_r32"]


@pytest.fixture(scope="module", params=["genforce_pggan_r32", *STYLE_FIXTURES])
def fixture(request):
    name = request.param
    path = fixture_dir(name) / f"{name}.pth"
    io, _ = fixture_io(name)
    return name, jgan.load(path), io


def test_generator_parity_sharded(fixture):
    name, bundle, io = fixture
    out = jgan.synthesize(bundle.generator, io["z"])
    assert len(out["image"].sharding.device_set) == jax.device_count() == 4
    assert_parity(nchw(out["image"]), io["image"], f"{name} image")
    raw = jgan.synthesize(bundle.generator_raw, io["z"])
    assert_parity(nchw(raw["image"]), io["image_generator"], f"{name} image_generator")
    if "w" in io:
        assert_parity(out["w"], io["w"], f"{name} w")
        assert_parity(out["wp"], io["wp"], f"{name} wp")


@pytest.mark.parametrize("name", STYLE_FIXTURES)
def test_truncation_and_wp_parity(name):
    bundle = jgan.load(fixture_dir(name) / f"{name}.pth")
    io, _ = fixture_io(name)
    psi, layers = float(io["trunc_psi"]), int(io["trunc_layers"])
    out = jgan.synthesize(bundle.generator, io["z"], trunc_psi=psi, trunc_layers=layers)
    assert_parity(out["wp"], io["wp_trunc"], "wp_trunc")
    assert_parity(nchw(out["image"]), io["image_trunc"], "image_trunc")
    from_wp = jgan.synthesize(bundle.generator, io["wp_trunc"], space="wp")
    assert_parity(nchw(from_wp["image"]), io["image_from_wp_trunc"], "image_from_wp_trunc")
    # W codes broadcast to every layer give the same as Z codes mapped to those W codes.
    from_w = jgan.synthesize(
        bundle.generator, io["w"], space="w", trunc_psi=psi, trunc_layers=layers
    )
    assert_parity(from_w["image"], out["image"], "image from W")
    # trunc_layers=None truncates every layer (jgan's contract, NVIDIA's convention).
    every = jgan.synthesize(bundle.generator, io["z"], trunc_psi=psi)
    w_avg = np.asarray(bundle.generator.truncation.w_avg[...])
    expected = w_avg + (io["wp"] - w_avg) * psi
    np.testing.assert_allclose(every["wp"], expected, atol=1e-5)


def test_discriminator_parity_sharded(fixture):
    name, bundle, io = fixture
    scores = jgan.discriminate(bundle.discriminator, np.transpose(io["image"], (0, 2, 3, 1)))
    assert_parity(scores, io["d_score"], f"{name} d_score")
    trunc = np.transpose(io["image_trunc"], (0, 2, 3, 1))
    assert_parity(jgan.discriminate(bundle.discriminator, trunc), io["d_score_trunc"], name)


def test_repeated_calls_do_not_recompile(fixture):
    name, bundle, io = fixture
    jgan.synthesize(bundle.generator, io["z"])
    compiled = api._generate._cache_size()
    key = jax.random.key(1)
    for seed in range(3):
        z = jax.random.normal(jax.random.fold_in(key, seed), io["z"].shape)
        jgan.synthesize(bundle.generator, z)
    assert api._generate._cache_size() == compiled
    if "w" in io:
        jgan.synthesize(bundle.generator, io["z"], trunc_psi=0.5, trunc_layers=2)
        compiled = api._generate._cache_size()
        jgan.synthesize(bundle.generator, io["z"], trunc_psi=0.9, trunc_layers=3)
        assert api._generate._cache_size() == compiled


def test_model_directory_round_trip(fixture, tmp_path):
    name, bundle, io = fixture
    path = jgan.save_model_dir(bundle, tmp_path / "model")
    again = jgan.load(path)
    assert again.config == bundle.config
    for role in ("generator", "generator_raw"):
        a = jgan.synthesize(getattr(bundle, role), io["z"])["image"]
        b = jgan.synthesize(getattr(again, role), io["z"])["image"]
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    images = np.transpose(io["image"], (0, 2, 3, 1))
    np.testing.assert_array_equal(
        np.asarray(jgan.discriminate(bundle.discriminator, images)),
        np.asarray(jgan.discriminate(again.discriminator, images)),
    )
    with pytest.raises(jgan.InputError, match="exists"):
        jgan.save_model_dir(bundle, path)


def test_noise_modes(tmp_path):
    name = "genforce_stylegan2_r32"
    bundle = jgan.load(fixture_dir(name) / f"{name}.pth")
    io, _ = fixture_io(name)
    G, z = bundle.generator, io["z"]
    const = np.asarray(jgan.synthesize(G, z)["image"])
    none = np.asarray(jgan.synthesize(G, z, noise_mode="none")["image"])
    r1 = np.asarray(jgan.synthesize(G, z, noise_mode="random", key=jax.random.key(3))["image"])
    r2 = np.asarray(jgan.synthesize(G, z, noise_mode="random", key=jax.random.key(3))["image"])
    r3 = np.asarray(jgan.synthesize(G, z, noise_mode="random", key=jax.random.key(4))["image"])
    np.testing.assert_array_equal(r1, r2)
    assert np.abs(r1 - r3).max() > 1e-3
    assert np.abs(const - none).max() > 1e-3
    with pytest.raises(jgan.InputError, match="key"):
        jgan.synthesize(G, z, noise_mode="random")


def test_training_checkpoint_form(tmp_path):
    """genforce training checkpoints nest the state dicts under 'models' (maybe with
    'module.' prefixes) beside optimizer state: they load to the same model."""
    from jgan.ports import genforce
    from jgan.ports.torch_pickle import read_torch_file

    name = "genforce_stylegan_r32"
    zoo = read_torch_file(fixture_dir(name) / f"{name}.pth")
    io, _ = fixture_io(name)
    training = {
        "models": {
            role: {f"module.{k}": v for k, v in state.items()} for role, state in zoo.items()
        },
        "running_metadata": {"iter": 10, "seen_img": 40},
        "optimizers": {"generator": {"state": {}, "param_groups": [{"lr": 1e-3}]}},
        "learning_rates": {},
    }
    modules = genforce.read(training, "training.pth")
    image = jgan.synthesize(modules["generator"], io["z"])["image"]
    assert_parity(nchw(image), io["image"], "image from the training form")
    with pytest.raises(jgan.CheckpointError, match="encoder"):
        genforce.read({"models": {**training["models"], "encoder": {}}}, "training.pth")


def test_style_mixing_takes_the_chosen_layers():
    name = "genforce_stylegan2_r32"
    bundle = jgan.load(fixture_dir(name) / f"{name}.pth")
    io, _ = fixture_io(name)
    wp = np.asarray(io["wp"])
    other = wp[::-1]
    mixed = np.asarray(mix_styles(wp, other, [0, 1, 2]))
    np.testing.assert_array_equal(mixed[:, :3], other[:, :3])
    np.testing.assert_array_equal(mixed[:, 3:], wp[:, 3:])
    image = jgan.synthesize(bundle.generator, mixed, space="wp")["image"]
    coarse = jgan.synthesize(bundle.generator, other, space="wp")["image"]
    fine = jgan.synthesize(bundle.generator, wp, space="wp")["image"]
    assert 0 < np.abs(image - coarse).max() and 0 < np.abs(image - fine).max()


def test_overrides_settle_what_the_file_cannot_tell():
    name = "genforce_stylegan_r32"
    path = fixture_dir(name) / f"{name}.pth"
    io, meta = fixture_io(name)
    # Redundant overrides (the original constructor's own arguments) are accepted.
    same = jgan.load(path, **meta["constructor_kwargs"])
    assert_parity(nchw(jgan.synthesize(same.generator, io["z"])["image"]), io["image"], name)
    # A fused path forced below 128 px has the same tensors: only an override selects it.
    fused = jgan.load(path, fused_scale=True)
    assert fused.generator.config["fused_scale"] is True
    assert fused.discriminator.config["fused_scale"] is True
    image = jgan.synthesize(fused.generator, io["z"])["image"]
    assert np.abs(nchw(image) - io["image"]).max() > 1e-2
