"""StyleGAN3 (jgan.models.stylegan3): parity with the official StyleGAN3-T fixture through the
NVIDIA pickle port, and what the fixture cannot show: the rotation equivariance of the R
configuration (fresh random weights), the conditional mapping against a transcription of
NVIDIA's formulas, truncation, filter checks and configuration round trips."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jgan
from conftest import assert_parity, fixture_dir, fixture_io, nchw
from jgan.bundle import read_model_dir, save_model_dir
from jgan.errors import CheckpointError, InputError
from jgan.models.registry import build_abstract
from jgan.models.stylegan3 import StyleGAN3Generator, design_lowpass_filter, filtered_lrelu
from jgan.ports import nvidia_sg3
from jgan.ports.nvidia_pickle import read_network_pickle
from jgan.ports.state import load_state, module_tensors

NAME = "nvidia_sg3t_r32"
PICKLE = "network-snapshot-000000.pkl"
SMALL = dict(
    z_dim=8,
    w_dim=8,
    img_resolution=16,
    img_channels=3,
    mapping_kwargs={"num_layers": 2},
    channel_base=256,
    channel_max=16,
    num_layers=6,
    margin_size=4,
)
R_CONFIG = dict(SMALL, conv_kernel=1, use_radial_filters=True)
ROT90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
"""A user `transform` that rotates the image by 90 degrees (it is the inverse transform: the
output at p is the untransformed output at ROT90 p)."""


@pytest.fixture(scope="module")
def networks():
    return read_network_pickle(fixture_dir(NAME) / PICKLE)


@pytest.fixture(scope="module")
def bundle():
    return jgan.load(fixture_dir(NAME) / PICKLE)


@pytest.fixture(scope="module")
def reference(bundle):
    io, meta = fixture_io(NAME)
    return bundle.generator, io, meta


def test_parity_with_official_generator(reference):
    """w, wp and images at psi 1 and 0.7 (truncation of every ws entry) from z."""
    G, io, meta = reference
    assert meta["forward_call"].startswith("G_ema(z, c, truncation_psi=psi")
    assert G.num_layers == meta["num_ws"] == 16
    for psi, tag in ((io["truncation_psi_a"], "psi1"), (io["truncation_psi_b"], "psi07")):
        out = jgan.synthesize(G, io["z"], trunc_psi=float(psi))
        assert_parity(out["w"], io["w"], f"w {tag}")
        assert_parity(out["wp"], io[f"wp_{tag}"], f"wp {tag}")
        assert_parity(nchw(out["image"]), io[f"image_{tag}"], f"image {tag}")
    assert_parity(G.truncation.w_avg[...], io["w_avg"], "w_avg")


def test_designed_filters_equal_the_stored_buffers(networks, reference):
    """Every filter buffer of the pickle is what jgan designs from init_kwargs alone."""
    G, _, _ = reference
    stored = {k: v for k, v in networks["G_ema"]["tensors"].items() if k.endswith("_filter")}
    designed = {k.replace("\\", ""): v for k, v in nvidia_sg3.designed_filters(G).items()}
    assert designed.keys() == stored.keys()
    assert len(stored) == 2 * 14  # ToRGB (taps == 1) has none
    for key, taps in stored.items():
        np.testing.assert_allclose(designed[key], taps, atol=1e-7, err_msg=key)


def test_altered_filter_is_refused(networks):
    tensors = dict(networks["G_ema"]["tensors"])
    tensors["synthesis.L5_52_64.up_filter"] = tensors["synthesis.L5_52_64.up_filter"][::-1] * 1.1
    with pytest.raises(CheckpointError, match=r"non-standard values.*L5_52_64\.up_filter"):
        nvidia_sg3.read_generator({**networks["G_ema"], "tensors": tensors}, "altered")


def test_bundle_holds_all_networks(bundle, reference):
    """jgan.load: G_ema is the generator, G (other random values in the fixture) the raw
    generator, D StyleGAN2's discriminator with the official scores."""
    _, io, _ = reference
    assert bundle.arch == "stylegan3"
    a, b = (
        bundle.generator_raw.synthesis.input.weight[...],
        bundle.generator.synthesis.input.weight[...],
    )
    assert a.shape == b.shape and not np.allclose(a, b)
    D = bundle.discriminator
    assert type(D).__name__ == "StyleGAN2Discriminator"
    for images, key in ((io["x"], "d_score"), (io["image_psi1"], "d_score_fake")):
        scores = jgan.discriminate(D, np.transpose(images, (0, 2, 3, 1)))
        assert_parity(scores, io[key], key)


