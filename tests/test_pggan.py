"""PGGAN (jgan.models.pggan) against the genforce fixture, and the options it does not cover:
labels, fused up/down convs (checked against a numpy transcription of genforce's formulas),
progressive lod blending, minibatch-stddev grouping, config inference and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import assert_parity, fixture_dir, fixture_io, nchw
from jgan.errors import CheckpointError, InputError
from jgan.models.pggan import PGGANDiscriminator, PGGANGenerator
from jgan.ports import genforce_pggan as port
from jgan.ports.state import load_state, module_tensors
from jgan.ports.torch_pickle import read_torch_file

NAME = "genforce_pggan_r32"


def jitted(module, method):
    """`method(module, *args, **kwargs)` under plain jax.jit over the split module state."""
    graphdef, state = nnx.split(module)
    fn = jax.jit(lambda state, *args, **kwargs: method(nnx.merge(graphdef, state), *args, **kwargs))
    return lambda *args, **kwargs: fn(state, *args, **kwargs)


def generate(module, **static):
    """Jitted images of `module`; `static` keyword arguments are fixed at trace time."""
    return jitted(module, lambda g, z, **kw: g.generate(z, **static, **kw)["image"])


def discriminate(module):
    return jitted(module, lambda d, x, **kw: d(x, **kw))


def abstract(cls, **kwargs):
    """The module's structure without running its random initialisation (slow eagerly)."""
    return nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))


def state_of(module):
    return {key: np.asarray(var[...]) for key, var in module_tensors(module).items()}


def randomized(cls, seed, **kwargs):
    """A fresh module with N(0, 1) weights and N(0, 0.2^2) biases, so that no term vanishes."""
    rng = np.random.default_rng(seed)
    module = abstract(cls, **kwargs)
    state = {}
    for key, var in module_tensors(module).items():
        std = 0.0 if key == "lod" else 0.2 if key.endswith("bias") else 1.0
        state[key] = (std * rng.standard_normal(var.shape)).astype(np.float32)
    return load_state(module, state)


@pytest.fixture(scope="module")
def reference():
    io, meta = fixture_io(NAME)
    ckpt = read_torch_file(fixture_dir(NAME) / f"{NAME}.pth")

    def generator(state):
        model = abstract(PGGANGenerator, **port.infer_generator_config(state))
        return load_state(model, state, ignored=port.GENERATOR_IGNORED)

    d_state = ckpt["discriminator"]
    D = abstract(PGGANDiscriminator, **port.infer_discriminator_config(d_state))
    load_state(D, d_state, ignored=port.DISCRIMINATOR_IGNORED)
    return {
        "io": io,
        "meta": meta,
        "G": generator(ckpt["generator_smooth"]),
        "G_raw": generator(ckpt["generator"]),
        "D": D,
    }


def test_inferred_configs_match_the_fixture(reference):
    meta = reference["meta"]
    assert {**reference["G"].config, **meta["constructor_kwargs"]} == reference["G"].config
    d_kwargs = meta["discriminator"]["constructor_kwargs"]
    assert {**reference["D"].config, **d_kwargs} == reference["D"].config
    assert reference["D"].config["minibatch_std_group_size"] == 16


def test_generator_parity(reference):
    io = reference["io"]
    assert_parity(nchw(generate(reference["G"])(io["z"])), io["image"], "image")
    assert_parity(nchw(generate(reference["G_raw"])(io["z"])), io["image_generator"], "raw")


def test_discriminator_parity(reference):
    io, D = reference["io"], discriminate(reference["D"])
    assert_parity(D(io["image"].transpose(0, 2, 3, 1)), io["d_score"], "d_score")
    assert_parity(D(io["image_trunc"].transpose(0, 2, 3, 1)), io["d_score_trunc"], "trunc")


def test_generator_refuses_what_pggan_has_not(reference):
    G, z = reference["G"], reference["io"]["z"]
    with pytest.raises(InputError, match="no W space"):
        G.generate(z, trunc_psi=0.7)
    with pytest.raises(InputError, match="only the Z"):
        G.generate(z, space="w")
    with pytest.raises(InputError, match=r"shape \(N, 48\)"):
        G.generate(z[:, :40])
    with pytest.raises(InputError, match="unconditional"):
        G.generate(z, label=np.zeros((4, 1), np.float32))
    with pytest.raises(InputError, match="noise_mode"):
        G.generate(z, noise_mode="fixed")
    with pytest.raises(InputError, match=r"lod must lie in \[0, 3\]"):
        G.generate(z, lod=3.5)


