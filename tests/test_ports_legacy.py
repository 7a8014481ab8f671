"""The older genforce-lineage formats: InterFaceGAN (F1), HiGAN / mGANprior (F2) and IDInvert
(F3, generator and encoder), read by `jgan.load` and compared with their fixtures; the key
tables, layout fixes, config inference, errors, `jgan.encode` and model directories holding
an encoder and a perceptual network."""

import jax
import numpy as np
import pytest
from flax import nnx

import jgan
from conftest import assert_parity, fixture_dir, fixture_io, nchw
from jgan.models.encoders import StyleGANEncoder
from jgan.models.registry import build_abstract
from jgan.models.vgg import VGG16
from jgan.ports import higan, idinvert, interfacegan
from jgan.ports.state import load_state, module_tensors
from jgan.ports.torch_pickle import read_torch_file

FILES = {
    "interfacegan_pggan_r16": "pggan_r16.pth",
    "interfacegan_stylegan_r32": "stylegan_r32.pth",
    "higan_stylegan2_r32": "stylegan2_r32_generator.pth",
    "idinvert_styleganinv_r128": "styleganinv_r128_generator.pth",
}
ENCODER_FILE = "styleganinv_r128_encoder.pth"


def path_of(name, file=None):
    return fixture_dir(name) / (file or FILES[name])


@pytest.fixture(scope="module")
def loaded():
    """{fixture name: (bundle, io.npz, meta.json)}, each file read once."""
    return {name: (jgan.load(path_of(name)), *fixture_io(name)) for name in FILES}


@pytest.fixture(scope="module")
def encoder():
    return jgan.load(path_of("idinvert_styleganinv_r128", ENCODER_FILE))


def test_interfacegan_pggan(loaded):
    bundle, io, meta = loaded["interfacegan_pggan_r16"]
    assert bundle.arch == "pggan" and bundle.discriminator is None
    # The hand-set table [latent, 64, 48, 32] follows no fmaps formula: kept as `channels`.
    table = meta["constructor_kwargs"]["_RESOLUTIONS_TO_CHANNELS[16]"]
    config = bundle.generator.config
    assert config["channels"] == table[1:] and config["z_space_dim"] == table[0]
    assert config["fused_scale"] is False and config["resolution"] == 16
    # The wrapper's z preprocessing (norm sqrt(512)) is a no-op through the pixel norm.
    assert_parity(io["image_from_raw_z"], io["image"], "image_from_raw_z")
    image = jgan.synthesize(bundle.generator, io["z"])["image"]
    assert_parity(nchw(image), io["image"], "image")


def test_interfacegan_pggan_fused_layout(loaded):
    """A fused up-conv file stores `layerN.weight` as (k, k, in, out). Nearest upsampling + a
    3x3 conv equals the fused transposed conv with the flipped kernel, so storing the fixture's
    up-convs that way must give the fixture's images."""
    _, io, _ = loaded["interfacegan_pggan_r16"]
    state = dict(read_torch_file(path_of("interfacegan_pggan_r16")))
    for block in (1, 2):
        weight = state.pop(f"layer{2 * block}.conv.weight")  # (out, in, 3, 3)
        transposed = np.flip(weight, (2, 3)).transpose(1, 0, 2, 3)  # conv-transpose (in, out)
        state[f"layer{2 * block}.weight"] = transposed.transpose(2, 3, 0, 1)  # (k, k, in, out)
    generator = interfacegan.read(state, "fused.pth")["generator"]
    assert generator.config["fused_scale"] is True
    image = jgan.synthesize(generator, io["z"])["image"]
    assert_parity(nchw(image), io["image"], "image of the fused form")


