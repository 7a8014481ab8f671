"""Quality figures of a testbed model, as its model card reports them.

    python -m jgan.demo.quality [MODEL_DIR] [--num 10000]

- Fréchet distance between generated images and the test split in the feature space of the
  model's factor classifier (its trunk, averaged over positions), beside the distance between
  as many training images and the test split: the floor a perfect generator would reach.
- Per factor: the classifier's accuracy on the test split (true labels), the classifier's
  agreement with `read_factors` on generated images (the scene each one shows, read from its
  pixels), and the class shares of generated images against the testbed's probabilities.
"""

import argparse
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jgan.analysis.generate import images_of
from jgan.bundle import load
from jgan.data.testbed import FACTORS, Testbed, read_factors
from jgan.errors import InputError
from jgan.metrics import frechet_distance, statistics


@functools.partial(jax.jit, static_argnums=0)
def _features_and_probabilities(graphdef, state, images):
    classifier = nnx.merge(graphdef, state)
    features = jnp.mean(classifier.backbone.features(images), axis=(1, 2))
    return features, classifier.probabilities(images)


def classify(classifier, images_uint8, batch_size=500):
    """(features (N, C), {attribute: (N,) predicted class}) of uint8 images."""
    graphdef, state = nnx.split(classifier)
    features, probabilities = [], []
    for i in range(0, len(images_uint8), batch_size):
        batch = jnp.asarray(images_uint8[i : i + batch_size], jnp.float32) / 127.5 - 1.0
        f, p = _features_and_probabilities(graphdef, state, batch)
        features.append(np.asarray(f))
        probabilities.append(np.asarray(p))
    probabilities = np.concatenate(probabilities)
    classes, start = {}, 0
    for name, count in zip(classifier.attributes, classifier.num_classes, strict=True):
        if count == 2:
            classes[name] = (probabilities[:, start] > 0.5).astype(np.int32)
            start += 1
        else:
            classes[name] = np.argmax(probabilities[:, start : start + count], axis=1)
            start += count
    return np.concatenate(features), classes


def testbed_quality(model, *, num=10_000, seed=0):
    """The figures of the module docstring for the testbed model in `model` (a dict)."""
    bundle = load(model)
    generator, classifier = bundle.generator, bundle.classifier
    if generator is None or classifier is None:
        raise InputError(f"{model} needs a generator and a factor classifier")
    if set(classifier.attributes) != {f.name for f in FACTORS}:
        raise InputError(f"{model}'s classifier does not predict the testbed's factors")
    resolution = generator.config["resolution"]
    indices = np.arange(num)
    test_images, test_classes = Testbed(resolution, num, split="test").examples(indices)
    train_images = Testbed(resolution, num).images(indices)
    z = jax.random.normal(jax.random.key(seed), (num, generator.z_space_dim))
    generated = np.asarray(images_of(generator, z))
    test_features, test_predicted = classify(classifier, test_images)
    train_features, _ = classify(classifier, train_images)
    generated_features, generated_predicted = classify(classifier, generated)
    read = read_factors(generated)
    reference = statistics(test_features)
    factors = {}
    for factor in FACTORS:
        name = factor.name
        shares = np.bincount(read[name], minlength=len(factor.classes)) / num
        factors[name] = {
            "classifier_test_accuracy": float(np.mean(test_predicted[name] == test_classes[name])),
            "classifier_agreement_on_generated": float(
                np.mean(generated_predicted[name] == read[name])
            ),
            "generated_shares": dict(zip(factor.classes, shares.tolist(), strict=True)),
            "testbed_probabilities": dict(zip(factor.classes, factor.probabilities, strict=True)),
        }
    return {
        "num": num,
        "frechet_distance_generated": frechet_distance(*statistics(generated_features), *reference),
        "frechet_distance_train_floor": frechet_distance(*statistics(train_features), *reference),
        "factors": factors,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="model directory (default: the shipped one)")
    parser.add_argument("--num", type=int, default=10_000, help="images of each kind (10000)")
    args = parser.parse_args(argv)
    if args.model is None:
        from jgan.assets import testbed_model_dir

        args.model = testbed_model_dir()
    print(json.dumps(testbed_quality(args.model, num=args.num), indent=1))


if __name__ == "__main__":
    main()
