"""StyleGAN2 (jgan.models.stylegan2) against the genforce fixture (both modulated-conv paths),
and what the fixture does not cover, each against a reference derived from the original
formulas: the origin and resnet generators, the skip and origin discriminators, labels in G
and D, the noise modes, truncation of every layer, config inference and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import assert_parity, fixture_dir, fixture_io, nchw
from jgan.errors import CheckpointError, InputError
from jgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from jgan.nn import minibatch_stddev
from jgan.ports import genforce_stylegan2 as port
from jgan.ports.state import load_state, module_tensors
from jgan.ports.torch_pickle import read_torch_file

NAME = "genforce_stylegan2_r32"
TAPS = np.array([1.0, 3.0, 3.0, 1.0])


def jitted(module, method):
    """`method(module, *args)` under plain jax.jit over the split module state."""
    graphdef, state = nnx.split(module)
    fn = jax.jit(lambda state, *args: method(nnx.merge(graphdef, state), *args))
    return lambda *args: fn(state, *args)


def generate(module, **kwargs):
    return jitted(module, lambda g, codes: g.generate(codes, **kwargs))


def state_of(module):
    return {key: np.asarray(var[...]) for key, var in module_tensors(module).items()}


def abstract(cls, **config):
    """`cls(**config)` without drawing its initial values (fast); load a state before use."""
    return nnx.eval_shape(lambda: cls(**config, rngs=nnx.Rngs(0)))


def random_state(module, seed):
    """A state for `module` at the scale of a trained model (biases and noise strengths are
    zero at init), so that no term of the forward pass vanishes."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, var in module_tensors(module).items():
        scale = 1.0
        if key.endswith(("bias", "noise_strength")):
            scale = 0.3
        elif key.startswith("mapping.dense"):
            scale = 100.0  # raw parameters of lr_mul 0.01
        state[key] = (scale * rng.standard_normal(var.shape)).astype(np.float32)
    return state


def randomized(cls, seed, **config):
    module = abstract(cls, **config)
    return load_state(module, random_state(module, seed))


def shapes_of(module):
    """A state dict of zeros with the module's keys and shapes (for config inference)."""
    return {key: np.zeros(var.shape, np.float32) for key, var in module_tensors(module).items()}


# ---- numpy transcriptions of genforce's FIR resampling layers (NHWC) --------------------------


def _along(x, axis, fn):
    return np.moveaxis(fn(np.moveaxis(x, axis, -1)), -1, axis)


def fir_up(x):
    """genforce UpsamplingLayer: zero insertion after each pixel, pad (2, 1), [1,3,3,1]^2 * 4/64."""
    k = TAPS / TAPS.sum() * 2

    def one_axis(a):
        up = np.zeros(a.shape[:-1] + (2 * a.shape[-1],))
        up[..., ::2] = a
        up = np.pad(up, [(0, 0)] * (up.ndim - 1) + [(2, 1)])
        return sum(k[t] * up[..., t : t + 2 * a.shape[-1]] for t in range(4))

    return _along(_along(np.asarray(x, np.float64), 1, one_axis), 2, one_axis)


def fir_down(x):
    """genforce DownsamplingLayer: pad (1, 1), [1,3,3,1]^2 / 64, keep every other pixel."""
    k = TAPS / TAPS.sum()

    def one_axis(a):
        n = a.shape[-1] // 2
        p = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(1, 1)])
        return sum(k[t] * p[..., t : t + 2 * n : 2] for t in range(4))

    return _along(_along(np.asarray(x, np.float64), 1, one_axis), 2, one_axis)


def conv1x1(x, weight):
    """1x1 equalized conv (gain 1): x @ (W / sqrt(in)).T, no bias."""
    w = weight[:, :, 0, 0] / math.sqrt(weight.shape[1])
    return np.einsum("nhwi,oi->nhwo", np.asarray(x, np.float64), w)


# ---- the fixture ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    io, _ = fixture_io(NAME)
    ckpt = read_torch_file(fixture_dir(NAME) / f"{NAME}.pth")
    d_state = ckpt["discriminator"]
    D = abstract(StyleGAN2Discriminator, **port.infer_discriminator_config(d_state))
    load_state(D, d_state, ignored=port.DISCRIMINATOR_IGNORED)
    return io, ckpt, jitted(D, lambda d, x: d(x))


