"""StyleGAN2 (config F) generator and discriminator in the genforce layout.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (arXiv 1912.04958);
module and parameter names follow genforce's `models/stylegan2_generator.py` and
`stylegan2_discriminator.py`, so a genforce model-zoo state dict loads directly.

Generator: mapping (8 dense, lr_mul 0.01) -> w -> per-layer codes wp -> synthesis from a 4x4
constant. Every layer is a modulated 3x3 conv (demodulated, eps 1e-8) followed by
`x + noise * noise_strength`, bias and lrelu * sqrt(2); the first conv of each resolution is
a stride-2 transposed conv followed by the [1, 3, 3, 1] FIR (gain 4). The three
architectures differ in how the image is formed:
  skip   -- a ToRGB `output{k}` at every resolution; image = rgb + FIR-upsample(image).
  origin -- only the last ToRGB.
  resnet -- only the last ToRGB, and every block adds a 1x1 up-conv of its input
            (`skip_layer{k}`), (x + skip) / sqrt(2). genforce's own resnet generator is broken
            by a module-name collision (its skip conv overwrites `layer{2k-1}`), so this follows
            NVIDIA's resnet block and names the skip convs `skip_layer{k}` as genforce's forward
            pass reads them.

Discriminator: FromRGB, per resolution conv 3x3 then FIR + stride-2 conv 3x3, then
minibatch-stddev, conv, two dense layers. resnet adds a FIR + stride-2 1x1 skip conv per
block; skip adds a FromRGB of the FIR-downsampled image at every resolution.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jgan.errors import InputError
from jgan.models.base import Discriminator
from jgan.models.latent import Mapping, StyleGenerator, Truncation
from jgan.nn import (
    NOISE_MODES,
    SQRT2,
    Buffer,
    EqualizedConv,
    EqualizedDense,
    conv2d,
    downsample2d,
    filter2d,
    lrelu,
    make_kernel,
    minibatch_stddev,
    modulated_conv2d,
    noise_map,
    upconv2d,
    upsample2d,
)

RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)
ARCHITECTURES = ("resnet", "skip", "origin")
INIT_RES = 4
FIR_TAPS = (1, 3, 3, 1)
UP_KERNEL = make_kernel(FIR_TAPS, 4.0)
"""The FIR after every 2x upsampling (gain 4 = factor^2 keeps the mean)."""
DOWN_KERNEL = make_kernel(FIR_TAPS, 1.0)
"""The FIR before every 2x downsampling."""


def _check(resolution, architecture, label_size, **positive):
    if resolution not in RESOLUTIONS:
        raise InputError(f"resolution must be one of {RESOLUTIONS}; got {resolution!r}")
    if architecture not in ARCHITECTURES:
        raise InputError(f"architecture must be one of {ARCHITECTURES}; got {architecture!r}")
    if not isinstance(label_size, int) or label_size < 0:
        raise InputError(f"label_size must be a non-negative integer; got {label_size!r}")
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer; got {value!r}")


def _block_resolutions(resolution):
    """Resolutions 4, 8, ..., `resolution`; block k works at the k-th."""
    return [INIT_RES << k for k in range(int(np.log2(resolution // INIT_RES)) + 1)]


def _nchw_flatten(x):
    """NHWC -> (N, C*H*W) in PyTorch's order, which the stored dense weights expect."""
    return x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)


class ConstInput(nnx.Module):
    """The learned 4x4 input `const` (1, C, 4, 4), shared by all samples."""

    def __init__(self, channels, *, rngs):
        self.const = nnx.Param(jax.random.normal(rngs.params(), (1, channels, INIT_RES, INIT_RES)))

    def __call__(self, batch):
        x = self.const[...].transpose(0, 2, 3, 1)
        return jnp.broadcast_to(x, (batch, *x.shape[1:]))


