"""Variable kinds for state that is loaded and saved but never trained."""

from flax import nnx


class Buffer(nnx.Variable):
    """Non-trainable state: `w_avg`, fixed noise maps, `lod`, normalisation statistics.

    A kind of its own so optimizers (which select `nnx.Param`) and analysis never touch it.
    """
