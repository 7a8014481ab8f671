"""InterFaceGAN (Shen et al., CVPR 2020): semantic boundaries in latent space.

A boundary is the unit normal n of a hyperplane n.z = 0 that separates codes whose images
score high on an attribute from codes that score low; moving a code along n changes the
attribute. Semantics follow genforce/interfacegan `utils/manipulator.py`:
- `train_boundary`: the top and bottom `chosen_num_or_ratio` samples by score are the two
  classes; each class is shuffled and split into training and validation parts; a linear SVM
  (C = 1) is fitted on the training parts; its intercept is dropped (the hyperplane is taken
  through the origin) and its normal is returned with unit norm, shape (1, dim), float32.
  The split is seeded: seed s gives the split the original draws after `np.random.seed(s)`.
  For W+ codes (N, L, dim) one SVM per layer is fitted on the same samples and each layer's
  normal is normalized on its own (IDInvert's and HiGAN's layer-wise boundaries): (1, L, dim).
- `project_boundary`: the conditional direction, orthogonal to the condition boundaries.
- `linear_interpolate`: for a (1, dim) code, codes at the absolute signed distances
  linspace(start, end, steps) from the hyperplane; for a W+ code (1, L, dim), the code moved by
  those distances relative to where it is (the original's two behaviours, kept as they are).
- Boundary files: a (1, dim) float32 `.npy`, or HiGAN's dict form
  `{'boundary': ..., 'meta_data': {'type': ..., 'manipulate_layers': ...}}`.
"""

import functools
import io
import numbers
import os
import pickle
import re
import tempfile
from typing import NamedTuple

import numpy as np

from jgan.analysis.svm import linear_svm
from jgan.errors import InputError

_CHUNK = 1 << 16  # rows of codes scored at a time, so no copy of all the codes is made


def _scores_vector(scores, num_codes):
    scores = np.asarray(scores)
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.ndim != 1:
        raise InputError(
            f"scores must have shape (N,) or (N, 1), one attribute at a time; got {scores.shape}"
        )
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(
        scores.dtype, np.complexfloating
    ):
        raise InputError(f"scores must be real numbers; got dtype {scores.dtype}")
    if len(scores) != num_codes:
        raise InputError(
            f"codes and scores must have the same length; got {num_codes} codes and "
            f"{len(scores)} scores"
        )
    return scores.astype(np.float64)


