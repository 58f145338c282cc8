"""Adaptive clustering: VideoClusterNet (Walawalkar & Garrido, ECCV 2024) carried over to comics.

Groups that are certainly one character stand in for video tracks; a small adapter on frozen backbone
features is self-distilled on the collection; groups are matched under per-group normal distributions;
a parameter-free merge with per-cluster thresholds gives the final identities. See ``docs/ADAPTIVE.md``.
"""

from comicid.identity.adaptive.clusterer import AdaptiveClusterer, load_adapter, save_adapter
from comicid.identity.adaptive.final import attach_pending, merge_clusters
from comicid.identity.adaptive.groups import ConstrainedUnion, grow_groups
from comicid.identity.adaptive.matching import fit_gaussians, soft_match
from comicid.identity.adaptive.quality import low_quality_mask, quality_scores

__all__ = [
    "AdaptiveClusterer", "ConstrainedUnion", "attach_pending", "fit_gaussians", "grow_groups", "load_adapter",
    "low_quality_mask", "merge_clusters", "quality_scores", "save_adapter", "soft_match",
]
