"""GH-Feat's hierarchical encoder (Xu et al., "Generative Hierarchical Features from
Synthesizing Images", CVPR 2021; genforce/ghfeat `training/networks_ghfeat.py` `Encoder`).

NHWC RGB images in [-1, 1] -> per-layer codes (N, num_layers, latent_dim) of a StyleGAN
generator, by default its per-layer styles (Y space, `StyleGANGenerator.generate(space='y')`):
  backbone   a ResNet (`jgan.models.resnet`, ImageNet stem) whose stages give res2..res5,
             plus one more stride-2 bottleneck stage of 8x the base width (res6);
  FPN        over (res4, res5, res6): lateral conv 3x3 to `fpn_channels`, top-down nearest
             upsampling and sum, an output conv 3x3 per level;
  SAM        each level average-pooled to the coarsest size, a conv 3x3 each, and the
             coarsest added to the others (the spatial alignment of the paper);
  heads      dense -> batch norm per level: the coarsest level (res6) predicts the first
             `latents_per_head[0]` generator layers (the coarse styles), res5 the next
             `latents_per_head[1]`, res4 the rest (the fine styles), each layer at its true
             width (`layer_widths`), tiled to `latent_dim` = max(layer_widths) as the
             original tiles the 512/256/128-wide styles to 1024.
With the original's defaults (ResNet-50, FPN/SAM 512, heads 4/4/6, widths [1024]*8 + [512]*2 +
[256]*2 + [128]*2) at 256x256 this is (N, 14, 1024), the shape of ghfeat's `ghfeat.npy`.

Differences from the TF original, none of which changes the design: the backbone is jgan's
torchvision-style ResNet (ReLU stem, bias-free convs, BN before every activation, symmetric
padding) where ghfeat's has a leaky-ReLU stem, conv biases and BN after the activation in
basic blocks; FPN/SAM resample by the ratio of the level sizes (2 and 4 at 256x256, as the
original), so small test resolutions work; the convs and denses start from He init, not
N(0, 0.02). No pretrained GH-Feat weights are converted (the release is TF pickles).
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jgan.errors import InputError
from jgan.models import resnet
from jgan.models.base import ConfiguredModule
from jgan.nn import EqualizedConv, EqualizedDense, upsample_nearest

DEPTHS = {
    10: ((1, 1, 1, 1), "basic"),
    18: ((2, 2, 2, 2), "basic"),
    34: ((3, 4, 6, 3), "basic"),
    50: ((3, 4, 6, 3), "bottleneck"),
}
"""ResNet depth -> (blocks per stage, block type): the original's 18/34/50 (101 is not built) and
ResNet-10 for tests."""
LATENT_SPACES = ("y", "wp")
FPN_LEVELS = 3


def _positive_ints(name, values):
    """`values` (one or several) as a tuple of positive integers, or an InputError."""
    values = tuple(values) if isinstance(values, list | tuple) else (values,)
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise InputError(f"{name} must be positive integers; got {values!r}")
    return values


def _avg_pool(x, factor):
    n, h, w, c = x.shape
    return x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def _resized(x, size):
    """`x` brought to spatial size `size` by an integer factor (nearest up / average down)."""
    side = x.shape[1]
    if side < size:
        return upsample_nearest(x, size // side)
    return _avg_pool(x, side // size) if side > size else x


def _conv3x3(in_channels, out_channels, rngs):
    return EqualizedConv(in_channels, out_channels, 3, use_wscale=False, rngs=rngs)


class Head(nnx.Module):
    """dense (+ bias) -> batch norm: one level's codes, concatenated over its layers."""

    def __init__(self, in_features, out_features, *, rngs):
        self.dense = EqualizedDense(
            in_features, out_features, gain=1.0, use_wscale=False, rngs=rngs
        )
        self.bn = resnet.BatchNorm(out_features)

    def __call__(self, x, train):
        y = self.dense(x)
        return self.bn(y[:, None, None, :], train)[:, 0, 0, :]


