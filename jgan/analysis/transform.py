"""TrGAN editing: a pair of images defines a transformation, which moves other images.

    delta = transformation(D, source, target)             # P(target) - P(source)
    edits = transform_samples(G, z, t, delta, alphas)     # G(z, t + alpha * delta)
    edits = transform_images(G, images, delta, alphas)    # real images, through W+ inversion

A real image is inverted in W+ (`jgan.invert`, space 'wp'). Because t shifts the per-layer
codes linearly (wp = trunc(w) + A t, `jgan.models.trgan`), the inverted code holds the image's
content and its t together, and G(wp*, alpha * delta) = G(z, t + alpha * delta) for whatever
(z, t) the image came from: the joint inversion needs no estimate of t, and fixing t to
P(image) first would change nothing but the starting point. Inverting in Z or W, where t would
have to be fixed, is not offered.

Two reports check the learned space on fresh samples: `projection_recovery` (does P read back
the t a sample was made with?) and `linearity` (does P move by alpha * delta when t does?).
Functions are pure: modules and arrays in, arrays out, seeded by the keys given.
"""

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jgan import parallel
from jgan.api import as_input_array, discriminate, placed
from jgan.errors import InputError
from jgan.inversion import invert
from jgan.models.trgan import TrGANDiscriminator, TrGANGenerator

__all__ = [
    "linearity",
    "project",
    "projection_recovery",
    "synthesize_t",
    "transform_images",
    "transform_samples",
    "transformation",
]


def _check_pair(generator=None, discriminator=None):
    """InputError unless the modules are a TrGAN generator / discriminator with one t_dim."""
    roles = (
        (generator, TrGANGenerator, "generator"),
        (discriminator, TrGANDiscriminator, "discriminator"),
    )
    for module, cls, role in roles:
        if module is not None and not isinstance(module, cls):
            raise InputError(
                f"a TrGAN {role} is needed (a model trained with configs/trgan.py); got "
                f"{type(module).__name__}"
            )
    if generator is not None and discriminator is not None:
        if generator.t_dim != discriminator.t_dim:
            raise InputError(
                f"generator and discriminator disagree on t_dim ({generator.t_dim} vs "
                f"{discriminator.t_dim}); load both from one model"
            )


def _check_alphas(alphas):
    alphas = np.asarray(alphas, np.float32).reshape(-1)
    if not alphas.size or not np.all(np.isfinite(alphas)):
        raise InputError(f"alphas must be one or more finite numbers; got {alphas.tolist()}")
    return alphas


def _check_count(num, name="num"):
    if isinstance(num, bool) or not isinstance(num, numbers.Integral) or num < 2:
        raise InputError(f"{name} must be an integer >= 2; got {num!r}")


def project(discriminator, images):
    """P(images): the points (N, t_dim) of NHWC `images` (range [-1, 1]) in the
    transformation space."""
    _check_pair(discriminator=discriminator)
    return discriminate(discriminator, images)[:, 1:]


def transformation(discriminator, source, target):
    """The transformation vector delta (t_dim,) = P(target) - P(source).

    `source` and `target` are NHWC image batches; with several images each, their mean
    projections are used (a transformation defined by two sets of examples).
    """
    source, target = (
        as_input_array(x, name) for x, name in ((source, "source"), (target, "target"))
    )
    return jnp.mean(project(discriminator, target), 0) - jnp.mean(project(discriminator, source), 0)


@functools.partial(jax.jit, static_argnames=("graphdef", "space", "truncate", "noise_mode"))
def _generate(graphdef, state, codes, t, psi, layers, key, *, space, truncate, noise_mode):
    return nnx.merge(graphdef, state).generate(
        codes,
        space=space,
        t=t,
        trunc_psi=psi if truncate else None,
        trunc_layers=layers,
        noise_mode=noise_mode,
        key=key,
    )


def synthesize_t(
    generator,
    codes,
    t,
    *,
    space="z",
    trunc_psi=None,
    trunc_layers=None,
    noise_mode="const",
    key=None,
):
    """G(codes, t) as `jgan.synthesize` (same arguments), with transformation codes t (N, t_dim):
    {'w' (Z, W codes), 'wp', 'image'}, jitted once per shape, the batch sharded."""
    _check_pair(generator)
    codes, t = as_input_array(codes, "codes"), as_input_array(t, "t")
    if t.ndim != 2 or t.shape != (codes.shape[0], generator.t_dim):
        raise InputError(
            f"t must have shape ({codes.shape[0]}, {generator.t_dim}) (one code per latent "
            f"code); got {tuple(t.shape)}"
        )
    graphdef, state = placed(generator)
    return _generate(
        graphdef,
        state,
        parallel.shard_batch(codes),
        parallel.shard_batch(t),
        jnp.float32(1.0 if trunc_psi is None else trunc_psi),
        jnp.int32(generator.num_layers if trunc_layers is None else trunc_layers),
        key,
        space=space,
        truncate=trunc_psi is not None,
        noise_mode=noise_mode,
    )


def _edited(generator, codes, t, delta, alphas, space, **synthesis):
    """Images (N, A, H, W, C) of G(codes, t + alpha * delta) for each alpha."""
    alphas = _check_alphas(alphas)
    delta = as_input_array(delta, "delta").reshape(-1)
    if delta.shape != (generator.t_dim,):
        raise InputError(f"delta must hold {generator.t_dim} values; got {delta.shape[0]}")
    n, a = codes.shape[0], alphas.size
    moved = t[:, None] + jnp.asarray(alphas)[None, :, None] * delta[None, None]
    repeated = jnp.repeat(codes, a, axis=0)
    images = synthesize_t(generator, repeated, moved.reshape(n * a, -1), space=space, **synthesis)
    return images["image"].reshape(n, a, *images["image"].shape[1:])


