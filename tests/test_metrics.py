"""FID / KID: the Fréchet distance and the unbiased MMD² against independent references, the
FID InceptionV3's building blocks against numpy, its weights file read through the format
table, statistics caching, and the message when the weights are absent.

The full network was compared by hand with pytorch-fid's `InceptionV3` (torch, same random
state dict): max abs error 4e-6 on features of magnitude 7 at 299, 128 and 512 px inputs.
"""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import nnx
from PIL import Image
from test_tensorboard import decode_event
from test_tensorboard import records as records_of

import jgan
from jgan import metrics, parallel
from jgan.cli.train import apply_overrides
from jgan.configs.stylegan2 import get_config
from jgan.errors import CheckpointError, InputError
from jgan.models import inception
from jgan.models.registry import build_abstract
from jgan.ports import inception as inception_port
from jgan.ports.state import module_tensors
from jgan.ports.torch_writer import write_torch_file
from jgan.training import loop, monitor
from jgan.training.gan import StyleGAN2Trainer
from jgan.viz.images import make_grid, to_uint8

SIZE = 75  # inputs resized to the smallest size the network takes: compiles quickly


def random_state_dict(seed=0, classes=1008):
    """A random FID-Inception state dict, as pytorch-fid's file lays it out."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, variable in module_tensors(build_abstract(inception.FIDInceptionV3, {})).items():
        shape = variable.get_value().shape
        if key.endswith("conv.weight"):
            value = rng.standard_normal(shape) * math.sqrt(2.0 / math.prod(shape[1:]))
        elif key.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        elif key.endswith("bn.weight"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.2, shape)
        state[key] = value.astype(np.float32)
    state["fc.weight"] = rng.normal(0, 0.01, (classes, 2048)).astype(np.float32)
    state["fc.bias"] = np.zeros(classes, np.float32)
    return state


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return write_torch_file(tmp_path_factory.mktemp("inception") / "pt_inception.pth",
                            random_state_dict())  # fmt: skip


@pytest.fixture(scope="module")
def net(weights_file):
    return inception_port.load_inception(weights_file, resize=SIZE)


def reference_fid(mu1, sigma1, mu2, sigma2):
    """The textbook formula with a general matrix square root (pytorch-fid's approach)."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * covmean)


def test_frechet_distance_matches_references():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 32)), rng.normal(size=(400, 32)) @ rng.normal(size=(32, 32))
    b += 0.5
    stats_a, stats_b = metrics.statistics(a), metrics.statistics(b)
    expected = reference_fid(*stats_a, *stats_b)
    assert metrics.frechet_distance(*stats_a, *stats_b) == pytest.approx(expected, rel=1e-9)
    assert metrics.fid(a, b) == pytest.approx(expected, rel=1e-9)
    # Commuting (diagonal) covariances: |mu1 - mu2|² + sum (sqrt(s1) - sqrt(s2))².
    s1, s2 = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    m1, m2 = rng.normal(size=16), rng.normal(size=16)
    closed = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    distance = metrics.frechet_distance(m1, np.diag(s1), m2, np.diag(s2))
    assert distance == pytest.approx(closed, rel=1e-10)
    assert abs(metrics.frechet_distance(*stats_a, *stats_a)) < 1e-9
    # Fewer samples than dimensions: singular covariances, still real, finite and >= 0.
    few = metrics.fid(rng.normal(size=(20, 64)), rng.normal(size=(20, 64)))
    assert np.isfinite(few) and few > 0


def reference_kid(x, y):
    """Unbiased MMD² with k(a, b) = (a·b / d + 1)³, by explicit sums in float64."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    m, d = x.shape
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    same = sum(kxx[i, j] + kyy[i, j] for i in range(m) for j in range(m) if i != j)
    return same / (m * (m - 1)) - 2 * kxy.sum() / m**2


def test_kid_is_the_unbiased_mmd_over_subsets():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 8)), rng.normal(0.3, 1.2, size=(40, 8))
    mean, std = metrics.kid(x, y, subsets=1, subset_size=40)
    assert std == 0 and mean == pytest.approx(reference_kid(x, y), rel=1e-5)
    # Subsets: the mean of the per-subset values drawn with the same generator.
    draw = np.random.default_rng(7)
    values = [reference_kid(x[draw.choice(40, 10, replace=False)],
                            y[draw.choice(40, 10, replace=False)]) for _ in range(5)]  # fmt: skip
    mean, std = metrics.kid(x, y, subsets=5, subset_size=10, seed=7)
    assert (mean, std) == pytest.approx((np.mean(values), np.std(values)), rel=1e-4)
    # Unbiased: samples of one distribution average to ~0; a shift is clearly positive.
    same = metrics.kid(rng.normal(size=(600, 8)), rng.normal(size=(600, 8)), subset_size=100)
    assert abs(same[0]) < 3 * same[1] / np.sqrt(100) + 1e-3
    assert metrics.kid(x, y + 1.0, subset_size=40)[0] > 0.5


def numpy_pool(x, mode):
    """3x3 stride-1 pools with padding 1 by loops: 'valid' averages only in-image pixels."""
    n, h, w, c = x.shape
    out = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            window = x[:, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
            out[:, i, j] = window.max((1, 2)) if mode == "max" else window.mean((1, 2))
    return out


def numpy_resize(x, size):
    """Bilinear, half-pixel centres, source coordinates clamped at 0 (torch's rule)."""

    def taps(n_in):
        src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    (y0, y1, fy), (x0, x1, fx) = taps(x.shape[1]), taps(x.shape[2])
    rows = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    return rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]


