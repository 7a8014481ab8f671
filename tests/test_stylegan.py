"""StyleGAN (v1): parity with genforce (fixture genforce_stylegan_r32) and the options the
fixture does not cover (fused resampling, repeat_w=False, final tanh, labels, noise types,
Y space, lod blending, config inference)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import assert_parity, fixture_dir, fixture_io, nchw
from jgan.errors import CheckpointError, InputError
from jgan.models.stylegan import (
    NoiseInput,
    StyleGANDiscriminator,
    StyleGANGenerator,
    fused_conv_downscale,
    fused_upscale_conv,
)
from jgan.nn import BLUR_KERNEL
from jgan.ports import genforce_stylegan as port
from jgan.ports.state import load_state, module_tensors
from jgan.ports.torch_pickle import read_torch_file

FIXTURE = "genforce_stylegan_r32"
TINY_G = dict(
    resolution=16,
    z_space_dim=8,
    w_space_dim=8,
    mapping_layers=2,
    mapping_fmaps=16,
    fmaps_base=64,
    fmaps_max=16,
)
TINY_D = dict(resolution=16, fmaps_base=64, fmaps_max=16)


def jitted(module, fn):
    """`fn(module, *args)` jitted over the module's split state (the library's pattern)."""
    graphdef, state = nnx.split(module)
    run = jax.jit(lambda state, *args: fn(nnx.merge(graphdef, state), *args))
    return lambda *args: run(state, *args)


def abstract(cls, *args, **kwargs):
    """The module with shapes only: building it for real would compile a random initialiser
    per parameter shape, and every test here loads its parameters anyway."""
    return nnx.eval_shape(lambda: cls(*args, **kwargs, rngs=nnx.Rngs(0)))


def shapes_of(module):
    """{genforce key: shape} of the module's variables."""
    return {k: tuple(v.shape) for k, v in module_tensors(module).items()}


def perturbed(cls, *args, seed, **kwargs):
    """A module whose parameters and buffers are N(0, 1) draws, N(0, 100^2) for the mapping
    (stored / lr_mul 0.01, as genforce initialises it); lod 0. Fresh genforce models have zero
    noise weights and biases, which would hide the paths under test."""
    module = abstract(cls, *args, **kwargs)
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes_of(module).items():
        scale = 100.0 if key.startswith("mapping.dense") else 0.0 if key.endswith("lod") else 1.0
        state[key] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return load_state(module, state)


def state_of(module):
    """The module's variables as a flat numpy state dict."""
    return {k: np.asarray(v[...]) for k, v in module_tensors(module).items()}


def build(cls, config, state, ignored):
    return load_state(abstract(cls, **config), state, ignored=ignored)


def build_generator(state, **overrides):
    config = {**port.infer_generator_config(state), **overrides}
    return build(StyleGANGenerator, config, state, port.GENERATOR_IGNORED)


def build_discriminator(state, **overrides):
    config = {**port.infer_discriminator_config(state), **overrides}
    return build(StyleGANDiscriminator, config, state, port.DISCRIMINATOR_IGNORED)


@pytest.fixture(scope="module")
def reference():
    io, _ = fixture_io(FIXTURE)
    checkpoint = read_torch_file(fixture_dir(FIXTURE) / f"{FIXTURE}.pth")
    return io, checkpoint


@pytest.fixture(scope="module")
def smooth(reference):
    return build_generator(reference[1]["generator_smooth"])


@pytest.fixture(scope="module")
def from_wp(smooth):
    return jitted(smooth, lambda m, wp: m.generate(wp, space="wp")["image"])


@pytest.fixture(scope="module")
def discriminator(reference):
    return build_discriminator(reference[1]["discriminator"])


# --- parity with genforce ---------------------------------------------------------------------


