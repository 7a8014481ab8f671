"""FairGen (Tan, Shen and Zhou, arXiv 2012.04842): fairer sampling from a trained GAN without
retraining it.

Two stages, as the paper's framework figure shows. The *latent distribution shift* moves every
directly sampled code into each attribute cell, i.e. to the signed distances +-d from the
attribute boundaries (InterFaceGAN). The *conditional sampling* fits one Gaussian mixture per
cell and draws the same number of codes from each. The official release is a Colab that only
samples from mixtures fitted beforehand (genforce/fairgen, docs/fairgen.ipynb). The fitting is
reconstructed here.

Kept from the Colab:
- codes live in raw (untruncated) W of StyleGAN2;
- there is one mixture per cell of values, keyed '{v1*3.0:.1f}_{v2*3.0:.1f}' ('-3.0_-3.0',
  '-3.0_3.0', '3.0_-3.0', '3.0_3.0');
- each mixture is stored as {'params', 'cov', 'mean', 'weights'}, that is the sklearn
  `init_params` and the fitted `covariances_`, `means_` and `weights_`;
- the Colab rebuilds each one as a full-covariance `sklearn.mixture.GaussianMixture` whose
  `sample(n)[0]` gives the codes; `sample_gmm` does the same, so a seed gives the same codes;
- fair sampling draws equal numbers per cell.

Decisions the paper and the Colab leave open (docs PAPERS.md 2.5), and why:
1. Shift: codes are *moved to* the signed distance v*d. This is what InterFaceGAN's
   `linear_interpolate` does to 2-D codes, and the '+-3.0' keys match its default range. With
   `mode='offset'`, v*d*n is added instead.
2. Several attributes: the normals are orthogonalised in the order given, each one projected
   off the ones before it with `project_boundary` (Gram-Schmidt). Moving along a later one
   then leaves the distances to the earlier ones unchanged. For two attributes this is
   InterFaceGAN's conditional boundary, n2 projected off n1.
3. Intercept: InterFaceGAN boundaries are unit normals without the SVM intercept, and its
   tools measure distances from hyperplanes through the origin (`origin='zero'`). In W, whose
   mean is far from 0, both +-d can then lie on one side of the true decision surface. By
   default (`origin='mean'`) the hyperplanes pass through the mean of the codes being shifted
   instead; an array gives any other point. On the tiny StyleGAN2 of the tests (two colour
   attributes, 512 codes fitted, 256 sampled), the KL to uniform went from 0.26 (direct) to
   0.003 with 'mean' but stayed at 0.30 with 'zero'.
4. Mixtures: the number of components is chosen by sklearn's BIC on the cell's codes over
   1..`max_components`, unless it is given. The default of 10 comes from the official file
   sizes (about 10 full 512x512 float64 covariances per mixture). The covariances are 'full',
   which the Colab's loader assumes, and the initialisation is sklearn's default 'kmeans'; it
   is stored in 'params'.
5. Equal share: every cell gets num // C codes. The num % C codes left over go to distinct
   cells drawn at random (seeded). The result is then shuffled: sklearn returns codes sorted
   by component, and the cells would otherwise come in blocks.
6. Fairness is measured over the 2^k cells that a predictor assigns. A score above the
   threshold means value +1, the side the boundary normal points to, as `train_boundary`
   takes the high scores as positives. The report gives KL(p || uniform) in nats and the L2
   distance of p to uniform (the "fairness discrepancy" of Choi et al. 2020).
7. Diversity is the mean pairwise Euclidean distance of the codes. It is measured in the whole
   space and in the complement of the attribute normals, i.e. over the factors the shift
   should leave alone. It uses the codes and not predictor features, because a predictor is
   any callable and returns scores only.
8. GMM files are the official pickle of plain dicts and numpy arrays.
   - They are read with jgan's allowlisting unpickler
     (`jgan.ports.torch_pickle.read_pickle_file`), which turns the few globals a data file may
     name into harmless stand-ins and refuses all others, and then checked to have that
     structure (other fields of a mixture are dropped).
   - Pickled sklearn objects (the Colab's first version) are refused, and so are pickles of
     protocol 5, whose arrays need a global outside the allowlist.
   - Files are written as protocol-4 pickles of the same plain structure, which `pickle.load`
     in the Colab reads as its own files (given a numpy that knows the array module names the
     writing numpy used: numpy 2 writes 'numpy._core').
"""

import itertools
import numbers
import os
import pickle
import tempfile

