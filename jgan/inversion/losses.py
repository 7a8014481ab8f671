"""Per-image inversion losses on NHWC images (N, H, W, C): each returns one value per image.

The means run over every pixel and channel of an image (or every feature of a layer), as
`torch.mean` does with IDInvert's batch of one and TF IDInvert's `axis=[1, 2, 3]`: a masked
loss therefore averages over the whole image, masked-out pixels counting as zero.
"""

import jax.numpy as jnp

from jgan.errors import InputError

DISTANCES = ("l2", "l1")
"""Perceptual distances: mean squared (IDInvert) or mean absolute (mGANprior) difference."""


def _per_image_mean(x):
    return jnp.mean(x.reshape(x.shape[0], -1), axis=1)


def pixel_mse(x, y):
    """Mean squared difference per image."""
    return _per_image_mean(jnp.square(x - y))


def pixel_l1(x, y):
    """Mean absolute difference per image."""
    return _per_image_mean(jnp.abs(x - y))


def check_distance(distance):
    if distance not in DISTANCES:
        raise InputError(f"perceptual distance must be one of {DISTANCES}; got {distance!r}")
    return distance


def feature_distance(features_x, features_y, distance="l2"):
    """Mean squared ('l2') or absolute ('l1') difference of two feature maps, per image."""
    check_distance(distance)
    diff = features_x - features_y
    return _per_image_mean(jnp.square(diff) if distance == "l2" else jnp.abs(diff))


def perceptual(vgg, x, y, layer="relu4_3", distance="l2"):
    """Distance between the VGG16 `layer` features of images `x` and `y`, per image.

    `vgg` is a `jgan.models.vgg.VGG16` of either convention; its preprocessing is that of the
    weights it holds (caffe: BGR in [0, 255] minus the mean, as IDInvert's conv4_3 loss;
    torchvision: ImageNet mean and std, as mGANprior's relu3_3 loss).
    """
    return feature_distance(vgg(x, (layer,))[layer], vgg(y, (layer,))[layer], distance)


def domain_regularizer(codes, encoded):
    """IDInvert's in-domain term ||code - E(G(code))||^2 as a mean per image: `encoded` is the
    encoder's code of the image the generator made from `codes`."""
    return _per_image_mean(jnp.square(codes - encoded))
