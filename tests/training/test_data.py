"""Training data: instances from a manifest, the crop cache, views and the group batch sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from comicid.data import augment
from comicid.data.datasets import (
    CropCache,
    GroupBatchSampler,
    MultiViewDataset,
    ShuffleBatchSampler,
    build_instances,
    split_by,
)
from comicid.data.manifest import from_records
from comicid.errors import ConfigError

MEAN = STD = (0.5, 0.5, 0.5)


@pytest.fixture()
def frame(tmp_path: Path) -> pd.DataFrame:
    page = Image.new("RGB", (200, 100), "white")
    page.paste((200, 30, 30), (10, 10, 60, 90))
    page.paste((30, 30, 200), (110, 10, 160, 90))
    page.save(tmp_path / "p.png")
    Image.new("RGB", (20, 40), (0, 200, 0)).save(tmp_path / "sprite.png")
    rows = [
        dict(image="p.png", x0=20, y0=10, x1=50, y1=40, kind="face", instance="i0", identity="red",
             book="b", sequence="s0"),
        dict(image="p.png", x0=10, y0=10, x1=60, y1=90, kind="body", instance="i0", identity="red",
             book="b", sequence="s0"),
        dict(image="p.png", x0=110, y0=10, x1=160, y1=90, kind="body", instance="i1", identity="blue",
             book="b", sequence="s0"),
        dict(image="p.png", x0=120, y0=10, x1=150, y1=40, kind="face", instance="i2", identity="red",
             book="b", sequence="s1"),
        dict(image="sprite.png", kind="character", identity="green", book="sprites"),
    ]
    return from_records(rows, base_dir=tmp_path)


def test_instances_pair_face_and_body_and_scope_labels(frame: pd.DataFrame) -> None:
    table = build_instances(frame, group_by="sequence", label_scope="group")
    rows = [instance.rows for instance in table.instances]
    assert rows == [{"face": 0, "body": 1}, {"body": 2}, {"face": 3}, {"body": 4}]  # character -> body
    groups = [instance.group for instance in table.instances]
    assert groups[0] == groups[1] != groups[2]
    labels = [instance.label for instance in table.instances]
    assert labels[0] != labels[2]  # same name, different sequence: not known to be the same
    assert build_instances(frame, label_scope="book").instances[0].label == \
        build_instances(frame, label_scope="book").instances[2].label
    body_only = build_instances(frame, parts=["body"])
    assert len(body_only.instances) == 3 and body_only.skipped_rows == 2
    with pytest.raises(ConfigError):
        build_instances(frame, parts=["tail"])


def test_crop_cache_cuts_once_and_reuses_its_disk_copy(frame: pd.DataFrame, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache = CropCache(frame, range(len(frame)), max_side=32, cache_dir=tmp_path / "cache")
    face = cache.get(0)
    assert max(face.size) <= 32 and face.getpixel((face.width // 2, face.height // 2)) == (200, 30, 30)
    from comicid.data import datasets

    def no_decoding(path: object) -> None:
        raise AssertionError("a page was decoded although its crops are cached on disk")

    monkeypatch.setattr(datasets, "load_image", no_decoding)
    again = CropCache(frame, range(len(frame)), max_side=32, cache_dir=tmp_path / "cache")
    assert np.array_equal(np.asarray(again.get(0)), np.asarray(face))


def test_views_have_the_model_shape_and_fixed_seed_repeats(frame: pd.DataFrame) -> None:
    table = build_instances(frame)
    cache = CropCache(frame, range(len(frame)), max_side=64)
    views = [augment.strong_view(24, MEAN, STD), augment.weak_view(24, MEAN, STD)]
    dataset = MultiViewDataset(table.instances, cache, ("face", "body"), views, 24, seed=3)
    item = dataset[1]
    assert item["body"].shape == (2, 3, 24, 24) and item["has_body"] and not item["has_face"]
    assert torch.count_nonzero(item["face"]) == 0
    assert torch.equal(dataset[0]["face"], dataset[0]["face"])


@pytest.mark.parametrize("name", sorted(augment.STYLE_OPS))
def test_style_changes_keep_size_and_mode(name: str) -> None:
    image = Image.new("RGB", (30, 50), (180, 90, 40))
    out = augment.STYLE_OPS[name](image)
    assert out.size == image.size and out.mode == "RGB"


def test_halftone_ink_follows_darkness() -> None:
    dark, light = Image.new("RGB", (30, 30), (40, 40, 40)), Image.new("RGB", (30, 30), (220, 220, 220))
    ink = [1 - np.asarray(augment.halftone(image)).mean() / 255 for image in (dark, light)]
    assert ink[0] > ink[1] + 0.3


def test_unknown_style_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown style"):
        augment.RandomStyle(["sepia"], 0.5)


def test_group_sampler_keeps_groups_whole_and_splits_big_ones_by_identity() -> None:
    from comicid.data.datasets import Instance

    instances = [Instance(f"k{i}", "b", f"g{i // 4}", "", f"id{i // 2}", {"body": i}) for i in range(12)]
    instances += [Instance(f"big{i}", "c", "big", "", f"big{i % 5}", {"body": 100 + i}) for i in range(10)]
    sampler = GroupBatchSampler(instances, batch_size=8, seed=0)
    sampler.set_position(epoch=1)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(22))
    for batch in batches:
        groups = {instances[i].group for i in batch if instances[i].book == "b"}
        for group in groups:  # a small group is never split
            assert sum(instances[i].group == group for i in batch) == 4
        for label in {instances[i].label for i in batch}:  # an identity is never split
            assert sum(instances[i].label == label for i in batch) == sum(x.label == label for x in instances)
    sampler.set_position(epoch=1, skip=1)
    assert list(sampler) == batches[1:]


def test_shuffle_sampler_refuses_a_batch_larger_than_the_data() -> None:
    with pytest.raises(ConfigError, match="batch"):
        ShuffleBatchSampler(3, 8)


def test_split_holds_out_whole_books(frame: pd.DataFrame) -> None:
    instances = build_instances(frame).instances
    train, val = split_by(instances, 0.5, seed=0)
    assert sorted(train + val) == list(range(len(instances)))
    assert {instances[i].book for i in train}.isdisjoint({instances[i].book for i in val})
