"""Edit latent codes or real images along a boundary or a SeFa direction: image grids (rows
samples, columns distances) and codes.

Style-based models are edited in W+ (HiGAN): the chosen layers move by relative offsets, with
the truncation compensated so distances are those of W. `--absolute` gives InterFaceGAN's edit
instead (Z/W codes placed at distances from the boundary's hyperplane). With `--images` the
photos are inverted first (`jgan invert`'s optimisation or IDInvert, in W+ where the model
has it) and their codes edited: the grid then starts with the input and its inversion.
"""

import dataclasses
import os

import jax
import numpy as np

from jgan.analysis.boundaries import linear_interpolate, load_boundary
from jgan.analysis.editing import manipulate
from jgan.analysis.generate import codes_of, images_of
from jgan.analysis.sefa import sefa
from jgan.bundle import load
from jgan.cli.invert import add_network_options, check_networks_used, load_networks
from jgan.cli.options import add_override_option, parse_overrides
from jgan.errors import InputError
from jgan.imageio import load_batch
from jgan.inversion import optimize
from jgan.inversion.metrics import image_metrics
from jgan.viz.html import image_table
from jgan.viz.images import save_png, to_uint8
from jgan.viz.output import check_new, staged_dir


def add_parser(parser):
    parser.add_argument("model", help="checkpoint file or jgan model directory")
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument(
        "--boundary", help="boundary .npy: (1, dim), (1, L, dim) or the dict form with meta_data"
    )
    direction.add_argument(
        "--sefa",
        type=int,
        metavar="K",
        help="edit along SeFa's K-th direction (0 = top) of the --layers (default all)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--codes", help=".npy latent codes in --space (e.g. generate-data's w.npy)")
    source.add_argument(
        "--images", nargs="+", help="real images (PNG/JPEG/.npy) to invert, then edit"
    )
    parser.add_argument(
        "--method",
        choices=("optimize", "idinvert"),
        default="optimize",
        help="inversion of --images (default optimize: W+ pixel MSE, Adam)",
    )
    parser.add_argument(
        "--inversion-steps", type=int, default=None, help="default: the method's preset"
    )
    parser.add_argument("--resize", action="store_true", help="center-crop and resize --images")
    add_network_options(parser)
    parser.add_argument("--num", type=int, default=8, help="samples drawn without --codes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn z codes")
    parser.add_argument(
        "--space",
        choices=("z", "w", "wp"),
        default=None,
        help="space of --codes and of a (1, dim) boundary (default w for style-based models)",
    )
    parser.add_argument(
        "--layers",
        default=None,
        help="W+ layers to move, e.g. 6-11 or 0-3,8 (default: the boundary file's "
        "manipulate_layers, else all)",
    )
    parser.add_argument("--start-distance", type=float, default=-3.0)
    parser.add_argument("--end-distance", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=7, help="edit distances (default 7)")
    parser.add_argument(
        "--absolute",
        action="store_true",
        help="InterFaceGAN's edit: Z/W codes at absolute distances from the hyperplane",
    )
    parser.add_argument("--trunc-psi", type=float, default=None, help="truncation psi")
    parser.add_argument(
        "--trunc-layers", type=int, default=None, help="truncated layers (default: all)"
    )
    parser.add_argument(
        "--no-trunc-compensation",
        action="store_true",
        help="move truncated W+ layers by the full distance (HiGAN's "
        "--disable_manipulation_truncation)",
    )
    parser.add_argument(
        "--noise-mode",
        default="const",
        choices=("const", "none"),
        help="stored noise maps (default) or none: the same noise at every distance",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--save-images", action="store_true", help="also write every image as NNNNNN_SSS.png"
    )
    parser.add_argument("--outdir", required=True, help="new output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing outdir")
    add_override_option(parser)


