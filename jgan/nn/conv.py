"""Convolutions on NHWC activations with PyTorch-layout (OIHW) weights.

Weights keep the layout of the official checkpoints, so converters stay readable tables;
XLA picks its own kernel layout, so this costs nothing at run time.
"""

import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "OIHW", "NHWC")


def _pairs(padding):
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple(tuple(p) for p in padding)


def conv2d(x, weight, *, stride=1, padding=0, groups=1):
    """Cross-correlation as `torch.nn.functional.conv2d`; `weight` is (out, in/groups, kh, kw)."""
    return lax.conv_general_dilated(
        x,
        weight.astype(x.dtype),
        window_strides=(stride, stride),
        padding=_pairs(padding),
        dimension_numbers=_DIMS,
        feature_group_count=groups,
    )


def upconv2d(x, weight, *, groups=1):
    """Stride-2 transposed convolution whose OIHW `weight` is already in correlation form.

    Equals `conv_transpose2d(x, flip(weight).swap(in, out), stride=2)`, i.e. the up-convs of
    genforce's StyleGAN2 and of StyleGAN's fused path; output size is 2H + k - 2.
    """
    # Dilating the input explicitly (interior padding) rather than through `lhs_dilation` gives
    # the same numbers, but XLA:CPU differentiates the dilated form with a naive convolution
    # for the weight gradient: ~12x slower training steps at 256 px.
    k = weight.shape[-1]
    edge = (k - 1, k - 1, 1)
    dilated = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), edge, edge, (0, 0, 0)))
    return conv2d(dilated, weight, groups=groups)


def conv_transpose2d(x, weight, *, stride=2, padding=0):
    """`torch.nn.functional.conv_transpose2d` with its (in, out, kh, kw) weight layout."""
    k = weight.shape[-1]
    kernel = jnp.flip(weight, (2, 3)).transpose(1, 0, 2, 3)
    pad = k - 1 - padding
    return lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(1, 1),
        padding=((pad, pad), (pad, pad)),
        lhs_dilation=(stride, stride),
        dimension_numbers=_DIMS,
    )
