"""Encoder training against a frozen generator: IDInvert's domain-guided encoder and GH-Feat.

Both originals train the same way (idinvert `training/loss_encoder.py`, `train_encoder.py`;
ghfeat `train_ghfeat.py`, same losses): the encoder E maps a real image x to codes that the
frozen generator G renders (synthesis only, fixed noise), and each step
  1. E: |G(E(x)) - x|^2 + perceptual_weight * |F(G(E(x))) - F(x)|^2
        + adversarial_weight * softplus(-D(G(E(x)))),   one Adam step,
     with F = VGG16 conv4_3 (caffe preprocessing) and every term a mean over its elements;
  2. D: softplus(D(G(E(x)))) + softplus(-D(x)) + r1_gamma / 2 * |grad_x D(x)|^2,  one Adam
     step, with G(E(x)) recomputed by the updated encoder (the original runs the D step as a
     second session run); the discriminator starts from the GAN's own, pretrained, when the
     model file has one.
Adam (0.9, 0.99, 1e-8) at 1e-4, decayed by 0.8 every `lr_decay_steps` steps (smoothly, TF's
`exponential_decay` without staircase). The originals set the decay step to a quarter of the
run in TF global steps, which advance once per E run and once per D run, i.e. twice per
iteration: every eighth of the run in steps (genforce's re-implementation: 36458 // 2 for
GH-Feat), the configs' default. The encoder's batch norms train on the statistics of the
global batch (TF's SyncBN), their running statistics updated by both passes as in TF, and are
exported in eval mode on them.

IDInvert's encoder predicts W+ codes; GH-Feat's predicts per-layer styles (Y space) for a
StyleGAN generator, W+ codes for the others.
"""

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jgan.bundle import Bundle, load
from jgan.errors import InputError
from jgan.inversion.losses import feature_distance, pixel_mse
from jgan.models.encoders import StyleGANEncoder
from jgan.models.ghfeat import GHFeatEncoder
from jgan.models.registry import model_classes
from jgan.models.vgg import VGG16
from jgan.training.gan import _frozen, _image_float
from jgan.training.state import split_module

PERCEPTUAL_LAYER = "relu4_3"
PERCEPTUAL_CONVENTION = "caffe"


@flax.struct.dataclass
class EncoderState:
    """Everything an encoder training step reads and writes. `frozen` holds the generator's
    (and the perceptual network's) full state: never trained, carried so a run is self-contained
    and the jitted step takes no large constants."""

    step: jax.Array
    encoder: dict
    encoder_buffers: dict
    discriminator: dict
    discriminator_buffers: dict
    e_opt: optax.OptState
    d_opt: optax.OptState
    frozen: dict


