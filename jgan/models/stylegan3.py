"""StyleGAN3 (alias-free) generator, configurations T and R, in NVIDIA's layout.

Karras et al., "Alias-Free Generative Adversarial Networks" (arXiv 2106.12423). The synthesis
network's module and parameter names follow NVlabs/stylegan3 `training/networks_stylegan3.py`
(`synthesis.input.freqs`, `synthesis.L5_52_64.affine.bias`, ...), so the state of an NVIDIA
pickle maps onto attribute paths directly; the mapping is jgan's shared `Mapping` with NVIDIA's
label embedding (NVIDIA's `mapping.fc{i}` is `mapping.dense{i}`, `mapping.w_avg` is
`truncation.w_avg`).

Mapping: NVIDIA's MappingNetwork (2 layers by default). Synthesis: Fourier features of a
learned rotation and translation of a fixed set of frequencies (`input`), then `num_layers`
layers and a ToRGB layer, named `L{index}_{size}_{channels}`. Every layer is a modulated conv
(weights and styles pre-normalised, demodulated, times `magnitude_ema ** -0.5`) followed by a
filtered leaky ReLU: bias, FIR upsampling to twice the higher of the input and output sampling
rates, lrelu * sqrt(2), clamp, FIR downsampling to the output rate. Cutoffs, stopbands and
sampling rates follow a geometric progression from `first_cutoff` to the last critically
sampled layers; each layer keeps `margin_size` extra pixels on every side until the last two.

Configuration T uses 3x3 convs and separable Kaiser filters; R (`conv_kernel=1`,
`use_radial_filters=True`) uses 1x1 convs and radially symmetric (jinc) downsampling filters,
which makes the generator equivariant to rotation.

Filters are designed from the configuration exactly as the original does (scipy's `firwin`, or
the Kaiser-windowed jinc), and kept as static tuples: they are a pure function of the
configuration, so a converter checks a file's filter buffers against them rather than loading
them. Training-time state updates (the `w_avg` and `magnitude_ema` moving averages) and fp16
are not implemented: the generator computes in float32.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from jgan.errors import InputError
from jgan.models.latent import Mapping, StyleGenerator, Truncation
from jgan.models.stylegan2 import StyleGAN2Discriminator
from jgan.nn import (
    NOISE_MODES,
    SQRT2,
    Buffer,
    EqualizedDense,
    conv2d,
    demodulation,
    lrelu,
    upfirdn2d,
)

# StyleGAN3 trains with StyleGAN2's discriminator: exported here for the registry.
__all__ = ["StyleGAN2Discriminator", "StyleGAN3Generator", "design_lowpass_filter"]

MAPPING_KEYS = ("num_layers", "lr_multiplier", "w_avg_beta", "freeze_layers", "freeze_embed")
"""The arguments of NVIDIA's MappingNetwork that `mapping_kwargs` may hold; the last three only
matter in training and are kept so the configuration round-trips."""


def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
    """The original's low-pass filter: None for one tap, else 1-D Kaiser-window `firwin` taps
    or, with `radial`, a 2-D Kaiser-windowed jinc normalised to sum 1 (float32)."""
    import scipy.signal
    import scipy.special

    if numtaps == 1:
        return None
    if not radial:
        return scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs).astype(
            np.float32
        )
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f *= np.outer(window, window)
    return (f / np.sum(f)).astype(np.float32)


def _static(array):
    """A filter as a hashable static attribute (nested tuples of floats), or None."""
    if array is None:
        return None
    return (
        tuple(tuple(map(float, row)) for row in array)
        if array.ndim == 2
        else tuple(map(float, array))
    )


def _kernel_2d(taps, gain=1.0):
    """The 2-D kernel of a static filter: outer product of 1-D taps, or the 2-D filter itself."""
    if taps is None:
        return np.full((1, 1), gain, np.float32)
    f = np.asarray(taps, np.float32)
    return (np.outer(f, f) if f.ndim == 1 else f) * np.float32(gain)


def layer_specs(
    img_resolution,
    img_channels,
    *,
    channel_base,
    channel_max,
    num_layers,
    num_critical,
    first_cutoff,
    first_stopband,
    last_stopband_rel,
    margin_size,
):
    """Per-layer (0 .. num_layers) cutoffs, stopband-derived half widths, sampling rates, sizes
    and channels, as the original's SynthesisNetwork computes them (numpy arrays)."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return {
        "cutoffs": cutoffs,
        "half_widths": half_widths,
        "sampling_rates": sampling_rates,
        "sizes": sizes.astype(int),
        "channels": channels.astype(int),
    }


