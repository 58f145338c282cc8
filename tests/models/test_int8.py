"""The int8 graph: exact static padding, faithful quantisation, precision selection, threaded inference."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageDraw

from comicid.errors import ConfigError, ImageReadError, ModelError
from comicid.cli import main as comicid_main
from comicid.data.synth import generate_books
from comicid.models import embed_crops, load_embedding_model
from comicid.models.embedding_model import DEFAULT_MODEL
from comicid.models.facebody import save_finetuned_model
from comicid.models.int8 import Int8Backbone, int8_graph_path, quantize_backbone, with_static_padding
from comicid.models.quantize import quantize_checkpoint
from comicid.data.preprocess import letterbox_uint8, normalise_batch

from .test_model_names import tiny_finetuned

T = TypeVar("T")


def drawings(n: int, size: int = 48, seed: int = 0) -> list[Image.Image]:
    """Ellipses of random colours on white: crops with the statistics of drawn characters."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        image = Image.new("RGB", (size, size), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x0, x1 = sorted(int(v) for v in rng.integers(0, size, 2))
            y0, y1 = sorted(int(v) for v in rng.integers(0, size, 2))
            draw.ellipse((x0, y0, x1 + 2, y1 + 2), fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
                         outline=(0, 0, 0))
        images.append(image)
    return images


def normalised(model: torch.nn.Module, images: list[Image.Image]) -> torch.Tensor:
    pixels = torch.stack([letterbox_uint8(image, model.input_size) for image in images])
    return normalise_batch(pixels, model.mean, model.std)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1)


@pytest.fixture(scope="module")
def quantised_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny stage-2 checkpoint with its int8 graph beside it."""
    folder = tmp_path_factory.mktemp("int8")
    model = tiny_finetuned(folder / "tiny.pt")
    quantize_backbone(model.backbone, normalised(model, drawings(64)), int8_graph_path(folder / "tiny.pt"),
                      file_sha256(folder / "tiny.pt"))
    return folder / "tiny.pt"


def test_static_padding_is_exact_and_removes_dynamic_padding() -> None:
    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
    static = with_static_padding(net, 64)
    assert not any(isinstance(layer, timm.layers.Conv2dSame) for layer in static.modules())
    assert any(isinstance(layer, timm.layers.Conv2dSame) for layer in net.modules())  # the original is untouched
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(static(images), net(images), rtol=0, atol=0)


def test_int8_graph_is_close_to_fp32_on_crops_it_was_not_calibrated_on(quantised_checkpoint: Path) -> None:
    fp32 = load_embedding_model(quantised_checkpoint, precision="fp32")
    graph = Int8Backbone(int8_graph_path(quantised_checkpoint), source_sha256=file_sha256(quantised_checkpoint))
    images = normalised(fp32, drawings(32, seed=1))
    with torch.inference_mode():
        similarity = cosine(graph(images), fp32.backbone(images))
    assert similarity.mean() > 0.97, similarity


def test_auto_precision_takes_the_graph_on_cpu_and_ids_differ(quantised_checkpoint: Path) -> None:
    auto = load_embedding_model(quantised_checkpoint)
    fp32 = load_embedding_model(quantised_checkpoint, precision="fp32")
    assert (auto.precision, fp32.precision) == ("int8", "fp32")
    assert "-int8@" in auto.model_id and "-int8@" not in fp32.model_id  # caches never mix the two
    images = normalised(fp32, drawings(8, seed=2))
    with torch.inference_mode():
        parts_int8, parts_fp32 = auto.forward_parts(images), fp32.forward_parts(images)
    assert parts_int8.shape == parts_fp32.shape
    assert cosine(parts_int8, parts_fp32).min() > 0.9


def test_precision_errors_are_clear(quantised_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown precision"):
        load_embedding_model(quantised_checkpoint, precision="fp8")
    with pytest.raises(ModelError, match="has no int8 graph"):
        load_embedding_model("tiny-cnn", precision="int8")
    assert load_embedding_model("tiny-cnn").precision == "fp32"  # auto: nothing to take
    with pytest.raises(ConfigError):
        load_embedding_model(quantised_checkpoint, device="cuda", precision="int8")
    retrained = tmp_path / "tiny.pt"  # another checkpoint, given the old checkpoint's graph
    model = tiny_finetuned(retrained)
    with torch.no_grad():
        model.head.weight.add_(1.0)
    save_finetuned_model(model, retrained)
    int8_graph_path(retrained).write_bytes(int8_graph_path(quantised_checkpoint).read_bytes())
    with pytest.raises(ModelError, match="made from another checkpoint"):
        load_embedding_model(retrained, precision="int8")
    int8_graph_path(retrained).write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="not a readable ONNX graph|not a comicid int8 graph"):
        load_embedding_model(retrained, precision="int8")


def with_two_torch_threads(run: Callable[[], T]) -> T:
    """``run()`` with torch at 2 threads, checking that the engine (which runs torch at 1 thread
    while its own threads embed) gives them back, on success and on error."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return run()
    finally:
        threads = torch.get_num_threads()
        torch.set_num_threads(before)
        assert threads == 2