def test_interfacegan_stylegan(loaded):
    bundle, io, meta = loaded["interfacegan_stylegan_r32"]
    G = bundle.generator
    table = meta["constructor_kwargs"]["_RESOLUTIONS_TO_CHANNELS[32]"]
    assert G.config["channels"] == table[1:] and G.config["fused_scale"] == "auto"
    out = jgan.synthesize(G, io["z"])
    for key in ("w", "wp"):
        assert_parity(out[key], io[key], key)
    assert_parity(nchw(out["image"]), io["image"], "image")
    for i in range(G.num_layers):
        style = getattr(G.synthesis, f"layer{i}").style(out["wp"][:, i])
        assert_parity(style, io[f"style{i:02d}"], f"style{i:02d}")
    psi, layers = float(io["trunc_psi"]), int(io["trunc_layers"])
    trunc = jgan.synthesize(G, io["z"], trunc_psi=psi, trunc_layers=layers)
    assert_parity(trunc["wp"], io["wp_trunc"], "wp_trunc")
    assert_parity(nchw(trunc["image"]), io["image_trunc"], "image_trunc")
    psi, layers = interfacegan.DEFAULT_TRUNCATION
    default = jgan.synthesize(G, io["z"], trunc_psi=psi, trunc_layers=layers)
    assert_parity(default["wp"], io["wp_trunc_default"], "wp_trunc_default")
    assert_parity(nchw(default["image"]), io["image_trunc_default"], "image_trunc_default")
    from_wp = jgan.synthesize(G, io["wp_trunc"], space="wp")["image"]
    assert_parity(nchw(from_wp), io["image_from_wp_trunc"], "image_from_wp_trunc")


def test_higan_stylegan2(loaded):
    bundle, io, meta = loaded["higan_stylegan2_r32"]
    kwargs = meta["constructor_kwargs"]
    config = bundle.generator.config
    assert bundle.arch == "stylegan2" and config["architecture"] == kwargs["architecture_type"]
    for key in ("resolution", "z_space_dim", "w_space_dim", "fmaps_base", "fmaps_max"):
        assert config[key] == kwargs[key], key
    assert config["mapping_layers"] == kwargs["num_mapping_layers"]
    assert config["mapping_fmaps"] == kwargs["fmaps_max"]  # HiGAN's hidden width
    out = jgan.synthesize(bundle.generator, io["z"])
    for key in ("w", "wp"):
        assert_parity(out[key], io[key], key)
    assert_parity(nchw(out["image"]), io["image"], "image")
    psi, layers = float(io["trunc_psi"]), int(io["trunc_layers"])
    trunc = jgan.synthesize(bundle.generator, io["z"], trunc_psi=psi, trunc_layers=layers)
    assert_parity(trunc["wp"], io["wp_trunc"], "wp_trunc")
    assert_parity(nchw(trunc["image"]), io["image_trunc"], "image_trunc")


def test_higan_stylegan2_weights_become_oihw():
    state = read_torch_file(path_of("higan_stylegan2_r32"))
    tensors = dict(
        nnx.to_flat_state(nnx.state(jgan.load(path_of("higan_stylegan2_r32")).generator))
    )
    for key in ("synthesis.layer1.weight", "synthesis.output2.weight"):
        loaded = np.asarray(tensors[tuple(key.split("."))][...])
        np.testing.assert_array_equal(loaded, np.transpose(state[key], (3, 2, 0, 1)))


def test_idinvert_generator(loaded):
    bundle, io, meta = loaded["idinvert_styleganinv_r128"]
    G = bundle.generator
    kwargs = meta["constructor_kwargs"]
    for key in ("resolution", "z_space_dim", "w_space_dim", "repeat_w", "final_tanh"):
        assert G.config[key] == kwargs[key], key
    assert G.config["fused_scale"] == "auto" and G.config["mapping_layers"] == 8
    # The wrapper truncates Z codes with the psi and layers baked into its settings.
    psi, layers = idinvert.DEFAULT_TRUNCATION
    assert (float(io["trunc_psi"]), int(io["trunc_layers"])) == (pytest.approx(psi), layers)
    out = jgan.synthesize(G, io["z"], trunc_psi=psi, trunc_layers=layers)
    assert_parity(out["w"], io["w"], "w")  # (N, num_layers * w_dim): one w per layer
    assert_parity(out["wp"], io["wp"], "wp")
    assert_parity(nchw(out["image"]), io["image"], "image")
    for i in range(G.num_layers):
        style = getattr(G.synthesis, f"layer{i}").style(out["wp"][:, i])
        assert_parity(style, io[f"style{i:02d}"], f"style{i:02d}")
    from_wp = jgan.synthesize(G, io["wp_input"], space="wp")["image"]
    assert_parity(nchw(from_wp), io["image_from_wp"], "image_from_wp")
    assert float(np.abs(from_wp).max()) <= 1.0  # final tanh


