"""StyleGAN2 training step at 256 px with the official channels (config F), batch 8.

Reports, on the default devices:
  main step   G and D logistic losses, Adam, w_avg and EMA updates (no regulariser due):
              images/s, and its FLOP/s (XLA's cost analysis of the compiled step) as a
              fraction of a float32 matmul and of a plain 3x3 conv measured in the same run;
  cycle       the mean over one 16-step cycle of the lazily regularised schedule (path length
              on 4 of the 16 steps, R1 on 1): images/s as training actually runs.

    python benchmarks/train_step.py [--batch 8] [--resolution 256] [--no-cycle]
"""

import argparse
import os
import sys
import time

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, os.path.dirname(__file__))
from common import (  # noqa: E402
    compiled_flops,
    conv_flops_per_second,
    matmul_flops_per_second,
    median_seconds,
)

from jgan import parallel  # noqa: E402
from jgan.configs.stylegan2 import get_config  # noqa: E402
from jgan.data import global_batch  # noqa: E402
from jgan.training.loop import compiled_init, compiled_step, make_trainer, run_keys  # noqa: E402


def setup(config, mesh):
    trainer = make_trainer(config)
    init_key, step_key = run_keys(0)
    state = compiled_init(trainer, mesh)(init_key)
    res = trainer.resolution
    images = np.random.default_rng(0).integers(0, 256, (trainer.batch_size, res, res, 3), np.uint8)
    batch = global_batch({"image": images}, NamedSharding(mesh, P("data")))
    return trainer, state, batch, step_key


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-cycle", action="store_true", help="skip the 16-step cycle")
    args = parser.parse_args()

    config = get_config()
    config.batch_size = args.batch
    config.generator.resolution = config.discriminator.resolution = args.resolution
    mesh = parallel.data_mesh()
    print(f"devices: {jax.devices()}")
    matmul, conv = matmul_flops_per_second(), conv_flops_per_second()
    print(f"baseline float32 matmul 2048^2: {matmul / 1e9:.1f} GFLOP/s")
    print(f"baseline plain 3x3 conv 64x64x256: {conv / 1e9:.1f} GFLOP/s")

    # The main step alone: the same trainer with both regularisers off.
    main_config = config.copy_and_resolve_references()
    main_config.loss.pl_weight = main_config.loss.r1_gamma = 0.0
    trainer, state, batch, key = setup(main_config, mesh)
    step = compiled_step(trainer, mesh)
    start = time.perf_counter()
    flops = compiled_flops(step, state, batch, key)
    print(f"StyleGAN2 {args.resolution}px training step, batch {args.batch}:")
    print(f"  compile (main step): {time.perf_counter() - start:.0f} s")

    holder = [state]  # the state is donated, so each timed call feeds the next one

    def timed():
        holder[0] = step(holder[0], batch, key)[0]
        return holder[0]

    seconds = median_seconds(timed, repeats=args.repeats)
    rate = flops / seconds
    print(
        f"  main step: {seconds:.2f} s, {args.batch / seconds:.2f} images/s, "
        f"{flops / args.batch / 1e9:.1f} GFLOP/image, {rate / 1e9:.1f} GFLOP/s = "
        f"{rate / matmul:.0%} of matmul, {rate / conv:.0%} of conv"
    )
    if args.no_cycle:
        return

    trainer, state, batch, key = setup(config, mesh)
    step = compiled_step(trainer, mesh)
    start = time.perf_counter()
    state = jax.block_until_ready(step(state, batch, key)[0])  # step 0: compiles, both regs
    print(f"  compile + first step (full schedule): {time.perf_counter() - start:.0f} s")
    cycle = config.loss.r1_interval
    start = time.perf_counter()
    for _ in range(cycle):
        state = step(state, batch, key)[0]
    jax.block_until_ready(state)
    seconds = (time.perf_counter() - start) / cycle
    print(
        f"  {cycle}-step cycle (steps 1-{cycle}: path length on {cycle // 4}, R1 on 1): "
        f"{seconds:.2f} s/step, {args.batch / seconds:.2f} images/s"
    )


if __name__ == "__main__":
    main()
