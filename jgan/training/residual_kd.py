"""Residual knowledge distillation (Gao, Shen, Li, Loy, "Residual Knowledge Distillation",
arXiv 2002.09168), with plain logit KD and no distillation as baselines, in one trainer.

A frozen teacher T (a `ResNet` trained by this trainer with method "none", read from its model
directory) guides a network derived from a given model M:
- method "none": M trained with cross-entropy only (also how the teacher is trained);
- method "kd": M with Hinton's logit distillation, ce_weight * CE(z, y)
  + kd_weight * tau^2 * KL(softmax(z_T / tau) || softmax(z / tau)) (batch mean);
- method "residual": M separated into a student S and an assistant A of the same total cost
  (`jgan.models.resnet.split_config`, `SplitResNet`). S mimics the teacher's feature map,
  A learns what S misses, and the classifier reads their sum:
      L_S = mean (F_S - F_T)^2,   L_A = mean (F_A - sg(F_T - F_S))^2,
      L_CE = CE(head(F_S + F_A), y)   (+ kd_weight * KD on those logits, 0 by default),
  with sg the stop-gradient. Schemes (`scheme`):
  * "end_to_end": one stage, ce_weight * L_CE + hint_weight * L_S + residual_weight * L_A;
  * "progressive": stage 1 (the first `stage1_fraction` of the steps) trains S alone (trunk,
    student branch, classifier) on ce_weight * CE(head(F_S), y) + hint_weight * L_S; stage 2
    freezes S (eval-mode batch norm, parameters bit-exact) and trains A and the classifier on
    ce_weight * L_CE + residual_weight * L_A. Each stage runs the whole learning-rate
    schedule.

Decisions the paper leaves open (PAPERS.md §3.6), with their reasons:
1. Features: the teacher's last-stage feature map after its ReLU (what its classifier pools),
   one stage only: it is the knowledge the combined head reads, and the only place where
   F_S + F_A can replace F_T without changing the architecture. S and A each end in a 1x1
   conv + BN projecting to the teacher's channels (FitNets' regressor without the ReLU), so
   shapes match and A's output can be negative, as a residual must. The spatial sizes must
   agree (checked). A's projection BN scale starts at 0, so F_A = 0 at first and S + A starts
   as S (without it, a random F_A first makes the combined features worse than S's alone).
2. Separation (PAPERS.md option b): S and A share the stem and the first `shared_stages`
   stages of M; the remaining stages are duplicated as two branches whose widths are M's
   scaled by one factor per branch, chosen so MACs(S + A, projections and classifier
   included) equal MACs(M) to well under 1%; `student_share` (default 0.7) is S's part of the
   budget left after the trunk and the classifier. The trunk belongs to S (frozen with it in
   stage 2), so S stands alone as trunk + student branch + classifier.
3. The residual target is stop-gradient (A chases S's current error without pulling S
   towards it); in the progressive stage 2 S is frozen, so L_A = mean (F_S + F_A - F_T)^2.
4. CE on S alone only in progressive stage 1 (where S must stand alone); the end-to-end
   scheme and stage 2 apply CE to the combined logits only.
5. Progressive vs. end-to-end: the `scheme` switch; the classifier keeps training in stage 2
   (it was fitted to F_S, and the sum F_S + F_A is a different input). A's optimizer state
   starts at zero in stage 2 (its gradients are masked to 0 in stage 1).
6. Weights: hint_weight = residual_weight = 100 (RepDistiller's FitNets weight for a mean
   squared hint), tau = 4, and for method "kd" RepDistiller's ce_weight 0.1, kd_weight 0.9.
7. Optimisation follows the CIFAR-100 recipe of the KD benchmarks (configs/residual_kd.py):
   SGD with momentum (torch's form) and weight decay on every parameter, the learning rate
   divided by 10 at fixed fractions of a stage. Augmentation: a random crop with `crop_padding`
   black pixels per side (in the jitted step, from the step key) and the data pipeline's
   mirror. Images are scaled to [-1, 1] rather than normalised by the dataset's channel
   statistics: the first batch norm absorbs the difference.
Labels: `labels` names the label(s) of the data to classify; several are combined into one
class index (mixed radix, the first most significant) with `label_sizes` classes each, so a
small multi-factor dataset (the testbed) gives a many-class task.
"""

