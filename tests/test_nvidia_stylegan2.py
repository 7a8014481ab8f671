"""NVIDIA StyleGAN2-ADA pickles on jgan's StyleGAN2 modules: parity with the official outputs
of the fixture, the stylegan3 repository's StyleGAN2 discriminator, conditional models against
a numpy transcription of NVIDIA's mapping formulas, conv_clamp, and bad input."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from test_stylegan2 import abstract, jitted, random_state

import jgan
from conftest import assert_parity, fixture_dir, fixture_io, nchw
from jgan.errors import CheckpointError, InputError
from jgan.models.stylegan2 import (
    DOWN_KERNEL,
    ModulatedConv,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
)
from jgan.ports import nvidia
from jgan.ports.nvidia_pickle import read_network_pickle
from jgan.ports.state import load_state, module_tensors

ADA = "nvidia_sg2ada_r32"
PICKLE = "network-snapshot-000000.pkl"


@pytest.fixture(scope="module")
def ada():
    return jgan.load(fixture_dir(ADA) / PICKLE)


@pytest.fixture(scope="module")
def io():
    return fixture_io(ADA)[0]


def test_configuration_from_the_pickle(ada):
    assert ada.arch == "stylegan2"
    config = ada.generator.config
    assert (config["fmaps_base"], config["fmaps_max"], config["channels"]) == (1024, 64, None)
    assert config["conv_clamp"] == 256 and config["mapping_layers"] == 2
    assert config["architecture"] == "skip" and config["has_w_avg"]
    d_config = ada.discriminator.config
    assert d_config["architecture"] == "resnet" and d_config["minibatch_std_group_size"] == 4
    assert ada.generator_raw.config == config
    raw, ema = (
        np.asarray(g.mapping.dense0.weight[...]) for g in (ada.generator_raw, ada.generator)
    )
    assert not np.array_equal(raw, ema)  # G_ema is the generator, G the raw one


@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_generator_parity(ada, io, psi):
    suffix = "1" if psi == 1 else "07"
    out = jgan.synthesize(ada.generator, io["z"], trunc_psi=None if psi == 1 else psi)
    assert_parity(out["w"], io["w"], "w")
    assert_parity(out["wp"], io[f"wp_psi{suffix}"], f"wp psi {psi}")
    assert_parity(nchw(out["image"]), io[f"image_psi{suffix}"], f"image psi {psi}")


def test_without_noise_and_w_avg(ada, io):
    out = jgan.synthesize(ada.generator, io["wp_psi1"], space="wp", noise_mode="none")
    assert_parity(nchw(out["image"]), io["image_psi1_noise_none"], "image, noise_mode none")
    np.testing.assert_array_equal(ada.generator.truncation.w_avg[...], io["w_avg"])


def test_discriminator_parity(ada, io):
    real = jgan.discriminate(ada.discriminator, np.transpose(io["x"], (0, 2, 3, 1)))
    fake = jgan.discriminate(ada.discriminator, np.transpose(io["image_psi1"], (0, 2, 3, 1)))
    assert_parity(real, io["d_score"], "D(x)")
    assert_parity(fake, io["d_score_fake"], "D(G(z))")


def test_stylegan3_repository_discriminator():
    """The stylegan3 repository's training.networks_stylegan2.Discriminator (other class path,
    other defaults) scores as the official one did."""
    io, _ = fixture_io("nvidia_sg3t_r32")
    contents = read_network_pickle(fixture_dir("nvidia_sg3t_r32") / PICKLE)
    D = nvidia.convert_discriminator(contents["D"], "sg3 D")
    real = jgan.discriminate(D, np.transpose(io["x"], (0, 2, 3, 1)))
    assert_parity(real, io["d_score"], "D(x)")
    with pytest.raises(CheckpointError, match="networks_stylegan3.Generator; expected one of"):
        nvidia.read(contents, "sg3.pkl")


# ---- conditional models, against NVIDIA's formulas in numpy --------------------------------

C_DIM, Z_DIM, W_DIM, CMAP_DIM = 5, 8, 6, 4


def lrelu(x):
    return np.where(x >= 0, x, 0.2 * x) * math.sqrt(2)


def normalize_2nd_moment(x):
    return x / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + 1e-8)


def fully_connected(tensors, name, x, lr=1.0, activation=None):
    """NVIDIA's FullyConnectedLayer: x @ (W * lr / sqrt(in)).T + b * lr."""
    weight, bias = tensors[f"{name}.weight"], tensors[f"{name}.bias"]
    y = x @ (weight * lr / math.sqrt(weight.shape[1])).T + bias * lr
    return lrelu(y) if activation == "lrelu" else y


