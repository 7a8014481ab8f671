"""Reading images people have: PNG/JPEG (EXIF orientation), grayscale, palette, RGBA over a
background, 16-bit, NumPy arrays and batches; sizes are fitted only when asked."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from jgan.errors import InputError
from jgan.imageio import center_crop, fit, load_batch, read_images


def gradient(h=6, w=8):
    """An RGB uint8 image whose channels all differ."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 30, y * 40, 255 - x * 20 - y * 10], axis=-1).astype(np.uint8)


def pm1(pixels, top=255.0):
    return pixels.astype(np.float64) / top * 2.0 - 1.0


def read_one(path, **options):
    [(name, image)] = read_images(path, **options)
    return name, image


def test_png_rgb_and_grayscale(tmp_path):
    rgb = gradient()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    name, image = read_one(tmp_path / "rgb.png")
    assert name == "rgb" and image.dtype == np.float32 and image.shape == (6, 8, 3)
    np.testing.assert_allclose(image, pm1(rgb), atol=1e-6)
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    _, image = read_one(tmp_path / "gray.png")
    np.testing.assert_allclose(image, np.repeat(pm1(gray)[..., None], 3, -1), atol=1e-6)
    _, one = read_one(tmp_path / "rgb.png", channels=1)
    luma = pm1(rgb) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(one[..., 0], luma, atol=1e-5)


def test_palette_and_rgba_composited(tmp_path):
    rgb = gradient()
    alpha = np.zeros((6, 8), np.uint8)
    alpha[:, 4:] = 255
    alpha[0, 0] = 128
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    _, white = read_one(tmp_path / "rgba.png")
    _, black = read_one(tmp_path / "rgba.png", background=0.0)
    np.testing.assert_allclose(white[:, 4:], pm1(rgb)[:, 4:], atol=1e-6)  # opaque: as is
    np.testing.assert_allclose(white[1:, :4], 1.0)  # transparent: the background
    np.testing.assert_allclose(black[1:, :4], -1.0)
    half = 128 / 255
    np.testing.assert_allclose(white[0, 0], (rgb[0, 0] / 255 * half + (1 - half)) * 2 - 1, 1e-5)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(
        tmp_path / "palette.png"
    )
    _, image = read_one(tmp_path / "palette.png")
    assert image.shape == (6, 8, 3) and np.abs(image - pm1(rgb)).max() < 0.1


def png16(path, pixels, color_type):
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB)."""
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1).astype(">u2").tobytes()
    stride = len(rows) // h
    raw = b"".join(b"\0" + rows[i * stride : (i + 1) * stride] for i in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
    path.write_bytes(data + chunk(b"IEND", b""))


def test_sixteen_bit(tmp_path):
    gray = (np.arange(48).reshape(6, 8) * 1365 + 7).astype(np.uint16)
    png16(tmp_path / "gray16.png", gray, color_type=0)
    _, image = read_one(tmp_path / "gray16.png")
    np.testing.assert_allclose(image[..., 1], pm1(gray, 65535.0), atol=1e-6)  # not 8-bit
    rgb = (gradient().astype(np.uint16) * 257 + 100).astype(np.uint16)
    png16(tmp_path / "rgb16.png", rgb, color_type=2)
    _, image = read_one(tmp_path / "rgb16.png")
    np.testing.assert_allclose(image, pm1(rgb, 65535.0), atol=2.5 / 255)
    np.save(tmp_path / "deep.npy", rgb)
    _, image = read_one(tmp_path / "deep.npy")
    np.testing.assert_allclose(image, pm1(rgb, 65535.0), atol=1e-6)


def test_jpeg_with_exif_orientation(tmp_path):
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :8] = (250, 10, 10)  # red on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after turning 90 degrees clockwise
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    _, image = read_one(tmp_path / "photo.jpg")
    assert image.shape == (24, 16, 3)  # upright
    assert image[:8, :, 0].mean() > 0.8 and image[-8:, :, 0].mean() < -0.8  # red on top


def test_numpy_arrays_and_batches(tmp_path):
    rgb = gradient()
    np.save(tmp_path / "one.npy", rgb)
    np.testing.assert_allclose(read_one(tmp_path / "one.npy")[1], pm1(rgb), atol=1e-6)
    floats = np.stack([pm1(rgb), -pm1(rgb)]).astype(np.float32)
    np.save(tmp_path / "batch.npy", floats)
    images = read_images(tmp_path / "batch.npy")
    assert [name for name, _ in images] == ["batch_0", "batch_1"]
    np.testing.assert_allclose(images[1][1], floats[1])
    np.save(tmp_path / "unit.npy", (rgb / 255.0).astype(np.float32) * 3)
    with pytest.raises(InputError, match=r"read as jgan's range \[-1, 1\]"):
        read_images(tmp_path / "unit.npy")
    np.save(tmp_path / "ints.npy", rgb.astype(np.int64))
    with pytest.raises(InputError, match="uint8, uint16 or float"):
        read_images(tmp_path / "ints.npy")
    np.save(tmp_path / "flat.npy", np.zeros(10))
    with pytest.raises(InputError, match="expected an image"):
        read_images(tmp_path / "flat.npy")


def test_sizes_are_fitted_only_when_asked(tmp_path):
    rgb = gradient(6, 8)
    Image.fromarray(rgb).save(tmp_path / "wide.png")
    with pytest.raises(InputError, match="wide is 8x6 pixels.*4x4.*--resize"):
        load_batch([tmp_path / "wide.png"], 4)
    names, images = load_batch([tmp_path / "wide.png"], 4, resize_to_fit=True)
    assert names == ["wide"] and images.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(center_crop(pm1(rgb)), pm1(rgb)[:, 1:7])
    same = fit(pm1(rgb)[:, 1:7], 6)
    np.testing.assert_array_equal(same, pm1(rgb)[:, 1:7])
    flat = np.full((6, 8, 3), 0.25, np.float32)
    np.testing.assert_allclose(fit(flat, 3, resize_to_fit=True), 0.25, atol=1e-5)
    with pytest.raises(InputError, match="no such image file"):
        read_images(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="not an image Pillow can read"):
        read_images(tmp_path / "text.png")
