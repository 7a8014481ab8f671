"""StyleGAN (v1) generator and discriminator in the genforce layout.

Karras et al., "A Style-Based Generator Architecture for Generative Adversarial Networks"
(arXiv 1812.04948); module and parameter names follow genforce's `models/stylegan_generator.py`
and `stylegan_discriminator.py`, so a genforce model-zoo state dict loads directly.

Generator: mapping (8 dense + lrelu, lr_mul 0.01, weight gain sqrt(2)) -> w -> per-layer codes
wp -> synthesis from a learned 4x4 constant. Every synthesis layer is
  [2x nearest upsampling + conv 3x3 | fused stride-2 up-conv] -> blur (upsampling layers only)
  -> + noise * weight -> + bias -> lrelu(0.2) -> instance norm -> x * (s[:C] + 1) + s[C:]
with the style s = affine(w) (weight gain 1) or given directly (Y space, as GH-Feat feeds it).
`layer0` has no conv: the constant goes straight into that epilogue. A 1x1 ToRGB `output{k}`
per resolution; the last one makes the image, the lower ones are blended in by `lod` during
progressive training.

Discriminator: FromRGB `input{k}` per resolution; per block conv 3x3, then blur + conv 3x3 +
2x average pooling (or the fused stride-2 down-conv); at 4x4 minibatch-stddev, conv 3x3 and two
dense layers; all with lrelu(0.2) and weight gain sqrt(2) except the last dense (gain 1).

`fused_scale='auto'` fuses the resampling into the conv from resolution 128 up, as genforce
(and NVIDIA's official models) do.
"""

import numbers

import jax
import jax.numpy as jnp
from flax import nnx

from jgan.errors import InputError
from jgan.models.base import Discriminator, channel_table
from jgan.models.latent import Mapping, StyleGenerator, Truncation
from jgan.nn import (
    SQRT2,
    Buffer,
    EqualizedConv,
    EqualizedDense,
    avg_pool2x,
    blur,
    conv2d,
    conv_transpose2d,
    instance_norm,
    lrelu,
    minibatch_stddev,
    noise_map,
    style_modulate,
    upsample_nearest,
)

RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)
FUSED_SCALE_OPTIONS = (True, False, "auto")
NOISE_TYPES = ("spatial", "channel")
INIT_RES = 4
AUTO_FUSED_MIN_RES = 128
"""`fused_scale='auto'` fuses the resampling at this resolution and above."""


def _check(resolution, fused_scale, fmaps_base, fmaps_max, image_channels, label_size):
    if resolution not in RESOLUTIONS:
        raise InputError(f"StyleGAN resolution must be one of {RESOLUTIONS}; got {resolution!r}")
    if not (fused_scale is True or fused_scale is False or fused_scale == "auto"):
        raise InputError(f"fused_scale must be one of {FUSED_SCALE_OPTIONS}; got {fused_scale!r}")
    for name, value in [
        ("image_channels", image_channels),
        ("fmaps_base", fmaps_base),
        ("fmaps_max", fmaps_max),
    ]:
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer; got {value!r}")
    if not isinstance(label_size, int) or label_size < 0:
        raise InputError(f"label_size must be a non-negative integer; got {label_size!r}")
    if fmaps_base // resolution < 1:
        raise InputError(
            f"fmaps_base {fmaps_base} leaves no feature maps at resolution {resolution}; "
            "it must be at least the resolution"
        )


def _fused(fused_scale, res):
    return res >= AUTO_FUSED_MIN_RES if fused_scale == "auto" else fused_scale


def _num_blocks(resolution):
    """Resolutions 4, 8, ..., resolution: one block each."""
    return resolution.bit_length() - INIT_RES.bit_length() + 1


def _four_tap(weight):
    """The kernel summed over its four one-pixel shifts in a (k+1)x(k+1) window (OIHW)."""
    w = jnp.pad(weight, ((0, 0), (0, 0), (1, 1), (1, 1)))
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


