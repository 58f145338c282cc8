"""A collection folder: everything comicid knows about one set of character instances.

Layout (all writes atomic, see :mod:`comicid.atomic`)::

    COLLECTION/
      collection.json          format, comicid version, sources, embedding models, last assignment
      instances.parquet        one row per part: manifest-v1 columns + row_key, instance_key, crop_hash
      crops/ab/<hash>.png      crop cache, keyed by the SHA-256 of the crop's pixels
      embeddings/<model>/      part features per crop for one model id (resumable shard cache)
      assignments.parquet      instance -> identity id and confidence, from the last `cluster`
      models/                  models adapted to this collection (e.g. by the adaptive method)

Crops are stored rather than re-cut from pages so that a collection survives its sources moving,
and so that embedding reads small PNGs instead of decoding full pages again.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from comicid._version import __version__
from comicid.data.images import crop_hash, load_image
from comicid.errors import CollectionError
from comicid.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from comicid.store.lock import writer_lock

FORMAT = "comicid-collection"
FORMAT_VERSION = 1
META_FILE = "collection.json"
INSTANCES_FILE = "instances.parquet"
ASSIGNMENTS_FILE = "assignments.parquet"
#: The one assignment schema of the library: :class:`comicid.workflows.cluster.Assignment` tables and
#: ``assignments.parquet`` (``instance_key`` as stored, ``identity_id`` ``""`` for unknown; more columns,
#: e.g. ``book``, may follow). ``comicid cluster --out`` writes it through
#: :func:`comicid.identity.scopes.output_table`, the only conversion to the user-facing names.
ASSIGNMENT_COLUMNS = ("instance_key", "identity_id", "confidence")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _read_table(path: Path, fix: str) -> pd.DataFrame:
    """A Parquet table of the collection; a truncated or foreign file is a :class:`CollectionError`."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CollectionError(f"'{path}' is damaged ({first}); {fix}") from None


class Collection:
    """Read and write one collection folder. Cheap to construct; reads lazily."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- life cycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path) -> Collection:
        """Open ``root`` if it is a collection, else make an empty one (refusing non-empty folders)."""
        collection = cls(root)
        if collection.meta_path.is_file():
            return collection.check()
        if collection.root.exists() and not collection.root.is_dir():
            raise CollectionError(f"'{collection.root}' is a file, not a collection folder")
        if collection.root.exists() and any(collection.root.iterdir()):
            raise CollectionError(f"'{collection.root}' exists, is not empty, and is not a comicid collection")
        collection.root.mkdir(parents=True, exist_ok=True)
        collection.write_meta({"format": FORMAT, "version": FORMAT_VERSION, "created": _now(),
                               "sources": [], "embeddings": {}, "assignments": None})
        return collection

    @classmethod
    def open(cls, root: str | Path) -> Collection:
        collection = cls(root)
        if not collection.meta_path.is_file():
            raise CollectionError(f"'{collection.root}' is not a comicid collection (no {META_FILE}); "
                                  "create one with `comicid import`")
        return collection.check()

    def check(self) -> Collection:
        meta = self.meta()
        if meta.get("format") != FORMAT:
            raise CollectionError(f"'{self.meta_path}' is not a comicid collection file")
        if int(meta.get("version", 0)) > FORMAT_VERSION:
            raise CollectionError(f"'{self.root}' was written by a newer comicid (collection format "
                                  f"{meta['version']}); upgrade comicid")
        return self

    def writer(self, command: str) -> contextlib.AbstractContextManager[None]:
        """The collection's writer lock (see :mod:`comicid.store.lock`); every command that writes holds it."""
        return writer_lock(self.root, command)

    # -- metadata -------------------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.root / META_FILE

    def meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise CollectionError(f"cannot read '{self.meta_path}': {error}") from None

    def write_meta(self, meta: dict[str, Any]) -> None:
        meta = dict(meta, comicid_version=__version__, updated=_now())
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def update_meta(self, **changes: Any) -> None:
        self.write_meta({**self.meta(), **changes})

    # -- instances ------------------------------------------------------------------------------
    @property
    def instances_path(self) -> Path:
        return self.root / INSTANCES_FILE

    def has_instances(self) -> bool:
        return self.instances_path.is_file()

    def instances(self) -> pd.DataFrame:
        """The parts table; raises when nothing was imported yet."""
        if not self.has_instances():
            raise CollectionError(f"'{self.root}' holds no instances yet; run `comicid import` first")
        return _read_table(self.instances_path, "delete it and run `comicid import` again to rebuild it")

    def write_instances(self, frame: pd.DataFrame) -> None:
        with atomic_write(self.instances_path, "wb") as handle:
            frame.reset_index(drop=True).to_parquet(handle, index=False)

    # -- crops ----------------------------------------------------------------------------------
    def crop_path(self, key: str) -> Path:
        return self.root / "crops" / key[:2] / f"{key}.png"

    def store_crop(self, image: Image.Image) -> str:
        """Save a crop once (content addressed) and return its hash."""
        key = crop_hash(image)
        path = self.crop_path(key)
        if not path.is_file():
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
            atomic_write_bytes(path, buffer.getvalue())
        return key

    def load_crop(self, key: str) -> Image.Image:
        return load_image(self.crop_path(key))

    # -- embeddings ---------------------------------------------------------------------------
    @property
    def features_dir(self) -> Path:
        """Where :class:`comicid.models.embed.FeatureCache` keeps part features, one folder per model."""
        return self.root / "embeddings"

    def record_embedding_model(self, model_id: str, dim: int, crops: int) -> None:
        """Note which model produced the collection's current embeddings."""
        embeddings = dict(self.meta().get("embeddings") or {})
        embeddings[model_id] = {"crops": crops, "dim": dim, "updated": _now()}
        self.update_meta(embeddings=embeddings, embedding_model=model_id)

    # -- assignments ----------------------------------------------------------------------------
    @property
    def assignments_path(self) -> Path:
        return self.root / ASSIGNMENTS_FILE

    def write_assignments(self, table: pd.DataFrame, info: dict[str, Any]) -> None:
        """Store instance -> identity assignments (:data:`ASSIGNMENT_COLUMNS`) and how they were made
        (method, model, threshold)."""
        missing = [column for column in ASSIGNMENT_COLUMNS if column not in table.columns]
        if missing:
            raise CollectionError(f"an assignment table needs columns {', '.join(missing)}")
        with self.writer("cluster"):
            with atomic_write(self.assignments_path, "wb") as handle:
                table.reset_index(drop=True).to_parquet(handle, index=False)
            self.update_meta(assignments=dict(info, written=_now()))

    def assignments(self) -> pd.DataFrame:
        if not self.assignments_path.is_file():
            raise CollectionError(f"'{self.root}' has no identity assignments yet; run `comicid cluster` first")
        return _read_table(self.assignments_path, "run `comicid cluster` again to rebuild it")

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def adapters_dir(self) -> Path:
        """What adaptive clustering learnt per scope (see :func:`comicid.workflows.cluster.learnt_state_paths`)."""
        return self.models_dir / "adapters"