import dataclasses
import functools
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jgan.bundle import Bundle, load
from jgan.errors import CheckpointError, InputError
from jgan.models.resnet import ResNet, SplitResNet, split_config
from jgan.training.gan import _constrain, _frozen, _image_float
from jgan.training.state import split_module

METHODS = ("none", "kd", "residual")
SCHEMES = ("end_to_end", "progressive")
STUDENT_PARTS = ("trunk", "student")
"""Top-level parameter groups of a `SplitResNet` that make up the student S."""


@flax.struct.dataclass
class DistillState:
    """Everything a step reads and writes; `teacher` (the teacher's full state) never changes
    and is carried so a run is self-contained and the jitted step takes no large constants."""

    step: jax.Array
    params: dict
    buffers: dict
    opt_state: optax.OptState
    teacher: dict


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of integer labels."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def distillation_loss(logits, teacher_logits, temperature):
    """Hinton's KD: tau^2 * KL(softmax(z_T / tau) || softmax(z / tau)), batch mean."""
    log_p = jax.nn.log_softmax(logits / temperature)
    log_q = jax.nn.log_softmax(teacher_logits / temperature)
    kl = jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=-1)
    return jnp.mean(kl) * temperature**2


def mse(a, b):
    return jnp.mean(jnp.square(a - b))


def random_crop(images, key, padding, fill=-1.0, sharding=None):
    """Each image shifted by a random offset in [-padding, padding]^2, the exposed border
    filled with `fill` (torchvision's RandomCrop(size, padding) on black padding)."""
    if padding == 0:
        return images
    n, h, w, _ = images.shape
    padded = jnp.pad(
        images, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=fill
    )
    offsets = _constrain(jax.random.randint(key, (n, 2), 0, 2 * padding + 1), sharding)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


def combine_labels(labels, names, sizes):
    """One class index from the label columns `names` (mixed radix, the first most
    significant), each with `sizes` classes."""
    missing = [name for name in names if name not in labels]
    if missing:
        raise InputError(f"the data has no label(s) {missing}; it has {sorted(labels)}")
    index = jnp.zeros_like(labels[names[0]], dtype=jnp.int32)
    for name, size in zip(names, sizes, strict=True):
        index = index * size + labels[name].astype(jnp.int32)
    return index


def load_teacher(path):
    """The `ResNet` classifier of a model directory (or model file) at `path`."""
    teacher = load(path).classifier
    if not isinstance(teacher, ResNet):
        raise CheckpointError(
            f"{path}: the teacher must be a model directory holding a ResNet classifier (train "
            f"one with configs/residual_kd.py:teacher); got {type(teacher).__name__}"
        )
    return teacher