def test_idinvert_fused_up_conv_at_128(loaded):
    """Auto fused_scale fuses the up-conv of resolution 128 only; its file weight is TF's
    (k, k, in, out), the others are OIHW `conv.weight`. The image parity above runs it."""
    G = loaded["idinvert_styleganinv_r128"][0].generator
    state = read_torch_file(path_of("idinvert_styleganinv_r128"))
    assert [G.synthesis.layer8.fused_scale, G.synthesis.layer10.fused_scale] == [False, True]
    assert "synthesis.layer8.conv.weight" in state and "synthesis.layer10.weight" in state
    np.testing.assert_array_equal(
        np.asarray(G.synthesis.layer10.weight[...]),
        np.transpose(state["synthesis.layer10.weight"], (3, 2, 0, 1)),
    )
    # Fusing the resolution-64 up-conv as well fits no fused_scale option.
    state = dict(state)
    state["synthesis.layer8.weight"] = np.transpose(state.pop("synthesis.layer8.conv.weight"))
    with pytest.raises(jgan.CheckpointError, match=r"blocks \[4, 5\] of \[1, 2, 3, 4, 5\]"):
        idinvert.read(state, "edited.pth")


def test_idinvert_encoder(loaded, encoder):
    _, io, meta = loaded["idinvert_styleganinv_r128"]
    assert encoder.arch == "idinvert_encoder" and encoder.generator is None
    assert encoder.encoder.config == meta["encoder"]["constructor_kwargs"]
    # The official preprocessing: uint8 RGB / 255 * 2 - 1, i.e. NHWC in [-1, 1] for jgan.
    images = io["x_uint8_nhwc"] / 127.5 - 1.0
    np.testing.assert_allclose(nchw(images), io["x"], atol=1e-6)
    codes = jgan.encode(encoder.encoder, images)
    assert len(codes.sharding.device_set) == jax.device_count()
    assert_parity(codes, io["encoder_code"], "encoder_code")
    G = loaded["idinvert_styleganinv_r128"][0].generator
    image = jgan.synthesize(G, io["encoder_code"], space="wp")["image"]
    assert_parity(nchw(image), io["image_reconstruction"], "image_reconstruction")


def test_encoder_use_wscale(loaded):
    """With use_wscale every conv applies gain sqrt(2) / sqrt(fan_in) at run time (the residual
    convs through their WScaleLayer, the others directly); the release stores those factors
    folded in. Unfolded weights with use_wscale=True must give the fixture's codes."""
    _, io, _ = loaded["idinvert_styleganinv_r128"]
    state = read_torch_file(path_of("idinvert_styleganinv_r128", ENCODER_FILE))
    unfolded = {
        k: v / np.sqrt(2.0 / np.prod(v.shape[1:])) if v.ndim == 4 else v  # convs, not the fc
        for k, v in state.items()
    }
    scaled = idinvert.read(unfolded, "unfolded.pth", use_wscale=True)["encoder"]
    codes = jgan.encode(scaled, io["x"].transpose(0, 2, 3, 1))
    assert_parity(codes, io["encoder_code"], "encoder_code with use_wscale")


def test_encode_rejects_bad_input(encoder):
    images = np.zeros((2, 3, 128, 128), np.float32)
    with pytest.raises(jgan.InputError, match="NCHW"):
        jgan.encode(encoder.encoder, images)
    with pytest.raises(jgan.InputError, match="encoder module"):
        jgan.encode(object(), images)


