"""The label-free clustering threshold of a trained model, measured on labelled data it was built with.

``--threshold auto`` calibrates on a collection's own ``split=dev`` rows when it has them; a user's new
book has none. Then the threshold must come from the model: the distance at which instances stop
being one character is a property of the embedding space, measured here once per model on labelled
books and stored beside the checkpoint (:mod:`comicid.models.model_calibration`).

How: every labelled instance of the given manifests that is not ``split=test`` is embedded (both
precisions of a checkpoint that has an int8 graph, since int8 features move distances slightly);
each book of each manifest is clustered on its own over a grid of thresholds, and the value with the
best mean per-book objective wins (:func:`comicid.identity.calibration.calibrate_threshold`).
Averaging per book gives every domain of the training data one vote, whatever its size, so the
value holds across styles rather than fitting the largest set. The objective is
:data:`DEFAULT_OBJECTIVE`; docs/CLUSTERING.md says why it was chosen and what it measures.

For the agglomerative method the rule can also adapt per book: :func:`fit_silhouette_tolerance`
measures, on the same books, whether letting each book choose its own cut by its silhouette
(:mod:`comicid.identity.silhouette`, the measured threshold as fallback) gets the cast size closer
than the constant, and with which tolerance; the winner is stored as the model's rule. The same
books also give the threshold at which a cluster takes a character's name from a bank
(:mod:`comicid.workflows.naming_calibration`), stored beside it.

A model that was fitted on these very identities (a discriminant head) draws them tighter than it
will draw a user's characters, so measuring on them would pick a threshold too low for new books;
``embedded=`` lets such a trainer pass embeddings of identities the model did not fit (cross-fitted
halves, :mod:`comicid.workflows.discriminant`).

``benchmarks/train_default.py`` calls :func:`calibrate_model` after training, so a newly trained
default gets its threshold by the same command.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comicid.data.manifest import read_manifest
from comicid.errors import ConfigError
from comicid.identity import Constraints, IdentityInputError, calibrate_threshold, create_clusterer
from comicid.identity.calibration import DEFAULT_GRIDS, OBJECTIVES
from comicid.identity.scopes import scope_keys
from comicid.models.embedding_model import EmbeddingModel, load_embedding_model
from comicid.models.int8 import int8_graph_path
from comicid.models.model_calibration import calibration_path, write_calibration
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.embed import embed_collection
from comicid.workflows.bank import naming_rule
from comicid.workflows.naming_calibration import fit_naming_threshold
from comicid.store.ingest import ingest

#: Chosen on the dev rows of the development sets (docs/CLUSTERING.md, "Without labels").
DEFAULT_OBJECTIVE = "cluster_count"
#: Silhouette tolerances tried for the agglomerative method's per-book rule (None: the constant).
TOLERANCES: tuple[float | None, ...] = (None, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)


@dataclass(frozen=True)
class LabelFreeFit:
    """A label-free threshold and what it was measured on."""

    method: str
    threshold: float
    objective: str
    score: float
    n_instances: int
    n_books: int
    sources: list[str] = field(default_factory=list)
    curve: dict[str, float] = field(default_factory=dict)  # threshold -> mean per-book objective


@dataclass(frozen=True)
class ToleranceFit:
    """The per-book silhouette rule's tolerance (None: the constant threshold wins) and its scores."""

    tolerance: float | None
    score: float
    scores: dict[str, float]  # tolerance ("none" for the constant) -> mean per-set objective