def filtered_lrelu(x, bias, up_filter, down_filter, *, up, down, padding, gain, slope, clamp):
    """NVIDIA's `filtered_lrelu` on NHWC `x`: + bias, FIR upsampling by `up` with `padding`
    (x0, x1, y0, y1; negative crops) and gain up^2, lrelu(slope) * gain, clamp to +-clamp,
    FIR downsampling by `down`. Filters are static (1-D separable taps, 2-D, or None)."""
    x = x + bias.astype(x.dtype)
    x = upfirdn2d(x, _kernel_2d(up_filter, up * up), up=up, pad=padding)
    x = lrelu(x, slope, gain)
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    return upfirdn2d(x, _kernel_2d(down_filter), down=down)


class SynthesisInput(nnx.Module):
    """Fourier features: `channels` fixed frequencies (`freqs`, `phases`) sampled on a
    `size`-pixel grid after the rotation and translation that `affine(w)` predicts and the
    user transform `transform` (the inverse transform of the image), then a linear map."""

    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth, *, rngs):
        self.channels, self.size = channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs = jax.random.normal(rngs.params(), (channels, 2))
        radii = jnp.sqrt(jnp.sum(jnp.square(freqs), axis=1, keepdims=True))
        freqs = freqs / (radii * jnp.exp(jnp.square(radii)) ** 0.25) * bandwidth
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (channels, channels)))
        self.affine = EqualizedDense(w_dim, 4, gain=1.0, rngs=rngs)
        self.affine.weight[...] = jnp.zeros((4, w_dim))  # starts as the identity transform
        self.affine.bias[...] = jnp.array([1.0, 0.0, 0.0, 0.0])
        self.transform = Buffer(jnp.eye(3))
        self.freqs = Buffer(freqs)
        self.phases = Buffer(jax.random.uniform(rngs.params(), (channels,)) - 0.5)

    def __call__(self, w):
        t = self.affine(w)  # (cos, sin, tx, ty) of the image's inverse rotation and translation
        t = t / jnp.linalg.norm(t[:, :2], axis=1, keepdims=True)
        zeros, ones = jnp.zeros_like(t[:, 0]), jnp.ones_like(t[:, 0])
        rotation = jnp.stack(
            [
                jnp.stack([t[:, 0], -t[:, 1], zeros], -1),
                jnp.stack([t[:, 1], t[:, 0], zeros], -1),
                jnp.stack([zeros, zeros, ones], -1),
            ],
            1,
        )
        translation = jnp.stack(
            [
                jnp.stack([ones, zeros, -t[:, 2]], -1),
                jnp.stack([zeros, ones, -t[:, 3]], -1),
                jnp.stack([zeros, zeros, ones], -1),
            ],
            1,
        )
        transforms = rotation @ translation @ self.transform[...]  # (N, 3, 3)
        freqs = self.freqs[...]
        phases = self.phases[...] + (freqs @ transforms[:, :2, 2:])[..., 0]  # (N, C)
        freqs = freqs @ transforms[:, :2, :2]  # (N, C, 2)
        # Out-of-band frequencies (a user transform can scale them up) fade out linearly.
        amplitudes = jnp.clip(
            1
            - (jnp.linalg.norm(freqs, axis=2) - self.bandwidth)
            / (self.sampling_rate / 2 - self.bandwidth),
            0,
            1,
        )
        # Pixel centres of torch's affine_grid (align_corners=False), in units of samples.
        grid = (2 * np.arange(self.size) + 1 - self.size) / 2 / self.sampling_rate
        grid = jnp.asarray(grid, jnp.float32)
        x = (
            grid[None, None, :, None] * freqs[:, None, None, :, 0]
            + grid[None, :, None, None] * freqs[:, None, None, :, 1]
            + phases[:, None, None, :]
        )
        x = jnp.sin(x * (2 * np.pi)) * amplitudes[:, None, None, :]
        return x @ (self.weight[...] / math.sqrt(self.channels)).T


