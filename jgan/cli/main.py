"""The `jgan` command: one program, one sub-command per task."""

import argparse
import sys

from jgan.cli import (
    boundary,
    convert,
    demo,
    edit,
    export,
    fairgen,
    generate_data,
    invert,
    rescore,
    sefa,
    synthesize,
    train,
    transform,
)
from jgan.errors import JganError

COMMANDS = {
    "demo": demo,
    "convert": convert,
    "export": export,
    "synthesize": synthesize,
    "sefa": sefa,
    "boundary": boundary,
    "generate-data": generate_data,
    "edit": edit,
    "invert": invert,
    "rescore": rescore,
    "fairgen": fairgen,
    "train": train,
    "transform": transform,
}


def build_parser():
    parser = argparse.ArgumentParser(prog="jgan", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.add_parser(subparsers.add_parser(name, help=command.__doc__.splitlines()[0]))
    return parser


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(COMMANDS[args.command], "ACCEPTS_EXTRA_ARGS", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        COMMANDS[args.command].run(args)
    except JganError as error:
        print(f"jgan {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
