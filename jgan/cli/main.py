"""The `jgan` command: one program, one sub-command per task."""

import argparse
import sys

from jgan.cli import convert, synthesize
from jgan.errors import JganError

COMMANDS = {"convert": convert, "synthesize": synthesize}


def build_parser():
    parser = argparse.ArgumentParser(prog="jgan", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.add_parser(subparsers.add_parser(name, help=command.__doc__.splitlines()[0]))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command].run(args)
    except JganError as error:
        print(f"jgan {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
