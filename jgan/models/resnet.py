"""ResNet classifiers (He et al. 2016) on NHWC float images, with batch norm that trains.

Two families, one class:
- CIFAR style, as in the common knowledge-distillation benchmark (CRD's RepDistiller,
  `models/resnet.py`): a 3x3 stem without pooling, three stages of basic blocks at strides
  1, 2, 2; resnet{8,14,20,32,44,56,110} with widths 16 | 16, 32, 64 (stem | stages) and the wide
  resnet8x4 / resnet32x4 with 32 | 64, 128, 256.
- ImageNet style, as torchvision: a 7x7 stride-2 stem and a 3x3 stride-2 max-pool, four stages
  at strides 1, 2, 2, 2; resnet18/34 (basic blocks) and resnet50 (bottlenecks, stride on the 3x3
  conv as torchvision's "v1.5").
Parameter names follow those files (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`,
`fc`; weights OIHW / (out, in)), so their state dicts are readable key tables; BN statistics are
`Buffer`s (`running_mean`, `running_var`). `train=True` normalises by batch statistics and
updates the running ones in place (torch's momentum 0.1 and unbiased running variance); under
`jax.jit` split the module into pure dicts (`jgan.training.state.split_module`), merge them
inside and read the new buffers back with `nnx.state`.

`SplitResNet` is one such network separated into a shared trunk and two parallel branches
(student and assistant, for residual knowledge distillation) whose projected feature maps are
summed before the classifier; `split_config` sizes the branches so the whole costs what the
original does (`macs` counts it).
"""

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from jgan.errors import InputError
from jgan.models.base import ConfiguredModule
from jgan.models.vgg import Sequence
from jgan.nn import Buffer, conv2d

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
BLOCKS = ("basic", "bottleneck")
STEMS = ("cifar", "imagenet")
EXPANSION = {"basic": 1, "bottleneck": 4}