class SynthesisLayer(nnx.Module):
    """Modulated conv + filtered leaky ReLU, from `in_size` pixels at `in_sampling_rate` to
    `out_size` pixels at `out_sampling_rate` (see the module docstring)."""

    def __init__(
        self,
        w_dim,
        *,
        is_torgb,
        is_critically_sampled,
        in_channels,
        out_channels,
        in_size,
        out_size,
        in_sampling_rate,
        out_sampling_rate,
        in_cutoff,
        out_cutoff,
        in_half_width,
        out_half_width,
        conv_kernel,
        filter_size,
        lrelu_upsampling,
        use_radial_filters,
        conv_clamp,
        rngs,
    ):
        self.is_torgb, self.in_channels = is_torgb, in_channels
        self.in_size, self.out_size = int(in_size), int(out_size)
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (
            1 if is_torgb else lrelu_upsampling
        )
        self.up_factor = _rate_ratio(tmp_sampling_rate, in_sampling_rate)
        self.down_factor = _rate_ratio(tmp_sampling_rate, out_sampling_rate)
        up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.up_filter = _static(
            design_lowpass_filter(up_taps, in_cutoff, in_half_width * 2, tmp_sampling_rate)
        )
        self.down_filter = _static(
            design_lowpass_filter(
                down_taps,
                out_cutoff,
                out_half_width * 2,
                tmp_sampling_rate,
                radial=use_radial_filters and not is_critically_sampled,
            )
        )
        # Pad so that the output samples sit where the symmetric interpretation puts them.
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += up_taps + down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = (pad_lo, pad_hi, pad_lo, pad_hi)

        self.affine = EqualizedDense(w_dim, in_channels, gain=1.0, bias_init=1.0, rngs=rngs)
        shape = (out_channels, in_channels, self.conv_kernel, self.conv_kernel)
        self.weight = nnx.Param(jax.random.normal(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))
        self.magnitude_ema = Buffer(jnp.ones(()))

    def __call__(self, x, w):
        """NHWC `x` (N, in_size, in_size, in_channels), this layer's code `w` (N, w_dim)."""
        styles = self.affine(w)
        weight = self.weight[...]
        k = self.conv_kernel
        if self.is_torgb:
            styles = styles / math.sqrt(self.in_channels * k * k)
        else:
            # Pre-normalisation; NVIDIA takes the styles' mean square over the whole batch, which
            # demodulation cancels (up to its 1e-8), so here each sample is normalised on its own.
            weight = weight * lax.rsqrt(jnp.mean(jnp.square(weight), axis=(1, 2, 3), keepdims=True))
            styles = styles * lax.rsqrt(jnp.mean(jnp.square(styles), axis=1, keepdims=True))
        input_gain = lax.rsqrt(self.magnitude_ema[...])
        x = conv2d(
            x * (styles * input_gain)[:, None, None, :].astype(x.dtype), weight, padding=k - 1
        )
        if not self.is_torgb:
            x = x * demodulation(weight, styles)[:, None, None, :].astype(x.dtype)
        return filtered_lrelu(
            x,
            self.bias[...],
            self.up_filter,
            self.down_filter,
            up=self.up_factor,
            down=self.down_factor,
            padding=self.padding,
            gain=1.0 if self.is_torgb else SQRT2,
            slope=1.0 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )


def _rate_ratio(high, low):
    """The integer resampling factor between two sampling rates (as the original asserts)."""
    ratio = int(np.rint(high / low))
    if low * ratio != high:
        raise InputError(f"sampling rate {high} is not an integer multiple of {low}")
    return ratio


class Synthesis(nnx.Module):
    """wp (N, num_layers + 2, w_dim) -> NHWC image: `input` takes wp[:, 0], layer i wp[:, i+1]."""

    def __init__(
        self,
        w_dim,
        img_resolution,
        img_channels,
        *,
        channel_base,
        channel_max,
        num_layers,
        num_critical,
        first_cutoff,
        first_stopband,
        last_stopband_rel,
        margin_size,
        output_scale,
        rngs,
        **layer_kwargs,
    ):
        self.output_scale = float(output_scale)
        specs = layer_specs(
            img_resolution,
            img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            num_layers=num_layers,
            num_critical=num_critical,
            first_cutoff=first_cutoff,
            first_stopband=first_stopband,
            last_stopband_rel=last_stopband_rel,
            margin_size=margin_size,
        )
        cutoffs, half_widths = specs["cutoffs"], specs["half_widths"]
        rates, sizes, channels = specs["sampling_rates"], specs["sizes"], specs["channels"]
        self.input = SynthesisInput(
            w_dim, int(channels[0]), sizes[0], rates[0], cutoffs[0], rngs=rngs
        )
        names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim,
                is_torgb=idx == num_layers,
                is_critically_sampled=idx >= num_layers - num_critical,
                in_channels=int(channels[prev]),
                out_channels=int(channels[idx]),
                in_size=sizes[prev],
                out_size=sizes[idx],
                in_sampling_rate=int(rates[prev]),
                out_sampling_rate=int(rates[idx]),
                in_cutoff=cutoffs[prev],
                out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev],
                out_half_width=half_widths[idx],
                rngs=rngs,
                **layer_kwargs,
            )
            names.append(f"L{idx}_{sizes[idx]}_{channels[idx]}")
            setattr(self, names[-1], layer)
        self.layer_names = tuple(names)

    def __call__(self, wp, *, noise_mode="const", key=None):
        """`noise_mode` and `key` are accepted for the common interface; StyleGAN3 has no noise."""
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise_mode must be one of {NOISE_MODES}; got {noise_mode!r}")
        x = self.input(wp[:, 0])
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x, wp[:, i + 1])
        return x * self.output_scale if self.output_scale != 1 else x


