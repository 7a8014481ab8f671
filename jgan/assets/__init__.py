"""Files jgan ships: `testbed/`, the model jgan trained on its own testbed (a jgan model
directory holding generator, encoder and factor classifier, with its MODEL_CARD.md)."""

import importlib.resources
import os

from jgan.errors import CheckpointError


def testbed_model_dir():
    """Path of the shipped testbed model directory."""
    path = importlib.resources.files(__name__) / "testbed"
    if not (path / "jgan_model.json").is_file():
        raise CheckpointError(
            f"the shipped testbed model is missing from this installation ({path}); reinstall "
            "jgan, or pass --model DIR to use a model of your own"
        )
    return os.fspath(path)