def _chosen_num(chosen_num_or_ratio, num_samples):
    """Samples per class: a ratio of the samples if in (0, 1], else a count; at most N // 2."""
    if not isinstance(chosen_num_or_ratio, numbers.Real) or not chosen_num_or_ratio > 0:
        raise InputError(
            "chosen_num_or_ratio must be a ratio in (0, 1] or a count > 1; "
            f"got {chosen_num_or_ratio!r}"
        )
    if chosen_num_or_ratio <= 1:
        chosen = int(num_samples * chosen_num_or_ratio)
    else:
        chosen = int(chosen_num_or_ratio)
    return min(chosen, num_samples // 2)


class _Split(NamedTuple):
    """Rows of the codes in each role, and the labels of the rows that are evaluated."""

    train: np.ndarray  # positives first, then as many negatives
    val: np.ndarray
    val_labels: np.ndarray
    middle: np.ndarray  # the remaining samples, labelled by the midpoint of the score range
    middle_labels: np.ndarray
    num_valid: int
    chosen: int


def _split(scores, chosen_num_or_ratio, split_ratio, invalid_value, seed):
    """The original's choice of samples: drop invalid ones, sort by score, take the top and
    bottom `chosen` as classes, shuffle each and split it into training and validation."""
    if not 0 < split_ratio <= 1:
        raise InputError(f"split_ratio must lie in (0, 1]; got {split_ratio!r}")
    if invalid_value is None:
        valid = np.ones(len(scores), bool)
    elif not isinstance(invalid_value, numbers.Real):
        raise InputError(f"invalid_value must be a number or None; got {invalid_value!r}")
    elif np.isnan(invalid_value):
        valid = ~np.isnan(scores)
    else:
        valid = scores != invalid_value
    if np.isnan(scores[valid]).any():
        raise InputError("scores contain NaN; pass invalid_value=float('nan') to drop them")
    rows = np.flatnonzero(valid)
    rows = rows[np.argsort(scores[rows])[::-1]]  # descending, ties in the original's order
    num_valid = len(rows)
    chosen = _chosen_num(chosen_num_or_ratio, num_valid)
    train_num = int(chosen * split_ratio)
    if train_num < 1:
        raise InputError(
            f"too few samples: {num_valid} valid samples with chosen_num_or_ratio="
            f"{chosen_num_or_ratio} and split_ratio={split_ratio} leave {train_num} training "
            "samples per class; use more samples or a larger ratio"
        )
    top, bottom = scores[rows[0]], scores[rows[-1]]
    if top == bottom:
        raise InputError(f"scores are constant ({top}): there is no attribute to separate")
    if scores[rows[chosen - 1]] <= scores[rows[num_valid - chosen]]:
        raise InputError(
            f"the top and bottom {chosen} samples share scores (ties at "
            f"{scores[rows[chosen - 1]]}): the scores cannot tell the two classes apart; "
            "choose fewer samples per class"
        )
    rng = np.random.RandomState(seed)  # the original's np.random.shuffle, seeded
    positive, negative = np.arange(chosen), np.arange(chosen)
    rng.shuffle(positive)
    rng.shuffle(negative)
    positive = rows[:chosen][positive]
    negative = rows[num_valid - chosen :][negative]
    middle = rows[chosen : num_valid - chosen]
    return _Split(
        train=np.concatenate([positive[:train_num], negative[:train_num]]),
        val=np.concatenate([positive[train_num:], negative[train_num:]]),
        val_labels=np.arange(2 * (chosen - train_num)) < chosen - train_num,
        middle=middle,
        middle_labels=scores[middle] >= (top + bottom) / 2,
        num_valid=num_valid,
        chosen=chosen,
    )


def _accuracy(codes, rows, labels, w, b):
    """Share of `rows` of `codes` on the side of the hyperplane w.x + b = 0 their labels say
    (None for no rows); computed in chunks, so no copy of all the codes is made."""
    if not len(rows):
        return None
    with np.errstate(invalid="ignore", over="ignore"):  # bad codes are reported just below
        decision = np.concatenate(
            [codes[rows[i : i + _CHUNK]] @ w + b for i in range(0, len(rows), _CHUNK)]
        )
    if not np.all(np.isfinite(decision)):
        raise InputError("codes contain NaN or inf values")
    return float(np.mean((decision > 0) == labels))


def train_boundary(
    codes,
    scores,
    chosen_num_or_ratio=0.02,
    split_ratio=0.7,
    invalid_value=None,
    seed=0,
    *,
    return_report=False,
):
    """Unit normal (1, dim) float32 of the linear SVM separating high- from low-score codes.

    `codes` (N, dim), or W+ codes (N, L, dim) for a layer-wise boundary (1, L, dim);
    `scores` (N,) or (N, 1). `chosen_num_or_ratio` samples per class (a ratio of the valid
    samples if in (0, 1], else a count), of which `split_ratio` train the SVM and the rest
    validate it; samples whose score equals `invalid_value` (NaN allowed) are dropped first;
    `seed` draws the split. With `return_report=True` returns (boundary, report): a dict with
    the sample counts, the accuracy on the validation samples, the accuracy on the remaining
    (middle) samples labelled by the midpoint of the highest and lowest scores, as the
    original logs them (lists with one value per layer for W+ codes), and `train_indices`,
    the rows the SVM was trained on (positives first).

    The SVM is solved exactly by `jgan.analysis.svm.linear_svm` (the problem the original's
    `sklearn.svm.SVC(kernel='linear')` solves, much faster at InterFaceGAN's sizes).
    """
    codes = np.asarray(codes)
    if codes.ndim not in (2, 3) or not np.issubdtype(codes.dtype, np.floating):
        raise InputError(
            "codes must be a float array (N, dim), or (N, num_layers, dim) for W+ codes; "
            f"got {codes.dtype} {codes.shape}"
        )
    scores = _scores_vector(scores, len(codes))
    split = _split(scores, chosen_num_or_ratio, split_ratio, invalid_value, seed)
    train_num = len(split.train) // 2
    is_positive = np.arange(2 * train_num) < train_num
    layers = [codes] if codes.ndim == 2 else [codes[:, i] for i in range(codes.shape[1])]
    normals, val_accuracy, middle_accuracy = [], [], []
    for layer_codes in layers:
        train = layer_codes[split.train]
        if not np.all(np.isfinite(train)):
            raise InputError("codes contain NaN or inf values among the training samples")
        w, b = linear_svm(train, is_positive)
        norm = np.linalg.norm(w)
        if not norm > 0:
            raise InputError("the SVM found no direction: the training codes are all equal")
        normals.append(w / norm)
        val_accuracy.append(_accuracy(layer_codes, split.val, split.val_labels, w, b))
        middle_accuracy.append(_accuracy(layer_codes, split.middle, split.middle_labels, w, b))
    boundary = np.stack(normals).astype(np.float32)
    boundary = boundary.reshape(1, -1) if codes.ndim == 2 else boundary[None]
    if not return_report:
        return boundary
    per_layer = codes.ndim == 3
    report = {
        "num_codes": len(codes),
        "num_invalid": len(codes) - split.num_valid,
        "chosen_num": split.chosen,
        "train_num": train_num,
        "val_num": split.chosen - train_num,
        "remaining_num": len(split.middle),
        "remaining_positive": int(split.middle_labels.sum()),
        "remaining_negative": int(len(split.middle) - split.middle_labels.sum()),
        "validation_accuracy": val_accuracy if per_layer else val_accuracy[0],
        "remaining_accuracy": middle_accuracy if per_layer else middle_accuracy[0],
        "seed": seed,
        "train_indices": split.train,
    }
    return boundary, report


def _as_boundary(boundary, name="boundary", ndims=(2,)):
    boundary = np.asarray(boundary)
    if boundary.ndim not in ndims or boundary.shape[0] != 1:
        shapes = " or ".join({2: "(1, dim)", 3: "(1, num_layers, dim)"}[n] for n in ndims)
        raise InputError(f"{name} must have shape {shapes}; got {boundary.shape}")
    if not np.all(np.isfinite(boundary)):
        raise InputError(f"{name} contains NaN or inf values")
    return boundary.astype(np.float64)


def project_boundary(primal, *conditions):
    """The unit direction (1, dim) closest to `primal` and orthogonal to every condition.

    Editing along it changes the primal attribute while keeping the conditioned ones. As the
    original: no condition returns `primal`; one or two use the closed form (with 1e-8 in
    the two-condition denominator); more solve the normal equations of the projection.
    """
    p = _as_boundary(primal, "the primal boundary")
    dim = p.shape[1]
    cond = [_as_boundary(c, f"condition {i}") for i, c in enumerate(conditions)]
    for i, c in enumerate(cond):
        if c.shape[1] != dim:
            raise InputError(f"condition {i} has dimension {c.shape[1]}, the primal boundary {dim}")
    if not cond:
        return p.astype(np.float32)
    if len(cond) > 1 and np.linalg.matrix_rank(np.concatenate(cond), tol=1e-6) < len(cond):
        raise InputError("the condition boundaries are linearly dependent")
    if len(cond) == 1:
        (c,) = cond
        new = p - (p @ c.T) * c
    elif len(cond) == 2:
        c1, c2 = cond
        p1, p2, c12 = (p @ c1.T).item(), (p @ c2.T).item(), (c1 @ c2.T).item()
        alpha = (p1 - p2 * c12) / (1 - c12**2 + 1e-8)
        beta = (p2 - p1 * c12) / (1 - c12**2 + 1e-8)
        new = p - alpha * c1 - beta * c2
    else:
        c = np.concatenate(cond)
        new = p - np.linalg.solve(c @ c.T, c @ p.T).T @ c
    norm = np.linalg.norm(new)
    if not norm > 1e-6:
        raise InputError("the primal boundary lies in the span of the conditions")
    return (new / norm).astype(np.float32)


def linear_interpolate(code, boundary, start_distance=-3.0, end_distance=3.0, steps=10):
    """`steps` codes moved along `boundary` from `start_distance` to `end_distance`.

    A (1, dim) code gives (steps, dim) codes at those absolute signed distances from the
    hyperplane boundary.z = 0; a W+ code (1, L, dim) gives (steps, L, dim) codes offset by
    those distances from the code itself, on every layer (a (1, L, dim) boundary moves each
    layer along its own direction). This is the original's behaviour (pitfall: the 2-D case
    is absolute, the W+ case relative).
    """
    code = np.asarray(code)
    if code.ndim not in (2, 3) or code.shape[0] != 1:
        raise InputError(
            f"code must have shape (1, dim) or, for W+, (1, num_layers, dim); got {code.shape}"
        )
    if not isinstance(steps, numbers.Integral) or steps < 1:
        raise InputError(f"steps must be a positive integer; got {steps!r}")
    b = _as_boundary(boundary, ndims=(2, 3) if code.ndim == 3 else (2,))
    if b.shape[-1] != code.shape[-1] or (b.ndim == 3 and b.shape[1] != code.shape[1]):
        raise InputError(f"boundary shape {b.shape} does not match code shape {code.shape}")
    distances = np.linspace(start_distance, end_distance, steps)
    code = code.astype(np.float64)
    if code.ndim == 2:
        offsets = distances[:, None] - code @ b.T
        return (code + offsets * b).astype(np.float32)
    return (code + distances[:, None, None] * b.reshape(1, -1, b.shape[-1])).astype(np.float32)


def save_boundary(path, boundary, meta_data=None):
    """Writes `boundary` (1, dim) or (1, L, dim) as a float32 .npy, atomically.

    With `meta_data` (a dict of plain values, e.g. {'type': 'attribute',
    'manipulate_layers': '6-11'}) the file holds HiGAN's dict form instead.
    """
    boundary = _as_boundary(boundary, ndims=(2, 3)).astype(np.float32)
    if meta_data is not None:
        _check_plain(meta_data, "meta_data")
        content = np.array({"boundary": boundary, "meta_data": meta_data}, dtype=object)
    else:
        content = boundary
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, staging = tempfile.mkstemp(prefix=".jgan-", suffix=".npy", dir=directory)
    try:
        with os.fdopen(handle, "wb") as f:
            np.save(f, content, allow_pickle=meta_data is not None)
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise
    return path


def load_boundary(path):
    """(boundary float32 (1, dim) or (1, L, dim), meta_data dict or None) from a .npy file.

    Reads plain arrays (the InterFaceGAN files, float32 or float64) and HiGAN's dict form.
    The dict form is a pickled object array; it is read with an unpickler that builds only
    numpy arrays and plain Python values, so a boundary file can never run code.
    """
    path = os.fspath(path)
    try:
        content = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"boundary file {path} does not exist") from None
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise InputError(f"{path} is not a .npy boundary file: {error}") from None
        content = _read_object_npy(path)
    except OSError as error:
        raise InputError(f"cannot read boundary file {path}: {error}") from None
    meta_data = None
    if content.dtype == object:
        item = content.item() if content.size == 1 else None
        if not (isinstance(item, dict) and "boundary" in item):
            raise InputError(
                f"{path} holds a Python object; expected a boundary array or a dict with "
                "'boundary' and 'meta_data'"
            )
        content, meta_data = item["boundary"], item.get("meta_data")
        if meta_data is not None and not isinstance(meta_data, dict):
            raise InputError(f"{path}: meta_data must be a dict; got {type(meta_data).__name__}")
    if not isinstance(content, np.ndarray) or not np.issubdtype(content.dtype, np.floating):
        raise InputError(f"{path}: the boundary must be a float array")
    return _as_boundary(content, f"the boundary in {path}", ndims=(2, 3)).astype(
        np.float32
    ), meta_data


