"""Sampled data for boundary search: latent codes and the predictor's scores of their images,
for hundreds of thousands of samples (HiGAN and InterFaceGAN recommend 500,000).

Batches are padded to one size, so the generator (and a jitted predictor) compile once, and
are sharded over all devices by `jgan.synthesize`. Results stream into plain `.npy` files
(memory-mapped) in a staging directory beside the target; a progress file there lets the same
call, re-run after an interruption, continue where it stopped and write the same files as an
uninterrupted run. The finished directory is renamed into place.
"""

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jgan.analysis.predictors import check_scores, predict, predictor_name
from jgan.api import synthesize
from jgan.errors import InputError
from jgan.viz.html import image_table
from jgan.viz.images import to_uint8
from jgan.viz.output import check_new, publish

PROGRESS = "generate_data.json"


def _padded(codes, batch_size):
    """`codes` (1 to `batch_size` of them) padded to exactly `batch_size` by repeating the last,
    so every batch reuses one compiled generator (and predictor)."""
    n = codes.shape[0]
    return jnp.concatenate([codes, jnp.repeat(codes[-1:], batch_size - n, axis=0)])


def images_of(generator, codes, *, batch_size=64, **options):
    """uint8 NHWC images of `codes`, generated `batch_size` at a time (options of
    `jgan.synthesize`)."""
    return np.concatenate(list(_batched(generator, codes, "image", batch_size, options, to_uint8)))


def codes_of(generator, codes, output, *, batch_size=64, **options):
    """The 'w' or 'wp' output of `jgan.synthesize` for `codes`, `batch_size` at a time."""
    return np.concatenate(list(_batched(generator, codes, output, batch_size, options, np.asarray)))


def _batched(generator, codes, output, batch_size, options, convert):
    """`convert(output)` of `jgan.synthesize` for each batch of `codes`, padding removed."""
    for start in range(0, codes.shape[0], batch_size):
        batch = jnp.asarray(codes[start : start + batch_size])
        out = synthesize(generator, _padded(batch, batch_size), **options)
        yield convert(out[output])[: batch.shape[0]]


def score_codes(generator, codes, predictor, *, batch_size=64, **options):
    """Predictor scores, (N,) or (N, K), of the images of `codes` (options of
    `jgan.synthesize`: space, trunc_psi, ...), generated `batch_size` at a time."""
    convert = functools.partial(predict, predictor)
    return np.concatenate(list(_batched(generator, codes, "image", batch_size, options, convert)))


@functools.partial(jax.jit, static_argnames="dim")
def _z_codes(key, indices, dim):
    """z of sample i = normal(fold_in(key, i)): independent of batching and devices."""
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (dim,)))(indices)


def generate_data(
    generator,
    outdir,
    *,
    num,
    predictor=None,
    seed=0,
    batch_size=64,
    trunc_psi=None,
    trunc_layers=None,
    noise_mode="const",
    codes=None,
    chunk=8192,
    preview=16,
    overwrite=False,
    source="",
    name=None,
):
    """Writes `num` samples to the new directory `outdir`; returns its path.

    Files: `z.npy` (num, z_dim), `w.npy` and optionally `wp.npy` (style-based models; `codes`
    picks among 'z', 'w', 'wp', default z and w), `scores.npy` (num,) or (num, K) when a
    `predictor` is given, `generate_data.json` (the settings) and `index.html` (the first
    `preview` samples with their scores). The z of sample i depends on `seed` and i only.

    Progress is saved every `chunk` samples. Calling again with the same settings after an
    interruption resumes; other settings are an error that names them. `source` (the model
    file) and `name` (the predictor's name, by default its module and qualified name) are
    recorded in the settings.
    """
    outdir = os.path.abspath(os.fspath(outdir))
    codes = _code_names(generator, codes)
    if num < 1 or batch_size < 1 or chunk < 1:
        raise InputError("num, batch_size and chunk must be positive")
    check_new(outdir, overwrite)
    settings = {
        "num": int(num),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "trunc_psi": None if trunc_psi is None else float(trunc_psi),
        "trunc_layers": None if trunc_layers is None else int(trunc_layers),
        "noise_mode": noise_mode,
        "codes": list(codes),
        "predictor": None if predictor is None else (name or predictor_name(predictor)),
        "generator": generator.config,
        "source": os.fspath(source),
    }
    staging = os.path.join(os.path.dirname(outdir), f".{os.path.basename(outdir)}.partial")
    done = _resume_point(staging, settings)
    options = {"trunc_psi": trunc_psi, "trunc_layers": trunc_layers, "noise_mode": noise_mode}
    key_codes, key_noise = jax.random.split(jax.random.key(seed))
    dim = generator.z_space_dim
    files = {}

    def dispatch(start):
        z = _z_codes(key_codes, jnp.arange(start, start + batch_size), dim)
        key = jax.random.fold_in(key_noise, start) if noise_mode == "random" else None
        out = synthesize(generator, z, key=key, **options)
        out["z"] = z
        if predictor is not None:
            out["scores"] = predictor(out["image"])  # checked in `write`, not waited for here
        return start, out

    def write(start, out):
        stop = min(start + batch_size, num)
        if predictor is not None:
            out["scores"] = check_scores(out["scores"], batch_size, predictor)
        for field in (*codes, "scores"):
            if field in out:
                value = np.asarray(out[field][: stop - start], np.float32)
                if field not in files:
                    files[field] = _open_array(staging, field, (num, *value.shape[1:]), done)
                files[field][start:stop] = value
        return stop

    flushed = done
    pending = None
    with tqdm(total=num, initial=done, desc="generate-data", unit="sample") as bar:
        for start in range(done, num, batch_size):
            current = dispatch(start)  # runs asynchronously while the previous batch is saved
            if pending is not None:
                bar.update(write(*pending) - pending[0])
            pending = current
            if pending[0] - flushed >= chunk:
                flushed = _save_progress(staging, settings, files, pending[0])
        if pending is not None:
            bar.update(write(*pending) - pending[0])
    _save_progress(staging, settings, files, num)
    files.clear()  # closes the memory maps before the directory moves
    z = _z_codes(key_codes, jnp.arange(min(preview, num)), dim)
    _write_preview(staging, generator, z, predictor, settings, options)
    publish(staging, outdir, overwrite)
    return outdir