_CIFAR = {8: 1, 14: 2, 20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
PRESETS = {
    **{
        f"resnet{depth}": dict(depths=(n,) * 3, widths=(16, 32, 64), stem_width=16)
        for depth, n in _CIFAR.items()
    },
    "resnet8x4": dict(depths=(1, 1, 1), widths=(64, 128, 256), stem_width=32),
    "resnet32x4": dict(depths=(5, 5, 5), widths=(64, 128, 256), stem_width=32),
    **{
        name: dict(
            depths=depths, widths=(64, 128, 256, 512), stem_width=64, block=block, stem="imagenet"
        )
        for name, depths, block in (
            ("resnet18", (2, 2, 2, 2), "basic"),
            ("resnet34", (3, 4, 6, 3), "basic"),
            ("resnet50", (3, 4, 6, 3), "bottleneck"),
        )
    },
}
"""Named architectures -> ResNet constructor arguments (CIFAR ones default to 100 classes,
ImageNet ones to 1000)."""


def preset(name, **overrides):
    """Constructor arguments of the named ResNet, with `overrides` (e.g. num_classes) applied."""
    if name not in PRESETS:
        raise InputError(f"unknown ResNet {name!r}; jgan knows {tuple(PRESETS)}")
    config = dict(PRESETS[name])
    config.setdefault("num_classes", 1000 if config.get("stem") == "imagenet" else 100)
    return {**config, **overrides}


def resnet(name, *, rngs, **overrides):
    """The named ResNet (see `PRESETS`), e.g. `resnet("resnet8x4", num_classes=10, rngs=...)`."""
    return ResNet(**preset(name, **overrides), rngs=rngs)


class Conv(nnx.Module):
    """Bias-free k x k convolution, padding k // 2; weight (out, in, k, k), He init (fan out)."""

    def __init__(self, in_channels, out_channels, kernel, *, stride=1, rngs):
        std = math.sqrt(2.0 / (out_channels * kernel * kernel))
        shape = (out_channels, in_channels, kernel, kernel)
        self.weight = nnx.Param(jax.random.normal(rngs.params(), shape, jnp.float32) * std)
        self.stride = stride
        self.padding = kernel // 2

    def __call__(self, x):
        return conv2d(x, self.weight[...], stride=self.stride, padding=self.padding)


class BatchNorm(nnx.Module):
    """torch's `BatchNorm2d` over the last axis, in train or eval mode."""

    def __init__(self, channels):
        self.weight = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.running_mean = Buffer(jnp.zeros((channels,), jnp.float32))
        self.running_var = Buffer(jnp.ones((channels,), jnp.float32))

    def __call__(self, x, train=False):
        if train:
            values = x.astype(jnp.float32)
            mean = jnp.mean(values, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(values - mean), axis=(0, 1, 2))
            count = values.size // values.shape[-1]
            stats = jax.lax.stop_gradient((mean, var * count / max(count - 1, 1)))
            for buffer, stat in zip((self.running_mean, self.running_var), stats, strict=True):
                buffer[...] = (1 - BN_MOMENTUM) * buffer[...] + BN_MOMENTUM * stat
        else:
            mean, var = self.running_mean[...], self.running_var[...]
        scale = self.weight[...] * jax.lax.rsqrt(var + BN_EPS)
        shift = self.bias[...] - mean * scale
        return x * scale.astype(x.dtype) + shift.astype(x.dtype)


class Dense(nnx.Module):
    """Linear layer with torch's layout (weight (out, in)) and default uniform init."""

    def __init__(self, in_features, out_features, *, rngs):
        bound = 1.0 / math.sqrt(in_features)
        key_w, key_b = jax.random.split(rngs.params())
        self.weight = nnx.Param(
            jax.random.uniform(key_w, (out_features, in_features), jnp.float32, -bound, bound)
        )
        self.bias = nnx.Param(
            jax.random.uniform(key_b, (out_features,), jnp.float32, -bound, bound)
        )

    def __call__(self, x):
        return x @ self.weight[...].T.astype(x.dtype) + self.bias[...].astype(x.dtype)


class Block(nnx.Module):
    """A basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1 to 4x width) residual block.

    Returns the sum before the final ReLU (the "pre-activation" features KD methods may tap).
    The shortcut is a strided 1x1 conv + BN wherever the shape changes, the identity elsewhere.
    """

    def __init__(self, in_channels, width, *, stride, block, rngs):
        out_channels = width * EXPANSION[block]
        if block == "basic":
            convs = ((in_channels, width, 3, stride), (width, width, 3, 1))
        else:
            convs = (
                (in_channels, width, 1, 1),
                (width, width, 3, stride),
                (width, out_channels, 1, 1),
            )
        self.num_convs = len(convs)
        for i, (cin, cout, k, s) in enumerate(convs, 1):
            setattr(self, f"conv{i}", Conv(cin, cout, k, stride=s, rngs=rngs))
            setattr(self, f"bn{i}", BatchNorm(cout))
        reshaped = stride != 1 or in_channels != out_channels
        self.downsample = (
            Sequence(
                {
                    0: Conv(in_channels, out_channels, 1, stride=stride, rngs=rngs),
                    1: BatchNorm(out_channels),
                }
            )
            if reshaped
            else None
        )

    def __call__(self, x, train=False):
        shortcut = x
        for i in range(1, self.num_convs + 1):
            if i > 1:
                x = jax.nn.relu(x)
            x = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x), train)
        if self.downsample is not None:
            shortcut = self.downsample[1](self.downsample[0](shortcut), train)
        return x + shortcut


def _check_choice(name, value, choices):
    if value not in choices:
        raise InputError(f"{name} must be one of {choices}; got {value!r}")


def _positive_ints(name, values, allow_empty=False):
    values = tuple(values)
    if (not values and not allow_empty) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise InputError(f"{name} must be a tuple of positive integers; got {values!r}")
    return values


def _add_stages(module, in_channels, depths, widths, *, block, first, stride, rngs):
    """Adds stages `layer{first}`, ... to `module` (strides `stride` then 2); returns the
    output width. Their names are kept in `module.stages`."""
    names = []
    for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
        blocks = {}
        for j in range(depth):
            s = (stride if i == 0 else 2) if j == 0 else 1
            blocks[j] = Block(in_channels, width, stride=s, block=block, rngs=rngs)
            in_channels = width * EXPANSION[block]
        names.append(f"layer{first + i}")
        setattr(module, names[-1], Sequence(blocks))
    module.stages = tuple(names)
    module.depths = tuple(depths)
    return in_channels


