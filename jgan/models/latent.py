"""Latent-space machinery shared by the style-based generators (StyleGAN, StyleGAN2):
the mapping network, truncation towards `w_avg`, style mixing, and `generate`."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jgan.errors import InputError
from jgan.models.base import Generator
from jgan.nn import Buffer, EqualizedDense, lrelu, pixel_norm

LABEL_EMBEDDINGS = ("concat", "embed")


class Mapping(nnx.Module):
    """z (plus an optional label embedding) -> w: pixel norm, then `num_layers` dense + lrelu.

    genforce's StyleGAN scales weights by sqrt(2) / sqrt(fan_in) (`weight_gain`), its StyleGAN2
    by 1 / sqrt(fan_in) and the activation by sqrt(2) (`act_gain`); both use lr_mul 0.01.
    `label_embedding` 'concat' (genforce): `label @ label_weight` is concatenated to z before
    the norm. 'embed' (NVIDIA): the dense layer `embed` (label_embed_dim outputs, default
    out_dim) maps the label, which is normalised on its own and concatenated to the normalised
    z; z_dim may then be 0 (a label-only mapping, called with z=None).
    """

    def __init__(
        self,
        z_dim,
        hidden_dim,
        out_dim,
        *,
        label_size=0,
        label_embedding="concat",
        label_embed_dim=None,
        num_layers=8,
        lr_mul=0.01,
        weight_gain,
        act_gain,
        use_wscale=True,
        rngs,
    ):
        if label_embedding not in LABEL_EMBEDDINGS:
            raise InputError(
                f"label_embedding must be one of {LABEL_EMBEDDINGS}; got {label_embedding!r}"
            )
        self.z_dim, self.label_size, self.num_layers = z_dim, label_size, num_layers
        self.embeds = bool(label_size) and label_embedding == "embed"
        self.act_gain = float(act_gain)
        embed_dim = out_dim if label_embed_dim is None else label_embed_dim
        first_dim = z_dim + (embed_dim if self.embeds else z_dim if label_size else 0)
        for i in range(num_layers):
            in_dim = first_dim if i == 0 else hidden_dim
            dense = EqualizedDense(
                in_dim,
                out_dim if i == num_layers - 1 else hidden_dim,
                gain=weight_gain,
                lr_mul=lr_mul,
                use_wscale=use_wscale,
                rngs=rngs,
            )
            setattr(self, f"dense{i}", dense)
        if self.embeds:
            self.embed = EqualizedDense(
                label_size, embed_dim, gain=1.0, use_wscale=use_wscale, rngs=rngs
            )
        elif label_size:
            self.label_weight = nnx.Param(rngs.params.normal((label_size, z_dim)))

    def __call__(self, z, label=None):
        if self.z_dim and (z is None or z.ndim != 2 or z.shape[1] != self.z_dim):
            got = None if z is None else tuple(z.shape)
            raise InputError(f"z codes must have shape (N, {self.z_dim}); got {got}")
        if self.label_size:
            batch = label.shape[0] if z is None and label is not None else z.shape[0]
            if label is None or label.shape != (batch, self.label_size):
                got = None if label is None else tuple(label.shape)
                raise InputError(
                    f"this conditional model needs label= of shape (N, {self.label_size}); "
                    f"got {got}"
                )
        elif label is not None:
            raise InputError("this model is unconditional (label_size 0); do not pass label=")
        if self.embeds:
            w = pixel_norm(self.embed(label))
            w = jnp.concatenate([pixel_norm(z), w], axis=1) if self.z_dim else w
        else:
            if self.label_size:
                z = jnp.concatenate([z, label @ self.label_weight[...]], axis=1)
            w = pixel_norm(z)
        for i in range(self.num_layers):
            w = lrelu(getattr(self, f"dense{i}")(w), gain=self.act_gain)
        return w


class Truncation(nnx.Module):
    """Broadcasts w to per-layer codes wp and truncates them towards the average `w_avg`.

    `has_w_avg=False` marks a model whose file stores no average (rosinality checkpoints):
    truncating it is an error until `set_w_avg` gives it one.
    """

    def __init__(self, w_dim, num_layers, repeat_w=True, has_w_avg=True):
        self.w_dim, self.num_layers, self.repeat_w = w_dim, num_layers, repeat_w
        self.has_w_avg = has_w_avg
        self.w_avg = Buffer(jnp.zeros(w_dim if repeat_w else w_dim * num_layers))

    def broadcast(self, w):
        """(N, w_dim) repeated to every layer, or a per-layer (N, L * w_dim) code reshaped."""
        if self.repeat_w:
            return jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_layers, self.w_dim))
        return w.reshape(w.shape[0], self.num_layers, self.w_dim)

    def __call__(self, wp, psi, layers=None):
        """w_avg + (wp - w_avg) * psi on the first `layers` layers (all when None).

        `psi` and `layers` may be traced values, so changing them does not recompile.
        """
        if not self.has_w_avg:
            raise InputError(
                "this generator's file stores no w_avg, so it cannot truncate yet: estimate one "
                "with generator = jgan.models.latent.set_w_avg(generator, "
                "jgan.models.latent.estimate_w_avg(generator, jax.random.key(0), num=10000)), "
                "or pass your own average (e.g. a checkpoint's latent_avg) to set_w_avg"
            )
        w_avg = self.w_avg[...].reshape(1, -1, self.w_dim).astype(wp.dtype)
        layers = self.num_layers if layers is None else layers
        coefs = jnp.where(jnp.arange(self.num_layers) < layers, psi, 1.0).astype(wp.dtype)
        return w_avg + (wp - w_avg) * coefs[None, :, None]


def estimate_w_avg(generator, key, num=10000):
    """The mean of w over `num` codes z ~ N(0, I) mapped by `generator` (shape (w_dim,)).

    The average a truncation needs when the file has none, as rosinality's `mean_latent`.
    """
    if not (isinstance(num, int) and num > 0):
        raise InputError(f"num must be a positive integer; got {num!r}")
    graphdef, state = nnx.split(generator.mapping)
    z = jax.random.normal(key, (num, generator.mapping.z_dim))
    w = jax.jit(lambda state, z: nnx.merge(graphdef, state)(z))(state, z)
    return jnp.mean(w, axis=0)


def set_w_avg(generator, w_avg):
    """`generator` with truncation average `w_avg` (shape (w_dim,)), which it may then use."""
    expected = generator.truncation.w_avg.shape
    w_avg = jnp.asarray(w_avg, jnp.float32).reshape(-1)
    if w_avg.shape != expected or not bool(jnp.all(jnp.isfinite(w_avg))):
        raise InputError(f"w_avg must hold {expected[0]} finite values; got shape {w_avg.shape}")
    generator.truncation.w_avg[...] = w_avg
    generator.truncation.has_w_avg = True
    if "has_w_avg" in generator.config:
        generator._remember_config(**{**generator.config, "has_w_avg": True})
    return generator


def mix_styles(wp, wp_other, layers):
    """Takes the codes of `layers` (indices, or a boolean mask over layers) from `wp_other`."""
    mask = np.zeros(wp.shape[1], bool)
    mask[np.asarray(layers)] = True
    return jnp.where(jnp.asarray(mask)[None, :, None], wp_other, wp)


class StyleGenerator(Generator):
    """Mapping + truncation + synthesis; subclasses build `mapping`, `truncation`, `synthesis`.

    `synthesis(wp, noise_mode=..., key=...)` must return the NHWC image.
    """

    latent_spaces = ("z", "w", "wp")

    @property
    def z_space_dim(self):
        """Dimension of the Z codes (PGGAN keeps the same name as an attribute)."""
        return self.mapping.z_dim

    @property
    def w_space_dim(self):
        return self.truncation.w_dim

    @property
    def num_layers(self):
        return self.truncation.num_layers

    def generate(
        self,
        codes,
        *,
        space="z",
        label=None,
        trunc_psi=None,
        trunc_layers=None,
        noise_mode="const",
        key=None,
    ):
        """Codes in `space` -> {'w', 'wp', 'image'}; truncation applies to Z and W codes only."""
        if space not in self.latent_spaces:
            raise InputError(f"space must be one of {self.latent_spaces}; got {space!r}")
        if space == "z":
            w = self.mapping(codes, label)
        elif space == "w":
            w = codes
            dim = self.w_space_dim * (1 if self.truncation.repeat_w else self.num_layers)
            if w.ndim != 2 or w.shape[1] != dim:
                raise InputError(f"W codes must have shape (N, {dim}); got {tuple(w.shape)}")
        if space in ("z", "w"):
            wp = self.truncation.broadcast(w)
            if trunc_psi is not None:
                wp = self.truncation(wp, trunc_psi, trunc_layers)
        else:
            wp = codes
            shape = (self.num_layers, self.w_space_dim)
            if wp.ndim != 3 or wp.shape[1:] != shape:
                raise InputError(
                    f"W+ codes must have shape (N, {shape[0]}, {shape[1]}); got {tuple(wp.shape)}"
                )
            w = None
        image = self.synthesis(wp, noise_mode=noise_mode, key=key)
        out = {"wp": wp, "image": image}
        if w is not None:
            out["w"] = w
        return out
