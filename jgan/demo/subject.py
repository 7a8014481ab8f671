"""What the demo works on: a generator, a predictor that names what it sees, held-out images,
and the settings that size every step."""

import dataclasses

import jax
import numpy as np

from jgan.analysis.predictors import load_predictor, mean_color
from jgan.bundle import load
from jgan.data.testbed import FACTOR_NAMES, RESOLUTIONS, Testbed
from jgan.errors import InputError
from jgan.imageio import load_batch
from jgan.models.classifier import ClassifierPredictor


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of every step, set so the shipped 32 px model runs in a few minutes on 2 cores.

    Edit distances are in standard deviations of the sampled codes along each direction, so
    one setting suits every model and direction.
    """

    seed: int = 0
    samples: int = 32
    boundary_samples: int = 3000
    chosen_ratio: float = 0.15
    edit_rows: int = 3
    edit_steps: int = 7
    edit_sigmas: float = 3.0
    effect_samples: int = 64
    sefa_directions: int = 5
    rescore_samples: int = 64
    rescore_sigmas: float = 2.0
    test_images: int = 8
    inversion_steps: int = 200
    restoration_images: int = 4
    restoration_steps: int = 200
    restoration_codes: int = 10
    fair_samples: int = 500
    fit_samples: int = 2000
    gmm_components: int = 2


@dataclasses.dataclass
class Subject:
    """The model under study and what judges it.

    `columns` names the predictor's score columns; `threshold` is where a score counts as
    present (0.5 for a classifier's probabilities, 0 otherwise); `space` is where directions
    live (W for style-based generators, Z for PGGAN); `test_images` are NHWC in [-1, 1].
    """

    name: str
    generator: object
    encoder: object
    predictor: object
    columns: tuple
    threshold: float
    space: str
    test_images: np.ndarray
    notes: dict
    lpips: object = None

    @property
    def attributes(self):
        """The attribute each column belongs to ('shape' for 'shape=square')."""
        return tuple(c.split("=")[0] for c in self.columns)


def _predictor(bundle, spec, generator):
    """(predictor, column names, threshold, note) for the model."""
    if spec is not None:
        predictor = load_predictor(spec)
        if isinstance(predictor, ClassifierPredictor):
            return predictor, predictor.column_names, 0.5, f"classifier {spec}"
        probe = np.asarray(predictor(np.zeros((1, *_image_shape(generator)), np.float32)))
        count = 1 if probe.ndim == 1 else probe.shape[1]
        return predictor, tuple(f"score{k}" for k in range(count)), 0.0, f"predictor {spec}"
    if bundle.classifier is not None:
        predictor = ClassifierPredictor(bundle.classifier)
        return predictor, predictor.column_names, 0.5, "the model's own attribute classifier"
    return (
        mean_color,
        ("red", "green", "blue")[: _image_shape(generator)[-1]],
        0.0,
        "mean colour of each channel (the model has no classifier; pass --predictor for one)",
    )


def _image_shape(generator):
    """(H, W, C) of the generator's images (StyleGAN3 names them img_*)."""
    config = generator.config
    resolution = config.get("resolution", config.get("img_resolution"))
    return (resolution, resolution, config.get("image_channels", config.get("img_channels", 3)))


def _test_images(generator, columns, images, count, seed):
    """(images, note): files given, the testbed's test split, or images of held-out seeds."""
    resolution, _, channels = _image_shape(generator)
    if images is not None:
        _, batch = load_batch([images], resolution, channels=channels)
        return batch[:count], f"{len(batch[:count])} images from {images}"
    factors = {c.split("=")[0] for c in columns}
    if factors == set(FACTOR_NAMES) and RESOLUTIONS[0] <= resolution <= RESOLUTIONS[1]:
        uint8 = Testbed(resolution, count, split="test").images(np.arange(count))
        return uint8.astype(np.float32) / 127.5 - 1.0, "the testbed's test split (never trained on)"
    from jgan.analysis.generate import images_of

    z = jax.random.normal(jax.random.key(seed + 1_000_003), (count, generator.z_space_dim))
    uint8 = images_of(generator, z)
    return (
        np.asarray(uint8, np.float32) / 127.5 - 1.0,
        "generated images of held-out seeds (no real images given: pass --images DIR)",
    )


def open_subject(model, settings, *, predictor=None, images=None, lpips=None):
    """The `Subject` of a model file or directory (see `jgan demo --help` for the options)."""
    bundle = load(model)
    generator = bundle.generator
    if generator is None:
        raise InputError(f"{model} holds no generator (it holds a {bundle.arch} {_roles(bundle)})")
    if "z" not in generator.latent_spaces:
        raise InputError(f"the demo samples Z codes; {type(generator).__name__} takes none")
    predictor, columns, threshold, predictor_note = _predictor(bundle, predictor, generator)
    test, test_note = _test_images(generator, columns, images, settings.test_images, settings.seed)
    lpips_net = None
    if lpips is not None:
        from jgan.ports.vgg import load_lpips

        lpips_net = load_lpips(*lpips)
    return Subject(
        name=str(model),
        generator=generator,
        encoder=bundle.encoder,
        predictor=predictor,
        columns=tuple(columns),
        threshold=threshold,
        space="w" if "w" in generator.latent_spaces else "z",
        test_images=test,
        notes={"predictor": predictor_note, "test images": test_note},
        lpips=lpips_net,
    )


def _roles(bundle):
    return ", ".join(r for r in ("discriminator", "encoder", "classifier") if getattr(bundle, r))
