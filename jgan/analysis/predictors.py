"""Predictors: whatever scores images for an attribute, so boundaries can be trained on it.

A predictor is any callable `images -> scores`. It receives a batch of NHWC float images in the
generator's native range ([-1, 1]) as a jax array (possibly sharded over devices, so a jax
predictor runs where the images are) and returns scores of shape (N,) or (N, K), one column per
attribute. Tools name predictors by import path, `package.module:function` or
`path/to/file.py:function`.
"""

import importlib
import importlib.util
import os

import jax.numpy as jnp
import numpy as np

from jgan.errors import InputError


def load_predictor(spec):
    """The predictor named by `spec`: a callable (returned as is) or an import path.

    Import paths are `package.module:attribute` (the attribute may be dotted, e.g.
    `module:Class.method`) or `file.py:attribute`. A jgan model directory holding an attribute
    classifier (`jgan train --config configs/classifier.py`) is named `DIR` (probabilities of
    every attribute) or `DIR:attribute` (one attribute, or one column such as `shape=1`); see
    `jgan.models.classifier.ClassifierPredictor`.
    """
    if callable(spec):
        return spec
    spec = os.fspath(spec)
    location, sep, attribute = spec.rpartition(":")
    if os.path.isdir(spec) or (sep and os.path.isdir(location)):
        from jgan.models.classifier import load_predictor as load_classifier

        if os.path.isdir(spec):
            return load_classifier(spec)
        return load_classifier(location, attribute)
    if not sep or not location or not attribute:
        raise InputError(
            f"a predictor is named 'package.module:function' or 'file.py:function'; got {spec!r}"
        )
    predictor = _import(location, spec)
    for name in attribute.split("."):
        try:
            predictor = getattr(predictor, name)
        except AttributeError:
            raise InputError(
                f"{location} has no attribute {attribute!r} (predictor {spec!r})"
            ) from None
    if not callable(predictor):
        raise InputError(f"predictor {spec!r} is a {type(predictor).__name__}, not a callable")
    return predictor


def _import(location, spec):
    if location.endswith(".py"):
        if not os.path.isfile(location):
            raise InputError(f"predictor file {location} does not exist ({spec!r})")
        name = "jgan_predictor_" + os.path.splitext(os.path.basename(location))[0]
        module_spec = importlib.util.spec_from_file_location(name, location)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(location)
    except ImportError as error:
        raise InputError(f"cannot import {location!r} for predictor {spec!r}: {error}") from error


def predictor_name(predictor):
    """A readable name of a predictor callable, recorded beside the data it scored."""
    module = getattr(predictor, "__module__", None) or ""
    name = getattr(predictor, "__qualname__", None) or type(predictor).__qualname__
    return f"{module}:{name}"


def predict(predictor, images):
    """`predictor(images)` as float32 numpy scores of shape (N,) or (N, K), checked.

    Scores of the wrong shape, or NaN or infinite scores, are an InputError: a broken predictor
    is caught on its first batch, not after hours of sampling.
    """
    return check_scores(predictor(images), images.shape[0], predictor)


def check_scores(scores, n, predictor):
    """`scores` that `predictor` returned for `n` images, as checked float32 numpy (see
    `predict`); separate so a caller can queue the next batch before waiting for these."""
    try:
        scores = np.asarray(scores, np.float32)
    except (TypeError, ValueError) as error:
        raise InputError(
            f"predictor {predictor_name(predictor)} returned {type(scores).__name__}, not "
            f"numeric scores ({error})"
        ) from error
    if scores.ndim not in (1, 2) or scores.shape[0] != n:
        raise InputError(
            f"predictor {predictor_name(predictor)} returned scores of shape {scores.shape} "
            f"for {n} images; expected ({n},) or ({n}, K)"
        )
    if not np.all(np.isfinite(scores)):
        raise InputError(f"predictor {predictor_name(predictor)} returned NaN or infinite scores")
    return scores


def mean_color(images):
    """Mean of each colour channel, (N, C): a predictor that needs no training.

    Column 0 is redness for RGB images; use it to try generate-data, boundary, rescore and
    edit end to end before an attribute classifier exists.
    """
    return jnp.mean(images, axis=(1, 2))
