"""Rank semantics, and the layers that carry them, by how much moving along each boundary
raises its score (HiGAN's re-scoring)."""

import json
import os
import re

import jax
import numpy as np

from jgan.analysis.boundaries import load_boundary
from jgan.analysis.generate import codes_of, images_of
from jgan.analysis.hierarchy import rescore, rescoring_moves
from jgan.analysis.predictors import load_predictor
from jgan.bundle import load
from jgan.cli.options import add_override_option, parse_overrides
from jgan.errors import InputError
from jgan.viz.html import image_table
from jgan.viz.output import check_new, staged_dir


def add_parser(parser):
    parser.add_argument("model", help="checkpoint file or jgan model directory")
    parser.add_argument(
        "--boundary",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="boundary .npy to re-score, named NAME (default: the file name); repeatable",
    )
    parser.add_argument(
        "--predictor", required=True, help="'package.module:function' or 'file.py:function'"
    )
    parser.add_argument(
        "--score-column",
        type=int,
        action="append",
        help="the predictor's score column of each boundary, in order (for (N, K) scores)",
    )
    parser.add_argument(
        "--space",
        choices=("z", "w"),
        default=None,
        help="space of the (1, dim) boundaries: w moves W+ codes (HiGAN, default for "
        "style-based models), z moves Z codes",
    )
    parser.add_argument("--codes", help=".npy codes to re-score on (default: draw --num z codes)")
    parser.add_argument("--codes-space", choices=("z", "w", "wp"), default="z")
    parser.add_argument("--num", type=int, default=2000, help="codes drawn (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn z codes")
    parser.add_argument("--distance", type=float, default=2.0, help="move (default 2.0)")
    parser.add_argument("--layerwise", action="store_true", help="also move one W+ layer at a time")
    parser.add_argument("--trunc-psi", type=float, default=None, help="truncation psi")
    parser.add_argument(
        "--trunc-layers", type=int, default=None, help="truncated layers (default: all)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--preview", type=int, default=4, help="samples shown per boundary")
    parser.add_argument("--outdir", required=True, help="new output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing outdir")
    add_override_option(parser)


def parse_boundaries(specs):
    """['smile=smile_w.npy', 'age.npy'] -> {'smile': (boundary, meta), 'age': (...)}."""
    boundaries = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = os.path.splitext(os.path.basename(spec))[0], spec
        if not re.fullmatch(r"[\w.-]+", name) or name in boundaries:
            raise InputError(
                f"boundary names must be distinct words (letters, digits, _ . -); got {name!r}"
            )
        boundaries[name] = load_boundary(path)
    return boundaries


def run(args):
    if args.trunc_layers is not None and args.trunc_psi is None:
        raise InputError("--trunc-layers needs --trunc-psi")
    check_new(args.outdir, args.overwrite)
    predictor = load_predictor(args.predictor)
    boundaries = parse_boundaries(args.boundary)
    generator = load(args.model, **parse_overrides(args.override)).generator
    space = args.space or ("w" if "w" in generator.latent_spaces else "z")
    truncation = {"trunc_psi": args.trunc_psi, "trunc_layers": args.trunc_layers}
    saved = _codes(generator, args, space, truncation)
    codes = saved["wp" if space == "w" else "z"]
    code_space = "wp" if space == "w" else "z"
    result = rescore(
        generator,
        codes,
        [b for b, _ in boundaries.values()],
        predictor,
        space=code_space,
        columns=args.score_column,
        distance=args.distance,
        layerwise=args.layerwise,
        batch_size=args.batch_size,
        **truncation,
    )
    names = list(boundaries)
    ranking = [
        {
            "name": names[b],
            "change": float(result.semantic_change[b]),
            "layers": [
                [int(layer), float(result.layer_change[b, layer])]
                for layer in result.layer_order[b]
            ],
        }
        for b in result.semantic_order
    ]
    header, rows = _preview(generator, codes[: args.preview], boundaries, ranking, args, truncation)
    with staged_dir(args.outdir, args.overwrite) as staging:
        for name, value in saved.items():
            np.save(os.path.join(staging, f"{name}.npy"), value)
        for b, (name, (boundary, _)) in enumerate(boundaries.items()):
            np.save(os.path.join(staging, f"{name}_boundary.npy"), boundary)
            np.save(os.path.join(staging, f"{name}_scores.npy"), result.scores[b])
        np.save(os.path.join(staging, "semantic_change.npy"), result.semantic_change)
        if args.layerwise:
            np.save(os.path.join(staging, "layer_change.npy"), result.layer_change)
        report = {"predictor": args.predictor, "space": space, "ranking": ranking}
        with open(os.path.join(staging, "rescore.json"), "w") as f:
            json.dump({**report, "distance": args.distance, **truncation}, f, indent=2)
        notes = "most relevant first: " + ", ".join(
            f"{e['name']} {e['change']:.4f}" for e in ranking
        )
        with open(os.path.join(staging, "index.html"), "w") as f:
            f.write(image_table("jgan rescore", header, rows, notes=notes))
    for entry in ranking:
        line = f"{entry['name']:>20}: {entry['change']:.4f}"
        if entry["layers"]:
            line += "  top layers " + ", ".join(f"{i} ({c:.4f})" for i, c in entry["layers"][:5])
        print(line)
    print(f"wrote the re-scoring of {len(names)} boundaries to {args.outdir}")


def _codes(generator, args, space, truncation):
    """The codes to re-score on, by name: z (drawn or given), w, and wp for W boundaries."""
    if args.codes is None:
        if args.num < 1:
            raise InputError("--num must be positive")
        dim = generator.z_space_dim
        saved = {"z": np.asarray(jax.random.normal(jax.random.key(args.seed), (args.num, dim)))}
        source = "z"
    else:
        source = args.codes_space
        saved = {source: np.load(args.codes).astype(np.float32)}
    if space == "z":
        if source != "z":
            raise InputError("Z boundaries move Z codes: give --codes-space z codes")
        return saved
    if source != "wp":
        options = {"batch_size": args.batch_size, "space": source, **truncation}
        saved["wp"] = codes_of(generator, saved[source], "wp", **options)
    return saved


def _preview(generator, codes, boundaries, ranking, args, truncation):
    """Header and rows of the page: each boundary (most relevant first) on the first codes,
    before and after each move."""
    wp = codes.ndim == 3
    move = {"distance": args.distance, "layerwise": args.layerwise, **(truncation if wp else {})}
    synthesis = {"space": "wp" if wp else "z", "batch_size": args.batch_size}
    if not wp:
        synthesis.update(truncation)
    header = ["boundary", "sample", "original", f"{args.distance:+g} on all layers"]
    if args.layerwise:
        header += [f"{args.distance:+g} on layer {layer}" for layer in range(codes.shape[1])]
    if not len(codes):
        return header, []
    originals = images_of(generator, codes, **synthesis)
    rows = []
    for entry in ranking:
        moves = rescoring_moves(codes, boundaries[entry["name"]][0], **move)
        moved = [images_of(generator, m, **synthesis) for m in moves]
        label = f"{entry['name']} (mean change {entry['change']:.4f})"
        rows += [
            [label, f"{n:06d}", originals[n], *(m[n] for m in moved)] for n in range(len(codes))
        ]
    return header, rows