def test_formats_are_told_apart():
    states = {name: read_torch_file(path_of(name)) for name in FILES}
    states["encoder"] = read_torch_file(path_of("idinvert_styleganinv_r128", ENCODER_FILE))
    owners = {
        "interfacegan_pggan_r16": interfacegan.is_interfacegan,
        "interfacegan_stylegan_r32": interfacegan.is_interfacegan,
        "higan_stylegan2_r32": higan.is_higan,
        "idinvert_styleganinv_r128": idinvert.is_idinvert,
        "encoder": idinvert.is_idinvert,
    }
    for name, state in states.items():
        claims = {f for f in (interfacegan.is_interfacegan, higan.is_higan, idinvert.is_idinvert)}
        assert [f(state) for f in claims] == [f is owners[name] for f in claims], name
    # HiGAN's StyleGAN is IDInvert's key set with one w for all layers.
    assert higan.is_stylegan(states["idinvert_styleganinv_r128"])


def test_missing_tensor_is_named_as_the_file_names_it():
    state = read_torch_file(path_of("interfacegan_stylegan_r32"))
    del state["synthesis.layer3.epilogue.bias"]
    with pytest.raises(jgan.CheckpointError, match=r"missing tensors: synthesis\.layer3\.epilogue"):
        interfacegan.read(state, "edited.pth")
    state = read_torch_file(path_of("higan_stylegan2_r32"))
    state["synthesis.output1.style.fc.weight"] = np.zeros((7, 48), np.float32)
    with pytest.raises(jgan.CheckpointError, match=r"synthesis\.output1\.style\.fc\.weight \(7"):
        higan.read(state, "edited.pth")
    state = read_torch_file(path_of("idinvert_styleganinv_r128", ENCODER_FILE))
    del state["block2.bn1.bn.running_var"]
    with pytest.raises(
        jgan.CheckpointError, match=r"missing tensors: block2\.bn1\.bn\.running_var"
    ):
        idinvert.read(state, "edited.pth")


def test_overrides(loaded):
    """Overrides (constructor argument names) settle what a file cannot tell."""
    name = "interfacegan_pggan_r16"
    _, io, _ = loaded[name]
    squashed = jgan.load(path_of(name), final_tanh=True).generator
    image = jgan.synthesize(squashed, io["z"])["image"]
    assert_parity(nchw(image), np.tanh(io["image"]), "tanh of the image")
    plain = jgan.load(path_of("idinvert_styleganinv_r128"), final_tanh=False).generator
    assert plain.config["final_tanh"] is False and not plain.synthesis.final_tanh
    with pytest.raises(jgan.InputError, match="unknown override"):
        jgan.load(path_of(name), mapping_layers=2)
    with pytest.raises(jgan.InputError, match="unknown override"):
        jgan.load(path_of("idinvert_styleganinv_r128", ENCODER_FILE), fmaps_base=8)


def test_model_directory_with_encoder_and_perceptual(loaded, encoder, tmp_path):
    generator = loaded["idinvert_styleganinv_r128"][0].generator
    # Random values, drawn in numpy: VGG16's own initialiser is slow on CPU.
    vgg = build_abstract(VGG16, {"convention": "caffe"})
    rng = np.random.default_rng(0)
    load_state(
        vgg, {k: rng.standard_normal(v.shape, np.float32) for k, v in module_tensors(vgg).items()}
    )
    bundle = jgan.Bundle(
        arch="stylegan", generator=generator, encoder=encoder.encoder, perceptual=vgg
    )
    again = jgan.load(jgan.save_model_dir(bundle, tmp_path / "model"))
    assert again.config == bundle.config
    assert again.config["arches"] == {
        "generator": "stylegan",
        "encoder": "idinvert_encoder",
        "perceptual": "vgg16",
    }
    assert isinstance(again.encoder, StyleGANEncoder) and isinstance(again.perceptual, VGG16)
    for role in ("generator", "encoder", "perceptual"):
        before = nnx.to_flat_state(nnx.state(getattr(bundle, role)))
        after = dict(nnx.to_flat_state(nnx.state(getattr(again, role))))
        for path, var in before:
            np.testing.assert_array_equal(np.asarray(after[path][...]), np.asarray(var[...]))
