"""The crop rule: faces scaled 1.2 and squared, bodies as given, outside parts padded white."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from comicid.data.crops import Box, crop_part, face_box


def test_face_box_scales_about_centre_then_squares() -> None:
    box = face_box(Box(10, 20, 30, 60))  # 20 x 40, centre (20, 40)
    assert box == Box(20 - 24, 40 - 24, 20 + 24, 40 + 24)


def test_body_is_cut_as_given() -> None:
    page = Image.new("RGB", (100, 100), "black")
    assert crop_part(page, "body", Box(10, 20, 40, 90)).size == (30, 70)
    assert crop_part(page, "character", None).size == (100, 100)


def test_face_crop_is_square_and_padded_outside_the_page() -> None:
    page = Image.new("RGB", (50, 50), "black")
    crop = crop_part(page, "face", Box(0, 0, 20, 10))  # scaled side 24, centred on (10, 5)
    assert crop.size == (24, 24)
    pixels = np.asarray(crop)
    assert pixels[0, 0].tolist() == [255, 255, 255]  # outside the page: white
    assert pixels[12, 12].tolist() == [0, 0, 0]  # inside the page: page pixels


def test_box_fully_outside_is_all_padding() -> None:
    crop = crop_part(Image.new("RGB", (10, 10), "black"), "body", Box(20, 20, 30, 30))
    assert np.asarray(crop).min() == 255


@pytest.mark.parametrize(("box", "tiny"), [(Box(0, 0, 3, 50), True), (Box(0, 0, 4, 4), False)])
def test_tiny_boxes_are_flagged(box: Box, tiny: bool) -> None:
    assert box.is_tiny is tiny
