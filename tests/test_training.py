"""StyleGAN2 training: optimizer conventions, one step on 1 and 4 devices, real learning, a
killed run that resumes bit-exactly, the exported model, and the `jgan train` command.

Every test trains the tiny config at 8x8 (the step compiles once for the module and is shared
through `compiled_step`'s cache); 16x16 would double the compile time of each mesh.
"""

import json
import pathlib
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

import jgan
from jgan import parallel
from jgan.checkpoint import TrainCheckpoints
from jgan.cli.main import main as cli
from jgan.cli.train import apply_overrides, load_config
from jgan.configs.stylegan2 import get_config
from jgan.data import Batches, Blobs, global_batch
from jgan.errors import CheckpointError, InputError
from jgan.training import train
from jgan.training.distance import sliced_wasserstein
from jgan.training.loop import compiled_init, compiled_step, make_trainer, run_keys
from jgan.training.state import ema_beta, lazy_adam

REPO = pathlib.Path(__file__).resolve().parents[1]
RESOLUTION = 8
OVERRIDES = [f"--config.{net}.resolution={RESOLUTION}" for net in ("generator", "discriminator")]
OVERRIDES += [f"--config.data.resolution={RESOLUTION}"]


def tiny_config(**fields):
    config = apply_overrides(get_config("tiny"), OVERRIDES)
    config.update(fields)
    return config


def leaves(state):
    return jax.tree.leaves(jax.device_get(state))


@pytest.fixture(scope="module")
def trainer():
    return make_trainer(tiny_config())


@pytest.fixture(scope="module")
def learned(trainer, tmp_path_factory):
    """A 300-step run on blobs; (workdir, final state)."""
    workdir = tmp_path_factory.mktemp("learned")
    _, state = train(tiny_config(total_steps=300, log_every=50), workdir, progress=False)
    return workdir, state


def test_lazy_regularisation_corrects_adam_as_nvidia():
    ratio = 4 / 5
    tx = lazy_adam(0.002, 0.0, 0.99, 1e-8, reg_interval=4)
    params = {"w": jnp.zeros(3)}
    g1, g2 = jnp.array([0.5, -2.0, 1e-3]), jnp.array([1.0, 1.0, -1.0])
    state = tx.init(params)
    u1, state = tx.update({"w": g1}, state)
    u2, _ = tx.update({"w": g2}, state)
    lr, b2 = 0.002 * ratio, 0.99**ratio
    # beta1 = 0 stays 0: the first update is -lr * g / (|g| + eps).
    np.testing.assert_allclose(u1["w"], -lr * g1 / (np.abs(g1) + 1e-8), rtol=1e-5)
    v = (b2 * (1 - b2) * g1**2 + (1 - b2) * g2**2) / (1 - b2**2)
    np.testing.assert_allclose(u2["w"], -lr * g2 / (np.sqrt(v) + 1e-8), rtol=1e-5)
    # Without a regulariser no correction.
    plain = lazy_adam(0.002, 0.0, 0.99, 1e-8, reg_interval=None)
    u, _ = plain.update({"w": g1}, plain.init(params))
    np.testing.assert_allclose(u["w"], -0.002 * g1 / (np.abs(g1) + 1e-8), rtol=1e-6)
    assert ema_beta(32, 10_000) == pytest.approx(0.5 ** (32 / 10_000))
    assert ema_beta(8, 0) == 0.0


def test_mapping_learning_rate_multiplier_comes_from_raw_weights(trainer):
    """One Adam step moves every raw weight by lr, so effective weights move by lr * wscale:
    wscale = lr_mul / sqrt(fan_in) carries the mapping's lr multiplier 0.01."""
    state = compiled_init(trainer, parallel.data_mesh())(run_keys(0)[0])
    generator, _ = trainer.modules(state, ema=False)
    graphdef, params, rest = nnx.split(generator, nnx.Param, ...)
    z = jax.random.normal(jax.random.key(1), (4, 32))
    x = jax.random.normal(jax.random.key(2), (4, 4, 4, 32))

    def loss(params):
        model = nnx.merge(graphdef, params, rest)
        w = model.mapping(z)
        return jnp.mean(w**2) + jnp.mean(model.synthesis.layer1(x, w) ** 2)

    lr = 0.01
    tx = optax.adam(lr, b1=0.0, b2=0.99)
    updates, _ = tx.update(jax.grad(loss)(params), tx.init(params), params)
    moved = nnx.merge(graphdef, optax.apply_updates(params, updates), rest)
    for name, wscale in [("mapping.dense0", 0.01 / 32**0.5), ("synthesis.layer1", 1 / 288**0.5)]:
        old, new = (eval(f"m.{name}", {"m": m}) for m in (generator, moved))
        assert old.wscale == pytest.approx(wscale)
        step = np.abs(np.asarray(new.scaled_weight() - old.scaled_weight()))
        np.testing.assert_allclose(np.median(step), lr * wscale, rtol=1e-3)