def _run_stages(module, x, train, preact):
    """The stages of `module`; the last block's output before its ReLU when `preact`."""
    for name, depth in zip(module.stages, module.depths, strict=True):
        for j in range(depth):
            x = getattr(module, name)[j](x, train)
            if not (preact and name == module.stages[-1] and j == depth - 1):
                x = jax.nn.relu(x)
    return x


def max_pool3x3(x):
    """3x3 max-pool, stride 2, padding 1 (torchvision's stem pool)."""
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), pad)


class ResNet(ConfiguredModule):
    """A ResNet classifier: NHWC float images -> logits (see the module docstring).

    `depths`/`widths`: blocks and base width per stage (the output width is width x 4 for
    bottlenecks); `stem_width`: channels of the stem conv; `block`: "basic" | "bottleneck";
    `stem`: "cifar" (3x3) | "imagenet" (7x7 stride 2 + max-pool); `num_classes`: 0 builds no
    classifier (a feature extractor). `features` gives the last stage's map, `head` pools it
    and classifies.
    """

    arch: ClassVar[str] = "resnet"

    def __init__(
        self,
        depths=(1, 1, 1),
        widths=(16, 32, 64),
        stem_width=16,
        block="basic",
        stem="cifar",
        num_classes=100,
        in_channels=3,
        *,
        rngs: nnx.Rngs,
    ):
        _check_choice("block", block, BLOCKS)
        _check_choice("stem", stem, STEMS)
        depths = _positive_ints("depths", depths, allow_empty=True)
        widths = _positive_ints("widths", widths, allow_empty=True)
        if len(depths) != len(widths):
            raise InputError(f"depths {depths} and widths {widths} must have the same length")
        self._remember_config(
            depths=depths,
            widths=widths,
            stem_width=stem_width,
            block=block,
            stem=stem,
            num_classes=num_classes,
            in_channels=in_channels,
        )
        self.stem = stem
        self.conv1 = Conv(
            in_channels,
            stem_width,
            7 if stem == "imagenet" else 3,
            rngs=rngs,
            stride=2 if stem == "imagenet" else 1,
        )
        self.bn1 = BatchNorm(stem_width)
        self.feature_channels = _add_stages(
            self, stem_width, depths, widths, block=block, first=1, stride=1, rngs=rngs
        )
        self.fc = Dense(self.feature_channels, num_classes, rngs=rngs) if num_classes else None

    def features(self, x, *, train=False, preact=False):
        """The last stage's NHWC feature map (after its ReLU unless `preact`)."""
        x = jax.nn.relu(self.bn1(self.conv1(x), train))
        if self.stem == "imagenet":
            x = max_pool3x3(x)
        return _run_stages(self, x, train, preact and bool(self.stages))

    def head(self, feature_map):
        """Global average pool then the classifier: logits (N, num_classes)."""
        return self.fc(jnp.mean(feature_map, axis=(1, 2)))

    def __call__(self, x, *, train=False):
        """Logits (N, num_classes) of NHWC images."""
        return self.head(self.features(x, train=train))


class Branch(nnx.Module):
    """Stages continuing a trunk, then a 1x1 conv + BN projecting to `out_channels`."""

    def __init__(self, in_channels, depths, widths, out_channels, *, block, first, stride, rngs):
        channels = _add_stages(
            self, in_channels, depths, widths, block=block, first=first, stride=stride, rngs=rngs
        )
        self.project = Sequence(
            {0: Conv(channels, out_channels, 1, rngs=rngs), 1: BatchNorm(out_channels)}
        )

    def __call__(self, x, train=False):
        x = _run_stages(self, x, train, preact=False)
        return self.project[1](self.project[0](x), train)