import numpy as np
from tqdm import tqdm

from jgan.analysis.boundaries import _check_plain, project_boundary
from jgan.errors import CheckpointError, InputError
from jgan.ports.torch_pickle import read_pickle_file

DISTANCE = 3.0
"""The signed distance of the official cells ('3.0_-3.0', ...)."""
FIELDS = ("params", "cov", "mean", "weights")
"""What the official files store for each cell's mixture."""
SHIFT_MODES = ("distance", "offset")
ORIGINS = ("mean", "zero")
"""Where the boundary hyperplanes pass through, unless a point is given."""


def cell_values(num_attributes):
    """The cells of `num_attributes` binary attributes as tuples of -1/+1, in the official
    key order ('-3.0_-3.0', '-3.0_3.0', '3.0_-3.0', '3.0_3.0' for two)."""
    return list(itertools.product((-1, 1), repeat=num_attributes))


def cell_key(values, distance=DISTANCE):
    """The official name of the cell `values` (one -1/+1 per attribute): '3.0_-3.0'."""
    return "_".join(f"{v * distance:.1f}" for v in values)


def cell_signs(key):
    """(+1, -1) for the cell named '3.0_-3.0': the sign of each attribute's distance."""
    try:
        distances = [float(part) for part in str(key).split("_")]
    except ValueError:
        distances = []
    if not distances or not all(np.isfinite(distances)) or 0.0 in distances:
        raise InputError(
            f"cell name {key!r} is not of the form '3.0_-3.0' (non-zero signed distances "
            "joined by '_')"
        )
    return tuple(1 if d > 0 else -1 for d in distances)


def orthogonal_boundaries(boundaries):
    """(k, dim) float64 unit normals: each boundary projected off the ones before it.

    `boundaries` is a (k, dim) array or a sequence of (1, dim) or (dim,) arrays (InterFaceGAN
    boundaries, from `train_boundary` or `load_boundary`).
    """
    if isinstance(boundaries, np.ndarray) and boundaries.ndim == 2:
        boundaries = list(boundaries)
    if not isinstance(boundaries, (list, tuple)) or not boundaries:
        raise InputError("boundaries must be a (k, dim) array or a non-empty list of boundaries")
    rows = []
    for i, boundary in enumerate(boundaries):
        b = np.asarray(boundary)
        if b.ndim == 2 and b.shape[0] == 1:
            b = b[0]
        if b.ndim != 1 or not np.issubdtype(b.dtype, np.number):
            raise InputError(
                f"boundary {i} must have shape (1, dim) or (dim,) (a W or Z boundary, not a "
                f"layer-wise one); got {np.shape(boundary)}"
            )
        if rows and b.shape != rows[0].shape[1:]:
            raise InputError(
                f"boundary {i} has dimension {b.shape[0]}, boundary 0 {rows[0].shape[1]}"
            )
        b = b.astype(np.float64)
        norm = np.linalg.norm(b)
        if not (np.all(np.isfinite(b)) and norm > 0):
            raise InputError(f"boundary {i} must be finite and non-zero")
        rows.append((b / norm)[None])
    normals = []
    for i, row in enumerate(rows):
        try:
            normals.append(project_boundary(row, *normals))
        except InputError as error:
            raise InputError(f"boundary {i}: {error} (of the boundaries before it)") from None
    return np.concatenate(normals).astype(np.float64)


def _codes(codes, dim, name="codes"):
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.floating):
        raise InputError(f"{name} must be a float array (N, dim); got {codes.dtype} {codes.shape}")
    if dim is not None and codes.shape[1] != dim:
        raise InputError(
            f"{name} have dimension {codes.shape[1]} but the boundaries {dim}: boundaries and "
            "codes must come from the same latent space (e.g. W of the same model)"
        )
    if not np.all(np.isfinite(codes)):
        raise InputError(f"{name} contain NaN or inf values")
    return codes.astype(np.float64)


def _shift(codes, normals, values, distance, origin, mode):
    target = distance * np.asarray(values, np.float64)
    if mode == "offset":
        return codes + target @ normals
    current = (codes - origin) @ normals.T
    return codes + (target - current) @ normals


