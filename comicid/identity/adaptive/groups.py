"""Groups: sets of instances that are certainly one character, the comic stand-in for video tracks.

VideoClusterNet starts from face tracks: frames linked by motion are one person for free. Comics have
no motion, so a group is built from what is certain on a page and in the embedding:

1. **Seeds.** Every instance is a group; must-links (the face and the body of one instance, rows that
   share an ``instance`` id) join their instances. Augmented views of one crop belong to the group of
   their crop by construction (they are stored per instance, not as separate instances).
2. **Growth.** Two instances of different groups are joined when they are *stable mutual nearest
   neighbours*: each is the other's nearest neighbour outside its own group in the original embedding
   **and** in every augmented view, and no cannot-link (two instances in one panel) separates their
   groups. Stability under augmentation is the confidence test: a match that flips when a crop is
   jittered is not certain enough to train on.

Groups are returned as canonical labels (numbered by first occurrence), so two groupings compare
equal exactly when they partition the instances the same way.
"""

from __future__ import annotations

import numpy as np

from comicid.identity.constraints import first_appearance_labels


class ConstrainedUnion:
    """Union-find over instances that refuses any union joining a cannot-linked pair.

    ``cannot_link`` is a (K, 2) array of instance indices. A refused union leaves both sets unchanged,
    so callers can offer merges greedily in order of confidence and the result never violates a
    constraint.
    """

    def __init__(self, n: int, cannot_link: np.ndarray | None = None) -> None:
        self.parent = np.arange(n)
        self.members: dict[int, set[int]] = {i: {i} for i in range(n)}
        self.forbidden: dict[int, set[int]] = {i: set() for i in range(n)}
        if cannot_link is not None:
            for a, b in np.asarray(cannot_link, dtype=np.int64).reshape(-1, 2):
                if a != b:
                    self.forbidden[int(a)].add(int(b))
                    self.forbidden[int(b)].add(int(a))

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, int(self.parent[i])
        return root

    def allowed(self, a: int, b: int) -> bool:
        """Whether the sets of ``a`` and ``b`` could be joined without breaking a cannot-link."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return True
        small, large = sorted((root_a, root_b), key=lambda r: len(self.forbidden[r]))
        return self.members[large].isdisjoint(self.forbidden[small])

    def union(self, a: int, b: int) -> bool:
        """Join the sets of ``a`` and ``b``; return False (and change nothing) if a cannot-link forbids it."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return True
        if not self.allowed(root_a, root_b):
            return False
        if len(self.members[root_a]) < len(self.members[root_b]):
            root_a, root_b = root_b, root_a
        self.parent[root_b] = root_a
        self.members[root_a] |= self.members.pop(root_b)
        self.forbidden[root_a] |= self.forbidden.pop(root_b)
        return True

    def labels(self) -> np.ndarray:
        return first_appearance_labels(np.array([self.find(i) for i in range(len(self.parent))]), keep_unknown=False)


def union_from_labels(labels: np.ndarray, cannot_link: np.ndarray | None) -> ConstrainedUnion:
    """A :class:`ConstrainedUnion` that already holds the partition ``labels`` (assumed constraint-clean)."""
    labels = np.asarray(labels)
    union = ConstrainedUnion(len(labels), cannot_link)
    first: dict[int, int] = {}
    for index, label in enumerate(labels.tolist()):
        if label in first:
            union.union(first[label], index)
        else:
            first[label] = index
    return union


def _nearest_outside_group(embeddings: np.ndarray, groups: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Index of each instance's most similar eligible instance outside its group (-1 if none)."""
    similarity = embeddings @ embeddings.T
    similarity[groups[:, None] == groups[None, :]] = -np.inf
    similarity[:, ~eligible] = -np.inf
    nearest = np.argmax(similarity, axis=1)
    nearest[~np.isfinite(similarity[np.arange(len(groups)), nearest])] = -1
    return nearest


def grow_groups(embeddings: np.ndarray, groups: np.ndarray, views: np.ndarray | None = None,
                cannot_link: np.ndarray | None = None, eligible: np.ndarray | None = None) -> np.ndarray:
    """Join groups through stable mutual nearest neighbours; return new canonical labels.

    Args:
        embeddings: (N, D) L2-normalised instance embeddings.
        groups: (N,) current group labels (must be constraint-clean).
        views: optional (V, N, D) L2-normalised embeddings of augmented views; a pair must be mutual
            nearest neighbours in each view as well as in ``embeddings``.
        cannot_link: (K, 2) instance pairs that must stay apart.
        eligible: (N,) boolean; instances outside it (low-quality crops) neither match nor are matched.

    Joins are offered in decreasing similarity, so when two joins conflict through a cannot-link the
    more similar one wins, independent of instance order.
    """
    n = len(groups)
    eligible = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    spaces = [embeddings] + ([] if views is None else list(views))
    stable = np.ones(n, dtype=bool)
    reference = _nearest_outside_group(embeddings, groups, eligible)
    for space in spaces:
        nearest = reference if space is embeddings else _nearest_outside_group(space, groups, eligible)
        mutual = (nearest >= 0) & (nearest[np.maximum(nearest, 0)] == np.arange(n))
        stable &= mutual & (nearest == reference)
    stable &= eligible
    pairs = [(i, int(reference[i])) for i in np.flatnonzero(stable) if i < reference[i]]
    scores = [float(embeddings[i] @ embeddings[j]) for i, j in pairs]
    union = union_from_labels(groups, cannot_link)
    for position in np.argsort(-np.asarray(scores), kind="stable"):
        union.union(*pairs[position])
    return union.labels()
