"""Attribute classifier: losses with known answers, real learning on the testbed, the exported
model directory as a predictor for the analysis tools, and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jgan
from jgan import parallel
from jgan.analysis.predictors import load_predictor, predict
from jgan.configs.classifier import CELEBA_ATTRIBUTES, get_config
from jgan.data import global_batch, testbed
from jgan.data.testbed import FACTOR_NAMES
from jgan.errors import InputError
from jgan.models.classifier import AttributeClassifier, column_names, feature_size
from jgan.models.resnet import ResNet
from jgan.training import train
from jgan.training.loop import compiled_init, compiled_step, make_trainer, run_keys

STEPS = 150
TEST_IMAGES = 512


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny testbed classifier after a short run: (trainer, state, workdir)."""
    workdir = tmp_path_factory.mktemp("classifier")
    config = get_config("tiny")
    config.total_steps = STEPS
    trainer, state = train(config, workdir, progress=False)
    return trainer, state, workdir


@pytest.fixture(scope="module")
def test_split():
    """Held-out testbed images in [-1, 1] and their factor classes."""
    images, labels = testbed.Testbed(32, TEST_IMAGES, split="test").examples(range(TEST_IMAGES))
    return images.astype(np.float32) / 127.5 - 1.0, labels


def test_losses_and_accuracies_have_known_values():
    trainer = make_trainer(get_config("tiny"))
    classifier = nnx.eval_shape(lambda: trainer.build(jax.random.key(0)))
    # tiny: shape (3 logits), object_hue (4), background_hue (4), then four binary ones.
    assert classifier.column_names[:3] == ("shape=0", "shape=1", "shape=2")
    assert len(classifier.column_names) == 3 + 4 + 4 + 4
    logits = np.zeros((2, 15), np.float32)
    logits[:, 0] = [2.0, -1.0]  # shape: correct for the first image only (labels 0, 2)
    logits[:, 11] = [1.5, -0.5]  # background_brightness (labels 1, 0): both correct
    labels = {name: np.zeros(2, np.int32) for name in FACTOR_NAMES}
    labels["shape"] = np.array([0, 2], np.int32)
    labels["background_brightness"] = np.array([1, -1], np.int32)  # -1: unknown, left out
    loss, accuracy = trainer.loss(classifier, jnp.asarray(logits), labels)
    softmax = -np.mean([2.0 - np.log(np.exp(2) + 2), -np.log(np.exp(-1) + 2)])
    brightness = np.log1p(np.exp(-1.5))  # only the known label counts
    uniform = [np.log(4), np.log(4), np.log(2), np.log(2), np.log(2)]  # zero logits
    np.testing.assert_allclose(loss, (softmax + brightness + sum(uniform)) / 7, rtol=1e-5)
    # Accuracy: shape 1/2, hues 1 (argmax of equal logits is class 0), brightness 1, binary
    # zero logits say "no": size/position_x/position_y (labels 0) correct.
    np.testing.assert_allclose(accuracy, (0.5 + 6) / 7, rtol=1e-6)
    with pytest.raises(InputError, match="the data has no label 'shape'"):
        trainer.loss(classifier, jnp.asarray(logits), {"size": labels["size"]})


def test_classifier_learns_the_testbed_factors(trained, test_split):
    trainer, state, _ = trained
    accuracy = trainer.evaluate(state, testbed.Testbed(32, TEST_IMAGES, split="test"))
    print("test accuracy after", STEPS, "steps:", accuracy)
    chance = {"shape": 1 / 3, "object_hue": 1 / 4, "background_hue": 1 / 4}
    for name in FACTOR_NAMES:
        # Majority-class rate is 0.8 for the imbalanced factor, 1/K or 1/2 for the others.
        baseline = 0.8 if name == "background_brightness" else chance.get(name, 0.5)
        assert accuracy[name] > baseline + 0.6 * (1 - baseline), (name, accuracy[name])
    assert np.mean(list(accuracy.values())) > 0.9


