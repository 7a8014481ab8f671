"""Export a model (jgan model directory or checkpoint) as a genforce model-zoo .pth."""

import json
import os

from jgan.bundle import load
from jgan.cli.options import add_override_option, parse_overrides
from jgan.errors import InputError
from jgan.ports.export import FORMATS, export_genforce


def add_parser(parser):
    parser.add_argument("model", help="checkpoint file or jgan model directory")
    parser.add_argument("dst", help="new .pth file")
    parser.add_argument(
        "--format", default="genforce", choices=FORMATS, help="file format (default genforce)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    add_override_option(parser)


def run(args):
    if os.path.exists(args.dst) and not args.overwrite:
        raise InputError(f"{args.dst} exists; choose a new path or pass --overwrite")
    bundle = load(args.model, **parse_overrides(args.override))
    overrides = export_genforce(bundle, args.dst)
    held = [r for r in ("generator", "generator_raw", "discriminator") if getattr(bundle, r)]
    print(f"wrote {bundle.arch} genforce checkpoint {args.dst} ({', '.join(held)})")
    merged = {name: value for arguments in overrides.values() for name, value in arguments.items()}
    if all(merged[k] == v for arguments in overrides.values() for k, v in arguments.items()):
        overrides = {"model": merged} if merged else {}
    for entry, arguments in overrides.items():
        listed = " ".join(f"--override {name}={_text(value)}" for name, value in arguments.items())
        print(f"the {entry} has arguments the weights do not tell: read it back with {listed}")


def _text(value):
    """An override value as parse_overrides reads it back (JSON, or plain text for strings)."""
    return value if isinstance(value, str) else json.dumps(value)
