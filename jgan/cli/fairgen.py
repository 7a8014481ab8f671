"""FairGen: sample with balanced attributes (cells of InterFaceGAN boundaries, one GMM each).

Direct codes are shifted to +-distance from every boundary, one Gaussian mixture is fitted per
attribute cell (or official mixtures are loaded with --gmm), and equal numbers are drawn from
each. A predictor judges the images of direct and fair samples. See jgan.analysis.fairgen.
"""

import json
import os

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from jgan.analysis.boundaries import load_boundary
from jgan.analysis.fairgen import (
    DISTANCE,
    ORIGINS,
    SHIFT_MODES,
    cell_signs,
    fair_sample,
    fairness_report,
    fit_cell_gmms,
    load_gmms,
    orthogonal_boundaries,
    save_gmms,
    shift_to_cells,
)
from jgan.analysis.generate import images_of, score_codes
from jgan.analysis.predictors import load_predictor, predictor_name
from jgan.bundle import load
from jgan.cli.options import add_override_option, parse_overrides
from jgan.errors import InputError
from jgan.viz.html import image_table
from jgan.viz.images import make_grid, save_png
from jgan.viz.output import check_new, staged_dir


def add_parser(parser):
    parser.add_argument("model", help="checkpoint file or jgan model directory")
    parser.add_argument(
        "--boundary",
        action="append",
        help="attribute boundary .npy, (1, dim) in W (Z for PGGAN); repeat for several "
        "attributes (orthogonalised in this order). Needed unless --gmm is given",
    )
    parser.add_argument(
        "--gmm", help="fitted mixtures to sample from (official FairGen .p or a previous run)"
    )
    parser.add_argument(
        "--predictor",
        required=True,
        help="judges the images: 'package.module:function' or 'file.py:function'",
    )
    parser.add_argument(
        "--column",
        type=int,
        action="append",
        help="predictor score column of each attribute, in boundary order (default 0, 1, ...)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        action="append",
        help="score above which an attribute counts as present (+1); one, or one per attribute "
        "(default 0)",
    )
    parser.add_argument("--num", type=int, default=64, help="direct and fair samples (default 64)")
    parser.add_argument(
        "--fit-num",
        type=int,
        default=10000,
        help="direct codes shifted to fit the mixtures (10000)",
    )
    parser.add_argument(
        "--components", type=int, default=None, help="mixture components (default: BIC)"
    )
    parser.add_argument(
        "--max-components", type=int, default=10, help="largest count BIC tries (default 10)"
    )
    parser.add_argument(
        "--distance", type=float, default=DISTANCE, help="signed distance of the cells (3.0)"
    )
    parser.add_argument(
        "--origin",
        choices=ORIGINS,
        default="mean",
        help="point the boundary hyperplanes pass through: the mean of the fitted codes "
        "(default) or zero (InterFaceGAN's tools, which drop the SVM intercept)",
    )
    parser.add_argument(
        "--mode", choices=SHIFT_MODES, default="distance", help="move to, or add, the distance"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of codes and samples")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step (16)")
    parser.add_argument(
        "--trunc-psi",
        type=float,
        default=0.7,
        help="rendering truncation (0.7, the Colab's; 1 = none)",
    )
    parser.add_argument(
        "--trunc-layers", type=int, default=8, help="truncated layers (8, the Colab's)"
    )
    parser.add_argument("--noise-mode", default="const", choices=("const", "none"))
    parser.add_argument("--preview", type=int, default=16, help="samples in each grid (16)")
    parser.add_argument("--outdir", required=True, help="new output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing outdir")
    add_override_option(parser)


def latent_codes(generator, key, num, batch_size=1024):
    """(codes, space): `num` codes z ~ N(0, I) drawn from `key`, mapped to W for style-based
    models (FairGen's space, untruncated), else left in Z."""
    if generator.config.get("label_size", 0):
        raise InputError("FairGen samples unconditional models; this one takes class labels")
    z = jax.random.normal(key, (num, generator.z_space_dim))
    if "w" not in generator.latent_spaces:
        return np.asarray(z), "z"
    graphdef, state = nnx.split(generator.mapping)
    mapping = jax.jit(lambda state, z: nnx.merge(graphdef, state)(z))
    batches = [mapping(state, z[i : i + batch_size]) for i in range(0, num, batch_size)]
    return np.concatenate([np.asarray(w) for w in batches]), "w"


