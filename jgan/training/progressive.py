"""Progressive growing: PGGAN (Karras et al. 2018) and StyleGAN v1 (Karras et al. 2019) training
with the level-of-detail schedule of genforce's `ProgressScheduler` (= the TF originals').

The schedule counts real images shown. Training starts at `init_res` (lod = log2(resolution /
init_res)); each phase shows `lod_training_img` images at a fixed lod, then fades the next
resolution in over `lod_transition_img` images (lod falls linearly by 1), until lod 0:
    phase, within = divmod(images, training + transition)
    lod = max(init_lod - phase - max(within - training, 0) / transition, 0)
The lod is re-evaluated every `minibatch_repeats` steps, as genforce and TF do.

As in the TF originals, the networks always run at full resolution and the lod only blends
their outputs (jgan's models read it from their `lod` buffers, traced), so the whole run is one
compiled step: the lod is a function of the step computed inside it. The reals are shown as the
networks see them at that lod (`lod_reals`): average-pooled to the current resolution, blended
with the next coarser one during a transition, and nearest-upsampled back. At the end the
models' `lod` buffers hold the last lod, so the exported model renders like genforce's there.

Per step, in the originals' order: D update; generator EMA (of G before its update); G update.
The learning rate of both networks is scaled per resolution (`lr_schedule`, genforce's res ->
scale table) and, with `reset_optimizer`, the Adam moments are reset whenever floor(lod) or
ceil(lod) changes (a new resolution starts fading in, or finishes). Not supported: genforce's
per-resolution batch sizes (`batch_size_schedule`): the loop runs one batch size throughout, so
the early, small resolutions use the final one (the schedule still counts images, so the lod at
a given number of images is genforce's); conditional models.
"""

import dataclasses
import functools
import math
import re

import jax
import jax.numpy as jnp
from flax import nnx

from jgan.errors import InputError
from jgan.models.pggan import PGGANDiscriminator, PGGANGenerator
from jgan.models.stylegan import StyleGANDiscriminator, StyleGANGenerator
from jgan.nn import avg_pool2x, upsample_nearest
from jgan.training.gan import (
    GANTrainer,
    _adam_step,
    _constrain,
    _frozen,
    _image_float,
    logistic_loss,
    nonsaturating_loss,
    style_mixed_pass,
    track_w_avg,
)
from jgan.training.state import GANState, ema_beta, ema_update, lazy_adam


def lod_schedule(images, init_lod, training_img, transition_img):
    """The lod after `images` real images (int or int array, may be traced): genforce's
    `ProgressScheduler` formula (module docstring). Both durations 0: no growing (init_lod)."""
    images = jnp.asarray(images)
    duration = training_img + transition_img
    if not duration:
        return jnp.full(images.shape, float(init_lod), jnp.float32)
    phase, within = jnp.divmod(images, duration)
    lod = (init_lod - phase).astype(jnp.float32)
    if transition_img:
        lod = lod - jnp.maximum(within - training_img, 0).astype(jnp.float32) / transition_img
    return jnp.maximum(lod, 0.0)


def lod_reals(images, lod, max_lod):
    """Real images (N, H, W, C) as the networks see them at `lod` in [0, max_lod] (TF's
    `process_reals`, genforce's `preprocess_image`): average-pooled by 2**floor(lod), blended
    with the next coarser level by lod - floor(lod), nearest-upsampled back to (H, W).

    Written as a sum over the pyramid with weights max(0, 1 - |lod - k|), which is that blend
    for any (traced) lod; an integer lod gives one level exactly.
    """
    level, mixed = images, jnp.zeros_like(images)
    for k in range(max_lod + 1):
        if k:
            level = avg_pool2x(level)
        weight = jnp.maximum(0.0, 1.0 - jnp.abs(lod - k)).astype(images.dtype)
        mixed = mixed + weight * upsample_nearest(level, 2**k)
    return mixed


def _with_lod(buffers, lod):
    """Module buffers (nested dicts) with every `lod` entry set to `lod`."""
    return {
        name: (
            jnp.asarray(lod, value.dtype)
            if name == "lod"
            else _with_lod(value, lod)
            if isinstance(value, dict)
            else value
        )
        for name, value in buffers.items()
    }