def mapping_network(tensors, z, c, num_layers):
    """NVIDIA's MappingNetwork forward pass (no truncation)."""
    y = normalize_2nd_moment(fully_connected(tensors, "mapping.embed", c))
    x = y if z is None else np.concatenate([normalize_2nd_moment(z), y], axis=1)
    for i in range(num_layers):
        x = fully_connected(tensors, f"mapping.fc{i}", x, lr=0.01, activation="lrelu")
    return x


def nvidia_description(module, table, attributes, modules, seed):
    """A `read_network_pickle` description of random NVIDIA tensors for a jgan `module`.

    The shapes follow the key table (the NVIDIA shape drops the leading axes the table adds);
    the values are drawn at the scale of a trained model so that no term vanishes.
    """
    shapes = {key: tuple(var.shape) for key, var in module_tensors(module).items()}
    rng = np.random.default_rng(seed)
    tensors = {}
    for source, target, _ in table:
        shape = shapes[target]
        if target.endswith((".const", ".noise")):
            shape = shape[1:] if target.endswith(".const") else shape[2:]
        scale = 100.0 if "mapping.fc" in source else 0.3 if source.endswith("bias") else 1.0
        tensors[source] = (scale * rng.standard_normal(shape)).astype(np.float32)
        if source.endswith("affine.bias"):
            tensors[source] += 1  # NVIDIA's affine biases start at 1
    tensors["b4.conv.resample_filter"] = DOWN_KERNEL  # NVIDIA's standard filter, ignored
    return {
        "class": "training.networks.Generator",
        "init_kwargs": {},
        "attributes": attributes,
        "tensors": tensors,
        "modules": modules,
    }


def module(cls, attributes):
    return {"class": f"training.networks.{cls}", "init_kwargs": {}, "attributes": attributes}


@pytest.fixture(scope="module")
def conditional_generator():
    config = dict(
        resolution=8,
        z_space_dim=Z_DIM,
        w_space_dim=W_DIM,
        label_size=C_DIM,
        mapping_layers=2,
        mapping_fmaps=W_DIM,
        fmaps_base=64,
        fmaps_max=8,
        label_embedding="embed",
        label_embed_dim=W_DIM,
    )
    layer = {"activation": "lrelu", "use_noise": True, "conv_clamp": None}
    modules = {
        "mapping": module(
            "MappingNetwork", dict(z_dim=Z_DIM, c_dim=C_DIM, w_dim=W_DIM, num_layers=2)
        ),
        "mapping.fc0": module("FullyConnectedLayer", {"activation": "lrelu", "bias_gain": 0.01}),
        "synthesis": module("SynthesisNetwork", {"img_resolution": 8, "img_channels": 3}),
        "synthesis.b4": module("SynthesisBlock", {"architecture": "skip"}),
        **{
            f"synthesis.b{r}.conv{i}": module("SynthesisLayer", layer)
            for r, i in [(4, 1), (8, 0), (8, 1)]
        },
    }
    description = nvidia_description(
        abstract(StyleGAN2Generator, **config),
        nvidia.generator_table({**config, "architecture": "skip", "has_w_avg": True}),
        {},
        modules,
        seed=1,
    )
    return description, nvidia.convert_generator(description, "conditional G")


def test_conditional_generator_mapping(conditional_generator):
    description, G = conditional_generator
    assert G.config["label_embedding"] == "embed" and G.config["label_size"] == C_DIM
    rng = np.random.default_rng(2)
    z = rng.standard_normal((3, Z_DIM)).astype(np.float32)
    c = np.eye(C_DIM, dtype=np.float32)[[0, 3, 4]]
    expected = mapping_network(description["tensors"], z, c, num_layers=2)
    out = jgan.synthesize(G, z, label=c)
    np.testing.assert_allclose(out["w"], expected, rtol=1e-4, atol=1e-4)
    other = jgan.synthesize(G, z, label=c[::-1])
    assert float(np.abs(np.asarray(other["image"]) - np.asarray(out["image"])).max()) > 1e-2
    with pytest.raises(InputError, match="label"):
        jgan.synthesize(G, z)


