"""SeFa on a 1024-px StyleGAN2 (official channels, random weights) and InterFaceGAN's
train_boundary on 500,000 x 512 codes.

SeFa is timed end to end (reading the style weights from the module, the Gram matrix and the
eigendecomposition), for all 512 directions and for the top 5, with the Gram matmul's rate
against a plain float32 matmul. train_boundary uses the default 2% per class (7,000 training
samples per class) of synthetic codes whose scores are a noisy linear function of a known
direction; the boundary is compared with the known direction and, on a subset small enough for
it, with sklearn's SVC(kernel='linear') on the same samples.

    python benchmarks/sefa.py [--samples 500000] [--noise 1.0] [--svc-subset 1000]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import matmul_flops_per_second  # noqa: E402

from jgan.analysis import sefa, sefa_weight, train_boundary  # noqa: E402
from jgan.analysis.svm import linear_svm  # noqa: E402
from jgan.models.registry import build_abstract  # noqa: E402
from jgan.models.stylegan2 import StyleGAN2Generator  # noqa: E402
from jgan.ports.state import load_state, module_tensors  # noqa: E402


def random_stylegan2(resolution):
    """A StyleGAN2 generator with the official channels and standard normal weights."""
    generator = build_abstract(StyleGAN2Generator, {"resolution": resolution})
    rng = np.random.default_rng(0)
    tensors = {
        key: rng.standard_normal(var.shape, dtype=np.float32)
        for key, var in module_tensors(generator).items()
    }
    return load_state(generator, tensors)


def timed(fn, repeats):
    """(median wall, fastest wall, median CPU) seconds of `fn()` after one warm-up call. On a
    shared machine the wall time also counts waiting for a core; the CPU time (all threads)
    and the fastest run much less so."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return np.median(walls), np.min(walls), np.median(cpus)


def bench_sefa(resolution, repeats):
    generator = random_stylegan2(resolution)
    weight = sefa_weight(generator)
    print(f"SeFa, StyleGAN2 {resolution}px: factorized weight {weight.shape} (all layers)")
    gram_flops = 2 * weight.shape[0] ** 2 * weight.shape[1]
    _, gram, _ = timed(lambda: weight @ weight.T, repeats)
    print(
        f"  Gram matrix alone (fastest): {gram * 1e3:.1f} ms = "
        f"{gram_flops / gram / 1e9:.0f} GFLOP/s "
        f"(float32 matmul baseline {matmul_flops_per_second() / 1e9:.0f} GFLOP/s)"
    )
    for name, fn in (
        ("sefa_weight (weights from the module)", lambda: sefa_weight(generator)),
        ("sefa, all 512 directions", lambda: sefa(generator)),
        ("sefa, top 5 directions", lambda: sefa(generator, num_directions=5)),
    ):
        wall, fastest, cpu = timed(fn, repeats)
        print(
            f"  {name}: median {wall * 1e3:.1f} ms, fastest {fastest * 1e3:.1f} ms wall; "
            f"{cpu * 1e3:.1f} ms CPU"
        )


def bench_boundary(num, dim, noise, svc_subset):
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(dim)
    direction /= np.linalg.norm(direction)
    codes = rng.standard_normal((num, dim), dtype=np.float32)
    scores = codes @ direction + noise * rng.standard_normal(num)
    start, cpu = time.perf_counter(), time.process_time()
    boundary, report = train_boundary(codes, scores, return_report=True)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"train_boundary on {num} x {dim} codes: {seconds:.1f} s wall ({cpu:.1f} s CPU); "
        f"{report['train_num']} "
        f"training samples per class, validation accuracy {report['validation_accuracy']:.4f}, "
        f"remaining accuracy {report['remaining_accuracy']:.4f}, cosine to the true direction "
        f"{float(boundary[0] @ direction):.4f}"
    )
    if svc_subset:
        from sklearn import svm

        train = np.asarray(report["train_indices"])
        half = report["train_num"]
        rows = np.concatenate([train[:svc_subset], train[half : half + svc_subset]])
        labels = np.arange(len(rows)) < svc_subset
        start = time.perf_counter()
        reference = svm.SVC(kernel="linear").fit(codes[rows], labels).coef_[0]
        svc_seconds = time.perf_counter() - start
        start = time.perf_counter()
        w, _ = linear_svm(codes[rows], labels)
        ipm_seconds = time.perf_counter() - start
        cosine = w @ reference / np.linalg.norm(w) / np.linalg.norm(reference)
        print(
            f"  on {svc_subset} per class: SVC {svc_seconds:.1f} s, jgan's solver "
            f"{ipm_seconds:.2f} s, cosine {cosine:.7f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--samples", type=int, default=500_000, help="0 skips train_boundary")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=1.0, help="score noise (std)")
    parser.add_argument("--svc-subset", type=int, default=1000, help="0 skips the SVC check")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    bench_sefa(args.resolution, args.repeats)
    if args.samples:
        bench_boundary(args.samples, args.dim, args.noise, args.svc_subset)


if __name__ == "__main__":
    main()
