"""TrGAN (Zha, Shen, Zhou, "Unsupervised Image Transformation Learning via Generative
Adversarial Networks", arXiv 2103.07751): a StyleGAN2 whose generator G(z, t) also reads a
code t of a transformation space that the discriminator's projection head P maps images into.

Re-derived from the abstract, README and project page: the paper gives no equations and the
authors released no code (see docs PAPERS.md section 1). What the sources fix: one space T is
shared by G and D, images are projected into it by D, G is guided by points of it, and the
difference of two projected points is a transformation. Decisions taken here, with reasons:
  - t enters the style path of every layer additively, after truncation:
    wp_l = trunc(w)_l + A_l t, with A = `transformation`, one bias-free equalized dense layer
    (t_dim -> num_layers * w_dim). Per-layer offsets equal concatenating [w, t] before each
    layer's style affine (the two readings PAPERS.md proposes); every layer so that t can
    change appearance (season, light) and content (clouds, shape), as the demos do. Being
    linear, G(z, t + a * d) is the code of G(z, t) plus a * A d, so a real image inverted in
    W+ (which absorbs its own t) is edited by the same offset: no estimate of its t is needed.
    The alternative, t concatenated to z before the mapping, would make t interact with the
    content non-linearly but leave real images editable only through Z inversion.
  - P is a second linear head on the discriminator's last hidden features: the last dense
    layer has 1 + t_dim outputs, the realness score and then P(x), as genforce's conditional
    PGGAN discriminator returns its score and then its label logits.
  - T is unnormalised R^t_dim, sampled t ~ N(0, I) in training; t_dim = 32 by default (no
    dimension is published; PAPERS.md suggests 8-64).
  - P must be a function of one image (a pair is projected to define an edit), so the TrGAN
    configs disable minibatch-stddev; with it on, P(x) depends on the rest of the batch.
`t=None` means t = 0 everywhere (the mean transformation), so every StyleGAN2 tool (synthesize,
invert, sefa) works on a TrGAN generator as it is.
"""

from flax import nnx

from jgan.errors import InputError
from jgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from jgan.nn import EqualizedDense


def _check_t_dim(t_dim):
    if isinstance(t_dim, bool) or not isinstance(t_dim, int) or t_dim < 1:
        raise InputError(f"t_dim must be a positive integer; got {t_dim!r}")


class TrGANGenerator(StyleGAN2Generator):
    """StyleGAN2 generator G(z, t); see the module docstring. Other arguments as
    `StyleGAN2Generator`."""

    arch = "trgan"

    def __init__(self, resolution, t_dim=32, *, rngs: nnx.Rngs, **stylegan2):
        _check_t_dim(t_dim)
        super().__init__(resolution, rngs=rngs, **stylegan2)
        self._remember_config(**self.config, t_dim=t_dim)
        self.t_dim = t_dim
        self.transformation = EqualizedDense(
            t_dim,
            self.num_layers * self.w_space_dim,
            gain=1.0,
            use_bias=False,
            use_wscale=self.config["use_wscale"],
            rngs=rngs,
        )

    def t_offset(self, t):
        """The per-layer code offsets A t (N, num_layers, w_dim) of codes t (N, t_dim)."""
        if t.ndim != 2 or t.shape[1] != self.t_dim:
            raise InputError(f"t codes must have shape (N, {self.t_dim}); got {tuple(t.shape)}")
        return self.transformation(t).reshape(t.shape[0], self.num_layers, self.w_space_dim)

    def generate(
        self,
        codes,
        *,
        space="z",
        t=None,
        label=None,
        trunc_psi=None,
        trunc_layers=None,
        noise_mode="const",
        key=None,
    ):
        """G(codes, t) -> {'w', 'wp', 'image'}: the codes' per-layer codes (truncated when asked,
        as `StyleGAN2Generator.generate`) shifted by A t; 'wp' is what the synthesis read.
        W+ codes are shifted as given, so G(wp, t) = G(wp + A t, 0)."""
        synthesis = dict(noise_mode=noise_mode, key=key)
        if t is None:
            return super().generate(
                codes,
                space=space,
                label=label,
                trunc_psi=trunc_psi,
                trunc_layers=trunc_layers,
                **synthesis,
            )
        if space == "z":
            w = self.mapping(codes, label)
            return self.generate(
                w, space="w", t=t, trunc_psi=trunc_psi, trunc_layers=trunc_layers, **synthesis
            )
        if space == "w":
            if codes.ndim != 2 or codes.shape[1] != self.truncation.w_avg.shape[0]:
                raise InputError(
                    f"W codes must have shape (N, {self.truncation.w_avg.shape[0]}); "
                    f"got {tuple(codes.shape)}"
                )
            wp = self.truncation.broadcast(codes)
            if trunc_psi is not None:
                wp = self.truncation(wp, trunc_psi, trunc_layers)
            return {**self.generate(wp, space="wp", t=t, **synthesis), "w": codes}
        if space != "wp":
            raise InputError(f"space must be one of {self.latent_spaces}; got {space!r}")
        if t.shape[0] != codes.shape[0]:
            raise InputError(f"t holds {t.shape[0]} codes for {codes.shape[0]} latent codes")
        return super().generate(
            codes + self.t_offset(t).astype(codes.dtype), space="wp", **synthesis
        )


class TrGANDiscriminator(StyleGAN2Discriminator):
    """StyleGAN2 discriminator with the projection head: images -> (N, 1 + t_dim), the realness
    logit then P(x). Other arguments as `StyleGAN2Discriminator` (unconditional)."""

    arch = "trgan"

    def __init__(self, resolution, t_dim=32, *, rngs: nnx.Rngs, **stylegan2):
        _check_t_dim(t_dim)
        if stylegan2.get("label_size", 0) or stylegan2.get("cmap_dim") is not None:
            raise InputError("a TrGAN discriminator takes no labels (label_size 0, no cmap_dim)")
        super().__init__(resolution, rngs=rngs, **stylegan2)
        self._remember_config(**self.config, t_dim=t_dim)
        self.t_dim = t_dim
        name = f"layer{2 * self.num_blocks}"  # the last dense layer: score -> score and P(x)
        hidden = getattr(self, name).weight.shape[1]
        use_wscale = self.config["use_wscale"]
        head = EqualizedDense(hidden, 1 + t_dim, gain=1.0, use_wscale=use_wscale, rngs=rngs)
        setattr(self, name, head)

    def score(self, images):
        """Realness logits (N, 1)."""
        return self(images)[:, :1]

    def project(self, images):
        """P(images): the images' points (N, t_dim) of the transformation space."""
        return self(images)[:, 1:]