def test_blocks_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(inception.avg_pool_valid(x), numpy_pool(x, "avg"), rtol=1e-6)
    np.testing.assert_allclose(inception.max_pool(x, stride=1, padding=1), numpy_pool(x, "max"))
    for size in (13, 4):  # up and down, no antialiasing
        np.testing.assert_allclose(
            inception.resize_bilinear(x, size), numpy_resize(x, size), rtol=1e-5, atol=1e-6
        )
    # Conv (no bias) + batch norm with eps 1e-3 + ReLU, on a (1, 3) kernel with padding (0, 1).
    layer = inception.BasicConv2d(3, 4, (1, 3), padding=((0, 0), (1, 1)), rngs=nnx.Rngs(0))
    layer.bn.running_mean.set_value(jnp.asarray(rng.normal(size=4), jnp.float32))
    layer.bn.running_var.set_value(jnp.asarray(rng.uniform(0.5, 2, 4), jnp.float32))
    layer.bn.bias.set_value(jnp.asarray(rng.normal(size=4), jnp.float32))
    w, bn = np.asarray(layer.conv.weight[...]), layer.bn
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    conv = sum(np.einsum("nhwi,oi->nhwo", padded[:, :, k : k + 6], w[:, :, 0, k]) for k in range(3))
    expected = (conv - np.asarray(bn.running_mean[...])) / np.sqrt(
        np.asarray(bn.running_var[...]) + 1e-3
    )
    expected = np.maximum(expected * np.asarray(bn.weight[...]) + np.asarray(bn.bias[...]), 0)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)
    unresized = build_abstract(inception.FIDInceptionV3, {"resize": None})
    with pytest.raises(InputError, match="too small for InceptionV3 without resizing"):
        unresized(jnp.zeros((1, 64, 80, 3)))
    with pytest.raises(InputError, match="resize must be None or an integer >= 75"):
        build_abstract(inception.FIDInceptionV3, {"resize": 32})


def test_weights_file_loads_through_the_format_table(weights_file):
    state = random_state_dict()
    assert len(state) == 472  # 94 conv + batch-norm layers (5 tensors each) and fc
    shapes = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
              "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
              "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
              "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1)}  # fmt: skip
    assert {k: state[k].shape for k in shapes} == shapes
    # pytorch-fid's network has 23,850,960 parameters (counted with torch), fc included.
    running = sum(v.size for k, v in state.items() if "running" in k)
    assert sum(v.size for v in state.values()) - running == 23_850_960
    bundle = jgan.load(weights_file)
    assert bundle.arch == "fid_inception" and bundle.perceptual.config == {"resize": 299}
    np.testing.assert_array_equal(
        bundle.perceptual.Mixed_5b.branch_pool.bn.running_var[...],
        state["Mixed_5b.branch_pool.bn.running_var"],
    )


def test_wrong_or_absent_weights_are_explained(tmp_path, monkeypatch):
    monkeypatch.delenv(inception_port.ENV_VAR, raising=False)
    with pytest.raises(CheckpointError) as error:
        inception_port.load_inception()
    message = str(error.value)
    for part in ("pt_inception-2015-12-05-6726825d.pth", inception_port.URL,
                 "fid.inception_path", "JGAN_INCEPTION"):  # fmt: skip
        assert part in message
    monkeypatch.setenv(inception_port.ENV_VAR, str(tmp_path / "nowhere.pth"))
    with pytest.raises(CheckpointError, match="nowhere.pth does not exist"):
        inception_port.load_inception()
    torchvision_like = write_torch_file(tmp_path / "tv.pth", random_state_dict(classes=1000))
    with pytest.raises(CheckpointError, match="torchvision's ImageNet InceptionV3 is a different"):
        inception_port.load_inception(torchvision_like)
    incomplete = random_state_dict()
    del incomplete["Mixed_6b.branch7x7_2.bn.running_mean"]
    with pytest.raises(CheckpointError, match="Mixed_6b.branch7x7_2.bn.running_mean"):
        inception_port.build(incomplete, "incomplete")


