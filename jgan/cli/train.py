"""Train a model from a python config file, resuming automatically from the work directory.

    jgan train --config configs/stylegan2.py:tiny --workdir runs/tiny --config.total_steps=50

`--config PATH[:ARG]` loads `get_config(ARG)` from the file PATH (or from jgan's packaged
configs by name, e.g. `stylegan2:tiny`); every `--config.a.b=VALUE` then overrides one field,
VALUE read as a Python literal ((0.0, 0.99), 1e-3, True) and as text for text fields.
"""

import ast
import importlib
import importlib.util
import os
import sys

from jgan.errors import InputError

ACCEPTS_EXTRA_ARGS = True
"""`jgan` passes the arguments it does not know (the `--config.*` overrides) to this command."""

_PREFIX = "--config."
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def add_parser(parser):
    parser.add_argument(
        "--config", required=True, help="config file PATH[:ARG], e.g. configs/stylegan2.py:tiny"
    )
    parser.add_argument("--workdir", required=True, help="run directory (resumed if it exists)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="multi-host run: call jax.distributed.initialize() first",
    )
    parser.epilog = "Override any config field with --config.FIELD=VALUE (e.g. --config.seed=1)."


def load_config(spec):
    """The ConfigDict of 'PATH[:ARG]': `get_config(ARG)` of the python file PATH, or of the
    packaged config `jgan.configs.NAME` when PATH is not a file."""
    path, _, arg = spec.partition(":")
    if os.path.isfile(path):
        module_spec = importlib.util.spec_from_file_location("_jgan_config", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        name = os.path.splitext(os.path.basename(path))[0]
        try:
            module = importlib.import_module(f"jgan.configs.{name}")
        except ImportError:
            raise InputError(f"no config file {path!r} (nor a packaged config {name!r})") from None
    if not hasattr(module, "get_config"):
        raise InputError(f"{path} defines no get_config()")
    try:
        return module.get_config(arg) if arg else module.get_config()
    except ValueError as error:
        raise InputError(str(error)) from error


def _parse_value(text, kind):
    if kind is bool:
        if text.lower() not in _BOOLEANS:
            raise InputError(f"expected true or false; got {text!r}")
        return _BOOLEANS[text.lower()]
    if text in ("None", "none", "null"):
        return None
    if kind is str:
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config, args):
    """Applies ['--config.a.b=VALUE' or '--config.a.b', 'VALUE', ...] to `config` in place."""
    args = list(args)
    while args:
        token = args.pop(0)
        if not token.startswith(_PREFIX):
            raise InputError(
                f"unknown argument {token!r}; overrides look like --config.FIELD=VALUE"
            )
        name, sep, text = token[len(_PREFIX) :].partition("=")
        if not sep:
            if not args:
                raise InputError(f"{token} needs a value")
            text = args.pop(0)
        *parents, field = name.split(".")
        node = config
        for part in parents:
            node = node.get(part) if hasattr(node, "get") else None
        if not hasattr(node, "get_type") or field not in node:
            raise InputError(f"the config has no field {name!r}")
        try:
            node[field] = _parse_value(text, node.get_type(field))
        except TypeError as error:
            raise InputError(f"--config.{name}: {error}") from error
    return config


def run(args):
    config = apply_overrides(load_config(args.config), args.extra)
    if args.distributed:
        import jax

        jax.distributed.initialize()
    from jgan.training import train  # heavy: imported once the arguments are known good

    try:
        train(config, args.workdir, progress=not args.no_progress)
    except KeyboardInterrupt as stop:
        print(f"jgan train: {stop or 'interrupted'}", file=sys.stderr)
        raise SystemExit(130) from None
    print(f"trained {config.total_steps} steps; model in {os.path.join(args.workdir, 'model')}")
