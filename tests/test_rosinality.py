"""rosinality stylegan2-pytorch checkpoints on jgan's StyleGAN2 modules: parity with every
official output of the fixture (truncation with the reference truncation_latent, W and W+
inputs, style mixing, explicit noise, D scores), the missing w_avg, channel multipliers, and
the TF-converted form with latent_avg."""

import json
import types

import jax
import numpy as np
import pytest
from flax import nnx
from test_stylegan2 import abstract, jitted

import jgan
from conftest import assert_parity, fixture_dir, fixture_io, nchw
from jgan.errors import CheckpointError, InputError
from jgan.models.latent import estimate_w_avg, mix_styles, set_w_avg
from jgan.models.registry import build_abstract
from jgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from jgan.ports import rosinality
from jgan.ports.state import module_tensors
from jgan.ports.torch_pickle import read_torch_file

NAME = "rosinality_sg2_r32"


@pytest.fixture(scope="module")
def path():
    return fixture_dir(NAME) / "000000.pt"


@pytest.fixture(scope="module")
def bundle(path):
    return jgan.load(path)


@pytest.fixture(scope="module")
def io():
    return fixture_io(NAME)[0]


@pytest.fixture(scope="module")
def averaged(bundle, io):
    """The generator with the reference truncation_latent (mean_latent(4096)) as w_avg."""
    return set_w_avg(nnx.clone(bundle.generator), io["truncation_latent"])


def test_configuration_from_shapes_and_args(bundle):
    config = bundle.generator.config
    assert config["channels"] == [64, 64, 48, 32]  # the fixture's hand-narrowed table
    assert (config["resolution"], config["z_space_dim"], config["mapping_layers"]) == (32, 64, 2)
    assert config["has_w_avg"] is False and config["architecture"] == "skip"
    d_config = bundle.discriminator.config
    assert d_config["channels"] == [64, 64, 48, 32] and d_config["architecture"] == "resnet"
    assert d_config["minibatch_std_group_size"] == 4
    raw, ema = (
        np.asarray(g.mapping.dense0.weight[...]) for g in (bundle.generator_raw, bundle.generator)
    )
    assert not np.array_equal(raw, ema)  # g_ema is the generator, g the raw one
    rebuilt = build_abstract(StyleGAN2Generator, json.loads(json.dumps(config)))
    assert rebuilt.config == config


def test_generator_parity(bundle, io):
    out = jgan.synthesize(bundle.generator, io["z"])
    assert_parity(out["w"], io["w"], "w")
    assert_parity(out["wp"], io["wp_trunc1"], "wp")
    assert_parity(nchw(out["image"]), io["image_trunc1"], "image")


def test_truncation_needs_an_average(bundle, io):
    with pytest.raises(InputError, match=r"stores no w_avg.*estimate_w_avg.*set_w_avg"):
        jgan.synthesize(bundle.generator, io["z"], trunc_psi=0.7)
    estimate = estimate_w_avg(bundle.generator, jax.random.key(0), num=10000)
    # rosinality's mean_latent(4096) with torch's samples: both are means of ~unit-variance
    # codes, so they differ by about 0.02 per entry.
    np.testing.assert_allclose(estimate, io["truncation_latent"][0], atol=0.1)
    with pytest.raises(InputError, match="64 finite values"):
        set_w_avg(nnx.clone(bundle.generator), np.zeros(63))


def test_truncation_parity(averaged, io):
    assert averaged.config["has_w_avg"] is True
    out = jgan.synthesize(averaged, io["z"], trunc_psi=0.7)
    assert_parity(out["wp"], io["wp_trunc07"], "wp psi 0.7")
    assert_parity(nchw(out["image"]), io["image_trunc07"], "image psi 0.7")
    w_in = jgan.synthesize(averaged, io["w_in"], space="w", trunc_psi=0.7)
    assert_parity(nchw(w_in["image"]), io["image_w_in_trunc07"], "W input, psi 0.7")


def test_w_and_w_plus_inputs(bundle, io):
    w_in = jgan.synthesize(bundle.generator, io["w_in"], space="w")
    assert_parity(nchw(w_in["image"]), io["image_w_in"], "W input")
    wp_in = jgan.synthesize(bundle.generator, io["wp_in"], space="wp")
    assert_parity(nchw(wp_in["image"]), io["image_wp_in"], "W+ input")


