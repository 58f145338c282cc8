"""A character bank: named characters enrolled from a few exemplars, used to name the clusters of new books.

Layout of a bank folder (all writes atomic)::

    BANK/
      bank.json                 characters: name -> exemplars (crop hash, source), aliases, attributes
      crops/<hash>.png          exemplar images (content addressed)
      vectors/<model>.npz       exemplar instance vectors per embedding model id

Exemplars come from images (each image is embedded by the model as one part, like a crop), or from
a confirmed identity of a collection (its instances' vectors, so the bank lives in the same space as
the clusters it will name). :func:`suggest_exemplars` picks which instances to enrol: the most
*representative* (closest to the identity's centre) or the most *diverse* (farthest-point sampling),
since the choice of exemplars alone moves naming accuracy by many points (Magiv2 reports 13-15).

Naming is open-set. A cluster is named after a bank character only when the cosine distance between
the cluster's prototype (normalised mean of its members) and the character's prototype (normalised
mean of its exemplars) is below the naming threshold: the model's own (measured on identities it was
not fitted on, :mod:`comicid.workflows.naming_calibration`, stored in its calibration file; the value
measured for the bank size nearest to the bank's, since larger banks need stricter thresholds), else
the agglomerative clustering threshold in force. Why not always the latter: a model calibrated to merge
generously so that casts come out the right size names generously too (the shipped default at its
clustering threshold 0.65 named 17-19 of 37 extras of the bank-naming benchmark after a main
character). Prototypes rather than average linkage because the spread of a cluster drawn in several
styles, and of exemplars chosen to be diverse, would otherwise count against every match (on synthetic
series, development seeds 0-1: naming accuracy 0.63 vs 0.39 for average linkage, see
benchmarks/bank_naming.py). Clusters that match no one keep their own id as new identities
(never one "other" bucket); two clusters that share a panel are never given the same name (the closer
keeps it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comicid.data.images import crop_hash, load_image
from comicid.errors import ConfigError
from comicid.workflows.cluster import Assignment
from comicid.identity.curation import Curator, clean_text, slug
from comicid.models.embed import embed_crops, fuse_parts
from comicid.atomic import atomic_write, atomic_write_text
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings
from comicid.store.vectors import load_instance_vectors, vectors_model

BANK_FILE = "bank.json"
BANK_FORMAT = "comicid-bank"
STRATEGIES = ("representative", "diverse")
BANK_PREFIX = "bank/"
#: Key prefix of each bank size's own threshold in the model's ``rules["bank"]`` (``bank_size_8``: a float
#: per key, as every calibrated rule parameter).
BANK_SIZE_PREFIX = "bank_size_"


class BankError(ConfigError):
    """A bank folder, a character name or an exemplar is unusable."""


@dataclass
class BankCharacter:
    name: str
    exemplars: list[dict[str, str]] = field(default_factory=list)  # {"key": vector key, "source": where from}
    aliases: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)


def bank_identity_id(name: str) -> str:
    """The collection-wide identity id of a bank character (the same in every book)."""
    return BANK_PREFIX + slug(name)


class CharacterBank:
    """Read and write one bank folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def path(self) -> Path:
        return self.root / BANK_FILE

    def characters(self) -> dict[str, BankCharacter]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise BankError(f"cannot read bank '{self.path}': {error}") from None
        if data.get("format") != BANK_FORMAT:
            raise BankError(f"'{self.path}' is not a comicid character bank")
        return {name: BankCharacter(name=name, **entry) for name, entry in data["characters"].items()}

    def _write(self, characters: dict[str, BankCharacter]) -> None:
        data = {"format": BANK_FORMAT, "version": 1,
                "characters": {name: {"exemplars": c.exemplars, "aliases": c.aliases, "attributes": c.attributes}
                               for name, c in sorted(characters.items())}}
        atomic_write_text(self.path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    def vectors(self, model_id: str) -> dict[str, np.ndarray]:
        path = self._vectors_path(model_id)
        if not path.is_file():
            return {}
        with np.load(path) as archive:
            return {key: archive[key] for key in archive.files}

    def _vectors_path(self, model_id: str) -> Path:
        return self.root / "vectors" / f"{slug(model_id)}.npz"

    def _add_vectors(self, model_id: str, new: dict[str, np.ndarray]) -> None:
        merged = {**self.vectors(model_id), **{k: np.asarray(v, dtype=np.float32) for k, v in new.items()}}
        with atomic_write(self._vectors_path(model_id), "wb") as handle:
            np.savez(handle, **merged)

    def _enrol(self, name: str, exemplars: list[dict[str, str]], model_id: str, vectors: dict[str, np.ndarray]) -> BankCharacter:
        name = clean_text(name, "character name")
        if not name:
            raise BankError("a character needs a name")
        characters = self.characters()
        character = characters.setdefault(name, BankCharacter(name=name))
        known = {e["key"] for e in character.exemplars}
        character.exemplars.extend(e for e in exemplars if e["key"] not in known)
        self._add_vectors(model_id, vectors)
        self._write(characters)
        return character

    def add_images(self, name: str, images: list[Path], model: Any, device: str = "cpu") -> BankCharacter:
        """Enrol ``name`` from image files, each embedded by ``model`` as one part."""
        if not images:
            raise BankError("give at least one exemplar image")
        crops = [load_image(path) for path in images]
        keys = []
        for crop in crops:
            key = crop_hash(crop)
            target = self.root / "crops" / f"{key}.png"
            if not target.is_file():
                with atomic_write(target, "wb") as handle:
                    crop.convert("RGB").save(handle, format="PNG")
            keys.append(key)
        features = embed_crops(crops, model, device=device, progress=False, num_workers=0)
        vectors = fuse_parts(features, np.arange(len(crops)), len(crops), head=model.head.to("cpu").eval())
        exemplars = [{"key": key, "source": str(path)} for key, path in zip(keys, images)]
        return self._enrol(name, exemplars, model.model_id, dict(zip(keys, vectors)))

    def add_instances(self, name: str, keys: list[str], vectors: np.ndarray, model_id: str,
                      source: str) -> BankCharacter:
        """Enrol ``name`` from instance vectors (e.g. exemplars of a confirmed identity of a collection)."""
        if len(keys) == 0:
            raise BankError("give at least one exemplar instance")
        exemplar_keys = [f"{source}::{key}" for key in keys]
        exemplars = [{"key": k, "source": source} for k in exemplar_keys]
        return self._enrol(name, exemplars, model_id, dict(zip(exemplar_keys, np.asarray(vectors))))

    def exemplar_matrix(self, model_id: str) -> tuple[list[str], list[np.ndarray]]:
        """Names and ``(k_i, D)`` exemplar vectors of every character with vectors for ``model_id``."""
        vectors = self.vectors(model_id)
        names, matrices = [], []
        for name, character in sorted(self.characters().items()):
            rows = [vectors[e["key"]] for e in character.exemplars if e["key"] in vectors]
            if rows:
                names.append(name)
                matrices.append(np.stack(rows))
        if not names:
            raise BankError(f"bank '{self.root}' has no exemplars embedded with model {model_id!r}; "
                            "enrol with the model the collection was embedded with")
        return names, matrices


def suggest_exemplars(vectors: np.ndarray, count: int = 3, strategy: str = "representative") -> np.ndarray:
    """Indices of ``count`` rows of ``vectors`` (one identity's ``(N, D)`` unit vectors) to enrol.

    ``representative``: the rows closest to the identity's mean direction (typical appearances).
    ``diverse``: farthest-point sampling started from the most representative row (covers poses and
    styles). Deterministic.
    """
    if strategy not in STRATEGIES:
        raise BankError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    unit = np.asarray(vectors, dtype=np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    centre = unit.mean(axis=0)
    similarity = unit @ (centre / max(np.linalg.norm(centre), 1e-12))
    order = np.argsort(-similarity, kind="stable")
    count = min(count, len(unit))
    if strategy == "representative":
        return order[:count]
    chosen = [int(order[0])]
    nearest = 1.0 - unit @ unit[chosen[0]]
    while len(chosen) < count:
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, 1.0 - unit @ unit[pick])
    return np.array(chosen)


@dataclass
class Naming:
    """Which clusters got a bank name: ``identity`` is the renamed id per instance, ``names`` the roster."""

    identity: np.ndarray
    names: dict[str, str]
    matches: pd.DataFrame  # cluster, name, distance, named


def _unit(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (one, or rows of a matrix) scaled to unit length."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def name_clusters(vectors: np.ndarray, identity: np.ndarray, table: pd.DataFrame, names: list[str],
                  exemplars: list[np.ndarray], threshold: float) -> Naming:
    """Name clusters from the bank (see the module docstring for the rule); unmatched clusters keep their ids.

    Args:
        vectors: ``(N, D)`` unit instance vectors; ``identity``: ``(N,)`` cluster id per instance ("" unknown).
        table: one row per instance with ``book``, ``page``, ``panel`` (for the panel rule).
        names, exemplars: bank characters and their ``(k, D)`` exemplar vectors (same model).
        threshold: prototype cosine distance below which a cluster takes a character's name.
    """
    identity = np.asarray(identity, dtype=object)
    clusters = sorted({str(c) for c in identity if c})
    prototypes = np.stack([_unit(e.mean(axis=0)) for e in exemplars])  # (C, D)
    rows = []
    for cluster in clusters:
        centre = _unit(np.asarray(vectors)[identity == cluster].mean(axis=0))
        distance = (1.0 - prototypes @ centre).tolist()
        best = int(np.argmin(distance))
        rows.append({"cluster": cluster, "name": names[best], "distance": distance[best]})
    matches = pd.DataFrame(rows, columns=["cluster", "name", "distance"])
    matches["named"] = matches["distance"] < threshold
    panel = (table["book"].astype(str) + "/" + table["page"].astype(str) + "/" + table["panel"].astype(str)).to_numpy()
    has_panel = (table["panel"].astype(str) != "").to_numpy()
    panels = {c: set(panel[(identity == c) & has_panel]) for c in clusters}
    taken: dict[str, set[str]] = {}
    for index in matches.sort_values(["distance", "cluster"]).index:
        if not matches.at[index, "named"]:
            continue
        cluster, name = matches.at[index, "cluster"], matches.at[index, "name"]
        if panels[cluster] & taken.get(name, set()):
            matches.at[index, "named"] = False  # a panel cannot show one character twice
            continue
        taken.setdefault(name, set()).update(panels[cluster])
    rename = {row.cluster: bank_identity_id(row.name) for row in matches.itertuples() if row.named}
    renamed = np.array([rename.get(str(c), c) for c in identity], dtype=object)
    return Naming(identity=renamed, names={bank_identity_id(n): n for n in matches.loc[matches["named"], "name"]},
                  matches=matches)


def naming_rule(threshold: float, by_size: dict[int, float]) -> dict[str, float]:
    """A model's ``rules["bank"]``: the one naming threshold, and each measured bank size's own (flat
    ``bank_size_N`` keys, as every calibrated rule parameter is a float); read back by
    :func:`model_naming_threshold`."""
    return {"naming_threshold": float(threshold),
            **{f"{BANK_SIZE_PREFIX}{size}": float(value) for size, value in by_size.items()}}


def bank_size_thresholds(rule: dict[str, float]) -> dict[int, float]:
    """Each measured bank size's threshold from a model's ``rules["bank"]`` (empty for older files)."""
    return {int(key[len(BANK_SIZE_PREFIX):]): float(value) for key, value in rule.items()
            if key.startswith(BANK_SIZE_PREFIX)}


def nearest_bank_size(sizes: Sequence[int], characters: int) -> int:
    """The measured bank size closest to a bank of ``characters`` on a log scale (ties: the larger, the
    stricter); banks past the largest measured size take its value."""
    return min(sizes, key=lambda size: (abs(np.log2(size) - np.log2(max(characters, 1))), -size))


def model_naming_threshold(rule: dict[str, float], characters: int | None = None) -> tuple[float, str] | None:
    """A model's calibrated naming threshold and its source from its ``rules["bank"]``: for a bank of
    ``characters``, the value of the nearest measured bank size; else the one value; None without any."""
    by_size = bank_size_thresholds(rule)
    if by_size and characters is not None:
        size = nearest_bank_size(sorted(by_size), characters)
        return by_size[size], f"model, measured for banks of {size}"
    if rule.get("naming_threshold") is not None:
        return float(rule["naming_threshold"]), "model"
    return None


def check_naming_threshold(threshold: float) -> float:
    """``threshold`` as a float, or :class:`BankError` when it is no cosine distance in (0, 2]."""
    if not 0.0 < float(threshold) <= 2.0:
        raise BankError(f"the naming threshold is a cosine distance in (0, 2], got {threshold!r}")
    return float(threshold)


def naming_threshold(assignment: Assignment, embedded: InstanceEmbeddings, threshold: float | None = None,
                     characters: int | None = None) -> tuple[float, str]:
    """The naming threshold and where it comes from: ``threshold`` (``"user"``), else the model's
    calibrated one (``"model"``; for a bank of ``characters``, the value measured for the nearest bank
    size when the model has them), else the agglomerative clustering's threshold (``"clustering"``)."""
    if threshold is not None:
        return check_naming_threshold(threshold), "user"
    calibrated = model_naming_threshold(embedded.label_free_params.get("bank", {}), characters)
    if calibrated is not None:
        return calibrated
    clustering = assignment.info.get("threshold")
    if assignment.info.get("method", "agglomerative") != "agglomerative" or clustering is None:
        raise BankError(f"model {embedded.model_id!r} has no calibrated naming threshold and method "
                        f"{assignment.info.get('method')!r} no cosine distance threshold to name at: give one "
                        "(--bank-threshold), or use --method agglomerative")
    return float(clustering), "clustering"


def apply_bank(assignment: Assignment, embedded: InstanceEmbeddings, bank: CharacterBank,
               protected: set[str] | frozenset[str] = frozenset(), threshold: float | None = None) -> Assignment:
    """Rename the clusters of ``assignment`` that match a bank character; record names in ``info["names"]``.

    ``protected`` ids (identities a person named or confirmed) are never renamed: a person's decision
    beats the bank. ``threshold``: the naming threshold (default: :func:`naming_threshold`'s choice;
    ``info["bank"]`` records the value and its source).
    """
    threshold, source = naming_threshold(assignment, embedded, threshold, characters=len(bank.characters()))
    names, exemplars = bank.exemplar_matrix(embedded.model_id)
    table = assignment.table
    identity = table["identity_id"].astype(str).to_numpy(dtype=object)
    candidate = np.array([bool(i) and i not in protected for i in identity])
    naming = name_clusters(embedded.vectors[candidate], identity[candidate], embedded.table[candidate], names,
                           exemplars, float(threshold))
    identity[candidate] = naming.identity
    out = table.copy()
    out["identity_id"] = identity.astype(str)
    info = dict(assignment.info, names={**assignment.info.get("names", {}), **naming.names},
                bank={"path": str(bank.root), "characters": len(names), "threshold": threshold, "threshold_source": source,
                      "clusters_named": int(naming.matches["named"].sum()),
                      "clusters_new": int((~naming.matches["named"]).sum())})
    info["identities"] = int(len({i for i in identity if i}))
    return Assignment(table=out, info=info)


def enrol_identity(bank: CharacterBank, name: str, collection: Collection, identity_id: str, count: int = 3,
                   strategy: str = "representative") -> BankCharacter:
    """Enrol ``name`` from ``count`` suggested instances of ``identity_id`` in ``collection``."""
    keys, vectors = load_instance_vectors(collection)
    members = set(Curator(collection).state().members().get(identity_id, []))
    if not members:
        raise BankError(f"no identity {identity_id!r} in '{collection.root}'")
    rows = np.array([i for i, key in enumerate(keys) if key in members])
    picked = rows[suggest_exemplars(np.asarray(vectors[rows]), count, strategy)]
    model_id = vectors_model(collection)
    return bank.add_instances(name, [keys[i] for i in picked], np.asarray(vectors[picked]), model_id,
                              source=f"{collection.root.name}/{identity_id}")


__all__ = ["BANK_PREFIX", "BANK_SIZE_PREFIX", "BankCharacter", "apply_bank", "BankError", "CharacterBank", "Naming",
           "STRATEGIES", "bank_identity_id", "bank_size_thresholds", "check_naming_threshold", "enrol_identity",
           "model_naming_threshold", "name_clusters", "naming_rule", "naming_threshold", "nearest_bank_size", "suggest_exemplars"]
