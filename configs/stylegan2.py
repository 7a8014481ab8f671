"""StyleGAN2 config F on FFHQ at 256x256, and a tiny CPU variant.

    jgan train --config configs/stylegan2.py --workdir runs/ffhq256
    jgan train --config configs/stylegan2.py:tiny --workdir runs/tiny --config.total_steps=50

The default follows NVIDIA's stylegan2 `run_training.py` (config-f): global batch 32, Adam
lr 0.002 with betas (0, 0.99) for both networks, R1 gamma 10 every 16 steps, path length
weight 2 every 4 steps on half the batch, style mixing 0.9, G EMA half-life 10k images, mirror
augmentation, 25M images (781,250 steps); channels min(32768 / res, 512) as genforce's
StyleGAN2 (config F). The data is a tfds array_record dataset 'ffhq256' under the tfds data_dir
(prepare it once with jgan.data.write_image_folder from a folder of 256x256 FFHQ PNGs) or any
other source: `--config.data.source=folder --config.data.path=DIR`.
"""

import ml_collections

from jgan.configs.common import tfds_data

FFHQ_IMAGES = 25_000_000


def get_config(arg=None):
    """The FFHQ-256 config; `arg='tiny'` gives a 16x16 model on procedural blobs that trains in
    seconds on a CPU."""
    config = ml_collections.ConfigDict()
    config.trainer = "stylegan2"
    config.seed = 0
    config.batch_size = 32
    config.total_steps = FFHQ_IMAGES // config.batch_size

    config.generator = ml_collections.ConfigDict(
        dict(
            resolution=256,
            z_space_dim=512,
            w_space_dim=512,
            mapping_layers=8,
            mapping_fmaps=512,
            mapping_lr_mul=0.01,
            architecture="skip",
            fmaps_base=32 << 10,
            fmaps_max=512,
        )
    )
    config.discriminator = ml_collections.ConfigDict(
        dict(
            resolution=256,
            architecture="resnet",
            minibatch_std_group_size=4,
            minibatch_std_channels=1,
            fmaps_base=32 << 10,
            fmaps_max=512,
        )
    )
    config.loss = ml_collections.ConfigDict(
        dict(
            r1_gamma=10.0,
            r1_interval=16,
            pl_weight=2.0,
            pl_interval=4,
            pl_decay=0.01,
            pl_batch_shrink=2,
            style_mixing_prob=0.9,
            w_moving_decay=0.995,
        )
    )
    config.optimizer = ml_collections.ConfigDict(
        dict(g_lr=0.002, d_lr=0.002, betas=(0.0, 0.99), eps=1e-8)
    )
    config.ema_half_life_img = 10_000.0

    config.data = tfds_data("ffhq256")

    config.log_every = 100
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3
    # Sample grids (workdir/samples, TensorBoard) and FID/KID (jgan/training/monitor.py). FID
    # needs pytorch-fid's pt_inception-2015-12-05-6726825d.pth: turn it on with
    # --config.fid_every=N --config.fid.inception_path=FILE (or $JGAN_INCEPTION).
    config.sample_every = 1000
    config.fid_every = 0
    config.fid = ml_collections.ConfigDict(
        dict(
            inception_path=ml_collections.config_dict.placeholder(str),
            num_images=10_000,
            reference=ml_collections.config_dict.placeholder(str),
            kid_subsets=100,
        )
    )

    if arg == "tiny":
        config.batch_size = 8
        config.total_steps = 300
        small = dict(resolution=16, fmaps_base=256, fmaps_max=32)
        config.generator.update(small, z_space_dim=32, w_space_dim=32, mapping_layers=2)
        config.generator.mapping_fmaps = 32
        config.discriminator.update(small)
        config.ema_half_life_img = 500.0
        config.data.update(source="blobs", name="", resolution=16, size=1024)
        config.log_every = 10
        config.checkpoint_every = 100
        config.sample_every = 100
        config.fid.num_images = 256
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of configs/stylegan2.py; known: 'tiny'")
    return config
