"""Sample images from a model: PNGs, z/w/wp codes (.npy) and an HTML grid."""

import os
import shutil
import tempfile

import jax
import numpy as np
from tqdm import tqdm

from jgan.api import synthesize
from jgan.bundle import load
from jgan.cli.options import add_override_option, parse_overrides
from jgan.errors import InputError
from jgan.viz.html import image_table
from jgan.viz.images import make_grid, save_png, to_uint8


def add_parser(parser):
    parser.add_argument("model", help="checkpoint file or jgan model directory")
    parser.add_argument("--num", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the z codes (default 0)")
    parser.add_argument("--trunc-psi", type=float, default=None, help="truncation psi")
    parser.add_argument(
        "--trunc-layers", type=int, default=None, help="truncated layers (default: all)"
    )
    parser.add_argument("--label", type=int, default=None, help="class index (conditional)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--noise-mode", default="const", choices=("const", "random", "none"))
    parser.add_argument("--outdir", required=True, help="new output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing outdir")
    add_override_option(parser)


def sample_to_dir(generator, outdir, *, num, seed=0, batch_size=8, label=None, **options):
    """Writes `num` samples of `generator` to the new directory `outdir`, atomically.

    Files: NNNNNN.png, z.npy (and w.npy, wp.npy for style-based models), grid.png and
    index.html. Options are those of `jgan.synthesize`.
    """
    if num < 1 or batch_size < 1:
        raise InputError("--num and --batch-size must be positive")
    key_codes, key_noise = jax.random.split(jax.random.key(seed))
    z = np.asarray(jax.random.normal(key_codes, (num, generator.z_space_dim)), np.float32)
    labels = None
    if label is not None:
        size = generator.config.get("label_size", 0)
        if not 0 <= label < size:
            raise InputError(f"--label must be a class index in [0, {size}); got {label}")
        labels = np.eye(size, dtype=np.float32)[np.full(num, label)]
    outputs = {}
    for start in tqdm(range(0, num, batch_size), desc="synthesize", unit="batch"):
        stop = min(start + batch_size, num)
        out = synthesize(
            generator,
            z[start:stop],
            label=None if labels is None else labels[start:stop],
            key=jax.random.fold_in(key_noise, start),
            **options,
        )
        for name, value in out.items():
            outputs.setdefault(name, []).append(np.asarray(value))
    outputs = {name: np.concatenate(parts) for name, parts in outputs.items()}
    images = to_uint8(outputs.pop("image"))
    outdir = os.path.abspath(outdir)
    os.makedirs(os.path.dirname(outdir), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".jgan-", dir=os.path.dirname(outdir))
    try:
        for i, image in enumerate(images):
            save_png(os.path.join(staging, f"{i:06d}.png"), image)
        np.save(os.path.join(staging, "z.npy"), z)
        for name in ("w", "wp"):
            if name in outputs:
                np.save(os.path.join(staging, f"{name}.npy"), outputs[name])
        save_png(os.path.join(staging, "grid.png"), make_grid(images))
        rows = [[f"{i:06d}", image] for i, image in enumerate(images)]
        page = image_table(
            "jgan synthesize",
            ["index", "image"],
            rows,
            notes=f"seed {seed}, " + ", ".join(f"{k}={v}" for k, v in sorted(options.items())),
        )
        with open(os.path.join(staging, "index.html"), "w") as f:
            f.write(page)
        if os.path.exists(outdir):
            shutil.rmtree(outdir)
        os.replace(staging, outdir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return outdir


def run(args):
    if os.path.exists(args.outdir) and not args.overwrite:
        raise InputError(f"{args.outdir} exists; choose a new --outdir or pass --overwrite")
    bundle = load(args.model, **parse_overrides(args.override))
    options = {"noise_mode": args.noise_mode}
    if args.trunc_psi is not None:
        options.update(trunc_psi=args.trunc_psi, trunc_layers=args.trunc_layers)
    path = sample_to_dir(
        bundle.generator,
        args.outdir,
        num=args.num,
        seed=args.seed,
        batch_size=args.batch_size,
        label=args.label,
        **options,
    )
    print(f"wrote {args.num} images to {path} (open {os.path.join(path, 'index.html')})")
