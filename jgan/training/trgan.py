"""TrGAN training: StyleGAN2's step (`gan.StyleGAN2Trainer`: lazy R1 and path-length
regularisation, style mixing, w_avg tracking, generator EMA) with the transformation space.

Every generator pass draws t ~ N(0, I) (t_dim values) with its z and renders G(z, t); the
discriminator's projection head P (`jgan.models.trgan`) is trained to recover t:
  G: softplus(-s(G(z, t))) + proj_weight * |P(G(z, t)) - t|^2
     [+ pair_weight * |(P(G(z, t')) - P(G(z, t))) - (t' - t)|^2, same z, noise and mixing]
  D: softplus(s(G(z, t))) + softplus(-s(x)) + proj_weight * |P(G(z, t)) - t|^2
with |.|^2 the mean over the t_dim values (so chance level, P = 0, is about 1). R1 penalises
the realness score only. The paper publishes none of this (see `jgan.models.trgan`); the
decisions, each PAPERS.md's recommendation:
  - the projection loss updates both networks (InfoGAN's mutual-information term), on fakes
    only: real images have no t;
  - the pair term (it asks differences of projections to be differences of codes, the
    property an edit uses) is off by default (`pair_weight` 0) and applies to G only;
  - t ~ N(0, I) rather than projections of real images, which would let T drift with P.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jgan.errors import InputError
from jgan.models.trgan import TrGANDiscriminator, TrGANGenerator
from jgan.training.gan import (
    StyleGAN2Trainer,
    _constrain,
    logistic_loss,
    nonsaturating_loss,
    style_mixed_pass,
)


def projection_error(projected, t):
    """|P(x) - t|^2 averaged over the t values and the batch."""
    return jnp.mean(jnp.square(projected - t))


class _Conditioned:
    """A TrGAN generator with its transformation codes t bound: what `style_mixed_pass` sees
    as a plain style generator (its synthesis renders G(wp, t))."""

    def __init__(self, generator, t):
        self.generator, self.t = generator, t
        self.mapping, self.truncation = generator.mapping, generator.truncation
        self.num_layers = generator.num_layers

    def generate(self, codes, **kwargs):
        return self.generator.generate(codes, t=self.t, **kwargs)


@dataclasses.dataclass(frozen=True)
class TrGANTrainer(StyleGAN2Trainer):
    """StyleGAN2 hyper-parameters plus the projection (`proj_weight`) and pair
    (`pair_weight`) loss weights; `generator` and `discriminator` are the constructor
    arguments of `TrGANGenerator` and `TrGANDiscriminator` (with the same `t_dim`)."""

    proj_weight: float = 1.0
    pair_weight: float = 0.0

    arch = "trgan"
    generator_class = TrGANGenerator
    discriminator_class = TrGANDiscriminator

    def __post_init__(self):
        super().__post_init__()
        g, d = dict(self.generator), dict(self.discriminator)
        if g.get("t_dim", 32) != d.get("t_dim", 32):
            raise InputError(
                f"generator and discriminator must share t_dim; got {g.get('t_dim', 32)} and "
                f"{d.get('t_dim', 32)}"
            )
        for name in ("proj_weight", "pair_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < float("inf")):
                raise InputError(f"{name} must be a non-negative number; got {value!r}")

    @classmethod
    def from_config(cls, config):
        """The trainer a `configs/trgan.py` ConfigDict describes."""
        return dataclasses.replace(
            super().from_config(config),
            proj_weight=config.loss.proj_weight,
            pair_weight=config.loss.pair_weight,
        )

    @property
    def t_dim(self):
        return dict(self.generator).get("t_dim", 32)

    def _discriminate(self, params, buffers, images):
        """The realness logits (N, 1), which R1 penalises."""
        return self._outputs(params, buffers, images)[:, :1]

    def _outputs(self, params, buffers, images):
        """The discriminator's (N, 1 + t_dim): realness logit, then P(images)."""
        return nnx.merge(self._graphdefs[1], params, buffers)(images)

    def _generate(self, params, buffers, key, batch, sharding):
        """`StyleGAN2Trainer._generate` rendering G(z, t) with fresh t ~ N(0, I): returns
        (images, w, wp, synthesis of wp, extras); extras holds t and, with the pair term, the
        images G(z, t') of the same z, mixing and noise with other codes t'."""
        generator = nnx.merge(self._graphdefs[0], params, buffers)
        t_key, pair_key = jax.random.split(jax.random.fold_in(key, 1))
        t = _constrain(jax.random.normal(t_key, (batch, self.t_dim)), sharding)

        def render(t):
            conditioned = _Conditioned(generator, t)
            return style_mixed_pass(conditioned, key, batch, self.style_mixing_prob, sharding)

        images, w, wp, synthesize = render(t)
        extras = {"t": t}
        if self.pair_weight:
            extras["t_pair"] = _constrain(jax.random.normal(pair_key, t.shape), sharding)
            extras["pair_images"] = render(extras["t_pair"])[0]
        return images, w, wp, synthesize, extras

    def _generator_loss(self, d_params, d_buffers, generated):
        images, extras = generated[0], generated[4]
        outputs = self._outputs(d_params, d_buffers, images)
        adversarial = nonsaturating_loss(outputs[:, :1])
        projection = projection_error(outputs[:, 1:], extras["t"])
        loss = adversarial + self.proj_weight * projection
        terms = {"g_adversarial": adversarial, "g_projection": projection}
        if self.pair_weight:
            paired = self._outputs(d_params, d_buffers, extras["pair_images"])[:, 1:]
            pair = projection_error(paired - outputs[:, 1:], extras["t_pair"] - extras["t"])
            loss = loss + self.pair_weight * pair
            terms["g_pair"] = pair
        return loss, terms

    def _discriminator_loss(self, d_params, d_buffers, generated, reals):
        fake_outputs = self._outputs(d_params, d_buffers, generated[0])
        real_logits = self._discriminate(d_params, d_buffers, reals)
        adversarial, terms = logistic_loss(real_logits, fake_outputs[:, :1])
        projection = projection_error(fake_outputs[:, 1:], generated[4]["t"])
        loss = adversarial + self.proj_weight * projection
        return loss, {**terms, "d_projection": projection}
