"""Deterministic, resumable, per-process batches of a source.

The source is read as one endless stream, epoch after epoch, each epoch in the order of a
permutation drawn from (seed, epoch). Global batch b holds stream positions [b*B, (b+1)*B);
process k of P reads its contiguous slice of B/P of them. Whether a sample is mirrored is a
coin drawn from (seed, epoch) too. So a batch is a pure function of (seed, position): saving
the position with a checkpoint resumes the exact same stream, on any number of processes
that divides the batch. Labels, when the source has them, travel with their images
(mirroring leaves them as they are).
"""

import collections
import concurrent.futures

import jax
import numpy as np

from jgan.data.sources import read_examples
from jgan.errors import InputError


class Batches:
    """Iterator of local batches {'image': uint8 (B / process_count, H, W, C)}, plus
    'label': {name: (B / process_count,) array} when the source has labels.

    `position` counts the samples of the global stream consumed so far; pass a checkpoint's
    value to resume. `prefetch` batches are decoded ahead by `workers` threads.
    """

    def __init__(
        self,
        source,
        batch_size,
        *,
        seed=0,
        shuffle=True,
        mirror=False,
        position=0,
        process_index=None,
        process_count=None,
        prefetch=2,
        workers=2,
    ):
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
        if batch_size < 1 or batch_size % process_count:
            raise InputError(
                f"the batch size ({batch_size}) must be a positive multiple of the number of "
                f"processes ({process_count})"
            )
        if len(source) < 1:
            raise InputError("the data source is empty")
        self.source, self.batch_size = source, batch_size
        self.seed, self.shuffle, self.mirror = seed, shuffle, mirror
        self.local_size = batch_size // process_count
        self.offset = process_index * self.local_size
        self.position = int(position)
        self.prefetch = prefetch
        self._epochs = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, workers))
        self._queue = collections.deque()

    def _epoch(self, epoch):
        """(order, flips) of one epoch; the two most recent epochs are kept."""
        if epoch not in self._epochs:
            rng = np.random.default_rng((self.seed, epoch))
            n = len(self.source)
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            flips = rng.random(n) < 0.5 if self.mirror else np.zeros(n, bool)
            self._epochs = {e: v for e, v in self._epochs.items() if e >= epoch - 1}
            self._epochs[epoch] = order, flips
        return self._epochs[epoch]

    def batch_at(self, position):
        """This process's part of the global batch that starts at stream `position`."""
        n = len(self.source)
        positions = position + self.offset + np.arange(self.local_size)
        indices, flips = np.empty(self.local_size, np.int64), np.empty(self.local_size, bool)
        for epoch in np.unique(positions // n):
            order, coins = self._epoch(int(epoch))
            mask = positions // n == epoch
            indices[mask], flips[mask] = order[positions[mask] % n], coins[positions[mask] % n]
        images, labels = read_examples(self.source, indices)
        images[flips] = images[flips, :, ::-1]
        return {"image": images} if labels is None else {"image": images, "label": labels}

    def __iter__(self):
        return self

    def __next__(self):
        if not self._queue or self._queue[0][0] != self.position:
            self._queue.clear()
        while len(self._queue) <= self.prefetch:
            start = self.position + len(self._queue) * self.batch_size
            self._queue.append((start, self._pool.submit(self.batch_at, start)))
        _, future = self._queue.popleft()
        self.position += self.batch_size
        return future.result()

    def close(self):
        """Stops the decoding threads."""
        self._queue.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def global_batch(local_batch, sharding):
    """Assembles every process's local batch into global arrays split by `sharding`."""
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