class SplitResNet(ConfiguredModule):
    """A ResNet separated into a shared trunk and parallel student and assistant branches.

    The trunk is the stem and the first `shared_stages` stages at the original widths; each
    branch runs the remaining stages at its own widths (`student_widths`, `assistant_widths`)
    and projects its last map to `feature_channels` (1x1 conv + BN, signed, so the assistant
    can output a residual; the assistant's BN scale starts at 0, so F_A starts at 0). The
    classifier sees the sum F_S + F_A of the two projections;
    `features` returns both, `head` classifies a map, `__call__` gives logits of the sum.
    """

    arch: ClassVar[str] = "split_resnet"

    def __init__(
        self,
        depths=(1, 1, 1),
        widths=(16, 32, 64),
        stem_width=16,
        block="basic",
        stem="cifar",
        num_classes=100,
        in_channels=3,
        shared_stages=1,
        student_widths=(24,),
        assistant_widths=(16,),
        feature_channels=64,
        *,
        rngs: nnx.Rngs,
    ):
        depths, widths = tuple(depths), tuple(widths)
        if not 0 <= shared_stages < len(depths):
            raise InputError(
                f"shared_stages must be in [0, {len(depths)}) for {len(depths)} stages; "
                f"got {shared_stages}"
            )
        rest = len(depths) - shared_stages
        for name, branch_widths in (("student", student_widths), ("assistant", assistant_widths)):
            if len(_positive_ints(f"{name}_widths", branch_widths)) != rest:
                raise InputError(
                    f"{name}_widths must give {rest} widths (stages after the {shared_stages} "
                    f"shared ones); got {tuple(branch_widths)!r}"
                )
        self._remember_config(
            depths=depths,
            widths=widths,
            stem_width=stem_width,
            block=block,
            stem=stem,
            num_classes=num_classes,
            in_channels=in_channels,
            shared_stages=shared_stages,
            student_widths=tuple(student_widths),
            assistant_widths=tuple(assistant_widths),
            feature_channels=feature_channels,
        )
        self.trunk = ResNet(
            depths[:shared_stages],
            widths[:shared_stages],
            stem_width,
            block,
            stem,
            num_classes=0,
            in_channels=in_channels,
            rngs=rngs,
        )
        branch = dict(
            block=block, first=shared_stages + 1, stride=1 if shared_stages == 0 else 2, rngs=rngs
        )
        trunk_channels = self.trunk.feature_channels
        tail = depths[shared_stages:]
        self.student = Branch(trunk_channels, tail, student_widths, feature_channels, **branch)
        self.assistant = Branch(trunk_channels, tail, assistant_widths, feature_channels, **branch)
        # The assistant starts as a zero residual (its projection's BN scale is 0), so S + A
        # starts as S and the assistant only ever adds what it has learned.
        self.assistant.project[1].weight[...] = jnp.zeros((feature_channels,), jnp.float32)
        self.fc = Dense(feature_channels, num_classes, rngs=rngs)

    def features(self, x, *, train=False):
        """(F_S, F_A): the student's and assistant's projected NHWC feature maps."""
        shared = self.trunk.features(x, train=train)
        return self.student(shared, train), self.assistant(shared, train)

    def head(self, feature_map):
        """Global average pool then the classifier."""
        return self.fc(jnp.mean(feature_map, axis=(1, 2)))

    def __call__(self, x, *, train=False):
        """Logits of the combined features F_S + F_A."""
        student, assistant = self.features(x, train=train)
        return self.head(student + assistant)