def test_style_mixing_and_explicit_noise(bundle, io):
    G = bundle.generator
    wp = jgan.synthesize(G, io["z"])["wp"]
    mixed = mix_styles(wp, jgan.synthesize(G, io["z2"])["wp"], range(int(io["inject_index"]), 8))
    assert_parity(mixed, io["wp_mix_inject3"], "wp mixed at 3")
    assert_parity(nchw(jgan.synthesize(G, mixed, space="wp")["image"]), io["image_mix_inject3"])
    noise = [np.transpose(io[f"explicit_noise_{i}"], (0, 2, 3, 1)) for i in range(7)]
    image = jitted(G, lambda g, wp, noise: g.synthesis(wp, noise=noise))(wp, noise)
    assert_parity(nchw(image), io["image_explicit_noise"], "explicit noise")
    with pytest.raises(InputError, match=r"noise must hold 7 maps"):
        G.synthesis(wp, noise=noise[:6])
    with pytest.raises(InputError, match=r"noise\[2\] must have shape \(N, 8, 8, 1\)"):
        G.synthesis(wp, noise=[*noise[:2], io["explicit_noise_2"], *noise[3:]])


def test_discriminator_parity(bundle, io):
    real = jgan.discriminate(bundle.discriminator, np.transpose(io["x"], (0, 2, 3, 1)))
    fake = jgan.discriminate(bundle.discriminator, np.transpose(io["image_trunc1"], (0, 2, 3, 1)))
    assert_parity(real, io["d_score"], "D(x)")
    assert_parity(fake, io["d_score_fake"], "D(G(z))")


def test_tf_converted_form_with_latent_avg(path, io):
    """convert_weight.py's {'g_ema', 'latent_avg'}: the average comes with the weights."""
    checkpoint = read_torch_file(path)
    modules = rosinality.read(
        {"g_ema": checkpoint["g_ema"], "latent_avg": io["truncation_latent"][0]}, "tf.pt"
    )
    assert modules["generator_raw"] is None and modules["discriminator"] is None
    out = jgan.synthesize(modules["generator"], io["z"], trunc_psi=0.7)
    assert_parity(out["wp"], io["wp_trunc07"], "wp psi 0.7 from latent_avg")


def rosinality_shapes(module, table):
    """Zero-stride arrays with the shapes a rosinality state dict has for a jgan `module`."""
    shapes = {key: tuple(var.shape) for key, var in module_tensors(module).items()}
    state = {}
    for source, target, _ in table:
        shape = shapes[target]
        if source.endswith("conv.weight"):
            shape = (1, *shape)  # ModulatedConv2d weights have a leading 1
        elif source.endswith("noise.weight"):
            shape = (1,)
        elif source.startswith("to_rgb") and source.endswith(".bias"):
            shape = (1, shape[0], 1, 1)
        state[source] = np.broadcast_to(np.float32(0), shape)
    return state


@pytest.mark.parametrize("multiplier", [1, 2])
def test_channel_multiplier(multiplier):
    """model.py's table {4..32: 512, 64: 256 * multiplier, ...} is min(16384 * multiplier //
    res, 512): the formula, not a table, in the inferred config."""
    fmaps = dict(fmaps_base=16384 * multiplier, fmaps_max=512)
    G = abstract(StyleGAN2Generator, resolution=64, z_space_dim=512, w_space_dim=512, **fmaps)
    config = rosinality.generator_config(rosinality_shapes(G, rosinality.generator_table(G.config)))
    widths = [min(16384 * multiplier // res, 512) for res in (4, 8, 16, 32, 64)]
    assert config["channels"] is None
    assert [
        min(config["fmaps_base"] // r, config["fmaps_max"]) for r in (4, 8, 16, 32, 64)
    ] == widths
    D = abstract(StyleGAN2Discriminator, resolution=64, **fmaps)
    d_config = rosinality.discriminator_config(
        rosinality_shapes(D, rosinality.discriminator_table(D.config))
    )
    assert d_config["channels"] is None and d_config["resolution"] == 64


def test_bad_input(path):
    checkpoint = read_torch_file(path)
    wrong_size = {**checkpoint, "args": types.SimpleNamespace(size=64, latent=64, n_mlp=2)}
    with pytest.raises(
        CheckpointError, match="args.size is 64, but the weights have resolution 32"
    ):
        rosinality.read(wrong_size, "wrong.pt")
    broken = {
        **checkpoint,
        "g_ema": {k: v for k, v in checkpoint["g_ema"].items() if k != "conv1.noise.weight"},
    }
    with pytest.raises(CheckpointError, match=r"\[g_ema\]: missing tensors: conv1.noise.weight"):
        rosinality.read(broken, "broken.pt")
    with pytest.raises(InputError, match="unknown override"):
        rosinality.read(checkpoint, "x.pt", latent=64)
