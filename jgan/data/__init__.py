"""Training data without TensorFlow: random-access sources (image folders, tfds array_record
datasets, arrays, procedural blobs, the testbed of known factors), optionally with per-example
labels, a TF-free array_record writer, and deterministic, resumable, per-process batches."""

from jgan.data.pipeline import Batches, global_batch
from jgan.data.sources import ArraySource, Blobs, ImageFolder, TfdsSource, open_source
from jgan.data.testbed import Testbed, write_testbed
from jgan.data.writer import write_image_dataset, write_image_folder

__all__ = [
    "ArraySource",
    "Batches",
    "Blobs",
    "ImageFolder",
    "Testbed",
    "TfdsSource",
    "global_batch",
    "open_source",
    "write_image_dataset",
    "write_image_folder",
    "write_testbed",
]
