import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from host.image_io import load_rgb, save_png
from lic.errors import LicError


def write_png16_rgb(path, a):
    """Pillow cannot write 16-bit RGB PNGs; this writes one by the PNG spec."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_rgb_passes_through_without_warning(tmp_path, rgb_image):
    save_png(tmp_path / "a.png", rgb_image)
    rgb, warnings = load_rgb(tmp_path / "a.png")
    assert np.array_equal(rgb, rgb_image) and warnings == []


@pytest.mark.parametrize("mode,expect", [("L", "greyscale"), ("RGBA", "alpha"), ("LA", "alpha")])
def test_converted_modes_warn(tmp_path, rgb_image, mode, expect):
    Image.fromarray(rgb_image).convert(mode).save(tmp_path / "a.png")
    rgb, warnings = load_rgb(tmp_path / "a.png")
    assert rgb.shape == (75, 100, 3) and rgb.dtype == np.uint8
    assert any(expect in w for w in warnings)


def test_16bit_grey_keeps_top_bits(tmp_path):
    a = (np.arange(60, dtype=np.uint16).reshape(6, 10) * 1000)
    Image.fromarray(a).save(tmp_path / "g16.png")
    rgb, warnings = load_rgb(tmp_path / "g16.png")
    assert np.array_equal(rgb[:, :, 1], (a >> 8).astype(np.uint8))
    assert any("8-bit" in w for w in warnings)


def test_16bit_rgb_is_reported(tmp_path):
    a = (np.arange(36, dtype=np.uint16).reshape(3, 4, 3) * 1800)
    write_png16_rgb(tmp_path / "c16.png", a)
    rgb, warnings = load_rgb(tmp_path / "c16.png")
    assert np.array_equal(rgb, (a >> 8).astype(np.uint8))
    assert any("16-bit RGB" in w for w in warnings)


def test_not_an_image(tmp_path):
    (tmp_path / "x.png").write_bytes(b"hello")
    with pytest.raises(LicError, match="not an image"):
        load_rgb(tmp_path / "x.png")


def test_truncated_image(tmp_path, rgb_image):
    save_png(tmp_path / "a.png", rgb_image)
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(LicError):
        load_rgb(tmp_path / "t.png")


def test_outputs_get_the_umask_mode(tmp_path, rgb_image):
    import os

    old = os.umask(0o022)
    try:
        save_png(tmp_path / "a.png", rgb_image)
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644
