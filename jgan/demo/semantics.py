"""Demo sections on generated images: samples, SeFa, InterFaceGAN boundaries, conditional
editing and HiGAN's layer ranking. Each returns a `Section`; `boundaries` also returns what
later sections build on."""

import dataclasses

import jax
import numpy as np

from jgan.analysis.boundaries import project_boundary, train_boundary
from jgan.analysis.editing import manipulate
from jgan.analysis.generate import codes_of, images_of, score_codes
from jgan.analysis.hierarchy import rescore
from jgan.analysis.sefa import sefa
from jgan.demo.report import Section
from jgan.viz.images import make_grid


@dataclasses.dataclass
class Found:
    """Boundaries found on sampled codes: one unit normal per predictor column, the spread of
    the codes along it (edit distances are multiples of it), its validation accuracy and how
    much an edit along it changes its column's score."""

    codes: np.ndarray
    scores: np.ndarray
    normals: np.ndarray
    sigmas: np.ndarray
    accuracy: np.ndarray
    edit_change: np.ndarray


def sample_codes(subject, key, num):
    """(z, codes in `subject.space`) of `num` samples."""
    z = np.asarray(jax.random.normal(key, (num, subject.generator.z_space_dim)))
    if subject.space == "z":
        return z, z
    return z, np.asarray(codes_of(subject.generator, z, subject.space))


def scores_of(subject, codes):
    """(N, K) predictor scores of the images of `codes` (in `subject.space`)."""
    scores = score_codes(subject.generator, codes, subject.predictor, space=subject.space)
    return scores.reshape(len(codes), -1)


def distances(settings, sigma):
    return np.linspace(-settings.edit_sigmas, settings.edit_sigmas, settings.edit_steps) * sigma


def edit_grid(subject, settings, codes, direction, sigma, space=None):
    """uint8 grid: one row per code, moved along `direction` by -k..k sigma."""
    steps = distances(settings, sigma)
    moved = manipulate(
        codes, direction.reshape(1, -1), start_distance=steps[0], end_distance=steps[-1],
        steps=len(steps),
    )  # fmt: skip
    moved = np.asarray(moved).reshape(-1, *codes.shape[1:])
    images = images_of(subject.generator, moved, space=space or subject.space)
    return make_grid(np.asarray(images), cols=len(steps))


def edit_effect(subject, settings, codes, direction, sigma):
    """(K,) mean change of every score column from -k to +k sigma along `direction`."""
    offset = settings.edit_sigmas * sigma * direction.reshape(1, -1)
    return (scores_of(subject, codes + offset) - scores_of(subject, codes - offset)).mean(axis=0)


def _keys(settings):
    names = ("samples", "sefa", "boundaries", "effects", "layers")
    return dict(
        zip(names, jax.random.split(jax.random.key(settings.seed), len(names)), strict=True)
    )


def samples(subject, settings, found):
    section = Section(
        "samples", "Random samples", "Images of random Z codes, no truncation, and what the "
        "predictor sees in them."
    )  # fmt: skip
    _, codes = sample_codes(subject, _keys(settings)["samples"], settings.samples)
    images = np.asarray(images_of(subject.generator, codes, space=subject.space))
    section.figure("grid", make_grid(images, cols=8), f"{len(images)} samples")
    share = (found.scores > subject.threshold).mean(axis=0)
    section.metrics["predicted_share"] = dict(zip(subject.columns, share, strict=True))
    section.table(
        ["column", *subject.columns],
        [["share above threshold", *share]],
        f"over the {len(found.scores)} samples of the boundary search; threshold "
        f"{subject.threshold}",
    )
    return section


def sefa_section(subject, settings):
    section = Section(
        "sefa", "SeFa: closed-form directions",
        "Eigenvectors of the style weights' Gram matrix (all layers), largest eigenvalue first. "
        "Each row moves one sample along a direction; the table says which predictor column "
        "the direction moves most (mean change from -k to +k sigma).",
    )  # fmt: skip
    eigenvalues, directions = sefa(subject.generator)
    top = directions[: settings.sefa_directions]
    _, codes = sample_codes(subject, _keys(settings)["effects"], settings.effect_samples)
    rows, effects = [], []
    for i, direction in enumerate(top):
        sigma = float(np.std(codes @ direction))
        effect = edit_effect(subject, settings, codes, direction, sigma)
        effects.append(effect)
        best = int(np.argmax(np.abs(effect)))
        rows.append([i, float(eigenvalues[i]), subject.columns[best], float(effect[best])])
        grid = edit_grid(subject, settings, codes[: settings.edit_rows], direction, sigma)
        section.figure(f"direction{i}", grid, f"direction {i} (eigenvalue {eigenvalues[i]:.3g})")
    section.table(["direction", "eigenvalue", "moves most", "score change"], rows)
    share = eigenvalues / eigenvalues.sum()
    section.text(
        f"The top {len(top)} of {len(eigenvalues)} eigenvalues hold "
        f"{share[: len(top)].sum():.1%} of the sum."
    )
    section.metrics.update(
        eigenvalues=eigenvalues,
        effects={str(i): dict(zip(subject.columns, e, strict=True)) for i, e in enumerate(effects)},
        largest_effect=[float(np.max(np.abs(e))) for e in effects],
    )
    return section