def labelled_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that may calibrate: a known identity, and never ``split=test``."""
    return frame[(frame["identity"] != "") & (frame["split"] != "test")].reset_index(drop=True)


def labelled_collections(manifests: Sequence[str | Path], workdir: Path,
                         progress: bool = True) -> Iterator[tuple[int, Path, Collection]]:
    """The labelled non-test rows of each manifest imported into its own collection under ``workdir``
    (books prefixed by the manifest's number, so two manifests never share a book); manifests without
    such rows are skipped. Yields ``(number, manifest, collection)``."""
    for number, manifest in enumerate(manifests):
        frame = labelled_rows(read_manifest(manifest))
        if frame.empty:
            continue
        frame["book"] = f"m{number}:" + frame["book"]
        name = re.sub(r"[^A-Za-z0-9]+", "-", Path(manifest).stem).strip("-")
        collection = Collection.create(workdir / f"{number:02d}-{name}")
        ingest(frame, collection, progress=progress)
        yield number, Path(manifest), collection


def describe_source(manifest: Path, instances: int) -> str:
    """``set/manifest.csv (N instances)``: what a model was fitted on, without machine paths."""
    return f"{'/'.join(manifest.parts[-2:])} ({instances} instances)"


def embed_labelled(model: EmbeddingModel, manifests: Sequence[str | Path], workdir: Path,
                   progress: bool = True) -> tuple[InstanceEmbeddings, list[str]]:
    """Embed the labelled non-test instances of every manifest; books are prefixed by manifest number."""
    parts: list[InstanceEmbeddings] = []
    sources: list[str] = []
    for number, manifest, collection in labelled_collections(manifests, workdir, progress):
        parts.append(embed_collection(collection, model, progress=progress))
        parts[-1].table["set"] = f"m{number}"  # one vote per manifest when fitting
        sources.append(describe_source(manifest, len(parts[-1])))
    if not parts:
        raise ConfigError("no labelled non-test rows in the given manifests: nothing to measure a threshold on")
    table = pd.concat([part.table for part in parts], ignore_index=True)
    return InstanceEmbeddings(table, np.concatenate([part.vectors for part in parts]), model.model_id), sources


def _fit_naming_rule(data: InstanceEmbeddings) -> tuple[dict[str, float] | None, dict[str, Any]]:
    """The bank-naming rule measured on ``data`` (``rules["bank"]``) and its record for ``fit``. Too few
    identities leave the model without one (None; naming then uses the clustering threshold), said in
    the record."""
    try:
        naming = fit_naming_threshold(data)
    except ConfigError as error:
        return None, {"naming_threshold": None, "skipped": str(error)}
    return naming_rule(naming.threshold, naming.by_size), {"naming_threshold": naming.threshold, "by_bank_size": {str(k): v for k, v in naming.by_size.items()},
            "score": round(naming.score, 4),
            "objective": "balanced naming accuracy on simulated banks", "bank_sizes": list(naming.bank_sizes),
            "rounds": naming.rounds, "sets": naming.n_sets, "curve": naming.curve, "per_set": naming.per_set}


def fit_label_free_threshold(embedded: InstanceEmbeddings, method: str = "agglomerative", scope: str = "book",
                             objective: str = DEFAULT_OBJECTIVE, grid: np.ndarray | None = None,
                             params: dict[str, Any] | None = None) -> LabelFreeFit:
    """The grid threshold with the best objective over labelled instances, every data set one vote.

    Each book is clustered on its own; a set's score is the mean over its books, and the threshold
    maximises the mean over sets (``table["set"]``; all one set when the column is absent), so a set
    with many small books (eight DiceBear styles) weighs as much as one with a single large book.
    Ties go to the middle of the tied values, as in :func:`calibrate_threshold`. ``params`` are the
    clusterer's other hyper-parameters, held fixed.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    kept = embedded.subset(np.any(embedded.vectors != 0, axis=1))
    values = DEFAULT_GRIDS[method] if grid is None else np.asarray(grid, dtype=np.float64)
    parameter = create_clusterer(method).threshold_parameter
    sets = kept.table["set"].to_numpy() if "set" in kept.table else np.zeros(len(kept), dtype=int)
    fixed = dict(params or {})
    curves, n_instances, n_books = [], 0, 0
    for name in sorted(set(sets.tolist())):
        part = kept.subset(sets == name)
        try:
            calibration = calibrate_threshold(
                part.vectors, part.table["identity"].to_numpy(), scope_keys(part.table, scope),
                lambda value: create_clusterer(method, **fixed, **{parameter: value}), grid=values, objective=objective,
                constraints=Constraints.from_instances(part.table))
        except IdentityInputError:  # a set without a scope of 2 instances has nothing to say
            continue
        curves.append(calibration.scores)
        n_instances += calibration.n_instances
        n_books += calibration.n_groups
    if not curves:
        raise ConfigError("no book with at least 2 labelled instances: nothing to measure a threshold on")
    mean = np.nanmean(np.stack(curves), axis=0)  # (T,) mean over sets
    best = np.flatnonzero(mean >= np.nanmax(mean) - 1e-12)
    chosen = int(best[len(best) // 2])
    curve = {f"{t:g}": round(float(s), 4) for t, s in zip(values, mean, strict=True)}
    return LabelFreeFit(method=method, threshold=float(values[chosen]), objective=objective, score=float(mean[chosen]),
                        n_instances=n_instances, n_books=n_books, curve=curve)


def fit_silhouette_tolerance(embedded: InstanceEmbeddings, threshold: float, scope: str = "book",
                             objective: str = DEFAULT_OBJECTIVE,
                             tolerances: Sequence[float | None] = TOLERANCES) -> ToleranceFit:
    """The agglomerative rule that gets ``objective`` best on labelled books, every set one vote: a
    constant cut at ``threshold`` (tolerance None) or each book's own silhouette cut with ``threshold``
    as fallback (:class:`~comicid.identity.agglomerative.AgglomerativeClusterer`'s
    ``silhouette_tolerance``). Ties keep the first, so the constant wins unless beaten."""
    scores: dict[str, float] = {}
    for tolerance in tolerances:
        fit = fit_label_free_threshold(embedded, "agglomerative", scope, objective, grid=np.array([threshold]),
                                       params={"silhouette_tolerance": tolerance})
        scores["none" if tolerance is None else f"{tolerance:g}"] = round(fit.score, 4)
    best = max(scores, key=lambda key: scores[key])  # first of the best: the constant when tied
    return ToleranceFit(tolerance=None if best == "none" else float(best), score=scores[best], scores=scores)


def calibrate_model(checkpoint: str | Path, manifests: Sequence[str | Path], methods: Sequence[str] = ("agglomerative",),
                    objective: str = DEFAULT_OBJECTIVE, part_weights: dict[str, float] | None = None,
                    workdir: str | Path | None = None, progress: bool = True, name: str | None = None,
                    embedded: InstanceEmbeddings | None = None, sources: Sequence[str] = ()) -> Path:
    """Measure the label-free rule of a checkpoint (fp32, and int8 when it has a graph) and write
    ``<stem>.calibration.json`` beside it; returns that path.

    ``checkpoint`` may also be a registry backbone name (its file goes to the package's weights
    folder). ``part_weights`` are stored as the model's fusion weights and used while measuring.
    ``embedded`` (with ``sources`` describing it): labelled embeddings to measure on instead of the
    manifests' non-test rows embedded by the checkpoint, for a model fitted on those rows (see the
    module docstring); its values then serve both precisions.
    """
    is_file = Path(str(checkpoint)).is_file()
    source: str | Path = Path(checkpoint).resolve() if is_file else str(checkpoint)
    precisions = ["fp32"] + (["int8"] if is_file and int8_graph_path(Path(source)).is_file() else [])
    thresholds: dict[str, dict[str, float]] = {}
    rules: dict[str, dict[str, float]] = {}
    fits: dict[str, Any] = {}
    graph_sha: str | None = None
    source_sha: str | None = None
    measured: dict[str, tuple[InstanceEmbeddings, list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="comicid-label-free-") as scratch:
        root = Path(workdir) if workdir is not None else Path(scratch)
        for precision in precisions:
            model = load_embedding_model(source, precision=precision)
            model.part_weights = part_weights  # measure with the weights that will be stored
            model.label_free_thresholds, model.label_free_params = {}, {}
            source_sha = model.checkpoint_sha256
            if precision == "int8":
                graph_sha = getattr(model.backbone, "sha256", None)
            if embedded is None:
                measured[precision] = embed_labelled(model, manifests, root, progress=progress)  # cached per model id
            elif not measured:
                measured[precision] = (embedded, list(sources))
    for precision in precisions:
        if precision not in measured:  # given embeddings serve both precisions: measured once
            thresholds[precision] = dict(thresholds["fp32"])
            fits.update({f"{precision}/{method}": fits[f"fp32/{method}"] for method in methods})
            continue
        data, fits["data"] = measured[precision]
        thresholds[precision] = {}
        for method in methods:
            fit = fit_label_free_threshold(data, method=method, objective=objective)
            thresholds[precision][method] = fit.threshold
            record: dict[str, Any] = {"threshold": fit.threshold, "objective": objective, "score": round(fit.score, 4),
                                      "instances": fit.n_instances, "books": fit.n_books, "curve": fit.curve}
            if method == "agglomerative" and precision == "fp32":  # the rule is one for both precisions
                tolerance = fit_silhouette_tolerance(data, fit.threshold, objective=objective)
                record["silhouette_tolerance"] = {"chosen": tolerance.tolerance, "scores": tolerance.scores}
                if tolerance.tolerance is not None:
                    rules[method] = {"silhouette_tolerance": tolerance.tolerance}
            fits[f"{precision}/{method}"] = record
        if precision == "fp32":  # naming a cluster from a bank: one rule for both precisions
            naming_rule, fits["fp32/bank"] = _fit_naming_rule(data)
            if naming_rule is not None:
                rules["bank"] = naming_rule
    rule = ("mean per-book objective over labelled non-test instances" if embedded is None else
            "mean per-book objective over labelled instances the model was not fitted on (given embeddings)")
    return write_calibration(calibration_path(source), name or Path(str(checkpoint)).stem, source_sha, thresholds,
                             part_weights=part_weights, int8_graph_sha256=graph_sha, rules=rules,
                             fit={"rule": rule, **fits})