def test_generator_parity(reference, smooth, from_wp):
    io, checkpoint = reference
    out = jitted(smooth, lambda m, z: m.generate(z))(io["z"])
    for name in ("w", "wp"):
        assert_parity(out[name], io[name], name)
    assert_parity(nchw(out["image"]), io["image"], "image")

    psi, layers = float(io["trunc_psi"]), int(io["trunc_layers"])
    trunc = jitted(smooth, lambda m, z: m.generate(z, trunc_psi=psi, trunc_layers=layers))(io["z"])
    assert_parity(trunc["wp"], io["wp_trunc"], "wp_trunc")
    assert_parity(nchw(trunc["image"]), io["image_trunc"], "image_trunc")
    assert_parity(nchw(from_wp(io["wp_trunc"])), io["image_from_wp_trunc"], "image_from_wp_trunc")

    raw = build_generator(checkpoint["generator"])
    image = jitted(raw, lambda m, z: m.generate(z)["image"])(io["z"])
    assert_parity(nchw(image), io["image_generator"], "image_generator")


def test_discriminator_parity(reference, discriminator):
    io, _ = reference
    score = jitted(discriminator, lambda m, x: m(x))
    assert_parity(score(nchw_to_nhwc(io["image"])), io["d_score"], "d_score")
    assert_parity(score(nchw_to_nhwc(io["image_trunc"])), io["d_score_trunc"], "d_score_trunc")


def nchw_to_nhwc(images):
    return np.transpose(images, (0, 2, 3, 1))


def test_truncation_without_layers_truncates_every_layer(reference, smooth):
    """jgan's contract: trunc_psi with trunc_layers=None truncates all layers (genforce: none)."""
    io, checkpoint = reference
    w_avg = checkpoint["generator_smooth"]["truncation.w_avg"]
    wp = jitted(smooth, lambda m, z: m.generate(z, trunc_psi=0.7)["wp"])(io["z"])
    assert_parity(wp, w_avg + (io["wp"] - w_avg) * 0.7, "wp truncated on all layers")
    np.testing.assert_allclose(smooth.truncation(jnp.asarray(io["wp"]), 1.0), io["wp"], atol=1e-6)
    np.testing.assert_allclose(
        smooth.truncation(jnp.asarray(io["wp"]), 0.0),
        np.broadcast_to(w_avg, io["wp"].shape),
        atol=1e-6,
    )


# --- fused resampling -------------------------------------------------------------------------


