"""ResNet family: known parameter counts and MACs, shapes, batch norm in train and eval mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jgan.errors import InputError
from jgan.models import resnet as R
from jgan.models.registry import build_abstract, module_class
from jgan.nn import Buffer
from jgan.training.state import split_module

# (parameters, MACs of one image): torchvision's documented counts for the ImageNet nets
# (224 px, 1000 classes; 1.81 / 3.66 / 4.09 GMACs), the CRD paper's table for the CIFAR ones
# (32 px, 100 classes).
KNOWN = {
    "resnet8": (83_892, None),
    "resnet56": (861_620, None),
    "resnet110": (1_736_564, None),
    "resnet8x4": (1_233_540, None),
    "resnet32x4": (7_433_860, None),
    "resnet18": (11_689_512, 1_814_073_344),
    "resnet34": (21_797_672, 3_663_761_408),
    "resnet50": (25_557_032, 4_089_184_256),
}


def _abstract(name):
    return nnx.eval_shape(lambda: R.resnet(name, rngs=nnx.Rngs(0)))


def _macs(module, image):
    graphdef, state = nnx.split(module)
    return R.macs(lambda s, x: nnx.merge(graphdef, s)(x), state, image)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_parameter_counts(name):
    model = _abstract(name)
    params = sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert params == KNOWN[name][0]
    expected_macs = KNOWN[name][1]
    if expected_macs is not None:
        assert _macs(model, jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)) == expected_macs


def test_torch_key_names():
    keys = {
        ".".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(_abstract("resnet18")))
    }
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv2.weight",
        "layer2.0.downsample.0.weight",
        "layer4.1.bn2.bias",
        "fc.weight",
    ):
        assert key in keys
    assert not any(k.startswith("layer1.0.downsample") for k in keys)


@pytest.fixture(scope="module")
def small():
    return nnx.jit(lambda: R.resnet("resnet8", num_classes=10, rngs=nnx.Rngs(0)))()


def test_shapes(small):
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    assert small.features(x).shape == (2, 8, 8, 64)
    assert small(x).shape == (2, 10)
    pre = small.features(x, preact=True)
    np.testing.assert_allclose(jax.nn.relu(pre), small.features(x), atol=1e-6)
    assert float(pre.min()) < 0
    imagenet = R.ResNet(
        depths=(1, 1),
        widths=(8, 16),
        stem_width=8,
        block="bottleneck",
        stem="imagenet",
        num_classes=5,
        rngs=nnx.Rngs(0),
    )
    assert imagenet.features(jnp.zeros((1, 64, 64, 3))).shape == (1, 8, 8, 64)


def test_eval_mode_is_per_sample(small):
    x = jax.random.normal(jax.random.key(2), (4, 32, 32, 3))
    run = nnx.jit(lambda m, x: m(x))
    np.testing.assert_allclose(run(small, x[:1]), run(small, x)[:1], atol=1e-5)


def test_batch_norm_train_mode():
    bn = R.BatchNorm(3)
    x = jax.random.normal(jax.random.key(3), (4, 5, 5, 3)) * 2.0 + 1.0
    y = bn(x, train=True)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)
    flat = np.asarray(x).reshape(-1, 3)
    np.testing.assert_allclose(bn.running_mean[...], 0.1 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var[...], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)
    # Eval mode uses the stored statistics, and does not touch them.
    before = np.asarray(bn.running_mean[...])
    expected = (x - before) / np.sqrt(bn.running_var[...] + R.BN_EPS)
    np.testing.assert_allclose(bn(x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(bn.running_mean[...], before)


def test_jitted_train_step_updates_buffers(small):
    graphdef, params, buffers = split_module(small)

    @jax.jit
    def step(params, buffers, x):
        def loss(params):
            model = nnx.merge(graphdef, params, buffers)
            out = model(x, train=True)
            return jnp.mean(out**2), nnx.to_pure_dict(nnx.state(model, Buffer))

        (value, new_buffers), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return value, grads, new_buffers

    x = jax.random.normal(jax.random.key(4), (4, 32, 32, 3))
    _, grads, new_buffers = step(params, buffers, x)
    assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))
    old, new = jax.tree.leaves(buffers), jax.tree.leaves(new_buffers)
    assert len(old) == len(new) == 2 * 9  # 9 batch norms
    assert not any(np.array_equal(a, b) for a, b in zip(old, new, strict=True))
    np.testing.assert_array_equal(small.bn1.running_mean[...], 0.0)  # the module is untouched


def test_registry_rebuilds():
    model = nnx.eval_shape(lambda: R.resnet("resnet8x4", num_classes=7, rngs=nnx.Rngs(0)))
    assert module_class(model.arch) is R.ResNet
    rebuilt = build_abstract(R.ResNet, model.config)
    assert jax.tree.map(jnp.shape, nnx.state(rebuilt)) == jax.tree.map(jnp.shape, nnx.state(model))


def test_bad_arguments():
    with pytest.raises(InputError, match="unknown ResNet 'resnet9'"):
        R.preset("resnet9")
    with pytest.raises(InputError, match="block must be one of"):
        nnx.eval_shape(lambda: R.ResNet(block="wide", rngs=nnx.Rngs(0)))
    with pytest.raises(InputError, match="same length"):
        nnx.eval_shape(lambda: R.ResNet(depths=(1, 1), widths=(4,), rngs=nnx.Rngs(0)))
