"""Read NVIDIA's network pickles (stylegan2-ada-pytorch, stylegan3) without torch and without
running the Python source they embed.

NVIDIA pickles each network as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``,
where ``meta`` holds the source of the defining module, the class name and the module's
``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, ...). NVIDIA's
loader executes that source; here ``meta`` becomes a plain description instead, and the module
tree is walked for its tensors.
"""

from __future__ import annotations

import os
import reprlib
from typing import Any

import numpy as np

from jgan.errors import CheckpointError
from jgan.ports.torch_pickle import read_pickle_file

__all__ = ["is_network_pickle", "read_network_pickle"]

# Which file defined a class, told by the source that NVIDIA embeds (the pickle keeps only the
# class name): the first module whose marker occurs in the source.
_SOURCE_MARKERS = (
    ("class SynthesisInput(", "training.networks_stylegan3"),
    ("fused_modconv_default", "training.networks_stylegan2"),  # stylegan3's copy of SG2
    ("class SynthesisBlock(", "training.networks"),  # stylegan2-ada-pytorch
    ("class AugmentPipe(", "training.augment"),
)


class _PersistentObject(dict):
    """Stand-in for an object of an NVIDIA persistent class: its meta (class, source, state)."""


def _persistent_object(meta: Any) -> _PersistentObject:
    """Stand-in for torch_utils.persistence._reconstruct_persistent_obj: keeps meta, runs none."""
    if not (
        isinstance(meta, dict)
        and meta.get("type") == "class"
        and isinstance(meta.get("class_name"), str)
        and isinstance(meta.get("module_src"), str)
        and isinstance(meta.get("state"), dict)
    ):
        keys = sorted(meta)[:8] if isinstance(meta, dict) else reprlib.repr(meta)
        raise ValueError(
            f"a persistent object has the meta {keys}, not a class with module_src and state"
        )
    return _PersistentObject(meta)


_NVIDIA_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_object,
    ("dnnlib.util", "EasyDict"): dict,
    ("dnnlib", "EasyDict"): dict,
}


def _module_name(source: str) -> str | None:
    return next((module for marker, module in _SOURCE_MARKERS if marker in source), None)


def _is_plain_attribute(name: str, value: Any) -> bool:
    plain = (bool, int, float, str, type(None), np.generic)
    flat = isinstance(value, (tuple, list)) and all(isinstance(v, plain) for v in value)
    return not name.startswith("_") and name != "training" and (isinstance(value, plain) or flat)


def _plain(value: Any) -> Any:
    """EasyDicts are dicts already; numpy scalars become Python numbers, tuples stay."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _describe(obj: _PersistentObject, path: str) -> dict:
    """{"class", "init_args", "init_kwargs", "attributes", "tensors", "modules"} of one object.

    ``tensors`` maps dotted names (as torch's named_parameters/named_buffers) to arrays;
    ``modules`` maps the dotted path of each persistent submodule to its class, init kwargs and
    plain attributes (numbers, strings, flags and tuples of them, such as ``use_fp16``).
    """
    module = _module_name(obj["module_src"])
    state = obj["state"]
    tensors: dict[str, np.ndarray] = {}
    modules: dict[str, dict] = {}

    def walk(node: _PersistentObject, prefix: str) -> None:
        node_state = node["state"]
        for group in ("_parameters", "_buffers"):
            for name, tensor in (node_state.get(group) or {}).items():
                if tensor is None:
                    continue
                if not isinstance(tensor, np.ndarray):
                    raise CheckpointError(
                        f"{path}: {prefix}{name} is {type(tensor).__name__}, not a tensor"
                    )
                tensors[prefix + name] = tensor
        for name, child in (node_state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, _PersistentObject):
                raise CheckpointError(
                    f"{path}: submodule {prefix}{name} is {type(child).__name__}, not an NVIDIA "
                    "persistent module"
                )
            child_module = _module_name(child["module_src"])
            modules[prefix + name] = {
                "class": _class_path(child_module, child["class_name"]),
                "init_kwargs": _plain(child["state"].get("_init_kwargs") or {}),
                "attributes": _attributes(child["state"]),
            }
            walk(child, f"{prefix}{name}.")

    walk(obj, "")
    return {
        "class": _class_path(module, obj["class_name"]),
        "init_args": _plain(tuple(state.get("_init_args") or ())),
        "init_kwargs": _plain(state.get("_init_kwargs") or {}),
        "attributes": _attributes(state),
        "tensors": tensors,
        "modules": modules,
    }


def _class_path(module: str | None, name: str) -> str:
    return f"{module}.{name}" if module else name


def _attributes(state: dict) -> dict:
    return {k: _plain(v) for k, v in state.items() if _is_plain_attribute(k, v)}


def read_network_pickle(path: str | os.PathLike) -> dict:
    """Each top-level entry of an NVIDIA network pickle, as plain data; runs nothing from the file.

    Persistent modules (``G``, ``D``, ``G_ema``, ``augment_pipe``) become dicts with ``class``
    (e.g. "training.networks.Generator"; the module is recognised from the embedded source, and
    is absent when it is not one jgan knows), ``init_args``, ``init_kwargs`` (as given to the
    constructor), ``attributes``, ``tensors`` ({dotted name: array}) and ``modules``; other
    entries (``training_set_kwargs``, ...) are kept as plain dicts and values.
    """
    path = os.fspath(path)
    top = read_pickle_file(path, extra_globals=_NVIDIA_GLOBALS)
    if not isinstance(top, dict):
        raise CheckpointError(
            f"{path} holds {type(top).__name__}, not the dict of an NVIDIA network pickle "
            "(G, D, G_ema, ...)"
        )
    return {
        key: _describe(value, f"{path}[{key!r}]")
        if isinstance(value, _PersistentObject)
        else _plain(value)
        for key, value in top.items()
    }


def is_network_pickle(path: str | os.PathLike) -> bool:
    """Whether the file starts like a plain pickle (protocol 2+), not like a torch.save file.

    torch.save files are zip archives or begin with a protocol-2 pickle of one big integer; NVIDIA
    network pickles begin with a protocol-2..5 pickle of a dict.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError:
        return False  # the torch.save reader reports what is wrong with the path
    if len(head) < 3 or head[0] != 0x80 or head[1] < 2:
        return False
    body = head[2:]
    if body[:1] == b"\x95":  # FRAME (protocol 4+) with an 8-byte length
        body = body[9:]
    return body[:1] == b"}"  # EMPTY_DICT