def test_features_fid_and_cached_reference_statistics(net, tmp_path):
    rng = np.random.default_rng(3)
    reals = rng.integers(0, 256, (10, 8, 8, 3), np.uint8)  # 8x8 as the training test's
    features = metrics.inception_features(net, reals, batch_size=4)  # 4 + 4 + 2 (padded)
    assert features.shape == (10, 2048) and np.all(np.isfinite(features))
    one = metrics.inception_features(net, reals[7:8] / 127.5 - 1.0)  # padded to the devices
    np.testing.assert_allclose(one[0], features[7], rtol=1e-4, atol=1e-4)
    cache = tmp_path / "reference.npz"
    stats = metrics.reference_statistics(
        net, lambda: iter([reals[:4], reals[4:8], reals[8:]]), cache
    )
    np.testing.assert_allclose(stats["mu"], features.mean(0), rtol=1e-5, atol=1e-6)

    def never():
        raise AssertionError("the cache should have been used")

    cached = metrics.reference_statistics(net, never, cache)
    np.testing.assert_array_equal(cached["sigma"], stats["sigma"])
    np.testing.assert_array_equal(cached["features"], features)
    assert abs(metrics.frechet_distance(*metrics.statistics(features), cached["mu"],
                                        cached["sigma"])) < 1e-6  # fmt: skip
    darker = metrics.inception_features(net, (reals // 4).astype(np.uint8), batch_size=4)
    assert metrics.fid(features, darker) > 1.0
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an FID statistics file"):
        metrics.load_statistics(tmp_path / "bad.npz")


@dataclasses.dataclass(frozen=True)
class SamplingTrainer(StyleGAN2Trainer):
    """StyleGAN2 with the optional `samples` hook: EMA generator images of one batch of z."""

    def samples(self, state, key):
        generator, _ = self.modules(state)
        z = jax.random.normal(key, (self.batch_size, dict(self.generator)["z_space_dim"]))
        return generator.generate(z)["image"]


def test_training_loop_writes_grids_fid_and_tensorboard(weights_file, tmp_path, monkeypatch):
    """A trainer with `samples` gets sample grids and FID/KID in metrics.jsonl and TensorBoard;
    the logged FID is the one recomputed from the same samples and the cached reference."""
    monkeypatch.setitem(loop.TRAINERS, "sampling", (__name__, "SamplingTrainer"))
    load = inception_port.load_inception
    monkeypatch.setattr(inception_port, "load_inception", lambda path: load(path, resize=SIZE))
    config = apply_overrides(get_config("tiny"), [
        "--config.trainer=sampling", "--config.batch_size=4", "--config.total_steps=4",
        "--config.generator.resolution=8", "--config.discriminator.resolution=8",
        "--config.data.resolution=8", "--config.log_every=2", "--config.sample_every=2",
        "--config.fid_every=4", "--config.fid.num_images=8", "--config.fid.kid_subsets=2",
        f"--config.fid.inception_path={weights_file}",
    ])  # fmt: skip
    workdir = tmp_path / "run"
    trainer, state = loop.train(config, workdir, progress=False)
    assert sorted(p.name for p in (workdir / "samples").iterdir()) == [
        "00000002.png",
        "00000004.png",
    ]
    key = jax.random.fold_in(jax.random.key(config.seed), monitor.SAMPLE_KEY)
    grid = make_grid(
        to_uint8(
            jax.device_get(monitor.compiled_samples(trainer, parallel.data_mesh())(state, key))
        )
    )
    np.testing.assert_array_equal(
        np.asarray(Image.open(workdir / "samples" / "00000004.png")), grid
    )

    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4] and "fid" not in records[0]
    net = load(weights_file, resize=SIZE)
    sampler = monitor.compiled_samples(trainer, parallel.data_mesh())
    fid_key = jax.random.fold_in(jax.random.key(config.seed), monitor.FID_KEY)
    generated = [jax.device_get(sampler(state, jax.random.fold_in(fid_key, i))) for i in range(2)]
    features = metrics.inception_features(net, iter(generated))
    reference = metrics.load_statistics(workdir / "fid_reference.npz")
    assert len(reference["features"]) == 8
    expected = metrics.frechet_distance(
        *metrics.statistics(features), reference["mu"], reference["sigma"]
    )
    assert records[1]["fid"] == pytest.approx(expected, rel=1e-4)
    assert np.isfinite(records[1]["kid"]) and records[1]["kid_std"] >= 0

    (events,) = (workdir / "tensorboard").iterdir()
    decoded = [decode_event(r) for r in records_of(events)]
    scalars = {(step, tag): v for _, step, values, _ in decoded for tag, v in values.items()}
    assert scalars[(4, "fid")] == pytest.approx(records[1]["fid"], rel=1e-6)
    assert scalars[(2, "g_loss")] == pytest.approx(records[0]["g_loss"], rel=1e-6)
    assert scalars[(4, "samples")][:3] == (grid.shape[0], grid.shape[1], 3)

    # FID asked for without weights: refused before any step, saying where to get them.
    monkeypatch.delenv(inception_port.ENV_VAR, raising=False)
    config.fid.inception_path = None
    with pytest.raises(CheckpointError, match="pt_inception-2015-12-05-6726825d.pth"):
        loop.train(config, tmp_path / "no_weights", progress=False)
    assert not (tmp_path / "no_weights" / "checkpoints").exists()