def boundaries(subject, settings):
    section = Section(
        "boundaries", "InterFaceGAN boundaries",
        f"A linear SVM per predictor column separates the codes ({subject.space.upper()} "
        f"space) of the {settings.chosen_ratio:.0%} highest- from the lowest-scoring of "
        f"{settings.boundary_samples} samples; 70% train it, 30% validate it. Rows move "
        "samples along each normal; 'edit change' is the column's mean score change from "
        f"-{settings.edit_sigmas:g} to +{settings.edit_sigmas:g} sigma.",
    )  # fmt: skip
    keys = _keys(settings)
    _, codes = sample_codes(subject, keys["boundaries"], settings.boundary_samples)
    scores = scores_of(subject, codes)
    _, probe = sample_codes(subject, keys["effects"], settings.effect_samples)
    normals, sigmas, accuracy, rows = [], [], [], []
    for k, column in enumerate(subject.columns):
        normal, report = train_boundary(
            codes, scores[:, k], settings.chosen_ratio, seed=settings.seed, return_report=True
        )
        normal = normal[0]
        sigma = float(np.std(codes @ normal))
        change = float(edit_effect(subject, settings, probe, normal, sigma)[k])
        normals.append(normal)
        sigmas.append(sigma)
        accuracy.append(report["validation_accuracy"])
        rows.append([column, report["validation_accuracy"], report["remaining_accuracy"], change])
        grid = edit_grid(subject, settings, codes[: settings.edit_rows], normal, sigma)
        section.figure(column, grid, f"{column}: -{settings.edit_sigmas:g} to "
                       f"+{settings.edit_sigmas:g} sigma")  # fmt: skip
    section.table(["column", "validation accuracy", "remaining accuracy", "edit change"], rows)
    section.metrics.update(
        validation_accuracy=dict(zip(subject.columns, accuracy, strict=True)),
        edit_change={r[0]: r[3] for r in rows},
    )
    changes = np.array([r[3] for r in rows])
    found = Found(codes, scores, np.stack(normals), np.array(sigmas), np.array(accuracy), changes)
    return section, found


def conditional(subject, settings, found):
    """Edits one attribute with and without holding the one its boundary leans on most."""
    section = Section(
        "conditional", "Conditional editing",
        "Of the boundaries whose edits work (they change their own score by at least a third), "
        "the pair of different attributes with the largest |cosine|: editing the first also "
        "moves the second; projecting the second's normal out of the first keeps it.",
    )  # fmt: skip
    attributes = np.array(subject.attributes)
    cosine = np.abs(found.normals @ found.normals.T)
    cosine[attributes[:, None] == attributes[None, :]] = -1.0
    working = found.edit_change >= 1 / 3
    if working.sum() >= 2:
        cosine[~(working[:, None] & working[None, :])] = -1.0
    if cosine.max() < 0:
        section.text("The predictor scores only one attribute: nothing to condition on.")
        return section
    primal, condition = np.unravel_index(np.argmax(cosine), cosine.shape)
    plain = found.normals[primal]
    held = project_boundary(plain[None], found.normals[condition][None])[0]
    sigma = found.sigmas[primal]
    _, probe = sample_codes(subject, _keys(settings)["effects"], settings.effect_samples)
    rows, changes = [], {}
    for name, direction in (("plain", plain), ("conditional", held)):
        effect = edit_effect(subject, settings, probe, direction, sigma)
        changes[name] = (float(effect[primal]), float(effect[condition]))
        rows.append([name, *changes[name]])
        grid = edit_grid(subject, settings, found.codes[: settings.edit_rows], direction, sigma)
        section.figure(name, grid, f"{name} edit of {subject.columns[primal]}")
    section.table(
        ["edit", f"change of {subject.columns[primal]}", f"change of {subject.columns[condition]}"],
        rows,
        f"|cosine| of the two normals: {cosine[primal, condition]:.3f}",
    )
    section.metrics.update(
        primal=subject.columns[primal],
        condition=subject.columns[condition],
        cosine=float(cosine[primal, condition]),
        change=changes,
    )
    return section


def layer_ranking(subject, settings, found):
    """HiGAN's re-scoring: how much moving each layer alone moves each column's score."""
    section = Section(
        "layers", "Layer-wise ranking (HiGAN)",
        "Each W+ layer is moved alone along a boundary by "
        f"{settings.rescore_sigmas:g} sigma; cells are the mean positive score change of that "
        "column (darker: more). Style-based generators only.",
    )  # fmt: skip
    if subject.space == "z":
        section.text("This generator has no per-layer codes.")
        return section
    z, _ = sample_codes(subject, _keys(settings)["layers"], settings.rescore_samples)
    wp = np.asarray(codes_of(subject.generator, z, "wp"))
    moves = [n[None] * s for n, s in zip(found.normals, found.sigmas, strict=True)]
    result = rescore(
        subject.generator, wp, moves, subject.predictor,
        columns=list(range(len(subject.columns))), distance=settings.rescore_sigmas,
        layerwise=True,
    )  # fmt: skip
    change = result.layer_change
    scale = max(float(change.max()), 1e-8)
    rows = [
        [column, float(all_layers), *[(float(v), v / scale) for v in per_layer]]
        for column, all_layers, per_layer in zip(
            subject.columns, result.semantic_change, change, strict=True
        )
    ]
    section.table(["column", "all layers", *range(change.shape[1])], rows)
    top = {
        c: [int(i) for i in order[:3]]
        for c, order in zip(subject.columns, result.layer_order, strict=True)
    }
    section.metrics.update(
        semantic_change=dict(zip(subject.columns, result.semantic_change, strict=True)),
        layer_change=dict(zip(subject.columns, change, strict=True)),
        top_layers=top,
    )
    return section
