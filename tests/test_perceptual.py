"""VGG16 perceptual features (torchvision and IDInvert/caffe conventions) and LPIPS v0.1 against
the torchvision_vgg16, idinvert_vgg16 and lpips_vgg_v01 fixtures, plus their invariants."""

import hashlib
import importlib.util
import os
import pathlib

import jax
import numpy as np
import pytest

import jgan
from conftest import assert_parity, fixture_dir, fixture_io, nchw
from jgan.models.lpips import CHANNELS, SCALE, SHIFT, TAPS
from jgan.models.vgg import CAFFE_BGR_MEAN, IMAGENET_MEAN, IMAGENET_STD, LAYERS, VGG16
from jgan.ports import vgg as vgg_port
from jgan.ports.torch_pickle import read_torch_file

ALL_TAPS = (*TAPS, "pool5")  # one tuple everywhere: one compiled function per input shape


def nhwc(images):
    return np.transpose(np.asarray(images), (0, 2, 3, 1))


@pytest.fixture(scope="module")
def torchvision():
    """(VGG16 via jgan.load, its state dict, io.npz, the taps of io x_pm1)."""
    path = fixture_dir("torchvision_vgg16") / "vgg16_features.pth"
    io, _ = fixture_io("torchvision_vgg16")
    net = jgan.load(path).perceptual
    taps = jgan.perceptual_features(net, nhwc(io["x_pm1"]), ALL_TAPS)
    return net, read_torch_file(path), io, taps


@pytest.fixture(scope="module")
def caffe():
    path = fixture_dir("idinvert_vgg16") / "vgg16.pth"
    io, _ = fixture_io("idinvert_vgg16")
    return jgan.load(path), io


def test_torchvision_parity(torchvision):
    net, _, io, taps = torchvision
    assert net.config == {"convention": "torchvision"}
    assert set(taps) == set(ALL_TAPS)
    for name in ALL_TAPS:
        assert_parity(nchw(taps[name]), io[name], name)
    # mGANprior's VGGLoss: features[:16] of the (here not resized) image, i.e. relu3_3.
    assert_parity(nchw(taps["relu3_3"]), io["mganprior_features16"], "mganprior_features16")


def test_caffe_parity(caffe):
    bundle, io = caffe
    assert bundle.arch == "vgg16" and bundle.perceptual.config == {"convention": "caffe"}
    assert bundle.generator is None
    taps = jgan.perceptual_features(bundle.perceptual, nhwc(io["x"]), ALL_TAPS)
    for name in TAPS:
        (key,) = [k for k in io if k.startswith(name)]
        assert_parity(nchw(taps[name]), io[key], key)


