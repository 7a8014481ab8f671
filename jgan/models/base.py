"""What every jgan generator and discriminator offers, whatever its architecture."""

from typing import ClassVar

from flax import nnx

from jgan.errors import InputError


class ConfiguredModule(nnx.Module):
    """A module that remembers the constructor arguments that rebuild it.

    They are kept as a sorted tuple of items (hashable, so the module's graph definition can be
    a static argument of `jax.jit`) and read back as the dict `config`.
    """

    arch: ClassVar[str]

    def _remember_config(self, **kwargs):
        self._config = tuple(sorted((k, _frozen(v)) for k, v in kwargs.items()))

    @property
    def config(self):
        """Constructor arguments, JSON-serialisable."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._config}


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


class Generator(ConfiguredModule):
    """A generator: `generate(codes, space=...)` returns a dict with 'image' (NHWC).

    Style-based generators also return 'w' and 'wp'. Subclasses list the latent spaces they
    accept in `latent_spaces`.
    """

    latent_spaces: ClassVar[tuple[str, ...]] = ("z",)


class Discriminator(ConfiguredModule):
    """A discriminator: `__call__(images, label=None)` returns logits."""


def channel_table(channels, num_blocks):
    """`channels` (feature maps per resolution, 4x4 first) checked as a tuple, or None.

    Converted checkpoints whose widths were set by hand (interfacegan's hard-coded tables) do
    not follow min(fmaps_base // res, fmaps_max); such a table then replaces the formula.
    """
    if channels is None:
        return None
    channels = tuple(channels)
    if len(channels) != num_blocks or not all(
        isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels
    ):
        raise InputError(
            f"channels must list {num_blocks} positive integers (one per resolution, 4x4 "
            f"first); got {channels!r}"
        )
    return channels
