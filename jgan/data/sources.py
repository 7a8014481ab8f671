"""Random-access image sources: image folders, tfds array_record datasets, arrays, blobs, and
the procedural testbed (`jgan.data.testbed`).

Every source has `len(source)`, `source.shape` (H, W, C) and `source.images(indices)`, which
returns uint8 images (n, H, W, C) in the order of `indices`. Reading by index is what makes the
batch pipeline deterministic and resumable: the batch at any position is a pure function of
the seed and the position.

A source with per-example labels also has `label_classes`, an ordered dict {name: number of
classes, or None for a continuous value}, and `labels(indices)`, a dict {name: (n,) array}:
int32 for class labels (bools become 0/1), float32 for continuous values. Sources without
labels have an empty `label_classes`.
"""

import csv
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


def _label_column(values, name):
    """Label values -> int32 (integers, bools) or float32 (reals) numpy array, checked."""
    values = np.asarray(values)
    if values.dtype == bool or np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int32)
    if np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float32)
    raise InputError(f"label {name!r} must be numeric or boolean; got {values.dtype}")


def _classes_of(column):
    """Number of classes of an in-memory label column: max + 1 for integers, None for reals."""
    if column.dtype != np.int32:
        return None
    if column.size and column.min() < 0:
        raise InputError(f"class labels must be >= 0; got {column.min()}")
    return int(column.max()) + 1 if column.size else 0


class LabelTable:
    """Labels held in memory: {name: (N,) array} -> `label_classes` and `labels(indices)`."""

    def __init__(self, columns, count):
        self.columns = {}
        for name, values in columns.items():
            column = _label_column(values, name)
            if column.shape != (count,):
                raise InputError(
                    f"label {name!r} must have one value per image, shape ({count},); got "
                    f"{column.shape}"
                )
            self.columns[name] = column
        self.label_classes = {name: _classes_of(c) for name, c in self.columns.items()}

    def labels(self, indices):
        indices = np.asarray(indices)
        return {name: column[indices] for name, column in self.columns.items()}


class ArraySource:
    """Images held in memory: a uint8 array (N, H, W, C), with optional labels: a dict
    {name: (N,) array} or one (N,) array (named 'label')."""

    def __init__(self, images, labels=None):
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise InputError(
                f"images must be a uint8 array (N, H, W, C); got {images.dtype} {images.shape}"
            )
        self.array = images
        self.shape = images.shape[1:]
        if labels is not None and not isinstance(labels, dict):
            labels = {"label": labels}
        self._labels = LabelTable(labels or {}, len(images))
        self.label_classes = self._labels.label_classes

    def __len__(self):
        return len(self.array)

    def images(self, indices):
        return self.array[np.asarray(indices)]

    def labels(self, indices):
        return self._labels.labels(indices)