def test_conditional_discriminator_projection():
    """D(x, c) = sum(out(x) * cmap) / sqrt(cmap_dim) with cmap = mapping(c) (8 layers)."""
    config = dict(
        resolution=8, label_size=C_DIM, fmaps_base=64, fmaps_max=8, minibatch_std_group_size=2
    )
    conditional = abstract(StyleGAN2Discriminator, **config, cmap_dim=CMAP_DIM)
    conv = {"activation": "lrelu", "conv_clamp": None}
    modules = {
        "b8": module("DiscriminatorBlock", {"architecture": "resnet"}),
        **{f"b8.{n}": module("Conv2dLayer", conv) for n in ("fromrgb", "conv0", "conv1")},
        "b8.skip": module("Conv2dLayer", {"activation": "linear", "conv_clamp": None}),
        "b4": module("DiscriminatorEpilogue", {"cmap_dim": CMAP_DIM}),
        "b4.mbstd": module("MinibatchStdLayer", {"group_size": 2, "num_channels": 1}),
        "b4.conv": module("Conv2dLayer", conv),
        "mapping": module("MappingNetwork", {"num_layers": 8}),
        "mapping.fc0": module("FullyConnectedLayer", {"activation": "lrelu", "bias_gain": 0.01}),
    }
    attributes = {"img_resolution": 8, "img_channels": 3, "c_dim": C_DIM}
    table = nvidia.discriminator_table(
        {**config, "architecture": "resnet", "cmap_dim": CMAP_DIM, "cmap_layers": 8}
    )
    description = nvidia_description(conditional, table, attributes, modules, seed=3)
    D = nvidia.convert_discriminator(description, "conditional D")

    images = np.random.default_rng(4).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    c = np.eye(C_DIM, dtype=np.float32)[[1, 2, 0, 4]]
    cmap = mapping_network(description["tensors"], None, c, num_layers=8)
    # The same network without NVIDIA's conditioning returns sum(out * label): with label
    # cmap / sqrt(cmap_dim) that is NVIDIA's projection.
    plain_config = {**D.config, "cmap_dim": None, "label_size": CMAP_DIM}
    plain_state = {
        k: np.asarray(v[...]) for k, v in module_tensors(D).items() if not k.startswith("mapping")
    }
    plain = load_state(abstract(StyleGAN2Discriminator, **plain_config), plain_state)
    expected = jgan.discriminate(plain, images, label=cmap / math.sqrt(CMAP_DIM))
    actual = jgan.discriminate(D, images, label=c)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    assert D.config["cmap_dim"] == CMAP_DIM and D.config["minibatch_std_group_size"] == 2


# ---- conv_clamp, bad input ---------------------------------------------------------------------


def test_conv_clamp_limits_conv_outputs_but_not_the_skips():
    rng = np.random.default_rng(0)
    x, w = 3 * rng.standard_normal((2, 4, 4, 8)), rng.standard_normal((2, 4))
    layer = dict(in_channels=8, out_channels=8, w_dim=4, noise_resolution=4)
    state = random_state(abstract(ModulatedConv, **layer), 5)
    free, clamped = (
        load_state(abstract(ModulatedConv, **layer, conv_clamp=clamp), state)
        for clamp in (None, 0.5)
    )
    unlimited = jitted(free, lambda conv, x, w: conv(x, w))(x, w)
    assert float(jnp.abs(unlimited).max()) > 0.5
    limited = jitted(clamped, lambda conv, x, w: conv(x, w))(x, w)
    np.testing.assert_allclose(limited, jnp.clip(unlimited, -0.5, 0.5))
    tiny = dict(resolution=8, fmaps_base=64, fmaps_max=8, conv_clamp=2.0)
    D = abstract(StyleGAN2Discriminator, **tiny, architecture="skip")
    assert D.layer0.conv_clamp == D.input0.conv_clamp == 2.0
    assert D.input1.conv_clamp is None  # NVIDIA's epilogue FromRGB has no clamp
    assert abstract(StyleGAN2Discriminator, **tiny).skip_layer0.conv_clamp is None


def test_bad_input(ada, tmp_path):
    path = fixture_dir(ADA) / PICKLE
    with pytest.raises(InputError, match="unknown override"):
        jgan.load(path, resolutions=64)
    contents = read_network_pickle(path)
    contents["G_ema"]["modules"]["synthesis.b4.conv1"]["attributes"]["activation"] = "relu"
    with pytest.raises(CheckpointError, match="activation is 'relu'"):
        nvidia.read(contents, "relu.pkl")
    contents = read_network_pickle(path)
    del contents["D"]["tensors"]["b16.conv0.bias"]
    contents["D"]["tensors"]["b16.extra"] = np.zeros(3)
    with pytest.raises(CheckpointError, match=r"missing tensors: b16.conv0.bias.*b16.extra"):
        nvidia.convert_discriminator(contents["D"], "broken D")