def test_fused_upscale_conv_matches_transposed_conv_formula():
    """The four-tap kernel scattered with stride 2 (torch conv_transpose2d, padding 1)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    kernel = np.zeros((4, 3, 4, 4), np.float32)  # K[a, b] = sum of W[a - da, b - db]
    for da in (0, 1):
        for db in (0, 1):
            kernel[:, :, da : da + 3, db : db + 3] += weight
    full = np.zeros((2, 2 * 5 + 2, 2 * 6 + 2, 4), np.float32)  # before cropping padding 1
    for a in range(4):
        for b in range(4):
            contribution = np.einsum("nijc,oc->nijo", x, kernel[:, :, a, b])
            full[:, a : a + 10 : 2, b : b + 12 : 2] += contribution
    expected = full[:, 1:-1, 1:-1]
    np.testing.assert_allclose(fused_upscale_conv(x, weight), expected, rtol=1e-5, atol=1e-5)


def test_fused_conv_downscale_is_conv_then_average_pool():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 6, 3)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = sum(
        np.einsum("nhwc,oc->nhwo", padded[:, i : i + 8, j : j + 6], weight[:, :, i, j])
        for i in range(3)
        for j in range(3)
    )
    expected = conv.reshape(2, 4, 2, 3, 2, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(fused_conv_downscale(x, weight), expected, rtol=1e-5, atol=1e-5)


def test_forced_fused_generator_equals_upsample_conv_with_flipped_kernels(reference, from_wp):
    """fused_scale=True at res 32: the stride-2 transposed conv equals nearest upsampling and a
    3x3 conv whose kernel is spatially flipped, so the fixture's non-fused network with flipped
    up-conv weights is an independent reference."""
    io, checkpoint = reference
    state = checkpoint["generator_smooth"]
    fused = build_generator(state, fused_scale=True)
    assert all(getattr(fused.synthesis, f"layer{i}").fused_scale for i in (2, 4, 6))
    flipped = dict(state)
    for i in (2, 4, 6):
        flipped[f"synthesis.layer{i}.weight"] = state[f"synthesis.layer{i}.weight"][..., ::-1, ::-1]
    reference_image = jitted(build_generator(flipped), lambda m, wp: m.generate(wp, space="wp"))
    image = jitted(fused, lambda m, wp: m.generate(wp, space="wp"))(io["wp"])["image"]
    assert_parity(image, reference_image(io["wp"])["image"], "fused G vs flipped non-fused G")
    assert np.abs(np.asarray(image) - np.asarray(from_wp(io["wp"]))).max() > 1e-2


def test_forced_fused_discriminator_matches_genforce_scores(reference):
    """The fused stride-2 down-conv equals conv + average pooling: same scores as the fixture."""
    io, checkpoint = reference
    fused = build_discriminator(checkpoint["discriminator"], fused_scale=True)
    assert all(getattr(fused, f"layer{i}").fused_scale for i in (1, 3, 5))
    score = jitted(fused, lambda m, x: m(x))(nchw_to_nhwc(io["image"]))
    assert_parity(score, io["d_score"], "fused D")


# --- options the fixture does not cover ----------------------------------------------------


def test_repeat_w_false_with_final_tanh():
    """IDInvert's generator: the mapping outputs one code per layer; the image goes through tanh."""
    config = dict(TINY_G, repeat_w=False)
    linear = perturbed(StyleGANGenerator, **config, seed=1)
    tanh = load_state(abstract(StyleGANGenerator, **config, final_tanh=True), state_of(linear))
    assert tanh.truncation.w_avg.shape == (linear.num_layers * 8,)
    z = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
    out = jitted(tanh, lambda m, z: m.generate(z))(z)
    image = jitted(linear, lambda m, z: m.generate(z)["image"])(z)
    assert out["w"].shape == (2, linear.num_layers * 8)
    np.testing.assert_array_equal(out["wp"], np.asarray(out["w"]).reshape(2, -1, 8))
    assert np.abs(np.asarray(out["wp"][:, 0] - out["wp"][:, 1])).max() > 1e-3
    np.testing.assert_allclose(out["image"], np.tanh(image), atol=1e-6)
    assert np.abs(np.asarray(image)).max() > 1.5 and np.abs(np.asarray(out["image"])).max() <= 1

    wp_avg = jitted(tanh, lambda m, z: m.generate(z, trunc_psi=0.0)["wp"])(z)
    w_avg = np.asarray(tanh.truncation.w_avg[...]).reshape(-1, 8)
    np.testing.assert_allclose(wp_avg, np.broadcast_to(w_avg, wp_avg.shape), atol=1e-6)


def test_y_space_equals_w_plus_space(reference, smooth):
    """Style codes fed directly (genforce's set_space_of_latent('y'), used by GH-Feat)."""
    io, _ = reference
    y = np.asarray(smooth.y_codes(jnp.asarray(io["wp"])))
    assert y.shape == (4, 8, smooth.y_space_dim) == (4, 8, 128)
    assert not y[:, 4:6, 64:].any() and not y[:, 6:, 32:].any() and np.abs(y[:, 6, :32]).min() > 0
    padded = np.concatenate([y, np.ones((4, 8, 5), np.float32)], axis=2)
    from_y = jitted(smooth, lambda m, y: m.generate(y, space="y")["image"])
    assert_parity(nchw(from_y(y)), io["image"], "image from Y codes")
    assert_parity(nchw(from_y(padded)), io["image"], "image from padded Y codes")
    with pytest.raises(InputError, match="Y codes"):
        smooth.generate(jnp.asarray(y[:, :, :100]), space="y")


