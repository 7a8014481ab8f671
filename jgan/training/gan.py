"""StyleGAN2 training (Karras et al. 2020, config F): one pure step over a `GANState`.

Each step follows NVIDIA's lazily regularised schedule (stylegan2 `training_loop.py`):
  1. G: non-saturating logistic loss softplus(-D(G(z))), one Adam step.
  2. every `pl_interval` steps, G: path-length penalty (|J^T y| - a)^2 * pl_weight * interval
     on a batch shrunk by `pl_batch_shrink`, its own Adam step (same optimizer state).
  3. D: logistic loss softplus(D(G(z))) + softplus(-D(x)), one Adam step; then w_avg is moved
     towards the batch mean of w (decay `w_moving_decay`) and the EMA generator towards G.
  4. every `r1_interval` steps, D: R1 penalty |grad_x D(x)|^2 * gamma / 2 * interval, its own
     Adam step.
Every generator pass samples fresh z, mixes styles with probability `style_mixing_prob` (one
cut-off layer per batch) and draws random noise. Adam uses betas (0, 0.99) corrected for the
lazy steps (`lazy_adam`). The mapping network's smaller learning rate needs no optimizer
setting: its layers store raw weights N(0, 1) / lr_mul and scale them by wscale * lr_mul at run
time, so an Adam step of size lr on the raw weight moves the effective weight by
lr * wscale * lr_mul, exactly as in the originals.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jgan.bundle import Bundle
from jgan.errors import InputError
from jgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from jgan.training.state import GANState, ema_beta, ema_update, lazy_adam, split_module


def _frozen(config):
    """A config mapping -> sorted tuple of items (hashable; lists become tuples)."""
    items = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in items.items()))


def _constrain(x, sharding):
    """Splits `x` over devices along its batch axis when it divides evenly."""
    if sharding is None or x.shape[0] % sharding.mesh.size:
        return x
    return jax.lax.with_sharding_constraint(x, sharding)


def _image_float(images):
    """uint8 images -> float32 in [-1, 1]."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def _adam_step(tx, params, opt_state, grads, lr_scale=None):
    """One optimizer step; `lr_scale` (may be traced) multiplies the learning rate."""
    updates, opt_state = tx.update(grads, opt_state, params)
    if lr_scale is not None:
        updates = jax.tree.map(lambda u: u * lr_scale, updates)
    return optax.apply_updates(params, updates), opt_state