def _code_names(generator, codes):
    available = ("z", "w", "wp") if "w" in generator.latent_spaces else ("z",)
    codes = tuple(available[:2] if codes is None else codes)
    unknown = [c for c in codes if c not in available]
    if unknown or not codes:
        raise InputError(
            f"codes to save must be chosen among {available} for this model; got {codes}"
        )
    return codes


def _resume_point(staging, settings):
    """Samples already written by an interrupted run with the same settings (0 if none)."""
    try:
        with open(os.path.join(staging, PROGRESS)) as f:
            progress = json.load(f)
    except (OSError, json.JSONDecodeError):
        shutil.rmtree(staging, ignore_errors=True)  # nothing usable: start again
        os.makedirs(staging)
        return 0
    saved = progress["settings"]
    changed = sorted(k for k in settings.keys() | saved.keys() if settings.get(k) != saved.get(k))
    if changed:
        raise InputError(
            f"{staging} holds an interrupted run with other settings ({', '.join(changed)}); "
            "run again with the same settings to resume it, or delete it to start anew"
        )
    print(f"resuming from sample {progress['done']} of {settings['num']} ({staging})")
    return progress["done"]


def _open_array(staging, key, shape, done):
    """The memory-mapped `key.npy`: created on a fresh run, reopened on a resumed one."""
    path = os.path.join(staging, f"{key}.npy")
    if done:
        if not os.path.exists(path):
            raise InputError(f"{path} is missing from the interrupted run; delete {staging}")
        array = np.lib.format.open_memmap(path, mode="r+")
        if array.shape != shape:
            raise InputError(f"{path} has shape {array.shape}; this run writes {shape}")
        return array
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)


def _save_progress(staging, settings, files, done):
    """Flushes the arrays, then records `done` (atomically), so a resume never sees a count
    ahead of the data."""
    for array in files.values():
        array.flush()
    temporary = os.path.join(staging, PROGRESS + ".tmp")
    with open(temporary, "w") as f:
        json.dump({"settings": settings, "done": done}, f, indent=2)
    os.replace(temporary, os.path.join(staging, PROGRESS))
    return done


def _write_preview(staging, generator, z, predictor, settings, options):
    """index.html: the images of the first samples (codes `z`) and their scores."""
    header = ["sample", "image"]
    rows = []
    if len(z):
        images = images_of(generator, z, batch_size=settings["batch_size"], **options)
        rows = [[f"{i:06d}", image] for i, image in enumerate(images)]
    if predictor is not None:
        scores = np.load(os.path.join(staging, "scores.npy"), mmap_mode="r")[: len(z)]
        header.append("score")
        for row, score in zip(rows, scores, strict=True):
            row.append(np.array2string(np.atleast_1d(score), precision=4))
    notes = f"{settings['num']} samples, seed {settings['seed']}, predictor {settings['predictor']}"
    with open(os.path.join(staging, "index.html"), "w") as f:
        f.write(image_table("jgan generate-data", header, rows, notes=notes))