def default_heads(num_layers):
    """Layers per head (res6, res5, res4): the original's (4, 4, 6) for 14 layers,
    (4, 4, L - 8) for more, about a quarter, a quarter and a half for fewer."""
    if num_layers > 8:
        return (4, 4, num_layers - 8)
    quarter = max(num_layers // 4, 1)
    return (quarter, quarter, num_layers - 2 * quarter)


class GHFeatEncoder(ConfiguredModule):
    """GH-Feat's encoder: NHWC images in [-1, 1] -> (N, num_layers, latent_dim) codes in
    `latent_space` ('y': per-layer styles; 'wp': W+ codes), `__call__(images, train=False)`.

    `layer_widths`: true width of each generator layer's code (for Y, twice its channels);
    `latents_per_head`: generator layers predicted from res6, res5 and res4 (sums to
    num_layers; None: `default_heads`); `depth`: ResNet-10/18/34/50; `backbone_width`: the
    ResNet's base width (64 as the original); `fpn_channels`: FPN and SAM width (512).
    The batch norms use batch statistics (and update the running ones) with `train=True`, or
    by default after `encoder.train()` (`use_running_average=False`), as jgan's trainer does.
    """

    arch: ClassVar[str] = "ghfeat_encoder"

    def __init__(
        self,
        resolution,
        layer_widths,
        latents_per_head=None,
        latent_space="y",
        depth=50,
        backbone_width=64,
        fpn_channels=512,
        image_channels=3,
        *,
        rngs: nnx.Rngs,
    ):
        layer_widths = _positive_ints("layer_widths", layer_widths)
        num_layers = len(layer_widths)
        heads = default_heads(num_layers) if latents_per_head is None else latents_per_head
        heads = _positive_ints("latents_per_head", heads)
        if len(heads) != FPN_LEVELS or sum(heads) != num_layers:
            raise InputError(
                f"latents_per_head must be {FPN_LEVELS} positive numbers of layers (res6, res5, "
                f"res4) summing to the {num_layers} layer widths; got {heads}"
            )
        latent_dim = max(layer_widths)
        if any(latent_dim % w for w in layer_widths):
            raise InputError(f"every layer width must divide the widest; got {layer_widths}")
        if latent_space not in LATENT_SPACES:
            raise InputError(f"latent_space must be one of {LATENT_SPACES}; got {latent_space!r}")
        if depth not in DEPTHS:
            raise InputError(f"depth must be one of {tuple(DEPTHS)}; got {depth!r}")
        (resolution,) = _positive_ints("resolution", resolution)
        if resolution < 16 or resolution & (resolution - 1):
            raise InputError(f"resolution must be a power of two >= 16; got {resolution!r}")
        _positive_ints(
            "backbone_width, fpn_channels, image_channels",
            (backbone_width, fpn_channels, image_channels),
        )
        self._remember_config(
            resolution=resolution,
            layer_widths=layer_widths,
            latents_per_head=heads,
            latent_space=latent_space,
            depth=depth,
            backbone_width=backbone_width,
            fpn_channels=fpn_channels,
            image_channels=image_channels,
        )
        self.resolution, self.image_channels = resolution, image_channels
        self.layer_widths, self.latents_per_head = layer_widths, heads
        self.latent_space, self.latent_dim = latent_space, latent_dim
        self.num_layers = num_layers
        self.use_running_average = True  # batch norms on running statistics unless training

        width = backbone_width
        depths, block = DEPTHS[depth]
        self.backbone = resnet.ResNet(
            depths,
            (width, 2 * width, 4 * width, 8 * width),
            stem_width=width,
            block=block,
            stem="imagenet",
            num_classes=0,
            in_channels=image_channels,
            rngs=rngs,
        )
        expansion = resnet.EXPANSION[block]
        self.stage5 = resnet.Block(
            self.backbone.feature_channels, 8 * width, stride=2, block="bottleneck", rngs=rngs
        )
        level_channels = (4 * width * expansion, 8 * width * expansion, 8 * width * 4)
        for i, channels in enumerate(level_channels):
            setattr(self, f"lconv{i}", _conv3x3(channels, fpn_channels, rngs))
            setattr(self, f"fconv{i}", _conv3x3(fpn_channels, fpn_channels, rngs))
            setattr(self, f"fuse_conv{i}", _conv3x3(fpn_channels, fpn_channels, rngs))
        side = self.level_sizes()[-1]
        features = fpn_channels * side * side
        starts = (0, heads[0], heads[0] + heads[1], num_layers)
        # Heads from the coarsest level (res6: the first generator layers) to res4.
        for name, first, last in zip(("high", "mid", "low"), starts[:-1], starts[1:], strict=True):
            setattr(self, name, Head(features, sum(layer_widths[first:last]), rngs=rngs))

    def level_sizes(self):
        """Spatial sizes of res4, res5, res6 at this resolution (stride-2 convs round up)."""
        side = self.resolution // 4  # stem conv and max-pool
        sizes = []
        for _ in range(4):  # res3, res4, res5, res6
            side = -(-side // 2)
            sizes.append(side)
        return tuple(sizes[1:])

    def _levels(self, x, train):
        """res4, res5, res6 of the backbone."""
        net = self.backbone
        x = resnet.max_pool3x3(jax.nn.relu(net.bn1(net.conv1(x), train)))
        outputs = []
        for name, depth in zip(net.stages, net.depths, strict=True):
            for j in range(depth):
                x = jax.nn.relu(getattr(net, name)[j](x, train))
            outputs.append(x)
        outputs.append(jax.nn.relu(self.stage5(x, train)))
        return outputs[2:]

    def _fused(self, levels):
        """FPN then SAM: three maps of `fpn_channels` at the coarsest level's size."""
        laterals = [getattr(self, f"lconv{i}")(x) for i, x in enumerate(levels)]
        for i in range(FPN_LEVELS - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resized(laterals[i], laterals[i - 1].shape[1])
        outs = [getattr(self, f"fconv{i}")(x) for i, x in enumerate(laterals)]
        side = outs[-1].shape[1]
        outs = [getattr(self, f"fuse_conv{i}")(_resized(x, side)) for i, x in enumerate(outs)]
        return [x + outs[-1] for x in outs[:-1]] + [outs[-1]]

    def __call__(self, images, *, train=None):
        train = not self.use_running_average if train is None else train
        shape = (self.resolution, self.resolution, self.image_channels)
        if images.ndim != 4 or tuple(images.shape[1:]) != shape:
            raise InputError(
                f"images must have shape (N, {shape[0]}, {shape[1]}, {shape[2]}) (NHWC, in "
                f"[-1, 1]); got {tuple(images.shape)}"
            )
        res4, res5, res6 = self._fused(self._levels(images, train))
        flat = [x.reshape(x.shape[0], -1) for x in (res6, res5, res4)]
        values = jnp.concatenate(
            [
                getattr(self, name)(x, train)
                for name, x in zip(("high", "mid", "low"), flat, strict=True)
            ],
            axis=1,
        )
        codes, start = [], 0
        for width in self.layer_widths:
            codes.append(jnp.tile(values[:, start : start + width], self.latent_dim // width))
            start += width
        return jnp.stack(codes, axis=1)

    def layer_features(self, codes):
        """The per-layer codes at their true widths: a tuple of (N, width_i)."""
        return tuple(codes[:, i, :w] for i, w in enumerate(self.layer_widths))