@dataclasses.dataclass(frozen=True)
class EncoderTrainer:
    """Hyper-parameters of encoder training; hashable, so equal trainers share one compiled
    step. Subclasses say which encoder they build (`encoder_class`, `encoder_config`).

    The generator (and the discriminator, when the file holds one) comes from `model`, any file
    or directory `jgan.load` reads; without `model`, from `arch` + `generator` constructor
    arguments (random weights: for tests). `discriminator` builds the discriminator the model
    lacks. `encoder`: constructor arguments of the encoder on top of those derived from the
    generator. `perceptual`: a VGG16 file in the caffe convention (IDInvert's vgg16.pth), needed
    when `perceptual_weight` > 0.
    """

    batch_size: int
    model: str | None = None
    arch: str = "stylegan"
    generator: tuple = ()
    discriminator: tuple = ()
    encoder: tuple = ()
    perceptual: str | None = None
    learning_rate: float = 1e-4
    betas: tuple = (0.9, 0.99)
    eps: float = 1e-8
    lr_decay_rate: float = 0.8
    lr_decay_steps: int = 13_671
    pixel_weight: float = 1.0
    perceptual_weight: float = 5e-5
    adversarial_weight: float = 0.08
    r1_gamma: float = 10.0

    encoder_class = None

    def __post_init__(self):
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"batch_size must be a positive integer; got {self.batch_size!r}")
        if not isinstance(self.lr_decay_steps, int) or self.lr_decay_steps < 1:
            raise InputError(
                f"lr_decay_steps must be a positive integer; got {self.lr_decay_steps!r}"
            )
        weights = dict(
            pixel_weight=self.pixel_weight,
            perceptual_weight=self.perceptual_weight,
            adversarial_weight=self.adversarial_weight,
            r1_gamma=self.r1_gamma,
        )
        for name, value in weights.items():
            if not value >= 0:
                raise InputError(f"{name} must be >= 0; got {value!r}")
        if not (self.pixel_weight or self.perceptual_weight):
            raise InputError("pixel_weight or perceptual_weight must be > 0")
        if self.model is None and not self.generator:
            raise InputError(
                "encoder training needs a generator: set config.model to a generator file or "
                "jgan model directory (or config.generator to build one, for tests)"
            )
        if self.perceptual_weight and not self.perceptual:
            raise InputError(
                f"perceptual_weight={self.perceptual_weight} needs config.perceptual: a VGG16 "
                "file in the caffe convention (IDInvert's vgg16.pth); or set perceptual_weight=0"
            )

    @classmethod
    def from_config(cls, config):
        """The trainer a `configs/idinvert_encoder.py` / `configs/ghfeat.py` ConfigDict
        describes."""
        loss, opt = config.loss, config.optimizer

        def items(name):
            value = config.get(name)
            return () if value is None else _frozen(value)

        return cls(
            batch_size=config.batch_size,
            model=config.get("model"),
            arch=config.get("arch", "stylegan"),
            generator=items("generator"),
            discriminator=items("discriminator"),
            encoder=items("encoder"),
            perceptual=config.get("perceptual"),
            learning_rate=opt.learning_rate,
            betas=tuple(opt.betas),
            eps=opt.eps,
            lr_decay_rate=opt.lr_decay_rate,
            lr_decay_steps=opt.lr_decay_steps,
            pixel_weight=loss.pixel_weight,
            perceptual_weight=loss.perceptual_weight,
            adversarial_weight=loss.adversarial_weight,
            r1_gamma=loss.r1_gamma,
        )

    # --- the networks -------------------------------------------------------------------------

    @functools.cached_property
    def _loaded(self):
        """(generator, discriminator or None, VGG16 or None) read from the files (concrete)."""
        generator = discriminator = vgg = None
        if self.model is not None:
            bundle = load(self.model)
            generator, discriminator = bundle.generator, bundle.discriminator
            if generator is None:
                raise InputError(f"{self.model} holds no generator")
        if self.perceptual_weight:
            vgg = load(self.perceptual).perceptual
            if not isinstance(vgg, VGG16) or vgg.convention != PERCEPTUAL_CONVENTION:
                raise InputError(
                    f"{self.perceptual} must hold a VGG16 in the {PERCEPTUAL_CONVENTION!r} "
                    "convention (IDInvert's vgg16.pth): perceptual_weight was tuned for its "
                    "feature scale"
                )
        return generator, discriminator, vgg

    @property
    def _model_arch(self):
        generator = self._loaded[0]
        return self.arch if generator is None else generator.arch

    def _build_generator(self, key):
        generator = self._loaded[0]
        if generator is not None:
            return generator
        return model_classes(self.arch)[0](**dict(self.generator), rngs=nnx.Rngs(key))

    def _build_discriminator(self, key, generator):
        """The model's discriminator, a fresh one, or None without an adversarial term."""
        discriminator = self._loaded[1]
        if not self.adversarial_weight:
            return None
        if discriminator is not None:
            return discriminator
        config = {"resolution": generator.config["resolution"], **dict(self.discriminator)}
        return model_classes(self._model_arch)[1](**config, rngs=nnx.Rngs(key))

    def encoder_config(self, generator):
        """Constructor arguments of the encoder for `generator`."""
        raise NotImplementedError

    def latent_space(self, generator):
        """The space the encoder predicts in, as `generator.generate` names it."""
        return "wp"

    def _build(self, key):
        """(generator, discriminator, encoder, vgg or None) with fresh weights where not loaded."""
        g_key, d_key, e_key = jax.random.split(key, 3)
        generator = self._build_generator(g_key)
        if "wp" not in getattr(generator, "latent_spaces", ()):
            raise InputError(
                f"encoder training needs a style-based generator (W+ codes); got "
                f"{type(generator).__name__}"
            )
        discriminator = self._build_discriminator(d_key, generator)
        encoder = self.encoder_class(**self.encoder_config(generator), rngs=nnx.Rngs(e_key))
        if encoder.num_layers != generator.num_layers:
            raise InputError(
                f"the encoder predicts {encoder.num_layers} layers' codes but the generator has "
                f"{generator.num_layers} layers"
            )
        return generator, discriminator, encoder, self._loaded[2]

    @functools.cached_property
    def _graphdefs(self):
        """Graph definitions (generator, discriminator, encoder in training mode, encoder in
        eval mode, vgg or None) and the generator's latent space and resolution."""
        generator, discriminator, encoder, vgg = nnx.eval_shape(
            lambda: self._build(jax.random.key(0))
        )
        eval_graph = split_module(encoder)[0]
        encoder.set_attributes(use_running_average=False, raise_if_not_found=False)
        return dict(
            generator=nnx.split(generator)[0],
            discriminator=None if discriminator is None else split_module(discriminator)[0],
            encoder_train=split_module(encoder)[0],
            encoder_eval=eval_graph,
            vgg=None if vgg is None else nnx.split(vgg)[0],
            space=self.latent_space(generator),
            resolution=generator.config["resolution"],
        )

    @property
    def resolution(self):
        return self._graphdefs["resolution"]

    @functools.cached_property
    def _optimizer(self):
        b1, b2 = self.betas
        schedule = optax.exponential_decay(
            self.learning_rate, self.lr_decay_steps, self.lr_decay_rate, staircase=False
        )
        return optax.adam(schedule, b1=b1, b2=b2, eps=self.eps)

    def init(self, key):
        """A fresh `EncoderState` (jit it with the output sharding you want)."""
        generator, discriminator, encoder, vgg = self._build(key)
        _, e_params, e_buffers = split_module(encoder)
        _, d_params, d_buffers = (
            ({}, {}, {}) if discriminator is None else split_module(discriminator)
        )
        frozen = {"generator": nnx.to_pure_dict(nnx.state(generator))}
        if vgg is not None:
            frozen["vgg"] = nnx.to_pure_dict(nnx.state(vgg))
        tx = self._optimizer
        return EncoderState(
            step=jnp.zeros((), jnp.int32),
            encoder=e_params,
            encoder_buffers=e_buffers,
            discriminator=d_params,
            discriminator_buffers=d_buffers,
            e_opt=tx.init(e_params),
            d_opt=tx.init(d_params),
            frozen=frozen,
        )

    def modules(self, state):
        """(generator, discriminator, encoder in eval mode, vgg or None) rebuilt from `state`."""
        graphs = self._graphdefs
        generator = nnx.merge(graphs["generator"], state.frozen["generator"])
        discriminator = None
        if graphs["discriminator"] is not None:
            discriminator = nnx.merge(
                graphs["discriminator"], state.discriminator, state.discriminator_buffers
            )
        encoder = nnx.merge(graphs["encoder_eval"], state.encoder, state.encoder_buffers)
        vgg = None if graphs["vgg"] is None else nnx.merge(graphs["vgg"], state.frozen["vgg"])
        return generator, discriminator, encoder, vgg

    def bundle(self, state, source=""):
        """The trained encoder with its generator, fine-tuned discriminator and perceptual
        network, as a `jgan.Bundle` ready for `jgan.save_model_dir`: what
        `jgan.invert(..., encoder=)` needs in one directory."""
        generator, discriminator, encoder, vgg = self.modules(jax.device_get(state))
        return Bundle(
            arch=self._model_arch,
            generator=generator,
            discriminator=discriminator,
            encoder=encoder,
            perceptual=vgg,
            source=source,
        )

    # --- the step -----------------------------------------------------------------------------

    def reconstruct(self, state, images):
        """G(E(images)) with the encoder in eval mode: NHWC float images in [-1, 1]."""
        generator, _, encoder, _ = self.modules(state)
        codes = encoder(images)
        return generator.generate(codes, space=self._graphdefs["space"])["image"]

    def step(self, state, batch, key, *, batch_sharding=None):
        """One training step: (new state, metrics). Pure; jit it with `state` donated.

        `batch` is {'image': uint8 (N, H, W, C)}. `key` and `batch_sharding` are unused (the
        step draws no random numbers; the batch arrives split), kept for the trainer protocol.
        """
        del key, batch_sharding
        graphs, tx = self._graphdefs, self._optimizer
        generator = nnx.merge(graphs["generator"], state.frozen["generator"])
        vgg = None if graphs["vgg"] is None else nnx.merge(graphs["vgg"], state.frozen["vgg"])
        d_buffers = state.discriminator_buffers
        reals = _image_float(batch["image"])

        def discriminate(d_params, images):
            return nnx.merge(graphs["discriminator"], d_params, d_buffers)(images)

        def features(images):
            return vgg(images, (PERCEPTUAL_LAYER,))[PERCEPTUAL_LAYER]

        def reconstruct(e_params, e_buffers):
            """G(E(reals)) with batch-statistics norms, and the moved running statistics."""
            encoder = nnx.merge(graphs["encoder_train"], e_params, e_buffers)
            codes = encoder(reals)
            fakes = generator.generate(codes, space=graphs["space"])["image"]
            return fakes, split_module(encoder)[2]

        # 1. Encoder: reconstruction, perceptual and adversarial losses.
        def e_loss_fn(e_params):
            fakes, buffers = reconstruct(e_params, state.encoder_buffers)
            terms = {"pixel_loss": jnp.mean(pixel_mse(fakes, reals))}
            if self.perceptual_weight:
                distance = feature_distance(features(fakes), features(reals))
                terms["perceptual_loss"] = jnp.mean(distance)
            if self.adversarial_weight:
                logits = discriminate(state.discriminator, fakes)
                terms["adversarial_loss"] = jnp.mean(jax.nn.softplus(-logits))
            loss = self.pixel_weight * terms["pixel_loss"]
            loss += self.perceptual_weight * terms.get("perceptual_loss", 0.0)
            loss += self.adversarial_weight * terms.get("adversarial_loss", 0.0)
            return loss, (terms, buffers)

        (e_loss, (terms, e_buffers)), grads = jax.value_and_grad(e_loss_fn, has_aux=True)(
            state.encoder
        )
        updates, e_opt = tx.update(grads, state.e_opt, state.encoder)
        e_params = optax.apply_updates(state.encoder, updates)

        # 2. Discriminator: logistic loss on the updated encoder's reconstructions (the original
        # runs its D step after the E step, recomputing them) plus R1 on the real images.

        def d_loss_fn(d_params):
            fake_logits = discriminate(d_params, fakes)
            real_logits = discriminate(d_params, reals)
            loss = jnp.mean(jax.nn.softplus(fake_logits)) + jnp.mean(jax.nn.softplus(-real_logits))
            r1 = jnp.float32(0.0)
            if self.r1_gamma:
                grad = jax.grad(lambda x: jnp.sum(discriminate(d_params, x)))(reals)
                r1 = jnp.mean(jnp.sum(jnp.square(grad), axis=(1, 2, 3)))
            return loss + r1 * (self.r1_gamma / 2), (
                loss,
                r1,
                jnp.mean(real_logits),
                jnp.mean(fake_logits),
            )

        if self.adversarial_weight:
            fakes, e_buffers = jax.lax.stop_gradient(reconstruct(e_params, e_buffers))
            (_, (d_loss, r1, real_score, fake_score)), grads = jax.value_and_grad(
                d_loss_fn, has_aux=True
            )(state.discriminator)
            updates, d_opt = tx.update(grads, state.d_opt, state.discriminator)
            d_params = optax.apply_updates(state.discriminator, updates)
            terms |= dict(d_loss=d_loss, r1_penalty=r1, real_score=real_score)
            terms |= dict(fake_score=fake_score)
        else:  # no adversarial term: no discriminator
            d_params, d_opt = state.discriminator, state.d_opt

        new_state = state.replace(
            step=state.step + 1,
            encoder=e_params,
            encoder_buffers=e_buffers,
            discriminator=d_params,
            e_opt=e_opt,
            d_opt=d_opt,
        )
        return new_state, {"e_loss": e_loss, **terms}


