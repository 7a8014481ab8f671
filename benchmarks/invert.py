"""IDInvert's inversion on a 256-px StyleGAN with the official channels (random weights).

The IDInvert preset: W+ codes from the encoder, Adam lr 0.01, MSE + 5e-5 * VGG16 conv4_3
(caffe) + 2.0 * ||code - E(G(code))||^2, on IDInvert's generator (non-repeated w, final tanh,
14 layers) with its released encoder design. Reports steps/s, images/s for inversions of
`--steps` steps (the preset's 100), timed over `--timed-steps` of them (all by default; the
start, encoder output and loss targets, is timed apart and added once per inversion), and the
achieved FLOP/s (XLA's cost analysis of the compiled steps) as a fraction of a float32 matmul
measured in the same run.

    python benchmarks/invert.py [--resolution 256] [--batches 1 8] [--steps 100]
"""

import argparse
import os
import sys
import time

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from common import matmul_flops_per_second  # noqa: E402

import jgan  # noqa: E402
from jgan.inversion import optimize  # noqa: E402
from jgan.models.encoders import StyleGANEncoder  # noqa: E402
from jgan.models.stylegan import StyleGANGenerator  # noqa: E402
from jgan.models.vgg import VGG16  # noqa: E402


def timed_invert(generator, images, steps, **options):
    start = time.perf_counter()
    out = jgan.invert(generator, images, steps=steps, **options)
    jax.block_until_ready(out["codes"])
    return time.perf_counter() - start


def flops_per_step(generator, images, chunk, **options):
    """FLOPs of one optimisation step of the whole batch: XLA's cost analysis of a chunk of
    steps (of the lowered program, so nothing is compiled a second time)."""
    problem = optimize._problem(
        generator,
        images,
        "idinvert",
        options["encoder"],
        options["perceptual"],
        None,
        None,
        None,
        None,
        {},
    )
    params, opt_state, targets, _ = optimize._start(
        problem.graphdefs, problem.states, *problem.inputs, settings=problem.structure
    )
    args = problem.step_args(params, opt_state, targets)
    options = problem.step_options(chunk)
    analysis = optimize._steps.lower(*args, **options).cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis["flops"]) / chunk


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=100, help="steps of one inversion")
    parser.add_argument("--timed-steps", type=int, default=None, help="steps timed (default all)")
    args = parser.parse_args()
    timed = args.timed_steps or args.steps

    rngs = nnx.Rngs(0)
    generator = StyleGANGenerator(args.resolution, repeat_w=False, final_tanh=True, rngs=rngs)
    encoder = StyleGANEncoder(args.resolution, rngs=rngs)
    vgg = VGG16("caffe", rngs=rngs)
    options = dict(method="idinvert", encoder=encoder, perceptual=vgg)
    chunk = optimize._chunk_size(timed, None, False)
    matmul = matmul_flops_per_second()
    print(f"devices: {jax.devices()}")
    print(f"baseline float32 matmul 2048^2: {matmul / 1e9:.1f} GFLOP/s")
    print(
        f"IDInvert inversion, {args.resolution}px StyleGAN (official channels, "
        f"{generator.num_layers} layers), "
        f"encoder and VGG16 conv4_3; {timed} steps timed in chunks of {chunk}, images/s for "
        f"{args.steps}-step inversions:"
    )
    for batch in args.batches:
        key = jax.random.key(batch)
        images = np.asarray(jax.random.uniform(key, (batch, args.resolution, args.resolution, 3)))
        images = images * 2.0 - 1.0
        compile_start = time.perf_counter()
        timed_invert(generator, images, chunk, **options)
        compile_seconds = time.perf_counter() - compile_start
        start_only = timed_invert(generator, images, chunk, **options)
        total = timed_invert(generator, images, timed + chunk, **options)
        seconds = (total - start_only) / timed  # per step of the batch
        start = start_only - chunk * seconds  # encoder output and loss targets
        flops = flops_per_step(generator, images, chunk, **options)
        rate = flops / seconds
        print(
            f"  batch {batch}: {1 / seconds:.3f} steps/s, "
            f"{batch / (start + seconds * args.steps):.4f} images/s, "
            f"{flops / batch / 1e9:.1f} GFLOP/image/step, {rate / 1e9:.1f} GFLOP/s = "
            f"{rate / matmul:.0%} of matmul; first call (compiling) {compile_seconds:.0f} s"
        )


if __name__ == "__main__":
    main()
