"""The batched embedding engine: crops in, part features out; and part fusion into instances.

Speed on a CPU is decided by three things besides the network (see docs/BENCHMARKS.md, ``embed-speed``,
which breaks a crop's time down by step): how decoding shares the cores with the network, glibc's
allocator (tuned once, :func:`comicid.runtime.tune_allocator`), and for torch models channels_last
under ``torch.inference_mode``. An int8 graph (the CPU default) runs in :func:`_int8_batches`: one
thread per core decodes, letterboxes and embeds whole batches. A torch model decodes in DataLoader
worker processes with one torch thread each, which send 8-bit tensors; the float conversion and
normalisation happen on the model's device.

Features can be cached per (content key :func:`~comicid.data.images.crop_hash`, ``model_id``) in a
:class:`FeatureCache`; the cache is
written every few batches, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
import weakref
import zipfile
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from comicid.data.images import crop_hash, load_image
from comicid.data.preprocess import letterbox_uint8, normalise_batch
from comicid.errors import ComicidError, ImageReadError, ModelError
from comicid.runtime import available_cpus, resolve_device, tune_allocator
from comicid.atomic import atomic_write

if TYPE_CHECKING:  # the engine only reads a model's contract; EmbeddingModel.embed_images calls the engine
    from comicid.models.embedding_model import EmbeddingModel

CropSource = Image.Image | str | os.PathLike[str]

#: Below this many crops, starting worker processes costs more than it saves.
MIN_CROPS_FOR_WORKERS = 128
#: The cache is written after this many batches, bounding the work an interrupt can lose.
CACHE_FLUSH_BATCHES = 16
#: From this many crops on, CPU inference runs a frozen TorchScript trace of the model: BatchNorm is
#: folded into the convolutions and oneDNN kernels are chosen once, measured 1.3-1.7x faster on a
#: 2-core AVX2 CPU (docs/BENCHMARKS.md); the ~2 s of tracing is not worth it for fewer crops.
MIN_CROPS_FOR_TRACING = 512
#: Traces made in this process, per model object (frozen weights: a model changed in place after its
#: first large embedding must be embedded as a new object, as training code does).
_TRACED: weakref.WeakKeyDictionary[EmbeddingModel, torch.jit.ScriptModule] = weakref.WeakKeyDictionary()


#: An input transform: one decoded crop to a normalised float ``(3, S, S)`` tensor (e.g. an augmented
#: view, :func:`comicid.data.augment.strong_view`), used instead of the engine's letterbox+normalise.
CropTransform = Callable[[Image.Image], Tensor]


class _CropDataset(Dataset[Tensor]):
    """Decodes (paths) and letterboxes crops to 8-bit ``(3, S, S)`` tensors, in worker processes; with a
    ``transform``, returns its normalised float tensor instead."""

    def __init__(self, crops: Sequence[CropSource], size: int, transform: CropTransform | None = None) -> None:
        self.crops = crops
        self.size = size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> Tensor:
        crop = self.crops[index]
        if self.transform is None:
            return _pixels(crop, self.size)
        return self.transform(_image(crop))


def normalised_crops(crops: Sequence[CropSource], model: EmbeddingModel) -> Tensor:
    """``(N, 3, S, S)`` float images of a few crops, prepared exactly as :func:`embed_crops` prepares
    them, all at once (a calibration set that a graph compiler consumes whole)."""
    dataset = _CropDataset(crops, model.input_size)
    return normalise_batch(torch.stack([dataset[i] for i in range(len(dataset))]), model.mean, model.std)


def _image(crop: CropSource) -> Image.Image:
    """A crop as a PIL image: a path is decoded here with :func:`~comicid.data.images.load_image`."""
    return crop if isinstance(crop, Image.Image) else load_image(crop)


def _pixels(crop: CropSource, size: int) -> Tensor:
    """One crop (a PIL image or a path, decoded here) letterboxed to 8-bit ``(3, size, size)``."""
    return letterbox_uint8(_image(crop), size)


def _int8_batches(crops: Sequence[CropSource], model: EmbeddingModel, batch_size: int,
                  threads: int) -> Generator[np.ndarray, None, None]:
    """Part features of an int8 model, batch by batch in order, from ``threads`` threads (0: this one).

    Each thread decodes, letterboxes and embeds whole batches: Pillow's decoders and resampling and
    ONNX Runtime release the GIL, so on N cores N threads keep every core busy without the worker
    processes, inter-process copies and per-process sessions that a DataLoader costs, and without any
    multi-threaded region waiting for a core held by a decoder. The threads share one single-threaded
    session; torch runs single-threaded meanwhile (its few ops here are small, and N threads each
    opening an OpenMP team would oversubscribe the cores). At most ``2 * threads`` batches are in
    flight, so memory stays bounded however many crops there are.
    """
    size = model.input_size
    chunks = [range(start, min(start + batch_size, len(crops))) for start in range(0, len(crops), batch_size)]

    def embed(chunk: range) -> np.ndarray:
        with torch.inference_mode():
            pixels = torch.stack([_pixels(crops[i], size) for i in chunk])
            return model.forward_pixels(pixels).float().numpy()

    if threads <= 0:
        yield from map(embed, chunks)
        return
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="comicid-embed") as pool:
            in_flight: deque[Future[np.ndarray]] = deque()
            for chunk in chunks:
                in_flight.append(pool.submit(embed, chunk))
                if len(in_flight) >= 2 * threads:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
    finally:  # on an error or an abandoned generator the pool finishes the batches in flight first
        torch.set_num_threads(torch_threads)


def _torch_batches(crops: Sequence[CropSource], model: EmbeddingModel, batch_size: int, workers: int,
                   target: torch.device, transform: CropTransform | None) -> Generator[np.ndarray, None, None]:
    """Part features of a torch model, batch by batch: crops decoded in ``workers`` DataLoader processes
    (one torch thread each), the network (a frozen trace for large CPU jobs) in this process."""
    traced = target.type == "cpu" and transform is None
    forward_parts = _compiled_forward(model, len(crops)) if traced else model.forward_parts
    loader = DataLoader(_CropDataset(crops, model.input_size, transform),
                        batch_size=batch_size, shuffle=False, num_workers=workers,
                        worker_init_fn=_one_thread_worker if workers else None,
                        pin_memory=target.type == "cuda",
                        # the loader's own seed must not draw from the generator a transform uses
                        generator=torch.Generator() if transform is not None else None)
    for batch in loader:  # (B, 3, S, S) uint8 pixels, or normalised views from a transform
        yield _forward(model, forward_parts, batch, target, normalised=transform is not None)


def _one_thread_worker(_: int) -> None:
    torch.set_num_threads(1)  # the main process's threads already use every core


def default_num_workers(n_crops: int) -> int:
    """Decode workers: one per core (decoding and the network then share the cores), none if few."""
    return 0 if n_crops < MIN_CROPS_FOR_WORKERS else available_cpus()


def crop_key(crop: CropSource) -> str:
    """The feature cache's key of a crop: the one content key :func:`comicid.data.images.crop_hash`.

    A path is decoded to hash it, so a collection's crop file gets the key the collection stored it
    under; a collection passes its keys (``embed_crops(keys=...)``) and nothing is decoded twice.
    """
    return crop_hash(_image(crop))


class FeatureCache:
    """Part features of one model, keyed by crop hash, stored as shards under ``folder/<model_id>/``.

    Each :meth:`add` writes one new ``.npz`` shard atomically under a number one above the highest
    present, never over an existing file: a lost shard leaves a gap, never a collision. Shards are read
    once, at construction; a shard that cannot be read (truncated, damaged) is renamed
    ``*.npz.damaged`` and counted in :attr:`damaged`, and non-finite vectors are dropped, so the
    crops they held are simply embedded again: the cache heals. One writer per folder at a time (the
    collection's writer lock).
    """

    def __init__(self, folder: str | Path, model_id: str) -> None:
        safe_id = re.sub(r"[^A-Za-z0-9._@-]", "_", model_id)
        self.folder = Path(folder) / safe_id
        self.model_id = model_id
        self._vectors: dict[str, np.ndarray] = {}
        self.damaged: list[str] = []
        self.dropped_non_finite = 0
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, vectors = data["keys"].tolist(), np.asarray(data["vectors"], dtype=np.float32)
                if vectors.ndim != 2 or len(keys) != len(vectors):
                    raise ValueError("keys and vectors disagree")
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                self.damaged.append(shard.name)
                with contextlib.suppress(OSError):
                    shard.rename(shard.with_name(shard.name + ".damaged"))
                continue
            finite = np.isfinite(vectors).all(axis=1)
            self.dropped_non_finite += int((~finite).sum())
            self._vectors.update((key, vector) for key, vector, ok in zip(keys, vectors, finite, strict=True) if ok)

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, key: str) -> bool:
        return key in self._vectors

    def get(self, key: str) -> np.ndarray:
        return self._vectors[key]

    def _next_shard(self) -> Path:
        numbers = [int(match[1]) for path in self.folder.glob("shard-*.npz*")
                   if (match := re.fullmatch(r"shard-(\d+)\.npz(?:\.damaged)?", path.name))]
        number = max(numbers, default=-1) + 1
        while (self.folder / f"shard-{number:06d}.npz").exists():  # pragma: no cover - belt and braces
            number += 1
        return self.folder / f"shard-{number:06d}.npz"

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors (len(keys), D)`` and write them to a new shard."""
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(self._next_shard(), "wb") as handle:
            np.savez(handle, keys=np.array(keys, dtype=str), vectors=vectors.astype(np.float32))
        self._vectors.update(zip(keys, vectors.astype(np.float32)))


def _worker_message(error: BaseException) -> str:
    """The original one-line message of an error re-raised from a DataLoader worker (which embeds the
    worker's whole traceback in the message)."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last else last


def check_finite(features: np.ndarray, rows: Sequence[int], names: Sequence[str] | None, model_id: str) -> None:
    """Refuse NaN or infinite features, naming the first crop (or instance) that got them."""
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        where = names[rows[first]] if names is not None else f"crop {rows[first] + 1}"
        raise ModelError(f"model '{model_id}' produced non-finite (NaN or inf) features for {int(bad.sum())} "
                         f"of {len(features)} crops, first {where}; its weights are broken: retrain or "
                         "choose another --model")


def embed_crops(crops: Sequence[CropSource], model: EmbeddingModel, batch_size: int = 64,
                device: str | torch.device = "cpu", num_workers: int | None = None,
                progress: bool = True, cache: FeatureCache | None = None,
                keys: Sequence[str] | None = None, names: Sequence[str] | None = None,
                transform: CropTransform | None = None, desc: str = "embed") -> np.ndarray:
    """Part features ``(N, part_dim)`` float32 of ``crops`` (PIL images or image paths), in order.

    Paths are decoded with :func:`comicid.data.images.load_image` by ``num_workers`` workers
    (``None``: :func:`default_num_workers`; 0: in the calling thread): threads that also embed for
    an int8 graph, DataLoader processes for a torch model. With a ``cache`` (which must belong to
    ``model.model_id``), cached crops are not recomputed and new features are added as they come.
    ``keys`` are the crops' content keys for the cache when the caller already has them (a collection
    knows its crops' hashes), so that cached crops are not read again just to be hashed; by default
    :func:`crop_key` computes them. ``model`` is moved to ``device`` and switched to eval mode (and
    channels_last on CPU) in place.

    ``names`` (one per crop, e.g. instance names) are used in error messages.

    ``transform`` replaces the letterbox and normalisation with an input transform (augmented views,
    :func:`comicid.training.adapt.embed_views`). A random transform draws from the global torch
    generator in crop order, so a caller that seeds it gets reproducible views: crops are then
    prepared in this process (no workers), the eager model runs (no trace), and nothing is cached
    (a view is not a crop).

    Raises:
        ImageReadError: a crop file cannot be read (one line naming the file, even from a worker).
        ModelError: the model produced NaN or infinite features (nothing of that batch is cached).
        ConfigError: CUDA requested but not available.
    """
    if transform is not None and (cache is not None or num_workers):
        raise ValueError("a transform runs in this process and is not cached: no cache, no workers")
    if cache is not None and cache.model_id != model.model_id:
        raise ValueError(f"cache of '{cache.model_id}' used with model '{model.model_id}'")
    features = np.zeros((len(crops), model.part_dim), dtype=np.float32)
    todo = list(range(len(crops)))
    if keys is not None and len(keys) != len(crops):
        raise ValueError(f"{len(keys)} keys for {len(crops)} crops")
    if cache is not None:
        keys = list(keys) if keys is not None else [crop_key(crop) for crop in crops]
        todo = []
        for i, key in enumerate(keys):
            if key in cache:
                features[i] = cache.get(key)
            else:
                todo.append(i)
    if not todo:
        return features

    tune_allocator()
    target = resolve_device(device)
    model = _prepare(model, target)
    workers = 0 if transform is not None else default_num_workers(len(todo)) if num_workers is None else num_workers
    crops_todo = [crops[i] for i in todo]
    batches: Generator[np.ndarray, None, None]
    if model.precision == "int8" and transform is None:  # an int8 graph runs on the CPU only
        batches = _int8_batches(crops_todo, model, batch_size, workers)
    else:
        batches = _torch_batches(crops_todo, model, batch_size, workers, target, transform)
    pending: list[int] = []
    done = 0
    with torch.inference_mode(), tqdm(total=len(crops), initial=len(crops) - len(todo),
                                      disable=not progress, unit="crop", desc=desc) as bar:
        try:
            for computed in batches:  # (B, part_dim) features of the next crops, in order
                rows = todo[done:done + len(computed)]
                check_finite(computed, rows, names, model.model_id)
                features[rows] = computed
                done += len(rows)
                pending += rows
                if cache is not None and (done == len(todo) or
                                          len(pending) >= CACHE_FLUSH_BATCHES * batch_size):
                    cache.add([keys[i] for i in pending], features[pending])
                    pending = []
                bar.update(len(rows))
        except ComicidError as error:
            if cache is not None and pending:  # keep what was finished before the failure
                cache.add([keys[i] for i in pending], features[pending])
            if "Original Traceback" not in str(error):
                raise
            raise ImageReadError(_worker_message(error)) from None
        finally:  # now, not when a traceback lets go of it: restores torch's threads, stops workers
            batches.close()
    return features


def _prepare(model: EmbeddingModel, target: torch.device) -> EmbeddingModel:
    model = model.to(target).eval()
    if target.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


class _PartFeatures(nn.Module):
    """``forward_parts`` as ``forward``, so that it can be traced."""

    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.forward_parts(images)


def _compiled_forward(model: EmbeddingModel, n_crops: int) -> Callable[[Tensor], Tensor]:
    """A frozen trace of ``model.forward_parts`` for large CPU jobs, else the eager method.

    A trace is only used after it reproduces eager outputs on a batch of another size and other
    pixels; a model with shape- or data-dependent behaviour (the `random` baseline seeds by content)
    fails that check and runs eagerly, with the same numbers, only slower.
    """
    if n_crops < MIN_CROPS_FOR_TRACING or model.precision == "int8":  # an int8 graph is compiled already
        return model.forward_parts
    if model in _TRACED:
        return _TRACED[model]
    generator = torch.Generator().manual_seed(0)
    size = model.input_size

    def example(batch: int) -> Tensor:
        return torch.randn(batch, 3, size, size, generator=generator).contiguous(memory_format=torch.channels_last)

    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: whatever they warn about is checked below
            traced = torch.jit.freeze(torch.jit.trace(_PartFeatures(model).eval(), example(2)))
            probe = example(3)  # another batch size and other pixels than the trace saw
            expected, got = model.forward_parts(probe), traced(probe)
    except Exception:  # noqa: BLE001 - any tracing failure means "use eager", never a wrong result
        return model.forward_parts
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3, atol=1e-4):
        return model.forward_parts  # the trace froze a shape or a data-dependent branch
    _TRACED[model] = traced
    return traced


def run_forward(forward: Callable[[Tensor], Tensor], images: Tensor, device: torch.device,
                channels_last: bool = True) -> Tensor:
    """One batch of normalised images through ``forward`` on ``device``: float32 features on the CPU.

    The engine's only network call, shared by :func:`embed_crops` and the loops that cannot hand it
    a list of crops (frozen per-part training features, an int8 graph's fp32 reference). On the CPU
    the batch is made channels_last (oneDNN's fast layout) unless ``channels_last`` is false (an int8
    graph takes plain arrays). Runs without autograd.
    """
    images = images.to(device, non_blocking=True)
    if channels_last and device.type == "cpu":
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return forward(images).float().cpu()


def _forward(model: EmbeddingModel, forward_parts: Callable[[Tensor], Tensor], batch: Tensor,
             target: torch.device, normalised: bool = False) -> np.ndarray:
    """8-bit pixels (normalised on ``target``), or images already normalised by a transform."""
    batch = batch.to(target, non_blocking=True)
    images = batch if normalised else normalise_batch(batch, model.mean, model.std)
    return run_forward(forward_parts, images, target, channels_last=model.precision == "fp32").numpy()


def _normalise_rows(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, eps)


def sum_parts(part_features: np.ndarray, instance_index: np.ndarray, n_instances: int,
              part_weights: np.ndarray | None = None) -> np.ndarray:
    """The head's input per instance, ``sum_i w_i normalise(part_i)``, shape ``(n_instances, part_dim)``.

    What :func:`fuse_parts` feeds the head; a head fitted after training (``comicid train discriminant``)
    is fitted on exactly these vectors. An instance without any non-zero part gets the zero vector.
    """
    part_features = np.asarray(part_features, dtype=np.float32)
    instance_index = np.asarray(instance_index, dtype=np.int64)
    if part_features.ndim != 2 or instance_index.shape != (part_features.shape[0],):
        raise ValueError("part_features must be (P, D) and instance_index (P,)")
    if len(instance_index) and (instance_index.min() < 0 or instance_index.max() >= n_instances):
        raise ValueError(f"instance_index must lie in [0, {n_instances})")
    unit = _normalise_rows(part_features)  # (P, part_dim)
    if part_weights is not None:
        part_weights = np.asarray(part_weights, dtype=np.float32)
        if part_weights.shape != instance_index.shape or not (part_weights > 0).all():
            raise ValueError("part_weights must be (P,) and positive")
        unit = unit * part_weights[:, None]
    summed = np.zeros((n_instances, part_features.shape[1]), dtype=np.float32)
    np.add.at(summed, instance_index, unit)
    return summed


def fuse_parts(part_features: np.ndarray, instance_index: np.ndarray, n_instances: int,
               head: nn.Module | None = None, part_weights: np.ndarray | None = None) -> np.ndarray:
    """Instance embeddings ``normalise(head(sum_i w_i normalise(part_i)))``, shape ``(n_instances, D)``.

    Args:
        part_features: ``(P, part_dim)`` raw part features; a zero row (a missing part) adds nothing.
        instance_index: ``(P,)`` instance of each part row, in ``[0, n_instances)``.
        head: ``EmbeddingModel.head``; ``None`` means the identity.
        part_weights: ``(P,)`` positive weight of each part row (default 1: the plain sum). A model
            stores its weights per part kind (:attr:`EmbeddingModel.part_weights`); an instance with
            one part is unaffected by its weight, since the result is normalised.

    An instance without any non-zero part gets the zero vector (never a head bias), so that "no
    evidence" stays distinguishable from a real embedding.
    """
    summed = sum_parts(part_features, instance_index, n_instances, part_weights)
    empty = ~np.any(summed != 0, axis=1)
    if head is not None and not isinstance(head, nn.Identity):
        parameter = next(head.parameters(), None)
        on = parameter.device if parameter is not None else torch.device("cpu")
        with torch.inference_mode():
            summed = head(torch.from_numpy(summed).to(on)).float().cpu().numpy()
    fused = _normalise_rows(summed).astype(np.float32)
    fused[empty] = 0.0
    return fused
