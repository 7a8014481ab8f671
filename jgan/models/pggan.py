"""Progressive Growing of GANs (Karras et al. 2018), as genforce implements it.

Generator: z is pixel-normalised, viewed as a 1x1 map and expanded to 4x4 by a 4x4 conv with
padding 3 (TF's dense layer, which leaves the kernel spatially flipped against a dense
reshape); then per resolution two 3x3 convs (the first after 2x nearest upsampling, or a fused
transposed conv) and a 1x1 ToRGB `output{k}`. Every conv pixel-normalises its input. The
level of detail `lod` blends the ToRGB of neighbouring resolutions during progressive training.

Discriminator: per resolution a 1x1 FromRGB `input{k}`, then two 3x3 convs (the second
followed by 2x average pooling, or fused into a stride-2 conv); at 4x4 a minibatch-stddev
channel, a 3x3 conv and two dense layers giving the score and, for conditional models, the
label logits.

Parameter names and layouts are genforce's (genforce/genforce `models/pggan_*.py`), so a
genforce state dict loads as it is.
"""

import math
import numbers

import jax.numpy as jnp
from flax import nnx

from jgan.errors import InputError
from jgan.models.base import Discriminator, Generator, channel_table
from jgan.nn import (
    NOISE_MODES,
    SQRT2,
    Buffer,
    EqualizedConv,
    EqualizedDense,
    avg_pool2x,
    conv2d,
    conv_transpose2d,
    lrelu,
    minibatch_stddev,
    pixel_norm,
    upsample_nearest,
)

RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)
INIT_RES = 4


def _count(name, value, minimum=1):
    """`value` as an int, or an InputError saying what is allowed."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _check_sizes(resolution, fmaps_base):
    if resolution not in RESOLUTIONS:
        raise InputError(f"PGGAN resolution must be one of {RESOLUTIONS}; got {resolution!r}")
    if fmaps_base < resolution:
        raise InputError(
            f"fmaps_base {fmaps_base} leaves no feature maps at resolution {resolution}; "
            "it must be at least the resolution"
        )


def _four_tap(weight):
    """Sum of the kernel shifted to the four corners of a (k+1)x(k+1) window.

    A 3x3 conv on a 2x nearest-upsampled map (or before 2x average pooling, with a 1/4) equals
    a stride-2 (transposed) conv with this 4x4 kernel: genforce's `fused_scale`.
    """
    w = jnp.pad(weight, ((0, 0), (0, 0), (1, 1), (1, 1)))
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


def _clip01(value):
    if isinstance(value, float):
        return min(max(value, 0.0), 1.0)
    return jnp.clip(value, 0.0, 1.0)


def _blend(new, old, alpha):
    """new * alpha + old * (1 - alpha); a static alpha of 0 or 1 keeps one side only, so the
    unused branch is dead code that XLA removes."""
    if isinstance(alpha, float):
        if alpha >= 1.0:
            return new
        if alpha <= 0.0:
            return old
    alpha = jnp.asarray(alpha, new.dtype)
    return new * alpha + old * (1 - alpha)


def _lod_value(lod, buffer, max_lod):
    """A Python lod (checked against [0, max_lod]) or a traced one (the buffer by default).

    The blend arithmetic clips a traced lod to [0, max_lod], since it cannot raise under jit.
    """
    if lod is None:
        return buffer[...]
    if isinstance(lod, numbers.Real):
        if not 0 <= lod <= max_lod:
            raise InputError(f"lod must lie in [0, {max_lod}] for this model; got {lod}")
        return float(lod)
    return jnp.asarray(lod)


class ConvBlock(nnx.Module):
    """Generator block: pixel norm -> [2x nearest upsampling] -> conv + bias -> lrelu(0.2).

    With `upsample` and `fused_scale` the upsampling and the 3x3 conv become one stride-2
    transposed conv whose raw weight has genforce's conv-transpose layout (in, out, k, k);
    otherwise the weight is OIHW. Equalized lr: weight * gain / sqrt(in * k * k) at run time.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=3,
        padding=1,
        *,
        upsample=False,
        fused_scale=False,
        use_wscale=True,
        wscale_gain=SQRT2,
        linear=False,
        rngs,
    ):
        self.upsample = upsample
        self.transposed = upsample and fused_scale
        self.padding = padding
        self.linear = linear
        if self.transposed:
            shape = (in_channels, out_channels, kernel_size, kernel_size)
        else:
            shape = (out_channels, in_channels, kernel_size, kernel_size)
        wscale = wscale_gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.wscale = wscale if use_wscale else 1.0
        init_std = 1.0 if use_wscale else wscale
        self.weight = nnx.Param(rngs.params.normal(shape) * init_std)
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def __call__(self, x):
        x = pixel_norm(x)
        weight = (self.weight[...] * self.wscale).astype(x.dtype)
        if self.transposed:
            x = conv_transpose2d(x, _four_tap(weight), stride=2, padding=1)
        else:
            if self.upsample:
                x = upsample_nearest(x)
            x = conv2d(x, weight, padding=self.padding)
        x = x + self.bias[...].astype(x.dtype)
        return x if self.linear else lrelu(x)


