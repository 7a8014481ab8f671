"""Training data without TensorFlow: random-access sources (image folders, tfds array_record
datasets, arrays, procedural blobs), a TF-free array_record writer, and deterministic,
resumable, per-process batches."""

from jgan.data.pipeline import Batches, global_batch
from jgan.data.sources import ArraySource, Blobs, ImageFolder, TfdsSource, open_source
from jgan.data.writer import write_image_dataset, write_image_folder

__all__ = [
    "ArraySource",
    "Batches",
    "Blobs",
    "ImageFolder",
    "TfdsSource",
    "global_batch",
    "open_source",
    "write_image_dataset",
    "write_image_folder",
]
