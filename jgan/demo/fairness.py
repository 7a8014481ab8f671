"""Demo section: FairGen on the attributes the model renders most unevenly."""

import json
import os

import numpy as np
from PIL import Image

from jgan.cli.fairgen import fairgen_to_dir
from jgan.demo.report import Section


def _uneven_columns(subject, found, count=2):
    """Binary columns (not one class of a categorical attribute), most imbalanced first."""
    share = (found.scores > subject.threshold).mean(axis=0)
    binary = [k for k, c in enumerate(subject.columns) if "=" not in c]
    return sorted(binary, key=lambda k: -abs(share[k] - 0.5))[:count]


def fairgen(subject, settings, found, directory):
    """FairGen's mixtures fitted and sampled; its own files go to `directory`."""
    section = Section(
        "fairgen", "Fair sampling (FairGen)",
        "Sampled codes are shifted into every cell of the most unevenly rendered attributes' "
        f"boundaries, {settings.gmm_components} Gaussian components are fitted per cell, and "
        "equal numbers are drawn from each. The predictor judges direct and fair samples.",
    )  # fmt: skip
    columns = _uneven_columns(subject, found)
    if not columns or subject.space != "w":
        section.text("FairGen needs binary attributes and a W space; this model has neither.")
        return section
    fairgen_to_dir(
        subject.generator, directory, predictor=subject.predictor, num=settings.fair_samples,
        boundaries=[found.normals[k][None] for k in columns], fit_num=settings.fit_samples,
        n_components=settings.gmm_components, columns=columns, thresholds=subject.threshold,
        seed=settings.seed, batch_size=64, trunc_psi=None,
    )  # fmt: skip
    with open(os.path.join(directory, "fairgen.json")) as f:
        report = json.load(f)["report"]
    names = [subject.columns[k] for k in columns]
    rows = [
        [cell, report["direct"]["shares"][i], report["fair"]["shares"][i]]
        for i, cell in enumerate(report["direct"]["cells"])
    ]
    rows.append(
        ["KL to uniform (nats)", report["direct"]["kl_to_uniform"], report["fair"]["kl_to_uniform"]]
    )
    section.table(["cell (" + ", ".join(names) + ")", "direct", "FairGen"], rows)
    for name in ("direct", "fair"):
        image = np.asarray(Image.open(os.path.join(directory, f"grid_{name}.png")).convert("RGB"))
        section.figure(name, image, f"{name} samples")
    share = {
        name: [float(np.sum(np.asarray(report[name]["shares"])[_positive(report, i)]))
               for i in range(len(columns))]
        for name in ("direct", "fair")
    }  # fmt: skip
    section.metrics.update(
        attributes=names,
        kl_to_uniform={n: report[n]["kl_to_uniform"] for n in ("direct", "fair")},
        positive_share={n: dict(zip(names, share[n], strict=True)) for n in share},
        cell_accuracy=report.get("cell_accuracy"),
    )
    return section


def _positive(report, attribute):
    """Mask of the cells where `attribute` is present (cell keys are signed distances)."""
    return np.array([float(c.split("_")[attribute]) > 0 for c in report["direct"]["cells"]])