def build_generators(ckpt, fused_modulate):
    """(generator_smooth, generator) of the fixture with the given modulated-conv path."""

    def build(state):
        config = {**port.infer_generator_config(state), "fused_modulate": fused_modulate}
        G = abstract(StyleGAN2Generator, **config)
        return load_state(G, state, ignored=port.GENERATOR_IGNORED)

    return build(ckpt["generator_smooth"]), build(ckpt["generator"])


@pytest.fixture(scope="module")
def shared_conv(reference):
    return build_generators(reference[1], fused_modulate=False)


@pytest.fixture(scope="module")
def grouped(reference):
    return build_generators(reference[1], fused_modulate=True)


def generate_any(G, **kwargs):
    """One compiled `generate` for every model with G's structure: fn(model, codes)."""
    graphdef, _ = nnx.split(G)
    fn = jax.jit(lambda state, codes: nnx.merge(graphdef, state).generate(codes, **kwargs))
    return lambda model, codes: fn(nnx.state(model), codes)


def test_inferred_configs(reference):
    _, ckpt, _ = reference
    config = port.infer_generator_config(ckpt["generator_smooth"])
    expected = {"resolution": 32, "z_space_dim": 32, "w_space_dim": 48, "mapping_fmaps": 64}
    assert config == {**config, **expected, "fmaps_base": 512, "fmaps_max": 64}
    assert config["architecture"] == "skip" and config["mapping_layers"] == 8
    d_config = port.infer_discriminator_config(ckpt["discriminator"])
    assert d_config["architecture"] == "resnet" and d_config["minibatch_std_group_size"] == 4
    assert (d_config["fmaps_base"], d_config["fmaps_max"]) == (512, 64)


@pytest.mark.parametrize("path", ["shared_conv", "grouped"])
def test_generator_parity(request, reference, path):
    io, _, _ = reference
    G, G_raw = request.getfixturevalue(path)
    psi, layers = float(io["trunc_psi"]), int(io["trunc_layers"])
    plain = generate_any(G)
    out = plain(G, io["z"])
    assert_parity(out["w"], io["w"], "w")
    assert_parity(out["wp"], io["wp"], "wp")
    assert_parity(nchw(out["image"]), io["image"], "image")
    trunc = generate_any(G, trunc_psi=psi, trunc_layers=layers)(G, io["z"])
    assert_parity(trunc["wp"], io["wp_trunc"], "wp_trunc")
    assert_parity(nchw(trunc["image"]), io["image_trunc"], "image_trunc")
    from_wp = generate_any(G, space="wp")(G, io["wp_trunc"])
    assert_parity(nchw(from_wp["image"]), io["image_from_wp_trunc"], "image_from_wp_trunc")
    raw = plain(G_raw, io["z"])
    assert_parity(nchw(raw["image"]), io["image_generator"], "image_generator")


def test_truncation_of_every_layer(reference, shared_conv):
    """jgan's contract: trunc_psi with trunc_layers=None truncates every layer."""
    io, _, _ = reference
    G, _ = shared_conv
    psi, layers = float(io["trunc_psi"]), int(io["trunc_layers"])
    every = generate_any(G, trunc_psi=psi)(G, io["z"])
    w_avg = np.asarray(G.truncation.w_avg[...])
    expected_wp = w_avg + (io["wp"] - w_avg) * psi
    np.testing.assert_allclose(every["wp"], expected_wp, atol=1e-5)
    assert not np.allclose(expected_wp[:, layers:], io["wp_trunc"][:, layers:], atol=1e-3)
    from_wp = generate_any(G, space="wp")(G, expected_wp)
    np.testing.assert_allclose(every["image"], from_wp["image"], atol=1e-4)
    # psi 1 is the identity, psi 0 gives w_avg everywhere.
    wp = jnp.asarray(io["wp"])
    np.testing.assert_allclose(G.truncation(wp, 1.0), io["wp"], atol=1e-6)
    np.testing.assert_allclose(G.truncation(wp, 0.0), np.broadcast_to(w_avg, wp.shape), atol=1e-6)


def test_discriminator_parity(reference):
    io, _, discriminate = reference
    scores = discriminate(np.transpose(io["image"], (0, 2, 3, 1)))
    assert_parity(scores, io["d_score"], "d_score")
    trunc = discriminate(np.transpose(io["image_trunc"], (0, 2, 3, 1)))
    assert_parity(trunc, io["d_score_trunc"], "d_score_trunc")