def test_port_errors(networks):
    with pytest.raises(CheckpointError, match="not a StyleGAN3 generator"):
        nvidia_sg3.read_generator(networks["D"], "x[D]")
    with pytest.raises(InputError, match=r"unknown override\(s\) \['bar'\] for an NVIDIA"):
        nvidia_sg3.read(networks, "x", bar=2)
    with pytest.raises(CheckpointError, match="D is training.networks_stylegan3.Generator"):
        nvidia_sg3.read({**networks, "D": networks["G"]}, "x")
    bad = {**networks["G_ema"], "init_kwargs": {**networks["G_ema"]["init_kwargs"], "foo": 1}}
    with pytest.raises(CheckpointError, match=r"init_kwargs \['foo'\]"):
        nvidia_sg3.read_generator(bad, "x")
    with pytest.raises(InputError, match=r"unknown override\(s\) \['bar'\]"):
        nvidia_sg3.read_generator(networks["G_ema"], "x", bar=2)
    tensors = {k: v for k, v in networks["G_ema"]["tensors"].items() if k != "mapping.fc1.bias"}
    with pytest.raises(CheckpointError, match=r"missing tensors: mapping\.fc1\.bias$"):
        nvidia_sg3.read_generator({**networks["G_ema"], "tensors": tensors}, "x")


