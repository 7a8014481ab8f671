"""Orbax wrapper: pytrees of arrays saved and restored atomically, and step-numbered training
checkpoints."""

import os

import jax
import numpy as np

from jgan.errors import CheckpointError


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


class TrainCheckpoints:
    """Step-numbered training checkpoints under `directory` (an orbax CheckpointManager).

    Each holds a pytree `state` and a JSON `meta` dict (e.g. the data position). A step is
    committed by renaming its temporary directory, so a run killed while saving leaves the
    previous checkpoint as the latest; the newest `keep` are kept. Saving is asynchronous: the
    arrays are copied to host memory before `save` returns, and `close` waits for the writes.
    """

    def __init__(self, directory, *, keep=3):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        }
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=handlers
        )

    def latest_step(self):
        """The newest committed step, or None."""
        return self._manager.latest_step()

    def all_steps(self):
        return sorted(self._manager.all_steps())

    def save(self, step, state, meta):
        """Starts writing checkpoint `step` (replacing nothing: each step is saved once)."""
        args = self._ocp.args
        self._manager.save(
            int(step),
            args=args.Composite(state=args.StandardSave(state), meta=args.JsonSave(meta)),
            force=True,
        )

    def restore(self, like, step=None):
        """(state, meta) of checkpoint `step` (the latest by default); `like` gives the state's
        structure, shapes, dtypes and shardings (arrays or jax.ShapeDtypeStruct)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory} holds no checkpoint")
        self._check_matches(step, like)
        args = self._ocp.args
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=_sharding(x)), like
        )
        try:
            restored = self._manager.restore(
                step,
                args=args.Composite(state=args.StandardRestore(target), meta=args.JsonRestore()),
            )
        except Exception as error:  # orbax raises many types for a mismatched tree
            raise CheckpointError(
                f"cannot restore step {step} from {self.directory}: {error}. Was it written "
                "with another model or training configuration?"
            ) from error
        return restored["state"], restored["meta"]

    def _check_matches(self, step, like):
        """Raises CheckpointError naming the leaves where checkpoint `step` and `like` differ."""
        stored = jax.tree.leaves(self._manager.item_metadata(step)["state"].tree)
        stored = {m.name: tuple(m.shape) for m in stored}
        wanted = {
            _leaf_name(path): tuple(np.shape(x)) for path, x in jax.tree.leaves_with_path(like)
        }
        problems = [f"missing {n}" for n in sorted(wanted.keys() - stored.keys())]
        problems += [f"unexpected {n}" for n in sorted(stored.keys() - wanted.keys())]
        problems += [
            f"{n} has shape {stored[n]}, expected {wanted[n]}"
            for n in sorted(wanted.keys() & stored.keys())
            if stored[n] != wanted[n]
        ]
        if problems:
            shown = "; ".join(problems[:4]) + (
                f"; and {len(problems) - 4} more" * (len(problems) > 4)
            )
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} does not match: {shown}. Was it written "
                "with another model or training configuration?"
            )

    def close(self):
        """Waits for pending writes and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def _leaf_name(path):
    """A pytree path as orbax names stored leaves: keys, attributes and indices joined by '.'."""
    return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _sharding(x):
    return getattr(x, "sharding", None)
