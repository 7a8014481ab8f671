"""Attribute classifier training: one pure jitted step over a `ClassifierState`.

The model is `jgan.models.classifier.AttributeClassifier`. The loss is the mean over attributes
of each attribute's loss: binary cross-entropy on the logit of a binary attribute, softmax
cross-entropy on the logits of a categorical one; a label below 0 marks an unknown value and
is left out. Batch norm uses (and updates) the statistics of the global batch, which the jitted
step computes across devices. The optimizer is Adam (decoupled weight decay, AdamW) or SGD
with momentum (weight decay added to the gradient, as torch's SGD); weight decay applies to
conv and dense weights, not to biases and batch-norm scales. The learning rate follows a
cosine decay to 0 over `total_steps` or stays constant. Mirror augmentation is the data
pipeline's (`config.data.mirror`).
"""

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jgan.bundle import Bundle
from jgan.errors import InputError
from jgan.models.classifier import AttributeClassifier
from jgan.training.gan import _frozen, _image_float
from jgan.training.state import split_module

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")


@flax.struct.dataclass
class ClassifierState:
    """Everything a classifier training step reads and writes: trainable parameters, the
    batch-norm statistics (`buffers`) and the optimizer state."""

    step: jax.Array
    params: dict
    buffers: dict
    opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class ClassifierTrainer:
    """Classifier hyper-parameters; hashable, so equal trainers share one compiled step.

    `model` holds the constructor arguments of `AttributeClassifier` (sorted tuple of items).
    """

    model: tuple
    batch_size: int
    total_steps: int
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"

    arch = "attribute_classifier"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"batch_size must be a positive integer; got {self.batch_size!r}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise InputError(
                f"learning_rate must be > 0 and weight_decay >= 0; got {self.learning_rate}, "
                f"{self.weight_decay}"
            )

    @classmethod
    def from_config(cls, config):
        """The trainer a `configs/classifier.py` ConfigDict describes."""
        opt = config.optimizer
        return cls(
            model=_frozen(config.model),
            batch_size=config.batch_size,
            total_steps=int(config.total_steps),
            optimizer=opt.name,
            learning_rate=opt.learning_rate,
            momentum=opt.momentum,
            weight_decay=opt.weight_decay,
            schedule=opt.schedule,
        )

    @property
    def resolution(self):
        return dict(self.model)["resolution"]

    def build(self, key):
        """A freshly initialised classifier."""
        return AttributeClassifier(**dict(self.model), rngs=nnx.Rngs(key))

    @functools.cached_property
    def _abstract(self):
        return nnx.eval_shape(lambda: self.build(jax.random.key(0)))

    @functools.cached_property
    def _graphdef(self):
        return split_module(self._abstract)[0]

    @functools.cached_property
    def _tx(self):
        rate = self.learning_rate
        if self.schedule == "cosine":
            rate = optax.cosine_decay_schedule(rate, max(self.total_steps, 1))

        def decayed(params):
            return jax.tree.map(lambda p: p.ndim > 1, params)

        if self.optimizer == "adam":
            return optax.adamw(rate, weight_decay=self.weight_decay, mask=decayed)
        return optax.chain(
            optax.add_decayed_weights(self.weight_decay, mask=decayed),
            optax.sgd(rate, momentum=self.momentum),
        )

    def init(self, key):
        """A fresh `ClassifierState` (jit it with the output sharding you want)."""
        _, params, buffers = split_module(self.build(key))
        return ClassifierState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            buffers=buffers,
            opt_state=self._tx.init(params),
        )

    def module(self, state):
        """The classifier rebuilt from `state`."""
        return nnx.merge(self._graphdef, state.params, state.buffers)

    def bundle(self, state, source=""):
        """The trained classifier as a `jgan.Bundle` (role 'classifier'), ready for
        `jgan.save_model_dir`; `jgan.analysis.predictors.load_predictor` reads it back."""
        return Bundle(arch=self.arch, classifier=self.module(jax.device_get(state)), source=source)

    def loss(self, classifier, logits, labels):
        """(mean loss over attributes, mean accuracy over attributes) of a batch."""
        losses, accuracies = [], []
        parts = classifier.split_logits(logits)
        for name, k, part in zip(classifier.attributes, classifier.num_classes, parts, strict=True):
            if name not in labels:
                raise InputError(
                    f"the data has no label {name!r}; it has {sorted(labels)} (set "
                    "data.label_keys, or choose model.attributes among these)"
                )
            label = labels[name].astype(jnp.int32)
            known = (label >= 0).astype(jnp.float32)
            target = jnp.clip(label, 0, k - 1)
            if k == 2:
                each = optax.sigmoid_binary_cross_entropy(part[:, 0], target.astype(jnp.float32))
                hit = (part[:, 0] > 0) == (target == 1)
            else:
                each = optax.softmax_cross_entropy_with_integer_labels(part, target)
                hit = jnp.argmax(part, axis=1) == target
            count = jnp.maximum(jnp.sum(known), 1.0)
            losses.append(jnp.sum(each * known) / count)
            accuracies.append(jnp.sum(hit * known) / count)
        return jnp.mean(jnp.stack(losses)), jnp.mean(jnp.stack(accuracies))

    def step(self, state, batch, key, *, batch_sharding=None):
        """One training step: (new state, metrics). Pure; jit it with `state` donated.

        `batch` is {'image': uint8 (N, H, W, C), 'label': {attribute: (N,) ints}}. The step
        draws no random numbers (`key` is part of the trainer protocol); `batch_sharding` is
        not needed either, as every array derives from the sharded batch.
        """
        del key, batch_sharding
        if "label" not in batch:
            raise InputError(
                "the classifier trains on labelled data; the data source gives no labels "
                "(set data.label_keys for a tfds dataset, data.labels for a folder)"
            )
        images = _image_float(batch["image"])

        def loss_fn(params):
            classifier = nnx.merge(self._graphdef, params, state.buffers)
            logits = classifier(images, train=True)
            loss, accuracy = self.loss(classifier, logits, batch["label"])
            return loss, (accuracy, split_module(classifier)[2])

        (loss, (accuracy, buffers)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = self._tx.update(grads, state.opt_state, state.params)
        new_state = ClassifierState(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            buffers=buffers,
            opt_state=opt_state,
        )
        return new_state, {"loss": loss, "accuracy": accuracy}

    def evaluate(self, state, source, *, batch_size=256):
        """Accuracy of each attribute on every example of a labelled `source`, in eval mode:
        {attribute: fraction correct}."""
        from jgan.data.sources import read_examples

        classifier = self.module(jax.device_get(state))
        graphdef, params = nnx.split(classifier)
        predict = jax.jit(lambda p, x: nnx.merge(graphdef, p)(_image_float(x)))
        hits = {name: 0 for name in classifier.attributes}
        for start in range(0, len(source), batch_size):
            indices = range(start, min(start + batch_size, len(source)))
            images, labels = read_examples(source, indices)
            if labels is None:
                raise InputError("evaluation needs a labelled source")
            parts = classifier.split_logits(predict(params, images))
            for name, k, part in zip(
                classifier.attributes, classifier.num_classes, parts, strict=True
            ):
                guess = part[:, 0] > 0 if k == 2 else jnp.argmax(part, axis=1)
                hits[name] += int(jnp.sum(guess == labels[name]))
        return {name: count / len(source) for name, count in hits.items()}