def nonsaturating_loss(fake_logits):
    """The generator's non-saturating logistic loss, mean softplus(-D(G(z)))."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def logistic_loss(real_logits, fake_logits):
    """The discriminator's logistic loss softplus(D(G(z))) + softplus(-D(x)) (batch means),
    and the mean scores as metrics."""
    loss = jnp.mean(jax.nn.softplus(fake_logits)) + jnp.mean(jax.nn.softplus(-real_logits))
    return loss, {"real_score": jnp.mean(real_logits), "fake_score": jnp.mean(fake_logits)}


def style_mixed_pass(generator, key, batch, mixing_prob, sharding=None, mixing_layers=None):
    """A style-based generator's pass as in training: fresh z, style mixing, random noise.

    With probability `mixing_prob` the codes of the layers from a cut-off drawn in
    [1, mixing_layers) on come from a second z (one cut-off per batch); `mixing_layers`
    defaults to all layers (progressive StyleGAN mixes among the layers of the current
    resolution). Returns (images, w before mixing, mixed per-layer codes wp, synthesis of wp).
    """
    z_key, mix_key, cut_key, coin_key, noise_key = jax.random.split(key, 5)
    z_dim = generator.mapping.z_dim
    z = _constrain(jax.random.normal(z_key, (batch, z_dim)), sharding)
    w = generator.mapping(z)
    wp = generator.truncation.broadcast(w)
    if mixing_prob > 0:
        z_mix = _constrain(jax.random.normal(mix_key, (batch, z_dim)), sharding)
        wp_mix = generator.truncation.broadcast(generator.mapping(z_mix))
        layers = generator.num_layers
        upper = layers if mixing_layers is None else mixing_layers
        cutoff = jax.random.randint(cut_key, (), 1, upper)
        cutoff = jnp.where(jax.random.uniform(coin_key) < mixing_prob, cutoff, layers)
        wp = jnp.where(jnp.arange(layers)[None, :, None] < cutoff, wp, wp_mix)

    def synthesize(wp):
        return generator.generate(wp, space="wp", noise_mode="random", key=noise_key)["image"]

    return synthesize(wp), w, wp, synthesize


def track_w_avg(buffers, w, decay):
    """Generator buffers with `truncation.w_avg` moved towards the batch mean of `w`:
    batch_mean + (w_avg - batch_mean) * decay."""
    w_avg = buffers["truncation"]["w_avg"]
    batch_w = jnp.mean(jax.lax.stop_gradient(w), axis=0)
    moved = batch_w + (w_avg - batch_w) * decay
    return {**buffers, "truncation": {**buffers["truncation"], "w_avg": moved}}


@dataclasses.dataclass(frozen=True)
class GANTrainer:
    """What every GAN trainer shares: a generator and a discriminator of one architecture,
    built from their constructor arguments (sorted tuples of items, so the trainer is hashable
    and equal trainers share one compiled step), rebuilt from a `GANState`, and exported.

    Subclasses name `arch`, `generator_class` and `discriminator_class`, and add their
    hyper-parameters, `from_config`, `_optimizers` (generator's, discriminator's) and `step`.
    """

    generator: tuple
    discriminator: tuple
    batch_size: int

    arch = None
    generator_class = None
    discriminator_class = None

    def __post_init__(self):
        g, d = dict(self.generator), dict(self.discriminator)
        if g.get("label_size", 0) or d.get("label_size", 0):
            raise InputError(
                f"conditional {self.arch} training (label_size > 0) is not supported yet"
            )
        for key in ("resolution", "image_channels"):
            if g.get(key, 3) != d.get(key, 3):
                raise InputError(
                    f"generator and discriminator must agree on {key}; got {g.get(key, 3)} "
                    f"and {d.get(key, 3)}"
                )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"batch_size must be a positive integer; got {self.batch_size!r}")

    @property
    def resolution(self):
        return dict(self.generator)["resolution"]

    def build(self, key):
        """Freshly initialised (generator, discriminator) modules."""
        g_key, d_key = jax.random.split(key)
        generator = self.generator_class(**dict(self.generator), rngs=nnx.Rngs(g_key))
        discriminator = self.discriminator_class(**dict(self.discriminator), rngs=nnx.Rngs(d_key))
        return generator, discriminator

    @functools.cached_property
    def _graphdefs(self):
        generator, discriminator = nnx.eval_shape(lambda: self.build(jax.random.key(0)))
        return split_module(generator)[0], split_module(discriminator)[0]

    def init(self, key):
        """A fresh `GANState` (jit it with the output sharding you want)."""
        generator, discriminator = self.build(key)
        _, g_params, g_buffers = split_module(generator)
        _, d_params, d_buffers = split_module(discriminator)
        g_tx, d_tx = self._optimizers
        return GANState(
            step=jnp.zeros((), jnp.int32),
            generator=g_params,
            generator_buffers=g_buffers,
            discriminator=d_params,
            discriminator_buffers=d_buffers,
            generator_ema=g_params,
            g_opt=g_tx.init(g_params),
            d_opt=d_tx.init(d_params),
            pl_mean=jnp.zeros((), jnp.float32),
        )

    def modules(self, state, *, ema=True):
        """(generator, discriminator) rebuilt from `state`; the EMA generator by default."""
        g_graph, d_graph = self._graphdefs
        params = state.generator_ema if ema else state.generator
        generator = nnx.merge(g_graph, params, state.generator_buffers)
        return generator, nnx.merge(d_graph, state.discriminator, state.discriminator_buffers)

    def bundle(self, state, source=""):
        """The trained model as a `jgan.Bundle` (EMA generator, raw generator, discriminator),
        ready for `jgan.save_model_dir`."""
        state = jax.device_get(state)
        generator, discriminator = self.modules(state)
        raw, _ = self.modules(state, ema=False)
        return Bundle(
            arch=self.arch,
            generator=generator,
            generator_raw=raw,
            discriminator=discriminator,
            source=source,
        )

    def samples(self, state, key):
        """A batch of the EMA generator's images from Z codes drawn with `key` (the loop's
        sample grids and FID); noise is the stored maps, so one key gives one grid."""
        generator, _ = self.modules(state)
        z = jax.random.normal(key, (self.batch_size, generator.z_space_dim))
        return generator.generate(z)["image"]

    def _discriminate(self, params, buffers, images):
        return nnx.merge(self._graphdefs[1], params, buffers)(images)


@dataclasses.dataclass(frozen=True)
class StyleGAN2Trainer(GANTrainer):
    """StyleGAN2 hyper-parameters; `generator` and `discriminator` are the constructor
    arguments of `StyleGAN2Generator` and `StyleGAN2Discriminator` (see `from_config`).
    """

    g_lr: float = 0.002
    d_lr: float = 0.002
    betas: tuple = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    w_moving_decay: float = 0.995
    ema_half_life_img: float = 10_000.0

    arch = "stylegan2"
    generator_class = StyleGAN2Generator
    discriminator_class = StyleGAN2Discriminator

    def __post_init__(self):
        super().__post_init__()
        positive = {"r1_interval": self.r1_interval}
        positive.update(pl_interval=self.pl_interval, pl_batch_shrink=self.pl_batch_shrink)
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer; got {value!r}")
        if self.pl_weight and self.batch_size < self.pl_batch_shrink:
            raise InputError(
                f"batch_size ({self.batch_size}) must be at least pl_batch_shrink "
                f"({self.pl_batch_shrink})"
            )
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise InputError(f"style_mixing_prob must be in [0, 1]; got {self.style_mixing_prob}")

    @classmethod
    def from_config(cls, config):
        """The trainer a `configs/stylegan2.py` ConfigDict describes."""
        loss, opt = config.loss, config.optimizer
        return cls(
            generator=_frozen(config.generator),
            discriminator=_frozen(config.discriminator),
            batch_size=config.batch_size,
            g_lr=opt.g_lr,
            d_lr=opt.d_lr,
            betas=tuple(opt.betas),
            eps=opt.eps,
            r1_gamma=loss.r1_gamma,
            r1_interval=loss.r1_interval,
            pl_weight=loss.pl_weight,
            pl_interval=loss.pl_interval,
            pl_decay=loss.pl_decay,
            pl_batch_shrink=loss.pl_batch_shrink,
            style_mixing_prob=loss.style_mixing_prob,
            w_moving_decay=loss.w_moving_decay,
            ema_half_life_img=config.ema_half_life_img,
        )

    @functools.cached_property
    def _optimizers(self):
        b1, b2 = self.betas
        g_interval = self.pl_interval if self.pl_weight else None
        d_interval = self.r1_interval if self.r1_gamma else None
        return (
            lazy_adam(self.g_lr, b1, b2, self.eps, g_interval),
            lazy_adam(self.d_lr, b1, b2, self.eps, d_interval),
        )

    def _generate(self, params, buffers, key, batch, sharding):
        """`style_mixed_pass` of the generator with `params` and `buffers`."""
        generator = nnx.merge(self._graphdefs[0], params, buffers)
        return style_mixed_pass(generator, key, batch, self.style_mixing_prob, sharding)

    def _generator_loss(self, d_params, d_buffers, generated):
        """(non-saturating logistic loss, extra metrics) of a `_generate` pass; a conditioned
        trainer (TrGAN) adds its terms here."""
        return nonsaturating_loss(self._discriminate(d_params, d_buffers, generated[0])), {}

    def _discriminator_loss(self, d_params, d_buffers, generated, reals):
        """(logistic loss, metrics) of the discriminator on a `_generate` pass and `reals`."""
        fake_logits = self._discriminate(d_params, d_buffers, generated[0])
        return logistic_loss(self._discriminate(d_params, d_buffers, reals), fake_logits)

    def step(self, state, batch, key, *, batch_sharding=None):
        """One training step: (new state, metrics). Pure; jit it with `state` donated.

        `batch` is {'image': uint8 (N, H, W, C)}; `key` is the run's key, folded with the step
        number here, so a resumed run draws the same numbers as an uninterrupted one.
        `batch_sharding` (optional) splits generated batches over devices like the real one.
        """
        key = jax.random.fold_in(key, state.step)
        g_key, pl_key, d_key = jax.random.split(key, 3)
        g_tx, d_tx = self._optimizers
        g_buffers, d_buffers = state.generator_buffers, state.discriminator_buffers
        reals = _image_float(batch["image"])
        n = reals.shape[0]

        # 1. Generator: non-saturating logistic loss.
        def g_loss_fn(g_params):
            generated = self._generate(g_params, g_buffers, g_key, n, batch_sharding)
            return self._generator_loss(state.discriminator, d_buffers, generated)

        (g_loss, g_terms), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.generator)
        g_params, g_opt = _adam_step(g_tx, state.generator, state.g_opt, grads)

        # 2. Generator: lazy path-length regularisation (computed only when due).
        pl_mean, pl_penalty = state.pl_mean, jnp.float32(jnp.nan)
        if self.pl_weight:

            def pl_loss_fn(g_params):
                noise_key, gen_key = jax.random.split(pl_key)
                fakes, _, wp, synthesize = self._generate(
                    g_params, g_buffers, gen_key, n // self.pl_batch_shrink, batch_sharding
                )[:4]
                height, width = fakes.shape[1:3]
                noise = jax.random.normal(noise_key, fakes.shape) / np.sqrt(height * width)
                (wp_grad,) = jax.vjp(synthesize, wp)[1](noise)
                lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(wp_grad), axis=2), axis=1))
                mean = state.pl_mean + self.pl_decay * (jnp.mean(lengths) - state.pl_mean)
                penalty = jnp.mean(jnp.square(lengths - jax.lax.stop_gradient(mean)))
                return penalty * self.pl_weight * self.pl_interval, (penalty, mean)

            def pl_step(operands):
                g_params, g_opt = operands
                grads, (penalty, mean) = jax.grad(pl_loss_fn, has_aux=True)(g_params)
                return *_adam_step(g_tx, g_params, g_opt, grads), mean, penalty

            g_params, g_opt, pl_mean, pl_penalty = jax.lax.cond(
                state.step % self.pl_interval == 0,
                pl_step,
                lambda operands: (*operands, pl_mean, pl_penalty),
                (g_params, g_opt),
            )

        # 3. Discriminator: logistic loss; then w_avg and the generator EMA.
        generated = self._generate(g_params, g_buffers, d_key, n, batch_sharding)
        w = generated[1]

        def d_loss_fn(d_params):
            return self._discriminator_loss(d_params, d_buffers, generated, reals)

        (d_loss, d_terms), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.discriminator)
        d_params, d_opt = _adam_step(d_tx, state.discriminator, state.d_opt, grads)
        g_buffers = track_w_avg(g_buffers, w, self.w_moving_decay)
        beta = ema_beta(self.batch_size, self.ema_half_life_img)
        generator_ema = ema_update(state.generator_ema, g_params, beta)

        # 4. Discriminator: lazy R1 regularisation on the real images (computed only when due).
        r1_penalty = jnp.float32(jnp.nan)
        if self.r1_gamma:

            def r1_loss_fn(d_params):
                def score_sum(images):
                    return jnp.sum(self._discriminate(d_params, d_buffers, images))

                penalty = jnp.mean(jnp.sum(jnp.square(jax.grad(score_sum)(reals)), axis=(1, 2, 3)))
                return penalty * (self.r1_gamma / 2) * self.r1_interval, penalty

            def r1_step(operands):
                d_params, d_opt = operands
                grads, penalty = jax.grad(r1_loss_fn, has_aux=True)(d_params)
                return *_adam_step(d_tx, d_params, d_opt, grads), penalty

            d_params, d_opt, r1_penalty = jax.lax.cond(
                state.step % self.r1_interval == 0,
                r1_step,
                lambda operands: (*operands, r1_penalty),
                (d_params, d_opt),
            )

        new_state = GANState(
            step=state.step + 1,
            generator=g_params,
            generator_buffers=g_buffers,
            discriminator=d_params,
            discriminator_buffers=d_buffers,
            generator_ema=generator_ema,
            g_opt=g_opt,
            d_opt=d_opt,
            pl_mean=pl_mean,
        )
        metrics = {
            "g_loss": g_loss,
            "d_loss": d_loss,
            **g_terms,
            **d_terms,
            "pl_penalty": pl_penalty,
            "pl_mean": pl_mean,
            "r1_penalty": r1_penalty,
        }
        return new_state, metrics