# ---- architectures the fixture does not cover -------------------------------------------------

TINY_G = dict(
    resolution=16,
    z_space_dim=8,
    w_space_dim=8,
    mapping_layers=2,
    mapping_fmaps=16,
    fmaps_base=64,
)


def const_noise(conv, batch):
    size = conv.noise.shape[-1]
    noise = np.asarray(conv.noise[...]).reshape(1, size, size, 1)
    return jnp.asarray(np.repeat(noise, batch, axis=0))


def synthesis_by_hand(G, wp, architecture):
    """The genforce (origin, skip) / NVIDIA (resnet) wiring composed from the module's layers,
    which the fixture verifies one by one; resnet shortcuts use the numpy FIR transcription."""
    syn, n = G.synthesis, wp.shape[0]
    blocks = syn.num_blocks

    def layer(x, i):
        conv = getattr(syn, f"layer{i}")
        return conv(x, wp[:, i], const_noise(conv, n))

    const = np.asarray(syn.early_layer.const[...]).transpose(0, 2, 3, 1)
    x = layer(jnp.asarray(np.repeat(const, n, axis=0)), 0)
    image = syn.output0(x, wp[:, 1]) if architecture == "skip" else None
    for block in range(1, blocks):
        shortcut = x
        x = layer(layer(x, 2 * block - 1), 2 * block)
        if architecture == "resnet":
            weight = np.asarray(getattr(syn, f"skip_layer{block - 1}").weight[...])
            x = (np.asarray(x) + fir_up(conv1x1(shortcut, weight))) / math.sqrt(2)
            x = jnp.asarray(x, jnp.float32)
        if architecture == "skip":
            image = getattr(syn, f"output{block}")(x, wp[:, 2 * block + 1]) + fir_up(image)
    if architecture != "skip":
        image = getattr(syn, f"output{blocks - 1}")(x, wp[:, 2 * blocks - 1])
    return np.asarray(image)


@pytest.mark.parametrize("architecture", ["origin", "resnet", "skip"])
def test_generator_architectures(architecture):
    G = randomized(StyleGAN2Generator, 1, **TINY_G, architecture=architecture)
    outputs = sorted(
        k for k in state_of(G) if k.startswith("synthesis.output") and "style" not in k
    )
    if architecture == "skip":
        assert len(outputs) == 2 * 3  # weight and bias of output0..2
    else:
        assert outputs == ["synthesis.output2.bias", "synthesis.output2.weight"]
    assert any(k.startswith("synthesis.skip_layer") for k in state_of(G)) == (
        architecture == "resnet"
    )
    wp = jax.random.normal(jax.random.key(2), (2, G.num_layers, 8))
    image = np.asarray(generate(G, space="wp")(wp)["image"])
    expected = synthesis_by_hand(G, wp, architecture)
    assert image.shape == (2, 16, 16, 3) and np.abs(expected).max() > 0.1
    np.testing.assert_allclose(image, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_resnet_skip_layer_is_fir_upsampled_1x1_conv():
    G = randomized(StyleGAN2Generator, 3, **TINY_G, architecture="resnet")
    skip = G.synthesis.skip_layer1  # 8 -> 16 px
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 8)).astype(np.float32)
    expected = fir_up(conv1x1(x, np.asarray(skip.weight[...])))
    np.testing.assert_allclose(np.asarray(skip(jnp.asarray(x))), expected, atol=1e-5)


def test_grouped_and_shared_paths_agree_on_resnet():
    configs = dict(**TINY_G, architecture="resnet")
    shared = randomized(StyleGAN2Generator, 4, **configs)
    grouped = load_state(
        abstract(StyleGAN2Generator, **configs, fused_modulate=True), state_of(shared)
    )
    z = jax.random.normal(jax.random.key(0), (3, 8))
    a, b = generate(shared)(z)["image"], generate(grouped)(z)["image"]
    np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, float(np.abs(a).max())))


def test_final_tanh():
    G = randomized(StyleGAN2Generator, 6, **TINY_G)
    T = load_state(abstract(StyleGAN2Generator, **TINY_G, final_tanh=True), state_of(G))
    wp = jax.random.normal(jax.random.key(1), (2, G.num_layers, 8))
    linear = generate(G, space="wp")(wp)["image"]
    assert float(jnp.abs(linear).max()) > 1.5
    np.testing.assert_allclose(generate(T, space="wp")(wp)["image"], np.tanh(linear), atol=1e-5)