def test_discriminator_refuses_labels_and_bad_batches(reference):
    D, images = reference["D"], reference["io"]["image"].transpose(0, 2, 3, 1)
    with pytest.raises(InputError, match="takes no label"):
        D(images, label=np.zeros((4, 1), np.float32))
    with pytest.raises(InputError, match=r"\(N, 32, 32, 3\)"):
        D(images.transpose(0, 3, 1, 2))
    small = abstract(PGGANDiscriminator, resolution=8, minibatch_std_group_size=4, fmaps_max=8)
    with pytest.raises(InputError, match="multiple"):
        small(jnp.zeros((6, 8, 8, 3)))


def test_minibatch_stddev_groups_are_strided(reference):
    """With group 2 on a batch of 4, samples {0, 2} and {1, 3} form the groups (genforce's
    view(G, -1, ...)), so scoring a group on its own gives the same scores."""
    kwargs = {"minibatch_std_group_size": 2, "fmaps_base": 64, "fmaps_max": 16}
    D = discriminate(randomized(PGGANDiscriminator, 3, resolution=8, **kwargs))
    images = np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype(np.float32)
    scores = np.asarray(D(images))
    np.testing.assert_allclose(D(images[[0, 2]]), scores[[0, 2]], atol=1e-5)
    np.testing.assert_allclose(D(images[[1, 3]]), scores[[1, 3]], atol=1e-5)
    assert np.abs(np.asarray(D(images[[0, 1]])) - scores[[0, 1]]).max() > 1e-4


# A numpy transcription of genforce's PGGAN generator formulas (NCHW, float64).


SQRT2 = np.sqrt(2.0)


def np_pixel_norm(x):
    return x / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + 1e-8)


def np_conv(x, weight, pad):
    """Cross-correlation with an OIHW weight (torch conv2d)."""
    k = weight.shape[-1]
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    size = x.shape[-1] - k + 1
    return sum(
        np.einsum("nchw,oc->nohw", x[:, :, i : i + size, j : j + size], weight[:, :, i, j])
        for i in range(k)
        for j in range(k)
    )


def np_fused_upconv(x, weight):
    """genforce's fused up-conv: 4-tap kernel from the (in, out, 3, 3) weight, then torch's
    conv_transpose2d(stride 2, padding 1) written as a scatter of each input pixel."""
    w4 = np.zeros(weight.shape[:2] + (4, 4))
    for di in (0, 1):
        for dj in (0, 1):
            w4[:, :, di : di + 3, dj : dj + 3] += weight
    n, _, h, w = x.shape
    full = np.zeros((n, w4.shape[1], 2 * h + 2, 2 * w + 2))
    for a in range(4):
        for b in range(4):
            full[:, :, a : a + 2 * h : 2, b : b + 2 * w : 2] += np.einsum(
                "nchw,co->nohw", x, w4[:, :, a, b]
            )
    return full[:, :, 1:-1, 1:-1]


def np_generator(state, config, z, label):
    """Image (NCHW) of a genforce PGGAN generator at lod 0, from its state dict."""
    s = {k: v.astype(np.float64) for k, v in state.items()}

    def block(name, x, pad, gain=SQRT2, fused=False, up=False, act=True):
        w = s[f"{name}.weight"]
        fan_in = w.shape[0 if fused else 1] * w.shape[2] * w.shape[3]
        w = w * gain / np.sqrt(fan_in)
        x = np_pixel_norm(x)
        if fused:
            x = np_fused_upconv(x, w)
        else:
            if up:
                x = x.repeat(2, axis=2).repeat(2, axis=3)
            x = np_conv(x, w, pad)
        x = x + s[f"{name}.bias"][None, :, None, None]
        return np.where(x >= 0, x, 0.2 * x) if act else x

    z = np_pixel_norm(z.astype(np.float64)) * np.sqrt(config["z_space_dim"])
    x = np.concatenate([z, label], axis=1)[:, :, None, None]
    num_blocks = int(np.log2(config["resolution"])) - 1
    for b in range(num_blocks):
        if b == 0:
            x = block("layer0", x, pad=3)
        else:
            x = block(f"layer{2 * b}", x, pad=1, fused=config["fused_scale"], up=True)
        x = block(f"layer{2 * b + 1}", x, pad=1)
    return block(f"output{num_blocks - 1}", x, pad=0, gain=1.0, act=False)


