"""Attribute classifiers: the predictors InterFaceGAN, HiGAN and FairGen need but the originals
never released (REFERENCE.md §11 #2), trained by `jgan.training.classifier`.

`AttributeClassifier` is a ResNet trunk (`jgan.models.resnet`, any depth and width, CIFAR or
ImageNet stem) with one linear head over named attributes: a binary attribute (2 classes, e.g.
CelebA's 40) has one logit, read with a sigmoid and trained with binary cross-entropy; a
categorical one (K > 2 classes, e.g. the testbed's shape) has K logits, read with a softmax and
trained with cross-entropy. Images are NHWC in [-1, 1] at the classifier's `resolution`.

Its scores are probabilities in columns: one per binary attribute (P(attribute)), one per class
of a categorical attribute, named `name` and `name=k`. `ClassifierPredictor` makes a trained
classifier a predictor for the analysis tools (`jgan.analysis.predictors.load_predictor` with a
model directory, `DIR` or `DIR:attribute`), resizing generated images to its resolution.
"""

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jgan.errors import InputError
from jgan.models.base import ConfiguredModule
from jgan.models.resnet import Dense, ResNet

POOLINGS = ("average", "flatten")


def feature_size(resolution, num_stages, stem):
    """Side of the ResNet's last feature map: every stride-2 layer (the ImageNet stem's conv
    and max-pool, the first block of each stage after the first) halves it, rounding up."""
    halvings = (2 if stem == "imagenet" else 0) + max(num_stages - 1, 0)
    for _ in range(halvings):
        resolution = -(-resolution // 2)
    return resolution


def logit_sizes(num_classes):
    """Logits per attribute: 1 for a binary attribute, K for a categorical one."""
    return tuple(1 if k == 2 else k for k in num_classes)


def column_names(attributes, num_classes):
    """Names of the probability columns: `name` (binary) or `name=k` (categorical)."""
    names = []
    for name, k in zip(attributes, num_classes, strict=True):
        names += [name] if k == 2 else [f"{name}={c}" for c in range(k)]
    return tuple(names)


class AttributeClassifier(ConfiguredModule):
    """ResNet trunk + linear head: NHWC images in [-1, 1] -> logits of named attributes.

    `attributes` names them and `num_classes` gives each one's number of classes (2: binary).
    `depths`, `widths`, `stem_width`, `block`, `stem` configure the trunk as in
    `jgan.models.resnet.ResNet` (`resnet.preset(name)` gives the named ones). `pooling` is
    'average' (ResNet's global average pool) or 'flatten' (the whole last feature map feeds the
    head, which keeps where things are: attributes such as position need it).
    """

    arch: ClassVar[str] = "attribute_classifier"

    def __init__(
        self,
        attributes,
        num_classes,
        resolution=64,
        depths=(2, 2, 2, 2),
        widths=(64, 128, 256, 512),
        stem_width=64,
        block="basic",
        stem="imagenet",
        in_channels=3,
        pooling="average",
        *,
        rngs: nnx.Rngs,
    ):
        attributes, num_classes = tuple(attributes), tuple(num_classes)
        if not attributes or len(set(attributes)) != len(attributes):
            raise InputError(f"attributes must be distinct names, at least one; got {attributes}")
        if len(num_classes) != len(attributes) or not all(
            isinstance(k, int) and not isinstance(k, bool) and k >= 2 for k in num_classes
        ):
            raise InputError(
                f"num_classes must give {len(attributes)} integers >= 2 (one per attribute); "
                f"got {num_classes}"
            )
        if not isinstance(resolution, int) or resolution < 8:
            raise InputError(f"resolution must be an integer >= 8; got {resolution!r}")
        if pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
        self._remember_config(
            attributes=attributes,
            num_classes=num_classes,
            resolution=resolution,
            depths=tuple(depths),
            widths=tuple(widths),
            stem_width=stem_width,
            block=block,
            stem=stem,
            in_channels=in_channels,
            pooling=pooling,
        )
        self.attributes, self.num_classes = attributes, num_classes
        self.resolution, self.in_channels = resolution, in_channels
        self.backbone = ResNet(
            depths,
            widths,
            stem_width,
            block,
            stem,
            num_classes=0,
            in_channels=in_channels,
            rngs=rngs,
        )
        self.pooling = pooling
        features = self.backbone.feature_channels
        if pooling == "flatten":
            features *= feature_size(resolution, len(tuple(depths)), stem) ** 2
        self.fc = Dense(features, sum(logit_sizes(num_classes)), rngs=rngs)

    @property
    def column_names(self):
        return column_names(self.attributes, self.num_classes)

    def __call__(self, images, *, train=False):
        """Logits (N, sum of logit sizes), attribute after attribute; `train` uses and
        updates the batch-norm statistics."""
        features = self.backbone.features(images, train=train)
        if self.pooling == "flatten":
            return self.fc(features.reshape(features.shape[0], -1))
        return self.fc(jnp.mean(features, axis=(1, 2)))

    def split_logits(self, logits):
        """Logits (N, total) -> one (N, size) array per attribute."""
        edges = np.cumsum(logit_sizes(self.num_classes))[:-1]
        return jnp.split(logits, edges, axis=1)

    def probabilities(self, images):
        """Probability columns (N, len(column_names)) in eval mode."""
        parts = self.split_logits(self(images))
        return jnp.concatenate(
            [
                jax.nn.sigmoid(p) if k == 2 else jax.nn.softmax(p, axis=1)
                for p, k in zip(parts, self.num_classes, strict=True)
            ],
            axis=1,
        )


@functools.partial(jax.jit, static_argnums=0)
def _probabilities(graphdef, state, images):
    classifier = nnx.merge(graphdef, state)
    size = classifier.resolution
    if images.shape[1:3] != (size, size):
        shape = (images.shape[0], size, size, images.shape[3])
        images = jax.image.resize(images, shape, "linear", antialias=True)
    return classifier.probabilities(images.astype(jnp.float32))


class ClassifierPredictor:
    """A predictor (images in [-1, 1], any resolution -> probabilities) of a classifier.

    `select` picks one attribute (all its columns: (N,) for a binary one, (N, K) for a
    categorical one) or one column by name (`shape=1`); None keeps every column.
    """

    def __init__(self, classifier, select=None):
        names = classifier.column_names
        if select is None:
            columns = tuple(range(len(names)))
        elif select in names:
            columns = (names.index(select),)
        elif select in classifier.attributes:
            columns = tuple(i for i, n in enumerate(names) if n.split("=")[0] == select)
        else:
            raise InputError(
                f"the classifier has no attribute {select!r}; it predicts "
                f"{list(classifier.attributes)} (columns {list(names)})"
            )
        self.column_names = tuple(names[i] for i in columns)
        self.columns, self.resolution = columns, classifier.resolution
        self.in_channels = classifier.in_channels
        self.graphdef, self.state = nnx.split(classifier)
        self.__qualname__ = f"ClassifierPredictor[{select or 'all'}]"

    def __call__(self, images):
        if images.ndim != 4 or images.shape[-1] != self.in_channels:
            raise InputError(
                f"the classifier takes NHWC images with {self.in_channels} channels; got "
                f"shape {tuple(images.shape)}"
            )
        scores = _probabilities(self.graphdef, self.state, jnp.asarray(images))
        return scores[:, self.columns[0]] if len(self.columns) == 1 else scores[:, self.columns]


def load_predictor(path, select=None):
    """The predictor of the classifier in jgan model directory `path` (see
    `ClassifierPredictor` for `select`)."""
    from jgan.bundle import read_model_dir

    bundle = read_model_dir(path)
    if bundle.classifier is None:
        raise InputError(f"{path} holds no attribute classifier (its arch is {bundle.arch!r})")
    return ClassifierPredictor(bundle.classifier, select)
