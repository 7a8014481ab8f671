"""Invert real images into a generator's latent space, optionally restoring them.

    jgan invert MODEL photo.png --resize --outdir out                       # W+ optimisation
    jgan invert MODEL *.png --method idinvert --encoder E.pth --perceptual vgg16.pth --outdir out
    jgan invert MODEL gray.png --method multicode --perceptual vgg16-397923af.pth \\
        --task colorize --outdir out

Writes NAME_input.png, NAME_start.png (the encoder's output, or the mean / random start),
NAME_inv.png (the inversion), with a task NAME_degraded.png (what the loss sees) and
NAME_result.png; codes.npy (init_codes.npy, alphas.npy for multi-code), losses.npz (per-step
history of every term), metrics.json (MSE, PSNR, SSIM, LPIPS with --lpips, against the input)
and index.html. With a task the input is the reference of the metrics: give the undegraded
image to measure a restoration, as the papers do.
"""

import dataclasses
import json
import os

import jax
import numpy as np

from jgan.bundle import load
from jgan.cli.options import add_override_option, parse_overrides
from jgan.errors import InputError
from jgan.imageio import fit, load_batch, read_images
from jgan.inversion import optimize
from jgan.inversion.losses import DISTANCES
from jgan.inversion.metrics import image_metrics
from jgan.inversion.tasks import DOWN_MODES, TASKS, Colorize, Inpaint, SuperResolve, paste
from jgan.viz.html import image_table
from jgan.viz.images import save_png, to_uint8
from jgan.viz.output import check_new, staged_dir

SETTING_OPTIONS = (
    ("space", str, optimize.SPACES),
    ("steps", int, None),
    ("learning_rate", float, None),
    ("optimizer", str, optimize.OPTIMIZERS),
    ("init", str, optimize.INITS),
    ("pixel_weight", float, None),
    ("l1_weight", float, None),
    ("perceptual_weight", float, None),
    ("perceptual_layer", str, None),
    ("perceptual_distance", str, DISTANCES),
    ("encoder_weight", float, None),
    ("num_codes", int, None),
    ("composing_layer", int, None),
)
DIFFUSE_CROP, DIFFUSE_CENTER, DIFFUSE_RESOLUTION = 110, (125, 145), 256
"""IDInvert's diffuse.py defaults for 256-px faces, scaled to other resolutions."""


def add_parser(parser):
    parser.add_argument("model", help="checkpoint file or jgan model directory")
    parser.add_argument("images", nargs="+", help="PNG/JPEG images or .npy arrays (batches too)")
    parser.add_argument("--method", choices=optimize.METHODS, default="optimize")
    parser.add_argument("--task", choices=tuple(TASKS), help="a restoration on top of inversion")
    parser.add_argument("--mask", help="inpaint: mask image, white = missing (mGANprior's masks)")
    parser.add_argument("--factor", type=int, help="super-resolve: downsampling factor")
    parser.add_argument("--down-mode", choices=DOWN_MODES, default="bilinear")
    parser.add_argument(
        "--context", nargs="+", help="diffuse: context images (the IMAGES give the crops)"
    )
    parser.add_argument("--crop-size", type=int, help="diffuse: crop side (IDInvert: 110 at 256)")
    parser.add_argument(
        "--center", type=int, nargs=2, metavar=("X", "Y"), help="diffuse: crop centre"
    )
    add_network_options(parser)
    parser.add_argument(
        "--lpips",
        nargs=2,
        metavar=("VGG16", "HEADS"),
        help="report LPIPS (torchvision VGG16 + lpips/weights/v0.1/vgg.pth)",
    )
    for name, kind, choices in SETTING_OPTIONS:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            choices=choices,
            help="default: the method's preset",
        )
    parser.add_argument("--resize", action="store_true", help="center-crop and resize inputs")
    parser.add_argument("--batch-size", type=int, default=8, help="images per inversion call")
    parser.add_argument("--seed", type=int, default=0, help="seed of random initial codes")
    parser.add_argument("--outdir", required=True, help="new output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing outdir")
    add_override_option(parser)