@dataclasses.dataclass(frozen=True)
class IDInvertEncoderTrainer(EncoderTrainer):
    """IDInvert's domain-guided encoder (`jgan.models.encoders.StyleGANEncoder`, W+ codes) with
    batch norm, for the generator's resolution and W dimension."""

    encoder_class = StyleGANEncoder

    def encoder_config(self, generator):
        config = dict(
            resolution=generator.config["resolution"],
            w_space_dim=generator.w_space_dim,
            image_channels=generator.config.get("image_channels", 3),
            use_bn=True,
        )
        return config | dict(self.encoder)


@dataclasses.dataclass(frozen=True)
class GHFeatTrainer(EncoderTrainer):
    """GH-Feat's hierarchical encoder (`jgan.models.ghfeat.GHFeatEncoder`): per-layer styles of
    a StyleGAN generator (Y space), W+ codes of generators without styles as inputs."""

    encoder_class = GHFeatEncoder

    def latent_space(self, generator):
        return "y" if "y" in generator.latent_spaces else "wp"

    def encoder_config(self, generator):
        space = self.latent_space(generator)
        if space == "y":
            synthesis = generator.synthesis
            widths = [
                2 * getattr(synthesis, f"layer{i}").channels for i in range(generator.num_layers)
            ]
        else:
            widths = [generator.w_space_dim] * generator.num_layers
        config = dict(
            resolution=generator.config["resolution"],
            layer_widths=tuple(widths),
            latent_space=space,
            image_channels=generator.config.get("image_channels", 3),
        )
        return config | dict(self.encoder)
