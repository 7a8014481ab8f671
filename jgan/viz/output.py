"""Output directories written all or nothing: staged beside the target, then renamed."""

import contextlib
import os
import shutil
import tempfile

from jgan.errors import InputError


def check_new(path, overwrite=False):
    """Refuses an existing `path` unless `overwrite` (checked before any work is done)."""
    if os.path.exists(path) and not overwrite:
        raise InputError(f"{path} exists; choose a new output directory or pass overwrite")


def publish(staging, path, overwrite=False):
    """Moves the finished directory `staging` to `path`, replacing it only if `overwrite`."""
    check_new(path, overwrite)
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(staging, path)


@contextlib.contextmanager
def staged_dir(path, overwrite=False):
    """Yields a temporary directory beside `path` that becomes `path` when the block succeeds.

    On an error the staging directory is removed and `path` is left as it was. Missing parent
    directories are created.
    """
    path = os.path.abspath(os.fspath(path))
    check_new(path, overwrite)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".jgan-", dir=parent)
    try:
        yield staging
        publish(staging, path, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