def fused_upscale_conv(x, weight):
    """genforce's fused 2x up-conv of NHWC `x` with the (scaled) OIHW 3x3 `weight`.

    The four-tap 4x4 kernel, read as a conv-transpose kernel (in, out, 4, 4), in a stride-2
    transposed conv with padding 1 (TF's `upscale2d_conv2d`). Equals nearest upsampling followed
    by a 3x3 conv with the spatially flipped weight.
    """
    return conv_transpose2d(x, _four_tap(weight).transpose(1, 0, 2, 3), stride=2, padding=1)


def fused_conv_downscale(x, weight):
    """genforce's fused conv + 2x down of NHWC `x` with the (scaled) OIHW 3x3 `weight`.

    The four-tap 4x4 kernel / 4 in a stride-2 conv with padding 1 (TF's `conv2d_downscale2d`);
    equals the 3x3 conv followed by 2x2 average pooling.
    """
    return conv2d(x, _four_tap(weight) * 0.25, stride=2, padding=1)


def _lod_value(lod, buffer, max_lod):
    """A Python lod (checked against [0, max_lod]) or a traced one (the stored buffer by default).

    A traced lod cannot be checked under jit; the blend weights clip it to the valid range.
    """
    if lod is None:
        return buffer[...]
    if isinstance(lod, numbers.Real):
        if not 0 <= lod <= max_lod:
            raise InputError(f"lod must lie in [0, {max_lod}] for this model; got {lod}")
        return float(lod)
    return jnp.asarray(lod)


def _blend(new, old, alpha):
    """new * clip(alpha) + old * (1 - clip(alpha)); a Python alpha outside (0, 1) keeps one side,
    so the unused branch is dead code that XLA removes."""
    if isinstance(alpha, float):
        if alpha >= 1.0:
            return new
        if alpha <= 0.0:
            return old
    alpha = jnp.clip(jnp.asarray(alpha, new.dtype), 0.0, 1.0)
    return new * alpha + old * (1 - alpha)


class NoiseInput(nnx.Module):
    """genforce's `NoiseApplyingLayer`: x + noise * weight.

    'spatial' noise is one (H, W) map per sample scaled per channel (`noise` (1, 1, H, W),
    `weight` (C,)); 'channel' noise is one value per channel scaled per pixel (`noise`
    (1, C, 1, 1), `weight` (H, W)).
    """

    def __init__(self, resolution, channels, noise_type="spatial", *, rngs):
        self.noise_type = noise_type
        if noise_type == "spatial":
            shape, weight_shape = (1, 1, resolution, resolution), (channels,)
        else:
            shape, weight_shape = (1, channels, 1, 1), (resolution, resolution)
        self.noise = Buffer(jax.random.normal(rngs.params(), shape))
        self.weight = nnx.Param(jnp.zeros(weight_shape))

    def __call__(self, x, mode="const", key=None):
        weight = self.weight[...].astype(x.dtype)
        if self.noise_type == "spatial":
            return x + noise_map(self.noise[...], x.shape[0], mode, key, x.dtype) * weight
        # One value per channel: the (1, C, 1, 1) buffer read as a 1 x C map.
        channels = self.noise.shape[1]
        fixed = self.noise[...].reshape(1, 1, 1, channels)
        noise = noise_map(fixed, x.shape[0], mode, key, x.dtype)
        return x + noise.reshape(-1, 1, 1, channels) * weight[None, :, :, None]


