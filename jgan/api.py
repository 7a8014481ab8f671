"""Generating and scoring images with any jgan model: jitted once per shape, data-parallel.

Modules cross into `jax.jit` as (graph definition, state): the graph definition is static,
the state and the inputs are traced, so repeated calls with new codes, truncation values or
keys reuse one compiled function.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jgan import parallel
from jgan.errors import InputError
from jgan.nn import NOISE_MODES


@functools.partial(jax.jit, static_argnames=("graphdef", "space", "truncate", "noise_mode"))
def _generate(graphdef, state, codes, label, psi, layers, key, *, space, truncate, noise_mode):
    generator = nnx.merge(graphdef, state)
    return generator.generate(
        codes,
        space=space,
        label=label,
        trunc_psi=psi if truncate else None,
        trunc_layers=layers,
        noise_mode=noise_mode,
        key=key,
    )


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _discriminate(graphdef, state, images, label):
    return nnx.merge(graphdef, state)(images, label=label)


def placed(module):
    """(graph definition, state) of `module` with its state replicated on every device.

    The module keeps the placed arrays, so later calls find them in place instead of copying
    the parameters to every device again.
    """
    graphdef, state = nnx.split(module)
    state = parallel.replicate(state)
    nnx.update(module, state)
    return graphdef, state


def as_input_array(x, name):
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(np.float32)
    if isinstance(x, np.ndarray) and not np.all(np.isfinite(x)):
        raise InputError(f"{name} contains NaN or inf values")
    return x


def synthesize(
    generator,
    codes,
    *,
    space="z",
    label=None,
    trunc_psi=None,
    trunc_layers=None,
    noise_mode="const",
    key=None,
):
    """Images (and 'w', 'wp' where the model has them) from latent codes.

    `space` is 'z', 'w' (broadcast to every layer) or 'wp' (per-layer codes, used as given);
    `trunc_psi` truncates Z and W codes towards `w_avg` on the first `trunc_layers` layers
    (every layer when None). `noise_mode` is 'const' (the stored noise), 'random' (needs
    `key`) or 'none'. Returns a dict of arrays; 'image' is NHWC in the model's native range.
    The batch is sharded over all devices.
    """
    if space not in generator.latent_spaces:
        raise InputError(
            f"{type(generator).__name__} takes codes in the latent spaces "
            f"{generator.latent_spaces}; got space={space!r}"
        )
    if noise_mode not in NOISE_MODES:
        raise InputError(f"noise_mode must be one of {NOISE_MODES}; got {noise_mode!r}")
    if noise_mode == "random" and key is None:
        raise InputError("noise_mode='random' needs key=jax.random.key(seed)")
    if trunc_psi is not None and "w" not in generator.latent_spaces:
        raise InputError(f"{type(generator).__name__} has no W space to truncate in")
    codes = as_input_array(codes, "codes")
    graphdef, state = placed(generator)
    layers = -1 if trunc_layers is None else trunc_layers
    num_layers = getattr(generator, "num_layers", 0)
    return _generate(
        graphdef,
        state,
        parallel.shard_batch(codes),
        None if label is None else parallel.shard_batch(as_input_array(label, "label")),
        jnp.float32(1.0 if trunc_psi is None else trunc_psi),
        jnp.int32(num_layers if layers < 0 else layers),
        key,
        space=space,
        truncate=trunc_psi is not None,
        noise_mode=noise_mode,
    )


def discriminate(discriminator, images, label=None):
    """Discriminator logits of NHWC `images` (in the generator's native range).

    Minibatch-stddev layers mix the samples of the batch, as in the originals, so scores
    depend on the whole batch passed in one call.
    """
    images = as_input_array(images, "images")
    graphdef, state = placed(discriminator)
    return _discriminate(
        graphdef,
        state,
        parallel.shard_batch(images),
        None if label is None else parallel.shard_batch(as_input_array(label, "label")),
    )
