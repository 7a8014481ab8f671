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

NVIDIA's StyleGAN2-ADA networks and rosinality's stylegan2-pytorch compute the same functions
(their converters in `jgan.ports` are key tables), given three options the genforce models
lack: `conv_clamp` (NVIDIA clamps the outputs of its conv and ToRGB layers to +-conv_clamp,
except the resnet skips and the discriminator's 4x4 FromRGB), `channels` (a width per
resolution where a hand-set table replaces min(fmaps_base // res, fmaps_max); the
discriminator's dense layer then keeps the 4x4 width) and NVIDIA's conditioning
(`label_embedding='embed'` in the generator; `cmap_dim` in the discriminator, which maps the
label through its own `mapping` to `cmap` and scores sum(out * cmap) / sqrt(cmap_dim)).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jgan.errors import InputError
from jgan.models.base import Discriminator, channel_table
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


def _check(resolution, architecture, label_size, conv_clamp, **positive):
    if resolution not in RESOLUTIONS:
        raise InputError(f"resolution must be one of {RESOLUTIONS}; got {resolution!r}")
    if architecture not in ARCHITECTURES:
        raise InputError(f"architecture must be one of {ARCHITECTURES}; got {architecture!r}")
    if not isinstance(label_size, int) or label_size < 0:
        raise InputError(f"label_size must be a non-negative integer; got {label_size!r}")
    if conv_clamp is not None and not (isinstance(conv_clamp, (int, float)) and conv_clamp > 0):
        raise InputError(f"conv_clamp must be None or a positive number; got {conv_clamp!r}")
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer; got {value!r}")


def _block_resolutions(resolution):
    """Resolutions 4, 8, ..., `resolution`; block k works at the k-th."""
    return [INIT_RES << k for k in range(int(np.log2(resolution // INIT_RES)) + 1)]


def _widths(resolution, fmaps_base, fmaps_max, channels):
    """nf(res), the feature maps at resolution `res`: min(fmaps_base // res, fmaps_max), or the
    `channels` table (4x4 first), whose 4x4 width also serves the discriminator's dense layer
    (nf(2), which the formula gives genforce's discriminator)."""
    resolutions = _block_resolutions(resolution)
    table = channel_table(channels, len(resolutions))
    if table is None:
        return lambda res: min(fmaps_base // res, fmaps_max)
    widths = {INIT_RES // 2: table[0], **dict(zip(resolutions, table, strict=True))}
    return widths.__getitem__


def _clamp(x, conv_clamp):
    """NVIDIA's conv_clamp: outputs limited to +-conv_clamp (None: unchanged)."""
    return x if conv_clamp is None else jnp.clip(x, -conv_clamp, conv_clamp)


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
    the computation path of the (mathematically identical) modulated convolution. The output
    is clamped to +-conv_clamp when that is set.
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
        conv_clamp=None,
        rngs,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, gain=1.0, use_wscale=use_wscale, rngs=rngs
        )
        self.conv_clamp = conv_clamp
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
        return _clamp(lrelu(x, gain=SQRT2) if self.activate else x, self.conv_clamp)


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
    """wp (N, L, w_dim) -> NHWC image; see the module docstring for the three architectures.

    `noise` may give every conv layer's noise explicitly (rosinality's `noise=[...]`): one map
    per layer, (N, H, W, 1) or (1, H, W, 1), in place of `noise_mode`.
    """

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
        channels,
        conv_clamp,
        rngs,
    ):
        self.architecture, self.final_tanh = architecture, final_tanh
        resolutions = _block_resolutions(resolution)
        self.num_blocks = len(resolutions)
        self.num_layers = 2 * self.num_blocks
        nf = _widths(resolution, fmaps_base, fmaps_max, channels)

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
                conv_clamp=conv_clamp,
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
                conv_clamp=conv_clamp,
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

    def __call__(self, wp, *, noise_mode="const", key=None, noise=None):
        layer = self._layer_fn(wp, noise_mode, key, noise)
        _, image = self._run(self.early_layer(wp.shape[0]).astype(wp.dtype), None, wp, layer)
        return jnp.tanh(image) if self.final_tanh else image

    def features(self, wp, stop_layer, *, noise_mode="const", key=None):
        """(features, partial image or None) after conv layers 0 ... stop_layer - 1: the first
        half of the synthesis split at an intermediate layer (mGANprior's feature composition).
        It reads wp[:, :stop_layer] only, so the ToRGB sharing code stop_layer belongs to the
        second half; resnet models split between blocks only (odd stop_layer)."""
        self._check_split(stop_layer)
        layer = self._layer_fn(wp, noise_mode, key, None)
        x = self.early_layer(wp.shape[0]).astype(wp.dtype)
        return self._run(x, None, wp, layer, stop=stop_layer)

    def from_features(self, x, image, wp, start_layer, *, noise_mode="const", key=None):
        """The second half: the image from `features` outputs, reading wp[:, start_layer:]."""
        self._check_split(start_layer)
        layer = self._layer_fn(wp, noise_mode, key, None)
        _, image = self._run(x, image, wp, layer, start=start_layer)
        return jnp.tanh(image) if self.final_tanh else image

    def _check_split(self, layer):
        last = self.num_layers - 1
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= last:
            raise InputError(
                f"the split layer of this synthesis must be an integer in [1, {last}]; "
                f"got {layer!r}"
            )
        if self.architecture == "resnet" and layer % 2 == 0:
            raise InputError(
                f"a resnet synthesis splits between blocks only (odd layers); got {layer}, which "
                "would cut a block from its shortcut"
            )

    def _layer_fn(self, wp, noise_mode, key, noise):
        """layer(x, i): conv layer i with its code wp[:, i] and its noise, explicit maps or
        `noise_mode`'s."""
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise_mode must be one of {NOISE_MODES}; got {noise_mode!r}")
        if noise_mode == "random" and key is None and noise is None:
            raise InputError("noise_mode='random' needs a PRNG key (key=jax.random.key(...))")
        n = wp.shape[0]
        if noise is not None:
            noise = self._explicit_noise(noise, n)

        def layer(x, i):
            conv = getattr(self, f"layer{i}")
            if noise is not None:
                return conv(x, wp[:, i], noise[i].astype(x.dtype))
            layer_key = None if key is None else jax.random.fold_in(key, i)
            layer_noise = noise_map(conv.noise[...], n, noise_mode, layer_key, x.dtype)
            return conv(x, wp[:, i], layer_noise)

        return layer

    def _run(self, x, image, wp, layer, start=0, stop=None):
        """What reads the codes wp[:, start:stop] (all by default), from features `x` and the
        skip architecture's partial `image`: for each j, the ToRGB that shares code j (odd j:
        every block's in 'skip', the last one otherwise), then conv layer j. Returns (x, image)."""
        for j in range(start, self.num_layers if stop is None else stop):
            if j % 2 and (self.architecture == "skip" or j == self.num_layers - 1):
                rgb = getattr(self, f"output{j // 2}")(x, wp[:, j])
                image = rgb if image is None else rgb + upsample2d(image, UP_KERNEL)
            if j == self.num_layers - 1:
                break
            if j % 2 and self.architecture == "resnet":
                shortcut = x
            x = layer(x, j)
            if j % 2 == 0 and j > 0 and self.architecture == "resnet":
                x = (x + getattr(self, f"skip_layer{j // 2 - 1}")(shortcut)) / SQRT2
        return x, image

    def _explicit_noise(self, noise, batch):
        """The maps of `noise` checked against the layers and broadcast to the batch."""
        shapes = [getattr(self, f"layer{i}").noise.shape[-2:] for i in range(self.num_layers - 1)]
        expected = ", ".join(f"({h}, {w})" for h, w in shapes)
        if len(noise) != len(shapes):
            raise InputError(
                f"noise must hold {len(shapes)} maps (one per conv layer, sizes {expected}); "
                f"got {len(noise)}"
            )
        maps = []
        for i, ((h, w), value) in enumerate(zip(shapes, noise, strict=True)):
            value = jnp.asarray(value)
            if value.ndim != 4 or value.shape[1:] != (h, w, 1) or value.shape[0] not in (1, batch):
                raise InputError(
                    f"noise[{i}] must have shape (N, {h}, {w}, 1) or (1, {h}, {w}, 1) NHWC; "
                    f"got {tuple(value.shape)}"
                )
            maps.append(jnp.broadcast_to(value, (batch, h, w, 1)))
        return maps


class StyleGAN2Generator(StyleGenerator):
    """genforce's StyleGAN2Generator (config F); `generate()` comes from `StyleGenerator`.

    `fused_modulate` only picks how the modulated convolution is computed: True builds
    per-sample weights for a grouped conv (genforce's default path), False (jgan's default)
    scales the activations around one shared conv, which is exact and much faster on CPU/TPU.
    `const_input=False` is not supported: genforce's non-constant input maps w to nf(4) values
    instead of a 4x4 map and cannot run. `has_w_avg=False` marks weights without a stored
    average w (rosinality checkpoints): truncation then needs `latent.set_w_avg` first.
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
        channels=None,
        conv_clamp=None,
        label_embedding="concat",
        label_embed_dim=None,
        has_w_avg=True,
        *,
        rngs: nnx.Rngs,
    ):
        _check(
            resolution,
            architecture,
            label_size,
            conv_clamp,
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
            channels=channels,
            conv_clamp=conv_clamp,
            label_embedding=label_embedding,
            label_embed_dim=label_embed_dim,
            has_w_avg=has_w_avg,
        )
        num_layers = 2 * len(_block_resolutions(resolution))
        self.mapping = Mapping(
            z_space_dim,
            mapping_fmaps,
            w_space_dim if repeat_w else w_space_dim * num_layers,
            label_size=label_size,
            label_embedding=label_embedding,
            label_embed_dim=label_embed_dim,
            num_layers=mapping_layers,
            lr_mul=mapping_lr_mul,
            weight_gain=1.0,
            act_gain=SQRT2,
            use_wscale=use_wscale,
            rngs=rngs,
        )
        self.truncation = Truncation(w_space_dim, num_layers, repeat_w, has_w_avg)
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
            channels=channels,
            conv_clamp=conv_clamp,
            rngs=rngs,
        )


class ConvBlock(EqualizedConv):
    """genforce's discriminator ConvBlock: [FIR + stride-2] conv, [bias], lrelu * sqrt(2),
    [clamp to +-conv_clamp]."""

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
        conv_clamp=None,
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
        self.down, self.activate, self.conv_clamp = down, activate, conv_clamp

    def __call__(self, x):
        k = self.weight.shape[-1]
        if self.down:
            pad = DOWN_KERNEL.shape[0] - 2 + k - 1  # (taps - factor) + (k - 1), then valid conv
            x = filter2d(x, DOWN_KERNEL, ((pad + 1) // 2, pad // 2))
            x = self.add_bias(conv2d(x, self.scaled_weight(), stride=2))
        else:
            x = super().__call__(x)
        return _clamp(lrelu(x, gain=SQRT2) if self.activate else x, self.conv_clamp)


class StyleGAN2Discriminator(Discriminator):
    """genforce's StyleGAN2Discriminator: NHWC images -> logits (N, max(label_size, 1)).

    With `label_size`, the label is required and the logits are reduced to sum(out * label),
    shape (N, 1), as in the original. With `cmap_dim` as well (NVIDIA's conditioning), the
    last layer has cmap_dim outputs and the score is sum(out * cmap) / sqrt(cmap_dim), where
    cmap = mapping(label): embed, normalise, `cmap_layers` dense layers (lr_mul 0.01), all
    cmap_dim wide. The minibatch-stddev layer mixes the samples of each group of
    `minibatch_std_group_size` (0 or 1 disables it).
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
        channels=None,
        conv_clamp=None,
        cmap_dim=None,
        cmap_layers=8,
        *,
        rngs: nnx.Rngs,
    ):
        _check(
            resolution,
            architecture,
            label_size,
            conv_clamp,
            image_channels=image_channels,
            minibatch_std_channels=minibatch_std_channels,
            fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
        )
        nf = _widths(resolution, fmaps_base, fmaps_max, channels)
        if minibatch_std_group_size > 1 and nf(INIT_RES) % minibatch_std_channels:
            raise InputError(
                f"minibatch_std_channels ({minibatch_std_channels}) must divide the 4x4 width "
                f"({nf(INIT_RES)})"
            )
        if cmap_dim is not None and not (label_size and isinstance(cmap_dim, int) and cmap_dim):
            raise InputError(
                f"cmap_dim (NVIDIA's label mapping) needs label_size > 0 and a positive width; "
                f"got label_size {label_size}, cmap_dim {cmap_dim!r}"
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
            channels=channels,
            conv_clamp=conv_clamp,
            cmap_dim=cmap_dim,
            cmap_layers=cmap_layers,
        )
        self.resolution = resolution
        self.image_channels, self.label_size = image_channels, label_size
        self.architecture = architecture
        self.mbstd_group = minibatch_std_group_size if minibatch_std_group_size > 1 else 0
        self.mbstd_channels = minibatch_std_channels
        self.cmap_dim = cmap_dim
        if cmap_dim is not None:
            self.mapping = Mapping(
                0,
                cmap_dim,
                cmap_dim,
                label_size=label_size,
                label_embedding="embed",
                num_layers=cmap_layers,
                weight_gain=1.0,
                act_gain=SQRT2,
                use_wscale=use_wscale,
                rngs=rngs,
            )

        def conv_block(in_c, out_c, kernel_size=3, clamp=True, **kwargs):
            return ConvBlock(
                in_c,
                out_c,
                kernel_size,
                use_wscale=use_wscale,
                conv_clamp=conv_clamp if clamp else None,
                rngs=rngs,
                **kwargs,
            )

        resolutions = _block_resolutions(resolution)[::-1]
        self.num_blocks = len(resolutions)
        for block, res in enumerate(resolutions):
            if block == 0 or architecture == "skip":
                from_rgb = conv_block(image_channels, nf(res), 1, clamp=res != INIT_RES)
                setattr(self, f"input{block}", from_rgb)
            if res != INIT_RES:
                setattr(self, f"layer{2 * block}", conv_block(nf(res), nf(res)))
                setattr(self, f"layer{2 * block + 1}", conv_block(nf(res), nf(res // 2), down=True))
                if architecture == "resnet":
                    skip = conv_block(
                        nf(res),
                        nf(res // 2),
                        1,
                        clamp=False,
                        down=True,
                        use_bias=False,
                        activate=False,
                    )
                    setattr(self, f"skip_layer{block}", skip)
            else:
                in_c = nf(res) + (minibatch_std_channels if self.mbstd_group else 0)
                conv = conv_block(in_c, nf(res))
                dense = EqualizedDense(
                    nf(res) * res * res, nf(res // 2), gain=1.0, use_wscale=use_wscale, rngs=rngs
                )
                outputs = cmap_dim or max(label_size, 1)
                out = EqualizedDense(
                    nf(res // 2), outputs, gain=1.0, use_wscale=use_wscale, rngs=rngs
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
        if self.cmap_dim:
            cmap = self.mapping(None, label.astype(x.dtype))
            return jnp.sum(x * cmap, axis=1, keepdims=True) / np.sqrt(self.cmap_dim)
        if self.label_size:
            return jnp.sum(x * label.astype(x.dtype), axis=1, keepdims=True)
        return x