@dataclasses.dataclass(frozen=True)
class ResidualKDTrainer:
    """Distillation hyper-parameters; hashable, so equal trainers share one compiled step.

    `model`: `ResNet` constructor arguments of the given model M (sorted tuple of items).
    See the module docstring for the methods, schemes and losses.
    """

    model: tuple
    batch_size: int
    total_steps: int
    resolution: int
    labels: tuple = ("label",)
    label_sizes: tuple = (100,)
    method: str = "residual"
    scheme: str = "end_to_end"
    teacher: str = ""
    shared_stages: int = 1
    student_share: float = 0.7
    stage1_fraction: float = 0.5
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple = (0.625, 0.75, 0.875)
    lr_decay: float = 0.1
    ce_weight: float = 1.0
    kd_weight: float = 0.0
    temperature: float = 4.0
    hint_weight: float = 100.0
    residual_weight: float = 100.0
    crop_padding: int = 4

    def __post_init__(self):
        for name, value, choices in (
            ("method", self.method, METHODS),
            ("scheme", self.scheme, SCHEMES),
        ):
            if value not in choices:
                raise InputError(f"{name} must be one of {choices}; got {value!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"batch_size must be a positive integer; got {self.batch_size!r}")
        if len(self.labels) != len(self.label_sizes) or not self.labels:
            raise InputError(
                f"labels {self.labels} and label_sizes {self.label_sizes} must be non-empty and "
                "of the same length"
            )
        classes = dict(self.model).get("num_classes", 100)
        if math.prod(self.label_sizes) != classes:
            raise InputError(
                f"the labels {self.labels} give {math.prod(self.label_sizes)} classes but the "
                f"model has num_classes={classes}"
            )
        if self.method != "none" and not self.teacher:
            raise InputError(f"method {self.method!r} needs a teacher model directory (teacher)")
        if not 0 < self.stage1_fraction < 1:
            raise InputError(f"stage1_fraction must be in (0, 1); got {self.stage1_fraction}")

    @classmethod
    def from_config(cls, config):
        """The trainer a `configs/residual_kd.py` ConfigDict describes."""
        opt, loss, split = config.optimizer, config.loss, config.split
        return cls(
            model=_frozen(config.model),
            batch_size=config.batch_size,
            total_steps=int(config.total_steps),
            resolution=config.resolution,
            labels=tuple(config.labels),
            label_sizes=tuple(config.label_sizes),
            method=config.method,
            scheme=config.scheme,
            teacher=config.get("teacher") or "",
            shared_stages=split.shared_stages,
            student_share=split.student_share,
            stage1_fraction=config.stage1_fraction,
            learning_rate=opt.learning_rate,
            momentum=opt.momentum,
            weight_decay=opt.weight_decay,
            milestones=tuple(opt.milestones),
            lr_decay=opt.lr_decay,
            ce_weight=loss.ce_weight,
            kd_weight=loss.kd_weight,
            temperature=loss.temperature,
            hint_weight=loss.hint_weight,
            residual_weight=loss.residual_weight,
            crop_padding=config.crop_padding,
        )

    # --- models ---------------------------------------------------------------------------

    @functools.cached_property
    def _teacher(self):
        """(graphdef, numpy state) of the teacher, read once; None for method 'none'."""
        if self.method == "none":
            return None
        with jax.ensure_compile_time_eval():  # first use may be inside a trace (jitted init)
            teacher = load_teacher(self.teacher)
        graphdef, state = nnx.split(teacher)
        return graphdef, jax.tree.map(np.asarray, nnx.to_pure_dict(state))

    @functools.cached_property
    def teacher_feature_shape(self):
        """(H, W, C) of the teacher's feature map at `resolution`."""
        graphdef, state = self._teacher
        image = jax.ShapeDtypeStruct((1, self.resolution, self.resolution, 3), jnp.float32)
        out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).features(x), state, image)
        return tuple(out.shape[1:])

    @functools.cached_property
    def model_config(self):
        """Constructor arguments of the trained network (M, or M split into S and A)."""
        model = dict(self.model)
        if self.method != "residual":
            return model
        config = split_config(
            model,
            image_size=self.resolution,
            shared_stages=self.shared_stages,
            student_share=self.student_share,
            feature_channels=self.teacher_feature_shape[-1],
        )
        abstract = nnx.eval_shape(lambda: SplitResNet(**config, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(abstract)
        image = jax.ShapeDtypeStruct((1, self.resolution, self.resolution, 3), jnp.float32)
        out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).features(x)[0], state, image)
        if tuple(out.shape[1:]) != self.teacher_feature_shape:
            raise InputError(
                f"the student's feature map is {tuple(out.shape[1:])} but the teacher's is "
                f"{self.teacher_feature_shape}; their spatial sizes must agree"
            )
        return config

    @property
    def model_class(self):
        return SplitResNet if self.method == "residual" else ResNet

    def build(self, key):
        """A freshly initialised network (M, or the `SplitResNet` of S and A)."""
        return self.model_class(**self.model_config, rngs=nnx.Rngs(key))

    @functools.cached_property
    def _graphdef(self):
        return split_module(nnx.eval_shape(lambda: self.build(jax.random.key(0))))[0]

    def module(self, state):
        """The trained network rebuilt from `state`."""
        return nnx.merge(self._graphdef, state.params, state.buffers)

    def bundle(self, state, source=""):
        """The trained network as a `jgan.Bundle` (role 'classifier')."""
        module = self.module(jax.device_get(state))
        return Bundle(arch=module.arch, classifier=module, source=source)

    # --- optimisation ---------------------------------------------------------------------

    @functools.cached_property
    def _tx(self):
        return optax.trace(decay=self.momentum)

    @property
    def progressive(self):
        return self.method == "residual" and self.scheme == "progressive"

    @property
    def stage1_steps(self):
        return max(1, round(self.stage1_fraction * self.total_steps)) if self.progressive else 0

    def learning_rate_at(self, step):
        """The step's learning rate: lr * lr_decay ** (milestones passed within its stage)."""
        start = jnp.where(step < self.stage1_steps, 0, self.stage1_steps)
        length = jnp.where(step < self.stage1_steps, self.stage1_steps, self.total_steps - start)
        progress = (step - start) / jnp.maximum(length, 1)
        passed = sum((progress >= m).astype(jnp.float32) for m in self.milestones)
        return self.learning_rate * self.lr_decay**passed

    def _trainable(self, params, stage):
        """1/0 mask of the parameters a stage trains: everything in stage 0 (single-stage
        training), S and the classifier in stage 1, A and the classifier in stage 2."""

        def trained(part):
            if stage == 0 or part == "fc":
                return 1.0
            return 1.0 if (part in STUDENT_PARTS) == (stage == 1) else 0.0

        return {
            part: jax.tree.map(functools.partial(lambda t, _: t, trained(part)), tree)
            for part, tree in params.items()
        }

    def init(self, key):
        """A fresh `DistillState` (jit it with the output sharding you want)."""
        _, params, buffers = split_module(self.build(key))
        teacher = {} if self._teacher is None else jax.tree.map(jnp.asarray, self._teacher[1])
        return DistillState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            buffers=buffers,
            opt_state=self._tx.init(params),
            teacher=teacher,
        )

    # --- losses ---------------------------------------------------------------------------

    def _teacher_outputs(self, state, images):
        if self.method == "none":
            return None, None
        teacher = nnx.merge(self._teacher[0], state.teacher)
        features = jax.lax.stop_gradient(teacher.features(images))
        return features, jax.lax.stop_gradient(teacher.head(features))

    def _logit_terms(self, logits, labels, teacher_logits):
        ce = cross_entropy(logits, labels)
        loss = self.ce_weight * ce
        if self.kd_weight and teacher_logits is not None:
            loss += self.kd_weight * distillation_loss(logits, teacher_logits, self.temperature)
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
        return loss, {"ce": ce, "accuracy": accuracy}

    def _loss(self, params, buffers, images, labels, teacher, stage):
        """(loss, (metrics, new buffers)) of one stage (0: single-stage training)."""
        model = nnx.merge(self._graphdef, params, buffers)
        feat_t, logits_t = teacher
        nan = jnp.full((), jnp.nan)
        metrics = {}
        if self.method != "residual":
            logits = model(images, train=True)
            loss, metrics = self._logit_terms(logits, labels, logits_t)
        else:
            shared = model.trunk.features(images, train=stage != 2)
            feat_s = model.student(shared, stage != 2)
            if stage == 2:
                feat_s = jax.lax.stop_gradient(feat_s)
            hint = mse(feat_s, feat_t)
            if stage == 1:
                loss, metrics = self._logit_terms(model.head(feat_s), labels, logits_t)
                loss += self.hint_weight * hint
                metrics |= {"residual": nan, "residual_loss": nan}
            else:
                feat_a = model.assistant(shared, True)
                target = jax.lax.stop_gradient(feat_t - feat_s)
                residual_loss = mse(feat_a, target)
                loss, metrics = self._logit_terms(model.head(feat_s + feat_a), labels, logits_t)
                loss += self.residual_weight * residual_loss
                if stage == 0:
                    loss += self.hint_weight * hint
                metrics |= {
                    "residual": mse(feat_s + feat_a, feat_t),
                    "residual_loss": residual_loss,
                }
            metrics["hint"] = hint  # = mean (F_T - F_S)^2, the residual before A
        metrics["loss"] = loss
        return loss, (metrics, split_module(model)[2])

    def _stage_update(self, state, images, labels, teacher, stage):
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)
        (_, (metrics, buffers)), grads = grad_fn(
            state.params, state.buffers, images, labels, teacher, stage
        )
        mask = self._trainable(state.params, stage)
        grads = jax.tree.map(
            lambda g, p, m: (g + self.weight_decay * p) * m, grads, state.params, mask
        )
        trace, opt_state = self._tx.update(grads, state.opt_state, state.params)
        rate = self.learning_rate_at(state.step)
        params = jax.tree.map(lambda p, u, m: p - rate * u * m, state.params, trace, mask)
        if stage == 2:  # S is frozen: its batch-norm statistics too
            buffers = {**buffers, **{k: state.buffers[k] for k in STUDENT_PARTS}}
        return params, buffers, opt_state, metrics | {"learning_rate": rate}

    def step(self, state, batch, key, *, batch_sharding=None):
        """One training step: (new state, metrics). Pure; jit it with `state` donated.

        `batch` is {'image': uint8 (N, H, W, 3), 'label': {name: (N,) ints}}; `key` is folded
        with the step number and draws the crops.
        """
        if "label" not in batch:
            raise InputError(
                "distillation trains on labelled data; the data source gives no labels (set "
                "data.label_keys for a tfds dataset)"
            )
        key = jax.random.fold_in(key, state.step)
        images = random_crop(
            _image_float(batch["image"]), key, self.crop_padding, sharding=batch_sharding
        )
        labels = combine_labels(batch["label"], self.labels, self.label_sizes)
        teacher = self._teacher_outputs(state, images)
        if self.progressive:
            params, buffers, opt_state, metrics = jax.lax.cond(
                state.step < self.stage1_steps,
                lambda: self._stage_update(state, images, labels, teacher, 1),
                lambda: self._stage_update(state, images, labels, teacher, 2),
            )
        else:
            params, buffers, opt_state, metrics = self._stage_update(
                state, images, labels, teacher, 0
            )
        new_state = DistillState(
            step=state.step + 1,
            params=params,
            buffers=buffers,
            opt_state=opt_state,
            teacher=state.teacher,
        )
        return new_state, metrics

    # --- evaluation -----------------------------------------------------------------------

    def evaluate(self, state, source, *, batch_size=250):
        """Eval-mode scores on every example of a labelled `source`: {'accuracy'}; for the
        residual method also 'student_accuracy' (S alone: head(F_S)) and the feature residuals
        'student_gap' = mean (F_T - F_S)^2 and 'combined_gap' = mean (F_T - F_S - F_A)^2."""
        from jgan.data.sources import read_examples

        state = jax.device_get(state)
        graphdef, params = nnx.split(self.module(state))

        @jax.jit
        def predict(params, teacher, images):
            model = nnx.merge(graphdef, params)
            x = _image_float(images)
            if self.method != "residual":
                return {"accuracy": jnp.argmax(model(x), axis=-1)}, {}
            feat_s, feat_a = model.features(x)
            feat_t = nnx.merge(self._teacher[0], teacher).features(x)
            guesses = {
                "accuracy": jnp.argmax(model.head(feat_s + feat_a), axis=-1),
                "student_accuracy": jnp.argmax(model.head(feat_s), axis=-1),
            }
            gaps = {
                "student_gap": jnp.sum(jnp.mean(jnp.square(feat_t - feat_s), axis=(1, 2, 3))),
                "combined_gap": jnp.sum(
                    jnp.mean(jnp.square(feat_t - feat_s - feat_a), axis=(1, 2, 3))
                ),
            }
            return guesses, gaps

        totals = {}
        for start in range(0, len(source), batch_size):
            images, labels = read_examples(
                source, range(start, min(start + batch_size, len(source)))
            )
            if labels is None:
                raise InputError("evaluation needs a labelled source")
            truth = np.asarray(combine_labels(labels, self.labels, self.label_sizes))
            guesses, gaps = predict(params, state.teacher, images)
            for name, guess in guesses.items():
                totals[name] = totals.get(name, 0) + int(np.sum(np.asarray(guess) == truth))
            for name, value in gaps.items():
                totals[name] = totals.get(name, 0.0) + float(value)
        return {name: total / len(source) for name, total in totals.items()}
