"""Torch-free, TensorFlow-free readers and converters of the checkpoints people have."""
