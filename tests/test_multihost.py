"""Multi-host training through `jax.distributed`: two processes on localhost, two emulated CPU
devices each (collectives over gloo), train the tiny StyleGAN2 for 2 steps, stop, resume from
the checkpoint the pair wrote and train 2 more; the parameters must equal a single-process run
of 4 steps on 4 devices. Each process reads only its half of every batch (`Batches` with its
process index) and `global_batch` assembles the global array across processes.

Run as a script, this file is one of the two processes:
    python tests/test_multihost.py PROCESS_ID PORT WORKDIR OUTPUT
"""

import os
import socket
import subprocess
import sys

RESOLUTION = 8
STEPS = 4


def config(total_steps):
    from jgan.cli.train import apply_overrides
    from jgan.configs.stylegan2 import get_config

    overrides = [
        f"--config.{net}.resolution={RESOLUTION}" for net in ("generator", "discriminator")
    ]
    overrides += [f"--config.data.resolution={RESOLUTION}", "--config.log_every=1"]
    overrides += ["--config.checkpoint_every=2", f"--config.total_steps={total_steps}"]
    return apply_overrides(get_config("tiny"), overrides)


def leaves(state):
    import jax

    return jax.tree.leaves(jax.device_get(state))


def worker(process_id, port, workdir, output):
    """One process of the pair: 2 steps, then resume to `STEPS`; saves the final leaves."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
    import numpy as np

    from jgan.data import Batches
    from jgan.training import train

    assert jax.device_count() == 4 and jax.local_device_count() == 2
    seen = []
    original = Batches.batch_at

    def recording(batches, position):  # what this process reads
        batch = original(batches, position)
        seen.append(batch["image"].shape[0])
        return batch

    Batches.batch_at = recording
    train(config(STEPS // 2), workdir, progress=False)
    _, state = train(config(STEPS), workdir, progress=False)
    arrays = {f"leaf{i}": x for i, x in enumerate(leaves(state))}
    np.savez(output, step=int(state.step), local_batch=max(seen), **arrays)
    jax.distributed.shutdown()


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_agree_with_one(tmp_path):
    import jax
    import numpy as np

    from jgan.checkpoint import TrainCheckpoints
    from jgan.training import train

    port, workdir = free_port(), tmp_path / "multihost"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, str(i), str(port), str(workdir), str(tmp_path / f"{i}.npz")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for i in range(2)
    ]
    try:  # the single-process reference compiles while the pair runs
        assert jax.device_count() == 4
        _, reference = train(config(STEPS), tmp_path / "single", progress=False)
        for process in processes:
            process.wait(timeout=900)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process in processes:
        assert process.returncode == 0, process.stdout.read().decode()[-3000:]
    expected = leaves(reference)
    for i in range(2):
        with np.load(tmp_path / f"{i}.npz") as result:
            assert int(result["step"]) == STEPS
            assert int(result["local_batch"]) == config(STEPS).batch_size // 2
            got = [result[f"leaf{k}"] for k in range(len(expected))]
        # Same tolerance as the 1- vs 4-device test: only the reduction order may differ.
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    # The pair wrote one checkpoint directory (process 0 commits), resumed from step 2.
    assert TrainCheckpoints(workdir / "checkpoints").all_steps() == [2, 4]
    assert not (workdir / "model").exists()  # the model directory is single-process only


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