class StyleGAN3Generator(StyleGenerator):
    """NVIDIA's StyleGAN3 Generator, built from the `init_kwargs` of its pickles.

    `mapping_kwargs` holds MappingNetwork arguments (`MAPPING_KEYS`); the other keyword
    arguments are SynthesisNetwork's and SynthesisLayer's. `num_fp16_res` and
    `magnitude_ema_beta` are remembered but do not change the float32 forward pass.
    `generate()` comes from `StyleGenerator`; there are `num_layers + 2` per-layer codes, and
    truncation with `trunc_layers=None` pulls all of them towards `w_avg`, as
    NVIDIA's `truncation_cutoff=None` does.
    """

    arch = "stylegan3"

    def __init__(
        self,
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=1024,
        img_channels=3,
        mapping_kwargs=None,
        channel_base=32768,
        channel_max=512,
        num_layers=14,
        num_critical=2,
        first_cutoff=2,
        first_stopband=2**2.1,
        last_stopband_rel=2**0.3,
        margin_size=10,
        output_scale=0.25,
        num_fp16_res=4,
        conv_kernel=3,
        filter_size=6,
        lrelu_upsampling=2,
        use_radial_filters=False,
        conv_clamp=256,
        magnitude_ema_beta=0.999,
        *,
        rngs: nnx.Rngs,
    ):
        mapping_kwargs = dict(mapping_kwargs or {})
        unknown = sorted(set(mapping_kwargs) - set(MAPPING_KEYS))
        if unknown:
            raise InputError(f"unknown mapping_kwargs {unknown}; StyleGAN3 takes {MAPPING_KEYS}")
        for name, value in dict(
            z_dim=z_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            conv_kernel=conv_kernel,
            filter_size=filter_size,
            lrelu_upsampling=lrelu_upsampling,
        ).items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer; got {value!r}")
        if not isinstance(c_dim, int) or c_dim < 0:
            raise InputError(f"c_dim must be a non-negative integer; got {c_dim!r}")
        if not 0 <= num_critical < num_layers:
            raise InputError(
                f"need 0 <= num_critical < num_layers; got {num_critical} and {num_layers}"
            )
        self._remember_config(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            mapping_kwargs=tuple(sorted(mapping_kwargs.items())),
            channel_base=channel_base,
            channel_max=channel_max,
            num_layers=num_layers,
            num_critical=num_critical,
            first_cutoff=first_cutoff,
            first_stopband=first_stopband,
            last_stopband_rel=last_stopband_rel,
            margin_size=margin_size,
            output_scale=output_scale,
            num_fp16_res=num_fp16_res,
            conv_kernel=conv_kernel,
            filter_size=filter_size,
            lrelu_upsampling=lrelu_upsampling,
            use_radial_filters=use_radial_filters,
            conv_clamp=conv_clamp,
            magnitude_ema_beta=magnitude_ema_beta,
        )
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mapping = Mapping(
            z_dim,
            w_dim,
            w_dim,
            label_size=c_dim,
            label_embedding="embed",
            num_layers=mapping_kwargs.get("num_layers", 2),
            lr_mul=mapping_kwargs.get("lr_multiplier", 0.01),
            weight_gain=1.0,
            act_gain=SQRT2,
            rngs=rngs,
        )
        self.truncation = Truncation(w_dim, num_layers + 2)
        self.synthesis = Synthesis(
            w_dim,
            img_resolution,
            img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            num_layers=num_layers,
            num_critical=num_critical,
            first_cutoff=first_cutoff,
            first_stopband=first_stopband,
            last_stopband_rel=last_stopband_rel,
            margin_size=margin_size,
            output_scale=output_scale,
            conv_kernel=conv_kernel,
            filter_size=filter_size,
            lrelu_upsampling=lrelu_upsampling,
            use_radial_filters=use_radial_filters,
            conv_clamp=conv_clamp,
            rngs=rngs,
        )

    @property
    def config(self):
        """Constructor arguments (JSON-serialisable), `mapping_kwargs` as a dict."""
        config = super().config
        config["mapping_kwargs"] = dict(config["mapping_kwargs"])
        return config
