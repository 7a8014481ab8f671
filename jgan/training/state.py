"""Pieces of a GAN train state: module splitting, the generator EMA, lazily regularised Adam.

The train state itself is a plain pytree (a `flax.struct` dataclass of dicts of arrays), so it
crosses `jax.jit`, optax and orbax as it is; modules are rebuilt from it inside the jitted step
with `nnx.merge(graphdef, params, buffers)`.
"""

import flax
import jax
import optax
from flax import nnx


@flax.struct.dataclass
class GANState:
    """Everything a GAN training step reads and writes.

    `generator` and `discriminator` hold the trainable `nnx.Param`s only (what the optimizers
    see); `*_buffers` hold the rest (w_avg, fixed noise). `generator_ema` is the running
    average of the generator's parameters; it shares the generator's buffers.
    """

    step: jax.Array
    generator: dict
    generator_buffers: dict
    discriminator: dict
    discriminator_buffers: dict
    generator_ema: dict
    g_opt: optax.OptState
    d_opt: optax.OptState
    pl_mean: jax.Array


def split_module(module):
    """(graphdef, trainable params, everything else) of `module`, the states as pure dicts."""
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def ema_beta(batch_size, half_life_img):
    """Per-step decay of an EMA whose half-life is `half_life_img` images (genforce's
    `g_smooth_img`, NVIDIA's G_smoothing_kimg * 1000): 0.5 ** (batch / half-life)."""
    return 0.5 ** (batch_size / half_life_img) if half_life_img > 0 else 0.0


def ema_update(ema, params, beta):
    """params + (ema - params) * beta, leaf by leaf."""
    return jax.tree.map(lambda e, p: p + (e - p) * beta, ema, params)


def lazy_adam(learning_rate, b1, b2, eps, reg_interval):
    """Adam for a network whose regulariser runs as its own step every `reg_interval` steps
    (None: no regulariser). As in NVIDIA's StyleGAN2, the learning rate and betas are corrected
    by c = interval / (interval + 1) (lr * c, beta ** c) so the extra steps keep the effective
    optimisation the same."""
    if reg_interval:
        ratio = reg_interval / (reg_interval + 1)
        learning_rate, b1, b2 = learning_rate * ratio, b1**ratio, b2**ratio
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)
