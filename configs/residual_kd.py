"""Residual knowledge distillation (`jgan.training.residual_kd`) and its baselines.

The full config is the CIFAR-100 recipe of the common KD benchmarks (CRD's RepDistiller,
`train_teacher.py` / `train_student.py` defaults): 240 epochs of SGD (momentum 0.9, weight decay
5e-4, lr 0.05 divided by 10 at epochs 150, 180 and 210), batch 64, random crops of 32 px from
images padded by 4 and horizontal flips; teacher resnet32x4, student resnet8x4. CIFAR-100 is
tfds' 'cifar100' prepared offline (`tfds build cifar100 --data_dir DIR` on a machine with
network access, then copied) under `data.data_dir`:

    jgan train --config configs/residual_kd.py:teacher --workdir runs/t \
        --config.data.data_dir=~/tensorflow_datasets
    jgan train --config configs/residual_kd.py --workdir runs/rkd \
        --config.teacher=runs/t/model --config.data.data_dir=~/tensorflow_datasets

Variants (`ARG` = comma-separated words): the method, one of
    teacher      the teacher (resnet32x4) trained with cross-entropy alone
    none         the student model M (resnet8x4) trained with cross-entropy alone
    kd           M with Hinton's KD (T = 4, CE weight 0.1, KD weight 0.9, as RepDistiller)
    residual     M split into S + A, end-to-end (the default)
    progressive  M split into S + A, S then A; each stage gets the whole 240-epoch schedule,
                 so the run is twice as long
and `tiny`: the same on the jgan testbed (`jgan.data.testbed`, generated on the fly, 32x32),
classifying the 48 combinations of shape x object hue x background hue from 2048 training
images; teacher resnet14, model resnet8 at half width; 600 steps of batch 64 (a minute or
two on a CPU per run). `benchmarks/residual_kd.py` runs the tiny comparison.
"""

import ml_collections

from jgan.configs.common import tfds_data
from jgan.models.resnet import preset

CIFAR100_TRAIN_IMAGES = 50_000
EPOCHS = 240
METHODS = ("teacher", "none", "kd", "residual", "progressive")
TESTBED_LABELS = (("shape", 3), ("object_hue", 4), ("background_hue", 4))


def _network(name, **overrides):
    return ml_collections.ConfigDict(preset(name, **overrides))


def get_config(arg=None):
    """The CIFAR-100 config; `arg` picks the method and `tiny` (see the module docstring)."""
    words = [w for w in (arg or "").split(",") if w]
    unknown = [w for w in words if w not in METHODS + ("tiny",)]
    methods = [w for w in words if w in METHODS]
    if unknown or len(methods) > 1:
        raise ValueError(
            f"unknown variant {arg!r} of configs/residual_kd.py: give at most one of {METHODS}, "
            "optionally with 'tiny' (e.g. 'tiny,kd')"
        )
    variant = methods[0] if methods else "residual"
    tiny = "tiny" in words

    config = ml_collections.ConfigDict()
    config.trainer = "residual_kd"
    config.seed = 0
    config.batch_size = 64
    config.total_steps = EPOCHS * CIFAR100_TRAIN_IMAGES // config.batch_size
    config.resolution = 32
    config.labels = ("label",)
    config.label_sizes = (100,)
    config.model = _network("resnet32x4" if variant == "teacher" else "resnet8x4")
    config.method = {"teacher": "none", "progressive": "residual"}.get(variant, variant)
    config.scheme = "progressive" if variant == "progressive" else "end_to_end"
    config.stage1_fraction = 0.5
    config.teacher = ml_collections.config_dict.placeholder(str)
    config.split = ml_collections.ConfigDict(dict(shared_stages=1, student_share=0.7))
    config.optimizer = ml_collections.ConfigDict(
        dict(
            learning_rate=0.05,
            momentum=0.9,
            weight_decay=5e-4,
            milestones=(150 / EPOCHS, 180 / EPOCHS, 210 / EPOCHS),
            lr_decay=0.1,
        )
    )
    kd = variant == "kd"
    config.loss = ml_collections.ConfigDict(
        dict(
            ce_weight=0.1 if kd else 1.0,
            kd_weight=0.9 if kd else 0.0,
            temperature=4.0,
            hint_weight=100.0,
            residual_weight=100.0,
        )
    )
    config.crop_padding = 4
    config.data = tfds_data("cifar100", label_keys=("label",), size=CIFAR100_TRAIN_IMAGES)
    config.log_every = 100
    config.checkpoint_every = 5 * CIFAR100_TRAIN_IMAGES // config.batch_size
    config.keep_checkpoints = 3

    if tiny:
        classes = 1
        for _, size in TESTBED_LABELS:
            classes *= size
        config.labels = tuple(name for name, _ in TESTBED_LABELS)
        config.label_sizes = tuple(size for _, size in TESTBED_LABELS)
        if variant == "teacher":
            config.model = _network("resnet14", num_classes=classes)
        else:
            config.model = _network(
                "resnet8", num_classes=classes, widths=(8, 16, 32), stem_width=8
            )
        config.total_steps = 600
        config.optimizer.learning_rate = 0.1
        config.data = ml_collections.ConfigDict(
            dict(source="testbed", size=2048, seed=0, split="train", shuffle=True, mirror=True)
        )
        config.log_every = 50
        config.checkpoint_every = 600
    if variant == "progressive":
        config.total_steps *= 2
    return config
