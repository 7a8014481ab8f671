"""The StyleGAN2 jgan ships: 32 px on the procedural testbed (`jgan.data.testbed`), sized to
train on a 2-core CPU.

    jgan train --config configs/testbed_stylegan2.py --workdir runs/testbed

Channels 64 at every resolution and a 128-d W keep a step cheap; the rest follows NVIDIA's
small-resolution settings (stylegan2-ada `auto` config: lr 0.0025, EMA half-life of 10 steps'
worth of images per 32, R1 gamma 0.0002 * res^2 / batch rounded up) with style mixing kept
(HiGAN's layer-wise semantics need it) and no path-length regulariser (it costs a
second generator pass for little at 32 px). No mirroring: left/right is a labeled factor.
"""

from jgan.configs import stylegan2


def get_config(arg=None):
    """The shipped model's config; `arg='tiny'` is a few-step smoke variant."""
    config = stylegan2.get_config()
    config.batch_size = 16
    config.total_steps = 6_000
    small = dict(resolution=32, fmaps_base=2048, fmaps_max=64)
    config.generator.update(small, z_space_dim=128, w_space_dim=128, mapping_layers=4)
    config.generator.mapping_fmaps = 128
    config.discriminator.update(small)
    config.loss.update(r1_gamma=0.05, pl_weight=0.0)
    config.optimizer.update(g_lr=0.0025, d_lr=0.0025)
    config.ema_half_life_img = 5_000.0
    config.data.update(
        source="testbed", name="", resolution=32, size=100_000, mirror=False, split="train"
    )
    config.log_every = 50
    config.checkpoint_every = 500
    config.sample_every = 1000
    if arg == "tiny":
        config.total_steps = 4
        config.log_every = config.checkpoint_every = config.sample_every = 2
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of configs/testbed_stylegan2.py; known: 'tiny'")
    return config
