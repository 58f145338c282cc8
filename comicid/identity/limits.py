"""Where the quadratic identity paths stop, and which method ``--method auto`` picks.

Agglomerative clustering holds an N x N distance matrix (8 N^2 bytes, twice over with constraints) and
HDBSCAN on raw high-dimensional features runs in near-quadratic time; both are refused above the sizes
below with a one-line error naming the scalable alternative, the graph method
(:mod:`comicid.identity.graph`), rather than running out of memory an hour in. docs/CLUSTERING.md
lists every limit.
"""

from __future__ import annotations

from collections.abc import Iterable

from comicid.identity.constraints import IdentityInputError

#: Largest scope agglomerative clustering accepts: its 15,000^2 float64 distance matrix is 1.8 GB.
AGGLOMERATIVE_MAX = 15_000
#: Largest scope HDBSCAN clusters on raw features (without ``umap_components``).
HDBSCAN_RAW_MAX = 50_000
#: ``--method auto``: agglomerative up to this many instances per scope, the graph method beyond.
AUTO_GRAPH_MIN = 5_000
#: The name ``--method`` takes for "choose by size".
AUTO = "auto"


class ScaleError(IdentityInputError):
    """A method was asked to cluster more instances than its quadratic cost allows."""


def check_agglomerative_size(n: int) -> None:
    """Refuse agglomerative clustering of more than :data:`AGGLOMERATIVE_MAX` instances."""
    if n > AGGLOMERATIVE_MAX:
        gigabytes = 8 * n * n / 1e9
        raise ScaleError(f"agglomerative clustering of {n:,} instances needs a {n:,} x {n:,} distance matrix "
                         f"({gigabytes:,.1f} GB) and is refused above {AGGLOMERATIVE_MAX:,}; use --method graph "
                         "(or --method auto)")


def check_hdbscan_size(n: int, projected: bool) -> None:
    """Refuse HDBSCAN on raw features of more than :data:`HDBSCAN_RAW_MAX` instances."""
    if n > HDBSCAN_RAW_MAX and not projected:
        raise ScaleError(f"HDBSCAN on raw features of {n:,} instances runs in near-quadratic time and is refused "
                         f"above {HDBSCAN_RAW_MAX:,}; set umap_components (e.g. 10) or use --method graph")


def choose_method(scope_sizes: Iterable[int]) -> str:
    """``agglomerative`` when every scope holds at most :data:`AUTO_GRAPH_MIN` instances, else ``graph``."""
    return "graph" if max(scope_sizes, default=0) > AUTO_GRAPH_MIN else "agglomerative"
