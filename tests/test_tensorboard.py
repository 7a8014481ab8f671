"""TensorBoard event files written without TensorFlow, read back by parsing the TFRecord
framing and the protocol buffers by hand (and with TensorBoard's own reader when installed)."""

import io
import pathlib
import struct

import numpy as np
import pytest
from PIL import Image

from jgan.training.tensorboard import SummaryWriter, crc32c, masked_crc32c


def records(path):
    """Payloads of a TFRecord file, checking both masked CRCs of every frame."""
    data, out, at = open(path, "rb").read(), [], 0
    while at < len(data):
        header = data[at : at + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[at + 8 : at + 12])
        assert length_crc == masked_crc32c(header)
        payload = data[at + 12 : at + 12 + length]
        (payload_crc,) = struct.unpack("<I", data[at + 12 + length : at + 16 + length])
        assert payload_crc == masked_crc32c(payload)
        out.append(payload)
        at += 16 + length
    assert at == len(data)
    return out


def varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def fields(message):
    """[(field number, value)] of a protobuf message: ints, bytes, or raw 4/8-byte words."""
    out, at = [], 0
    while at < len(message):
        key, at = varint(message, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(message, at)
        elif wire == 1:
            value, at = message[at : at + 8], at + 8
        elif wire == 2:
            length, at = varint(message, at)
            value, at = message[at : at + length], at + length
        elif wire == 5:
            value, at = message[at : at + 4], at + 4
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((number, value))
    return out


def decode_event(payload):
    """(wall_time, step, {tag: float or (h, w, c, png bytes)}, file_version)."""
    event = dict(fields(payload))
    values = {}
    for number, value in fields(event.get(5, b"")):
        assert number == 1
        value = dict(fields(value))
        if 2 in value:
            values[value[1].decode()] = struct.unpack("<f", value[2])[0]
        else:
            image = dict(fields(value[4]))
            values[value[1].decode()] = (image[1], image[2], image[3], image[4])
    return struct.unpack("<d", event[1])[0], event.get(2, 0), values, event.get(3)


@pytest.fixture(scope="module")
def event_file(tmp_path_factory):
    image = np.random.default_rng(0).integers(0, 256, (6, 10, 3), np.uint8)
    with SummaryWriter(tmp_path_factory.mktemp("tb")) as writer:
        writer.scalars(10, {"loss/g": 0.25, "fid": 123.5})
        writer.image(20, "samples", image)
        writer.scalars(2**40, {"negative": -3.0})
    return pathlib.Path(writer.path), image


def test_crc32c_known_answers():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0 and crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
    crc = crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((crc >> 15 | crc << 17) + 0xA282EAD8) & 0xFFFFFFFF


def test_event_file_decodes_to_what_was_written(event_file):
    path, image = event_file
    events = [decode_event(r) for r in records(path)]
    assert events[0][3] == b"brain.Event:2" and len(events) == 4
    _, step, values, _ = events[1]
    assert step == 10 and values == {"loss/g": 0.25, "fid": 123.5}
    _, step, values, _ = events[2]
    height, width, channels, png = values["samples"]
    assert (step, height, width, channels) == (20, 6, 10, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    assert events[3][1] == 2**40 and events[3][2] == {"negative": -3.0}
    assert all(abs(e[0] - events[0][0]) < 60 for e in events)  # wall times in seconds


def test_tensorboard_reads_the_file(event_file):
    """TensorBoard's own reader (when the package is installed; checked by hand with
    tensorboard 2.21)."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    path, image = event_file
    events = accumulator.EventAccumulator(str(path.parent))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["fid", "loss/g", "negative"]
    assert [(s.step, s.value) for s in events.Scalars("fid")] == [(10, 123.5)]
    (sample,) = events.Images("samples")
    assert (sample.step, sample.width, sample.height) == (20, 10, 6)
    decoded = np.asarray(Image.open(io.BytesIO(sample.encoded_image_string)))
    np.testing.assert_array_equal(decoded, image)
