"""Residual KD against its baselines on the testbed: test accuracy of the same model trained
without distillation, with logit KD, and split into student + assistant (end-to-end and
progressive), all guided by one teacher.

    python benchmarks/residual_kd.py --workdir runs/rkd-bench [--steps 600] [--seeds 0 1]

Trains `configs/residual_kd.py:tiny,<method>` runs under WORKDIR (the teacher first; finished
runs are reused, so an interrupted benchmark resumes) and evaluates every model on the testbed's
test split (`--test-size` images). Prints one row per method and seed, and the means.
"""

import argparse
import importlib.util
import os

import numpy as np

from jgan.data import open_source
from jgan.training.loop import train

METHODS = ("none", "kd", "residual", "progressive")
CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "residual_kd.py")


def get_config(arg):
    spec = importlib.util.spec_from_file_location("_residual_kd_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def run(method, workdir, seed, steps, teacher=None):
    """(trainer, final state) of one tiny run of `method`, trained (or resumed) in `workdir`."""
    config = get_config(f"tiny,{method}")
    config.seed = seed
    config.total_steps = steps * (2 if method == "progressive" else 1)
    config.checkpoint_every = config.total_steps
    if teacher:
        config.teacher = teacher
    return train(config, workdir, progress=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()

    test = open_source(dict(source="testbed", split="test", size=args.test_size, resolution=32))
    trainer, state = run("teacher", os.path.join(args.workdir, "teacher"), 0, args.steps)
    teacher_dir = os.path.join(args.workdir, "teacher", "model")
    print(f"teacher            test accuracy {trainer.evaluate(state, test)['accuracy']:.4f}")
    results = {}
    for method in args.methods:
        for seed in args.seeds:
            workdir = os.path.join(args.workdir, f"{method}-{seed}")
            trainer, state = run(method, workdir, seed, args.steps, teacher_dir)
            scores = trainer.evaluate(state, test)
            results.setdefault(method, []).append(scores)
            extra = (
                f"  (student alone {scores['student_accuracy']:.4f}; feature residual "
                f"|F_T-F_S|^2 {scores['student_gap']:.4f} -> |F_T-F_S-F_A|^2 "
                f"{scores['combined_gap']:.4f})"
                if "student_accuracy" in scores
                else ""
            )
            print(f"{method:12s} seed {seed}  test accuracy {scores['accuracy']:.4f}{extra}")
    print("mean over seeds:")
    for method, scores in results.items():
        mean = np.mean([s["accuracy"] for s in scores])
        print(f"  {method:12s} {mean:.4f}")


if __name__ == "__main__":
    main()
