"""generate-data throughput against the bare jitted generator + predictor it is built on.

The difference is what the pipeline adds: z sampling, writing memory-mapped .npy files,
progress saves and the HTML preview. Random-weight StyleGAN2 (narrow by default, so the
pipeline's own cost shows; pass --fmaps-max 512 for the official width), mean-colour predictor.

    python benchmarks/generate_data.py [--resolution 32] [--fmaps-max 64] [--num 8192]
"""

import argparse
import os
import sys
import tempfile
import time

import jax
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from common import median_seconds  # noqa: E402

from jgan.analysis.generate import generate_data  # noqa: E402
from jgan.analysis.predictors import mean_color  # noqa: E402
from jgan.models.stylegan2 import StyleGAN2Generator  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--fmaps-max", type=int, default=64)
    parser.add_argument("--num", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    generator = StyleGAN2Generator(args.resolution, fmaps_max=args.fmaps_max, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(generator)

    @jax.jit
    def bare(state, z):
        return mean_color(nnx.merge(graphdef, state).generate(z, trunc_psi=0.7)["image"])

    def bare_loop():
        """The same number of batches, no sampling and no files: the rate to compare with."""
        z = jax.random.normal(jax.random.key(0), (args.batch_size, 512))
        for _ in range(args.num // args.batch_size):
            scores = jax.block_until_ready(bare(state, z))
        return scores

    bare_rate = args.num / median_seconds(bare_loop, repeats=1)
    with tempfile.TemporaryDirectory() as root:
        options = {"predictor": mean_color, "batch_size": args.batch_size, "trunc_psi": 0.7}
        generate_data(generator, os.path.join(root, "warmup"), num=args.batch_size, **options)
        start = time.perf_counter()
        generate_data(generator, os.path.join(root, "run"), num=args.num, **options)
        seconds = time.perf_counter() - start
    rate = args.num / seconds
    print(f"devices: {jax.devices()}")
    print(
        f"StyleGAN2 {args.resolution}px, fmaps_max {args.fmaps_max}, batch {args.batch_size}, "
        "mean-colour predictor:"
    )
    print(f"  bare jitted generator + predictor: {bare_rate:.1f} samples/s")
    print(f"  generate_data, {args.num} samples (z, w, scores to .npy): {rate:.1f} samples/s")
    print(f"  = {rate / bare_rate:.0%} of the bare rate")


if __name__ == "__main__":
    main()