def test_conditional_generator():
    G = randomized(StyleGAN2Generator, 8, **TINY_G, label_size=3)
    state = state_of(G)
    z = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    label = np.eye(3, dtype=np.float32)[[0, 2]]
    out = G.generate(jnp.asarray(z), label=jnp.asarray(label))
    # genforce MappingModule: [z, label @ label_weight], pixel norm over 2 * z_dim, then
    # dense (1 / sqrt(fan_in) * 0.01, bias * 0.01) + lrelu(0.2) * sqrt(2).
    x = np.concatenate([z, label @ state["mapping.label_weight"]], axis=1).astype(np.float64)
    x = x / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + 1e-8)
    for i in range(2):
        w, b = state[f"mapping.dense{i}.weight"], state[f"mapping.dense{i}.bias"]
        x = x @ (w / math.sqrt(w.shape[1]) * 0.01).T + b * 0.01
        x = np.where(x >= 0, x, 0.2 * x) * math.sqrt(2)
    np.testing.assert_allclose(out["w"], x, rtol=1e-4, atol=1e-4)
    other = G.generate(jnp.asarray(z), label=jnp.asarray(label[::-1]))
    assert float(jnp.abs(other["image"] - out["image"]).max()) > 1e-2
    with pytest.raises(InputError, match="label"):
        G.generate(jnp.asarray(z))


# ---- noise ------------------------------------------------------------------------------------


def test_noise_modes():
    G = randomized(StyleGAN2Generator, 9, **TINY_G)
    wp = jax.random.normal(jax.random.key(3), (1, G.num_layers, 8))
    run = jitted(G, lambda g, wp, key: g.generate(wp, space="wp", noise_mode="random", key=key))
    key = jax.random.key(7)
    a, b = run(wp, key)["image"], run(wp, key)["image"]
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(run(wp, jax.random.key(8))["image"] - a).max()) > 1e-3
    const = generate(G, space="wp")(wp)["image"]
    assert float(jnp.abs(const - a).max()) > 1e-3

    # 'random' draws layer i's noise from fold_in(key, i): with those maps stored as the
    # buffers, 'const' gives the same image.
    stored = state_of(G)
    for i in range(G.num_layers - 1):
        shape = stored[f"synthesis.layer{i}.noise"].shape
        noise = jax.random.normal(jax.random.fold_in(key, i), (1, *shape[2:], 1))
        stored[f"synthesis.layer{i}.noise"] = np.asarray(noise).reshape(shape)
    same = load_state(abstract(StyleGAN2Generator, **TINY_G), stored)
    np.testing.assert_allclose(generate(same, space="wp")(wp)["image"], a, atol=1e-5)

    # 'none' removes exactly the noise term: the same as zero noise strengths.
    none = generate(G, space="wp", noise_mode="none")(wp)["image"]
    assert float(jnp.abs(none - const).max()) > 1e-3
    silent = state_of(G)
    for key_name in silent:
        if key_name.endswith("noise_strength"):
            silent[key_name] = np.zeros((), np.float32)
    load_state(same, silent)
    np.testing.assert_allclose(generate(same, space="wp")(wp)["image"], none, atol=1e-5)

    with pytest.raises(InputError, match="key"):
        G.generate(wp, space="wp", noise_mode="random")
    with pytest.raises(InputError, match="noise_mode"):
        G.generate(wp, space="wp", noise_mode="spatial")


# ---- discriminators ---------------------------------------------------------------------------

TINY_D = dict(resolution=16, fmaps_base=64)


