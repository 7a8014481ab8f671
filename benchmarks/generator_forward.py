"""StyleGAN2 generator forward at 256 px with the official channels (random weights).

Reports images/s and the achieved FLOP/s (XLA's cost analysis of the compiled forward) as a
fraction of a float32 matmul and of a plain 3x3 conv measured in the same run.

    python benchmarks/generator_forward.py [--resolution 256] [--batches 1 8] [--grouped]
"""

import argparse
import os
import sys

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from common import (  # noqa: E402
    compiled_flops,
    conv_flops_per_second,
    matmul_flops_per_second,
    median_seconds,
)

from jgan.models.stylegan2 import StyleGAN2Generator  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--grouped", action="store_true", help="official grouped-conv path")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    generator = StyleGAN2Generator(args.resolution, fused_modulate=args.grouped, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(generator)

    @jax.jit
    def forward(state, z):
        return nnx.merge(graphdef, state).generate(z)["image"]

    matmul = matmul_flops_per_second()
    conv = conv_flops_per_second()
    print(f"devices: {jax.devices()}")
    print(f"baseline float32 matmul 2048^2: {matmul / 1e9:.1f} GFLOP/s")
    print(f"baseline plain 3x3 conv 64x64x256: {conv / 1e9:.1f} GFLOP/s")
    path = "grouped" if args.grouped else "non-grouped"
    print(f"StyleGAN2 {args.resolution}px forward ({path} modulated conv):")
    for batch in args.batches:
        z = jax.random.normal(jax.random.key(batch), (batch, 512))
        flops = compiled_flops(forward, state, z)
        seconds = median_seconds(forward, state, z, repeats=args.repeats)
        rate = flops / seconds
        print(
            f"  batch {batch}: {batch / seconds:.2f} images/s, "
            f"{flops / batch / 1e9:.1f} GFLOP/image, "
            f"{rate / 1e9:.1f} GFLOP/s = {rate / matmul:.0%} of matmul, {rate / conv:.0%} of conv"
        )
    np.asarray(forward(state, z))  # keep the last output alive until here


if __name__ == "__main__":
    main()