def edit_codes(
    generator,
    codes,
    boundary,
    *,
    space,
    layers=None,
    start_distance=-3.0,
    end_distance=3.0,
    steps=7,
    absolute=False,
    trunc_psi=None,
    trunc_layers=None,
    compensate=True,
    batch_size=16,
):
    """(edited codes (N, steps, *code_shape), their space) for `codes` in `space`.

    Codes in W or W+ are edited in W+; Z codes, and W codes with `absolute`, in their space.
    """
    truncation = {"trunc_psi": trunc_psi, "trunc_layers": trunc_layers}
    distances = {"start_distance": start_distance, "end_distance": end_distance, "steps": steps}
    if absolute or space == "z":
        if layers is not None:
            raise InputError(f"layers={layers!r} needs a W+ edit: use --space w or wp")
        if not absolute:
            return manipulate(codes, boundary, **distances), space
        if space == "wp":
            raise InputError("absolute distances are defined for Z and W codes, not W+")
        edited = [linear_interpolate(code[None], boundary, **distances) for code in codes]
        return np.stack(edited), space
    if space == "w":
        codes = codes_of(generator, codes, "wp", batch_size=batch_size, space="w", **truncation)
    if not compensate:
        truncation = {}
    return manipulate(codes, boundary, layers=layers, **distances, **truncation), "wp"


def invert_images(args, bundle, space):
    """(names, images, their codes in `space`) of --images, inverted as the options say."""
    generator = bundle.generator
    resolution = generator.config["resolution"]
    channels = generator.config.get("image_channels", 3)
    names, images = load_batch(
        args.images, resolution, channels=channels, resize_to_fit=args.resize
    )
    encoder, perceptual = load_networks(args, bundle)
    settings = dataclasses.replace(optimize.preset(args.method), space=space)
    if args.inversion_steps is not None:
        settings = dataclasses.replace(settings, steps=args.inversion_steps)
    check_networks_used(args, settings)
    key, parts = jax.random.key(args.seed), []
    for start in range(0, len(images), args.batch_size):
        out = optimize.invert(
            generator,
            images[start : start + args.batch_size],
            key=jax.random.fold_in(key, start),
            encoder=encoder,
            perceptual=perceptual,
            settings=settings,
            progress=True,
        )
        parts.append(np.asarray(out["codes"]))
    return names, images, np.concatenate(parts)


def sefa_direction(generator, index, layers):
    """SeFa's `index`-th direction (1, dim) of `layers` (all when None)."""
    _, directions = sefa(generator, "all" if layers is None else layers)
    if not 0 <= index < len(directions):
        raise InputError(f"--sefa must be in [0, {len(directions) - 1}]; got {index}")
    return directions[index : index + 1]


def _check_inversion_options(args):
    """Inversion options without --images, or truncation of inverted codes, are mistakes."""
    if args.images is None:
        given = [
            option
            for option, value in (
                ("--method", args.method != "optimize"),
                ("--inversion-steps", args.inversion_steps is not None),
                ("--resize", args.resize),
                ("--encoder", args.encoder),
                ("--perceptual", args.perceptual),
            )
            if value
        ]
        if given:
            raise InputError(f"{', '.join(given)} only apply to --images (real images to invert)")
    elif args.trunc_psi is not None:
        raise InputError("inverted codes are edited as they are: drop --trunc-psi with --images")