class PGGANGenerator(Generator):
    """The PGGAN generator (genforce `PGGANGenerator`, same arguments and defaults, plus
    `channels`: a per-resolution width table replacing the fmaps formula, see `channel_table`).

    `lod` (a Buffer, 0 in released models) selects the output resolution in progressive
    training: resolution / 2**lod, nearest-upsampled to `resolution`, with a linear blend of
    two neighbouring ToRGB outputs for a fractional lod.
    """

    arch = "pggan"

    def __init__(
        self,
        resolution,
        z_space_dim=512,
        image_channels=3,
        final_tanh=False,
        label_size=0,
        fused_scale=False,
        use_wscale=True,
        fmaps_base=16 << 10,
        fmaps_max=512,
        channels=None,
        *,
        rngs: nnx.Rngs,
    ):
        z_space_dim = _count("z_space_dim", z_space_dim)
        image_channels = _count("image_channels", image_channels)
        label_size = _count("label_size", label_size, 0)
        fmaps_base = _count("fmaps_base", fmaps_base)
        fmaps_max = _count("fmaps_max", fmaps_max)
        _check_sizes(resolution, fmaps_base)
        self.num_blocks = int(math.log2(resolution // INIT_RES)) + 1
        self.channels = channel_table(channels, self.num_blocks)
        self._remember_config(
            resolution=resolution,
            z_space_dim=z_space_dim,
            image_channels=image_channels,
            final_tanh=bool(final_tanh),
            label_size=label_size,
            fused_scale=bool(fused_scale),
            use_wscale=bool(use_wscale),
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
            channels=self.channels,
        )
        self.resolution = resolution
        self.z_space_dim = z_space_dim
        self.label_size = label_size
        self.image_channels = image_channels
        self.final_tanh = bool(final_tanh)
        self.fmaps_base, self.fmaps_max = fmaps_base, fmaps_max

        self.lod = Buffer(jnp.zeros(()))
        wscale = {"use_wscale": bool(use_wscale), "rngs": rngs}
        for block in range(self.num_blocks):
            res = INIT_RES << block
            if block == 0:
                first = ConvBlock(
                    z_space_dim + label_size, self.get_nf(res), INIT_RES, INIT_RES - 1, **wscale
                )
            else:
                first = ConvBlock(
                    self.get_nf(res // 2),
                    self.get_nf(res),
                    upsample=True,
                    fused_scale=bool(fused_scale),
                    **wscale,
                )
            setattr(self, f"layer{2 * block}", first)
            setattr(
                self,
                f"layer{2 * block + 1}",
                ConvBlock(self.get_nf(res), self.get_nf(res), **wscale),
            )
            to_rgb = ConvBlock(
                self.get_nf(res), image_channels, 1, 0, wscale_gain=1.0, linear=True, **wscale
            )
            setattr(self, f"output{block}", to_rgb)

    def get_nf(self, res):
        """Feature maps at resolution `res`: min(fmaps_base // res, fmaps_max), or the entry
        of the `channels` table when one is given."""
        if self.channels is not None:
            return self.channels[int(math.log2(res // INIT_RES))]
        return min(self.fmaps_base // res, self.fmaps_max)

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
        lod=None,
    ):
        """Z codes (N, z_space_dim) -> {'image': (N, H, W, C)}.

        PGGAN has only the Z space: another `space`, or a `trunc_psi`, is an InputError
        (genforce silently ignores truncation; jgan refuses it, so a truncated request never
        returns untruncated images). As for the style-based models, `trunc_layers` means
        nothing without `trunc_psi`. The model has no noise inputs, so `noise_mode` (checked)
        and `key` change nothing. `label` (N, label_size) is required by conditional models
        and refused by the others. `lod=None` uses the stored `lod` buffer as a traced value;
        a Python number in [0, num_blocks - 1] or a traced value may be given instead.
        """
        if space != "z":
            raise InputError(f"PGGAN has only the Z latent space; got space={space!r}")
        if trunc_psi is not None:
            raise InputError("PGGAN has no W space, so it cannot truncate: leave trunc_psi None")
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise_mode must be one of {NOISE_MODES}; got {noise_mode!r}")
        x = self._latent_input(codes, label)
        lod = _lod_value(lod, self.lod, self.num_blocks - 1)
        image = None
        for block in range(self.num_blocks):
            x = getattr(self, f"layer{2 * block}")(x)
            x = getattr(self, f"layer{2 * block + 1}")(x)
            rgb = getattr(self, f"output{block}")(x)
            if image is None:
                image = rgb
            else:
                # genforce: alpha = ceil(lod) - lod while lod lies within one level above
                # this block's, 1 below it, 0 further above (only upsampled).
                block_lod = self.num_blocks - 1 - block
                image = _blend(rgb, upsample_nearest(image), _clip01(block_lod + 1 - lod))
        return {"image": jnp.tanh(image) if self.final_tanh else image}

    def _latent_input(self, codes, label):
        """Z codes (N, z_space_dim) [+ label] -> the 1x1 input map of layer0 (N, 1, 1, C)."""
        z = jnp.asarray(codes)
        if z.ndim != 2 or z.shape[1] != self.z_space_dim:
            raise InputError(
                f"z codes must have shape (N, {self.z_space_dim}); got {tuple(z.shape)}"
            )
        z = pixel_norm(z) * math.sqrt(self.z_space_dim)
        if self.label_size:
            expected = (z.shape[0], self.label_size)
            if label is None or tuple(jnp.shape(label)) != expected:
                got = None if label is None else tuple(jnp.shape(label))
                raise InputError(
                    f"this conditional PGGAN needs label= of shape {expected}; got {got}"
                )
            z = jnp.concatenate([z, jnp.asarray(label, z.dtype)], axis=1)
        elif label is not None:
            raise InputError("this PGGAN is unconditional (label_size 0); do not pass label=")
        return z[:, None, None, :]

    def features(self, codes, stop_layer, label=None):
        """Output of `layer0` ... `layer{stop_layer - 1}` for Z codes: the first half of the
        generator split at an intermediate layer, as mGANprior composes features there."""
        self._check_split(stop_layer)
        x = self._latent_input(codes, label)
        for i in range(stop_layer):
            x = getattr(self, f"layer{i}")(x)
        return x

    def from_features(self, x, start_layer):
        """The second half: `layer{start_layer}` ... and the last ToRGB, as at lod 0 (the final
        resolution; the `lod` buffer is not read)."""
        self._check_split(start_layer)
        for i in range(start_layer, 2 * self.num_blocks):
            x = getattr(self, f"layer{i}")(x)
        image = getattr(self, f"output{self.num_blocks - 1}")(x)
        return jnp.tanh(image) if self.final_tanh else image

    def _check_split(self, layer):
        last = 2 * self.num_blocks  # splitting after the last conv leaves the ToRGB alone
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= last:
            raise InputError(
                f"the split layer of this PGGAN must be an integer in [1, {last}]; got {layer!r}"
            )


class DiscriminatorBlock(EqualizedConv):
    """Discriminator conv: [minibatch stddev] -> conv + bias -> lrelu(0.2) -> [2x avg pool].

    With `downsample` and `fused_scale` the conv and pooling become one stride-2 conv with the
    four-tap kernel / 4 (same OIHW raw weight).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=3,
        *,
        downsample=False,
        fused_scale=False,
        use_wscale=True,
        mbstd_group_size=0,
        rngs,
    ):
        extra = 1 if mbstd_group_size > 1 else 0
        super().__init__(
            in_channels + extra, out_channels, kernel_size, use_wscale=use_wscale, rngs=rngs
        )
        self.mbstd_group_size = mbstd_group_size if extra else 0
        self.downsample = downsample
        self.strided = downsample and fused_scale

    def __call__(self, x):
        if self.mbstd_group_size:
            x = minibatch_stddev(x, self.mbstd_group_size)
        weight = self.scaled_weight().astype(x.dtype)
        if self.strided:
            x = conv2d(x, _four_tap(weight) * 0.25, stride=2, padding=1)
        else:
            x = conv2d(x, weight, padding=weight.shape[-1] // 2)
        x = lrelu(self.add_bias(x))
        return avg_pool2x(x) if self.downsample and not self.strided else x


class PGGANDiscriminator(Discriminator):
    """The PGGAN discriminator (genforce `PGGANDiscriminator`, same arguments and defaults).

    Returns (N, 1 + label_size) logits: the realness score, then (conditional models) the
    label logits; it takes no label. The minibatch-stddev group is min(group size, N), so a
    sample's score depends on the rest of its batch (N must be divisible by the group).
    """

    arch = "pggan"

    def __init__(
        self,
        resolution,
        image_channels=3,
        label_size=0,
        fused_scale=False,
        use_wscale=True,
        minibatch_std_group_size=16,
        fmaps_base=16 << 10,
        fmaps_max=512,
        *,
        rngs: nnx.Rngs,
    ):
        image_channels = _count("image_channels", image_channels)
        label_size = _count("label_size", label_size, 0)
        minibatch_std_group_size = _count("minibatch_std_group_size", minibatch_std_group_size, 0)
        fmaps_base = _count("fmaps_base", fmaps_base)
        fmaps_max = _count("fmaps_max", fmaps_max)
        _check_sizes(resolution, fmaps_base)
        self._remember_config(
            resolution=resolution,
            image_channels=image_channels,
            label_size=label_size,
            fused_scale=bool(fused_scale),
            use_wscale=bool(use_wscale),
            minibatch_std_group_size=minibatch_std_group_size,
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
        )
        self.resolution = resolution
        self.image_channels = image_channels
        self.label_size = label_size
        self.minibatch_std_group_size = minibatch_std_group_size
        self.fmaps_base, self.fmaps_max = fmaps_base, fmaps_max
        self.num_blocks = int(math.log2(resolution // INIT_RES)) + 1

        self.lod = Buffer(jnp.zeros(()))
        wscale = {"use_wscale": bool(use_wscale), "rngs": rngs}
        for block in range(self.num_blocks):
            res = resolution >> block
            nf = self.get_nf(res)
            setattr(self, f"input{block}", DiscriminatorBlock(image_channels, nf, 1, **wscale))
            if res > INIT_RES:
                second = DiscriminatorBlock(
                    nf,
                    self.get_nf(res // 2),
                    downsample=True,
                    fused_scale=bool(fused_scale),
                    **wscale,
                )
                first = DiscriminatorBlock(nf, nf, **wscale)
            else:
                first = DiscriminatorBlock(
                    nf, nf, mbstd_group_size=minibatch_std_group_size, **wscale
                )
                second = EqualizedDense(nf * res * res, self.get_nf(res // 2), **wscale)
            setattr(self, f"layer{2 * block}", first)
            setattr(self, f"layer{2 * block + 1}", second)
        score = EqualizedDense(self.get_nf(INIT_RES // 2), 1 + label_size, gain=1.0, **wscale)
        setattr(self, f"layer{2 * self.num_blocks}", score)

    def get_nf(self, res):
        """Feature maps at resolution `res`: min(fmaps_base // res, fmaps_max)."""
        return min(self.fmaps_base // res, self.fmaps_max)

    def __call__(self, images, label=None, lod=None):
        """Images (N, H, W, C) in [-1, 1] -> logits (N, 1 + label_size).

        `lod=None` uses the stored `lod` buffer (genforce always uses the buffer and ignores
        its argument; jgan honours an explicit `lod`, a Python number or a traced value).
        """
        if label is not None:
            raise InputError(
                "the PGGAN discriminator takes no label: it returns (N, 1 + label_size) "
                "logits, the score followed by the label logits"
            )
        images = jnp.asarray(images)
        expected = (self.resolution, self.resolution, self.image_channels)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise InputError(
                f"images must have shape (N, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"(NHWC); got {tuple(images.shape)}"
            )
        group = min(self.minibatch_std_group_size, images.shape[0])
        if group > 1 and images.shape[0] % group:
            raise InputError(
                f"the minibatch-stddev layer groups {group} samples: the batch "
                f"({images.shape[0]}) must be a multiple of it"
            )
        lod = _lod_value(lod, self.lod, self.num_blocks - 1)

        x = None
        for block in range(self.num_blocks):
            if block:
                images = avg_pool2x(images)
            features = getattr(self, f"input{block}")(images)
            # genforce: FromRGB at the block whose level holds lod, blended in with weight
            # lod - floor(lod) one block further when lod is fractional.
            x = features if x is None else _blend(features, x, _clip01(lod - block + 1))
            x = getattr(self, f"layer{2 * block}")(x)
            second = getattr(self, f"layer{2 * block + 1}")
            if block < self.num_blocks - 1:
                x = second(x)
            else:  # the dense layer flattens in genforce's NCHW order
                x = lrelu(second(x.transpose(0, 3, 1, 2)))
        return getattr(self, f"layer{2 * self.num_blocks}")(x)
