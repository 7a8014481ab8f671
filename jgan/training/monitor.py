"""What a training run reports besides its losses: TensorBoard scalars, sample grids and FID/KID.

Generic over trainers: a trainer that offers `samples(state, key)` (pure and jittable: NHWC
images in [-1, 1] from the generator users get, e.g. the EMA generator) gets sample grids and
FID; for one that does not, both are no-ops. Config fields (all optional):
    sample_every        steps between grids of samples from one fixed key (0: never), saved
                        as workdir/samples/NNNNNNNN.png and in TensorBoard
    fid_every           steps between FID/KID evaluations (0: never)
    fid.inception_path  pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default
                        $JGAN_INCEPTION; checked when the run starts)
    fid.num_images      generated images per evaluation and real images in the reference
    fid.reference       the real images' statistics cache (default workdir/fid_reference.npz)
    fid.kid_subsets     KID subsets of 1000 (0: FID only)
Every process samples (the generator runs over the whole mesh); process 0 alone runs
InceptionV3 on its local devices and writes files.
"""

import functools
import math
import os

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jgan import metrics
from jgan.training.tensorboard import SummaryWriter
from jgan.viz.images import make_grid, save_png, to_uint8

SAMPLE_KEY, FID_KEY = 0x5A4D, 0xF1D


@functools.lru_cache(maxsize=16)
def compiled_samples(trainer, mesh):
    """`trainer.samples` jitted with state, key and images replicated over `mesh`."""
    replicated = NamedSharding(mesh, P())
    return jax.jit(trainer.samples, in_shardings=(replicated, replicated), out_shardings=replicated)


class Monitor:
    """Writes TensorBoard events, sample grids and FID/KID for the host loop."""

    def __init__(self, trainer, config, workdir, mesh, source, *, leader):
        self.leader, self.workdir, self.source = leader, workdir, source
        has_samples = callable(getattr(trainer, "samples", None))
        self.sample_every = int(config.get("sample_every", 0) or 0) * has_samples
        self.fid_every = int(config.get("fid_every", 0) or 0) * has_samples
        self.seed, self.chunk = config.seed, trainer.batch_size
        self.samples = compiled_samples(trainer, mesh) if has_samples else None
        fid = config.get("fid") or {}
        self.num_images = int(fid.get("num_images", 10_000))
        self.kid_subsets = int(fid.get("kid_subsets", 0))
        self.reference_path = fid.get("reference") or os.path.join(workdir, "fid_reference.npz")
        self.inception = None
        if self.fid_every and leader:
            from jgan.ports.inception import load_inception  # fails now, not mid-run

            self.inception = load_inception(fid.get("inception_path"))
        self.board = SummaryWriter(os.path.join(workdir, "tensorboard")) if leader else None

    def scalars(self, step, values):
        if self.board:
            self.board.scalars(step, values)

    def after_step(self, step, state):
        """Grid and FID when due; returns the FID/KID record to log ({} when none)."""
        if self.sample_every and step % self.sample_every == 0:
            self._sample_grid(step, state)
        if self.fid_every and step % self.fid_every == 0:
            return self._fid(step, state)
        return {}

    def _sample_grid(self, step, state):
        key = jax.random.fold_in(jax.random.key(self.seed), SAMPLE_KEY)
        images = jax.device_get(self.samples(state, key))
        if not self.leader:
            return
        grid = make_grid(to_uint8(images))
        os.makedirs(os.path.join(self.workdir, "samples"), exist_ok=True)
        save_png(os.path.join(self.workdir, "samples", f"{step:08d}.png"), grid)
        self.board.image(step, "samples", grid)

    def _generated(self, state):
        key = jax.random.fold_in(jax.random.key(self.seed), FID_KEY)
        first = jax.device_get(self.samples(state, jax.random.fold_in(key, 0)))
        yield first
        for i in range(1, math.ceil(self.num_images / len(first))):
            yield jax.device_get(self.samples(state, jax.random.fold_in(key, i)))

    def _reals(self):
        count = min(self.num_images, len(self.source))
        for start in range(0, count, self.chunk):  # batches shaped as the generated ones
            yield self.source.images(np.arange(start, min(start + self.chunk, count)))

    def _fid(self, step, state):
        generated = self._generated(state)
        if not self.leader:
            for _ in generated:  # every process takes part in the sharded sampling
                pass
            return {}
        reference = metrics.reference_statistics(
            self.inception, self._reals, self.reference_path, keep_features=self.kid_subsets > 0
        )
        features = metrics.inception_features(self.inception, generated)[: self.num_images]
        record = {"fid": metrics.frechet_distance(*metrics.statistics(features),
                                                  reference["mu"], reference["sigma"])}  # fmt: skip
        if self.kid_subsets and "features" in reference:
            record["kid"], record["kid_std"] = metrics.kid(
                features, reference["features"], subsets=self.kid_subsets
            )
        self.scalars(step, record)
        return record

    def close(self):
        if self.board:
            self.board.close()