class _StyleEpilogue:
    """What follows the conv in every synthesis layer: noise, bias, lrelu, instance norm and the
    style modulation (AdaIN) with the style from w (`style` affine) or given (Y space)."""

    def _init_epilogue(self, resolution, channels, w_space_dim, use_wscale, noise_type, rngs):
        self.channels = channels
        self.apply_noise = NoiseInput(resolution, channels, noise_type, rngs=rngs)
        self.style = EqualizedDense(
            w_space_dim, 2 * channels, gain=1.0, use_wscale=use_wscale, rngs=rngs
        )

    def get_style(self, code, space="wp"):
        """The (N, 2C) style of this layer from its W+ code, or the Y code cut to 2C."""
        return code[:, : 2 * self.channels] if space == "y" else self.style(code)

    def _epilogue(self, x, bias, code, space, noise_mode, key):
        x = self.apply_noise(x, noise_mode, key)
        x = lrelu(x + bias.astype(x.dtype))
        return style_modulate(instance_norm(x), self.get_style(code, space))


class ConstLayer(nnx.Module, _StyleEpilogue):
    """`layer0` with `const_input`: the learned constant `const` (1, C, 4, 4) and the epilogue."""

    def __init__(self, channels, w_space_dim, *, use_wscale, noise_type, rngs):
        self.const = nnx.Param(jnp.ones((1, channels, INIT_RES, INIT_RES)))
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self._init_epilogue(INIT_RES, channels, w_space_dim, use_wscale, noise_type, rngs)

    def __call__(self, code, *, space="wp", noise_mode="const", key=None):
        const = self.const[...].transpose(0, 2, 3, 1)
        x = jnp.broadcast_to(const, (code.shape[0],) + const.shape[1:]).astype(code.dtype)
        return self._epilogue(x, self.bias[...], code, space, noise_mode, key)