def transform_samples(generator, codes, t, delta, alphas, *, space="z", **synthesis):
    """Generated samples transformed: images (N, A, H, W, C) of G(codes, t + alpha * delta)
    for each of the A `alphas` (alpha 0 is the sample itself). `codes` in `space` with their
    transformation codes `t` (N, t_dim); `synthesis` as `synthesize_t` (trunc_psi, ...)."""
    _check_pair(generator)
    codes, t = as_input_array(codes, "codes"), as_input_array(t, "t")
    return _edited(generator, jnp.asarray(codes), jnp.asarray(t), delta, alphas, space, **synthesis)


def transform_images(generator, images, delta, alphas, **invert_options):
    """Real images transformed through W+ inversion: {'images' (N, A, H, W, C) of
    G(wp*, alpha * delta), 'reconstructions' (N, H, W, C) = G(wp*, 0), 'codes' wp*, 'losses'}.

    `invert_options` go to `jgan.invert` (method, steps, learning_rate, perceptual, ...);
    the space is W+ (see the module docstring).
    """
    _check_pair(generator)
    if invert_options.get("space", "wp") != "wp":
        raise InputError(
            "TrGAN edits invert real images in W+ (space='wp'), whose codes absorb the image's "
            f"own t; got space={invert_options['space']!r}"
        )
    inverted = invert(generator, images, **{**invert_options, "space": "wp"})
    codes = inverted["codes"]
    t = jnp.zeros((codes.shape[0], generator.t_dim), codes.dtype)
    return {
        "images": _edited(generator, codes, t, delta, alphas, "wp"),
        "reconstructions": inverted["images"],
        "codes": codes,
        "losses": inverted["losses"],
    }


def _samples(generator, key, num, trunc_psi):
    """Held-out (z, t) ~ N(0, I) of `key` and their images G(z, t)."""
    _check_count(num)
    z_key, t_key = jax.random.split(key)
    z = jax.random.normal(z_key, (num, generator.mapping.z_dim))
    t = jax.random.normal(t_key, (num, generator.t_dim))
    return z, t, synthesize_t(generator, z, t, trunc_psi=trunc_psi)["image"]


def projection_recovery(generator, discriminator, key, *, num=256, trunc_psi=None):
    """How well P reads back t on `num` fresh samples G(z, t), z, t ~ N(0, I):
    'mse' mean |P(G(z, t)) - t|^2 per value, 'shuffled_mse' the same against the t of other
    samples (chance: what a P blind to t scores), 'r2' 1 - mse / var(t), 'correlation' the
    mean over dimensions of Pearson's r, and 'per_dimension' r of each dimension."""
    _check_pair(generator, discriminator)
    _, t, images = _samples(generator, key, num, trunc_psi)
    projected = np.asarray(project(discriminator, images), np.float64)
    t = np.asarray(t, np.float64)
    shuffled = np.roll(t, 1, axis=0)
    mse = float(np.mean((projected - t) ** 2))
    centered_p, centered_t = projected - projected.mean(0), t - t.mean(0)
    r = np.sum(centered_p * centered_t, 0) / np.sqrt(
        np.sum(centered_p**2, 0) * np.sum(centered_t**2, 0) + 1e-30
    )
    return {
        "mse": mse,
        "shuffled_mse": float(np.mean((projected - shuffled) ** 2)),
        "r2": 1.0 - mse / float(np.mean(centered_t**2)),
        "correlation": float(np.mean(r)),
        "per_dimension": r.astype(np.float32),
    }


def linearity(generator, discriminator, key, delta, alphas, *, num=64, trunc_psi=None):
    """How linearly P follows t along `delta`, on `num` fresh samples: the measured moves
    m = P(G(z, t + alpha * delta)) - P(G(z, t)) against the asked ones alpha * delta, over
    all samples and the non-zero `alphas`: 'cosine' (mean cosine of m and alpha * delta),
    'slope' (least-squares gain of m on alpha * delta; 1 = P moves as far as t did) and
    'relative_error' (sum |m - alpha delta|^2 / sum |alpha delta|^2: 0 exact, 1 no better than
    not moving)."""
    _check_pair(generator, discriminator)
    alphas = _check_alphas(alphas)
    alphas = alphas[alphas != 0]
    if not alphas.size:
        raise InputError("linearity needs at least one non-zero alpha")
    z, t, images = _samples(generator, key, num, trunc_psi)
    moved = transform_samples(generator, z, t, delta, alphas, trunc_psi=trunc_psi)
    before = np.asarray(project(discriminator, images), np.float64)
    after = np.asarray(project(discriminator, moved.reshape(-1, *moved.shape[2:])), np.float64)
    measured = after.reshape(num, alphas.size, -1) - before[:, None]
    delta = np.asarray(delta, np.float64).reshape(1, 1, -1)
    asked = np.broadcast_to(alphas[None, :, None] * delta, measured.shape)
    norms = np.linalg.norm(measured, axis=-1) * np.linalg.norm(asked, axis=-1)
    cosine = np.sum(measured * asked, -1) / np.maximum(norms, 1e-30)
    scale = max(float(np.sum(asked**2)), 1e-30)
    return {
        "cosine": float(np.mean(cosine)),
        "slope": float(np.sum(measured * asked)) / scale,
        "relative_error": float(np.sum((measured - asked) ** 2)) / scale,
    }
