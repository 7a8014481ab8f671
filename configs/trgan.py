"""TrGAN on 256x256 outdoor scenes (LSUN Church), and a tiny CPU variant.

    jgan train --config configs/trgan.py --workdir runs/church256
    jgan train --config configs/trgan.py:tiny --workdir runs/trgan-tiny
    jgan transform runs/trgan-tiny/model --source A.png --target B.png --outdir edits

The paper's training settings are not published (PAPERS.md section 1.4): this is StyleGAN2
config F (`configs/stylegan2.py`: batch 32, Adam 0.002 (0, 0.99), R1 10 every 16 steps, path
length 2 every 4, mixing 0.9, 25M images) at the resolution of the paper's demos (256 px
churches and landscapes), plus the transformation space: t_dim 32, projection weight 1 on both
networks, the pair term off, and no minibatch-stddev so that P projects one image on its own.
The data is a tfds array_record dataset 'lsun_church256' (prepare it once with
jgan.data.write_image_folder from a folder of 256x256 centre crops of LSUN church_outdoor);
any other scene set works the same way: `--config.data.name=...` or
`--config.data.source=folder --config.data.path=DIR`.
"""

from jgan.configs.stylegan2 import get_config as stylegan2_config


def get_config(arg=None):
    """The LSUN-Church-256 config; `arg='tiny'` gives a 16x16 model on procedural blobs whose
    projection head learns t in a few hundred steps on a CPU."""
    if arg not in (None, "tiny"):
        raise ValueError(f"unknown variant {arg!r} of configs/trgan.py; known: 'tiny'")
    config = stylegan2_config(arg)
    config.trainer = "trgan"
    t_dim = 4 if arg == "tiny" else 32
    config.generator.t_dim = t_dim
    config.discriminator.t_dim = t_dim
    config.discriminator.minibatch_std_group_size = 1
    config.loss.proj_weight = 1.0
    config.loss.pair_weight = 0.0
    if arg is None:
        config.data.update(name="lsun_church256", mirror=True)
    return config
