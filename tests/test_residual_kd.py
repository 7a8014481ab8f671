"""Residual knowledge distillation: cost-neutral split, frozen teacher, the assistant learning
the residual, the progressive scheme's freezing, KD loss, export, 1- vs 4-device steps."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jgan import parallel
from jgan.bundle import load, save_model_dir
from jgan.data import global_batch
from jgan.data.sources import ArraySource
from jgan.errors import InputError
from jgan.models import resnet as R
from jgan.training.loop import compiled_init, compiled_step, run_keys
from jgan.training.residual_kd import (
    ResidualKDTrainer,
    combine_labels,
    distillation_loss,
    random_crop,
)

RESOLUTION = 16
CLASSES = 4
TEACHER = dict(depths=(1, 1, 1), widths=(8, 16, 32), stem_width=8, num_classes=CLASSES)
MODEL = dict(depths=(1, 1, 1), widths=(8, 16, 24), stem_width=8, num_classes=CLASSES)


def _traced_macs(cls, config, size):
    module = nnx.eval_shape(lambda: cls(**config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(module)
    image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return R.macs(lambda s, x: nnx.merge(graphdef, s)(x), state, image)


@pytest.mark.parametrize(
    "name, size, shared, share, channels",
    [
        ("resnet8x4", 32, 1, 0.7, 256),  # the CIFAR-100 config: M = resnet8x4, T = resnet32x4
        ("resnet8x4", 32, 0, 0.5, 256),
        ("resnet8", 32, 2, 0.6, 64),
        ("resnet18", 224, 2, 0.6, 512),
    ],
)
def test_split_costs_what_the_model_costs(name, size, shared, share, channels):
    model = R.preset(name)
    split = R.split_config(
        model, image_size=size, shared_stages=shared, student_share=share, feature_channels=channels
    )
    model_macs = _traced_macs(R.ResNet, model, size)
    split_macs = _traced_macs(R.SplitResNet, split, size)
    assert model_macs == R.resnet_macs(model, size)  # the analytic count is exact
    assert split_macs == R.split_resnet_macs(split, size)
    assert abs(split_macs / model_macs - 1) < 0.01
    widths = split["widths"][shared:]
    assert all(
        a <= s < w
        for s, a, w in zip(split["student_widths"], split["assistant_widths"], widths, strict=True)
    )


def test_split_rejects_what_cannot_be_split():
    with pytest.raises(InputError, match="student_share must be in"):
        R.split_config(MODEL, image_size=16, shared_stages=1, student_share=1.0, feature_channels=8)
    with pytest.raises(InputError, match="too small to split"):
        R.split_config(
            MODEL, image_size=16, shared_stages=2, student_share=0.5, feature_channels=4096
        )


def test_distillation_loss_known_values():
    z = jnp.array([[1.0, 2.0, 3.0]])
    assert float(distillation_loss(z, z, 4.0)) == pytest.approx(0.0, abs=1e-7)
    teacher = jnp.array([[3.0, 0.0, 0.0]])
    p = jax.nn.softmax(teacher / 2.0)
    q = jax.nn.softmax(z / 2.0)
    expected = 4.0 * float(jnp.sum(p * (jnp.log(p) - jnp.log(q))))
    assert float(distillation_loss(z, teacher, 2.0)) == pytest.approx(expected, rel=1e-5)


def test_labels_and_crops():
    labels = {"a": jnp.array([0, 2, 1]), "b": jnp.array([1, 0, 3])}
    np.testing.assert_array_equal(combine_labels(labels, ("a", "b"), (3, 4)), [1, 8, 7])
    with pytest.raises(InputError, match=r"no label\(s\) \['c'\]"):
        combine_labels(labels, ("c",), (2,))
    images = jnp.arange(2 * 6 * 6, dtype=jnp.float32).reshape(2, 6, 6, 1)
    crops = random_crop(images, jax.random.key(0), 2)
    assert crops.shape == images.shape
    for crop, image in zip(np.asarray(crops), np.asarray(images), strict=True):
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), constant_values=-1.0)
        windows = [padded[i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        assert any(np.array_equal(crop, w) for w in windows)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    teacher = nnx.jit(lambda: R.ResNet(**TEACHER, rngs=nnx.Rngs(1)))()
    path = tmp_path_factory.mktemp("teacher") / "model"
    from jgan.bundle import Bundle

    save_model_dir(Bundle(arch="resnet", classifier=teacher), path)
    return str(path)


def _trainer(teacher_dir, **changes):
    base = ResidualKDTrainer(
        model=tuple(sorted(MODEL.items())),
        batch_size=8,
        total_steps=40,
        resolution=RESOLUTION,
        labels=("label",),
        label_sizes=(CLASSES,),
        method="residual",
        teacher=teacher_dir,
        learning_rate=0.05,
        milestones=(),
        hint_weight=10.0,
        residual_weight=10.0,
        crop_padding=0,
    )
    return dataclasses.replace(base, **changes)


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
    return {"image": images, "label": {"label": rng.integers(0, CLASSES, n).astype(np.int32)}}


def _residuals(trainer, state, batch):
    """(mean (F_T - F_S)^2, mean (F_T - F_S - F_A)^2) in eval mode."""
    x = batch["image"].astype(np.float32) / 127.5 - 1.0
    teacher = nnx.merge(trainer._teacher[0], state.teacher)
    feat_t = teacher.features(x)
    feat_s, feat_a = trainer.module(state).features(x)
    return float(jnp.mean((feat_t - feat_s) ** 2)), float(jnp.mean((feat_t - feat_s - feat_a) ** 2))


@pytest.fixture(scope="module")
def progressive_run(teacher_dir):
    """A progressive run: 20 steps of S, then 20 of A, on one batch; states at 0, 20, 40."""
    trainer = _trainer(teacher_dir, scheme="progressive")
    step = jax.jit(trainer.step)
    state = jax.jit(trainer.init)(jax.random.key(0))
    batch, key = _batch(), jax.random.key(1)
    states = [state]
    for i in range(trainer.total_steps):
        state, metrics = step(state, batch, key)
        if i + 1 == trainer.stage1_steps:
            states.append(state)
    states.append(state)
    return trainer, batch, [jax.device_get(s) for s in states], jax.device_get(metrics)


def test_assistant_reduces_the_feature_residual(progressive_run):
    trainer, batch, (_, stage1, stage2), metrics = progressive_run
    before, _ = _residuals(trainer, stage1, batch)
    student_gap, combined_gap = _residuals(trainer, stage2, batch)
    assert student_gap == pytest.approx(before, rel=1e-6)  # S did not move in stage 2
    assert combined_gap < 0.9 * student_gap  # 0.141 vs 0.173 when written
    assert metrics["residual"] < metrics["hint"]
    scores = trainer.evaluate(stage2, ArraySource(batch["image"], batch["label"]["label"]))
    assert scores["student_gap"] == pytest.approx(student_gap, rel=1e-4)
    assert scores["combined_gap"] == pytest.approx(combined_gap, rel=1e-4)
    assert set(scores) == {"accuracy", "student_accuracy", "student_gap", "combined_gap"}


def test_teacher_frozen_and_stages_train_their_parts(progressive_run):
    _, _, (start, stage1, stage2), _ = progressive_run
    leaves = jax.tree.leaves

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))

    assert same(start.teacher, stage2.teacher)
    for part in ("trunk", "student"):
        assert not same(start.params[part], stage1.params[part])
        assert same(stage1.params[part], stage2.params[part])
        assert same(stage1.buffers[part], stage2.buffers[part])
    assert same(start.params["assistant"], stage1.params["assistant"])
    assert not same(stage1.params["assistant"], stage2.params["assistant"])
    assert not same(stage1.params["fc"], stage2.params["fc"])


def test_learning_rate_schedule_restarts_per_stage(teacher_dir):
    trainer = _trainer(teacher_dir, scheme="progressive", milestones=(0.5,), total_steps=40)
    rates = [float(trainer.learning_rate_at(jnp.int32(s))) for s in (0, 9, 10, 19, 20, 29, 30)]
    np.testing.assert_allclose(rates, [0.05, 0.05, 0.005, 0.005, 0.05, 0.05, 0.005], rtol=1e-6)


def test_export_round_trip(progressive_run, tmp_path):
    trainer, batch, (*_, state), _ = progressive_run
    save_model_dir(trainer.bundle(state, source="test"), tmp_path / "model")
    loaded = load(tmp_path / "model").classifier
    assert isinstance(loaded, R.SplitResNet)
    x = batch["image"].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(loaded(x), trainer.module(state)(x), rtol=1e-5, atol=1e-5)


def test_bad_configurations(teacher_dir):
    with pytest.raises(InputError, match="needs a teacher"):
        _trainer("", method="kd")
    with pytest.raises(InputError, match="give 5 classes but the model has num_classes=4"):
        _trainer(teacher_dir, label_sizes=(5,))
    with pytest.raises(InputError, match="method must be one of"):
        _trainer(teacher_dir, method="fitnets")
    shallow = {**MODEL, "depths": (1, 1), "widths": (8, 16)}
    with pytest.raises(InputError, match="spatial sizes must agree"):
        _ = _trainer(teacher_dir, model=tuple(sorted(shallow.items()))).model_config


def test_step_agrees_on_one_and_four_devices(teacher_dir):
    trainer = _trainer(teacher_dir, crop_padding=2, kd_weight=0.5)
    four = parallel.data_mesh()
    one = Mesh(np.array(jax.devices()[:1]), ("data",))
    assert four.size == 4
    init_key, step_key = run_keys(0)
    start = jax.device_get(compiled_init(trainer, four)(init_key))
    results = []
    for mesh in (four, one):
        state = jax.device_put(start, NamedSharding(mesh, P()))
        step = compiled_step(trainer, mesh)
        for i in range(2):
            batch = global_batch(_batch(seed=i), NamedSharding(mesh, P("data")))
            state, metrics = step(state, batch, step_key)
        results.append((jax.tree.leaves(jax.device_get(state)), jax.device_get(metrics)))
    (state4, metrics4), (state1, metrics1) = results
    # Batch statistics and gradient sums are reduced in another order on 4 devices; SGD moves
    # parameters by lr * gradient, so differences stay at float rounding.
    for a, b in zip(state4, state1, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for name, value in metrics1.items():
        if math.isfinite(value):
            np.testing.assert_allclose(metrics4[name], value, rtol=1e-4)


def test_configs():
    from jgan.cli.train import load_config

    full = load_config("configs/residual_kd.py")
    assert (full.method, full.scheme, full.total_steps) == ("residual", "end_to_end", 187_500)
    assert dict(full.model)["widths"] == (64, 128, 256)  # resnet8x4
    trainer = ResidualKDTrainer.from_config(load_config("configs/residual_kd.py:teacher"))
    assert (trainer.method, dict(trainer.model)["depths"]) == ("none", (5, 5, 5))  # resnet32x4
    assert [round(m * 240) for m in trainer.milestones] == [150, 180, 210]
    kd = load_config("configs/residual_kd.py:tiny,kd")
    assert (kd.loss.ce_weight, kd.loss.kd_weight, kd.data.source) == (0.1, 0.9, "testbed")
    progressive = load_config("configs/residual_kd.py:progressive")
    assert (progressive.scheme, progressive.total_steps) == ("progressive", 2 * 187_500)
    with pytest.raises(ValueError, match="unknown variant"):
        load_config("configs/residual_kd.py:kd,none")
