"""Timing helpers for the benchmarks: medians of repeated runs and hardware baselines."""

import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax


def median_seconds(fn, *args, repeats=5, warmup=1):
    """Median wall time of `fn(*args)` (outputs blocked on), after `warmup` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compiled_flops(jitted, *args):
    """FLOPs of one call according to XLA's cost analysis of the compiled function."""
    analysis = jitted.lower(*args).compile().cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0]
    return float(analysis["flops"])


def matmul_flops_per_second(n=2048):
    """Achieved float32 matmul rate (FLOP/s) on the default device."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    return 2 * n**3 / median_seconds(f, a)


def conv_flops_per_second(batch=1, size=64, channels=256):
    """Achieved float32 rate (FLOP/s) of a plain 3x3 NHWC convolution."""
    x = jax.random.normal(jax.random.key(0), (batch, size, size, channels), jnp.float32)
    w = jax.random.normal(jax.random.key(1), (3, 3, channels, channels), jnp.float32)
    f = jax.jit(
        lambda x, w: lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    )
    return 2 * batch * size * size * 9 * channels * channels / median_seconds(f, x, w)