def test_truncation(reference):
    """Truncation pulls the first `trunc_layers` codes (all by default, as NVIDIA's
    truncation_cutoff=None) towards the file's `mapping.w_avg`."""
    G, io, _ = reference
    wp = G.truncation.broadcast(jnp.asarray(io["w"]))
    w_avg = io["w_avg"][None, None]
    expected = np.where(np.arange(16)[None, :, None] < 4, w_avg + (wp - w_avg) * 0.5, wp)
    np.testing.assert_allclose(G.truncation(wp, 0.5, 4), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(G.truncation(wp, 0.7), io["wp_psi07"], rtol=1e-5, atol=1e-6)


def test_config_round_trip(networks, bundle, reference, tmp_path):
    """config == the pickle's init_kwargs plus defaults, survives JSON, and a saved model
    directory rebuilds the same generator with the same outputs."""
    G, io, _ = reference
    config = G.config
    init_kwargs = networks["G_ema"]["init_kwargs"]
    assert {k: config[k] for k in init_kwargs} == init_kwargs
    assert config["mapping_kwargs"] == {"num_layers": 2}
    rebuilt = build_abstract(StyleGAN3Generator, json.loads(json.dumps(config)))
    assert nnx.graphdef(rebuilt) == nnx.graphdef(G)
    path = save_model_dir(bundle, tmp_path / "sg3")
    loaded = read_model_dir(path).generator
    a = jgan.synthesize(G, io["z"], trunc_psi=0.7)["image"]
    b = jgan.synthesize(loaded, io["z"], trunc_psi=0.7)["image"]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---- what the fixture does not cover ----------------------------------------------------------


def randomized(config, seed):
    """A generator of `config` with seeded random values at the scale of a trained model:
    every term of the forward pass matters (zero-initialised biases and the input affine
    too), frequencies lie inside the input's band and the user transform is the identity."""
    G = build_abstract(StyleGAN3Generator, config)
    bandwidth = G.synthesis.input.bandwidth
    rng = np.random.default_rng(seed)
    state = {}
    for key, var in module_tensors(G).items():
        value = rng.standard_normal(var.shape)
        if key.startswith("mapping.dense"):
            value *= 100.0 if key.endswith("weight") else 30.0  # raw values of lr 0.01
        elif key.endswith("bias"):
            value *= 0.3
        elif key.endswith("magnitude_ema"):
            value = np.exp(0.5 * value)
        elif key.endswith("freqs"):
            value *= bandwidth / 3
        elif key.endswith("phases"):
            value = rng.uniform(-0.5, 0.5, var.shape)
        elif key.endswith("transform"):
            value = np.eye(3)
        if key == "synthesis.input.affine.bias":
            value += np.array([1.0, 0.0, 0.0, 0.0])
        state[key] = value.astype(np.float32)
    return load_state(G, state)


def with_transform(G, transform):
    G.synthesis.input.transform[...] = jnp.asarray(transform)
    return G


@pytest.fixture(scope="module")
def r_generator():
    return randomized(R_CONFIG, 0)


def test_r_configuration_structure(r_generator):
    """1x1 convs; radially symmetric 2-D downsampling filters except in the critically
    sampled layers (and none at ToRGB), each a low-pass filter with unit DC gain."""
    synthesis = r_generator.synthesis
    layers = [getattr(synthesis, name) for name in synthesis.layer_names]
    assert [layer.conv_kernel for layer in layers] == [1] * 7
    assert [np.ndim(layer.down_filter) for layer in layers[:-1]] == [2, 2, 2, 2, 1, 1]
    assert layers[-1].up_filter is None and layers[-1].down_filter is None
    for layer in layers[:4]:
        f = np.asarray(layer.down_filter)
        np.testing.assert_allclose(f, f.T, atol=1e-7)
        np.testing.assert_allclose(f, f[::-1], atol=1e-7)
        assert abs(f.sum() - 1) < 1e-5


def test_input_layer_rotates_with_its_transform(r_generator):
    """The Fourier features of a 90-degree user transform are the untransformed ones rotated
    (np.rot90 by +1, not -1): the sampling grid is symmetric about the image centre, so a
    quarter turn maps pixel centres onto pixel centres and only float32 rounding differs."""
    G = r_generator
    graphdef, state = nnx.split(G.synthesis.input)
    features = jax.jit(lambda state, w: nnx.merge(graphdef, state)(w))
    w = jax.random.normal(jax.random.key(1), (2, 8))
    plain = np.asarray(features(state, w))
    state["transform"][...] = ROT90
    turned = np.asarray(features(state, w))
    scale = np.abs(plain).max()
    assert np.abs(turned - np.rot90(plain, 1, axes=(1, 2))).max() <= 1e-5 * scale
    assert np.abs(turned - np.rot90(plain, -1, axes=(1, 2))).max() > 0.1 * scale


@pytest.mark.parametrize("config, equivariant", [("R", True), ("T", False)])
def test_quarter_turn_equivariance(r_generator, config, equivariant):
    """R (1x1 convs, radial filters) is exactly equivariant to 90-degree rotations: rotating
    the input transform rotates the image, up to float32 rounding (measured 5e-7 of the image
    scale; bound 1e-5). T's 3x3 convs are not rotation symmetric, so T fails the same test."""
    G = r_generator if config == "R" else randomized(SMALL, 3)
    z = jax.random.normal(jax.random.key(2), (4, 8))
    plain = np.asarray(jgan.synthesize(with_transform(G, np.eye(3)), z)["image"])
    turned = np.asarray(jgan.synthesize(with_transform(G, ROT90), z)["image"])
    with_transform(G, np.eye(3))
    error = np.abs(turned - np.rot90(plain, 1, axes=(1, 2))).max() / np.abs(plain).max()
    assert (error <= 1e-5) if equivariant else (error > 0.05), error


def test_conditional_mapping_against_nvidia_formulas():
    """c_dim > 0 (no fixture): w = fc_k(...fc_0([norm(z), norm(embed(c))])) with NVIDIA's
    gains (embed lr 1; fc lr 0.01, lrelu * sqrt(2)); labels are required and checked."""
    G = randomized(dict(SMALL, c_dim=5), 4)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((3, 8)).astype(np.float32)
    c = np.eye(5, dtype=np.float32)[[0, 3, 4]]
    params = {k: np.asarray(v[...], np.float64) for k, v in module_tensors(G.mapping).items()}

    def norm(x):
        return x / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + 1e-8)

    def dense(x, name, lr):
        w, b = params[f"{name}.weight"], params[f"{name}.bias"]
        return x @ (w * lr / np.sqrt(w.shape[1])).T + b * lr

    x = np.concatenate([norm(z), norm(dense(c, "embed", 1.0))], axis=1)
    for i in range(2):
        x = dense(x, f"dense{i}", 0.01)
        x = np.where(x >= 0, x, 0.2 * x) * np.sqrt(2)
    np.testing.assert_allclose(G.mapping(z, c), x, rtol=1e-5, atol=1e-5)
    assert params["embed.weight"].shape == (8, 5) and params["dense0.weight"].shape == (8, 16)
    with pytest.raises(InputError, match=r"label= of shape \(N, 5\)"):
        G.mapping(z)


