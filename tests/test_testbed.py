"""The testbed dataset (known factors, determinism, statistics, tfds round trip) and labels
through the data pipeline (array, folder and tfds sources, batches, mirroring)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jgan.data import (
    ArraySource,
    Batches,
    ImageFolder,
    TfdsSource,
    open_source,
    write_image_dataset,
)
from jgan.data import testbed as T
from jgan.errors import InputError


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The testbed written twice with the same arguments: (first path, second path)."""
    paths = [
        T.write_testbed(tmp_path_factory.mktemp(f"testbed{i}"), train=60, test=20, seed=3)
        for i in range(2)
    ]
    return paths


def test_factors_follow_the_documented_distributions():
    classes, values = T.sample_factors(np.arange(20_000), seed=0)
    n = 20_000
    for factor in T.FACTORS:
        frequency = np.bincount(classes[factor.name], minlength=len(factor.classes)) / n
        p = np.asarray(factor.probabilities)
        assert np.all(np.abs(frequency - p) < 4 * np.sqrt(p * (1 - p) / n)), factor.name
        low, high = np.asarray(factor.ranges)[classes[factor.name]].T
        value = values[factor.name]
        if factor.name.endswith("_hue"):  # hue ranges wrap around 1
            value = np.where(value > high + 0.5, value - 1.0, value)
        assert np.all((value >= low - 1e-6) & (value <= high + 1e-6)), factor.name
    # The imbalanced factor: 80% dark, 20% light backgrounds.
    light = classes["background_brightness"].mean()
    assert 0.19 < light < 0.21
    # Independence: every pair's joint frequencies are the products of the marginals.
    names = T.FACTOR_NAMES
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ka, kb = classes[a].max() + 1, classes[b].max() + 1
            joint = np.bincount(classes[a] * kb + classes[b], minlength=ka * kb) / n
            product = np.outer(np.bincount(classes[a]) / n, np.bincount(classes[b]) / n)
            assert np.abs(joint - product.ravel()).max() < 0.015, (a, b)


def test_images_are_a_function_of_seed_split_and_index():
    source = T.Testbed(32, 100, seed=1)
    images = source.images(range(10))
    np.testing.assert_array_equal(source.images([7, 2]), images[[7, 2]])
    np.testing.assert_array_equal(T.Testbed(32, 5, seed=1).images(range(5)), images[:5])
    assert not np.array_equal(T.Testbed(32, 10, seed=2).images(range(10)), images)
    assert not np.array_equal(T.Testbed(32, 10, seed=1, split="test").images(range(10)), images)
    assert images.dtype == np.uint8 and images.shape == (10, 32, 32, 3)


def test_rendering_known_answers():
    np.testing.assert_allclose(
        T.hsv_to_rgb(np.array([0.0, 1 / 3, 2 / 3, 0.5]), 1.0, 1.0),
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]],
        atol=1e-12,
    )
    np.testing.assert_allclose(T.hsv_to_rgb(0.3, 0.0, 0.4), [0.4, 0.4, 0.4])
    resolution, r = 64, 0.2
    values = {
        "shape": np.array([0.0, 1.0, 2.0]),
        "object_hue": np.zeros(3),  # red
        "background_hue": np.full(3, 2 / 3),
        "background_brightness": np.zeros(3),  # black
        "size": np.full(3, r),
        "position_x": np.full(3, 0.5),
        "position_y": np.full(3, 0.5),
    }
    images = T.render(values, resolution).astype(np.float64)
    red = np.rint(255 * T.OBJECT_VALUE * (1 - T.OBJECT_SATURATION))
    np.testing.assert_array_equal(images[:, 32, 32], [[242, red, red]] * 3)
    np.testing.assert_array_equal(images[:, 0, 0], 0)
    # Anti-aliased coverage adds up to each shape's area (in pixels).
    area = images[..., 0].sum(axis=(1, 2)) / 242 / resolution**2
    s, R = T.SQUARE_HALF_SIDE * r, T.TRIANGLE_CIRCUMRADIUS * r
    np.testing.assert_allclose(area, [np.pi * r**2, 4 * s**2, 3 * np.sqrt(3) / 4 * R**2], rtol=0.03)
    # A triangle points up: its top half covers less than its bottom half.
    assert images[2, :32, :, 0].sum() < images[2, 32:, :, 0].sum()
    with pytest.raises(InputError, match=r"resolution must be in \[32, 64\]"):
        T.render(values, 16)