def _task(args, names, images, resolution, channels):
    """(names, images to invert, task or None) for the --task options."""
    if args.task is None:
        return names, images, None
    if args.task == "colorize":
        return names, images, Colorize()
    if args.task == "super-resolve":
        if args.factor is None:
            raise InputError("--task super-resolve needs --factor (e.g. 8)")
        return names, images, SuperResolve(args.factor, args.down_mode)
    if args.task == "inpaint":
        if args.mask is None:
            raise InputError("--task inpaint needs --mask (white = missing pixels)")
        [(_, mask)] = read_images(args.mask, channels=1)[:1]
        mask = fit(mask, resolution, resize_to_fit=args.resize, name=args.mask)
        return names, images, Inpaint((mask[..., 0] + 1.0) / 2.0)
    if not args.context:
        raise InputError("--task diffuse needs --context images to paste the crops into")
    context_names, contexts = load_batch(
        args.context, resolution, channels=channels, resize_to_fit=args.resize
    )
    scale = resolution / DIFFUSE_RESOLUTION
    crop = args.crop_size or round(DIFFUSE_CROP * scale)
    center = args.center or tuple(round(c * scale) for c in DIFFUSE_CENTER)
    pasted, task = paste(images, contexts, crop, center)
    if len(contexts) == len(images):
        names = [f"{a}_in_{b}" for a, b in zip(names, context_names, strict=True)]
    elif len(images) == 1:
        names = [f"{names[0]}_in_{b}" for b in context_names]
    else:
        names = [f"{a}_in_{context_names[0]}" for a in names]
    return names, pasted, task


def _settings(args):
    """The settings the options give (the others keep the method's preset)."""
    return {
        name: getattr(args, name)
        for name, _, _ in SETTING_OPTIONS
        if getattr(args, name) is not None
    }


def invert_to_dir(
    generator,
    names,
    images,
    outdir,
    *,
    batch_size=8,
    seed=0,
    overwrite=False,
    lpips=None,
    **options,
):
    """Inverts `images` in batches with `jgan.invert(**options)` and writes the files of the
    module docstring to the new directory `outdir`, atomically."""
    if batch_size < 1:
        raise InputError("--batch-size must be positive")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"several inputs are named {repeated}: their outputs would collide")
    check_new(outdir, overwrite)
    key = jax.random.key(seed)
    parts = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        out = optimize.invert(
            generator, batch, key=jax.random.fold_in(key, start), progress=True, **options
        )
        parts.append(out)
    settings = parts[0]["settings"]
    arrays = {
        name: np.concatenate([np.asarray(p[name]) for p in parts])
        for name in ("codes", "init_codes", "images", "init_images", "alphas", "result", "degraded")
        if name in parts[0]
    }
    losses = {
        term: np.concatenate([p["losses"][term] for p in parts]) for term in parts[0]["losses"]
    }
    reference = np.clip(images, -1.0, 1.0)
    metrics = {"inversion": image_metrics(np.clip(arrays["images"], -1, 1), reference, lpips=lpips)}
    if "result" in arrays:
        metrics["result"] = image_metrics(np.clip(arrays["result"], -1, 1), reference, lpips=lpips)
    per_image = {
        name: {
            f"{what}_{metric}": float(values[i])
            for what, table in metrics.items()
            for metric, values in table.items()
        }
        for i, name in enumerate(names)
    }
    start_label = "encoder output" if settings.init == "encoder" else f"start ({settings.init})"
    columns = [
        ("input", images),
        ("task input", arrays.get("degraded")),
        (start_label, arrays["init_images"]),
        ("inversion", arrays["images"]),
        ("task result", arrays.get("result")),
    ]
    columns = [(title, to_uint8(values)) for title, values in columns if values is not None]
    files = {
        "input": "input",
        "task input": "degraded",
        start_label: "start",
        "inversion": "inv",
        "task result": "result",
    }
    with staged_dir(outdir, overwrite) as staging:
        for i, name in enumerate(names):
            for title, values in columns:
                save_png(os.path.join(staging, f"{name}_{files[title]}.png"), values[i])
        np.save(os.path.join(staging, "codes.npy"), arrays["codes"])
        np.save(os.path.join(staging, "init_codes.npy"), arrays["init_codes"])
        if "alphas" in arrays:
            np.save(os.path.join(staging, "alphas.npy"), arrays["alphas"])
        np.savez(os.path.join(staging, "losses.npz"), **losses)
        with open(os.path.join(staging, "metrics.json"), "w") as f:
            json.dump(per_image, f, indent=2)
        with open(os.path.join(staging, "image_list.txt"), "w") as f:
            f.write("".join(f"{name}\n" for name in names))
        rows = [
            [name, *(values[i] for _, values in columns), _metrics_text(per_image[name])]
            for i, name in enumerate(names)
        ]
        notes = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(settings).items())
        page = image_table(
            "jgan invert",
            ["name", *(t for t, _ in columns), "metrics vs input"],
            rows,
            notes=notes,
        )
        with open(os.path.join(staging, "index.html"), "w") as f:
            f.write(page)
    return os.path.abspath(outdir)


