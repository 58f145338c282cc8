"""The registry, declared dimensions, and the two baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comicid.errors import ModelError
from comicid.models import create_backbone, list_backbones
from comicid.models.backbones import ColorHistogram, _bin_counts_numpy, _bin_counts_torch, colour_histogram_uint8

NAMES = ["color-hist", "effnet-lite0-imagenet", "mobilenetv2-imagenet", "random", "resnet18",
         "resnet50", "tiny-cnn"]


def test_registry_lists_every_backbone() -> None:
    assert list_backbones() == NAMES


def test_unknown_backbone_lists_the_available_names() -> None:
    with pytest.raises(ModelError, match="unknown backbone 'vit'.*effnet-lite0-imagenet.*tiny-cnn"):
        create_backbone("vit")


@pytest.mark.parametrize("name", NAMES)
def test_feature_dim_is_as_declared(name: str) -> None:
    backbone = create_backbone(name, input_size=32)
    assert backbone.input_size == 32 and len(backbone.mean) == len(backbone.std) == 3
    with torch.inference_mode():
        features = backbone(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, backbone.feature_dim)
    assert features.dtype == torch.float32


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first, second = create_backbone("tiny-cnn"), create_backbone("tiny-cnn")
    assert torch.rand(1) == expected_next
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def _on_white(size: int, box: tuple[int, int, int, int], colour: tuple[float, float, float]) -> torch.Tensor:
    image = torch.ones(3, size, size)
    x0, y0, x1, y1 = box
    image[:, y0:y1, x0:x1] = torch.tensor(colour).view(3, 1, 1)
    return image


def test_color_hist_ignores_white_background() -> None:
    hist = create_backbone("color-hist")
    small = _on_white(64, (10, 10, 20, 40), (1.0, 0.0, 0.0))  # red bar, little of the crop
    large = _on_white(64, (0, 0, 64, 64), (1.0, 0.0, 0.0))  # all red
    with torch.inference_mode():
        features = hist(torch.stack([small, large]))
    red_bin = 3 * 16 + 0 * 4 + 0  # r in bin 3, g and b in bin 0
    expected = torch.zeros(64)
    expected[red_bin] = 1.0
    torch.testing.assert_close(features[0], expected)
    torch.testing.assert_close(features[1], expected)


def test_color_hist_of_blank_page_is_zero_and_near_white_counts_as_background() -> None:
    level = ColorHistogram.BACKGROUND_LEVEL / 255
    page = torch.full((1, 3, 16, 16), level)
    with torch.inference_mode():
        assert torch.count_nonzero(create_backbone("color-hist")(page)) == 0


def test_random_baseline_is_a_function_of_the_crop() -> None:
    rand = create_backbone("random")
    crops = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        features = rand(torch.cat([crops, crops[:1]]))
    assert torch.equal(features[0], features[2])
    assert not torch.allclose(features[0], features[1])


def _reference_histogram(pixels: torch.Tensor) -> torch.Tensor:
    """The colour histogram by its definition, one crop and one pixel class at a time (slow, obvious)."""
    rows = []
    for crop in pixels.numpy().astype(int):
        foreground = (crop < ColorHistogram.BACKGROUND_LEVEL).any(axis=0)
        bins = crop[:, foreground] // 64  # (3, F) in 0..3
        counts = np.zeros(64)
        np.add.at(counts, bins[0] * 16 + bins[1] * 4 + bins[2], 1)
        rows.append(counts / max(1, foreground.sum()))
    return torch.tensor(np.array(rows), dtype=torch.float32)


def test_colour_histogram_of_8_bit_levels_is_exact_on_every_path() -> None:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (5, 3, 24, 24), dtype=torch.uint8, generator=generator)
    pixels[0] = 255  # a blank crop: zero vector
    pixels[1, :, :12] = 245  # half near-white background
    expected = _reference_histogram(pixels)
    assert torch.count_nonzero(expected[0]) == 0 and torch.count_nonzero(expected[1]) > 0
    torch.testing.assert_close(colour_histogram_uint8(pixels), expected)  # numpy branch (CPU)
    assert torch.equal(_bin_counts_torch(pixels), _bin_counts_numpy(pixels))  # the GPU/trace branch
    with torch.inference_mode():  # the float backbone, from [0, 1] inputs
        torch.testing.assert_close(create_backbone("color-hist")(pixels.float() / 255), expected)


def test_colour_histogram_traces_with_a_free_batch_size() -> None:
    hist = create_backbone("color-hist").eval()
    generator = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        traced = torch.jit.trace(hist, torch.rand(2, 3, 16, 16, generator=generator))
        probe = torch.rand(5, 3, 16, 16, generator=generator)
        torch.testing.assert_close(traced(probe), hist(probe))