def test_written_dataset_is_byte_identical_and_reads_back_with_labels(written):
    first, second = written
    for name in ("jgan_testbed-train.array_record-00000-of-00001", "dataset_info.json"):
        with open(f"{first}/{name}", "rb") as a, open(f"{second}/{name}", "rb") as b:
            assert a.read() == b.read(), name
    for split, size in (("train", 60), ("test", 20)):
        source = TfdsSource(path=first, split=split, label_keys="label")
        generated = T.Testbed(32, size, seed=3, split=split)
        assert len(source) == size and source.label_classes == generated.label_classes
        images, labels = source.examples(range(size))
        np.testing.assert_array_equal(images, generated.images(range(size)))
        expected = generated.labels(range(size))
        assert set(labels) == set(T.FACTOR_NAMES)
        for name in T.FACTOR_NAMES:
            np.testing.assert_array_equal(labels[name], expected[name])
            assert labels[name].dtype == np.int32
    values = TfdsSource(path=first, split="test", label_keys=("value",))
    assert all(k is None for k in values.label_classes.values())
    np.testing.assert_array_equal(
        values.labels([4])["size"], T.Testbed(32, 20, seed=3, split="test").values([4])["size"]
    )
    with pytest.raises(InputError, match="both name '"):
        TfdsSource(path=first, label_keys=("label", "value"))
    with pytest.raises(InputError, match="no label feature 'attributes'"):
        TfdsSource(path=first, label_keys="attributes")


def test_batches_carry_labels_and_mirroring_keeps_them(written):
    source = open_source(
        {"source": "tfds", "path": written[0], "split": "train", "label_keys": ("label",)}
    )
    batches = Batches(source, 12, seed=0, mirror=True)
    batch = next(batches)
    batches.close()
    plain = Batches(source, 12, seed=0, mirror=False)
    unmirrored = next(plain)
    plain.close()
    flipped = np.any(batch["image"] != unmirrored["image"], axis=(1, 2, 3))
    assert 0 < flipped.sum() < 12
    np.testing.assert_array_equal(batch["image"][flipped], unmirrored["image"][flipped, :, ::-1])
    for name in T.FACTOR_NAMES:
        np.testing.assert_array_equal(batch["label"][name], unmirrored["label"][name])
    on_the_fly = open_source({"source": "testbed", "resolution": 32, "size": 60, "seed": 3})
    images, labels = on_the_fly.examples(range(60))
    order = np.array(
        [np.flatnonzero(np.all(images == u, axis=(1, 2, 3)))[0] for u in unmirrored["image"]]
    )
    np.testing.assert_array_equal(unmirrored["label"]["shape"], labels["shape"][order])


