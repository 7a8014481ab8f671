"""Layer selections as the genforce tools write them: "all", 3, [0, 1], "6-11" or "0-3,8"."""

import numbers

import numpy as np

from jgan.errors import InputError


def parse_layers(spec, num_layers):
    """Sorted, distinct layer indices in [0, num_layers) selected by `spec`.

    `spec` is "all" (or None) for every layer, an int, a sequence of ints, or a string of
    comma-separated indices and inclusive ranges ("6-11", "0-3,8"; spaces are ignored), the
    syntax of SeFa's and HiGAN's `parse_indices`. An empty selection or an index out of range
    is an InputError.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return list(range(num_layers))
    if isinstance(spec, str):
        indices = _parse_ranges(spec)
    elif isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        indices = [int(spec)]
    elif isinstance(spec, (list, tuple, range, np.ndarray)):
        indices = list(np.asarray(spec).ravel()) if isinstance(spec, np.ndarray) else list(spec)
        if not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in indices):
            raise InputError(f"layer indices must be integers; got {spec!r}")
        indices = [int(i) for i in indices]
    else:
        raise InputError(
            f"layers must be 'all', an int, a list of ints or a string like '6-11' or '0-3,8'; "
            f"got {spec!r}"
        )
    if not indices:
        raise InputError(f"the layer selection {spec!r} is empty")
    outside = sorted({i for i in indices if not 0 <= i < num_layers})
    if outside:
        raise InputError(
            f"layer indices {outside} are out of range: this model has {num_layers} layers "
            f"(0-{num_layers - 1})"
        )
    return sorted(set(indices))


def _parse_ranges(text):
    indices = []
    for part in text.replace(" ", "").split(","):
        bounds = part.split("-")
        try:
            values = [int(b) for b in bounds]
        except ValueError:
            values = []
        if len(values) == 1:
            indices.append(values[0])
        elif len(values) == 2 and values[0] <= values[1]:
            indices.extend(range(values[0], values[1] + 1))
        else:
            raise InputError(
                f"cannot read the layer selection {text!r}: expected comma-separated indices "
                "or ascending ranges such as '6-11' or '0-3,8'"
            )
    return indices
