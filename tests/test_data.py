"""Training data: sources, the TF-free array_record writer and reader, deterministic batches."""

import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import PartitionSpec as P
from PIL import Image

from jgan import parallel
from jgan.data import (
    ArraySource,
    Batches,
    Blobs,
    ImageFolder,
    TfdsSource,
    global_batch,
    open_source,
    write_image_dataset,
    write_image_folder,
)
from jgan.errors import InputError


def indexed_images(n, size=4):
    """Image i: left half = i, right half = 255 - i, so index and mirroring can be read back."""
    images = np.zeros((n, size, size, 3), np.uint8)
    images[:, :, : size // 2] = np.arange(n, dtype=np.uint8)[:, None, None, None]
    images[:, :, size // 2 :] = 255 - np.arange(n, dtype=np.uint8)[:, None, None, None]
    return images


def indices_and_flips(batch):
    """Index of each image of an `indexed_images` batch and whether it was mirrored."""
    left, right = batch[:, 0, 0, 0].astype(int), batch[:, 0, -1, 0].astype(int)
    assert np.all(left + right == 255)
    flipped = left > 127
    return np.where(flipped, right, left), flipped


def test_epochs_are_seeded_permutations_and_mirror_flips_half():
    source = ArraySource(indexed_images(40))
    batches = Batches(source, 8, seed=3, mirror=True)
    stream = [next(batches)["image"] for _ in range(10)]  # two epochs
    batches.close()
    indices, flips = map(np.concatenate, zip(*(indices_and_flips(b) for b in stream), strict=True))
    first, second = indices[:40], indices[40:]
    assert sorted(first) == list(range(40)) and sorted(second) == list(range(40))
    assert not np.array_equal(first, second)
    assert 10 < flips.sum() < 70
    # A flipped image is exactly the source image mirrored left-right.
    image = stream[0][np.argmax(flips[:8])]
    np.testing.assert_array_equal(image, source.images([indices[np.argmax(flips[:8])]])[0, :, ::-1])
    # Same seed, same stream; another seed, another order; no shuffle, the source's order.
    again = Batches(source, 8, seed=3, mirror=True)
    np.testing.assert_array_equal(next(again)["image"], stream[0])
    again.close()
    other = Batches(source, 8, seed=4, mirror=True)
    assert not np.array_equal(next(other)["image"], stream[0])
    other.close()
    plain = Batches(source, 8, shuffle=False)
    np.testing.assert_array_equal(indices_and_flips(next(plain)["image"])[0], np.arange(8))
    plain.close()


def test_resuming_from_a_position_continues_the_same_stream():
    source = ArraySource(indexed_images(12))  # batches straddle epochs (12 is not 8k)
    batches = Batches(source, 8, seed=1, mirror=True)
    stream = [next(batches)["image"] for _ in range(6)]
    position = batches.position
    assert position == 48
    following = [next(batches)["image"] for _ in range(3)]
    batches.close()
    resumed = Batches(source, 8, seed=1, mirror=True, position=position)
    for expected in following:
        np.testing.assert_array_equal(next(resumed)["image"], expected)
    resumed.close()
    midway = Batches(source, 8, seed=1, mirror=True, position=16, prefetch=0, workers=1)
    np.testing.assert_array_equal(next(midway)["image"], stream[2])
    midway.close()


def test_processes_read_their_slices_of_the_global_batch():
    source = ArraySource(indexed_images(30))
    whole = Batches(source, 8, seed=0, process_index=0, process_count=1)
    parts = [
        Batches(source, 8, seed=0, process_index=k, process_count=2, position=0) for k in (0, 1)
    ]
    for _ in range(5):
        expected = next(whole)["image"]
        got = np.concatenate([next(p)["image"] for p in parts])
        np.testing.assert_array_equal(got, expected)
    for batches in (whole, *parts):
        batches.close()
    with pytest.raises(InputError, match="multiple of the number of processes"):
        Batches(source, 6, process_index=0, process_count=4)


def test_global_batch_is_split_over_devices():
    local = {"image": indexed_images(8)}
    batch = global_batch(local, parallel.batch_sharded())
    assert batch["image"].sharding.spec == P("data") and len(jax.devices()) == 4
    assert batch["image"].addressable_shards[1].data.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(np.asarray(batch["image"]), local["image"])


def test_blobs_are_deterministic_per_index():
    blobs = Blobs(16, 100, seed=2)
    a = blobs.images([5, 7])
    np.testing.assert_array_equal(Blobs(16, 100, seed=2).images([7])[0], a[1])
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.uint8
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(Blobs(16, 100, seed=3).images([5])[0], a[0])


def test_image_folder_reads_sorted_rgb_and_resizes(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    (tmp_path / "sub").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "b.png")
    Image.fromarray(images[1]).save(tmp_path / "sub" / "a.png")
    Image.fromarray(images[2][..., 0]).save(tmp_path / "a.png")  # grayscale
    (tmp_path / "notes.txt").write_text("not an image")
    folder = ImageFolder(tmp_path)
    assert folder.files == ["a.png", "b.png", "sub/a.png"] and folder.shape == (8, 8, 3)
    got = folder.images([0, 1, 2])
    np.testing.assert_array_equal(got[0], np.repeat(images[2][..., :1], 3, axis=-1))
    np.testing.assert_array_equal(got[1:], images[:2])
    half = ImageFolder(tmp_path, resolution=4).images([1])[0]
    assert half.shape == (4, 4, 3)
    np.testing.assert_allclose(half.mean(), images[0].mean(), atol=8)
    Image.fromarray(images[0][:, :6]).save(tmp_path / "c.png")
    with pytest.raises(InputError, match="must be square; got 6x8"):
        ImageFolder(tmp_path).images([2])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        ImageFolder(tmp_path / "nowhere")


def test_arrayrecord_round_trip_without_tensorflow(tmp_path):
    images = indexed_images(10, size=8)
    labels = tfds.features.ClassLabel(num_classes=3)
    splits = {
        "train": [{"image": im, "label": i % 3} for i, im in enumerate(images[:7])],
        "test": [{"image": im, "label": 0} for im in images[7:]],
    }
    path = write_image_dataset(
        tmp_path, "toy_faces", splits, shape=(8, 8, 3), features={"label": labels}
    )
    assert path == str(tmp_path / "toy_faces" / "1.0.0")
    train = TfdsSource("toy_faces", data_dir=tmp_path, split="train")
    assert len(train) == 7 and train.shape == (8, 8, 3)
    np.testing.assert_array_equal(train.images([6, 0, 3]), images[[6, 0, 3]])
    test = TfdsSource(path=path, split="test")
    np.testing.assert_array_equal(test.images([0, 1, 2]), images[7:])
    raw = tfds.data_source("toy_faces", data_dir=str(tmp_path), split="train", download=False)
    assert [raw[i]["label"] for i in range(4)] == [0, 1, 2, 0]
    assert "tensorflow" not in sys.modules
    # Opened through a data config, the batches pipeline reads it like any source.
    config = {"source": "tfds", "name": "toy_faces", "data_dir": str(tmp_path), "split": "test"}
    batches = Batches(open_source(config), 3, shuffle=False)
    np.testing.assert_array_equal(next(batches)["image"], images[7:])
    batches.close()
    with pytest.raises(InputError, match="exists"):
        write_image_dataset(tmp_path, "toy_faces", {"train": []}, shape=(8, 8, 3))
    with pytest.raises(InputError, match="snake_case"):
        write_image_dataset(tmp_path, "ToyFaces", {"train": []}, shape=(8, 8, 3))
    with pytest.raises(InputError, match=r"uint8 of shape \(8, 8, 3\)"):
        write_image_dataset(tmp_path, "bad", {"train": [images[0][:4]]}, shape=(8, 8, 3))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(InputError, match="Prepare it offline"):
        TfdsSource("missing_dataset", data_dir=tmp_path)
    with pytest.raises(InputError, match="no feature 'picture'"):
        TfdsSource(path=path, image_key="picture")


def test_image_folder_to_arrayrecord(tmp_path):
    images = indexed_images(5, size=8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i:03d}.png")
    path = write_image_folder(tmp_path, tmp_path / "tfds", "folder_faces", resolution=8)
    np.testing.assert_array_equal(TfdsSource(path=path).images(range(5)), images)


def test_open_source_names_the_choices():
    with pytest.raises(
        InputError, match=r"data.source must be one of \('blobs', 'folder', 'testbed', 'tfds'\)"
    ):
        open_source({"source": "lsun"})
    assert len(open_source({"source": "blobs", "resolution": 8, "size": 10})) == 10