def test_threads_embed_the_same_features_in_the_same_order(quantised_checkpoint: Path, tmp_path: Path) -> None:
    model = load_embedding_model(quantised_checkpoint)
    crops: list[Path | Image.Image] = []
    for i, image in enumerate(drawings(40, seed=3)):
        crops.append(tmp_path / f"{i}.png")
        image.save(crops[-1])
    crops[5] = drawings(1, seed=9)[0]  # a PIL image among the paths
    in_threads = with_two_torch_threads(lambda: embed_crops(crops, model, batch_size=8, num_workers=2,
                                                            progress=False))
    in_caller = embed_crops(crops, model, batch_size=8, num_workers=0, progress=False)
    np.testing.assert_array_equal(in_threads, in_caller)
    assert len({row.tobytes() for row in in_caller}) == len(crops)  # distinct crops, so order is checked


def test_an_unreadable_crop_in_a_thread_names_the_file(quantised_checkpoint: Path, tmp_path: Path) -> None:
    model = load_embedding_model(quantised_checkpoint)
    paths = []
    for i, image in enumerate(drawings(20, seed=5)):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    paths[13].write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="13.png"):
        with_two_torch_threads(lambda: embed_crops(paths, model, batch_size=4, num_workers=2, progress=False))


def test_8_bit_input_gives_the_features_of_normalised_floats() -> None:
    """The shipped model (int8 graph, colour histogram): the engine's 8-bit path is bit-identical."""
    model = load_embedding_model(DEFAULT_MODEL, precision="int8")
    pixels = torch.stack([letterbox_uint8(image, model.input_size) for image in drawings(6, seed=6)])
    with torch.inference_mode():
        from_pixels = model.forward_pixels(pixels)
        from_floats = model.forward_parts(normalise_batch(pixels, model.mean, model.std))
    assert from_pixels.shape == (6, model.part_dim)
    assert torch.equal(from_pixels, from_floats)


def test_the_backbone_pickles_without_its_session(quantised_checkpoint: Path) -> None:
    graph = Int8Backbone(int8_graph_path(quantised_checkpoint))
    images = normalised(graph, drawings(4, seed=4))
    expected = graph(images)
    copy = pickle.loads(pickle.dumps(graph))
    torch.testing.assert_close(copy(images), expected)


def test_shipped_graph_matches_the_shipped_model() -> None:
    fp32 = load_embedding_model(DEFAULT_MODEL, precision="fp32")
    int8 = load_embedding_model(DEFAULT_MODEL, precision="int8")  # raises if the graph is stale
    images = normalised(fp32, drawings(16, size=96, seed=5))
    with torch.inference_mode():
        similarity = cosine(int8.forward_parts(images), fp32.forward_parts(images))
    assert similarity.mean() > 0.97, similarity


def test_quantize_command_writes_a_graph_beside_the_checkpoint(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = generate_books(tmp_path / "books", books=1, characters=3, pages=2, seed=4, progress=False)
    checkpoint = tmp_path / "model.pt"
    tiny_finetuned(checkpoint)
    assert comicid_main(["quantize", str(checkpoint), "--calibration", str(manifest), "--crops", "24",
                         "--check", "8"]) == 0
    assert "cosine to fp32 on 8 other crops" in capsys.readouterr().out
    assert load_embedding_model(checkpoint).precision == "int8"
    report = quantize_checkpoint(checkpoint, [manifest], tmp_path / "other.onnx", n_crops=24, n_check=8)
    assert report.path.is_file() and report.check_crops == 8 and report.mean_cosine > 0.9