def test_conventions_agree_on_converted_inputs(torchvision, caffe):
    """Both files hold the same tensors, so inputs whose preprocessed forms coincide give the
    same taps: torchvision's ((x+1)/2 - mean)/std equals caffe's BGR((y+1)*127.5) - mean."""
    _, _, io, taps = torchvision
    normalized = nhwc(io["x"])
    np.testing.assert_allclose(
        normalized, (nhwc(io["x01"]) - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5
    )
    y = (normalized + CAFFE_BGR_MEAN)[..., ::-1] / 127.5 - 1.0
    caffe_taps = jgan.perceptual_features(caffe[0].perceptual, y, ALL_TAPS)
    for name in ALL_TAPS:
        assert_parity(caffe_taps[name], taps[name], name)
        assert float(np.abs(taps[name]).max()) > 0.1


def count_convs(net, x, layers):
    jaxpr = jax.make_jaxpr(lambda images: net(images, layers))(x)
    return str(jaxpr).count("conv_general_dilated")


def test_stops_after_last_tap_and_single_name(torchvision):
    net, _, io, _ = torchvision
    x = nhwc(io["x_pm1"])[:1, :32, :32]
    assert count_convs(net, x, ("relu1_1",)) == 1
    assert count_convs(net, x, ("relu1_1", "relu3_3")) == 7
    assert count_convs(net, x, ("pool5",)) == 13
    out = jgan.perceptual_features(net, x, "relu2_1")
    assert list(out) == ["relu2_1"] and out["relu2_1"].shape == (1, 16, 16, 128)
    out = jgan.perceptual_features(net, x, ("relu1_2", "pool1"))
    assert out["pool1"].shape == (1, 16, 16, 64)
    expected = np.asarray(out["relu1_2"]).reshape(1, 16, 2, 16, 2, 64).max((2, 4))
    np.testing.assert_array_equal(out["pool1"], expected)


def test_bad_inputs(torchvision):
    net, _, io, _ = torchvision
    x = nhwc(io["x_pm1"])
    with pytest.raises(jgan.InputError, match="valid layers.*relu4_3") as error:
        jgan.perceptual_features(net, x, ("relu4_4",))
    assert "relu4_4" in str(error.value) and all(name in str(error.value) for name in LAYERS)
    with pytest.raises(jgan.InputError, match=r"\(N, H, W, 3\).*NCHW"):
        jgan.perceptual_features(net, io["x_pm1"])
    with pytest.raises(jgan.InputError, match=r"\(N, H, W, 3\)"):
        jgan.perceptual_features(net, x[0])
    with pytest.raises(jgan.InputError, match=r"\(N, H, W, 3\)"):
        jgan.perceptual_features(net, x[..., :1])
    with pytest.raises(jgan.InputError, match="at least 32x32"):
        jgan.perceptual_features(net, x[:, :16, :16], ("pool5",))
    with pytest.raises(jgan.InputError, match="NaN"):
        jgan.perceptual_features(net, np.full((1, 8, 8, 3), np.nan, np.float32), "relu1_1")
    with pytest.raises(jgan.InputError, match="VGG16"):
        jgan.perceptual_features(object(), x)
    with pytest.raises(jgan.InputError, match="convention"):
        VGG16("keras", rngs=None)


def test_port_recognition(torchvision, caffe):
    _, state, _, _ = torchvision
    assert vgg_port.convention_of(state) == "torchvision"
    caffe_state = {k.replace("features.", "layer"): v for k, v in state.items()}
    assert vgg_port.convention_of(caffe_state) == "caffe"
    # torchvision's full vgg16 file: the classifier tensors are recognised and left out.
    full = {**state, "classifier.0.weight": np.zeros((8, 4)), "classifier.6.bias": np.zeros(3)}
    assert vgg_port.is_vgg(full)
    assert vgg_port.build(full, "full vgg16").convention == "torchvision"
    assert not vgg_port.is_vgg({k: v for k, v in state.items() if k != "features.28.bias"})
    assert not vgg_port.is_vgg({"generator": {}, "discriminator": {}})
    assert not vgg_port.is_vgg(
        {k: np.ones((1, c, 1, 1)) for k, c in zip(vgg_port.HEAD_KEYS, CHANNELS, strict=True)}
    )
    with pytest.raises(jgan.CheckpointError, match="not a VGG16 state dict"):
        vgg_port.build({"features.0.weight": state["features.0.weight"]}, "partial")
    bad = {**state, "features.0.weight": state["features.0.weight"][:, :, :1]}
    with pytest.raises(jgan.CheckpointError, match="wrong shapes: features.0.weight"):
        vgg_port.build(bad, "bad")
    with pytest.raises(jgan.InputError, match="no overrides"):
        vgg_port.read(state, "vgg16.pth", resolution=256)
    heads = {
        k: np.ones((1, c, 1, 1), np.float32)
        for k, c in zip(vgg_port.HEAD_KEYS, CHANNELS, strict=True)
    }
    with pytest.raises(jgan.CheckpointError, match="caffe-convention"):
        vgg_port.build_lpips(caffe_state, heads, "lpips")
    with pytest.raises(jgan.CheckpointError, match="lin0.model.1.weight"):
        vgg_port.build_lpips(state, {"lin0.model.0.weight": heads["lin0.model.1.weight"]})


# --- LPIPS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lpips_io():
    return fixture_io("lpips_vgg_v01")


@pytest.fixture(scope="module")
def random_heads_lpips(torchvision):
    """LPIPS on the fixture trunk with seeded non-negative heads: needs no lpips wheel."""
    rng = np.random.default_rng(0)
    heads = {
        k: rng.uniform(0.0, 1.0, (1, c, 1, 1)).astype(np.float32)
        for k, c in zip(vgg_port.HEAD_KEYS, CHANNELS, strict=True)
    }
    return vgg_port.build_lpips(torchvision[1], heads, "random heads"), heads


def lpips_heads_path(meta):
    """The lpips package's v0.1 VGG head file, if it is on this machine (tests never download).

    Looked up in JGAN_LPIPS_HEADS, then in an installed `lpips` package (found, not imported).
    """
    path = os.environ.get("JGAN_LPIPS_HEADS")
    if not path:
        spec = importlib.util.find_spec("lpips")
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = pathlib.Path(locations[0]) / "weights" / "v0.1" / "vgg.pth" if locations else None
    if path is None or not pathlib.Path(path).is_file():
        pytest.skip(
            "LPIPS head weights not available locally: the fixture has none of its own and they "
            "ship only in the lpips wheel (lpips/weights/v0.1/vgg.pth), which tests never "
            "download; set JGAN_LPIPS_HEADS=<path to vgg.pth> or `pip install --no-deps "
            "lpips==0.1.4` to run this test"
        )
    digest = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    expected = meta["checkpoint_format"].split("sha256 ")[1].split(",")[0]
    assert digest == expected, f"{path} is not the lpips 0.1.4 vgg.pth (sha256 {digest})"
    return path


def test_lpips_parity_with_official_heads(lpips_io):
    io, meta = lpips_io
    heads = lpips_heads_path(meta)
    trunk = fixture_dir("torchvision_vgg16") / "vgg16_features.pth"
    net = vgg_port.load_lpips(trunk, heads)
    out = jgan.lpips(net, nhwc(io["x0"]), nhwc(io["x1"]), details=True)
    assert_parity(out["distance"], io["lpips"].reshape(-1), "lpips")
    for k in range(len(TAPS)):
        assert_parity(out["layers"][:, k], io[f"lpips_layer{k}"].reshape(-1), f"layer{k}")
    assert_parity(out["spatial"], io["lpips_spatial"][:, 0], "lpips_spatial")
    plain = jgan.lpips(net, nhwc(io["x0"]), nhwc(io["x1"]))
    np.testing.assert_allclose(plain, out["distance"], rtol=1e-6)


def test_lpips_matches_numpy_from_vgg_taps(torchvision, random_heads_lpips, lpips_io):
    """The LPIPS head math (scaling, unit norm, squared difference, lin, means, bilinear map)
    recomputed in numpy from the torchvision VGG16 taps of equivalently converted inputs."""
    vgg, _, _, _ = torchvision
    net, heads = random_heads_lpips
    io, _ = lpips_io
    x0, x1 = nhwc(io["x0"]), nhwc(io["x1"])

    def as_torchvision_input(x):  # the y with ((y+1)/2 - mean)/std == (x - shift)/scale
        return 2.0 * ((x - SHIFT) / SCALE * IMAGENET_STD + IMAGENET_MEAN) - 1.0

    taps0 = jgan.perceptual_features(vgg, as_torchvision_input(x0), ALL_TAPS)
    taps1 = jgan.perceptual_features(vgg, as_torchvision_input(x1), ALL_TAPS)
    expected_layers, expected_spatial = [], 0.0
    for k, name in enumerate(TAPS):
        f0, f1 = (np.asarray(t[name], np.float64) for t in (taps0, taps1))
        n0 = f0 / (np.sqrt((f0**2).sum(-1, keepdims=True)) + 1e-10)
        n1 = f1 / (np.sqrt((f1**2).sum(-1, keepdims=True)) + 1e-10)
        layer_map = ((n0 - n1) ** 2) @ heads[vgg_port.HEAD_KEYS[k]].reshape(-1)
        expected_layers.append(layer_map.mean((1, 2)))
        expected_spatial = expected_spatial + bilinear_resize(layer_map, x0.shape[1:3])
    out = jgan.lpips(net, x0, x1, details=True)
    expected_layers = np.stack(expected_layers, 1)
    np.testing.assert_allclose(out["layers"], expected_layers, rtol=1e-4)
    np.testing.assert_allclose(out["distance"], expected_layers.sum(1), rtol=1e-4)
    np.testing.assert_allclose(out["spatial"], expected_spatial, rtol=1e-4, atol=1e-7)
    assert np.all(np.asarray(out["distance"]) > 0)


def bilinear_resize(maps, size):
    """torch's bilinear upsampling with align_corners=False (half-pixel centres, edge clamp)."""

    def axis_weights(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = src - lo
        matrix = np.zeros((n_out, n_in))
        np.add.at(matrix, (np.arange(n_out), lo), 1 - frac)
        np.add.at(matrix, (np.arange(n_out), hi), frac)
        return matrix

    rows, cols = axis_weights(maps.shape[1], size[0]), axis_weights(maps.shape[2], size[1])
    return np.einsum("ph,nhw,qw->npq", rows, maps, cols)


def test_lpips_invariants_sharded(random_heads_lpips, lpips_io):
    """lpips(x, x) == 0 (to float rounding) and lpips(x0, x1) == lpips(x1, x0), on a batch of
    4 sharded over 4 devices."""
    net, _ = random_heads_lpips
    io, _ = lpips_io
    a = np.concatenate([nhwc(io["x0"]), nhwc(io["x1"])])
    b = np.concatenate([nhwc(io["x1"]), nhwc(io["x0"])])
    d = jgan.lpips(net, a, b)
    assert d.shape == (4,) and len(d.sharding.device_set) == jax.device_count() == 4
    d = np.asarray(d)
    np.testing.assert_allclose(d[:2], d[2:], rtol=1e-6)
    assert float(np.min(d)) > 1e-3
    # Not bit-exact 0: XLA:CPU contracts "normalise, then subtract" into FMAs (~1e-15 here).
    np.testing.assert_allclose(jgan.lpips(net, a, a), np.zeros(4), atol=1e-12)


def test_lpips_bad_inputs(random_heads_lpips, torchvision):
    net, _ = random_heads_lpips
    x = np.zeros((2, 32, 32, 3), np.float32)
    with pytest.raises(jgan.InputError, match="same shape"):
        jgan.lpips(net, x, x[:1])
    with pytest.raises(jgan.InputError, match="at least 16x16"):
        jgan.lpips(net, x[:, :8, :8], x[:, :8, :8])
    with pytest.raises(jgan.InputError, match=r"x1 must be RGB images \(N, H, W, 3\)"):
        jgan.lpips(net, x, np.transpose(x, (0, 3, 1, 2)))
    with pytest.raises(jgan.InputError, match="needs a jgan LPIPS"):
        jgan.lpips(torchvision[0], x, x)