def _shift_options(codes, normals, values, distance, origin, mode):
    if mode not in SHIFT_MODES:
        raise InputError(f"mode must be one of {SHIFT_MODES}; got {mode!r}")
    if not (isinstance(distance, numbers.Real) and np.isfinite(distance) and distance > 0):
        raise InputError(f"distance must be a positive number; got {distance!r}")
    k, dim = normals.shape
    for cell in values:
        if len(cell) != k or any(v not in (-1, 1) for v in cell):
            raise InputError(f"a cell needs one value -1 or +1 per boundary ({k}); got {cell}")
    if isinstance(origin, str):
        if origin not in ORIGINS:
            raise InputError(f"origin must be one of {ORIGINS} or a point; got {origin!r}")
        return codes.mean(axis=0) if origin == "mean" else np.zeros(dim)
    origin = np.asarray(origin, np.float64).reshape(-1)
    if origin.shape != (dim,) or not np.all(np.isfinite(origin)):
        raise InputError(f"origin must be {dim} finite values; got shape {np.shape(origin)}")
    return origin


def shift_codes(codes, boundaries, values, *, distance=DISTANCE, origin="mean", mode="distance"):
    """`codes` (N, dim) moved into the cell `values` (one -1/+1 per boundary), float32.

    With `mode='distance'` every code ends at the signed distance values[i] * `distance` from
    hyperplane i, which has the orthogonalised normal i (`orthogonal_boundaries`) and passes
    through `origin`: 'mean' (of `codes`), 'zero' or a point (dim,). Nothing changes
    orthogonally to the normals (decision 3 of the module docstring). With
    `mode='offset'`, values[i] * `distance` times normal i is added instead.
    """
    normals = orthogonal_boundaries(boundaries)
    codes = _codes(codes, normals.shape[1])
    origin = _shift_options(codes, normals, [tuple(values)], distance, origin, mode)
    return _shift(codes, normals, values, distance, origin, mode).astype(np.float32)


def shift_to_cells(codes, boundaries, *, distance=DISTANCE, origin="mean", mode="distance"):
    """{cell key: `codes` shifted into that cell} for all 2^k cells of the k boundaries.

    Every code appears in every cell, with whatever else it encodes unchanged: the 'latent
    space distribution shift' of the paper. Options as `shift_codes`; the keys are the
    official ones ('-3.0_-3.0', ...; `cell_key`).
    """
    normals = orthogonal_boundaries(boundaries)
    codes = _codes(codes, normals.shape[1])
    cells = cell_values(len(normals))
    origin = _shift_options(codes, normals, cells, distance, origin, mode)
    keys = [cell_key(values, distance) for values in cells]
    if len(set(keys)) < len(keys):
        raise InputError(f"distance {distance} is too small to name the cells apart ({keys})")
    return {
        key: _shift(codes, normals, values, distance, origin, mode).astype(np.float32)
        for key, values in zip(keys, cells, strict=True)
    }


def _gaussian_mixture(*args, **kwargs):
    """A `sklearn.mixture.GaussianMixture`, imported on first use: the import takes seconds,
    which every `jgan` command would otherwise pay."""
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(*args, **kwargs)


def fit_gmm(
    codes,
    n_components=None,
    *,
    max_components=10,
    seed=0,
    init_params="kmeans",
    reg_covar=1e-6,
    max_iter=100,
):
    """(gmm, bic): a full-covariance Gaussian mixture of `codes` (N, dim) in the official
    format {'params', 'cov', 'mean', 'weights'}, and {components: BIC} of the candidates.

    Without `n_components`, 1..`max_components` components are fitted and the one with the
    lowest BIC is kept. Fitting is sklearn's EM, seeded by `seed`.
    """
    codes = _codes(codes, None)
    if len(codes) < 2:
        raise InputError(f"a mixture needs at least 2 codes; got {len(codes)}")
    if n_components is None:
        if not (isinstance(max_components, numbers.Integral) and max_components >= 1):
            raise InputError(f"max_components must be a positive integer; got {max_components!r}")
        candidates = range(1, min(max_components, len(codes)) + 1)
    elif not (isinstance(n_components, numbers.Integral) and 1 <= n_components <= len(codes)):
        raise InputError(
            f"n_components must be an integer between 1 and the number of codes ({len(codes)}); "
            f"got {n_components!r}"
        )
    else:
        candidates = [n_components]
    best, bic = None, {}
    for k in candidates:
        model = _gaussian_mixture(
            int(k),
            covariance_type="full",
            init_params=init_params,
            random_state=seed,
            reg_covar=reg_covar,
            max_iter=max_iter,
        ).fit(codes)
        bic[int(k)] = float(model.bic(codes))
        if best is None or bic[int(k)] < bic[best.n_components]:
            best = model
    gmm = {
        "params": init_params,
        "cov": best.covariances_,
        "mean": best.means_,
        "weights": best.weights_,
    }
    return gmm, bic