class ModulatedConv(EqualizedConv):
    """genforce's ModulateConvBlock: style affine, modulated conv, [noise], bias, activation.

    style = dense(w) / sqrt(w_dim) + bias + 1 scales the input channels; `grouped` only selects
    the computation path of the (mathematically identical) modulated convolution.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        w_dim,
        *,
        kernel_size=3,
        up=False,
        demodulate=True,
        noise_resolution=None,
        activate=True,
        use_wscale=True,
        grouped=False,
        rngs,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, gain=1.0, use_wscale=use_wscale, rngs=rngs
        )
        self.style = EqualizedDense(
            w_dim, in_channels, gain=1.0, use_wscale=use_wscale, bias_offset=1.0, rngs=rngs
        )
        self.up, self.demodulate, self.activate, self.grouped = up, demodulate, activate, grouped
        if noise_resolution is not None:
            shape = (1, 1, noise_resolution, noise_resolution)
            self.noise = Buffer(jax.random.normal(rngs.params(), shape))
            self.noise_strength = nnx.Param(jnp.zeros(()))

    def __call__(self, x, w, noise=None):
        """NHWC `x`, this layer's code `w` (N, w_dim), noise (N, H, W, 1) or None."""
        x = modulated_conv2d(
            x,
            self.scaled_weight(),
            self.style(w),
            demodulate=self.demodulate,
            up=self.up,
            up_kernel=UP_KERNEL if self.up else None,
            grouped=self.grouped,
        )
        if noise is not None:
            x = x + noise * self.noise_strength[...].astype(x.dtype)
        x = self.add_bias(x)
        return lrelu(x, gain=SQRT2) if self.activate else x


