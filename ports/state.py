"""Assigning a flat table of named tensors to a jgan module, with nothing left unaccounted for.

Module attribute paths follow the official PyTorch names, so a converted state dict maps onto
`'.'.join(path)` directly; every tensor of the source must be used or explicitly ignored.
"""

import re
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jgan.errors import CheckpointError

_MAX_LISTED = 12


def module_tensors(module):
    """{dotted path: variable} of every variable (parameters and buffers) in `module`."""
    return {".".join(map(str, path)): var for path, var in nnx.to_flat_state(nnx.state(module))}


def _listing(keys):
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


def load_state(module, tensors: Mapping, *, ignored: Mapping = None, source="checkpoint"):
    """Assigns `tensors` ({dotted name: array}) to the same-named variables of `module`.

    `ignored` maps regular expressions (full match) of source keys that the module does not
    hold (e.g. FIR kernels it rebuilds itself) to the value they must have, to a predicate
    `f(value) -> bool` (for buffers whose shape varies, like per-channel blur kernels), or to
    None to skip the check. Missing, unexpected and mis-shaped tensors are reported together in
    one `CheckpointError`; nothing is assigned unless everything matches.
    """
    ignored = dict(ignored or {})
    targets = module_tensors(module)
    problems = []
    missing = set(targets) - set(tensors)
    unexpected, bad_values = [], []
    for key, value in tensors.items():
        if key in targets:
            continue
        rule = next((p for p in ignored if re.fullmatch(p, key)), None)
        if rule is None:
            unexpected.append(key)
            continue
        expected = ignored[rule]
        if callable(expected):
            valid = bool(expected(np.asarray(value)))
        else:
            valid = expected is None or (
                np.shape(value) == np.shape(expected) and np.allclose(value, expected, atol=1e-6)
            )
        if not valid:
            bad_values.append(key)
    if missing:
        problems.append(f"missing tensors: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_listing(unexpected)}")
    if bad_values:
        problems.append(
            f"fixed buffers with non-standard values (a custom filter or kernel that jgan's "
            f"architecture does not support): {_listing(bad_values)}"
        )
    mis_shaped = [
        f"{key} {tuple(np.shape(tensors[key]))} (expected {tuple(var.shape)})"
        for key, var in targets.items()
        if key in tensors and tuple(np.shape(tensors[key])) != tuple(var.shape)
    ]
    if mis_shaped:
        problems.append(f"wrong shapes: {'; '.join(sorted(mis_shaped)[:_MAX_LISTED])}")
    non_finite = [
        key for key in targets if key in tensors and not np.all(np.isfinite(tensors[key]))
    ]
    if non_finite:
        problems.append(f"tensors with NaN or inf values: {_listing(non_finite)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match the {type(module).__name__} built for it: "
            + "; ".join(problems)
        )
    nnx.update(
        module,
        nnx.from_flat_state(
            [
                (tuple(key.split(".")), var.replace(jnp.asarray(tensors[key], var.dtype)))
                for key, var in targets.items()
            ]
        ),
    )
    return module