def test_step_agrees_on_one_and_four_devices(trainer):
    """Two steps (the first runs both lazy regularisers) from one state and batch."""
    four = parallel.data_mesh()
    one = Mesh(np.array(jax.devices()[:1]), ("data",))
    assert four.size == 4
    init_key, step_key = run_keys(0)
    start = jax.device_get(compiled_init(trainer, four)(init_key))
    batch = {"image": Blobs(RESOLUTION, 16).images(np.arange(8))}
    results = []
    for mesh in (four, one):
        state = jax.device_put(start, NamedSharding(mesh, P()))
        step = compiled_step(trainer, mesh)
        for _ in range(2):
            state, metrics = step(
                state, global_batch(batch, NamedSharding(mesh, P("data"))), step_key
            )
        results.append((leaves(state), jax.device_get(metrics)))
    (state4, metrics4), (state1, metrics1) = results
    # Sums over the batch are reduced in another order on 4 devices; Adam (beta1 = 0) divides
    # each gradient by its own magnitude, which turns the last bits of a small gradient into at
    # most a few percent of one step (lr 0.002): atol 1e-4 = 5 % of a step, while a wrong split
    # or a missing cross-device reduction moves parameters by whole steps.
    for a, b in zip(state4, state1, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    for name in ("g_loss", "d_loss", "pl_penalty", "r1_penalty"):
        np.testing.assert_allclose(metrics4[name], metrics1[name], rtol=1e-5)


def test_training_improves_the_sliced_wasserstein_distance(trainer, learned):
    """300 steps on blobs bring the EMA generator's samples much closer to the data than the
    same run's initial generator: sliced Wasserstein distance on the 8x8x3 pixels, 512 samples
    each (two disjoint samples of the data are 0.045 apart; initial ~0.69, trained ~0.15)."""
    workdir, state = learned
    initial = compiled_init(trainer, parallel.data_mesh())(run_keys(0)[0])
    z = jax.random.normal(jax.random.key(123), (512, 32))
    reals = Blobs(RESOLUTION, 4096).images(np.arange(2048, 2560)) / 127.5 - 1.0
    key = jax.random.key(0)

    def distance(state):
        generator, _ = trainer.modules(state)
        return float(sliced_wasserstein(jgan.synthesize(generator, z)["image"], reals, key))

    before, after = distance(initial), distance(state)
    print(f"sliced Wasserstein to the data: initial {before:.3f}, after 300 steps {after:.3f}")
    assert after < 0.4 * before
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [50, 100, 150, 200, 250, 300]
    assert all(np.isfinite(r["g_loss"]) and r["images_per_s"] > 0 for r in records)
    # Sample grids of the EMA generator every 100 steps (tiny config), one fixed key.
    grids = sorted((workdir / "samples").glob("*.png"))
    assert [p.name for p in grids] == ["00000100.png", "00000200.png", "00000300.png"]
    first, last = (np.asarray(Image.open(p)) for p in (grids[0], grids[-1]))
    assert first.shape == last.shape and first.shape[0] >= 2 * RESOLUTION
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 1


def test_exported_model_loads_and_synthesizes(trainer, learned, tmp_path):
    workdir, state = learned
    bundle = jgan.load(workdir / "model")
    assert bundle.arch == "stylegan2" and bundle.generator.config["resolution"] == RESOLUTION
    z = jax.random.normal(jax.random.key(5), (4, 32))
    for role, ema in (("generator", True), ("generator_raw", False)):
        expected, discriminator = trainer.modules(state, ema=ema)
        np.testing.assert_array_equal(
            jgan.synthesize(getattr(bundle, role), z)["image"],
            jgan.synthesize(expected, z)["image"],
        )
    images = jgan.synthesize(bundle.generator, z)["image"]
    np.testing.assert_array_equal(
        jgan.discriminate(bundle.discriminator, images), jgan.discriminate(discriminator, images)
    )
    # The tracked w_avg moved away from its zero start and truncation uses it.
    w_avg = np.asarray(bundle.generator.truncation.w_avg[...])
    assert np.linalg.norm(w_avg) > 0.1
    assert cli(["synthesize", str(workdir / "model"), "--num", "4", "--trunc-psi", "0.5",
                "--outdir", str(tmp_path / "samples")]) == 0  # fmt: skip
    assert len(list((tmp_path / "samples").glob("0*.png"))) == 4


def _committed_steps(directory):
    return sorted(int(p.name) for p in directory.glob("*") if p.name.isdigit())


@pytest.fixture(scope="module", autouse=True)
def killed_run(tmp_path_factory):
    """`jgan train` in a subprocess, killed with SIGKILL by a watcher thread once it has
    committed two checkpoints. Started with the module so that its compile overlaps the other
    tests; `test_killed_run_resumes_bit_exactly` checks the result."""
    workdir = tmp_path_factory.mktemp("killed")
    command = [
        sys.executable, "-m", "jgan.cli.main", "train", "--no-progress",
        "--config", f"{REPO / 'configs' / 'stylegan2.py'}:tiny", "--workdir", str(workdir),
        *OVERRIDES, "--config.total_steps=100000", "--config.checkpoint_every=3",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def watch():
        deadline = time.monotonic() + 900
        while process.poll() is None and time.monotonic() < deadline:
            if len(_committed_steps(workdir / "checkpoints")) >= 2:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yield workdir, process, watcher
    if process.poll() is None:
        process.kill()
        process.wait()


def test_killed_run_resumes_bit_exactly(killed_run, tmp_path):
    """The killed run, resumed, ends with exactly the parameters of an uninterrupted run (same
    data order, same random numbers); nothing is lost but the steps after its checkpoint."""
    workdir, process, watcher = killed_run
    watcher.join(timeout=900)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    latest = TrainCheckpoints(workdir / "checkpoints").latest_step()
    assert latest >= 6 and latest % 3 == 0
    total = latest + 5  # crosses a path-length step (every 4)
    config = tiny_config(total_steps=total)
    _, resumed = train(config, workdir, progress=False)
    _, straight = train(config, tmp_path / "straight", progress=False)
    assert int(resumed.step) == total
    for a, b in zip(leaves(resumed), leaves(straight), strict=True):
        np.testing.assert_array_equal(a, b)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)) and steps[-1] == total
    # Resuming with another model is refused with the reason.
    other = tiny_config(total_steps=total + 1)
    other.generator.fmaps_max = other.discriminator.fmaps_max = 16
    with pytest.raises(CheckpointError, match="shape .* another model or training configuration"):
        train(other, workdir, progress=False)