class UpSkip(EqualizedConv):
    """The resnet generator's shortcut: 1x1 stride-2 transposed conv, FIR (gain 4), no bias."""

    def __init__(self, in_channels, out_channels, *, use_wscale=True, rngs):
        super().__init__(
            in_channels, out_channels, 1, gain=1.0, use_wscale=use_wscale, use_bias=False, rngs=rngs
        )

    def __call__(self, x):
        pad = UP_KERNEL.shape[0]  # taps + 1 - kernel size (1), split evenly
        return filter2d(upconv2d(x, self.scaled_weight()), UP_KERNEL, (pad // 2, pad // 2))


class Synthesis(nnx.Module):
    """wp (N, L, w_dim) -> NHWC image; see the module docstring for the three architectures."""

    def __init__(
        self,
        resolution,
        w_dim,
        *,
        image_channels,
        final_tanh,
        architecture,
        fused_modulate,
        demodulate,
        use_wscale,
        fmaps_base,
        fmaps_max,
        rngs,
    ):
        self.architecture, self.final_tanh = architecture, final_tanh
        resolutions = _block_resolutions(resolution)
        self.num_blocks = len(resolutions)
        self.num_layers = 2 * self.num_blocks

        def nf(res):
            return min(fmaps_base // res, fmaps_max)

        def conv(in_c, out_c, res, up=False):
            return ModulatedConv(
                in_c,
                out_c,
                w_dim,
                up=up,
                demodulate=demodulate,
                noise_resolution=res,
                use_wscale=use_wscale,
                grouped=fused_modulate,
                rngs=rngs,
            )

        def to_rgb(in_c):
            return ModulatedConv(
                in_c,
                image_channels,
                w_dim,
                kernel_size=1,
                demodulate=False,
                activate=False,
                use_wscale=use_wscale,
                grouped=fused_modulate,
                rngs=rngs,
            )

        self.early_layer = ConstInput(nf(INIT_RES), rngs=rngs)
        for block, res in enumerate(resolutions):
            if block == 0:
                self.layer0 = conv(nf(res), nf(res), res)
            else:
                in_c = nf(res // 2)
                setattr(self, f"layer{2 * block - 1}", conv(in_c, nf(res), res, up=True))
                setattr(self, f"layer{2 * block}", conv(nf(res), nf(res), res))
                if architecture == "resnet":
                    skip = UpSkip(in_c, nf(res), use_wscale=use_wscale, rngs=rngs)
                    setattr(self, f"skip_layer{block - 1}", skip)
            if architecture == "skip" or block == self.num_blocks - 1:
                setattr(self, f"output{block}", to_rgb(nf(res)))

    def __call__(self, wp, *, noise_mode="const", key=None):
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise_mode must be one of {NOISE_MODES}; got {noise_mode!r}")
        if noise_mode == "random" and key is None:
            raise InputError("noise_mode='random' needs a PRNG key (key=jax.random.key(...))")
        n = wp.shape[0]

        def layer(x, i):
            conv = getattr(self, f"layer{i}")
            layer_key = None if key is None else jax.random.fold_in(key, i)
            noise = noise_map(conv.noise[...], n, noise_mode, layer_key, x.dtype)
            return conv(x, wp[:, i], noise)

        x = layer(self.early_layer(n).astype(wp.dtype), 0)
        image = self.output0(x, wp[:, 1]) if self.architecture == "skip" else None
        for block in range(1, self.num_blocks):
            shortcut = x
            x = layer(layer(x, 2 * block - 1), 2 * block)
            if self.architecture == "resnet":
                x = (x + getattr(self, f"skip_layer{block - 1}")(shortcut)) / SQRT2
            if self.architecture == "skip":
                rgb = getattr(self, f"output{block}")(x, wp[:, 2 * block + 1])
                image = rgb + upsample2d(image, UP_KERNEL)
        if self.architecture != "skip":
            last = self.num_blocks - 1
            image = getattr(self, f"output{last}")(x, wp[:, self.num_layers - 1])
        return jnp.tanh(image) if self.final_tanh else image


class StyleGAN2Generator(StyleGenerator):
    """genforce's StyleGAN2Generator (config F); `generate()` comes from `StyleGenerator`.

    `fused_modulate` only picks how the modulated convolution is computed: True builds
    per-sample weights for a grouped conv (genforce's default path), False (jgan's default)
    scales the activations around one shared conv, which is exact and much faster on CPU/TPU.
    `const_input=False` is not supported: genforce's non-constant input maps w to nf(4) values
    instead of a 4x4 map and cannot run.
    """

    arch = "stylegan2"

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
        architecture="skip",
        fused_modulate=False,
        demodulate=True,
        use_wscale=True,
        fmaps_base=32 << 10,
        fmaps_max=512,
        *,
        rngs: nnx.Rngs,
    ):
        _check(
            resolution,
            architecture,
            label_size,
            z_space_dim=z_space_dim,
            w_space_dim=w_space_dim,
            mapping_layers=mapping_layers,
            mapping_fmaps=mapping_fmaps,
            image_channels=image_channels,
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
        )
        if not const_input:
            raise InputError(
                "const_input=False is not supported: genforce's StyleGAN2 dense input layer "
                "outputs nf(4) values, not a 4x4 map, so no such model exists; use const_input=True"
            )
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
            architecture=architecture,
            fused_modulate=fused_modulate,
            demodulate=demodulate,
            use_wscale=use_wscale,
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
        )
        num_layers = 2 * len(_block_resolutions(resolution))
        self.mapping = Mapping(
            z_space_dim,
            mapping_fmaps,
            w_space_dim if repeat_w else w_space_dim * num_layers,
            label_size=label_size,
            num_layers=mapping_layers,
            lr_mul=mapping_lr_mul,
            weight_gain=1.0,
            act_gain=SQRT2,
            use_wscale=use_wscale,
            rngs=rngs,
        )
        self.truncation = Truncation(w_space_dim, num_layers, repeat_w)
        self.synthesis = Synthesis(
            resolution,
            w_space_dim,
            image_channels=image_channels,
            final_tanh=final_tanh,
            architecture=architecture,
            fused_modulate=fused_modulate,
            demodulate=demodulate,
            use_wscale=use_wscale,
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
            rngs=rngs,
        )


class ConvBlock(EqualizedConv):
    """genforce's discriminator ConvBlock: [FIR + stride-2] conv, [bias], lrelu * sqrt(2)."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=3,
        *,
        down=False,
        use_bias=True,
        activate=True,
        use_wscale=True,
        rngs,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            gain=1.0,
            use_wscale=use_wscale,
            use_bias=use_bias,
            rngs=rngs,
        )
        self.down, self.activate = down, activate

    def __call__(self, x):
        k = self.weight.shape[-1]
        if self.down:
            pad = DOWN_KERNEL.shape[0] - 2 + k - 1  # (taps - factor) + (k - 1), then valid conv
            x = filter2d(x, DOWN_KERNEL, ((pad + 1) // 2, pad // 2))
            x = self.add_bias(conv2d(x, self.scaled_weight(), stride=2))
        else:
            x = super().__call__(x)
        return lrelu(x, gain=SQRT2) if self.activate else x


class StyleGAN2Discriminator(Discriminator):
    """genforce's StyleGAN2Discriminator: NHWC images -> logits (N, max(label_size, 1)).

    With `label_size`, the label is required and the logits are reduced to sum(out * label),
    shape (N, 1), as in the original. The minibatch-stddev layer mixes the samples of each
    group of `minibatch_std_group_size` (0 or 1 disables it).
    """

    arch = "stylegan2"

    def __init__(
        self,
        resolution,
        image_channels=3,
        label_size=0,
        architecture="resnet",
        use_wscale=True,
        minibatch_std_group_size=4,
        minibatch_std_channels=1,
        fmaps_base=32 << 10,
        fmaps_max=512,
        *,
        rngs: nnx.Rngs,
    ):
        _check(
            resolution,
            architecture,
            label_size,
            image_channels=image_channels,
            minibatch_std_channels=minibatch_std_channels,
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
        )
        if (
            minibatch_std_group_size > 1
            and min(fmaps_base // 4, fmaps_max) % minibatch_std_channels
        ):
            raise InputError(
                f"minibatch_std_channels ({minibatch_std_channels}) must divide the 4x4 width "
                f"({min(fmaps_base // 4, fmaps_max)})"
            )
        self._remember_config(
            resolution=resolution,
            image_channels=image_channels,
            label_size=label_size,
            architecture=architecture,
            use_wscale=use_wscale,
            minibatch_std_group_size=minibatch_std_group_size,
            minibatch_std_channels=minibatch_std_channels,
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
        )
        self.resolution = resolution
        self.image_channels, self.label_size = image_channels, label_size
        self.architecture = architecture
        self.mbstd_group = minibatch_std_group_size if minibatch_std_group_size > 1 else 0
        self.mbstd_channels = minibatch_std_channels

        def nf(res):
            return min(fmaps_base // res, fmaps_max)

        resolutions = _block_resolutions(resolution)[::-1]
        self.num_blocks = len(resolutions)
        for block, res in enumerate(resolutions):
            if block == 0 or architecture == "skip":
                from_rgb = ConvBlock(image_channels, nf(res), 1, use_wscale=use_wscale, rngs=rngs)
                setattr(self, f"input{block}", from_rgb)
            if res != INIT_RES:
                conv0 = ConvBlock(nf(res), nf(res), use_wscale=use_wscale, rngs=rngs)
                conv1 = ConvBlock(
                    nf(res), nf(res // 2), down=True, use_wscale=use_wscale, rngs=rngs
                )
                setattr(self, f"layer{2 * block}", conv0)
                setattr(self, f"layer{2 * block + 1}", conv1)
                if architecture == "resnet":
                    skip = ConvBlock(
                        nf(res),
                        nf(res // 2),
                        1,
                        down=True,
                        use_bias=False,
                        activate=False,
                        use_wscale=use_wscale,
                        rngs=rngs,
                    )
                    setattr(self, f"skip_layer{block}", skip)
            else:
                in_c = nf(res) + (minibatch_std_channels if self.mbstd_group else 0)
                conv = ConvBlock(in_c, nf(res), use_wscale=use_wscale, rngs=rngs)
                dense = EqualizedDense(
                    nf(res) * res * res, nf(res // 2), gain=1.0, use_wscale=use_wscale, rngs=rngs
                )
                out = EqualizedDense(
                    nf(res // 2), max(label_size, 1), gain=1.0, use_wscale=use_wscale, rngs=rngs
                )
                setattr(self, f"layer{2 * block}", conv)
                setattr(self, f"layer{2 * block + 1}", dense)
                setattr(self, f"layer{2 * block + 2}", out)

    def __call__(self, images, label=None):
        expected = (self.resolution, self.resolution, self.image_channels)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise InputError(
                f"images must have shape (N, {', '.join(map(str, expected))}) NHWC; "
                f"got {tuple(images.shape)}"
            )
        n = images.shape[0]
        if self.label_size:
            if label is None or label.shape != (n, self.label_size):
                got = None if label is None else tuple(label.shape)
                raise InputError(
                    f"this conditional discriminator needs label= of shape (N, {self.label_size})"
                    f"; got {got}"
                )
        elif label is not None:
            raise InputError("this discriminator is unconditional (label_size 0); no label=")
        if self.mbstd_group and n % min(self.mbstd_group, n):
            raise InputError(
                f"the batch ({n}) must be a multiple of the minibatch-stddev group "
                f"({self.mbstd_group}) or smaller than it"
            )

        x = self.input0(images)
        last = self.num_blocks - 1
        for block in range(self.num_blocks):
            if self.architecture == "skip" and block > 0:
                images = downsample2d(images, DOWN_KERNEL)
                x = x + getattr(self, f"input{block}")(images)
            if block == last:
                break
            shortcut = x
            x = getattr(self, f"layer{2 * block + 1}")(getattr(self, f"layer{2 * block}")(x))
            if self.architecture == "resnet":
                x = (x + getattr(self, f"skip_layer{block}")(shortcut)) / SQRT2
        if self.mbstd_group:
            x = minibatch_stddev(x, self.mbstd_group, self.mbstd_channels)
        x = getattr(self, f"layer{2 * last}")(x)
        x = lrelu(getattr(self, f"layer{2 * last + 1}")(_nchw_flatten(x)), gain=SQRT2)
        x = getattr(self, f"layer{2 * last + 2}")(x)
        if self.label_size:
            return jnp.sum(x * label.astype(x.dtype), axis=1, keepdims=True)
        return x
