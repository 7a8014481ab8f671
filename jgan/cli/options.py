"""Command-line parsing shared by the sub-commands."""

import json

from jgan.errors import InputError


def parse_overrides(pairs):
    """['resolution=256', 'fused_scale=true'] -> {'resolution': 256, 'fused_scale': True}.

    Values are read as JSON where they parse (numbers, true/false, null), else kept as text.
    """
    overrides = {}
    for pair in pairs or ():
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise InputError(f"--override takes NAME=VALUE; got {pair!r}")
        try:
            overrides[name] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name] = text
    return overrides


def add_override_option(parser):
    parser.add_argument(
        "--override",
        action="append",
        metavar="NAME=VALUE",
        help="constructor argument the file cannot tell (e.g. fused_scale=true); repeatable",
    )
