"""PGGAN on CelebA-HQ at 1024x1024 (the paper's `config.py`, preset v2 on 8 GPUs), and a tiny
CPU variant.

    jgan train --config configs/pggan.py --workdir runs/pggan-celebahq
    jgan train --config configs/pggan.py:tiny --workdir runs/tiny --config.total_steps=50

genforce ships no PGGAN training config, so this one follows tkarras/progressive_growing_of_gans:
12M images; training starts at 4x4 and every resolution is shown for 600k images, then faded
in over 600k (lod re-evaluated every 4 steps, Adam moments reset at every change of level);
Adam lr 0.001 with betas (0, 0.99), eps 1e-8, raised per resolution (0.0015 at 128, 0.002 at
256, 0.003 at 512 and 1024: `lr_schedule` scales); WGAN-GP (lambda 10, target 1) with the drift
term 0.001; G EMA decay 0.999 per step; mirror augmentation; the paper's networks (G_paper,
D_paper: fused resampling convs, minibatch-stddev group 4, channels min(16384 / res, 512)).
Batch 32 throughout: the preset's batch at 128 px and up (jgan runs one batch size; the preset's
larger batches at 4-64 px, 512 ... 32, are not reproduced). Data: a tfds array_record dataset
'celebahq1024' prepared with jgan.data.write_image_folder from CelebA-HQ PNGs, or
`--config.data.source=folder --config.data.path=DIR`.
"""

import ml_collections

from jgan.configs.common import tfds_data

CELEBAHQ_IMAGES = 12_000_000


def get_config(arg=None):
    """The CelebA-HQ 1024 config; `arg='tiny'` gives a 16x16 model on procedural blobs whose lod
    goes from 2 to 0 (two fade-ins) in 200 of its 300 steps."""
    config = ml_collections.ConfigDict()
    config.trainer = "pggan"
    config.seed = 0
    config.batch_size = 32
    config.total_steps = CELEBAHQ_IMAGES // config.batch_size

    config.generator = ml_collections.ConfigDict(
        dict(resolution=1024, z_space_dim=512, fused_scale=True, fmaps_base=16 << 10, fmaps_max=512)
    )
    config.discriminator = ml_collections.ConfigDict(
        dict(
            resolution=1024,
            fused_scale=True,
            minibatch_std_group_size=4,
            fmaps_base=16 << 10,
            fmaps_max=512,
        )
    )
    config.schedule = ml_collections.ConfigDict(
        dict(
            init_res=4,
            lod_training_img=600_000,
            lod_transition_img=600_000,
            minibatch_repeats=4,
            reset_optimizer=True,
            lr_schedule=dict(res128=1.5, res256=2.0, res512=3.0, res1024=3.0),
        )
    )
    config.loss = ml_collections.ConfigDict(
        dict(gp_lambda=10.0, gp_target=1.0, drift_epsilon=0.001)
    )
    config.optimizer = ml_collections.ConfigDict(
        dict(g_lr=0.001, d_lr=0.001, betas=(0.0, 0.99), eps=1e-8)
    )
    config.ema_decay = 0.999

    config.data = tfds_data("celebahq1024")

    config.log_every = 100
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3

    if arg == "tiny":
        config.batch_size = 8
        config.total_steps = 300
        small = dict(resolution=16, fmaps_base=256, fmaps_max=32)
        config.generator.update(small, z_space_dim=32)
        config.discriminator.update(small)
        config.schedule.update(lod_training_img=400, lod_transition_img=400)
        config.ema_decay = 0.99
        config.data.update(source="blobs", name="", resolution=16, size=1024)
        config.log_every = 10
        config.checkpoint_every = 100
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of configs/pggan.py; known: 'tiny'")
    return config
