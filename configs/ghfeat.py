"""GH-Feat's hierarchical encoder on FFHQ at 256x256, and a tiny CPU variant.

    jgan train --config configs/ghfeat.py --workdir runs/ghfeat \
        --config.model=stylegan_ffhq256.pth --config.perceptual=vgg16.pth
    jgan train --config configs/ghfeat.py:tiny --workdir runs/tiny_ghfeat

The default follows ghfeat's `train_ghfeat.py` at 256 (`training/loss_encoder.py`,
`training_loop_ghfeat.py`): ResNet-50 backbone, FPN and SAM at 512, heads 4/4/6 predicting the
StyleGAN generator's 14 per-layer styles (Y space, (N, 14, 1024)); global batch 96 (12 per GPU
x 8), 14,000k images (145,833 steps), loss MSE + 5e-5 * VGG16 conv4_3 (caffe) + 0.08 *
softplus(-D), the GAN's pretrained discriminator fine-tuned with R1 gamma 10, Adam (0.9, 0.99,
1e-8) at 1e-4 decayed by 0.8 every eighth of the run (a quarter in TF's global steps, which
advance twice per iteration), mirror augmentation. `model` is the
StyleGAN whose generator stays frozen (genforce's stylegan_ffhq256.pth or any file `jgan.load`
reads; a generator without styles, e.g. StyleGAN2, gets W+ codes instead); `perceptual` is
IDInvert's vgg16.pth. `workdir/model` then holds generator, discriminator, encoder and VGG;
`jgan.encoding.extract_features` gives the per-layer features.

`tiny` trains a 16x16 encoder (ResNet-10 of width 8, FPN 16; at 16x16 res4..res6 are 1x1
maps) for a random tiny StyleGAN on blobs in about a minute on a CPU, with the perceptual term off.
"""

import ml_collections

from jgan.configs import idinvert_encoder

FFHQ_IMAGES = 14_000_000


def get_config(arg=None):
    """The FFHQ-256 config; `arg='tiny'` the 16x16 CPU variant."""
    config = idinvert_encoder.get_config()
    config.trainer = "ghfeat"
    config.batch_size = 96
    config.total_steps = FFHQ_IMAGES // config.batch_size
    config.optimizer.lr_decay_steps = config.total_steps // 8
    config.encoder = ml_collections.ConfigDict(
        dict(depth=50, backbone_width=64, fpn_channels=512, latents_per_head=(4, 4, 6))
    )
    if arg == "tiny":
        idinvert_encoder.tiny(config, resolution=16)
        config.encoder.update(depth=10, backbone_width=8, fpn_channels=16)
        config.encoder.latents_per_head = None
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of configs/ghfeat.py; known: 'tiny'")
    return config
