"""SeFa: closed-form factorization of latent semantics (Shen & Zhou, CVPR 2021).

The first operation a generator applies to its latent code is a linear map A (the style
affines of the chosen layers, or PGGAN's 4x4 dense layer). The directions n that change its
output most, max ||A n|| over unit n, are the top eigenvectors of A^T A: SeFa takes them as
the semantic directions, ranked by their eigenvalues.

Layer semantics follow genforce/sefa `factorize_weight`:
- PGGAN: the 4x4 first layer (`layer0`) whatever layers are asked; jgan refuses a request for
  any other layer instead of silently replacing it. Of a conditional model's first layer only
  the z inputs are factorized (the directions live in Z).
- StyleGAN: the full style affine of each chosen layer (scale and bias halves, 2C outputs).
- StyleGAN2: the style affine of each chosen layer; the last index is the final ToRGB's.
- StyleGAN3 (not in the original; the same idea): code 0 is read by the input layer's affine
  (its rotation and translation), code i > 0 by the style affine of layer i - 1 (the last
  code by the ToRGB layer's).
Each output column of the concatenated weight is normalized to unit length before the Gram
matrix is formed, as in the original.

Difference from the original: sefa uses `np.linalg.eig` on the symmetric Gram matrix, which
returns the eigenpairs in no particular order (and may return complex values), and then takes
the first K as "the top K" unsorted. jgan uses a symmetric eigensolver and returns the
eigenvalues in descending order with their directions, which is what the paper describes. The
sign of each direction is arbitrary, as in any eigendecomposition.
"""

import numbers

import numpy as np
import scipy.linalg

from jgan.analysis.layers import parse_layers
from jgan.errors import InputError


def _style_weights(generator, layers):
    """The (out, dim) raw weights of the maps that read the latent code in `layers`."""
    arch = getattr(generator, "arch", None)
    if arch == "pggan":
        num_layers = 2 * generator.num_blocks
        if parse_layers(layers, num_layers) not in ([0], list(range(num_layers))):
            raise InputError(
                "SeFa on PGGAN factorizes the 4x4 first layer (layer 0), which reads z; "
                f"the other layers do not read the latent code. Ask for 'all' or 0; got {layers!r}"
            )
        # OIHW (C, z + labels, 4, 4) as genforce stores it; sefa flips the kernel (TF's dense
        # layout) and flattens (z, C * 16). Only the z inputs are kept for conditional models.
        weight = np.asarray(generator.layer0.weight[...])[:, : generator.z_space_dim]
        return [weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(weight.shape[1], -1).T]
    if arch in ("stylegan", "stylegan2"):
        num_layers = generator.num_layers
        weights = []
        for i in parse_layers(layers, num_layers):
            name = f"output{i // 2}" if arch == "stylegan2" and i == num_layers - 1 else f"layer{i}"
            weights.append(np.asarray(getattr(generator.synthesis, name).style.weight[...]))
        return weights
    if arch == "stylegan3":
        synthesis = generator.synthesis
        modules = [synthesis.input] + [getattr(synthesis, n) for n in synthesis.layer_names]
        return [
            np.asarray(modules[i].affine.weight[...])
            for i in parse_layers(layers, generator.num_layers)
        ]
    raise InputError(
        "SeFa supports PGGAN, StyleGAN, StyleGAN2 and StyleGAN3 generators; "
        f"got {type(generator).__name__}"
    )


def sefa_weight(generator, layers="all"):
    """The (dim, out) matrix SeFa factorizes: the chosen layers' weights, concatenated along
    the outputs, each output column scaled to unit norm (sefa's `weight_normalized`)."""
    weight = np.concatenate(_style_weights(generator, layers), axis=0, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", weight, weight))
    if not np.all(norms > 0):
        raise InputError("the style weight has an all-zero output row; SeFa cannot normalize it")
    weight /= norms[:, None]  # in place: the concatenation is already a copy
    return weight.T


def sefa(generator, layers="all", *, num_directions=None):
    """(eigenvalues (K,), directions (K, dim)) of the chosen layers, eigenvalues descending.

    Directions are unit rows, mutually orthogonal; the first maximizes ||A n|| over unit n.
    K is the latent dimension, or `num_directions` for only the top ones (computed with a
    partial eigensolver, which is faster). `layers` is "all", an index, a list or a string
    such as "0-3,8"; see the module docstring for what each architecture factorizes.
    """
    weight = sefa_weight(generator, layers)
    dim = weight.shape[0]
    if num_directions is None:
        num_directions = dim
    if isinstance(num_directions, bool) or not (
        isinstance(num_directions, numbers.Integral) and 1 <= num_directions <= dim
    ):
        raise InputError(f"num_directions must be an integer in [1, {dim}]; got {num_directions!r}")
    gram = weight @ weight.T
    if num_directions == dim:
        values, vectors = scipy.linalg.eigh(gram, driver="evd", check_finite=False)
    else:
        values, vectors = scipy.linalg.eigh(
            gram, subset_by_index=(dim - num_directions, dim - 1), driver="evr", check_finite=False
        )
    return values[::-1].copy(), vectors[:, ::-1].T.copy()
