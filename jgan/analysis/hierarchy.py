"""HiGAN's re-scoring: which semantics a generator controls, and at which layers.

Each boundary moves the codes by +`distance` (HiGAN: 2.0) on all layers and, layer-wise, on one
layer at a time; a predictor scores the images before and after. A semantic is relevant when
moving along its boundary raises its score: the measure is the mean over samples of the
positive part of the score change, max(after - before, 0).
"""

import numbers
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from jgan.analysis.editing import manipulate
from jgan.analysis.generate import score_codes
from jgan.errors import InputError


class Rescoring(NamedTuple):
    """Scores and score changes of `rescore`, boundaries in the order given.

    `scores` (B, N, 2 + L): before, after the all-layer move, after moving layer l alone
    (L = 0 without layer-wise rescoring; HiGAN's `{name}_scores.npy` per boundary).
    `semantic_change` (B,) and `layer_change` (B, L): mean positive score changes.
    """

    scores: np.ndarray
    semantic_change: np.ndarray
    layer_change: np.ndarray

    @property
    def semantic_order(self):
        """Boundary indices, most relevant first."""
        return np.argsort(-self.semantic_change, kind="stable")

    @property
    def layer_order(self):
        """(B, L) layer indices of each boundary, most relevant first."""
        return np.argsort(-self.layer_change, axis=1, kind="stable")


def mean_positive_change(before, after, axis=0):
    """mean(max(after - before, 0)) over the samples (along `axis`)."""
    return np.mean(np.maximum(np.asarray(after) - np.asarray(before), 0.0), axis=axis)


def rescore(
    generator,
    codes,
    boundaries,
    predictor,
    *,
    space="wp",
    columns=None,
    distance=2.0,
    layerwise=False,
    trunc_psi=None,
    trunc_layers=None,
    batch_size=64,
    noise_mode="const",
):
    """Re-scores `boundaries` (a sequence of (1, dim) or (1, L, dim) arrays) on `codes`.

    `codes` are W+ codes (N, L, dim) with `space="wp"` (the default, HiGAN's setting; then
    `trunc_psi`, `trunc_layers` say how they were truncated and W boundaries are compensated
    as in `manipulate`), or Z/W codes (N, dim) with `space` "z" or "w" (then the generator
    truncates after the move, and there is no layer-wise rescoring).
    `predictor` maps images to scores (N,) or (N, K); with K columns, `columns[b]` is the
    column boundary b is scored on (by default column b when K equals the number of
    boundaries, or column 0 when K is 1). Returns a `Rescoring`.
    """
    codes = np.asarray(codes, np.float32)
    boundaries = [np.asarray(b, np.float32) for b in boundaries]
    if not boundaries:
        raise InputError("rescore needs at least one boundary")
    if space not in ("z", "w", "wp") or codes.ndim != (3 if space == "wp" else 2):
        raise InputError(
            f"codes must be W+ codes (N, L, dim) with space='wp', or (N, dim) with space 'z' "
            f"or 'w'; got shape {codes.shape} with space={space!r}"
        )
    if layerwise and space != "wp":
        raise InputError("layer-wise rescoring moves one layer at a time: it needs W+ codes")
    num_layers = codes.shape[1] if layerwise else 0
    options = {"space": space, "noise_mode": noise_mode}
    truncation = {"trunc_psi": trunc_psi, "trunc_layers": trunc_layers}
    if space != "wp":  # the generator truncates Z and W codes after the move
        options.update(truncation)
        truncation = {}
    move = {"distance": distance, "layerwise": layerwise, **truncation}
    for boundary in boundaries:  # bad shapes fail here, before any image is made
        next(rescoring_moves(codes[:1], boundary, **move))

    def scores_of(moved):
        return score_codes(generator, moved, predictor, batch_size=batch_size, **options)

    before = scores_of(codes)
    columns = _columns(before, columns, len(boundaries))
    scores = np.empty((len(boundaries), codes.shape[0], 2 + num_layers), np.float32)
    with tqdm(total=len(boundaries) * (1 + num_layers), desc="rescore", unit="edit") as bar:
        for b, (boundary, column) in enumerate(zip(boundaries, columns, strict=True)):
            scores[b, :, 0] = _column(before, column)
            for j, moved in enumerate(rescoring_moves(codes, boundary, **move), start=1):
                scores[b, :, j] = _column(scores_of(moved), column)
                bar.update()
    change = mean_positive_change(scores[:, :, :1], scores[:, :, 1:], axis=1)
    return Rescoring(scores, change[:, 0], change[:, 1:])


def rescoring_moves(
    codes, boundary, *, distance=2.0, layerwise=False, trunc_psi=None, trunc_layers=None
):
    """The codes moved by `distance` along `boundary` on all layers, then (`layerwise`, W+ codes)
    on each layer alone, one array at a time (as `manipulate`)."""
    move = {"start_distance": distance, "end_distance": distance, "steps": 1}
    move.update(trunc_psi=trunc_psi, trunc_layers=trunc_layers)
    for layers in [None, *(range(codes.shape[1]) if layerwise else ())]:
        yield np.asarray(manipulate(codes, boundary, layers=layers, **move))[:, 0]


def _columns(scores, columns, count):
    """The predictor column of each boundary (None for one-dimensional scores)."""
    if scores.ndim == 1:
        if columns is not None:
            raise InputError("the predictor returns one score per image; pass no columns")
        return [None] * count
    k = scores.shape[1]
    if columns is None:
        if k not in (1, count):
            raise InputError(
                f"the predictor returns {k} scores per image for {count} boundaries: pass "
                "columns, the score column of each boundary"
            )
        columns = [0] * count if k == 1 else list(range(count))
    columns = list(columns)
    if len(columns) != count or not all(
        isinstance(c, numbers.Integral) and 0 <= c < k for c in columns
    ):
        raise InputError(
            f"columns must give one index in [0, {k}) per boundary ({count}); got {columns}"
        )
    return columns


def _column(scores, column):
    return scores if column is None else scores[:, column]