def fairgen_to_dir(
    generator,
    outdir,
    *,
    predictor,
    num,
    boundaries=None,
    gmms=None,
    fit_num=10000,
    n_components=None,
    max_components=10,
    distance=DISTANCE,
    origin="mean",
    mode="distance",
    columns=None,
    thresholds=0.0,
    seed=0,
    batch_size=16,
    trunc_psi=0.7,
    trunc_layers=8,
    noise_mode="const",
    preview=16,
    overwrite=False,
    settings=None,
):
    """Fits (or takes) one mixture per attribute cell, samples `num` fair and `num` direct
    codes, judges their images with `predictor` and writes the new directory `outdir`.

    Files: gmm.p (official format), fair_{w,z}.npy and fair_cells.npy (the cell of each),
    direct_{w,z}.npy, fair_scores.npy, direct_scores.npy, grid_direct.png, grid_fair.png,
    fairgen.json (settings, fit and fairness report) and index.html. `boundaries` (list of
    (1, dim) arrays) are needed to fit; `gmms` ({key: mixture}) skips fitting. `settings`
    (plain values) are recorded in fairgen.json. Returns the path.
    """
    outdir = os.path.abspath(os.fspath(outdir))
    check_new(outdir, overwrite)
    if boundaries is None and gmms is None:
        raise InputError("fitting mixtures needs boundaries; or give fitted mixtures (gmms)")
    if min(num, fit_num, batch_size) < 1 or preview < 0:
        raise InputError("num, fit_num and batch_size must be positive, preview >= 0")
    normals = None if boundaries is None else orthogonal_boundaries(boundaries)
    key_fit, key_direct = jax.random.split(jax.random.key(seed))
    fit = None
    if gmms is None:
        codes, space = latent_codes(generator, key_fit, fit_num)
        cells = shift_to_cells(codes, normals, distance=distance, origin=origin, mode=mode)
        gmms, fitted = fit_cell_gmms(cells, n_components, max_components=max_components, seed=seed)
        fit = {"cells": fitted, "projection_std": (codes @ normals.T).std(axis=0).tolist()}
        del codes, cells
    direct, space = latent_codes(generator, key_direct, num)
    num_attributes = len(cell_signs(next(iter(gmms))))
    dims = {"the mixtures": next(iter(gmms.values()))["mean"].shape[1]}
    if normals is not None:
        dims["the boundaries"] = normals.shape[1]
        if len(normals) != num_attributes:
            raise InputError(
                f"the mixtures are of {num_attributes} attributes, {len(normals)} boundaries given"
            )
    for what, dim in dims.items():
        if dim != direct.shape[1]:
            raise InputError(
                f"{what} have dimension {dim}, the model's {space.upper()} space {direct.shape[1]}"
            )
    columns = list(range(num_attributes)) if columns is None else list(columns)
    if len(columns) != num_attributes:
        raise InputError(f"give one score column per attribute ({num_attributes}); got {columns}")
    fair, fair_cells = fair_sample(gmms, num, seed)
    render = {"space": space, "noise_mode": noise_mode}
    if "w" in generator.latent_spaces and trunc_psi is not None:
        render.update(trunc_psi=trunc_psi, trunc_layers=trunc_layers)
    options = {"batch_size": batch_size, **render}
    scores = {}
    for name, codes in (("direct", direct), ("fair", fair)):
        batches = tqdm(range(0, num, batch_size), desc=f"fairgen: judge {name}", unit="batch")
        judged = [
            score_codes(generator, codes[i : i + batch_size], predictor, **options) for i in batches
        ]
        scores[name] = np.concatenate(judged)
    report = fairness_report(
        scores["direct"],
        scores["fair"],
        direct_codes=direct,
        fair_codes=fair,
        boundaries=normals,
        fair_cells=fair_cells,
        thresholds=thresholds,
        columns=columns,
        distance=distance,
    )
    grids = {
        name: images_of(generator, codes[:preview], **options)
        for name, codes in (("direct", direct), ("fair", fair))
        if preview
    }
    settings = {
        "predictor": predictor_name(predictor),
        "thresholds": np.asarray(thresholds, float).tolist(),
        **(settings or {}),
        "space": space,
        "columns": columns,
        **render,
    }
    record = {
        "settings": settings,
        "fit": fit,
        "report": report,
    }
    with staged_dir(outdir, overwrite) as staging:
        save_gmms(os.path.join(staging, "gmm.p"), gmms)
        np.save(os.path.join(staging, f"fair_{space}.npy"), fair)
        np.save(os.path.join(staging, "fair_cells.npy"), fair_cells)
        np.save(os.path.join(staging, f"direct_{space}.npy"), direct)
        for name, values in scores.items():
            np.save(os.path.join(staging, f"{name}_scores.npy"), values)
        for name, images in grids.items():
            grids[name] = make_grid(images)
            save_png(os.path.join(staging, f"grid_{name}.png"), grids[name])
        with open(os.path.join(staging, "fairgen.json"), "w") as f:
            json.dump(record, f, indent=2)
        with open(os.path.join(staging, "index.html"), "w") as f:
            f.write(_page(report, grids, settings, fit))
    return outdir


