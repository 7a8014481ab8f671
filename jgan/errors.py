"""Errors jgan raises for bad input: one base class so callers can catch them all."""


class JganError(Exception):
    """Base class of every error jgan raises on bad input."""


class CheckpointError(JganError, ValueError):
    """A checkpoint file is unreadable, of an unknown format, or does not match the model."""


class InputError(JganError, ValueError):
    """An argument (codes, labels, images, options) has the wrong shape, range or value."""