def _check_plain(value, name):
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"{name} keys must be strings; got {key!r}")
            _check_plain(item, f"{name}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{name}[{i}]")
    elif not (value is None or isinstance(value, (str, bool, numbers.Real))):
        raise InputError(
            f"{name} must hold only strings, numbers, lists and dicts; got {type(value).__name__}"
        )


# ---- reading pickled object arrays without running code ----------------------------------------

_NDARRAY = object()  # what the name numpy.ndarray stands for: only an argument of _reconstruct
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own array rebuilder
_SCALAR = np.float64(0).__reduce__()[0]


def _reconstruct(array_type, shape, typecode):
    if array_type is not _NDARRAY:
        raise InputError("a boundary file may hold only plain numpy arrays")
    return _RECONSTRUCT(np.ndarray, shape, typecode)


def _dtype(name, align=False, copy=False):
    if not (isinstance(name, str) and re.fullmatch(r"[a-zA-Z]\d*", name)):
        raise InputError(f"a boundary file holds the refused numpy dtype {name!r}")
    dtype = np.dtype(name, False, True)  # a copy: BUILD then sets its byte order, not numpy's
    if dtype.kind not in "biufcUSO":
        raise InputError(f"a boundary file holds the refused numpy dtype {name!r}")
    return dtype


def _scalar(dtype, data):
    if not (isinstance(dtype, np.dtype) and dtype.kind in "biufc" and isinstance(data, bytes)):
        raise InputError("a boundary file holds a numpy scalar that is not a number")
    return _SCALAR(dtype, data)


_GLOBALS = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _dtype}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _GLOBALS[_module, "_reconstruct"] = _reconstruct
    _GLOBALS[_module, "scalar"] = _scalar


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numbers, strings and containers; refuses any other global."""

    def find_class(self, module, name):
        stand_in = _GLOBALS.get((module, name))
        if stand_in is None:
            raise InputError(
                f"a boundary file names the global {module}.{name}, which is refused: only "
                "arrays and plain values are read"
            )
        # A fresh wrapper per use, so a BUILD opcode aimed at it cannot alter the shared one.
        return functools.partial(stand_in) if callable(stand_in) else stand_in


def _read_object_npy(path):
    """The object array of a .npy file written with allow_pickle, read by `_PlainUnpickler`."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                raise InputError(f"{path}: unsupported .npy format version {version}")
            read_header(f, max_header_size=1 << 20)
            content = _PlainUnpickler(io.BytesIO(f.read())).load()
        except InputError:
            raise
        except Exception as error:  # whatever a malformed pickle makes pickle or numpy raise
            raise InputError(f"{path} is not a readable boundary file: {error}") from None
    if not isinstance(content, np.ndarray):
        raise InputError(f"{path} does not hold an array")
    return content
