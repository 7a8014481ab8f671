"""Sample latent codes and predictor scores for boundary search (resumable, any scale)."""

import os

from jgan.analysis.generate import generate_data
from jgan.analysis.predictors import load_predictor
from jgan.bundle import load
from jgan.cli.options import add_override_option, parse_overrides
from jgan.errors import InputError


def add_parser(parser):
    parser.add_argument("model", help="checkpoint file or jgan model directory")
    parser.add_argument("--num", type=int, required=True, help="number of samples (e.g. 500000)")
    parser.add_argument(
        "--predictor",
        help="scores the images: 'package.module:function' or 'file.py:function' "
        "(e.g. jgan.analysis.predictors:mean_color); without it only codes are saved",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the z codes (default 0)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--trunc-psi", type=float, default=None, help="truncation psi")
    parser.add_argument(
        "--trunc-layers", type=int, default=None, help="truncated layers (default: all)"
    )
    parser.add_argument("--noise-mode", default="const", choices=("const", "random", "none"))
    parser.add_argument(
        "--codes",
        default=None,
        help="codes to save, comma-separated among z, w, wp (default z,w; z for PGGAN)",
    )
    parser.add_argument(
        "--chunk", type=int, default=8192, help="samples between progress saves (default 8192)"
    )
    parser.add_argument("--preview", type=int, default=16, help="samples shown in index.html")
    parser.add_argument("--outdir", required=True, help="new output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing outdir")
    add_override_option(parser)


def run(args):
    predictor = None if args.predictor is None else load_predictor(args.predictor)
    if args.trunc_layers is not None and args.trunc_psi is None:
        raise InputError("--trunc-layers needs --trunc-psi")
    bundle = load(args.model, **parse_overrides(args.override))
    try:
        path = generate_data(
            bundle.generator,
            args.outdir,
            num=args.num,
            predictor=predictor,
            seed=args.seed,
            batch_size=args.batch_size,
            trunc_psi=args.trunc_psi,
            trunc_layers=args.trunc_layers,
            noise_mode=args.noise_mode,
            codes=None if args.codes is None else args.codes.split(","),
            chunk=args.chunk,
            preview=args.preview,
            overwrite=args.overwrite,
            source=os.path.abspath(args.model),
            name=args.predictor,
        )
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue from the last saved chunk")
        raise SystemExit(130) from None
    print(f"wrote {args.num} samples to {path} (open {os.path.join(path, 'index.html')})")
