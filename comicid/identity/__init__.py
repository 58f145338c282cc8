"""Identity assignment: clusterers swappable by name, comic constraints, scopes, thresholds.

Every clusterer has hyper-parameters in ``__init__`` and
``fit_predict(embeddings (N, D) L2-normalised, constraints: Constraints | None) -> labels (N,)``
(int64, numbered by first appearance, -1 = unknown), keeps no state between calls, and names the
``__init__`` argument that ``--threshold`` sets in the class attribute ``threshold_parameter``.
A new method registers its class with ``@CLUSTERERS.register(name)`` (:mod:`comicid.identity.registry`)
and is imported here. See ``docs/CLUSTERING.md``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

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
from comicid.identity.adaptive import AdaptiveClusterer  # after constraints: it imports them
from comicid.identity.scopes import SCOPES, assignment_table, cluster_by_scope, write_assignments


class Clusterer(Protocol):
    """What identity assignment needs from a clustering method."""

    threshold_parameter: str | None

    def fit_predict(self, embeddings: np.ndarray, constraints: Constraints | None = None) -> np.ndarray: ...


__all__ = [
    "CLUSTERERS", "DEFAULT_THRESHOLDS", "SCOPES", "AdaptiveClusterer", "AgglomerativeClusterer", "Calibration", "Clusterer",
    "Constraints", "HDBSCANClusterer", "IdentityInputError", "ThresholdChoice", "assignment_table",
    "auto_threshold", "calibrate_threshold", "cluster_by_scope", "confidence", "create_clusterer",
    "write_assignments",
]
