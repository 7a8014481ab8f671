"""Random-access image sources: image folders, tfds array_record datasets, arrays, blobs.

Every source has `len(source)`, `source.shape` (H, W, C) and `source.images(indices)`, which
returns uint8 images (n, H, W, C) in the order of `indices`. Reading by index is what makes the
batch pipeline deterministic and resumable: the batch at any position is a pure function of
the seed and the position.
"""

import os

import numpy as np
from PIL import Image

from jgan.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _as_rgb(image, resolution, name):
    """PIL image -> uint8 (resolution, resolution, 3); square images of another size are resized
    (Lanczos), as genforce's loaders resize to the training resolution."""
    image = image.convert("RGB")
    if image.width != image.height:
        raise InputError(
            f"{name}: images must be square; got {image.width}x{image.height} (crop it first)"
        )
    if resolution is not None and image.width != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(image, np.uint8)


class ArraySource:
    """Images held in memory: a uint8 array (N, H, W, C)."""

    def __init__(self, images):
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise InputError(
                f"images must be a uint8 array (N, H, W, C); got {images.dtype} {images.shape}"
            )
        self.array = images
        self.shape = images.shape[1:]

    def __len__(self):
        return len(self.array)

    def images(self, indices):
        return self.array[np.asarray(indices)]


class ImageFolder:
    """PNG/JPEG/WebP/BMP files under `path` (recursively), in sorted order of their paths,
    decoded to RGB at `resolution` (None: the size of the first image)."""

    def __init__(self, path, resolution=None):
        if not path:
            raise InputError("an image folder source needs path= (data.path)")
        path = os.path.expanduser(os.fspath(path))
        if not os.path.isdir(path):
            raise InputError(f"image folder {path!r} does not exist")
        files = sorted(
            os.path.relpath(os.path.join(root, name), path)
            for root, _, names in os.walk(path)
            for name in names
            if name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            raise InputError(f"image folder {path!r} holds no {'/'.join(IMAGE_EXTENSIONS)} files")
        self.path, self.files = path, files
        if resolution is None:
            resolution = self._read(0, None).shape[0]
        self.resolution = resolution
        self.shape = (resolution, resolution, 3)

    def __len__(self):
        return len(self.files)

    def _read(self, index, resolution):
        name = os.path.join(self.path, self.files[index])
        with Image.open(name) as image:
            return _as_rgb(image, resolution, name)

    def images(self, indices):
        return np.stack([self._read(int(i), self.resolution) for i in indices])


class TfdsSource:
    """A split of a tensorflow-datasets dataset in array_record format, read without
    TensorFlow through `tfds.data_source`.

    `path` is a prepared dataset version directory (the one holding dataset_info.json);
    otherwise `name` (e.g. 'celeb_a_hq/256' or a dataset written by
    `jgan.data.write_image_dataset`) is looked up under `data_dir` (tfds' default when None).
    Nothing is downloaded.
    """

    def __init__(self, name=None, *, split="train", data_dir=None, path=None, image_key="image"):
        import tensorflow_datasets as tfds  # heavy: imported when a tfds source is opened

        try:
            if path:
                builder = tfds.builder_from_directory(os.path.expanduser(path))
                self.data = builder.as_data_source(split)
            elif name:
                data_dir = None if data_dir is None else os.path.expanduser(data_dir)
                self.data = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
            else:
                raise InputError("a tfds source needs name= (with data_dir=) or path=")
        except InputError:
            raise
        except Exception as error:  # tfds raises many types for a missing or unreadable dataset
            where = path or f"{name!r} under {data_dir or 'the tfds data_dir'}"
            raise InputError(
                f"cannot open the tfds dataset {where}, split {split!r}: "
                f"{str(error).strip().splitlines()[0].rstrip('.')}. Prepare it "
                "offline in array_record format (jgan.data.write_image_dataset writes one "
                "from images or a folder without TensorFlow)"
            ) from error
        features = self.data.dataset_info.features
        if image_key not in features:
            raise InputError(
                f"the dataset has no feature {image_key!r}; it has {sorted(features.keys())}"
            )
        self.image_key = image_key
        self.shape = tuple(features[image_key].shape)
        if len(self.shape) != 3 or None in self.shape:
            raise InputError(f"feature {image_key!r} must be fixed-size HWC; got {self.shape}")

    def __len__(self):
        return len(self.data)

    def images(self, indices):
        records = self.data.__getitems__([int(i) for i in indices])
        return np.stack([np.asarray(r[self.image_key], np.uint8) for r in records])


class Blobs:
    """A procedural dataset for tests and the tiny configs: one soft coloured disc on a plain
    background per image, with position, radius and both colours drawn from the image's own
    seed (so image i is the same wherever it is read)."""

    def __init__(self, resolution=16, size=1024, seed=0):
        if not (isinstance(resolution, int) and resolution >= 4 and size >= 1):
            raise InputError(f"blobs need resolution >= 4 and size >= 1; got {resolution}, {size}")
        self.resolution, self.size, self.seed = resolution, size, seed
        self.shape = (resolution, resolution, 3)

    def __len__(self):
        return self.size

    def _image(self, index):
        rng = np.random.default_rng((self.seed, index))
        background, color = rng.uniform(0.0, 1.0, (2, 3))
        cy, cx = rng.uniform(0.25, 0.75, 2) * self.resolution
        radius = rng.uniform(0.12, 0.3) * self.resolution
        y, x = np.mgrid[: self.resolution, : self.resolution] + 0.5
        inside = 1.0 / (1.0 + np.exp(((y - cy) ** 2 + (x - cx) ** 2) ** 0.5 - radius))
        image = background + (color - background) * inside[..., None]
        return np.rint(image * 255).astype(np.uint8)

    def images(self, indices):
        return np.stack([self._image(int(i)) for i in indices])


SOURCES = ("blobs", "folder", "tfds")


def open_source(config):
    """The source a data config (a ConfigDict or dict) names: `source` is 'folder' (`path`,
    `resolution`), 'tfds' (`name`, `split`, `data_dir` or `path`, `image_key`) or 'blobs'
    (`resolution`, `size`, `seed`)."""
    kind = config.get("source")
    if kind == "folder":
        return ImageFolder(config.get("path"), config.get("resolution"))
    if kind == "tfds":
        return TfdsSource(
            config.get("name"),
            split=config.get("split", "train"),
            data_dir=config.get("data_dir"),
            path=config.get("path"),
            image_key=config.get("image_key", "image"),
        )
    if kind == "blobs":
        return Blobs(config.get("resolution"), config.get("size", 1024), config.get("seed", 0))
    raise InputError(f"data.source must be one of {SOURCES}; got {kind!r}")