def _lr_table(table):
    """genforce's lr_schedule {'res256': 2.0, ...} -> sorted ((256, 2.0), ...)."""
    items = table.to_dict() if hasattr(table, "to_dict") else dict(table or {})
    parsed = []
    for key, value in items.items():
        match = re.fullmatch(r"res(\d+)", str(key))
        if not match or int(match[1]) < 4 or int(match[1]) & (int(match[1]) - 1):
            raise InputError(
                f"lr_schedule keys must be 'res<resolution>', a power of two >= 4; got {key!r}"
            )
        parsed.append((int(match[1]), float(value)))
    return tuple(sorted(parsed))


@dataclasses.dataclass(frozen=True)
class ProgressiveTrainer(GANTrainer):
    """The schedule, optimizers and step shared by PGGAN and StyleGAN; subclasses give the
    losses (`_d_loss`, `_g_loss`), the generator pass (`_fakes`) and the EMA decay."""

    g_lr: float = 0.001
    d_lr: float = 0.001
    betas: tuple = (0.0, 0.99)
    eps: float = 1e-8
    init_res: int = 4
    lod_training_img: int = 600_000
    lod_transition_img: int = 600_000
    minibatch_repeats: int = 4
    lr_schedule: tuple = ()
    reset_optimizer: bool = True

    def __post_init__(self):
        super().__post_init__()
        res = self.init_res
        if not (isinstance(res, int) and 4 <= res <= self.resolution and not res & (res - 1)):
            raise InputError(
                f"init_res must be a power of two in [4, {self.resolution}]; got {res!r}"
            )
        for name in ("lod_training_img", "lod_transition_img"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InputError(f"{name} must be an integer >= 0; got {value!r}")
        if not isinstance(self.minibatch_repeats, int) or self.minibatch_repeats < 1:
            raise InputError(
                f"minibatch_repeats must be a positive integer; got {self.minibatch_repeats!r}"
            )

    @classmethod
    def _common_config(cls, config):
        """Constructor arguments every progressive config gives (see configs/stylegan.py)."""
        opt, schedule = config.optimizer, config.schedule
        return dict(
            generator=_frozen(config.generator),
            discriminator=_frozen(config.discriminator),
            batch_size=config.batch_size,
            g_lr=opt.g_lr,
            d_lr=opt.d_lr,
            betas=tuple(opt.betas),
            eps=opt.eps,
            init_res=schedule.init_res,
            lod_training_img=schedule.lod_training_img,
            lod_transition_img=schedule.lod_transition_img,
            minibatch_repeats=schedule.minibatch_repeats,
            lr_schedule=_lr_table(schedule.get("lr_schedule")),
            reset_optimizer=schedule.reset_optimizer,
        )

    @property
    def init_lod(self):
        """The lod training starts at: log2(resolution / init_res)."""
        return int(math.log2(self.resolution // self.init_res))

    def lod(self, step):
        """The lod of training step `step` (may be traced): the schedule at the images shown
        before the step's group of `minibatch_repeats` steps (int32 images: up to 2**31)."""
        step = jnp.asarray(step)
        images = step // self.minibatch_repeats * self.minibatch_repeats * self.batch_size
        return lod_schedule(images, self.init_lod, self.lod_training_img, self.lod_transition_img)

    def lr_scale(self, lod):
        """Learning-rate factor at `lod`: `lr_schedule`'s entry for the current resolution
        (resolution / 2**floor(lod)), 1 where it has none."""
        table = dict(self.lr_schedule)
        max_lod = int(math.log2(self.resolution // 4))
        scales = jnp.array([table.get(self.resolution >> k, 1.0) for k in range(max_lod + 1)])
        return scales[jnp.clip(jnp.floor(lod).astype(jnp.int32), 0, max_lod)]

    @functools.cached_property
    def _optimizers(self):
        b1, b2 = self.betas
        return (
            lazy_adam(self.g_lr, b1, b2, self.eps, None),
            lazy_adam(self.d_lr, b1, b2, self.eps, None),
        )

    def _generator(self, params, buffers):
        return nnx.merge(self._graphdefs[0], params, buffers)

    def step(self, state, batch, key, *, batch_sharding=None):
        """One training step: (new state, metrics). Pure; jit it with `state` donated.

        `batch` is {'image': uint8 (N, H, W, C)} at full resolution; `key` is the run's key,
        folded with the step number here, so a resumed run draws the same numbers.
        """
        key = jax.random.fold_in(key, state.step)
        d_key, g_key, loss_key = jax.random.split(key, 3)
        g_tx, d_tx = self._optimizers
        lod = self.lod(state.step)
        g_opt, d_opt = state.g_opt, state.d_opt
        if self.reset_optimizer:
            previous = self.lod(jnp.maximum(state.step - 1, 0))
            new_level = (jnp.floor(lod) != jnp.floor(previous)) | (
                jnp.ceil(lod) != jnp.ceil(previous)
            )

            def reset(fresh, current):
                return jax.tree.map(lambda f, c: jnp.where(new_level, f, c), fresh, current)

            g_opt = reset(g_tx.init(state.generator), g_opt)
            d_opt = reset(d_tx.init(state.discriminator), d_opt)
        lr_scale = self.lr_scale(lod)
        g_buffers = _with_lod(state.generator_buffers, lod)
        d_buffers = _with_lod(state.discriminator_buffers, lod)
        reals = lod_reals(_image_float(batch["image"]), lod, self.init_lod)
        n = reals.shape[0]

        # 1. Discriminator.
        fakes, d_pass_w = self._fakes(state.generator, g_buffers, d_key, n, batch_sharding, lod)
        fakes = jax.lax.stop_gradient(fakes)

        def d_loss_fn(d_params):
            def scores(images):
                return self._discriminate(d_params, d_buffers, images)[:, 0]

            return self._d_loss(scores, reals, fakes, loss_key, batch_sharding)

        (d_loss, d_metrics), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            state.discriminator
        )
        d_params, d_opt = _adam_step(d_tx, state.discriminator, d_opt, grads, lr_scale)

        # 2. Generator EMA, of the generator before its update (the originals' order).
        generator_ema = ema_update(state.generator_ema, state.generator, self._ema_beta)

        # 3. Generator.
        def g_loss_fn(g_params):
            fakes, w = self._fakes(g_params, g_buffers, g_key, n, batch_sharding, lod)
            scores = self._discriminate(d_params, d_buffers, fakes)[:, 0]
            return self._g_loss(scores), w

        (g_loss, g_pass_w), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.generator)
        g_params, g_opt = _adam_step(g_tx, state.generator, g_opt, grads, lr_scale)
        g_buffers = self._track(g_buffers, d_pass_w, g_pass_w)

        new_state = GANState(
            step=state.step + 1,
            generator=g_params,
            generator_buffers=g_buffers,
            discriminator=d_params,
            discriminator_buffers=d_buffers,
            generator_ema=generator_ema,
            g_opt=g_opt,
            d_opt=d_opt,
            pl_mean=state.pl_mean,
        )
        metrics = {"g_loss": g_loss, "d_loss": d_loss, "lod": lod, **d_metrics}
        return new_state, metrics

    def _track(self, buffers, *pass_ws):
        """Generator buffers after the passes that produced `pass_ws` (nothing to track)."""
        return buffers


@dataclasses.dataclass(frozen=True)
class PGGANTrainer(ProgressiveTrainer):
    """PGGAN as trained in the paper (tkarras/progressive_growing_of_gans `train.py`,
    `loss.py`): WGAN-GP with the drift term,
        D: D(fake) - D(real) + gp_lambda / gp_target**2 * (|grad D(mix)| - gp_target)**2
           + drift_epsilon * D(real)**2,   mix = real + (fake - real) * u,  u ~ U(0, 1)
        G: -D(fake),
    and a generator EMA with the fixed per-step decay `ema_decay` (the paper's G_smoothing).
    """

    gp_lambda: float = 10.0
    gp_target: float = 1.0
    drift_epsilon: float = 0.001
    ema_decay: float = 0.999

    arch = "pggan"
    generator_class = PGGANGenerator
    discriminator_class = PGGANDiscriminator

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"ema_decay must be in [0, 1); got {self.ema_decay}")
        if self.gp_target <= 0:
            raise InputError(f"gp_target must be positive; got {self.gp_target}")

    @classmethod
    def from_config(cls, config):
        """The trainer a `configs/pggan.py` ConfigDict describes."""
        loss = config.loss
        return cls(
            **cls._common_config(config),
            gp_lambda=loss.gp_lambda,
            gp_target=loss.gp_target,
            drift_epsilon=loss.drift_epsilon,
            ema_decay=config.ema_decay,
        )

    @property
    def _ema_beta(self):
        return self.ema_decay

    def _fakes(self, params, buffers, key, batch, sharding, lod):
        generator = self._generator(params, buffers)
        z = _constrain(jax.random.normal(key, (batch, generator.z_space_dim)), sharding)
        return generator.generate(z)["image"], None

    def _d_loss(self, scores, reals, fakes, key, sharding):
        real, fake = scores(reals), scores(fakes)
        u = _constrain(jax.random.uniform(key, (reals.shape[0], 1, 1, 1)), sharding)
        mixed = reals + (fakes - reals) * u
        grads = jax.grad(lambda x: jnp.sum(scores(x)))(mixed)
        norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=(1, 2, 3)))
        penalty = jnp.square(norms - self.gp_target)
        loss = fake - real + penalty * (self.gp_lambda / self.gp_target**2)
        loss = jnp.mean(loss + jnp.square(real) * self.drift_epsilon)
        metrics = {
            "real_score": jnp.mean(real),
            "fake_score": jnp.mean(fake),
            "gradient_penalty": jnp.mean(penalty),
        }
        return loss, metrics

    def _g_loss(self, scores):
        return jnp.mean(-scores)