def numpy_upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0, 0, 0)):
    """NVIDIA's upfirdn2d reference on NHWC arrays: zero insertion, pad/crop, convolution."""
    x0, x1, y0, y1 = pad
    n, h, w, c = x.shape
    u = np.zeros((n, h * up, w * up, c))
    u[:, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)), (0, 0)))
    u = u[:, max(-y0, 0) : u.shape[1] - max(-y1, 0), max(-x0, 0) : u.shape[2] - max(-x1, 0)]
    flipped = kernel[::-1, ::-1]
    out = np.zeros((n, u.shape[1] - kernel.shape[0] + 1, u.shape[2] - kernel.shape[1] + 1, c))
    for i, j in np.ndindex(*kernel.shape):
        out += flipped[i, j] * u[:, i : i + out.shape[1], j : j + out.shape[2]]
    return out[:, ::down, ::down]


def test_filtered_lrelu_against_nvidia_reference():
    """bias -> FIR up (gain up^2) -> lrelu * gain -> clamp -> FIR down, as the original's
    reference path; the clamp (which the fixture never reaches) bites here."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9, 9, 3)).astype(np.float32) * 3
    bias = rng.standard_normal(3).astype(np.float32)
    fu = design_lowpass_filter(12, 4.0, 8.0, 32)
    fd = design_lowpass_filter(12, 5.0, 6.0, 32)
    kwargs = dict(up=2, down=2, padding=(7, 4, 3, 6), gain=np.sqrt(2), slope=0.2)
    y = numpy_upfirdn2d(x + bias, np.outer(fu, fu) * 4, up=2, pad=kwargs["padding"])
    y = np.clip(np.where(y >= 0, y, 0.2 * y) * np.sqrt(2), -1.0, 1.0)
    expected = numpy_upfirdn2d(y, np.outer(fd, fd), down=2)
    actual = filtered_lrelu(
        jnp.asarray(x), jnp.asarray(bias), tuple(fu), tuple(fd), clamp=1.0, **kwargs
    )
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    unclamped = filtered_lrelu(
        jnp.asarray(x), jnp.asarray(bias), tuple(fu), tuple(fd), clamp=None, **kwargs
    )
    assert np.abs(np.asarray(unclamped) - expected).max() > 0.1


def test_lowpass_filter_design():
    """One tap means no filter; firwin taps are symmetric with unit DC gain; the radial
    design matches its separable cousin's sum and symmetry."""
    assert design_lowpass_filter(1, 2.0, 4.0, 16) is None
    f = design_lowpass_filter(12, 4.0, 8.0, 32)
    assert f.shape == (12,) and f.dtype == np.float32
    np.testing.assert_allclose(f, f[::-1], atol=1e-8)
    assert abs(f.sum() - 1) < 1e-6
    radial = design_lowpass_filter(12, 4.0, 8.0, 32, radial=True)
    assert radial.shape == (12, 12)
    assert abs(radial.sum() - 1) < 1e-6
    np.testing.assert_allclose(radial, radial.T, atol=1e-8)


def test_bad_configuration():
    with pytest.raises(InputError, match=r"unknown mapping_kwargs \['layers'\]"):
        StyleGAN3Generator(**dict(SMALL, mapping_kwargs={"layers": 2}), rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="num_critical < num_layers"):
        StyleGAN3Generator(**dict(SMALL, num_critical=6), rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="img_resolution must be a positive integer"):
        StyleGAN3Generator(**dict(SMALL, img_resolution=0), rngs=nnx.Rngs(0))
