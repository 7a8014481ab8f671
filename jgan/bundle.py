"""What a model file holds, and jgan's own model directories.

A jgan model directory is `jgan_model.json` (architecture and the constructor arguments of
each module, enough to rebuild them) plus `params/`, an orbax checkpoint of their state. The
classes of the generators and the discriminator follow from the bundle's `arch`; every
module's own `arch` is recorded too ('arches'), which names the class of an encoder or
perceptual network.
"""

import dataclasses
import json
import os
import shutil
import tempfile

from flax import nnx

from jgan import checkpoint
from jgan.errors import CheckpointError, InputError
from jgan.models.registry import build_abstract, model_classes, module_class

MANIFEST = "jgan_model.json"
FORMAT = "jgan-model"
VERSION = 1
ROLES = ("generator", "generator_raw", "discriminator", "encoder", "perceptual", "classifier")
GAN_ROLES = {"generator": 0, "generator_raw": 0, "discriminator": 1}
"""Roles whose class is `model_classes(arch)[index]`; the others use `module_class(arch)`."""


@dataclasses.dataclass
class Bundle:
    """The modules of one model file; fields a file does not hold are None."""

    arch: str
    generator: nnx.Module | None = None
    generator_raw: nnx.Module | None = None
    discriminator: nnx.Module | None = None
    encoder: nnx.Module | None = None
    perceptual: nnx.Module | None = None
    classifier: nnx.Module | None = None
    source: str = ""

    @property
    def config(self):
        """Architecture and constructor arguments of every module present."""
        modules = {role: getattr(self, role) for role in ROLES}
        return {
            "arch": self.arch,
            "arches": {role: m.arch for role, m in modules.items() if m is not None},
            **{role: None if m is None else m.config for role, m in modules.items()},
            "source": self.source,
        }


def load(path, **overrides):
    """Loads a jgan model directory or any supported foreign checkpoint file.

    `overrides` take the original constructor argument names (resolution, z_space_dim,
    fused_scale, architecture, ...) for what a foreign file cannot tell.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if overrides:
            raise InputError(f"{path} is a jgan model directory; it takes no overrides")
        return read_model_dir(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no such model file or directory: {path}")
    from jgan.ports.formats import read_checkpoint

    modules = read_checkpoint(path, **overrides)
    return Bundle(source=path, **modules)


def save_model_dir(bundle, path, *, overwrite=False):
    """Writes `bundle` as a jgan model directory at `path`, atomically (all or nothing)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise InputError(f"{path} exists; choose a new path or pass overwrite=True")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".jgan-", dir=parent)
    try:
        modules = {r: getattr(bundle, r) for r in ROLES if getattr(bundle, r) is not None}
        checkpoint.save_tree(
            os.path.join(staging, "params"),
            {r: nnx.to_pure_dict(nnx.state(m)) for r, m in modules.items()},
        )
        manifest = {"format": FORMAT, "version": VERSION, **bundle.config}
        with open(os.path.join(staging, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_model_dir(path):
    """Rebuilds the modules of a jgan model directory."""
    manifest_path = os.path.join(path, MANIFEST)
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not a jgan model directory ({error})") from error
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CheckpointError(
            f"{manifest_path}: expected format {FORMAT!r} version {VERSION}, got "
            f"{manifest.get('format')!r} version {manifest.get('version')!r}"
        )
    arch = manifest["arch"]
    arches = manifest.get("arches", {})

    def role_class(role):
        role_arch = arches.get(role, arch)
        if role in GAN_ROLES:
            return model_classes(role_arch)[GAN_ROLES[role]]
        return module_class(role_arch)

    modules = {
        role: build_abstract(role_class(role), manifest[role])
        for role in ROLES
        if manifest.get(role) is not None
    }
    like = {role: nnx.to_pure_dict(nnx.state(m)) for role, m in modules.items()}
    try:
        restored = checkpoint.restore_tree(os.path.join(path, "params"), like)
    except Exception as error:  # orbax raises many types for a damaged directory
        raise CheckpointError(f"{path}: cannot read its parameters ({error})") from error
    for role, module in modules.items():
        state = nnx.state(module)
        nnx.replace_by_pure_dict(state, restored[role])
        nnx.update(module, state)
    return Bundle(arch=arch, source=manifest.get("source", ""), **modules)
