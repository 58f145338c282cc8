"""Torch datasets over a manifest: character instances with their face and body crops.

The training unit is the *instance* (:func:`comicid.data.manifest.instance_keys`): a face row and a
body row that share an ``instance`` id are one sample. A ``character`` row (a whole-figure crop, the
only kind the sprite sets have) fills the *body* slot, since a body crop is the whole figure.

Crops are cut once: :class:`CropCache` decodes each page a single time, cuts every part on it with
the one crop rule (:func:`comicid.data.crops.crop_part`), shrinks it to a working size and keeps it
PNG-encoded in memory (a few KB each, shared copy-on-write by DataLoader workers) and, when given a
folder, on disk so that a second run decodes no page at all.

Batches for metric learning come from :class:`GroupBatchSampler`: whole *groups* of instances whose
labels are comparable (a sequence of panels, or a fully labelled book), because the paper's
identity labels only say which characters differ inside a sequence.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from comicid.data.crops import Box, crop_part
from comicid.data.images import file_stamp, load_image
from comicid.data.manifest import has_box, instance_keys, part_locators, read_manifest
from comicid.errors import ConfigError
from comicid.atomic import atomic_write_bytes

PARTS: tuple[str, ...] = ("face", "body")
#: manifest ``kind`` -> the slot of the face-body network it feeds
PART_OF_KIND = {"face": "face", "body": "body", "character": "body"}
GROUP_KEYS = ("sequence", "page", "book")
#: Bump when the crop rule or the cache encoding changes, so stale disk caches are not reused.
_CACHE_VERSION = "2"  # 2: named by the part locator and file stamp shared with imports

View = Callable[[Image.Image], Tensor]


@dataclass(frozen=True)
class Instance:
    """One character instance: its manifest rows per part and the scopes its label is valid in.

    ``group`` names the set of instances whose labels may be compared (see :func:`group_of`);
    ``identity`` is the manifest's name; ``label`` the identity made unique across label scopes
    (``""`` when unknown).
    """

    key: str
    book: str
    group: str
    identity: str
    label: str
    rows: dict[str, int] = field(default_factory=dict)


@dataclass
class InstanceTable:
    """Instances of a manifest, and what was left out (never dropped silently)."""

    instances: list[Instance]
    skipped_rows: int = 0
    skip_reason: str = ""

    def summary(self) -> str:
        text = f"{len(self.instances)} instances"
        if self.skipped_rows:
            text += f" ({self.skipped_rows} rows skipped: {self.skip_reason})"
        return text


def group_of(row: pd.Series, group_by: str) -> str:
    """The label scope of a row: its book plus its ``sequence`` (or ``page``); the book alone when empty.

    ``group_by="book"`` says every label of a book is comparable (fully labelled sets such as sprite
    collections); ``"sequence"`` follows the paper, where characters are only known to differ within
    a sequence of panels.
    """
    if group_by not in GROUP_KEYS:
        raise ConfigError(f"group_by must be one of {GROUP_KEYS}, got '{group_by}'")
    if group_by == "book" or not row[group_by]:
        return f"{row['book']}\x1f"
    return f"{row['book']}\x1f{group_by}\x1f{row[group_by]}"


def build_instances(frame: pd.DataFrame, parts: Sequence[str] = PARTS, group_by: str = "sequence",
                    label_scope: str = "group") -> InstanceTable:
    """Gather the rows of a validated manifest into instances, in manifest order.

    Args:
        parts: the slots to keep (``["body"]`` trains a body-only ablation); rows of other parts are
            skipped and counted.
        group_by: see :func:`group_of`.
        label_scope: ``"group"`` makes an identity name unique per group (labels local to a
            sequence), ``"book"`` per book (one cast per book).
    """
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise ConfigError(f"parts must be a non-empty subset of {list(PARTS)}, got {list(parts)}")
    if label_scope not in ("group", "book"):
        raise ConfigError(f"label_scope must be 'group' or 'book', got '{label_scope}'")
    keys = instance_keys(frame)
    order: list[str] = []
    rows_of: dict[str, dict[str, int]] = {}
    first_row: dict[str, int] = {}
    skipped = 0
    for index, (key, kind) in enumerate(zip(keys, frame["kind"], strict=True)):
        part = PART_OF_KIND[kind]
        if part not in parts:
            skipped += 1
            continue
        if key not in rows_of:
            order.append(key)
            rows_of[key] = {}
            first_row[key] = index
        rows_of[key][part] = index
    instances = []
    for key in order:
        row = frame.iloc[first_row[key]]
        identities = [frame.at[index, "identity"] for index in rows_of[key].values()]
        identity = next((value for value in identities if value), "")
        group = group_of(row, group_by)
        scope = group if label_scope == "group" else row["book"]
        label = f"{scope}\x1f{identity}" if identity else ""
        instances.append(Instance(key, row["book"], group, identity, label, dict(rows_of[key])))
    reason = f"parts other than {list(parts)}" if skipped else ""
    return InstanceTable(instances, skipped, reason)


class CropCache:
    """Every part crop of a manifest, cut once and kept PNG-encoded.

    Crops are shrunk (never enlarged) so their longer side is at most ``max_side`` pixels: training
    views are at most a little larger than the model input, and full-resolution crops of big scans
    would fill memory. With ``cache_dir`` the encoded crops are also stored there, named by a hash of
    the part's locator (:func:`~comicid.data.manifest.part_locators`: page path, box, kind), the page's
    :func:`~comicid.data.images.file_stamp` and ``max_side``.
    """

    def __init__(self, frame: pd.DataFrame, rows: Sequence[int], max_side: int = 256,
                 cache_dir: str | Path | None = None, progress: bool = False) -> None:
        if max_side < 8:
            raise ConfigError(f"crop max_side must be at least 8 pixels, got {max_side}")
        self.max_side = int(max_side)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._png: dict[int, bytes] = {}
        boxed = has_box(frame)
        self._locators = part_locators(frame) if self.cache_dir is not None else None
        by_image: dict[str, list[int]] = {}
        for row in sorted(set(int(r) for r in rows)):
            by_image.setdefault(frame.at[row, "image"], []).append(row)
        pending: dict[str, list[tuple[int, Path | None]]] = {}
        for image, image_rows in by_image.items():
            for row in image_rows:
                path = self._disk_path(frame, row)
                if path is not None and path.is_file():
                    self._png[row] = path.read_bytes()
                else:
                    pending.setdefault(image, []).append((row, path))
        for image, todo in tqdm(pending.items(), desc="cutting crops", unit="page", disable=not progress):
            page = load_image(image)
            for row, path in todo:
                box = Box(*(float(frame.at[row, c]) for c in ("x0", "y0", "x1", "y1"))) if boxed[row] else None
                crop = crop_part(page, frame.at[row, "kind"], box)
                crop.thumbnail((self.max_side, self.max_side), Image.Resampling.BILINEAR)
                buffer = io.BytesIO()
                crop.save(buffer, format="PNG", compress_level=1)
                self._png[row] = buffer.getvalue()
                if path is not None:
                    atomic_write_bytes(path, self._png[row])

    def _disk_path(self, frame: pd.DataFrame, row: int) -> Path | None:
        if self.cache_dir is None:
            return None
        # Source-addressed, unlike a collection's content-addressed crops: this cache exists to skip
        # cutting the page, so its key must be known before the crop is (locator + file stamp, as an
        # import's reuse check, plus the shrink size).
        text = "\x1f".join([_CACHE_VERSION, self._locators[row], file_stamp(frame.at[row, "image"]) or "missing",
                            str(self.max_side)])
        return self.cache_dir / f"{hashlib.sha1(text.encode()).hexdigest()}.png"

    def __len__(self) -> int:
        return len(self._png)

    def get(self, row: int) -> Image.Image:
        """The crop of manifest row ``row`` as an RGB image."""
        with Image.open(io.BytesIO(self._png[row])) as image:
            return image.convert("RGB")


def instance_rows(instances: Sequence[Instance]) -> list[int]:
    """All manifest rows the instances use (what a :class:`CropCache` must hold)."""
    return [row for instance in instances for row in instance.rows.values()]


class MultiViewDataset(Dataset):
    """Each item: for every part, a stack of views of the instance's crop, and whether it exists.

    ``views`` maps a view name to a list of transforms; item ``{part}`` is a ``(V, 3, S, S)`` float
    tensor (V = total number of transforms, in the order given) and ``has_{part}`` a bool. A missing
    part yields zeros, so batches stack; the training step must use ``has_{part}`` to skip them.

    With ``seed`` set, item ``i`` always produces the same views (fixed validation views); otherwise
    views follow torch's global generator (seeded per worker by the DataLoader).
    """

    def __init__(self, instances: Sequence[Instance], cache: CropCache, parts: Sequence[str],
                 views: Sequence[View], size: int, seed: int | None = None) -> None:
        self.instances = list(instances)
        self.cache = cache
        self.parts = tuple(parts)
        self.views = list(views)
        self.size = size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.instances)

    def _item(self, index: int) -> dict[str, Tensor]:
        instance = self.instances[index]
        item: dict[str, Tensor] = {"index": torch.tensor(index)}
        for part in self.parts:
            row = instance.rows.get(part)
            if row is None:
                item[part] = torch.zeros(len(self.views), 3, self.size, self.size)
                item[f"has_{part}"] = torch.tensor(False)
            else:
                crop = self.cache.get(row)
                item[part] = torch.stack([view(crop) for view in self.views])
                item[f"has_{part}"] = torch.tensor(True)
        return item

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if self.seed is None:
            return self._item(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + index)
            return self._item(index)


class _EpochSampler(Sampler[list[int]]):
    """Shared epoch/skip bookkeeping: batches of epoch ``e`` are a function of ``seed`` and ``e`` only.

    That is what makes resume exact: the loop calls :meth:`set_position` with the epoch and the
    number of batches already consumed in it, and iteration continues from there without
    loading the skipped batches.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_position(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _generator(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def batches(self) -> list[list[int]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.skip:]

    def __len__(self) -> int:
        return len(self.batches())


class ShuffleBatchSampler(_EpochSampler):
    """Shuffled batches of ``batch_size`` items; the last short batch is dropped when ``drop_last``."""

    def __init__(self, size: int, batch_size: int, seed: int = 0, drop_last: bool = True) -> None:
        super().__init__(seed)
        if batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 for contrastive training, got {batch_size}")
        if size < batch_size and drop_last:
            raise ConfigError(f"only {size} training instances for a batch of {batch_size}; "
                              f"lower batch_size or add data")
        self.size, self.batch_size, self.drop_last = size, batch_size, drop_last

    def batches(self) -> list[list[int]]:
        order = self._generator().permutation(self.size).tolist()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        return [order[i:i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def __len__(self) -> int:
        return self.size // self.batch_size if self.drop_last else -(-self.size // self.batch_size)


class GroupBatchSampler(_EpochSampler):
    """Batches made of whole groups (sequences, or books), about ``batch_size`` instances each.

    Groups are shuffled and packed greedily; a batch closes when the next group would overflow it. A
    group larger than ``batch_size`` (a fully labelled book) is cut into chunks of whole identities
    (every instance of an identity stays together, so each chunk still has positives), which is valid
    because any subset of a group keeps its labels comparable. Groups with fewer than
    ``min_group`` instances carry no pair to learn from and are left out (counted in ``left_out``).
    """

    def __init__(self, instances: Sequence[Instance], batch_size: int, seed: int = 0,
                 min_group: int = 2) -> None:
        super().__init__(seed)
        if batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2, got {batch_size}")
        self.batch_size = batch_size
        members: dict[str, list[int]] = {}
        for index, instance in enumerate(instances):
            members.setdefault(instance.group, []).append(index)
        self.groups = [m for m in members.values() if len(m) >= min_group]
        self.left_out = sum(len(m) for m in members.values() if len(m) < min_group)
        self.labels = [instance.label for instance in instances]
        if not self.groups:
            raise ConfigError("no group has two labelled instances: nothing to learn from")

    def _chunks(self, group: list[int], rng: np.random.Generator) -> list[list[int]]:
        if len(group) <= self.batch_size:
            return [group]
        by_label: dict[str, list[int]] = {}
        for index in group:
            by_label.setdefault(self.labels[index], []).append(index)
        identities = list(by_label.values())
        chunks: list[list[int]] = [[]]
        for position in rng.permutation(len(identities)):
            members = identities[position]
            if chunks[-1] and len(chunks[-1]) + len(members) > self.batch_size:
                chunks.append([])
            chunks[-1].extend(members)
        return chunks

    def batches(self) -> list[list[int]]:
        rng = self._generator()
        pieces = [chunk for group in self.groups for chunk in self._chunks(group, rng)]
        batches: list[list[int]] = [[]]
        for position in rng.permutation(len(pieces)):
            piece = pieces[position]
            if batches[-1] and len(batches[-1]) + len(piece) > self.batch_size:
                batches.append([])
            batches[-1].extend(piece)
        return [batch for batch in batches if len(batch) >= 2]


def split_by(instances: Sequence[Instance], fraction: float, seed: int,
              key: Callable[[Instance], str] = lambda instance: instance.book) -> tuple[list[int], list[int]]:
    """Hold out about ``fraction`` of the distinct ``key`` values (books by default) for validation.

    Holding out whole books (not random instances) keeps validation characters unseen, as in use.
    With a single key value the held-out part is a fraction of its *groups* instead. Returns
    (train indices, validation indices); validation is empty when ``fraction`` is 0.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return list(range(len(instances))), []
    values = sorted({key(instance) for instance in instances})
    if len(values) < 2:
        values = sorted({instance.group for instance in instances})
        key = lambda instance: instance.group  # noqa: E731 - one book: split its groups instead
    if len(values) < 2:
        raise ConfigError("val_fraction needs at least two books or groups to hold one out")
    rng = np.random.default_rng(seed)
    count = min(len(values) - 1, max(1, round(fraction * len(values))))
    held = {values[i] for i in rng.choice(len(values), size=count, replace=False)}
    train = [i for i, instance in enumerate(instances) if key(instance) not in held]
    val = [i for i, instance in enumerate(instances) if key(instance) in held]
    return train, val


def read_training_frame(manifests: Sequence[str | Path], splits: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Concatenate validated manifests and keep the rows whose ``split`` is in ``splits``.

    Returns the frame (index 0..N-1) and the number of rows left out by split, for the caller to
    report. Books of different manifests stay apart because instance keys include the book.
    """
    # A recipe's manifests are files its author wrote, often combining several sets (train_default.py
    # writes one pointing into ../shared/datasets), so their images may lie outside their folders.
    frames = [read_manifest(path, allow_outside=True) for path in manifests]
    if not frames:
        raise ConfigError("no training manifest given")
    frame = pd.concat(frames, ignore_index=True)
    keep = frame["split"].isin(list(splits)).to_numpy()
    if not keep.any():
        raise ConfigError(f"no manifest row has a split in {list(splits)}")
    return frame[keep].reset_index(drop=True), int((~keep).sum())


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # two cores: threads per worker beyond one oversubscribe the machine


def make_loader(dataset: Dataset, batch_sampler: Sampler[list[int]], workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader over ``batch_sampler``; each worker runs one torch thread."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                                       worker_init_fn=_one_thread if workers else None,
                                       persistent_workers=False)