def fit_cell_gmms(cells, n_components=None, *, progress=True, **options):
    """(gmms, report): one mixture per cell of `cells` ({key: codes}, e.g. `shift_to_cells`),
    and per cell {'num_codes', 'n_components', 'bic'}. Options as `fit_gmm`."""
    if not isinstance(cells, dict) or not cells:
        raise InputError("cells must be a non-empty dict {cell key: codes}")
    gmms, report = {}, {}
    for key, codes in tqdm(cells.items(), desc="fairgen: fit GMMs", disable=not progress):
        cell_signs(key)
        if len(np.asarray(codes)) == 0:
            raise InputError(f"cell {key!r} has no codes: every cell needs codes to fit a mixture")
        gmms[key], bic = fit_gmm(codes, n_components, **options)
        chosen = len(gmms[key]["weights"])
        report[key] = {"num_codes": len(codes), "n_components": chosen, "bic": bic}
    _checked_gmms(gmms, InputError, "the fitted mixtures")
    return gmms, report


def sample_gmm(gmm, num, seed=0):
    """`num` float32 codes drawn from one mixture `gmm` (official format), ordered by component.

    This is the Colab's `gmm_model_from_param(gmm).sample(num)[0]`, with `random_state=seed`,
    so the same seed gives the same codes there.
    """
    if not (isinstance(num, numbers.Integral) and num >= 1):
        raise InputError(f"num must be a positive integer; got {num!r}")
    return _sample(_checked_gmm(gmm, InputError, "gmm"), int(num), seed)


def _sample(gmm, num, seed):
    model = _gaussian_mixture(len(gmm["weights"]), covariance_type="full", random_state=seed)
    model.covariances_ = gmm["cov"]
    model.means_ = gmm["mean"]
    model.weights_ = gmm["weights"]
    return model.sample(num)[0].astype(np.float32)


