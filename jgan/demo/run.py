"""Runs every demo section on one model and writes the report, all or nothing."""

import os
import time

from tqdm import tqdm

from jgan.demo import fairness, real_images, semantics
from jgan.demo.report import write_report
from jgan.demo.subject import DemoSettings, open_subject
from jgan.viz.output import check_new, staged_dir


def run_demo(
    outdir,
    model=None,
    *,
    predictor=None,
    images=None,
    lpips=None,
    settings=None,
    overwrite=False,
):
    """Writes the demo report of `model` (default: the shipped testbed model) to the new
    directory `outdir`: index.html, PNGs, metrics.json and FairGen's files. Returns the path
    of index.html."""
    settings = settings or DemoSettings()
    outdir = os.path.abspath(os.fspath(outdir))
    check_new(outdir, overwrite)
    if model is None:
        from jgan.assets import testbed_model_dir

        model = testbed_model_dir()
    subject = open_subject(model, settings, predictor=predictor, images=images, lpips=lpips)
    with staged_dir(outdir, overwrite) as staging, tqdm(total=8, desc="demo") as bar:
        seconds = {}

        def step(name, function, *args):
            bar.set_postfix_str(name)
            begin = time.perf_counter()
            result = function(subject, settings, *args)
            seconds[name] = round(time.perf_counter() - begin, 1)
            bar.update()
            return result

        started = time.perf_counter()
        boundaries, found = step("boundaries", semantics.boundaries)
        sections = [
            step("samples", semantics.samples, found),
            step("sefa", semantics.sefa_section),
            boundaries,
            step("conditional", semantics.conditional, found),
            step("layers", semantics.layer_ranking, found),
            step("inversion", real_images.inversion, found),
            step("restoration", real_images.restoration),
            step("fairgen", fairness.fairgen, found, os.path.join(staging, "fairgen")),
        ]
        notes = {
            "model": subject.name,
            "generator": f"{type(subject.generator).__name__}, {subject.space.upper()} space",
            "predictor": subject.notes["predictor"],
            "test images": subject.notes["test images"],
            "seconds per section": seconds,
            "total seconds": round(time.perf_counter() - started, 1),
        }
        write_report(staging, "jgan demo", notes, sections)
    return os.path.join(outdir, "index.html")
