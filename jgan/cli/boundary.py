"""InterFaceGAN: train a semantic boundary from latent codes and attribute scores.

Writes boundary.npy ((1, dim) float32 unit normal, or (1, L, dim) for W+ codes),
boundary_conditional.npy when conditions are given (orthogonal to them), train_indices.npy (the
rows the SVM was trained on) and report.json (settings, counts and accuracies).
"""

import json
import os

import numpy as np

from jgan.analysis.boundaries import load_boundary, project_boundary, save_boundary, train_boundary
from jgan.errors import InputError
from jgan.viz.output import check_new, staged_dir


def add_parser(parser):
    parser.add_argument("codes", help="latent codes .npy: (N, dim), or W+ codes (N, L, dim)")
    parser.add_argument("scores", help="attribute scores .npy: (N,), (N, 1) or (N, A)")
    parser.add_argument("--column", type=int, default=None, help="score column of (N, A) scores")
    parser.add_argument(
        "--ratio",
        type=float,
        default=0.02,
        help="samples per class: a ratio of the samples if <= 1, else a count (default 0.02)",
    )
    parser.add_argument(
        "--split", type=float, default=0.7, help="training part of each class (default 0.7)"
    )
    parser.add_argument(
        "--invalid-value", type=float, default=None, help="score of samples to drop (nan allowed)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    parser.add_argument(
        "--condition",
        action="append",
        default=[],
        metavar="BOUNDARY.npy",
        help="boundary to keep unchanged (conditional manipulation); repeatable",
    )
    parser.add_argument("--outdir", required=True, help="new output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing outdir")


def _read_array(path, what):
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{what} file {path} does not exist") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{what} file {path} is not a plain .npy array: {error}") from None


def boundary_to_dir(
    codes,
    scores,
    outdir,
    *,
    conditions=(),
    ratio=0.02,
    split=0.7,
    invalid_value=None,
    seed=0,
    overwrite=False,
    sources=None,
):
    """Trains the boundary of `scores` in the space of `codes` and writes it, its conditional
    version (if `conditions`, a list of (1, dim) boundaries) and a report to `outdir`,
    atomically. Returns the report."""
    check_new(outdir, overwrite)
    boundary, report = train_boundary(
        codes, scores, ratio, split, invalid_value, seed, return_report=True
    )
    train_indices = np.asarray(report.pop("train_indices"))
    if invalid_value is not None and np.isnan(invalid_value):
        invalid_value = "nan"  # JSON has no NaN
    report.update(
        settings=dict(ratio=ratio, split=split, invalid_value=invalid_value, seed=seed),
        sources=sources or {},
    )
    conditional = None
    if conditions:
        conditional = project_boundary(boundary, *conditions)
        report["conditional_cosine_to_boundary"] = float(np.sum(conditional * boundary))
    with staged_dir(outdir, overwrite) as staging:
        save_boundary(os.path.join(staging, "boundary.npy"), boundary)
        if conditional is not None:
            save_boundary(os.path.join(staging, "boundary_conditional.npy"), conditional)
        np.save(os.path.join(staging, "train_indices.npy"), train_indices)
        with open(os.path.join(staging, "report.json"), "w") as f:
            json.dump(report, f, indent=2)
    return report


def run(args):
    check_new(args.outdir, args.overwrite)
    codes = _read_array(args.codes, "codes")
    scores = _read_array(args.scores, "scores")
    if args.column is not None:
        if scores.ndim != 2 or not 0 <= args.column < scores.shape[1]:
            raise InputError(
                f"--column {args.column} needs (N, A) scores with A > {args.column}; "
                f"got shape {scores.shape}"
            )
        scores = scores[:, args.column]
    conditions = [load_boundary(path)[0] for path in args.condition]
    report = boundary_to_dir(
        codes,
        scores,
        args.outdir,
        conditions=conditions,
        ratio=args.ratio,
        split=args.split,
        invalid_value=args.invalid_value,
        seed=args.seed,
        overwrite=args.overwrite,
        sources=dict(codes=args.codes, scores=args.scores, conditions=args.condition),
    )
    print(
        f"wrote {os.path.join(args.outdir, 'boundary.npy')}: validation accuracy "
        f"{report['validation_accuracy']}, remaining accuracy {report['remaining_accuracy']}"
    )