def test_step_agrees_on_one_and_four_devices(trained):
    """Two steps from one state and batch; batch-norm statistics are reduced over all devices."""
    trainer = trained[0]
    four, one = parallel.data_mesh(), Mesh(np.array(jax.devices()[:1]), ("data",))
    assert four.size == 4
    init_key, step_key = run_keys(0)
    start = jax.device_get(compiled_init(trainer, four)(init_key))
    images, labels = testbed.Testbed(32, 8).examples(range(8))
    batch = {"image": images, "label": labels}
    results = []
    for mesh in (four, one):
        state = jax.device_put(start, NamedSharding(mesh, P()))
        for _ in range(2):
            state, metrics = compiled_step(trainer, mesh)(
                state, global_batch(batch, NamedSharding(mesh, P("data"))), step_key
            )
        results.append((jax.tree.leaves(jax.device_get(state)), jax.device_get(metrics)))
    (state4, metrics4), (state1, metrics1) = results
    # Reductions run in another order on 4 devices; Adam divides each gradient by its own
    # magnitude, so the last bits of a tiny gradient may move a parameter by a fraction of one
    # step (lr 3e-3): atol 3e-4 is 10 % of a step, a wrong split moves whole steps.
    for a, b in zip(state4, state1, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-4)
    np.testing.assert_allclose(metrics4["loss"], metrics1["loss"], rtol=1e-5)


def test_model_directory_is_a_predictor(trained, test_split):
    _, _, workdir = trained
    model = workdir / "model"
    bundle = jgan.load(model)
    assert isinstance(bundle.classifier, AttributeClassifier) and bundle.generator is None
    images, labels = test_split
    # Generator-range images of another resolution are resized to the classifier's.
    large = jax.image.resize(jnp.asarray(images), (TEST_IMAGES, 64, 64, 3), "linear")
    sharded = jax.device_put(large, parallel.batch_sharded())
    everything = load_predictor(str(model))
    scores = predict(everything, sharded)
    assert scores.shape == (TEST_IMAGES, 15) and np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(scores[:, :3].sum(axis=1), 1.0, rtol=1e-5)
    shape = predict(load_predictor(f"{model}:shape"), sharded)
    np.testing.assert_allclose(shape, scores[:, :3], rtol=1e-6)
    assert np.mean(shape.argmax(axis=1) == labels["shape"]) > 0.8
    light = predict(load_predictor(f"{model}:background_brightness"), sharded)
    assert light.shape == (TEST_IMAGES,)
    assert np.mean((light > 0.5) == labels["background_brightness"]) > 0.95
    square = predict(load_predictor(f"{model}:shape=1"), sharded)
    np.testing.assert_allclose(square, scores[:, 1], rtol=1e-6)
    with pytest.raises(InputError, match=r"no attribute 'Smiling'; it predicts \['shape'"):
        load_predictor(f"{model}:Smiling")
    with pytest.raises(InputError, match="3 channels"):
        everything(jnp.zeros((2, 32, 32, 1)))


def test_model_directory_without_classifier_is_an_error(tmp_path):
    trunk = ResNet(depths=(), widths=(), stem_width=4, num_classes=0, rngs=nnx.Rngs(0))
    jgan.save_model_dir(jgan.Bundle(arch="resnet", encoder=trunk), tmp_path / "trunk")
    with pytest.raises(InputError, match="holds no attribute classifier"):
        load_predictor(f"{tmp_path / 'trunk'}:smile")


def test_celeba_config_and_classifier_shapes():
    config = get_config()
    trainer = make_trainer(config)
    assert trainer.resolution == 128 and config.data.label_keys == ("attributes",)
    classifier = nnx.eval_shape(lambda: trainer.build(jax.random.key(0)))
    assert classifier.column_names == CELEBA_ATTRIBUTES and len(CELEBA_ATTRIBUTES) == 40
    assert classifier.fc.weight.shape == (40, 512)
    assert feature_size(128, 4, "imagenet") == 4 and feature_size(32, 3, "cifar") == 8
    assert column_names(("a", "b"), (2, 3)) == ("a", "b=0", "b=1", "b=2")
    with pytest.raises(InputError, match="num_classes must give 2 integers >= 2"):
        AttributeClassifier(("a", "b"), (2, 1), rngs=nnx.Rngs(0))
    with pytest.raises(InputError, match="optimizer must be one of"):
        config.optimizer.name = "lamb"
        make_trainer(config)


def test_training_without_labels_is_an_error():
    trainer = make_trainer(get_config("tiny"))
    state = jax.eval_shape(trainer.init, jax.random.key(0))
    batch = {"image": jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.uint8)}
    with pytest.raises(InputError, match="the classifier trains on labelled data"):
        jax.eval_shape(trainer.step, state, batch, jax.random.key(0))
