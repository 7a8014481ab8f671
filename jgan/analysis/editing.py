"""Editing latent codes: moving them along a boundary, layer by layer (HiGAN), interpolating
between codes and mixing styles.

Distances are in units of the boundary's norm; saved boundaries are unit vectors.
"""

import numbers

import jax.numpy as jnp
import numpy as np

from jgan.analysis.layers import parse_layers
from jgan.errors import InputError
from jgan.models.latent import mix_styles

__all__ = ["interpolate", "manipulate", "mix_styles", "truncation_compensation"]


def truncation_compensation(num_layers, trunc_psi, trunc_layers=None):
    """Per-layer strengths (num_layers,) that undo the shrinking of an edit by truncation.

    Truncation maps w to w_avg + psi (w - w_avg) on the first `trunc_layers` layers (all when
    None, jgan's convention), so moving w by d moves those W+ codes by psi d. Scaling a W
    boundary by psi there makes an edit of truncated W+ codes equal to the same edit of w made
    before truncation (HiGAN's layer-wise manipulation strength).
    """
    layers = num_layers if trunc_layers is None else trunc_layers
    return np.where(np.arange(num_layers) < layers, float(trunc_psi), 1.0).astype(np.float32)


def manipulate(
    codes,
    boundary,
    *,
    layers=None,
    start_distance=-3.0,
    end_distance=3.0,
    steps=7,
    trunc_psi=None,
    trunc_layers=None,
):
    """Codes moved along `boundary` by `steps` distances: (N, steps, *code_shape).

    Offsets are relative, as in HiGAN: a code c becomes c + d * boundary for each d in
    linspace(start_distance, end_distance, steps), so d = 0 gives c itself. (InterFaceGAN's
    `linear_interpolate` instead puts Z and W codes at absolute distances from the hyperplane.)

    - `codes`: Z or W codes (N, dim) with a (1, dim) boundary, or W+ codes (N, L, dim) with a
      W boundary (1, dim), applied to every layer, or a W+ boundary (1, L, dim).
    - `layers`: for W+ codes, the layers to move ("6-11", "0-3,8", [6, 7], 3; None or "all"
      for every layer); the other layers are returned exactly as given.
    - `trunc_psi`, `trunc_layers`: the truncation the W+ codes were made with (the arguments
      given to `jgan.synthesize`). A W boundary is then scaled by `truncation_compensation`, so
      the distances are those of W before truncation. A W+ boundary is trained on the truncated
      codes themselves and is used as it is.
    """
    codes = jnp.asarray(codes, jnp.float32)
    boundary = np.asarray(boundary, np.float32)
    if not isinstance(steps, numbers.Integral) or steps < 1:
        raise InputError(f"steps must be a positive integer; got {steps!r}")
    if codes.ndim == 2:
        direction, mask = _code_direction(codes, boundary, layers, trunc_psi)
    elif codes.ndim == 3:
        direction, mask = _layerwise_direction(codes, boundary, layers, trunc_psi, trunc_layers)
    else:
        raise InputError(
            f"codes must be Z/W codes (N, dim) or W+ codes (N, L, dim); got shape {codes.shape}"
        )
    distances = np.linspace(start_distance, end_distance, steps, dtype=np.float32)
    distances = jnp.asarray(distances).reshape((1, steps) + (1,) * (codes.ndim - 1))
    original = codes[:, None]
    moved = original + distances * jnp.asarray(direction)[None, None]
    if mask is None:
        return moved
    return jnp.where(jnp.asarray(mask)[None, None, :, None], moved, original)


def _code_direction(codes, boundary, layers, trunc_psi):
    dim = codes.shape[1]
    if layers is not None and not (isinstance(layers, str) and layers.lower() == "all"):
        raise InputError(
            f"layers={layers!r} needs W+ codes (N, L, dim); got Z/W codes of shape {codes.shape}"
        )
    if trunc_psi is not None:
        raise InputError(
            "trunc_psi compensates the truncation already applied to W+ codes; Z and W codes "
            "are truncated by the generator after the edit, so pass no trunc_psi for them"
        )
    if boundary.shape != (1, dim):
        raise InputError(
            f"the boundary must have shape (1, {dim}) to move codes of shape {codes.shape}; "
            f"got {boundary.shape}"
        )
    return boundary[0], None


def _layerwise_direction(codes, boundary, layers, trunc_psi, trunc_layers):
    num_layers, dim = codes.shape[1:]
    mask = np.zeros(num_layers, bool)
    mask[parse_layers(layers, num_layers)] = True
    if boundary.shape == (1, dim):
        strength = np.ones(num_layers, np.float32)
        if trunc_psi is not None:
            strength = truncation_compensation(num_layers, trunc_psi, trunc_layers)
        return strength[:, None] * boundary, mask
    if boundary.shape == (1, num_layers, dim):
        return boundary[0], mask
    raise InputError(
        f"the boundary must have shape (1, {dim}) or (1, {num_layers}, {dim}) to move W+ codes "
        f"of shape {codes.shape}; got {boundary.shape}"
    )


def interpolate(code_a, code_b, steps=5):
    """Linear paths from each of `code_a` to the matching `code_b` (both (N, *code_shape)),
    ends included: (N, steps, *code_shape), as HiGAN's `interpolate`."""
    code_a, code_b = jnp.asarray(code_a, jnp.float32), jnp.asarray(code_b, jnp.float32)
    if code_a.ndim < 2 or code_a.shape != code_b.shape:
        raise InputError(
            "both sets of codes must have the same shape (N, *code_shape); got "
            f"{code_a.shape} and {code_b.shape}"
        )
    if not isinstance(steps, numbers.Integral) or steps < 2:
        raise InputError(f"steps must be an integer >= 2 (both ends are included); got {steps!r}")
    t = jnp.linspace(0.0, 1.0, steps).reshape((1, steps) + (1,) * (code_a.ndim - 1))
    return code_a[:, None] + t * (code_b - code_a)[:, None]