def logits_by_hand(D, images, architecture):
    """genforce's discriminator wiring composed from the module's layers (verified by the
    fixture); the skip image pyramid uses the numpy FIR transcription."""
    blocks = D.num_blocks
    x = D.input0(images)
    pyramid = np.asarray(images, np.float64)
    for block in range(blocks):
        if architecture == "skip" and block > 0:
            pyramid = fir_down(pyramid)
            x = x + getattr(D, f"input{block}")(jnp.asarray(pyramid, jnp.float32))
        if block < blocks - 1:
            shortcut = x
            x = getattr(D, f"layer{2 * block + 1}")(getattr(D, f"layer{2 * block}")(x))
            if architecture == "resnet":
                x = (x + getattr(D, f"skip_layer{block}")(shortcut)) / math.sqrt(2)
    last = blocks - 1
    x = getattr(D, f"layer{2 * last}")(minibatch_stddev(x, 4, 1))
    x = np.asarray(x).transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # torch's NCHW flatten
    x = getattr(D, f"layer{2 * last + 1}")(jnp.asarray(x))
    x = jnp.where(x >= 0, x, 0.2 * x) * math.sqrt(2)
    return np.asarray(getattr(D, f"layer{2 * last + 2}")(x))


@pytest.mark.parametrize("architecture", ["skip", "origin", "resnet"])
def test_discriminator_architectures(architecture):
    D = randomized(StyleGAN2Discriminator, 1, **TINY_D, architecture=architecture)
    keys = state_of(D)
    inputs = sorted(k for k in keys if k.startswith("input") and k.endswith("weight"))
    assert len(inputs) == (3 if architecture == "skip" else 1)
    assert any(k.startswith("skip_layer") for k in keys) == (architecture == "resnet")
    images = jax.random.normal(jax.random.key(4), (4, 16, 16, 3))
    scores = np.asarray(jitted(D, lambda d, x: d(x))(images))
    expected = logits_by_hand(D, images, architecture)
    assert scores.shape == (4, 1) and np.std(expected) > 1e-3
    np.testing.assert_allclose(scores, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_conditional_discriminator():
    D = randomized(StyleGAN2Discriminator, 3, **TINY_D, label_size=3)
    images = jax.random.normal(jax.random.key(5), (4, 16, 16, 3))
    label = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    scores = np.asarray(D(images, jnp.asarray(label)))
    logits = logits_by_hand(D, images, "resnet")
    assert logits.shape == (4, 3) and scores.shape == (4, 1)
    np.testing.assert_allclose(scores, np.sum(logits * label, axis=1, keepdims=True), atol=1e-4)
    with pytest.raises(InputError, match="label"):
        D(images)


# ---- config inference, bad input --------------------------------------------------------------

G_CONFIGS = [
    dict(TINY_G, architecture="skip"),
    dict(TINY_G, architecture="origin", label_size=2, image_channels=1),
    dict(TINY_G, architecture="resnet", repeat_w=False, fmaps_base=128, fmaps_max=16),
    dict(resolution=8, z_space_dim=4, w_space_dim=6, mapping_layers=1),
]
D_CONFIGS = [
    dict(TINY_D, architecture="resnet"),
    dict(TINY_D, architecture="skip", label_size=3, image_channels=1),
    dict(TINY_D, architecture="origin", fmaps_base=128, fmaps_max=16, minibatch_std_channels=2),
    dict(resolution=8, fmaps_base=8, minibatch_std_group_size=0),
]


@pytest.mark.parametrize("config", G_CONFIGS)
def test_generator_config_round_trip(config):
    G = abstract(StyleGAN2Generator, **config)
    state = shapes_of(G)
    assert port.infer_generator_config(state) == G.config
    load_state(abstract(StyleGAN2Generator, **G.config), state)


@pytest.mark.parametrize("config", D_CONFIGS)
def test_discriminator_config_round_trip(config):
    D = abstract(StyleGAN2Discriminator, **config)
    assert port.infer_discriminator_config(shapes_of(D)) == D.config


def test_bad_input():
    with pytest.raises(InputError, match="resolution"):
        StyleGAN2Generator(resolution=48, rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="architecture"):
        StyleGAN2Discriminator(resolution=16, architecture="residual", rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="const_input"):
        StyleGAN2Generator(**TINY_G, const_input=False, rngs=nnx.Rngs(0))
    D = abstract(StyleGAN2Discriminator, **TINY_D)
    with pytest.raises(InputError, match="shape"):
        D(jnp.zeros((4, 3, 16, 16)))
    with pytest.raises(InputError, match="minibatch"):
        D(jnp.zeros((6, 16, 16, 3)))
    state = shapes_of(abstract(StyleGAN2Generator, **TINY_G))
    del state["synthesis.layer3.weight"]
    with pytest.raises(CheckpointError, match="synthesis layers"):
        port.infer_generator_config(state)