FUSED = {
    "resolution": 16,
    "z_space_dim": 6,
    "label_size": 2,
    "fused_scale": True,
    "fmaps_base": 64,
    "fmaps_max": 16,
}


@pytest.fixture(scope="module")
def fused_generator():
    return randomized(PGGANGenerator, 1, **FUSED)


def test_label_conditioning(fused_generator):
    run = generate(fused_generator)
    z = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    first = np.asarray(run(z, label=np.array([[1, 0], [1, 0]], np.float32)))
    second = np.asarray(run(z, label=np.array([[0, 1], [0, 1]], np.float32)))
    assert np.abs(first - second).max() > 1e-2
    with pytest.raises(InputError, match=r"needs label= of shape \(2, 2\)"):
        fused_generator.generate(z)
    with pytest.raises(InputError, match=r"needs label= of shape \(2, 2\)"):
        fused_generator.generate(z, label=np.zeros((2, 3), np.float32))


def test_fused_generator_matches_numpy_reference(fused_generator):
    """Conditional, fused up-convs, every bias non-zero: against the numpy transcription."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((3, 6)).astype(np.float32)
    label = rng.standard_normal((3, 2)).astype(np.float32)
    image = generate(fused_generator)(z, label=label)
    expected = np_generator(state_of(fused_generator), fused_generator.config, z, label)
    assert_parity(nchw(image), expected, "fused image")


def test_fused_upconv_is_upsample_then_flipped_conv(fused_generator):
    """genforce's fused layer equals nearest upsampling + a 3x3 conv whose OIHW weight is the
    stored (in, out, k, k) weight flipped in space."""
    state = state_of(fused_generator)
    for b in (1, 2):
        key = f"layer{2 * b}.weight"
        state[key] = np.ascontiguousarray(np.flip(state[key], (2, 3)).transpose(1, 0, 2, 3))
    plain = load_state(abstract(PGGANGenerator, **{**FUSED, "fused_scale": False}), state)
    z = np.random.default_rng(3).standard_normal((2, 6)).astype(np.float32)
    label = np.eye(2, dtype=np.float32)
    fused = generate(fused_generator)(z, label=label)
    assert_parity(generate(plain)(z, label=label), fused, "fused vs upsample + conv")


def test_fused_downconv_is_conv_then_avg_pool():
    """genforce's fused D conv (4-tap kernel / 4, stride 2, padding 1) equals the 3x3 conv
    followed by 2x2 average pooling, before bias and lrelu (the non-fused block pools after
    the lrelu, so the two D variants differ as in genforce)."""
    kwargs = {"resolution": 16, "label_size": 3, "fmaps_base": 64, "fmaps_max": 16}
    D = randomized(PGGANDiscriminator, 4, fused_scale=True, **kwargs)
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 16, 16, 4)))
    state = {k: v.astype(np.float64) for k, v in state_of(D).items()}
    weight = state["layer1.weight"] * SQRT2 / np.sqrt(4 * 9)
    y = np_conv(x.transpose(0, 3, 1, 2).astype(np.float64), weight, 1)
    y = y.reshape(2, 8, 8, 2, 8, 2).mean(axis=(3, 5)) + state["layer1.bias"][None, :, None, None]
    expected = np.where(y >= 0, y, 0.2 * y).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(jitted(D, lambda d, x: d.layer1(x))(x), expected, atol=1e-5)
    images = jax.random.normal(jax.random.key(2), (4, 16, 16, 3))
    plain = load_state(abstract(PGGANDiscriminator, **kwargs), state_of(D))
    scores = np.asarray(discriminate(D)(images))
    assert scores.shape == (4, 4)
    assert np.abs(scores - np.asarray(discriminate(plain)(images))).max() > 1e-3


def nearest(image):
    return image.repeat(2, axis=1).repeat(2, axis=2)


def generator_stages(G, z):
    """ToRGB of every resolution, each from the blocks up to it (genforce's layer order)."""
    x = z / jnp.sqrt(jnp.mean(z**2, axis=1, keepdims=True) + 1e-8) * np.sqrt(z.shape[1])
    x = x[:, None, None]
    rgb = []
    for b in range(G.num_blocks):
        x = getattr(G, f"layer{2 * b + 1}")(getattr(G, f"layer{2 * b}")(x))
        rgb.append(getattr(G, f"output{b}")(x))
    return rgb


def test_generator_lod_blending(reference):
    """genforce: at lod 0.5 the image is 0.5 * ToRGB(32) + 0.5 * up(ToRGB(16)); at lod 1.25,
    up(0.75 * ToRGB(16) + 0.25 * up(ToRGB(8))); a traced lod (the argument under jit, or the
    stored buffer) and a static one agree."""
    G, z = reference["G"], reference["io"]["z"]
    rgb = [np.asarray(image) for image in jitted(G, generator_stages)(z)]
    half = 0.5 * rgb[3] + 0.5 * nearest(rgb[2])
    run = generate(G)
    np.testing.assert_allclose(run(z, lod=0.5), half, atol=1e-5)
    np.testing.assert_allclose(generate(G, lod=0.5)(z), half, atol=1e-5)
    np.testing.assert_allclose(run(z, lod=1.0), nearest(rgb[2]), atol=1e-5)
    expected = nearest(0.75 * rgb[2] + 0.25 * nearest(rgb[1]))
    np.testing.assert_allclose(run(z, lod=1.25), expected, atol=1e-5)
    np.testing.assert_allclose(run(z, lod=0.0), rgb[3], atol=1e-5)

    staged = load_state(abstract(PGGANGenerator, **G.config), {**state_of(G), "lod": 0.5})
    np.testing.assert_allclose(generate(staged)(z), half, atol=1e-5)


def discriminator_at_half_lod(D, images):
    """genforce's D at lod 0.5, written out block by block."""
    pooled = images.reshape(4, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    x = D.layer1(D.layer0(D.input0(images)))
    x = 0.5 * D.input1(pooled) + 0.5 * x
    for i in range(2, 7):
        x = getattr(D, f"layer{i}")(x)
    x = D.layer7(x.transpose(0, 3, 1, 2))
    return D.layer8(jnp.where(x >= 0, x, 0.2 * x))


def test_discriminator_lod_blending(reference):
    """genforce: at lod 0.5 the 16x16 features are 0.5 * FromRGB(pool(x)) + 0.5 * the 32x32
    block's output; the stored lod buffer is used when no lod is given."""
    D = reference["D"]
    images = reference["io"]["image"].transpose(0, 2, 3, 1)
    expected = np.asarray(jitted(D, discriminator_at_half_lod)(images))
    np.testing.assert_allclose(discriminate(D)(images, lod=0.5), expected, atol=1e-5)
    staged = load_state(abstract(PGGANDiscriminator, **D.config), {**state_of(D), "lod": 0.5})
    np.testing.assert_allclose(discriminate(staged)(images), expected, atol=1e-5)
    assert np.abs(expected - np.asarray(discriminate(D)(images))).max() > 1e-3


@pytest.mark.parametrize(
    "kwargs",
    [
        FUSED,
        {"resolution": 8, "z_space_dim": 5, "image_channels": 1, "fmaps_max": 8},
    ],
)
def test_generator_config_round_trip(kwargs):
    G = randomized(PGGANGenerator, 5, **kwargs)
    inferred = port.infer_generator_config(state_of(G), label_size=kwargs.get("label_size", 0))
    assert inferred == G.config


@pytest.mark.parametrize(
    "kwargs",
    [
        {
            "resolution": 16,
            "label_size": 2,
            "minibatch_std_group_size": 0,
            "fmaps_base": 64,
            "fmaps_max": 16,
        },
        {"resolution": 8, "image_channels": 1, "fmaps_max": 16},
    ],
)
def test_discriminator_config_round_trip(kwargs):
    D = randomized(PGGANDiscriminator, 6, **kwargs)
    assert port.infer_discriminator_config(state_of(D)) == D.config


def test_inconsistent_states_are_named():
    state = state_of(randomized(PGGANGenerator, 7, **FUSED))
    del state["output1.weight"]
    with pytest.raises(CheckpointError, match="output0.weight, output1.weight"):
        port.infer_generator_config(state)
    kwargs = {"resolution": 16, "fmaps_base": 64, "fmaps_max": 16}
    state = state_of(randomized(PGGANDiscriminator, 8, **kwargs))
    state["input1.weight"] = np.zeros((5, 3, 1, 1), np.float32)
    with pytest.raises(CheckpointError, match="feature-map widths"):
        port.infer_discriminator_config(state)
