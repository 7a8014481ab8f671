"""Demo sections on held-out images: inversion (encoder and optimisation) with edits of the
inverted images, and mGANprior's multi-code restoration."""

import numpy as np

from jgan.api import synthesize
from jgan.demo.report import Section
from jgan.demo.semantics import edit_grid
from jgan.encoding import encode
from jgan.inversion import Colorize, Inpaint, SuperResolve, invert
from jgan.inversion.metrics import image_metrics
from jgan.viz.images import make_grid, to_uint8

# No VGG16 ships with jgan, so inversion here uses pixel losses only (the originals add a
# perceptual term; pass a VGG16 to `jgan invert --perceptual` for it).
PIXEL_ONLY = {"perceptual_weight": 0.0, "perceptual_convention": None}
# Adam in W+ (Z for PGGAN) instead of mGANprior's SGD in Z: after the demo's 200 steps on the
# 32 px testbed model, SGD in Z leaves super-resolution below the naive upsampling (18.3 vs
# 23.9 dB) and inpainting at 19.9 dB; Adam in W+ reaches 27.4 and 25.4 dB.
RESTORATION = {"optimizer": "adam", "learning_rate": 0.05}


def _space(generator):
    return "wp" if "wp" in generator.latent_spaces else "z"


def _means(metrics):
    return {name: float(np.mean(values)) for name, values in metrics.items()}


def _rows_grid(rows):
    """uint8 grid of float image rows (each (N, H, W, C) in [-1, 1]), one row each."""
    stacked = np.concatenate([to_uint8(np.clip(np.asarray(r), -1, 1)) for r in rows])
    return make_grid(stacked, cols=len(rows[0]))


def inversion(subject, settings, found):
    section = Section(
        "inversion", "Inverting held-out images, then editing them",
        f"Images: {subject.notes['test images']}. The encoder's codes (when the model has an "
        "encoder) start IDInvert's domain-regularised optimisation; without one, W+ codes are "
        f"optimised from the mean. {settings.inversion_steps} steps, pixel loss only.",
    )  # fmt: skip
    generator, encoder, images = subject.generator, subject.encoder, subject.test_images
    rows, table, metrics = [images], [], {}
    if encoder is not None:
        encoded = synthesize(generator, encode(encoder, images), space="wp")["image"]
        metrics["encoder"] = _means(image_metrics(encoded, images, lpips=subject.lpips))
        rows.append(encoded)
    method = "idinvert" if encoder is not None else "optimize"
    result = invert(
        generator, images, method=method, encoder=encoder, space=_space(generator),
        steps=settings.inversion_steps, progress=True, **PIXEL_ONLY,
    )  # fmt: skip
    metrics[method] = _means(image_metrics(result["images"], images, lpips=subject.lpips))
    rows.append(result["images"])
    for name, values in metrics.items():
        table.append([name, *(values.get(k, "n/a") for k in ("psnr", "ssim", "lpips"))])
    caption = "rows: input, " + ", ".join(metrics) + " reconstruction"
    section.figure("reconstructions", _rows_grid(rows), caption)
    section.table(["reconstruction", "PSNR (dB)", "SSIM", "LPIPS"], table)
    if subject.lpips is None:
        section.text("LPIPS needs VGG16 weights, which jgan does not ship: pass --lpips.")
    section.metrics.update(metrics)
    codes = np.asarray(result["codes"])
    for column in _edited_columns(subject, found):
        k = subject.columns.index(column)
        grid = edit_grid(
            subject, settings, codes[: settings.edit_rows], found.normals[k], found.sigmas[k],
            space=_space(generator),
        )  # fmt: skip
        section.figure(f"edit_{column}", grid, f"inverted images edited along {column}")
    return section


def _edited_columns(subject, found, count=3):
    """The most accurate boundaries, one per attribute."""
    chosen, attributes = [], set()
    for k in np.argsort(-found.accuracy, kind="stable"):
        if subject.attributes[k] not in attributes:
            chosen.append(subject.columns[k])
            attributes.add(subject.attributes[k])
    return chosen[:count]


def restoration(subject, settings):
    generator = subject.generator
    images = subject.test_images[: settings.restoration_images]
    size = images.shape[1]
    layer = int(np.log2(size)) - 1  # about halfway through the synthesis layers
    section = Section(
        "restoration", "Multi-code restoration (mGANprior)",
        f"{settings.restoration_codes} codes composed after layer {layer} with adaptive "
        f"channel importance restore what a task hides; {settings.restoration_steps} steps of "
        "Adam in W+, pixel loss only. Rows: what the task observes (the naive restoration), the "
        "restoration, the original.",
    )  # fmt: skip
    hole = np.zeros(images.shape[1:3], np.float32)
    hole[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    tasks = {"colorization": Colorize(), "inpainting": Inpaint(hole)}
    if size % 4 == 0:
        tasks["super-resolution"] = SuperResolve(4)
    rows = []
    for name, task in tasks.items():
        result = invert(
            generator, images, method="multicode", task=task, steps=settings.restoration_steps,
            num_codes=settings.restoration_codes, composing_layer=layer, progress=True,
            space=_space(generator), **RESTORATION, **PIXEL_ONLY,
        )  # fmt: skip
        restored = _means(image_metrics(np.clip(result["result"], -1, 1), images))
        naive = _means(image_metrics(np.clip(result["degraded"], -1, 1), images))
        section.metrics[name] = {"restored": restored, "naive": naive}
        rows.append([name, naive["psnr"], restored["psnr"]])
        grid = _rows_grid([result["degraded"], result["result"], images])
        section.figure(name, grid, name)
    section.table(["task", "naive PSNR (dB)", "restored PSNR (dB)"], rows)
    return section