def read_label_csv(path, files):
    """{name: (len(files),) array} from a CSV file whose header is `file,<name>,...` and whose
    rows give an image's path (relative to its folder) and its numeric labels."""
    try:
        with open(os.path.expanduser(os.fspath(path)), newline="") as f:
            rows = list(csv.reader(f))
    except OSError as error:
        raise InputError(f"cannot read the labels file {path}: {error}") from error
    if not rows or len(rows[0]) < 2:
        raise InputError(f"{path}: the first row must be a header 'file,<label name>,...'")
    names, by_file = rows[0][1:], {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(names) + 1:
            raise InputError(f"{path}:{number}: expected {len(names) + 1} fields, got {len(row)}")
        by_file[os.path.normpath(row[0])] = row[1:]
    missing = [name for name in files if os.path.normpath(name) not in by_file]
    if missing:
        raise InputError(f"{path} has no labels for {len(missing)} images, e.g. {missing[:3]}")
    table = [by_file[os.path.normpath(name)] for name in files]
    columns = {}
    for k, name in enumerate(names):
        texts = [row[k].strip() for row in table]
        try:
            columns[name] = np.array([int(t) for t in texts])
        except ValueError:
            try:
                columns[name] = np.array([float(t) for t in texts])
            except ValueError as error:
                raise InputError(f"{path}: label {name!r} must be numeric ({error})") from error
    return columns


class ImageFolder:
    """PNG/JPEG/WebP/BMP files under `path` (recursively), in sorted order of their paths,
    decoded to RGB at `resolution` (None: the size of the first image). `labels` optionally
    names a CSV file of per-image labels (see `read_label_csv`)."""

    def __init__(self, path, resolution=None, labels=None):
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
        columns = read_label_csv(labels, files) if labels else {}
        self._labels = LabelTable(columns, len(files))
        self.label_classes = self._labels.label_classes

    def __len__(self):
        return len(self.files)

    def labels(self, indices):
        return self._labels.labels(indices)

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

    `label_keys` names the features read as labels: a scalar feature is one label of that
    name; a dict of scalar features (CelebA's 'attributes', the testbed's 'label') gives one
    label per entry, named by its key. `crop` (pixels) first takes the centred square of that
    size (CelebA's 178x218 images: 178); images are then resized to `resolution` (Lanczos)
    when they are not that size already.
    """

    def __init__(
        self,
        name=None,
        *,
        split="train",
        data_dir=None,
        path=None,
        image_key="image",
        label_keys=(),
        resolution=None,
        crop=None,
    ):
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
        stored = tuple(features[image_key].shape)
        if len(stored) != 3 or None in stored:
            raise InputError(f"feature {image_key!r} must be fixed-size HWC; got {stored}")
        height, width, channels = stored
        if crop is not None and not 0 < crop <= min(height, width):
            raise InputError(f"crop must be in (0, {min(height, width)}]; got {crop}")
        side = crop or height
        if side != width and crop is None:
            raise InputError(
                f"feature {image_key!r} holds {height}x{width} images; give crop= (a centred "
                "square) to train on them"
            )
        self.crop = crop
        self.resolution = resolution or side
        self.shape = (self.resolution, self.resolution, channels)
        self.label_keys = (label_keys,) if isinstance(label_keys, str) else tuple(label_keys)
        self.label_classes = {}
        for key in self.label_keys:
            if key not in features:
                raise InputError(
                    f"the dataset has no label feature {key!r}; it has {sorted(features.keys())}"
                )
            entries = features[key].items() if hasattr(features[key], "items") else None
            for label, feature in entries or [(key, features[key])]:
                if label in self.label_classes:
                    raise InputError(f"label features {self.label_keys} both name {label!r}")
                if tuple(feature.shape) != ():
                    raise InputError(
                        f"label {label!r} must be a scalar feature; got shape {feature.shape}"
                    )
                self.label_classes[label] = _feature_classes(feature)

    def __len__(self):
        return len(self.data)

    def _image(self, record):
        image = np.asarray(record[self.image_key], np.uint8)
        if self.crop:
            top = (image.shape[0] - self.crop) // 2
            left = (image.shape[1] - self.crop) // 2
            image = image[top : top + self.crop, left : left + self.crop]
        if image.shape[0] != self.resolution:
            pixels = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
            pixels = pixels.resize((self.resolution,) * 2, Image.Resampling.LANCZOS)
            image = np.asarray(pixels, np.uint8).reshape(self.shape)
        return image

    def examples(self, indices):
        """(images, labels) of `indices`, each record read and decoded once."""
        records = self.data.__getitems__([int(i) for i in indices])
        values = {name: [] for name in self.label_classes}
        for record in records:
            for key in self.label_keys:
                entry = record[key]
                for name, value in entry.items() if isinstance(entry, dict) else [(key, entry)]:
                    values[name].append(value)
        images = np.stack([self._image(r) for r in records])
        return images, {name: _label_column(v, name) for name, v in values.items()}

    def images(self, indices):
        return self.examples(indices)[0]

    def labels(self, indices):
        return self.examples(indices)[1]


def _feature_classes(feature):
    """Number of classes of a tfds scalar feature: ClassLabel's, 2 for bools, None otherwise
    (integers of unknown range and reals)."""
    if getattr(feature, "num_classes", None):
        return int(feature.num_classes)
    return 2 if feature.np_dtype == np.bool_ else None


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


def read_examples(source, indices):
    """(images, labels dict or None) of `indices` from any source, in one read where the
    source can (`examples`)."""
    if not getattr(source, "label_classes", None):
        return source.images(indices), None
    if hasattr(source, "examples"):
        return source.examples(indices)
    return source.images(indices), source.labels(indices)


SOURCES = ("blobs", "folder", "testbed", "tfds")


def open_source(config):
    """The source a data config (a ConfigDict or dict) names: `source` is 'folder' (`path`,
    `resolution`, `labels`: a CSV file), 'tfds' (`name`, `split`, `data_dir` or `path`,
    `image_key`, `label_keys`, `resolution`, `crop`), 'testbed' (generated on the fly:
    `resolution`, `size`, `seed`, `split`; see `jgan.data.testbed`) or 'blobs' (`resolution`,
    `size`, `seed`)."""
    kind = config.get("source")
    if kind == "folder":
        return ImageFolder(config.get("path"), config.get("resolution"), config.get("labels"))
    if kind == "tfds":
        return TfdsSource(
            config.get("name"),
            split=config.get("split", "train"),
            data_dir=config.get("data_dir"),
            path=config.get("path"),
            image_key=config.get("image_key", "image"),
            label_keys=config.get("label_keys") or (),
            resolution=config.get("resolution"),
            crop=config.get("crop"),
        )
    if kind == "testbed":
        from jgan.data.testbed import Testbed

        return Testbed(
            config.get("resolution") or 32,
            config.get("size", 1024),
            seed=config.get("seed", 0),
            split=config.get("split", "train"),
        )
    if kind == "blobs":
        return Blobs(config.get("resolution"), config.get("size", 1024), config.get("seed", 0))
    raise InputError(f"data.source must be one of {SOURCES}; got {kind!r}")
