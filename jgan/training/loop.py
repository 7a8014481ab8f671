"""The host loop every trainer shares: resume, jitted steps over the device mesh, data,
checkpoints, JSONL logs, progress, and the exported model.

A trainer (e.g. `gan.StyleGAN2Trainer`) is a hashable object with `from_config(config)`,
`init(key)` -> state, the pure `step(state, batch, key, batch_sharding=)` -> (state, metrics),
`resolution`, `batch_size` and `bundle(state)` -> `jgan.Bundle`. The loop owns everything
else. Layout of a work directory:
    config.json      the configuration of the latest start
    checkpoints/N/   orbax checkpoints (train state + data position), the newest few
    metrics.jsonl    one JSON record per `log_every` steps (means over those steps), and
                     FID/KID when evaluated
    tensorboard/     the same scalars and the sample grids as TensorBoard event files
    samples/N.png    sample grids every `sample_every` steps (see `monitor.py`)
    model/           the trained model as a jgan model directory (at the end of the run;
                     single-process runs only for now)
"""

import functools
import importlib
import json
import os
import signal
import threading
import time

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from jgan import parallel
from jgan.bundle import save_model_dir
from jgan.checkpoint import TrainCheckpoints
from jgan.data import Batches, global_batch, open_source
from jgan.errors import InputError
from jgan.training.monitor import Monitor

TRAINERS = {
    "stylegan2": ("jgan.training.gan", "StyleGAN2Trainer"),
    "trgan": ("jgan.training.trgan", "TrGANTrainer"),
    "classifier": ("jgan.training.classifier", "ClassifierTrainer"),
    "pggan": ("jgan.training.progressive", "PGGANTrainer"),
    "stylegan": ("jgan.training.progressive", "StyleGANTrainer"),
    "idinvert_encoder": ("jgan.training.encoder", "IDInvertEncoderTrainer"),
    "ghfeat": ("jgan.training.encoder", "GHFeatTrainer"),
    "residual_kd": ("jgan.training.residual_kd", "ResidualKDTrainer"),
}


def make_trainer(config):
    """The trainer `config.trainer` names, configured by `config`."""
    name = config.get("trainer")
    if name not in TRAINERS:
        raise InputError(f"config.trainer must be one of {tuple(TRAINERS)}; got {name!r}")
    module, cls = TRAINERS[name]
    return getattr(importlib.import_module(module), cls).from_config(config)


@functools.lru_cache(maxsize=16)
def compiled_init(trainer, mesh):
    """`trainer.init` jitted with its state replicated over `mesh`."""
    return jax.jit(trainer.init, out_shardings=NamedSharding(mesh, P()))


@functools.lru_cache(maxsize=16)
def compiled_step(trainer, mesh):
    """`trainer.step` jitted over `mesh`: state, key and metrics replicated, batch split on
    'data', the input state donated. Cached, so equal trainers compile once."""
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(
        functools.partial(trainer.step, batch_sharding=split),
        in_shardings=(replicated, split, replicated),
        out_shardings=replicated,
        donate_argnums=0,
    )


def run_keys(seed):
    """(init key, step key) of a run; the step key is folded with the step number inside.

    The init key uses the 'rbg' generator, which compiles the many initialisers of a model
    several times faster; the step key stays threefry, whose numbers do not depend on how the
    batch is sharded, so a step gives the same result on any number of devices.
    """
    init_seed, step_key = jax.random.split(jax.random.key(seed))
    return jax.random.key(jax.random.bits(init_seed, dtype="uint32"), impl="rbg"), step_key


def open_data(config, trainer):
    """The training source of `config.data`, checked against the model's resolution."""
    data = config.data
    if data.get("resolution") is None:
        data = data.copy_and_resolve_references()
        data.resolution = trainer.resolution
    source = open_source(data)
    if tuple(source.shape[:2]) != (trainer.resolution, trainer.resolution):
        raise InputError(
            f"the data's images are {source.shape[0]}x{source.shape[1]} but the model trains at "
            f"{trainer.resolution}x{trainer.resolution}"
        )
    return source


def _atomic_write(path, text):
    staging = f"{path}.tmp-{os.getpid()}"
    with open(staging, "w") as f:
        f.write(text)
    os.replace(staging, path)


class MetricsLog:
    """metrics.jsonl: resuming at step s drops the records past s, which the resumed run
    writes again."""

    def __init__(self, path, resume_step):
        self.path = path
        if os.path.exists(path):
            with open(path) as f:
                records = [json.loads(line) for line in f if line.strip()]
            kept = [r for r in records if r.get("step", 0) <= resume_step]
            _atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record):
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _means(pending):
    """Means over steps of each metric, NaN (steps where it was not computed) ignored."""
    stacked = jax.device_get(pending)
    means = {}
    for name in stacked[0]:
        values = np.array([m[name] for m in stacked], np.float64)
        finite = values[np.isfinite(values)]
        if finite.size:
            means[name] = float(finite.mean())
    return means


