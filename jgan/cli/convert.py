"""Convert a checkpoint (genforce .pth, ...) into a jgan model directory."""

from jgan.bundle import ROLES, load, save_model_dir
from jgan.cli.options import add_override_option, parse_overrides


def add_parser(parser):
    parser.add_argument("src", help="checkpoint file or jgan model directory")
    parser.add_argument("dst", help="new jgan model directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    add_override_option(parser)


def run(args):
    bundle = load(args.src, **parse_overrides(args.override))
    path = save_model_dir(bundle, args.dst, overwrite=args.overwrite)
    held = [role for role in ROLES if getattr(bundle, role) is not None]
    print(f"wrote {bundle.arch} model directory {path} ({', '.join(held)})")
