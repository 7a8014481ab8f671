"""Training: train states, one pure jitted step per trainer, and the shared host loop.

From Python, `train(get_config("tiny"), "runs/tiny")` with `get_config` from
`jgan.configs.stylegan2` runs what `jgan train --config configs/stylegan2.py:tiny` runs.
"""

from jgan.training.distance import sliced_wasserstein
from jgan.training.gan import StyleGAN2Trainer
from jgan.training.loop import make_trainer, train
from jgan.training.state import GANState

__all__ = ["GANState", "StyleGAN2Trainer", "make_trainer", "sliced_wasserstein", "train"]