def _is_intact(state):
    return not any(getattr(x, "is_deleted", lambda: False)() for x in jax.tree.leaves(state))


class _StopRequests:
    """SIGTERM and Ctrl-C while training (main thread only) ask the loop to stop after the step
    in flight, so the state it saves is never one whose buffers a half-dispatched step has
    donated; a second request stops at once."""

    def __enter__(self):
        self.requested, self.previous = False, {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._request)
        return self

    def _request(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def train(config, workdir, *, mesh=None, progress=True):
    """Trains as `config` says in `workdir`, resuming from its latest checkpoint.

    Runs until `config.total_steps`; saves a checkpoint every `config.checkpoint_every` steps
    and when the run ends or is interrupted (Ctrl-C, SIGTERM: the interrupt is re-raised after
    saving), and writes the model directory `workdir/model` when a single-process run
    completes. Returns (trainer, final state). `mesh` defaults to all devices.
    """
    mesh = parallel.data_mesh() if mesh is None else mesh
    trainer = make_trainer(config)
    total, batch_size = int(config.total_steps), trainer.batch_size
    if total < 0:
        raise InputError(f"total_steps must be >= 0; got {total}")
    if batch_size % mesh.size:
        raise InputError(
            f"batch_size ({batch_size}) must be a multiple of the devices ({mesh.size})"
        )
    source = open_data(config, trainer)
    workdir = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
    os.makedirs(workdir, exist_ok=True)
    leader = jax.process_index() == 0
    init_key, step_key = run_keys(config.seed)
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    monitor = Monitor(trainer, config, workdir, mesh, source, leader=leader)  # checks FID setup

    checkpoints = TrainCheckpoints(
        os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints
    )
    if checkpoints.latest_step() is not None:
        like = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
            jax.eval_shape(trainer.init, init_key),
        )
        state, meta = checkpoints.restore(like)
        position = meta["data_position"]
    else:
        state, position = compiled_init(trainer, mesh)(init_key), 0
    start = int(state.step)

    def data_position(step):
        return position + (step - start) * batch_size

    if leader:
        _atomic_write(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
    log = MetricsLog(os.path.join(workdir, "metrics.jsonl"), start) if leader else None

    step_fn = compiled_step(trainer, mesh)
    batches = Batches(
        source,
        batch_size,
        seed=config.seed,
        shuffle=config.data.get("shuffle", True),
        mirror=config.data.get("mirror", False),
        position=position,
    )
    bar = tqdm(
        total=total * batch_size,
        initial=start * batch_size,
        unit="img",
        unit_scale=True,
        desc="train",
        disable=not (progress and leader),
    )
    pending, last_time, last_step = [], time.perf_counter(), start
    interrupted = False
    try:
        with _StopRequests() as stop:
            for step in range(start, total):
                batch = global_batch(next(batches), split)
                state, metrics = step_fn(state, batch, step_key)
                pending.append(metrics)
                bar.update(batch_size)
                done = step + 1
                evaluation = monitor.after_step(done, state)  # samples, FID: when due
                if done % config.log_every == 0 or done == total:
                    means = _means(pending)
                    now = time.perf_counter()
                    rate = (done - last_step) * batch_size / (now - last_time)
                    pending, last_time, last_step = [], now, done
                    record = {"step": done, "images": done * batch_size, "images_per_s": rate}
                    if log:
                        log.write(record | means | evaluation)
                    monitor.scalars(done, {k: v for k, v in record.items() if k != "step"} | means)
                    postfix = {k: f"{v:.3g}" for k, v in means.items() if "loss" in k}
                    bar.set_postfix({"img/s": f"{rate:.3g}"} | postfix)
                elif evaluation and log:
                    log.write({"step": done} | evaluation)
                if done % config.checkpoint_every == 0:
                    checkpoints.save(done, state, {"data_position": data_position(done)})
                if stop.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        monitor.close()
        batches.close()
        end = int(state.step) if _is_intact(state) else None
        if end is not None and end != checkpoints.latest_step():
            checkpoints.save(end, state, {"data_position": data_position(end)})
        checkpoints.close()
    if interrupted:
        raise KeyboardInterrupt(f"training stopped at step {end}; rerun to resume")
    if jax.process_count() == 1:
        save_model_dir(
            trainer.bundle(state, source=workdir), os.path.join(workdir, "model"), overwrite=True
        )
    return trainer, state
