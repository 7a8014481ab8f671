"""Attribute classifier: CelebA's 40 binary attributes at 128x128, and a tiny testbed variant.

    jgan train --config configs/classifier.py --workdir runs/celeba-attributes \
        --config.data.data_dir=~/tensorflow_datasets
    jgan train --config configs/classifier.py:tiny --workdir runs/testbed-classifier
    jgan generate-data MODEL --predictor runs/celeba-attributes/model:Smiling ...

CelebA as usually prepared for attribute classifiers and GANs: the aligned 178x218 images
cropped to their centred 178x178 square (the face) and resized to 128x128; the official
train split (162,770 images), its 40 binary `attributes` as labels, mirror augmentation.
The data is tfds' 'celeb_a' prepared offline in array_record format under `data.data_dir`
(tfds cannot download CelebA itself: place the files as its manual-download instructions say
and build it once). `--config.model.resolution=64` trains at 64x64 (the 64x64 setting of
DCGAN-style CelebA models). The network is ResNet-18 (ImageNet stem), trained with Adam (lr
1e-3, decoupled weight decay 1e-4, cosine decay) at batch 128 for 20 epochs (25,440 steps).
This setting has not been run by jgan yet (no CelebA on its machines): no accuracy is claimed.

`tiny` trains the testbed's 7 factors (`jgan.data.testbed`, generated on the fly, 32x32) with
a 3-stage CIFAR ResNet of one block per stage for 300 steps: well under a minute on a CPU.
It does not mirror: mirroring would swap the testbed's `position_x` without its label.
`testbed` is the factor predictor jgan ships (`jgan/assets/testbed`): the same design with two
blocks per stage and twice the width, trained for 1,200 steps of 64 images drawn from 100,000.
`total_steps` bounds any run.
"""

import ml_collections

from jgan.configs.common import tfds_data
from jgan.data.testbed import FACTORS
from jgan.models.resnet import preset

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip
CELEBA_TRAIN_IMAGES = 162_770


def _trunk(name):
    """ResNet trunk arguments of a named preset (without its classifier)."""
    config = preset(name)
    return {k: config[k] for k in ("depths", "widths", "stem_width", "block", "stem")}


def get_config(arg=None):
    """The CelebA-40 config; `arg='tiny'` the testbed classifier for CPUs."""
    config = ml_collections.ConfigDict()
    config.trainer = "classifier"
    config.seed = 0
    config.batch_size = 128
    config.total_steps = 20 * CELEBA_TRAIN_IMAGES // config.batch_size

    config.model = ml_collections.ConfigDict(
        dict(
            attributes=CELEBA_ATTRIBUTES,
            num_classes=(2,) * len(CELEBA_ATTRIBUTES),
            resolution=128,
            pooling="average",
            **_trunk("resnet18"),
        )
    )
    config.optimizer = ml_collections.ConfigDict(
        dict(name="adam", learning_rate=1e-3, momentum=0.9, weight_decay=1e-4, schedule="cosine")
    )
    config.data = tfds_data("celeb_a", crop=178, label_keys=("attributes",))
    config.log_every = 100
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3

    if arg in ("tiny", "testbed"):
        config.batch_size = 32
        config.total_steps = 300
        config.model.update(
            attributes=tuple(f.name for f in FACTORS),
            num_classes=tuple(len(f.classes) for f in FACTORS),
            resolution=32,
            depths=(1, 1, 1),
            widths=(16, 32, 64),
            stem_width=16,
            stem="cifar",
            pooling="flatten",
        )
        config.optimizer.update(learning_rate=3e-3)
        config.data.update(
            source="testbed", name="", crop=None, label_keys=(), size=4096, mirror=False
        )
        config.log_every = 20
        config.checkpoint_every = 100
    if arg == "testbed":
        config.batch_size = 64
        config.total_steps = 1200
        config.model.update(depths=(2, 2, 2), widths=(32, 64, 128), stem_width=32)
        config.data.update(size=100_000)
        config.log_every = 100
        config.checkpoint_every = 500
    elif arg not in (None, "tiny"):
        raise ValueError(
            f"unknown variant {arg!r} of configs/classifier.py; known: 'tiny', 'testbed'"
        )
    return config
