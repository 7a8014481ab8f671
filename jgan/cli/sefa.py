"""SeFa: factorize a model's style weights and show samples edited along the top directions.

Writes eigenvalues.npy (K,), directions.npy (K, dim), codes.npy (the codes that were edited),
sefa.json (settings), direction_KK.png (rows = samples, columns = distances) and index.html.
"""

import json
import os

import jax
import numpy as np
from tqdm import tqdm

from jgan.analysis.editing import manipulate
from jgan.analysis.generate import codes_of, images_of
from jgan.analysis.layers import parse_layers
from jgan.analysis.sefa import sefa
from jgan.bundle import load
from jgan.cli.options import add_override_option, parse_overrides
from jgan.errors import InputError
from jgan.nn import pixel_norm
from jgan.viz.html import image_table
from jgan.viz.images import make_grid, save_png
from jgan.viz.output import check_new, staged_dir


def add_parser(parser):
    parser.add_argument("model", help="checkpoint file or jgan model directory")
    parser.add_argument(
        "--layers", default="all", help="layers to factorize: all, 3, 0-1, 2-5,8 (default all)"
    )
    parser.add_argument("--num-directions", type=int, default=5, help="directions shown (5)")
    parser.add_argument("--num-samples", type=int, default=5, help="samples edited (5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the z codes (0)")
    parser.add_argument(
        "--distances",
        nargs=3,
        type=float,
        default=(-3.0, 3.0, 11),
        metavar=("START", "END", "STEPS"),
        help="edit distances: linspace(START, END, STEPS) (default -3 3 11, as sefa)",
    )
    parser.add_argument(
        "--trunc-psi", type=float, default=None, help="truncation psi (sefa uses 0.7)"
    )
    parser.add_argument(
        "--trunc-layers", type=int, default=None, help="truncated layers (default all; sefa: 8)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--outdir", required=True, help="new output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing outdir")
    add_override_option(parser)


def sefa_codes(generator, num, seed=0, trunc_psi=None, trunc_layers=None, batch_size=8):
    """(codes, space) that SeFa edits, as the original: PGGAN's pixel-normalized z (its first
    layer reads them); the (truncated) W+ codes of the style-based models."""
    style_based = "wp" in generator.latent_spaces
    z = jax.random.normal(jax.random.key(seed), (num, generator.z_space_dim))
    if style_based:
        options = dict(trunc_psi=trunc_psi, trunc_layers=trunc_layers)
        return codes_of(generator, z, "wp", batch_size=batch_size, **options), "wp"
    if trunc_psi is not None:
        raise InputError(f"{type(generator).__name__} has no W space to truncate in")
    return np.asarray(pixel_norm(z)), "z"


def sefa_to_dir(
    generator,
    outdir,
    *,
    layers="all",
    num_directions=5,
    num_samples=5,
    seed=0,
    distances=(-3.0, 3.0, 11),
    trunc_psi=None,
    trunc_layers=None,
    batch_size=8,
    overwrite=False,
):
    """Runs SeFa on `generator` and writes its directions and edited samples to `outdir`,
    atomically. Returns the output directory."""
    start, end, steps = distances
    if steps != int(steps) or steps < 1:
        raise InputError(f"the number of distances must be a positive integer; got {steps}")
    steps = int(steps)
    if num_samples < 1 or batch_size < 1:
        raise InputError("--num-samples and --batch-size must be positive")
    check_new(outdir, overwrite)
    eigenvalues, directions = sefa(generator, layers, num_directions=num_directions)
    codes, space = sefa_codes(generator, num_samples, seed, trunc_psi, trunc_layers, batch_size)
    edited = None if space == "z" else parse_layers(layers, generator.num_layers)
    columns = [f"{d:+.2f}" for d in np.linspace(start, end, steps)]
    rows = []
    with staged_dir(outdir, overwrite) as staging:
        np.save(os.path.join(staging, "eigenvalues.npy"), eigenvalues)
        np.save(os.path.join(staging, "directions.npy"), directions)
        np.save(os.path.join(staging, "codes.npy"), codes)
        for k in tqdm(range(num_directions), desc="sefa", unit="direction"):
            moved = manipulate(
                codes,
                directions[k : k + 1],
                layers=edited,
                start_distance=start,
                end_distance=end,
                steps=steps,
            )
            images = images_of(
                generator, moved.reshape(-1, *codes.shape[1:]), batch_size=batch_size, space=space
            )
            save_png(os.path.join(staging, f"direction_{k:02d}.png"), make_grid(images, steps))
            images = images.reshape(num_samples, steps, *images.shape[1:])
            label = f"direction {k} (eigenvalue {eigenvalues[k]:.4g})"
            rows += [[label, f"sample {i}", *images[i]] for i in range(num_samples)]
        settings = dict(
            layers=layers,
            num_directions=num_directions,
            num_samples=num_samples,
            seed=seed,
            distances=[start, end, steps],
            trunc_psi=trunc_psi,
            trunc_layers=trunc_layers,
            space=space,
            eigenvalues=eigenvalues.tolist(),
        )
        with open(os.path.join(staging, "sefa.json"), "w") as f:
            json.dump(settings, f, indent=2)
        page = image_table(
            "jgan sefa",
            ["direction", "sample", *columns],
            rows,
            notes=f"layers {layers}, seed {seed}, trunc_psi {trunc_psi}, trunc_layers "
            f"{trunc_layers}; columns are distances along each direction",
        )
        with open(os.path.join(staging, "index.html"), "w") as f:
            f.write(page)
    return os.path.abspath(outdir)


def run(args):
    check_new(args.outdir, args.overwrite)
    bundle = load(args.model, **parse_overrides(args.override))
    path = sefa_to_dir(
        bundle.generator,
        args.outdir,
        layers=args.layers,
        num_directions=args.num_directions,
        num_samples=args.num_samples,
        seed=args.seed,
        distances=tuple(args.distances),
        trunc_psi=args.trunc_psi,
        trunc_layers=args.trunc_layers,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    print(f"wrote SeFa directions and edits to {path} (open {os.path.join(path, 'index.html')})")