def test_label_conditioning():
    generator = perturbed(StyleGANGenerator, **TINY_G, label_size=3, seed=3)
    assert generator.mapping.dense0.weight.shape == (16, 16)  # z and label embedding, 2 * 8
    z = np.random.default_rng(4).standard_normal((2, 8)).astype(np.float32)
    run = jitted(generator, lambda m, z, label: m.generate(z, label=label)["image"])
    first, second = np.eye(3, dtype=np.float32)[[0, 0]], np.eye(3, dtype=np.float32)[[1, 1]]
    assert np.abs(np.asarray(run(z, first) - run(z, second))).max() > 1e-2
    with pytest.raises(InputError, match="label"):
        generator.generate(jnp.asarray(z))

    discriminator = perturbed(StyleGANDiscriminator, **TINY_D, label_size=3, seed=5)
    images = np.random.default_rng(6).standard_normal((4, 16, 16, 3)).astype(np.float32)
    score = jitted(discriminator, lambda m, x, label: m(x, label))
    per_class = np.concatenate([score(images, np.tile(e, (4, 1))) for e in np.eye(3)], axis=1)
    label = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)
    mixed = score(images, label)
    assert mixed.shape == (4, 1) and np.ptp(per_class, axis=1).min() > 1e-3
    np.testing.assert_allclose(mixed[:, 0], (per_class * label).sum(1), rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="label"):
        discriminator(jnp.asarray(images))
    with pytest.raises(InputError, match="unconditional"):
        perturbed(StyleGANDiscriminator, **TINY_D, seed=0)(jnp.asarray(images), label)


@pytest.mark.parametrize("noise_type", ["spatial", "channel"])
def test_noise_input_formula(noise_type):
    layer = perturbed(NoiseInput, 4, 3, noise_type, seed=8)
    x = np.random.default_rng(9).standard_normal((2, 4, 4, 3)).astype(np.float32)
    noise, weight = np.asarray(layer.noise[...]), np.asarray(layer.weight[...])
    if noise_type == "spatial":
        assert noise.shape == (1, 1, 4, 4) and weight.shape == (3,)
        expected = x + noise[0, 0][None, :, :, None] * weight
    else:
        assert noise.shape == (1, 3, 1, 1) and weight.shape == (4, 4)
        expected = x + noise[0, :, 0, 0] * weight[None, :, :, None]
    np.testing.assert_allclose(layer(jnp.asarray(x)), expected, rtol=1e-6)
    np.testing.assert_array_equal(layer(jnp.asarray(x), "none"), x)


@pytest.mark.parametrize("noise_type", ["spatial", "channel"])
def test_noise_modes(noise_type):
    generator = perturbed(StyleGANGenerator, **TINY_G, noise_type=noise_type, seed=10)
    z = np.random.default_rng(11).standard_normal((2, 8)).astype(np.float32)

    def synthesize(mode):
        return jitted(generator, lambda m, z, key: m.generate(z, noise_mode=mode, key=key)["image"])

    key, other = jax.random.key(0), jax.random.key(1)
    const, none = synthesize("const")(z, key), synthesize("none")(z, key)
    random = synthesize("random")
    first = random(z, key)
    np.testing.assert_array_equal(first, random(z, key))
    for a, b in [(const, none), (const, first), (first, random(z, other)), (none, first)]:
        assert np.abs(np.asarray(a - b)).max() > 1e-3