def test_array_and_folder_sources_with_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    source = ArraySource(images, {"smile": np.array([True, False, True, True]), "age": [1.5] * 4})
    assert source.label_classes == {"smile": 2, "age": None}
    labels = Batches(source, 4, shuffle=False).batch_at(0)["label"]
    np.testing.assert_array_equal(labels["smile"], [1, 0, 1, 1])
    assert labels["smile"].dtype == np.int32 and labels["age"].dtype == np.float32
    assert ArraySource(images, np.arange(4)).label_classes == {"label": 4}
    assert "label" not in Batches(ArraySource(images), 2).batch_at(0)
    with pytest.raises(InputError, match=r"one value per image, shape \(4,\)"):
        ArraySource(images, {"smile": [1, 0]})

    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    (tmp_path / "labels.csv").write_text(
        "file,kind,weight\n3.png,2,0.5\n0.png,0,1\n1.png,1,2\n2.png,0,3\n"
    )
    folder = ImageFolder(tmp_path, labels=tmp_path / "labels.csv")
    assert folder.label_classes == {"kind": 3, "weight": None}
    np.testing.assert_array_equal(folder.labels([0, 3])["kind"], [0, 2])
    np.testing.assert_allclose(folder.labels([0, 3])["weight"], [1.0, 0.5])
    (tmp_path / "short.csv").write_text("file,kind\n0.png,1\n")
    with pytest.raises(InputError, match=r"no labels for 3 images"):
        ImageFolder(tmp_path, labels=tmp_path / "short.csv")


def test_tfds_source_crops_and_resizes_celeba_like_images(tmp_path):
    """CelebA's layout: 218x178 images and a dict of boolean 'attributes'."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 218, 178, 3), dtype=np.uint8)
    attributes = tfds.features.FeaturesDict({"Smiling": np.bool_, "Male": np.bool_})
    examples = [
        {"image": im, "attributes": {"Smiling": i % 2 == 0, "Male": i == 2}}
        for i, im in enumerate(images)
    ]
    path = write_image_dataset(
        tmp_path,
        "celeb_like",
        {"train": examples},
        shape=(218, 178, 3),
        features={"attributes": attributes},
    )
    source = TfdsSource(path=path, label_keys="attributes", crop=178, resolution=64)
    assert source.shape == (64, 64, 3) and source.label_classes == {"Smiling": 2, "Male": 2}
    got, labels = source.examples([0, 1, 2])
    np.testing.assert_array_equal(labels["Smiling"], [1, 0, 1])
    np.testing.assert_array_equal(labels["Male"], [0, 0, 1])
    square = Image.fromarray(images[1][20:198]).resize((64, 64), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(got[1], np.asarray(square))
    with pytest.raises(InputError, match="give crop="):
        TfdsSource(path=path)
    with pytest.raises(InputError, match=r"crop must be in \(0, 178\]"):
        TfdsSource(path=path, crop=200)


def test_testbed_source_errors():
    with pytest.raises(InputError, match="split must be one of"):
        T.Testbed(32, 10, split="validation")
    with pytest.raises(InputError, match="resolution in"):
        open_source({"source": "testbed", "resolution": 128})
    with pytest.raises(InputError, match="out of range"):
        T.Testbed(32, 10).images([10])


@pytest.mark.parametrize("resolution", [32, 64])
def test_read_factors_recovers_every_class_of_rendered_images(resolution):
    source = T.Testbed(resolution, 400, split="test")
    images, classes = source.examples(np.arange(400))
    read = T.read_factors(images)
    for name in T.FACTOR_NAMES:
        np.testing.assert_array_equal(read[name], classes[name], err_msg=name)


def test_read_factors_sees_what_changed_and_rejects_float_images():
    images, classes = T.Testbed(32, 50).examples(np.arange(50))
    values = T.Testbed(32, 50).values(np.arange(50))
    moved = dict(values, position_x=1.0 - values["position_x"])  # mirror the object's place
    read = T.read_factors(T.render(moved))
    np.testing.assert_array_equal(read["position_x"], 1 - classes["position_x"])
    np.testing.assert_array_equal(read["shape"], classes["shape"])
    with pytest.raises(InputError, match="uint8 RGB images"):
        T.read_factors(images.astype(np.float32))


def test_rgb_to_hsv_inverts_hsv_to_rgb():
    rng = np.random.default_rng(0)
    hsv = rng.uniform(0.05, 0.95, (3, 1000))
    back = T.rgb_to_hsv(T.hsv_to_rgb(*hsv))
    np.testing.assert_allclose(np.stack(back), hsv, atol=1e-9)