class SynthesisLayer(EqualizedConv, _StyleEpilogue):
    """A synthesis conv layer (genforce's `ConvBlock`): raw `weight` (out, in, k, k), `bias`,
    `apply_noise`, `style`.

    `upsample` doubles the resolution first (nearest, or fused into a transposed conv) and
    blurs after the conv. Without `const_input`, `layer0` is a 4x4 conv with padding 3 on the
    1x1 map w (`kernel_size=4, padding=3`).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        resolution,
        w_space_dim,
        *,
        kernel_size=3,
        padding=1,
        upsample=False,
        fused_scale=False,
        use_wscale=True,
        noise_type="spatial",
        rngs,
    ):
        self.padding = padding
        super().__init__(
            in_channels, out_channels, kernel_size, gain=SQRT2, use_wscale=use_wscale, rngs=rngs
        )
        self.upsample, self.fused_scale = upsample, upsample and fused_scale
        self._init_epilogue(resolution, out_channels, w_space_dim, use_wscale, noise_type, rngs)

    def __call__(self, x, code, *, space="wp", noise_mode="const", key=None):
        weight = self.scaled_weight()
        if self.fused_scale:
            x = fused_upscale_conv(x, weight)
        else:
            if self.upsample:
                x = upsample_nearest(x)
            x = conv2d(x, weight, padding=self.padding)
        if self.upsample:
            x = blur(x)
        return self._epilogue(x, self.scaled_bias(), code, space, noise_mode, key)


class Synthesis(nnx.Module):
    """genforce's `SynthesisModule`: `layer{i}` (two per resolution), ToRGB `output{k}`, `lod`.

    Called with W+ codes (N, num_layers, w_space_dim) or, with `space='y'`, per-layer style
    codes (N, num_layers, D >= y_space_dim) of which layer i reads the first 2 * C_i entries.
    """

    def __init__(
        self,
        resolution,
        w_space_dim,
        *,
        image_channels=3,
        final_tanh=False,
        const_input=True,
        fused_scale="auto",
        use_wscale=True,
        noise_type="spatial",
        fmaps_base=16 << 10,
        fmaps_max=512,
        channels=None,
        rngs,
    ):
        self.num_blocks = _num_blocks(resolution)
        self.num_layers = 2 * self.num_blocks
        self.w_space_dim, self.final_tanh = w_space_dim, final_tanh
        self.lod = Buffer(jnp.zeros(()))
        table = channel_table(channels, self.num_blocks)

        def nf(res):
            if table is not None:
                return table[_num_blocks(res) - 1]
            return min(fmaps_base // res, fmaps_max)

        options = dict(use_wscale=use_wscale, noise_type=noise_type, rngs=rngs)
        for block in range(self.num_blocks):
            res = INIT_RES << block
            if block > 0:
                first = SynthesisLayer(
                    nf(res // 2),
                    nf(res),
                    res,
                    w_space_dim,
                    upsample=True,
                    fused_scale=_fused(fused_scale, res),
                    **options,
                )
            elif const_input:
                first = ConstLayer(nf(res), w_space_dim, **options)
            else:
                first = SynthesisLayer(
                    w_space_dim,
                    nf(res),
                    res,
                    w_space_dim,
                    kernel_size=INIT_RES,
                    padding=INIT_RES - 1,
                    **options,
                )
            setattr(self, f"layer{2 * block}", first)
            setattr(
                self,
                f"layer{2 * block + 1}",
                SynthesisLayer(nf(res), nf(res), res, w_space_dim, **options),
            )
            output = EqualizedConv(
                nf(res), image_channels, 1, gain=1.0, use_wscale=use_wscale, rngs=rngs
            )
            setattr(self, f"output{block}", output)
        self.y_space_dim = 2 * max(nf(INIT_RES << block) for block in range(self.num_blocks))

    def styles(self, wp):
        """Y codes (N, num_layers, y_space_dim) of W+ codes: each layer's style affine of its
        code, zero-padded to twice the widest layer (the layout GH-Feat's encoder predicts)."""
        styles = []
        for i in range(self.num_layers):
            style = getattr(self, f"layer{i}").get_style(wp[:, i])
            styles.append(jnp.pad(style, ((0, 0), (0, self.y_space_dim - style.shape[1]))))
        return jnp.stack(styles, axis=1)

    def _check_space(self, space):
        if space == "y" and not isinstance(self.layer0, ConstLayer):
            raise InputError(
                "Y codes need a model with const_input=True: without it, layer0 convolves the "
                "W code itself"
            )

    def _layer(self, i, x, codes, *, space, noise_mode, key):
        """Layer i applied to `x` (None for layer0) with its code codes[:, i]."""
        layer = getattr(self, f"layer{i}")
        key = None if key is None else jax.random.fold_in(key, i)
        kwargs = dict(space=space, noise_mode=noise_mode, key=key)
        if i > 0:
            return layer(x, codes[:, i], **kwargs)
        if isinstance(layer, ConstLayer):
            return layer(codes[:, 0], **kwargs)
        return layer(codes[:, 0].reshape(-1, 1, 1, self.w_space_dim), codes[:, 0], **kwargs)

    def __call__(self, codes, *, lod=None, space="wp", noise_mode="const", key=None):
        """NHWC image of W+ (or Y) codes; `lod` blends in the lower-resolution ToRGB outputs."""
        self._check_space(space)
        lod = _lod_value(lod, self.lod, self.num_blocks - 1)
        x = image = None
        for i in range(self.num_layers):
            x = self._layer(i, x, codes, space=space, noise_mode=noise_mode, key=key)
            if i % 2:
                block = i // 2
                rgb = getattr(self, f"output{block}")(x)
                if image is None:
                    image = rgb
                else:
                    # genforce: the ToRGB of the block at lod `current` fades in as lod goes
                    # from current + 1 down to current; below, the upsampled image is kept.
                    current = self.num_blocks - 1 - block
                    image = _blend(rgb, upsample_nearest(image), current + 1 - lod)
        return jnp.tanh(image) if self.final_tanh else image

    def features(self, codes, stop_layer, *, space="wp", noise_mode="const", key=None):
        """Output of `layer0` ... `layer{stop_layer - 1}`: the first half of the synthesis split
        at an intermediate layer (mGANprior's feature composition). It reads codes[:, :stop_layer]
        only; `key` gives the same noise as a whole forward pass."""
        self._check_space(space)
        self._check_split(stop_layer)
        x = None
        for i in range(stop_layer):
            x = self._layer(i, x, codes, space=space, noise_mode=noise_mode, key=key)
        return x

    def from_features(self, x, codes, start_layer, *, space="wp", noise_mode="const", key=None):
        """The second half: `layer{start_layer}` ... and the last ToRGB, as at lod 0 (the final
        resolution; the `lod` buffer is not read). It reads codes[:, start_layer:] only."""
        self._check_space(space)
        self._check_split(start_layer)
        for i in range(start_layer, self.num_layers):
            x = self._layer(i, x, codes, space=space, noise_mode=noise_mode, key=key)
        image = getattr(self, f"output{self.num_blocks - 1}")(x)
        return jnp.tanh(image) if self.final_tanh else image

    def _check_split(self, layer):
        last = self.num_layers  # splitting after the last layer leaves the ToRGB alone
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= last:
            raise InputError(
                f"the split layer of this synthesis must be an integer in [1, {last}]; "
                f"got {layer!r}"
            )


class StyleGANGenerator(StyleGenerator):
    """genforce's StyleGANGenerator; `generate()` accepts Z, W, W+ and Y (style) codes.

    Y codes (`space='y'`) are per-layer styles (N, num_layers, D >= y_space_dim), as genforce's
    `set_space_of_latent('y')` feeds them: layer i reads the first 2 * C_i entries. `y_codes(wp)`
    computes them from W+ codes. `channels` (jgan's addition) is a per-resolution width table
    that replaces the fmaps formula, see `channel_table`.
    """

    arch = "stylegan"
    latent_spaces = ("z", "w", "wp", "y")

    def __init__(
        self,
        resolution,
        z_space_dim=512,
        w_space_dim=512,
        label_size=0,
        mapping_layers=8,
        mapping_fmaps=512,
        mapping_lr_mul=0.01,
        repeat_w=True,
        image_channels=3,
        final_tanh=False,
        const_input=True,
        fused_scale="auto",
        use_wscale=True,
        noise_type="spatial",
        fmaps_base=16 << 10,
        fmaps_max=512,
        channels=None,
        *,
        rngs: nnx.Rngs,
    ):
        _check(resolution, fused_scale, fmaps_base, fmaps_max, image_channels, label_size)
        channels = channel_table(channels, _num_blocks(resolution))
        if noise_type not in NOISE_TYPES:
            raise InputError(f"noise_type must be one of {NOISE_TYPES}; got {noise_type!r}")
        if not isinstance(mapping_layers, int) or mapping_layers < 1:
            raise InputError(f"mapping_layers must be a positive integer; got {mapping_layers!r}")
        self._remember_config(
            resolution=resolution,
            z_space_dim=z_space_dim,
            w_space_dim=w_space_dim,
            label_size=label_size,
            mapping_layers=mapping_layers,
            mapping_fmaps=mapping_fmaps,
            mapping_lr_mul=mapping_lr_mul,
            repeat_w=repeat_w,
            image_channels=image_channels,
            final_tanh=final_tanh,
            const_input=const_input,
            fused_scale=fused_scale,
            use_wscale=use_wscale,
            noise_type=noise_type,
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
            channels=channels,
        )
        num_layers = 2 * _num_blocks(resolution)
        self.mapping = Mapping(
            z_space_dim,
            mapping_fmaps,
            w_space_dim if repeat_w else w_space_dim * num_layers,
            label_size=label_size,
            num_layers=mapping_layers,
            lr_mul=mapping_lr_mul,
            weight_gain=SQRT2,
            act_gain=1.0,
            use_wscale=use_wscale,
            rngs=rngs,
        )
        self.truncation = Truncation(w_space_dim, num_layers, repeat_w)
        self.synthesis = Synthesis(
            resolution,
            w_space_dim,
            image_channels=image_channels,
            final_tanh=final_tanh,
            const_input=const_input,
            fused_scale=fused_scale,
            use_wscale=use_wscale,
            noise_type=noise_type,
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
            channels=channels,
            rngs=rngs,
        )

    @property
    def y_space_dim(self):
        """Width of the Y codes: twice the widest synthesis layer."""
        return self.synthesis.y_space_dim

    def y_codes(self, wp):
        """Y (style) codes (N, num_layers, y_space_dim) of W+ codes."""
        return self.synthesis.styles(wp)

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
        """Codes in `space` -> {'w', 'wp', 'image'} (Z, W), {'wp', 'image'} (W+) or
        {'y', 'image'} (Y); truncation applies to Z and W codes only."""
        if space != "y":
            return super().generate(
                codes,
                space=space,
                label=label,
                trunc_psi=trunc_psi,
                trunc_layers=trunc_layers,
                noise_mode=noise_mode,
                key=key,
            )
        if (
            codes.ndim != 3
            or codes.shape[1] != self.num_layers
            or (codes.shape[2] < self.y_space_dim)
        ):
            raise InputError(
                f"Y codes must have shape (N, {self.num_layers}, D >= {self.y_space_dim}); "
                f"got {tuple(codes.shape)}"
            )
        image = self.synthesis(codes, space="y", noise_mode=noise_mode, key=key)
        return {"y": codes, "image": image}


class DiscriminatorLayer(EqualizedConv):
    """genforce's discriminator `ConvBlock`: [minibatch-stddev] -> [blur] -> conv + bias ->
    [2x average pooling | fused stride-2 conv] -> lrelu(0.2)."""

    def __init__(
        self,
        in_channels,
        out_channels,
        *,
        kernel_size=3,
        downsample=False,
        fused_scale=False,
        mbstd_group_size=0,
        mbstd_channels=1,
        use_wscale=True,
        rngs,
    ):
        self.mbstd_group_size, self.mbstd_channels = mbstd_group_size, mbstd_channels
        if mbstd_group_size > 1:
            in_channels += mbstd_channels
        super().__init__(
            in_channels, out_channels, kernel_size, gain=SQRT2, use_wscale=use_wscale, rngs=rngs
        )
        self.downsample, self.fused_scale = downsample, downsample and fused_scale

    def __call__(self, x):
        if self.mbstd_group_size > 1:
            x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_channels)
        if self.downsample:
            x = blur(x)
        weight = self.scaled_weight()
        if self.fused_scale:
            x = self.add_bias(fused_conv_downscale(x, weight))
        else:
            x = self.add_bias(conv2d(x, weight, padding=weight.shape[-1] // 2))
            if self.downsample:
                x = avg_pool2x(x)
        return lrelu(x)


class StyleGANDiscriminator(Discriminator):
    """genforce's StyleGANDiscriminator: NHWC images -> logits (N, 1).

    A conditional model (`label_size` > 0) computes one logit per class and returns their sum
    weighted by the label, sum(out * label), as genforce does. `lod` (default: the stored
    buffer) fades the FromRGB of the lower resolutions in, as in progressive training.
    """

    arch = "stylegan"

    def __init__(
        self,
        resolution,
        image_channels=3,
        label_size=0,
        fused_scale="auto",
        use_wscale=True,
        minibatch_std_group_size=4,
        minibatch_std_channels=1,
        fmaps_base=16 << 10,
        fmaps_max=512,
        *,
        rngs: nnx.Rngs,
    ):
        _check(resolution, fused_scale, fmaps_base, fmaps_max, image_channels, label_size)
        if not isinstance(minibatch_std_group_size, int) or minibatch_std_group_size < 0:
            raise InputError(
                "minibatch_std_group_size must be a non-negative integer (0 or 1 disable it); "
                f"got {minibatch_std_group_size!r}"
            )
        if not isinstance(minibatch_std_channels, int) or minibatch_std_channels < 1:
            raise InputError(
                f"minibatch_std_channels must be a positive integer; got {minibatch_std_channels!r}"
            )
        self._remember_config(
            resolution=resolution,
            image_channels=image_channels,
            label_size=label_size,
            fused_scale=fused_scale,
            use_wscale=use_wscale,
            minibatch_std_group_size=minibatch_std_group_size,
            minibatch_std_channels=minibatch_std_channels,
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
        )
        self.resolution, self.image_channels, self.label_size = (
            resolution,
            image_channels,
            label_size,
        )
        self.num_blocks = _num_blocks(resolution)
        self.lod = Buffer(jnp.zeros(()))

        def nf(res):
            return min(fmaps_base // res, fmaps_max)

        for block in range(self.num_blocks):
            res = resolution >> block
            from_rgb = DiscriminatorLayer(
                image_channels, nf(res), kernel_size=1, use_wscale=use_wscale, rngs=rngs
            )
            setattr(self, f"input{block}", from_rgb)
            if res > INIT_RES:
                conv = DiscriminatorLayer(nf(res), nf(res), use_wscale=use_wscale, rngs=rngs)
                down = DiscriminatorLayer(
                    nf(res),
                    nf(res // 2),
                    downsample=True,
                    fused_scale=_fused(fused_scale, res),
                    use_wscale=use_wscale,
                    rngs=rngs,
                )
            else:
                conv = DiscriminatorLayer(
                    nf(res),
                    nf(res),
                    mbstd_group_size=minibatch_std_group_size,
                    mbstd_channels=minibatch_std_channels,
                    use_wscale=use_wscale,
                    rngs=rngs,
                )
                down = EqualizedDense(
                    nf(res) * res * res, nf(res // 2), use_wscale=use_wscale, rngs=rngs
                )
            setattr(self, f"layer{2 * block}", conv)
            setattr(self, f"layer{2 * block + 1}", down)
        final = EqualizedDense(
            nf(INIT_RES // 2), max(label_size, 1), gain=1.0, use_wscale=use_wscale, rngs=rngs
        )
        setattr(self, f"layer{2 * self.num_blocks}", final)

    def __call__(self, images, label=None, lod=None):
        shape = (self.resolution, self.resolution, self.image_channels)
        if images.ndim != 4 or tuple(images.shape[1:]) != shape:
            raise InputError(
                f"images must have shape (N, {shape[0]}, {shape[1]}, {shape[2]}) (NHWC); "
                f"got {tuple(images.shape)}"
            )
        if self.label_size:
            if label is None or tuple(label.shape) != (images.shape[0], self.label_size):
                got = None if label is None else tuple(label.shape)
                raise InputError(
                    f"this conditional discriminator needs label= of shape "
                    f"(N, {self.label_size}); got {got}"
                )
        elif label is not None:
            raise InputError("this discriminator is unconditional (label_size 0); no label=")
        lod = _lod_value(lod, self.lod, self.num_blocks - 1)
        x = None
        for block in range(self.num_blocks):
            if block:
                images = avg_pool2x(images)
            rgb = getattr(self, f"input{block}")(images)
            # genforce: the FromRGB of the block at lod `block` fades in as lod goes from
            # block - 1 up to block; above, the input of the finer blocks is replaced.
            x = rgb if x is None else _blend(rgb, x, lod - block + 1)
            x = getattr(self, f"layer{2 * block}")(x)
            if block < self.num_blocks - 1:
                x = getattr(self, f"layer{2 * block + 1}")(x)
            else:  # dense on the NCHW-flattened 4x4 map, as genforce's view(N, -1)
                x = lrelu(getattr(self, f"layer{2 * block + 1}")(x.transpose(0, 3, 1, 2)))
        x = getattr(self, f"layer{2 * self.num_blocks}")(x)
        if self.label_size:
            x = jnp.sum(x * label.astype(x.dtype), axis=1, keepdims=True)
        return x