def test_lod_blends_the_lower_resolution_outputs():
    generator = perturbed(StyleGANGenerator, **TINY_G, seed=12)
    wp = np.random.default_rng(13).standard_normal((2, generator.num_layers, 8)).astype(np.float32)
    synthesis = {
        lod: jitted(generator, lambda m, wp, lod=lod: m.synthesis(wp, lod=lod))
        for lod in (0.0, 0.5, 1.0)
    }
    full, half, coarse = (np.asarray(synthesis[lod](wp)) for lod in (0.0, 0.5, 1.0))
    # lod 1: the 8x8 ToRGB upsampled (nearest): constant over 2x2 blocks.
    np.testing.assert_array_equal(coarse[:, ::2, ::2], coarse[:, 1::2, 1::2])
    assert np.abs(full - coarse).max() > 1e-2
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * coarse, rtol=1e-5, atol=1e-5)
    generator.synthesis.lod[...] = jnp.asarray(0.5)  # stored buffer: a traced value under jit
    traced = jitted(generator, lambda m, wp: m.generate(wp, space="wp")["image"])(wp)
    np.testing.assert_allclose(traced, half, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="lod"):
        generator.synthesis(jnp.asarray(wp), lod=3)

    discriminator = perturbed(StyleGANDiscriminator, **TINY_D, seed=14)
    images = np.random.default_rng(15).standard_normal((4, 16, 16, 3)).astype(np.float32)
    checker = np.where((np.arange(16)[:, None] + np.arange(16)) % 2, 1.0, -1.0)
    detail = images + checker[None, :, :, None].astype(np.float32)  # zero 2x2 means
    score = {lod: jitted(discriminator, lambda m, x, lod=lod: m(x, lod=lod)) for lod in (0.0, 1.0)}
    np.testing.assert_allclose(score[1.0](images), score[1.0](detail), rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(score[0.0](images) - score[0.0](detail))).max() > 1e-3
    discriminator.lod[...] = jnp.asarray(1.0)
    traced = jitted(discriminator, lambda m, x: m(x))(images)
    np.testing.assert_allclose(traced, score[1.0](images), rtol=1e-5, atol=1e-5)


# --- configuration and checkpoint handling ----------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        TINY_G,
        dict(resolution=32),
        dict(TINY_G, resolution=8, fused_scale=True),
        dict(
            TINY_G,
            label_size=3,
            repeat_w=False,
            const_input=False,
            noise_type="channel",
            mapping_layers=3,
            image_channels=1,
        ),
    ],
)
def test_generator_config_round_trip(config):
    generator = abstract(StyleGANGenerator, **config)
    state = {k: np.zeros(shape, np.float32) for k, shape in shapes_of(generator).items()}
    inferred = port.infer_generator_config(state)
    # A forced fused layer stores the same weight shape: the file says 'auto'.
    assert inferred == {**generator.config, "fused_scale": "auto"}


@pytest.mark.parametrize(
    "config",
    [
        TINY_D,
        dict(resolution=32),
        dict(TINY_D, fused_scale=True),
        dict(TINY_D, label_size=3, minibatch_std_group_size=0, image_channels=1),
        dict(TINY_D, minibatch_std_channels=2),
    ],
)
def test_discriminator_config_round_trip(config):
    discriminator = abstract(StyleGANDiscriminator, **config)
    state = {k: np.zeros(shape, np.float32) for k, shape in shapes_of(discriminator).items()}
    inferred = port.infer_discriminator_config(state)
    assert inferred == {**discriminator.config, "fused_scale": "auto"}


def test_blur_kernels_are_checked(reference):
    _, checkpoint = reference
    state = dict(checkpoint["discriminator"])
    assert np.allclose(state["layer1.blur.kernel"], BLUR_KERNEL)
    state["layer1.blur.kernel"] = state["layer1.blur.kernel"] * 2
    with pytest.raises(CheckpointError, match=r"non-standard values.*layer1\.blur\.kernel"):
        build_discriminator(state)


def test_inconsistent_generator_state_is_an_error(reference):
    state = dict(reference[1]["generator_smooth"])
    state["mapping.dense7.weight"] = np.zeros((50, 64), np.float32)
    with pytest.raises(CheckpointError, match="mapping outputs 50"):
        port.infer_generator_config(state)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(resolution=12), "resolution"),
        (dict(resolution=16, fused_scale="yes"), "fused_scale"),
        (dict(resolution=16, noise_type="pixel"), "noise_type"),
        (dict(resolution=16, fmaps_base=8), "fmaps_base"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        StyleGANGenerator(**kwargs, rngs=nnx.Rngs(0))
