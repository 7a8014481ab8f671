"""Writing image datasets in tfds' array_record format without TensorFlow.

tfds itself writes the files (array_record shards, dataset_info.json, features.json), so
`tfds.data_source` and `jgan.data.TfdsSource` read them like any prepared tfds dataset. Two
details keep TensorFlow out: images reach tfds' Image feature as PIL images, which it encodes
to PNG with PIL, and the builder has no code path (tfds would otherwise look for checksum files
beside the module through a package this environment lacks).
"""

import contextlib
import os
import re
import shutil
import types

import numpy as np
from PIL import Image

from jgan.data.sources import ImageFolder
from jgan.errors import InputError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def write_image_dataset(
    data_dir,
    name,
    splits,
    *,
    shape,
    features=None,
    version="1.0.0",
    description="",
    overwrite=False,
):
    """Writes a tfds dataset `name` (version `version`) under `data_dir`; returns its directory.

    `splits` maps split names to iterables of examples. An example is a uint8 image of `shape`
    (H, W, C) or a dict with that image under 'image' plus one value per entry of `features`
    (extra tfds feature connectors, e.g. {'label': tfds.features.ClassLabel(num_classes=3)}).
    Records keep the order of the iterables. tfds writes into a temporary directory and
    renames it when complete, so a failure leaves no partial dataset.
    """
    import tensorflow_datasets as tfds  # heavy: imported only when writing

    if not _NAME.match(name or ""):
        raise InputError(f"dataset name must be snake_case ([a-z][a-z0-9_]*); got {name!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise InputError(f"shape must be (H, W, 1 or 3); got {shape}")
    features = dict(features or {})
    if "image" in features:
        raise InputError("'image' is written by jgan; list only the other features")
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    target = os.path.join(data_dir, name, version)
    if os.path.exists(target):
        if not overwrite:
            raise InputError(f"{target} exists; choose another name/version or overwrite=True")
        shutil.rmtree(target)

    def encode(example):
        if not isinstance(example, dict):
            example = {"image": example}
        if set(example) != {"image", *features}:
            raise InputError(
                f"examples must hold 'image' and {sorted(features)}; got {sorted(example)}"
            )
        image = np.asarray(example["image"])
        if image.dtype != np.uint8 or image.shape != shape:
            raise InputError(
                f"images must be uint8 of shape {shape}; got {image.dtype} {image.shape}"
            )
        pixels = image[..., 0] if shape[-1] == 1 else image
        return {**example, "image": Image.fromarray(pixels)}

    def examples(items):
        for key, example in enumerate(items):
            yield key, encode(example)

    def exec_body(namespace):
        namespace.update(
            name=name,
            VERSION=tfds.core.Version(version),
            code_path=None,
            _info=lambda self: tfds.core.DatasetInfo(
                builder=self,
                description=description,
                features=tfds.features.FeaturesDict(
                    {"image": tfds.features.Image(shape=shape), **features}
                ),
                disable_shuffling=True,
            ),
            _split_generators=lambda self, dl_manager: {
                split: self._generate_examples(items) for split, items in splits.items()
            },
            _generate_examples=lambda self, items: examples(items),
        )

    builder_class = types.new_class(
        "JganImageDataset",
        (tfds.core.GeneratorBasedBuilder,),
        {"skip_registration": True},
        exec_body,
    )
    builder = builder_class(data_dir=data_dir, file_format="array_record")
    downloads = os.path.join(data_dir, f".{name}-downloads")
    try:
        builder.download_and_prepare(download_dir=downloads)
    except BaseException:
        with contextlib.suppress(OSError):  # the dataset's folder, when nothing else is in it
            os.rmdir(os.path.join(data_dir, name))
        raise
    finally:
        shutil.rmtree(downloads, ignore_errors=True)
    return target


def write_image_folder(folder, data_dir, name, *, resolution=None, split="train", **options):
    """Converts an image folder (see `ImageFolder`) to a tfds array_record dataset with one
    split; `options` are those of `write_image_dataset`."""
    source = ImageFolder(folder, resolution)
    images = (source.images([i])[0] for i in range(len(source)))
    return write_image_dataset(data_dir, name, {split: images}, shape=source.shape, **options)
