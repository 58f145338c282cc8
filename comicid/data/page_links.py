"""Pure geometry on detected boxes: which face belongs to which body, and which panel holds what.

Both run on ``(N, 4)`` arrays of ``x0 y0 x1 y1`` page pixels and return indices, so they are unit-tested
on hand-made boxes and reused by any detector. Face-body linking is an assignment problem (one face per
body, one body per face) solved with SciPy's Hungarian solver where several faces compete for a body.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

#: A face is a candidate for a body when at least this share of the face's area lies inside the body.
MIN_FACE_INSIDE = 0.5
#: A box belongs to the panel holding the largest share of it, when that share is at least this.
MIN_PANEL_SHARE = 0.3


def _as_boxes(boxes: np.ndarray | list) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return array


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def intersection_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` areas of the pairwise intersections."""
    a, b = _as_boxes(a), _as_boxes(b)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    return np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)


def face_body_affinity(faces: np.ndarray, bodies: np.ndarray) -> np.ndarray:
    """``(F, B)`` affinity in [0, 1]: the share of the face inside the body, weighted towards faces in
    the body's upper part (a head sits at the top of its figure; a face low inside a large body box is
    more likely another character standing in front). 0 where the face is not a candidate."""
    faces, bodies = _as_boxes(faces), _as_boxes(bodies)
    if not len(faces) or not len(bodies):
        return np.zeros((len(faces), len(bodies)))
    inside = intersection_areas(faces, bodies) / np.maximum(_areas(faces)[:, None], 1e-9)
    centre_y = (faces[:, 1] + faces[:, 3]) / 2
    height = np.maximum(bodies[:, 3] - bodies[:, 1], 1e-9)
    depth = np.clip((centre_y[:, None] - bodies[None, :, 1]) / height[None, :], 0.0, 1.0)
    affinity = inside * (1.0 - 0.5 * depth)
    return np.where(inside >= MIN_FACE_INSIDE, affinity, 0.0)


def link_faces_to_bodies(faces: np.ndarray, bodies: np.ndarray) -> list[tuple[int | None, int | None]]:
    """Instances as ``(face index or None, body index or None)``: every face and every body appears once.

    A face is linked to a body when it lies (mostly) inside it; each body takes at most one face and
    competing faces are resolved by the assignment of largest total affinity (Hungarian). Unlinked
    faces (close-ups) and bodies (figures seen from behind) become instances of their own. Ordered by
    body index, then the face-only instances by face index.
    """
    faces, bodies = _as_boxes(faces), _as_boxes(bodies)
    affinity = face_body_affinity(faces, bodies)
    face_of: dict[int, int] = {}
    if affinity.size and affinity.max() > 0:
        rows, cols = linear_sum_assignment(affinity, maximize=True)
        face_of = {int(c): int(r) for r, c in zip(rows, cols) if affinity[r, c] > 0}
    linked = set(face_of.values())
    pairs: list[tuple[int | None, int | None]] = [(face_of.get(b), b) for b in range(len(bodies))]
    pairs.extend((f, None) for f in range(len(faces)) if f not in linked)
    return pairs


def assign_to_panels(boxes: np.ndarray, panels: np.ndarray) -> np.ndarray:
    """For each box, the index of the panel holding the largest share of it (-1 when no panel holds at
    least :data:`MIN_PANEL_SHARE` of it: a figure drawn across the gutter of a borderless page)."""
    boxes, panels = _as_boxes(boxes), _as_boxes(panels)
    if not len(boxes):
        return np.zeros(0, dtype=np.int64)
    if not len(panels):
        return np.full(len(boxes), -1, dtype=np.int64)
    share = intersection_areas(boxes, panels) / np.maximum(_areas(boxes)[:, None], 1e-9)
    best = share.argmax(axis=1)
    return np.where(share[np.arange(len(boxes)), best] >= MIN_PANEL_SHARE, best, -1).astype(np.int64)


def reading_order(panels: np.ndarray, row_tolerance: float = 0.25) -> np.ndarray:
    """Panel indices in reading order (rows top to bottom, left to right in a row): a panel starts a new
    row when its top is below the current row's top by more than ``row_tolerance`` of its height."""
    panels = _as_boxes(panels)
    order = sorted(range(len(panels)), key=lambda i: (panels[i, 1], panels[i, 0]))
    rows: list[list[int]] = []
    for index in order:
        if rows and panels[index, 1] - panels[rows[-1][0], 1] <= row_tolerance * (panels[index, 3] - panels[index, 1]):
            rows[-1].append(index)
        else:
            rows.append([index])
    return np.array([i for row in rows for i in sorted(row, key=lambda k: panels[k, 0])], dtype=np.int64)