def _metrics_text(values):
    return "; ".join(f"{name.replace('_', ' ')} {value:.4g}" for name, value in values.items())


def add_network_options(parser):
    """--encoder / --perceptual: the networks some inversion settings use."""
    parser.add_argument("--encoder", help="encoder file (IDInvert's styleganinv_*_encoder.pth)")
    parser.add_argument("--perceptual", help="VGG16 file for the perceptual loss")


def load_networks(args, bundle):
    """(encoder, perceptual network) of the options, the model's own encoder by default."""
    encoder = load(args.encoder).encoder if args.encoder else bundle.encoder
    if args.encoder and encoder is None:
        raise InputError(f"{args.encoder} holds no encoder")
    perceptual = load(args.perceptual).perceptual if args.perceptual else None
    if args.perceptual and perceptual is None:
        raise InputError(f"{args.perceptual} is not a VGG16 file")
    return encoder, perceptual


def check_networks_used(args, settings):
    """A network given on the command line that the settings would ignore is an error."""
    if args.perceptual and not settings.perceptual_weight:
        raise InputError(
            f"--perceptual is unused: method {args.method} has perceptual_weight 0; set "
            "--perceptual-weight"
        )
    if args.encoder and not (settings.init == "encoder" or settings.encoder_weight):
        raise InputError(
            "--encoder is unused: set --init encoder or --encoder-weight (or use --method idinvert)"
        )


def run(args):
    check_new(args.outdir, args.overwrite)
    bundle = load(args.model, **parse_overrides(args.override))
    generator = bundle.generator
    if generator is None:
        raise InputError(f"{args.model} holds no generator")
    encoder, perceptual = load_networks(args, bundle)
    lpips = None
    if args.lpips:
        from jgan.ports.vgg import load_lpips

        lpips = load_lpips(*args.lpips)
    resolution = generator.config["resolution"]
    channels = generator.config.get("image_channels", 3)
    names, images = load_batch(
        args.images, resolution, channels=channels, resize_to_fit=args.resize
    )
    names, images, task = _task(args, names, images, resolution, channels)
    settings = optimize.preset(args.method, task)
    settings = dataclasses.replace(settings, **_settings(args))
    check_networks_used(args, settings)
    path = invert_to_dir(
        generator,
        names,
        images,
        args.outdir,
        batch_size=args.batch_size,
        seed=args.seed,
        overwrite=args.overwrite,
        lpips=lpips,
        method=args.method,
        encoder=encoder,
        perceptual=perceptual,
        task=task,
        settings=settings,
    )
    print(f"inverted {len(names)} images to {path} (open {os.path.join(path, 'index.html')})")
