"""VGG16 feature extractor for perceptual losses (Simonyan & Zisserman 2015, configuration D).

The 13 3x3 convolutions with ReLU and the 5 max-pools of torchvision's `vgg16().features`, on
NHWC images in [-1, 1]. Two weight conventions exist, with the same architecture but different
names and input preprocessing:

- "torchvision": keys `features.{0,2,5,...,28}.{weight,bias}`; RGB in [0, 1] normalised by the
  ImageNet mean and std (torchvision's weights, mGANprior's VGG loss, LPIPS's trunk).
- "caffe": keys `layer{0,2,5,...,28}.{weight,bias}`; BGR in [0, 255] minus the ImageNet BGR mean,
  no std (the Keras-converted `vgg16.pth` of IDInvert and genforce).
"""

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jgan.errors import InputError
from jgan.models.base import ConfiguredModule
from jgan.nn import conv2d

CONVENTIONS = ("torchvision", "caffe")
BLOCK_WIDTHS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def _plan():
    """(tap name, `features` index, input channels or None for a pool) in forward order.

    Each conv is followed by a ReLU (index + 1, no weights) whose output is tap `relu{b}_{k}`;
    each block ends with a 2x2 max-pool whose output is `pool{b}`.
    """
    steps, index, channels = [], 0, 3
    for block, widths in enumerate(BLOCK_WIDTHS, 1):
        for k, width in enumerate(widths, 1):
            steps.append((f"relu{block}_{k}", index, channels, width))
            index, channels = index + 2, width
        steps.append((f"pool{block}", index, None, None))
        index += 1
    return tuple(steps)


PLAN = _plan()
LAYERS = tuple(name for name, *_ in PLAN)
"""Every tap, in forward order: relu1_1, relu1_2, pool1, ..., relu5_3, pool5."""
CONV_INDICES = tuple(index for _, index, channels, _ in PLAN if channels is not None)
"""`features` indices of the 13 convolutions: 0, 2, 5, ..., 28."""


def check_layers(layers):
    """`layers` as a tuple of tap names; InputError naming the valid ones otherwise."""
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    unknown = [name for name in layers if name not in LAYERS]
    if unknown or not layers:
        raise InputError(f"unknown VGG16 layer(s) {unknown or layers}; valid layers: {LAYERS}")
    return layers


def min_size(layers):
    """Smallest image side for which every tap in `layers` is at least 1x1."""
    last = max(LAYERS.index(name) for name in layers)
    return 2 ** sum(name.startswith("pool") for name in LAYERS[: last + 1])


class Sequence(nnx.Module):
    """Children named by their `torch.nn.Sequential` index, so paths read `features.0.weight`."""

    def __init__(self, children):
        for name, child in children.items():
            setattr(self, str(name), child)

    def __getitem__(self, index):
        return getattr(self, str(index))


class Conv3x3(nnx.Module):
    """3x3 convolution, padding 1, with bias; weight (out, in, 3, 3) as torch stores it."""

    def __init__(self, in_channels, out_channels, *, rngs):
        std = math.sqrt(2.0 / (out_channels * 9))  # torchvision: kaiming_normal_(fan_out, relu)
        shape = (out_channels, in_channels, 3, 3)
        self.weight = nnx.Param(jax.random.normal(rngs.params(), shape, jnp.float32) * std)
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32))

    def __call__(self, x):
        return conv2d(x, self.weight[...], padding=1) + self.bias[...].astype(x.dtype)


def max_pool2x(x):
    """2x2 max-pool with stride 2, dropping an odd last row/column (torch's default floor)."""
    window = (1, 2, 2, 1)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, "VALID")


class VGG16(ConfiguredModule):
    """VGG16 `features` returning named post-ReLU / post-pool taps of NHWC images in [-1, 1].

    `convention` selects the parameter names and the preprocessing of the weights it will hold
    (see the module docstring). Computation stops after the last requested tap.
    """

    arch: ClassVar[str] = "vgg16"

    def __init__(self, convention="torchvision", *, rngs: nnx.Rngs):
        if convention not in CONVENTIONS:
            raise InputError(f"VGG16 convention must be one of {CONVENTIONS}; got {convention!r}")
        self._remember_config(convention=convention)
        self.convention = convention
        convs = {
            index: Conv3x3(channels, width, rngs=rngs)
            for _, index, channels, width in PLAN
            if channels is not None
        }
        if convention == "torchvision":
            self.features = Sequence(convs)
        else:
            for index, conv in convs.items():
                setattr(self, f"layer{index}", conv)

    def conv(self, index):
        """The convolution at `features` index `index`."""
        if self.convention == "torchvision":
            return self.features[index]
        return getattr(self, f"layer{index}")

    def preprocess(self, images):
        """NHWC RGB in [-1, 1] -> the input the weights were trained on."""
        if self.convention == "torchvision":
            mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)
            return ((images + 1.0) * 0.5 - mean.astype(images.dtype)) / std.astype(images.dtype)
        bgr = (images + 1.0) * 127.5
        return bgr[..., ::-1] - jnp.asarray(CAFFE_BGR_MEAN, images.dtype)

    def taps(self, x, layers):
        """{name: NHWC activation} of already preprocessed input `x`."""
        layers = check_layers(layers)
        last = max(LAYERS.index(name) for name in layers)
        out = {}
        for name, index, channels, _ in PLAN[: last + 1]:
            x = max_pool2x(x) if channels is None else jax.nn.relu(self.conv(index)(x))
            if name in layers:
                out[name] = x
        return out

    def __call__(self, images, layers=("relu4_3",)):
        """{name: NHWC activation} for each tap in `layers` of RGB `images` in [-1, 1]."""
        return self.taps(self.preprocess(images), layers)