def fair_sample(gmms, num, seed=0, cells=None):
    """(codes (num, dim) float32, cell key of each code (num,)): an equal share of `num` drawn
    from each cell's mixture, shuffled.

    `cells` restricts the draw to some cells (a fine-grained subgroup); by default all of
    `gmms` are used. The num % C codes left over go to distinct cells drawn at random.
    """
    gmms = _checked_gmms(gmms, InputError, "gmms")
    keys = list(gmms) if cells is None else list(cells)
    unknown = [key for key in keys if key not in gmms]
    if not keys or unknown:
        raise InputError(f"cells must be among {list(gmms)}; got {keys}")
    if not (isinstance(num, numbers.Integral) and num >= len(keys)):
        raise InputError(
            f"num must be an integer of at least the number of cells ({len(keys)}), so every "
            f"cell gets its share; got {num!r}"
        )
    rng = np.random.default_rng(seed)
    counts = np.full(len(keys), num // len(keys))
    counts[rng.choice(len(keys), num % len(keys), replace=False)] += 1
    cell_seeds = rng.integers(2**31, size=len(keys))
    codes = np.concatenate(
        [
            _sample(gmms[key], int(n), int(s))
            for key, n, s in zip(keys, counts, cell_seeds, strict=True)
        ]
    )
    labels = np.repeat(np.array(keys), counts)
    order = rng.permutation(num)
    return codes[order], labels[order]


# ---- fairness and diversity ------------------------------------------------------------------


def attribute_signs(scores, thresholds=0.0, columns=None):
    """(N, k) int8, +1 where the score of attribute i is above its threshold, else -1.

    `scores` (N,) or (N, K) from a predictor; `columns` names the column of each attribute
    (default: every column in order); `thresholds` is one number or one per attribute.
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or not np.all(np.isfinite(scores)):
        raise InputError(f"scores must be finite, of shape (N,) or (N, K); got {scores.shape}")
    columns = list(range(scores.shape[1])) if columns is None else list(columns)
    if not columns or any(not 0 <= c < scores.shape[1] for c in columns):
        raise InputError(f"columns must index the {scores.shape[1]} score columns; got {columns}")
    thresholds = np.asarray(thresholds, np.float64).reshape(-1)
    if len(thresholds) not in (1, len(columns)) or not np.all(np.isfinite(thresholds)):
        raise InputError(
            f"thresholds must be one number or one per attribute ({len(columns)}); got "
            f"{thresholds.tolist()}"
        )
    thresholds = np.broadcast_to(thresholds, (len(columns),))
    return np.where(scores[:, columns] > thresholds, 1, -1).astype(np.int8)


def attribute_distribution(signs, distance=DISTANCE):
    """The share of each of the 2^k cells among `signs` (N, k) and its distance to uniform.

    Returns {'cells': keys, 'counts', 'shares', 'kl_to_uniform' (KL(p || U) in nats, 0 when
    balanced, log C when all in one cell), 'l2_discrepancy' (||p - U||_2), 'num'}.
    """
    signs = np.asarray(signs)
    if signs.ndim != 2 or not len(signs) or not np.isin(signs, (-1, 1)).all():
        raise InputError(f"signs must be a non-empty (N, k) array of -1/+1; got {signs.shape}")
    cells = cell_values(signs.shape[1])
    counts = np.array([np.all(signs == np.array(cell), axis=1).sum() for cell in cells])
    shares = counts / counts.sum()
    uniform = 1.0 / len(cells)
    present = shares > 0
    return {
        "cells": [cell_key(cell, distance) for cell in cells],
        "counts": counts.tolist(),
        "shares": shares.tolist(),
        "kl_to_uniform": float(np.sum(shares[present] * np.log(shares[present] / uniform))),
        "l2_discrepancy": float(np.linalg.norm(shares - uniform)),
        "num": int(counts.sum()),
    }


def mean_pairwise_distance(codes, boundaries=None, max_codes=2000):
    """Mean Euclidean distance between the first `max_codes` codes (N, dim), over all pairs.

    With `boundaries`, the components along the (orthogonalised) normals are removed first,
    so only the factors the attributes do not explain are measured.
    """
    codes = _codes(codes, None)[:max_codes]
    if len(codes) < 2:
        raise InputError("the mean pairwise distance needs at least 2 codes")
    if boundaries is not None:
        normals = orthogonal_boundaries(boundaries)
        codes = _codes(codes, normals.shape[1])
        codes = codes - (codes @ normals.T) @ normals
    squares = np.sum(codes**2, axis=1)
    gram = squares[:, None] + squares[None] - 2 * codes @ codes.T
    distances = np.sqrt(np.maximum(gram[np.triu_indices(len(codes), 1)], 0))
    return float(distances.mean())


def fairness_report(
    direct_scores,
    fair_scores,
    *,
    direct_codes,
    fair_codes,
    boundaries=None,
    fair_cells=None,
    thresholds=0.0,
    columns=None,
    distance=DISTANCE,
):
    """Direct vs. FairGen sampling as judged by a predictor, as a JSON-ready dict.

    'direct' and 'fair' hold `attribute_distribution` of the predicted cells. 'diversity'
    holds the mean pairwise distance of each set of codes, in the whole space and (given the
    `boundaries`) orthogonal to the attributes, and the fair/direct ratios. With `fair_cells`
    (the keys `fair_sample` returned), 'cell_accuracy' is the share of fair samples predicted
    in the cell they were drawn from.
    """
    fair_signs = attribute_signs(fair_scores, thresholds, columns)
    direct_signs = attribute_signs(direct_scores, thresholds, columns)
    diversity = {}
    bases = {"all": None}
    if boundaries is not None:
        bases["orthogonal_to_attributes"] = boundaries
    for name, basis in bases.items():
        direct = mean_pairwise_distance(direct_codes, basis)
        fair = mean_pairwise_distance(fair_codes, basis)
        diversity[name] = {"direct": direct, "fair": fair, "ratio": fair / direct}
    report = {
        "direct": attribute_distribution(direct_signs, distance),
        "fair": attribute_distribution(fair_signs, distance),
        "diversity": diversity,
    }
    if fair_cells is not None:
        drawn = np.array([cell_signs(key) for key in fair_cells])
        if drawn.shape != fair_signs.shape:
            raise InputError(
                f"fair_cells name cells of {drawn.shape[1:]} attributes for {len(drawn)} codes; "
                f"the scores give {fair_signs.shape}"
            )
        report["cell_accuracy"] = float(np.mean(np.all(drawn == fair_signs, axis=1)))
    return report


# ---- GMM files ---------------------------------------------------------------------------------


def _checked_gmm(gmm, error, name, dim=None):
    """One mixture {'params', 'cov', 'mean', 'weights'} with float64 arrays, or `error` naming
    what differs from the official structure (`dim`: the dimension it must have)."""
    if not isinstance(gmm, dict) or not set(FIELDS) <= set(gmm):
        found = sorted(map(str, gmm)) if isinstance(gmm, dict) else type(gmm).__name__
        raise error(f"{name} must be a dict with {list(FIELDS)}; got {found}")
    try:
        _check_plain({"params": gmm["params"]}, name)
    except InputError as problem:
        raise error(str(problem)) from None
    arrays = {}
    for field in ("cov", "mean", "weights"):
        value = gmm[field]
        if not (isinstance(value, np.ndarray) and value.dtype.kind in "fiu"):
            raise error(
                f"{name}[{field!r}] must be a numeric numpy array; got {type(value).__name__}"
            )
        if not np.all(np.isfinite(value)):
            raise error(f"{name}[{field!r}] contains NaN or inf values")
        arrays[field] = np.ascontiguousarray(value, np.float64)
    weights, mean, cov = arrays["weights"], arrays["mean"], arrays["cov"]
    k = len(weights)
    if weights.ndim != 1 or k < 1 or np.any(weights < 0) or abs(weights.sum() - 1) > 1e-5:
        raise error(
            f"{name}['weights'] must be K >= 1 non-negative weights summing to 1; got shape "
            f"{weights.shape}, sum {weights.sum():.6g}"
        )
    dim = mean.shape[-1] if dim is None else dim
    if mean.shape != (k, dim) or cov.shape != (k, dim, dim):
        raise error(
            f"{name} must hold 'mean' ({k}, {dim}) and full covariances 'cov' ({k}, {dim}, "
            f"{dim}) for its {k} weights; got {mean.shape} and {cov.shape}"
        )
    if not np.allclose(cov, np.swapaxes(cov, 1, 2), rtol=1e-5, atol=1e-8 * np.abs(cov).max()):
        raise error(f"{name}['cov'] is not symmetric")
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise error(f"{name}['cov'] is not positive definite") from None
    return {"params": gmm["params"], **arrays}


def _checked_gmms(content, error, where):
    """{key: mixture} checked by `_checked_gmm`, with official cell names ('3.0_-3.0') of one
    number of attributes and mixtures of one dimension."""
    if not isinstance(content, dict) or not content:
        raise error(
            f"{where} must be a non-empty dict {{'3.0_-3.0': {{'params', 'cov', 'mean', "
            f"'weights'}}, ...}}; got {type(content).__name__}"
        )
    checked, dim, num_attributes = {}, None, None
    for key, gmm in content.items():
        try:
            signs = cell_signs(key)
        except InputError as problem:
            raise error(f"{where}: {problem}") from None
        if num_attributes not in (None, len(signs)):
            raise error(
                f"{where}: cell {key!r} has {len(signs)} attributes, the others {num_attributes}"
            )
        num_attributes = len(signs)
        checked[key] = _checked_gmm(gmm, error, f"{where}[{key!r}]", dim)
        dim = checked[key]["mean"].shape[1]
    return checked


def save_gmms(path, gmms):
    """Writes `gmms` ({key: {'params', 'cov', 'mean', 'weights'}}) as the official pickle of
    plain dicts and numpy arrays (protocol 4), atomically; returns `path`."""
    content = _checked_gmms(gmms, InputError, "gmms")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, staging = tempfile.mkstemp(prefix=".jgan-", suffix=".p", dir=directory)
    try:
        with os.fdopen(handle, "wb") as f:
            pickle.dump(content, f, protocol=4)
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise
    return path


def load_gmms(path):
    """{key: {'params', 'cov', 'mean', 'weights'}} (float64 arrays) from an official FairGen
    GMM file ('age_gender_gmm.p', ...) or one `save_gmms` wrote.

    The pickle is read without running anything it names: only plain containers, numbers,
    strings and numpy arrays are built, and the result must have the official structure.
    """
    try:
        content = read_pickle_file(path)
    except CheckpointError as error:
        if "refused" not in str(error):
            raise
        raise CheckpointError(
            f"{error}. A FairGen GMM file is a pickle (protocol <= 4) of plain dicts and numpy "
            "arrays: {'3.0_-3.0': {'params', 'cov', 'mean', 'weights'}, ...}; pickled sklearn "
            "objects are refused because loading them would run code"
        ) from None
    return _checked_gmms(content, CheckpointError, os.fspath(path))