def run(args):
    if args.trunc_layers is not None and args.trunc_psi is None:
        raise InputError("--trunc-layers needs --trunc-psi")
    _check_inversion_options(args)
    check_new(args.outdir, args.overwrite)
    bundle = load(args.model, **parse_overrides(args.override))
    generator = bundle.generator
    if generator is None:
        raise InputError(f"{args.model} holds no generator")
    default_space = "w" if "w" in generator.latent_spaces else "z"
    if args.images is not None:
        default_space = "wp" if "wp" in generator.latent_spaces else "z"
    space = args.space or default_space
    if space not in generator.latent_spaces:
        raise InputError(f"this model takes codes in {generator.latent_spaces}; got {space!r}")
    layers = args.layers
    if args.sefa is not None:
        boundary = sefa_direction(generator, args.sefa, layers)
    else:
        boundary, meta = load_boundary(args.boundary)
        if layers is None and space != "z" and not args.absolute:
            layers = (meta or {}).get("manipulate_layers")
    saved, inputs, names = {}, None, None
    if args.images is not None:
        names, inputs, codes = invert_images(args, bundle, space)
    elif args.codes is not None:
        codes = np.load(args.codes).astype(np.float32)
    else:
        if args.num < 1:
            raise InputError("--num must be positive")
        z = np.asarray(
            jax.random.normal(jax.random.key(args.seed), (args.num, generator.z_space_dim))
        )
        saved["z"] = z
        truncation = {"trunc_psi": args.trunc_psi, "trunc_layers": args.trunc_layers}
        # W untruncated, W+ truncated: as the originals sample them
        codes = (
            z
            if space == "z"
            else codes_of(generator, z, space, batch_size=args.batch_size, **truncation)
        )
    saved[space] = codes
    edited, edit_space = edit_codes(
        generator,
        codes,
        boundary,
        space=space,
        layers=layers,
        start_distance=args.start_distance,
        end_distance=args.end_distance,
        steps=args.steps,
        absolute=args.absolute,
        trunc_psi=args.trunc_psi,
        trunc_layers=args.trunc_layers,
        compensate=not args.no_trunc_compensation,
        batch_size=args.batch_size,
    )
    edited = np.asarray(edited, np.float32)

    def render(codes, code_space):
        synthesis = {"space": code_space, "noise_mode": args.noise_mode}
        if code_space != "wp":
            synthesis.update(trunc_psi=args.trunc_psi, trunc_layers=args.trunc_layers)
        return images_of(generator, codes, batch_size=args.batch_size, **synthesis)

    num, steps = edited.shape[:2]
    images = render(edited.reshape(num * steps, *edited.shape[2:]), edit_space)
    images = images.reshape(num, steps, *images.shape[1:])
    labels, head = [f"{n:06d}" for n in range(num)], []
    if inputs is not None:
        shown, inverted = to_uint8(inputs), render(codes, space)
        psnr = image_metrics(*(x.astype(np.float32) / 127.5 - 1 for x in (inverted, shown)))["psnr"]
        labels = [
            f"{name} (inversion PSNR {value:.1f} dB)"
            for name, value in zip(names, psnr, strict=True)
        ]
        head = [("input", shown), ("inversion", inverted)]
    distances = np.linspace(args.start_distance, args.end_distance, args.steps, dtype=np.float32)
    with staged_dir(args.outdir, args.overwrite) as staging:
        for name, value in saved.items():
            np.save(os.path.join(staging, f"{name}.npy"), value)
        if names is not None:
            with open(os.path.join(staging, "image_list.txt"), "w") as f:
                f.write("".join(f"{name}\n" for name in names))
        np.save(os.path.join(staging, "boundary.npy"), boundary)
        np.save(os.path.join(staging, f"manipulated_{edit_space}.npy"), edited)
        np.save(os.path.join(staging, "distances.npy"), distances)
        if args.save_images:
            for n in range(num):
                for s in range(steps):
                    save_png(os.path.join(staging, f"{n:06d}_{s:03d}.png"), images[n, s])
        kind = "distance to the hyperplane" if args.absolute else "offset"
        header = ["sample", *(title for title, _ in head)]
        header += [f"{kind} {d:+.2f}" for d in distances]
        rows = [[labels[n], *(values[n] for _, values in head), *images[n]] for n in range(num)]
        direction = f"SeFa direction {args.sefa}" if args.sefa is not None else args.boundary
        notes = f"{direction}, {space} codes, edited in {edit_space}"
        if edit_space == "wp":
            notes += f", layers {layers or 'all'}"
        with open(os.path.join(staging, "index.html"), "w") as f:
            f.write(image_table("jgan edit", header, rows, notes=notes))
    print(f"wrote {num} x {steps} edits to {args.outdir}")
