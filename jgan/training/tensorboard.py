"""TensorBoard event files without TensorFlow: scalars and PNG images.

An event file is a sequence of TFRecords, each
    uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
(little-endian; CRC-32C, masked as TFRecord masks it), whose data is a serialized
`tensorflow.Event` protocol buffer. The few messages needed are encoded here by hand:
    Event         wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
                  summary = 5 (Summary)
    Summary       value = 1 (repeated Value)
    Value         tag = 1 (string), simple_value = 2 (float), image = 4 (Image)
    Image         height = 1, width = 2, colorspace = 3 (int32), encoded_image_string = 4
The first record of a file is the version event "brain.Event:2", as TensorBoard expects.
"""

import io
import os
import socket
import struct
import time

import numpy as np
from PIL import Image


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli) of `data`."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data):
    """One TFRecord frame holding `data`."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def _varint(value):
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf encodes it
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, wire_type, payload):
    return _varint(number << 3 | wire_type) + payload


def _int_field(number, value):
    return _field(number, 0, _varint(int(value)))


def _bytes_field(number, data):
    data = data.encode() if isinstance(data, str) else data
    return _field(number, 2, _varint(len(data)) + data)


def _event(step, payload_field, wall_time=None):
    wall_time = time.time() if wall_time is None else wall_time
    return _field(1, 1, struct.pack("<d", wall_time)) + _int_field(2, step) + payload_field


def scalar_value(tag, value):
    """A Summary.Value with a float `simple_value`."""
    return _bytes_field(1, tag) + _field(2, 5, struct.pack("<f", float(value)))


def png_bytes(image_uint8):
    """PNG encoding of one HWC uint8 image (1, 3 or 4 channels)."""
    image = image_uint8[..., 0] if image_uint8.shape[-1] == 1 else image_uint8
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_value(tag, image_uint8):
    """A Summary.Value with a PNG-encoded Image of one HWC uint8 image."""
    height, width, channels = image_uint8.shape
    image = (
        _int_field(1, height)
        + _int_field(2, width)
        + _int_field(3, channels)
        + _bytes_field(4, png_bytes(image_uint8))
    )
    return _bytes_field(1, tag) + _bytes_field(4, image)


class SummaryWriter:
    """Appends events to a new file `events.out.tfevents.<time>.<host>` in `logdir`.

    Each call writes and flushes whole records, so TensorBoard can read the file while the run
    goes on and a killed run leaves only complete records.
    """

    def __init__(self, logdir):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "ab")  # noqa: SIM115 (closed by close())
        self._write(_event(0, _bytes_field(3, "brain.Event:2")))

    def _write(self, event):
        self._file.write(tfrecord(event))
        self._file.flush()

    def summary(self, step, values):
        """Writes one event at `step` holding the encoded Summary.Values `values`."""
        summary = b"".join(_bytes_field(1, value) for value in values)
        self._write(_event(step, _bytes_field(5, summary)))

    def scalars(self, step, scalars):
        """Writes {tag: number} at `step`."""
        self.summary(step, [scalar_value(tag, value) for tag, value in scalars.items()])

    def image(self, step, tag, image_uint8):
        """Writes one HWC uint8 image at `step`."""
        self.summary(step, [image_value(tag, image_uint8)])

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