@dataclasses.dataclass(frozen=True)
class StyleGANTrainer(ProgressiveTrainer):
    """StyleGAN as genforce trains it (`StyleGANRunner`, `LogisticGANLoss`): non-saturating
    logistic loss with R1 (gamma / 2 * |grad D(real)|^2) at every step, style mixing among the
    layers of the current resolution (cut-off in [1, num_layers - 2 * floor(lod))), random
    noise, `w_avg` moved towards every generator pass's mean w (twice per step, as the
    generator runs once for D and once for G), and a generator EMA with a half-life of
    `ema_half_life_img` images (genforce's g_smooth_img).
    """

    r1_gamma: float = 10.0
    style_mixing_prob: float = 0.9
    w_moving_decay: float = 0.995
    ema_half_life_img: float = 10_000.0

    arch = "stylegan"
    generator_class = StyleGANGenerator
    discriminator_class = StyleGANDiscriminator

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise InputError(f"style_mixing_prob must be in [0, 1]; got {self.style_mixing_prob}")

    @classmethod
    def from_config(cls, config):
        """The trainer a `configs/stylegan.py` ConfigDict describes."""
        loss = config.loss
        return cls(
            **cls._common_config(config),
            r1_gamma=loss.r1_gamma,
            style_mixing_prob=loss.style_mixing_prob,
            w_moving_decay=loss.w_moving_decay,
            ema_half_life_img=config.ema_half_life_img,
        )

    @property
    def _ema_beta(self):
        return ema_beta(self.batch_size, self.ema_half_life_img)

    def _fakes(self, params, buffers, key, batch, sharding, lod):
        generator = self._generator(params, buffers)
        layers = generator.num_layers - 2 * jnp.floor(lod).astype(jnp.int32)
        images, w, _, _ = style_mixed_pass(
            generator, key, batch, self.style_mixing_prob, sharding, mixing_layers=layers
        )
        return images, w

    def _d_loss(self, scores, reals, fakes, key, sharding):
        def real_sum(images):
            real = scores(images)
            return jnp.sum(real), real

        (_, real), real_grads = jax.value_and_grad(real_sum, has_aux=True)(reals)
        loss, metrics = logistic_loss(real, scores(fakes))
        r1 = jnp.mean(jnp.sum(jnp.square(real_grads), axis=(1, 2, 3)))
        return loss + r1 * (self.r1_gamma / 2), {**metrics, "r1_penalty": r1}

    def _g_loss(self, scores):
        return nonsaturating_loss(scores)

    def _track(self, buffers, *pass_ws):
        for w in pass_ws:
            buffers = track_w_avg(buffers, w, self.w_moving_decay)
        return buffers
