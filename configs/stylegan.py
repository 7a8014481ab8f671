"""StyleGAN (v1) with progressive growing on FFHQ at 256x256 (genforce's
`configs/stylegan_ffhq256.py`), and a tiny CPU variant.

    jgan train --config configs/stylegan.py --workdir runs/stylegan-ffhq256
    jgan train --config configs/stylegan.py:tiny --workdir runs/tiny --config.total_steps=50

genforce's settings: 25M images; training starts at 8x8 and every resolution is shown for
600k images, then faded in over 600k (`schedule`, lod re-evaluated every 4 steps, Adam moments
reset at every change of level); Adam lr 0.001 with betas (0, 0.99), scaled per resolution by
genforce's default table (1.5 at 128, 2 at 256, 3 at 512 and 1024); logistic loss with R1
gamma 10 at every step; style mixing 0.9; w_avg decay 0.995; G EMA half-life 10k images; mirror
augmentation. genforce trains with 4 images per GPU on 8 GPUs at the high resolutions: batch 32
here, at every resolution (jgan runs one batch size; genforce's larger batches at 4-32 px,
`batch_size_schedule` res4=64 ... res32=8 per GPU, are not reproduced, so the early phases take
more steps for the same images). Data: a tfds array_record dataset 'ffhq256' (see
configs/stylegan2.py) or `--config.data.source=folder --config.data.path=DIR`.
"""

import ml_collections

from jgan.configs.common import tfds_data

FFHQ_IMAGES = 25_000_000


def get_config(arg=None):
    """The FFHQ-256 config; `arg='tiny'` gives a 16x16 model on procedural blobs whose lod goes
    from 2 to 0 (two fade-ins) in 200 of its 300 steps, with lr 0.002."""
    config = ml_collections.ConfigDict()
    config.trainer = "stylegan"
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
            fused_scale="auto",
            fmaps_base=16 << 10,
            fmaps_max=512,
        )
    )
    config.discriminator = ml_collections.ConfigDict(
        dict(
            resolution=256,
            fused_scale="auto",
            minibatch_std_group_size=4,
            minibatch_std_channels=1,
            fmaps_base=16 << 10,
            fmaps_max=512,
        )
    )
    config.schedule = ml_collections.ConfigDict(
        dict(
            init_res=8,
            lod_training_img=600_000,
            lod_transition_img=600_000,
            minibatch_repeats=4,
            reset_optimizer=True,
            lr_schedule=dict(res128=1.5, res256=2.0, res512=3.0, res1024=3.0),
        )
    )
    config.loss = ml_collections.ConfigDict(
        dict(r1_gamma=10.0, style_mixing_prob=0.9, w_moving_decay=0.995)
    )
    config.optimizer = ml_collections.ConfigDict(
        dict(g_lr=0.001, d_lr=0.001, betas=(0.0, 0.99), eps=1e-8)
    )
    config.ema_half_life_img = 10_000.0

    config.data = tfds_data("ffhq256")

    config.log_every = 100
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3

    if arg == "tiny":
        config.batch_size = 8
        config.total_steps = 300
        small = dict(resolution=16, fmaps_base=256, fmaps_max=32)
        config.generator.update(small, z_space_dim=32, w_space_dim=32, mapping_layers=2)
        config.generator.mapping_fmaps = 32
        config.discriminator.update(small)
        config.schedule.update(init_res=4, lod_training_img=400, lod_transition_img=400)
        config.optimizer.update(g_lr=0.002, d_lr=0.002)  # learns in 300 steps (0.001: 2x slower)
        config.ema_half_life_img = 500.0
        config.data.update(source="blobs", name="", resolution=16, size=1024)
        config.log_every = 10
        config.checkpoint_every = 100
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of configs/stylegan.py; known: 'tiny'")
    return config
