"""The image loader turns every mode a user may bring into 8-bit RGB, or fails clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comicid.data.images import load_image
from comicid.errors import ImageReadError


def test_transparent_rgba_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # red hidden under zero alpha
    image.putpixel((0, 0), (0, 0, 255, 255))
    image.save(tmp_path / "a.png")
    pixels = np.asarray(load_image(tmp_path / "a.png"))
    assert pixels[1, 1].tolist() == [255, 255, 255]
    assert pixels[0, 0].tolist() == [0, 0, 255]


def test_palette_with_transparent_index(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((2, 2), 1)
    image.save(tmp_path / "p.png", transparency=0)
    pixels = np.asarray(load_image(tmp_path / "p.png"))
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[2, 2].tolist() == [0, 255, 0]


def test_grayscale_cmyk_and_sixteen_bit(tmp_path: Path) -> None:
    Image.new("L", (3, 3), 100).save(tmp_path / "g.png")
    Image.new("CMYK", (3, 3), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16)).save(tmp_path / "h.png")
    assert np.asarray(load_image(tmp_path / "g.png"))[0, 0].tolist() == [100, 100, 100]
    red = np.asarray(load_image(tmp_path / "c.jpg"))[1, 1]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert np.asarray(load_image(tmp_path / "h.png"))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (6, 2), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (2, 6)


def test_missing_corrupt_and_truncated_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "none.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="not a readable image"):
        load_image(tmp_path / "text.png")
    Image.new("RGB", (64, 64), "red").save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_very_large_pages_are_read(tmp_path: Path) -> None:
    Image.new("L", (15000, 13000), 255).save(tmp_path / "big.png")  # 195 MP: above PIL's default guard
    assert load_image(tmp_path / "big.png").size == (15000, 13000)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares ``width x height`` RGB pixels and holds none: costs nothing to write."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_a_page_over_the_pixel_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    # 20000 x 20000 = 400 MP: under the old 1-gigapixel limit it was decoded, using 4.8 GB to import.
    _png_header_only(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(ImageReadError, match="too large"):
        load_image(tmp_path / "huge.png")
