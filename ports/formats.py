"""One entry point for every foreign checkpoint file: read it safely, recognise its format,
and build the jgan modules it holds."""

import os

from jgan.errors import CheckpointError
from jgan.ports import genforce, vgg
from jgan.ports.torch_pickle import read_torch_file


def read_checkpoint(path, **overrides):
    """Modules of a foreign checkpoint: dict with arch, generator, generator_raw, discriminator."""
    path = os.fspath(path)
    obj = read_torch_file(path)
    if genforce.is_genforce(obj):
        return genforce.read(obj, path, **overrides)
    elif vgg.is_vgg(obj):
        return vgg.read(obj, path, **overrides)
    top = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(
        f"{path}: a PyTorch file of no format jgan knows (top level: {top}); jgan reads genforce "
        "model-zoo and training checkpoints ({'generator', 'discriminator', "
        "'generator_smooth'} or {'models': ...})"
    )