def test_interrupted_run_saves_its_step_and_resumes(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) between steps: the run saves the step it reached, re-raises, and
    resuming ends where an uninterrupted run does; a finished run saves its last step."""
    config = tiny_config(total_steps=7, checkpoint_every=100)
    next_batch = Batches.__next__

    def interrupt_at_step_5(batches):
        if batches.position == 5 * config.batch_size:
            raise KeyboardInterrupt
        return next_batch(batches)

    monkeypatch.setattr(Batches, "__next__", interrupt_at_step_5)
    with pytest.raises(KeyboardInterrupt, match="stopped at step 5"):
        train(config, tmp_path / "run", progress=False)
    monkeypatch.undo()
    checkpoints = TrainCheckpoints(tmp_path / "run" / "checkpoints")
    assert checkpoints.all_steps() == [5]
    assert not (tmp_path / "run" / "model").exists()
    _, resumed = train(config, tmp_path / "run", progress=False)
    _, straight = train(config, tmp_path / "straight", progress=False)
    for a, b in zip(leaves(resumed), leaves(straight), strict=True):
        np.testing.assert_array_equal(a, b)
    assert TrainCheckpoints(tmp_path / "run" / "checkpoints").all_steps() == [5, 7]


def test_sigterm_during_a_step_stops_after_it_and_saves_it(tmp_path, monkeypatch):
    """A signal that lands while a step is being dispatched (its input state already donated)
    lets the step finish and saves its result: nothing is lost, the run resumes from step 4."""
    import jgan.training.loop as loop

    config = tiny_config(total_steps=7, checkpoint_every=100)
    real_compiled_step = loop.compiled_step

    def signalling_compiled_step(trainer, mesh):
        step_fn = real_compiled_step(trainer, mesh)

        def step(state, batch, key):
            result = step_fn(state, batch, key)
            if int(result[0].step) == 4:
                signal.raise_signal(signal.SIGTERM)
            return result

        return step

    monkeypatch.setattr(loop, "compiled_step", signalling_compiled_step)
    with pytest.raises(KeyboardInterrupt, match="stopped at step 4"):
        train(config, tmp_path / "run", progress=False)
    assert TrainCheckpoints(tmp_path / "run" / "checkpoints").all_steps() == [4]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_train_checkpoints_keep_the_newest_and_restore_meta(tmp_path):
    checkpoints = TrainCheckpoints(tmp_path / "ckpt", keep=2)
    tree = {"a": jnp.arange(3.0), "b": {"c": jnp.int32(7)}}
    for step in (1, 2, 3):
        checkpoints.save(step, jax.tree.map(lambda x, s=step: x * s, tree), {"data_position": step})
    checkpoints.close()
    checkpoints = TrainCheckpoints(tmp_path / "ckpt", keep=2)
    assert checkpoints.all_steps() == [2, 3] and checkpoints.latest_step() == 3
    state, meta = checkpoints.restore(tree, step=2)
    np.testing.assert_array_equal(state["a"], [0.0, 2.0, 4.0])
    assert int(state["b"]["c"]) == 14 and meta == {"data_position": 2}
    with pytest.raises(CheckpointError, match=r"missing d; a has shape \(3,\), expected \(5,\)"):
        checkpoints.restore({"a": jnp.zeros(5), "b": {"c": jnp.int32(0)}, "d": jnp.zeros(1)})
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        TrainCheckpoints(tmp_path / "empty").restore(tree)


def test_configs_and_command_line_overrides():
    ffhq = load_config(str(REPO / "configs" / "stylegan2.py"))
    assert (ffhq.batch_size, ffhq.total_steps, ffhq.loss.r1_gamma) == (32, 781_250, 10.0)
    assert ffhq.generator.resolution == ffhq.discriminator.resolution == 256
    assert ffhq.generator.fmaps_base == 32 << 10 and ffhq.optimizer.betas == (0.0, 0.99)
    assert load_config("stylegan2:tiny").generator.resolution == 16  # packaged config by name
    config = apply_overrides(
        load_config("stylegan2:tiny"),
        ["--config.optimizer.betas=(0.5, 0.9)", "--config.data.mirror=false",
         "--config.data.data_dir=/data/tfds", "--config.loss.r1_gamma=1", "--config.seed", "5"],
    )  # fmt: skip
    assert config.optimizer.betas == (0.5, 0.9) and config.data.mirror is False
    assert config.data.data_dir == "/data/tfds" and config.seed == 5
    assert config.loss.r1_gamma == 1.0 and isinstance(config.loss.r1_gamma, float)
    with pytest.raises(InputError, match="no field 'loss.gamma'"):
        apply_overrides(config, ["--config.loss.gamma=1"])
    with pytest.raises(InputError, match="batch_size"):
        apply_overrides(config, ["--config.batch_size=many"])
    with pytest.raises(InputError, match="unknown variant"):
        load_config("stylegan2:huge")
    with pytest.raises(InputError, match="no config file"):
        load_config("configs/nothing.py")
    with pytest.raises(InputError, match="data.source must be one of"):
        train(tiny_config(data={"source": "lsun"}), "/nonexistent/never-written")
    with pytest.raises(SystemExit):  # other commands take no --config.* arguments
        cli(["synthesize", "model", "--outdir", "x", "--config.seed=1"])
