"""Identity assignment: clusterers swappable by name, comic constraints, scopes, thresholds.

Every clusterer is a scikit-learn estimator (:class:`~comicid.identity.base.ConstrainedClusterer`):
hyper-parameters in ``__init__``, validated in ``fit``, and
``fit_predict(embeddings (N, D) L2-normalised, constraints: Constraints | None) -> labels (N,)``
(int64, numbered by first appearance, -1 = unknown); it keeps no state between calls and names the
``__init__`` argument that ``--threshold`` sets in the class attribute ``threshold_parameter``.
A new method registers its class with ``@CLUSTERERS.register(name)`` (:mod:`comicid.identity.registry`)
and is imported here. See ``docs/CLUSTERING.md``.
"""

from __future__ import annotations

from comicid.identity.agglomerative import AgglomerativeClusterer
from comicid.identity.base import ConstrainedClusterer, confidence
from comicid.identity.calibration import (
    DEFAULT_THRESHOLDS,
    Calibration,
    ThresholdChoice,
    auto_threshold,
    calibrate_threshold,
)
from comicid.identity.constraints import Constraints, IdentityInputError
from comicid.identity.density import HDBSCANClusterer
from comicid.identity.registry import CLUSTERERS, create_clusterer
from comicid.identity.adaptive import AdaptiveClusterer
from comicid.identity.graph import GraphClusterer
from comicid.identity.mining import MiningClusterer, mine_identities
from comicid.identity.umap_hdbscan import UmapHDBSCANClusterer
from comicid.identity.scopes import SCOPES, cluster_by_scope, output_table, write_assignments


__all__ = [
    "CLUSTERERS", "DEFAULT_THRESHOLDS", "SCOPES", "AdaptiveClusterer", "AgglomerativeClusterer", "Calibration",
    "ConstrainedClusterer", "Constraints", "GraphClusterer", "HDBSCANClusterer", "IdentityInputError", "MiningClusterer",
    "ThresholdChoice", "UmapHDBSCANClusterer", "auto_threshold", "calibrate_threshold", "cluster_by_scope",
    "confidence", "create_clusterer", "mine_identities", "output_table", "write_assignments",
]
