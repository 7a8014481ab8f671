"""Orbax wrapper: saving and restoring pytrees of arrays atomically."""

import os

import jax
import numpy as np


def save_tree(path, tree):
    """Writes a pytree of arrays to the new directory `path` (orbax writes it atomically)."""
    import orbax.checkpoint as ocp  # heavy: imported when first needed, not with jgan

    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.abspath(path), tree)


def restore_tree(path, like):
    """Reads the pytree saved at `path` with the structure, shapes and dtypes of `like`."""
    import orbax.checkpoint as ocp

    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), like)
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(os.path.abspath(path), target)