def _side(size, stride):
    """Output side of a conv with padding k // 2 (and of the stem's max-pool)."""
    return -(-size // stride)


def _stages_macs(in_channels, depths, widths, block, stride, size):
    """(MACs, output channels, output side) of consecutive stages, the first at `stride`."""
    total, expansion = 0, EXPANSION[block]
    for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
        out_channels = width * expansion
        for j in range(depth):
            s = (stride if i == 0 else 2) if j == 0 else 1
            out = _side(size, s)
            if block == "basic":
                total += out * out * 9 * (in_channels * width + width * width)
            else:
                total += size * size * in_channels * width
                total += out * out * (9 * width * width + width * out_channels)
            if s != 1 or in_channels != out_channels:
                total += out * out * in_channels * out_channels
            in_channels, size = out_channels, out
    return total, in_channels, size


def _trunk_macs(config, image_size, num_stages):
    """(MACs, channels, side) of the stem and the first `num_stages` stages."""
    stem, channels = config.get("stem", "cifar"), config.get("in_channels", 3)
    width = config["stem_width"]
    if stem == "imagenet":
        side = _side(image_size, 2)
        total, side = side * side * channels * width * 49, _side(side, 2)
    else:
        side = image_size
        total = side * side * channels * width * 9
    block = config.get("block", "basic")
    depths, widths = config["depths"][:num_stages], config["widths"][:num_stages]
    stages, channels, side = _stages_macs(width, depths, widths, block, 1, side)
    return total + stages, channels, side


def resnet_macs(config, image_size):
    """MACs (convolutions and the classifier) of a `ResNet` built from `config` on square
    images of side `image_size`, counted analytically (`macs` counts any traced function)."""
    total, channels, _ = _trunk_macs(config, image_size, len(config["depths"]))
    return total + channels * config.get("num_classes", 100)


def split_resnet_macs(config, image_size):
    """MACs of a `SplitResNet` built from `config` (trunk, both branches, classifier)."""
    k = config["shared_stages"]
    total, channels, side = _trunk_macs(config, image_size, k)
    block, tail = config.get("block", "basic"), tuple(config["depths"][k:])
    features = config["feature_channels"]
    for widths in (config["student_widths"], config["assistant_widths"]):
        branch, out, out_side = _stages_macs(
            channels, tail, tuple(widths), block, 1 if k == 0 else 2, side
        )
        total += branch + out_side * out_side * out * features
    return total + features * config.get("num_classes", 100)


def split_config(model, *, image_size, shared_stages, student_share, feature_channels):
    """`SplitResNet` arguments that separate the ResNet `model` (its constructor arguments)
    into a trunk of its stem and first `shared_stages` stages and two branches, sized so the
    whole costs the same MACs as `model` (to well under 1%): the student branch (with its
    projection) takes `student_share` of the budget left after the trunk and the classifier,
    the assistant the rest. Branch widths are the model's scaled by one factor per branch."""
    model = dict(model)
    depths, widths = tuple(model["depths"]), tuple(model["widths"])
    if not 0 < student_share < 1:
        raise InputError(f"student_share must be in (0, 1); got {student_share}")
    if not 0 <= shared_stages < len(depths):
        raise InputError(
            f"shared_stages must be in [0, {len(depths)}) for {len(depths)} stages; "
            f"got {shared_stages}"
        )
    target = resnet_macs(model, image_size)
    base = {**model, "shared_stages": shared_stages, "feature_channels": feature_channels}
    tail = widths[shared_stages:]

    def cost(student, assistant):
        config = {**base, "student_widths": student, "assistant_widths": assistant}
        return split_resnet_macs(config, image_size)

    def scaled(factor):
        return tuple(max(1, round(factor * w)) for w in tail)

    def nearest(goal, other):
        """The branch widths (one scale for all stages, steps of 1/1000) whose total with
        `other` as the second branch comes closest to `goal`."""
        candidates = {scaled(f / 1000) for f in range(1, 4001)}
        return min(sorted(candidates), key=lambda w: abs(cost(w, other) - goal))

    thinnest = (1,) * len(tail)
    floor = cost(thinnest, thinnest)
    if floor >= target:
        raise InputError(
            f"the model is too small to split after {shared_stages} shared stages: its trunk, "
            f"projections and classifier alone cost {floor} of its {target} MACs"
        )
    student = nearest(floor + student_share * (target - floor), thinnest)
    assistant = nearest(target, student)
    return {**base, "student_widths": student, "assistant_widths": assistant}


def macs(fn, *args):
    """Multiply-accumulates of the convolutions and matrix products `fn(*args)` traces.

    The usual "FLOPs" of classifier papers (BN, ReLU, pooling and additions not counted);
    exact for any jax function, since it reads the traced program.
    """
    return _jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr)


def _jaxpr_macs(jaxpr):
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            out = eqn.outvars[0].aval.shape
            rhs = eqn.invars[1].aval.shape
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, spatial...)
            per_output = math.prod(rhs[d] for d in spec[1:])
            total += math.prod(out) * per_output
        elif name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)
        for sub in _subjaxprs(eqn):
            total += _jaxpr_macs(sub)
    return total


def _subjaxprs(eqn):
    for value in eqn.params.values():
        if hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
            yield value.jaxpr
        elif hasattr(value, "eqns"):
            yield value