def _bar(share, width=40):
    return "\u2588" * round(share * width) + "\u2591" * (width - round(share * width))


def _page(report, grids, settings, fit):
    """index.html: grids and predicted attribute distributions, direct vs. FairGen."""
    direct, fair = report["direct"], report["fair"]
    rows = [["samples", grids["direct"], grids["fair"]]] if grids else []
    for i, cell in enumerate(direct["cells"]):
        rows.append(
            [f"share of cell {cell}"]
            + [f"{d['shares'][i]:.3f} {_bar(d['shares'][i])}" for d in (direct, fair)]
        )
    for metric in ("kl_to_uniform", "l2_discrepancy"):
        rows.append([metric.replace("_", " "), f"{direct[metric]:.4f}", f"{fair[metric]:.4f}"])
    for name, values in report["diversity"].items():
        label = f"mean pairwise distance ({name.replace('_', ' ')})"
        rows.append([label, f"{values['direct']:.4f}", f"{values['fair']:.4f}"])
    if "cell_accuracy" in report:
        accuracy = report["cell_accuracy"]
        rows.append(["predicted in the cell drawn from", "", f"{accuracy:.3f}"])
    if fit is None:
        fitted = "mixtures loaded from a file"
    else:
        fitted = "components per cell: " + ", ".join(
            f"{key} {cell['n_components']}" for key, cell in fit["cells"].items()
        )
        spread = ", ".join(f"{s:.3g}" for s in fit["projection_std"])
        fitted += f"; std of the fitted codes along each normal: {spread}"
    notes = (
        f"{direct['num']} samples each; cells are predicted by {settings['predictor']} "
        f"(columns {settings['columns']}, thresholds {settings['thresholds']}); KL in nats; "
        f"{fitted}; distances in {settings['space'].upper()}"
    )
    return image_table(
        "jgan fairgen", ["", "direct sampling", "FairGen sampling"], rows, notes=notes
    )


def run(args):
    predictor = load_predictor(args.predictor)
    boundaries = None
    if args.boundary:
        boundaries = []
        for path in args.boundary:
            boundary, _ = load_boundary(path)
            if boundary.ndim != 2:
                raise InputError(
                    f"{path} is a layer-wise boundary {boundary.shape}; FairGen needs (1, dim) "
                    "boundaries of W (or Z)"
                )
            boundaries.append(boundary)
    gmms = None if args.gmm is None else load_gmms(args.gmm)
    thresholds = [0.0] if args.threshold is None else args.threshold
    bundle = load(args.model, **parse_overrides(args.override))
    settings = {
        "model": os.path.abspath(args.model),
        "boundaries": [os.path.abspath(p) for p in args.boundary or ()],
        "gmm": None if args.gmm is None else os.path.abspath(args.gmm),
        "predictor": args.predictor,
        "num": args.num,
        "fit_num": args.fit_num,
        "distance": args.distance,
        "origin": args.origin,
        "mode": args.mode,
        "seed": args.seed,
    }
    path = fairgen_to_dir(
        bundle.generator,
        args.outdir,
        predictor=predictor,
        num=args.num,
        boundaries=boundaries,
        gmms=gmms,
        fit_num=args.fit_num,
        n_components=args.components,
        max_components=args.max_components,
        distance=args.distance,
        origin=args.origin,
        mode=args.mode,
        columns=args.column,
        thresholds=thresholds[0] if len(thresholds) == 1 else thresholds,
        seed=args.seed,
        batch_size=args.batch_size,
        trunc_psi=args.trunc_psi,
        trunc_layers=args.trunc_layers,
        noise_mode=args.noise_mode,
        preview=args.preview,
        overwrite=args.overwrite,
        settings=settings,
    )
    with open(os.path.join(path, "fairgen.json")) as f:
        report = json.load(f)["report"]
    print(
        f"KL to uniform: direct {report['direct']['kl_to_uniform']:.4f}, FairGen "
        f"{report['fair']['kl_to_uniform']:.4f}; wrote {path} (open "
        f"{os.path.join(path, 'index.html')})"
    )
