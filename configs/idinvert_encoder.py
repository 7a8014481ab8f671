"""IDInvert's domain-guided encoder on FFHQ at 256x256, and a tiny CPU variant.

    jgan train --config configs/idinvert_encoder.py --workdir runs/idinvert_enc \
        --config.model=styleganinv_ffhq256_generator.pth --config.perceptual=vgg16.pth
    jgan train --config configs/idinvert_encoder.py:tiny --workdir runs/tiny_enc

The default follows IDInvert's `train_encoder.py` at 256 (idinvert `training/loss_encoder.py`,
`training_loop_encoder.py`): global batch 128 (16 per GPU x 8), 14,000k images (109,375
steps), loss MSE + 5e-5 * VGG16 conv4_3 (caffe) + 0.08 * softplus(-D) (the script's 0.08; the
paper's lambda_adv is 0.1), the discriminator fine-tuned with R1 gamma 10, Adam (0.9, 0.99,
1e-8) at 1e-4 decayed by 0.8 every eighth of the run (a quarter in TF's global steps, which
advance twice per iteration), mirror augmentation. The encoder is
`StyleGANEncoder` with batch norm (the released 1024-channel design). `model` is the GAN whose
generator stays frozen: any file `jgan.load` reads (with its discriminator when it has one, else
one is built from `discriminator` and trained from scratch, which the original never does);
`perceptual` is IDInvert's vgg16.pth. After the run `workdir/model` holds generator,
discriminator, encoder and VGG: `jgan invert workdir/model IMAGES --method idinvert
--perceptual vgg16.pth`.

`testbed` is the encoder jgan ships with its testbed model (`jgan/assets`):

    jgan train --config configs/idinvert_encoder.py:testbed --workdir runs/testbed-encoder \
        --config.model=runs/testbed/model

`tiny` trains a 16x16 encoder for a random tiny StyleGAN on procedural blobs in about a minute
on a CPU, with the perceptual term off (perceptual_weight 0: no VGG16 file needed).
"""

import ml_collections

from jgan.configs.common import tfds_data

FFHQ_IMAGES = 14_000_000


def get_config(arg=None):
    """The FFHQ-256 config; `arg='tiny'` the 16x16 CPU variant."""
    config = ml_collections.ConfigDict()
    config.trainer = "idinvert_encoder"
    config.seed = 0
    config.batch_size = 128
    config.total_steps = FFHQ_IMAGES // config.batch_size

    config.model = ml_collections.config_dict.placeholder(str)
    config.perceptual = ml_collections.config_dict.placeholder(str)
    config.arch = "stylegan"
    config.generator = None  # constructor arguments of a generator to build instead of `model`
    config.discriminator = ml_collections.ConfigDict(dict(resolution=256))
    config.encoder = ml_collections.ConfigDict(
        dict(encoder_channels_base=64, encoder_channels_max=1024, use_wscale=False, use_bn=True)
    )
    config.loss = ml_collections.ConfigDict(
        dict(pixel_weight=1.0, perceptual_weight=5e-5, adversarial_weight=0.08, r1_gamma=10.0)
    )
    config.optimizer = ml_collections.ConfigDict(
        dict(
            learning_rate=1e-4,
            betas=(0.9, 0.99),
            eps=1e-8,
            lr_decay_rate=0.8,
            lr_decay_steps=config.total_steps // 8,
        )
    )

    config.data = tfds_data("ffhq256")

    config.log_every = 100
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3

    if arg == "tiny":
        tiny(config, resolution=16)
    elif arg == "testbed":
        testbed(config)
    elif arg:
        raise ValueError(
            f"unknown variant {arg!r} of configs/idinvert_encoder.py; known: 'tiny', 'testbed'"
        )
    return config


def testbed(config):
    """The encoder jgan ships for its testbed StyleGAN2 (`config.model`, by default
    runs/testbed/model): 32 px testbed images, a 32-64-channel encoder trained by the pixel
    loss through the frozen generator alone (no perceptual term: no VGG16 ships with jgan; no
    adversarial term: it would triple the cost of a step on a CPU), 1,500 steps of 16 at 1e-3
    with the original's decay schedule."""
    config.model = "runs/testbed/model"
    config.arch = "stylegan2"
    config.batch_size = 16
    config.total_steps = 1500
    config.discriminator = ml_collections.ConfigDict(dict(resolution=32))
    config.encoder.update(encoder_channels_base=32, encoder_channels_max=64)
    config.loss.update(perceptual_weight=0.0, adversarial_weight=0.0)
    config.optimizer.update(learning_rate=1e-3, lr_decay_steps=config.total_steps // 8)
    config.data.update(source="testbed", name="", resolution=32, size=100_000, mirror=False)
    config.log_every = 50
    config.checkpoint_every = 500


def tiny(config, resolution):
    """Turns `config` into a CPU-sized run: a random tiny StyleGAN at `resolution`, blobs, no
    perceptual term, a short schedule at a higher learning rate (shared with configs/ghfeat.py)."""
    config.batch_size = 8
    config.total_steps = 300
    config.generator = ml_collections.ConfigDict(
        dict(
            resolution=resolution,
            z_space_dim=32,
            w_space_dim=32,
            mapping_layers=2,
            mapping_fmaps=32,
            fmaps_base=16 * resolution,
            fmaps_max=32,
        )
    )
    config.discriminator = ml_collections.ConfigDict(
        dict(resolution=resolution, fmaps_base=16 * resolution, fmaps_max=32)
    )
    config.loss.perceptual_weight = 0.0
    config.optimizer.learning_rate = 3e-3
    config.optimizer.lr_decay_steps = config.total_steps  # 0.8 over the run
    config.data.update(source="blobs", name="", resolution=resolution, size=1024)
    config.log_every = 10
    config.checkpoint_every = 100
