"""Transform images with a TrGAN: a source/target pair defines the change, applied in steps.

The pair is projected by the discriminator's head P; delta = P(target) - P(source) (the means
when several images are given) moves samples G(z, t) to G(z, t + alpha * delta) for each
--alphas, or, with --images, real images inverted in W+ (see `jgan.analysis.transform`).
Writes the grid (rows images, columns alphas) as grid.png and index.html, delta.npy,
alphas.npy, and z.npy + t.npy (samples) or wp.npy (inverted images).
"""

import os

import jax
import numpy as np
from tqdm import tqdm

from jgan.analysis.transform import transform_images, transform_samples, transformation
from jgan.bundle import load
from jgan.errors import InputError
from jgan.imageio import load_batch
from jgan.inversion.metrics import image_metrics
from jgan.viz.html import image_table
from jgan.viz.images import make_grid, save_png, to_uint8
from jgan.viz.output import check_new, staged_dir

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def add_parser(parser):
    parser.add_argument("model", help="TrGAN model directory (configs/trgan.py training)")
    parser.add_argument("--source", nargs="+", required=True, help="source image(s) of the pair")
    parser.add_argument("--target", nargs="+", required=True, help="target image(s) of the pair")
    parser.add_argument(
        "--images", nargs="+", help="real images to transform (inverted in W+); default samples"
    )
    parser.add_argument(
        "--alphas",
        nargs="+",
        type=float,
        default=list(DEFAULT_ALPHAS),
        help="steps along the transformation (default 0 0.25 0.5 0.75 1; 0 = unchanged)",
    )
    parser.add_argument("--num", type=int, default=8, help="samples without --images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples' z and t")
    parser.add_argument("--trunc-psi", type=float, default=None, help="truncation of samples")
    parser.add_argument(
        "--inversion-steps", type=int, default=300, help="W+ optimisation steps (--images)"
    )
    parser.add_argument("--resize", action="store_true", help="center-crop and resize images")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--outdir", required=True, help="new output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing outdir")


def transform_to_dir(
    bundle,
    outdir,
    *,
    source,
    target,
    images=None,
    alphas=DEFAULT_ALPHAS,
    num=8,
    seed=0,
    trunc_psi=None,
    inversion_steps=300,
    resize=False,
    batch_size=8,
    overwrite=False,
):
    """Writes the transformation of the pair of image files (`source`, `target`: lists of
    paths) applied to `num` samples or to the image files `images`, to the new `outdir`."""
    generator, discriminator = bundle.generator, bundle.discriminator
    if generator is None or discriminator is None:
        raise InputError("a TrGAN model directory with its generator and discriminator is needed")
    if num < 1 or batch_size < 1:
        raise InputError("--num and --batch-size must be positive")
    if images is not None and trunc_psi is not None:
        raise InputError("inverted images are edited as they are: drop --trunc-psi with --images")
    check_new(outdir, overwrite)
    resolution = generator.config["resolution"]
    pair = [load_batch(paths, resolution, resize_to_fit=resize) for paths in (source, target)]
    delta = np.asarray(transformation(discriminator, pair[0][1], pair[1][1]))
    alphas = np.asarray(alphas, np.float32)
    saved, head = {"delta": delta, "alphas": alphas}, []
    key = jax.random.key(seed)
    if images is None:
        z_key, t_key = jax.random.split(key)
        z = np.asarray(jax.random.normal(z_key, (num, generator.mapping.z_dim)))
        t = np.asarray(jax.random.normal(t_key, (num, generator.t_dim)))
        saved.update(z=z, t=t)
        labels = [f"{i:06d}" for i in range(num)]
        edited = []
        for start in tqdm(range(0, num, batch_size), desc="transform", unit="batch"):
            part = slice(start, start + batch_size)
            moved = transform_samples(
                generator, z[part], t[part], delta, alphas, trunc_psi=trunc_psi
            )
            edited.append(to_uint8(moved))
        edited = np.concatenate(edited)
    else:
        names, inputs = load_batch(images, resolution, resize_to_fit=resize)
        out = transform_images(
            generator, inputs, delta, alphas, steps=inversion_steps, key=key, progress=True
        )
        saved["wp"] = np.asarray(out["codes"])
        shown, inverted = to_uint8(inputs), to_uint8(out["reconstructions"])
        psnr = image_metrics(np.asarray(out["reconstructions"]), inputs)["psnr"]
        labels = [f"{n} (inversion PSNR {p:.1f} dB)" for n, p in zip(names, psnr, strict=True)]
        head = [("input", shown), ("inversion", inverted)]
        edited = to_uint8(out["images"])
    header = ["image", *(title for title, _ in head), *(f"alpha {a:+.2f}" for a in alphas)]
    rows = [[label, *(x[i] for _, x in head), *edited[i]] for i, label in enumerate(labels)]
    blanks = [""] * (len(header) - 3)
    shown_pair = [to_uint8(np.mean(x[1], axis=0)) for x in pair]  # the mean image of a set
    rows.insert(0, ["pair: source, target", *shown_pair, *blanks])
    notes = (
        f"delta = P(target) - P(source), |delta| = {np.linalg.norm(delta):.3f}; source "
        f"{', '.join(pair[0][0])}; target {', '.join(pair[1][0])}"
    )
    with staged_dir(outdir, overwrite) as staging:
        for name, value in saved.items():
            np.save(os.path.join(staging, f"{name}.npy"), value)
        grid = edited.reshape(-1, *edited.shape[2:])
        save_png(os.path.join(staging, "grid.png"), make_grid(grid, cols=len(alphas)))
        with open(os.path.join(staging, "index.html"), "w") as f:
            f.write(image_table("jgan transform", header, rows, notes=notes))
    return edited


def run(args):
    bundle = load(args.model)
    edited = transform_to_dir(
        bundle,
        args.outdir,
        source=args.source,
        target=args.target,
        images=args.images,
        alphas=args.alphas,
        num=args.num,
        seed=args.seed,
        trunc_psi=args.trunc_psi,
        inversion_steps=args.inversion_steps,
        resize=args.resize,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    print(f"wrote {edited.shape[0]} x {edited.shape[1]} transformed images to {args.outdir}")
