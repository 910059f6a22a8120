"""The portrait's warp mesh: the whole picture as triangles, each textured with the picture at
its rest position, so that moving the vertices warps the picture.

Layers (each its own copies of the vertices, so a triangle knows what it is):
- ``FACE``: the fitted face mesh (the face model's triangles; the tongue belongs to the mouth).
- ``EYES``: the eyes behind the lids, a fan over each eye opening widened by ``eye_margin``;
  they follow the head only, so a closing lid slides over the eye instead of squashing it.
- ``MOUTH_HALVES``: what the picture shows between the lips (teeth of an open-mouthed smile),
  split where the picture is darkest between the lips (below the upper teeth, above the
  lower ones): the upper half rides on the upper lip, the lower half on the lower lip. For a
  closed mouth they have no area.
- ``GAP``: between the two halves, the opening no pixel of the picture shows: painted
  (``mouth.MouthInterior``).
- ``OUTSIDE``: hair, ears, neck, shoulders and background: a Delaunay triangulation of the face
  boundary, a ring of anchors around the head and the image border (MakeItTalk). The border
  never moves; the ring follows the head's rigid motion (hair more, neck less), so the warp
  stays near the face.

Each copy names a *driver*: one of the points the animator moves per frame (face vertices,
eye points, mouth mid-line points, ring anchors, border points).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from steadytalk_shared.face_model import FaceModel

from ..face.landmarks import LIPS_INNER_LOWER, LIPS_INNER_UPPER, NUM_MESH_POINTS

FACE, EYES, MOUTH_HALVES, GAP, OUTSIDE = range(5)
LAYER_NAMES = ("face", "eyes", "mouth halves", "gap", "outside")


@dataclass(frozen=True)
class MeshConfig:
    eye_margin: float = 1.3  # the eye layer reaches this far under the lids (times the opening)
    ring_scale: float = 1.45  # anchors around the head, times the face boundary about its centre
    ring_scale_below: float = 1.7  # under the chin: room for the jaw to move the skin below it
    border_spacing: float = 0.125  # border anchors every this share of the longer side
    # Hair (above the eyes) follows the head fully, the neck (below the chin) by this much.
    neck_follow: float = 0.25


def mouth_split(photo: np.ndarray, rest_xy: np.ndarray, min_gap: float = 3.0) -> np.ndarray:
    """Where the picture's open mouth divides into what rides on the upper lip and what rides
    on the lower: per inner lip point (corners excluded), the share of the way from the upper
    lip to the lower at the darkest point between them (the shadow under the upper teeth, the
    gap between the rows); 0.5 where the lips are closer than ``min_gap`` pixels."""
    upper, lower = np.array(LIPS_INNER_UPPER)[1:-1], np.array(LIPS_INNER_LOWER)[1:-1]
    grey = photo.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    height, width = grey.shape
    split = np.full(len(upper), 0.5)
    for i, (a, b) in enumerate(zip(rest_xy[upper], rest_xy[lower], strict=True)):
        gap = float(np.linalg.norm(b - a))
        if gap < min_gap:
            continue
        t = np.linspace(0.1, 0.9, max(5, int(gap * 2)))
        points = a + t[:, None] * (b - a)
        values = [
            grey[np.clip(int(y), 0, height - 1), np.clip(int(x) + dx, 0, width - 1)].mean()
            for x, y in points
            for dx in (-1, 0, 1)
        ]
        split[i] = t[int(np.argmin(np.asarray(values).reshape(len(t), 3).mean(axis=1)))]
    if len(split) >= 3:  # a median over neighbours keeps the split line from zig-zagging
        padded = np.concatenate([split[:1], split, split[-1:]])
        split = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    return split


def boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """The closed boundary loops of a triangle mesh (edges used by one triangle), longest first."""
    count: dict[tuple[int, int], int] = defaultdict(int)
    for a, b, c in triangles:
        for u, v in ((a, b), (b, c), (c, a)):
            count[(min(u, v), max(u, v))] += 1
    neighbours: dict[int, list[int]] = defaultdict(list)
    for (u, v), n in count.items():
        if n == 1:
            neighbours[u].append(v)
            neighbours[v].append(u)
    loops, seen = [], set()
    for start in neighbours:
        if start in seen:
            continue
        loop, previous, current = [start], None, start
        seen.add(start)
        while True:
            ahead = [n for n in neighbours[current] if n != previous and n not in seen]
            if not ahead:
                break
            previous, current = current, ahead[0]
            loop.append(current)
            seen.add(current)
        loops.append(np.array(loop))
    return sorted(loops, key=len, reverse=True)


@dataclass
class Drivers:
    """Where the driver points sit in the driver array (slices), and their rest data."""

    num_face: int  # face model vertices (mesh points and tongue)
    eye_model: np.ndarray  # (E, 3) model-space rest positions of the eye points
    eye_anchor: np.ndarray  # (E,) face vertex whose landmark correction an eye point takes
    mid_rest: np.ndarray  # (M, 2) mid-line points between the lips at rest (pixels), upper then lower
    mid_lip: np.ndarray  # (M,) the lip vertex each mid-line point rides on
    ring_rest: np.ndarray  # (R, 2) pixels
    ring_vertex: np.ndarray  # (R,) the boundary vertex each ring anchor was pushed out from
    ring_follow: np.ndarray  # (R,) how much of that vertex's rigid head motion it takes
    border: np.ndarray  # (B, 2) pixels

    @property
    def eye_start(self) -> int:
        return self.num_face

    @property
    def mid_start(self) -> int:
        return self.eye_start + len(self.eye_model)

    @property
    def ring_start(self) -> int:
        return self.mid_start + len(self.mid_rest)

    @property
    def border_start(self) -> int:
        return self.ring_start + len(self.ring_rest)

    @property
    def total(self) -> int:
        return self.border_start + len(self.border)


@dataclass
class WarpMesh:
    drivers: Drivers
    copy_driver: np.ndarray  # (N,) driver index of each vertex copy
    copy_layer: np.ndarray  # (N,) layer of each copy
    copy_source: np.ndarray  # (N, 2) float32: texture position in the picture (pixels)
    triangles: np.ndarray  # (F, 3) int64 into the copies
    triangle_layer: np.ndarray  # (F,)
    oval: np.ndarray  # face boundary loop (face vertex indices)
    gap_outline: np.ndarray  # drivers around the gap: upper mid-line, then the lower one back


def eye_points(model: FaceModel, margin: float) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The eye layer's points in model space: per eye (left, then right) the opening's loop
    widened by ``margin`` about its centre, then the centre. Returns (points (E, 3), the face
    vertex each point takes its landmark correction from (E,), the fans' triangles per eye)."""
    points, anchors, fans = [], [], []
    for loop in (model.regions.eye_left, model.regions.eye_right):
        rest = model.vertices[loop].astype(np.float64)
        centre = rest.mean(axis=0)
        start = sum(len(p) for p in points)
        points.append(np.vstack([centre + margin * (rest - centre), centre[None]]))
        # The centre takes the correction of the loop's first point: they are a few pixels apart.
        anchors.append(np.append(loop, loop[0]))
        n = len(loop)
        fans.append(np.array([[start + i, start + (i + 1) % n, start + n] for i in range(n)]))
    return np.vstack(points), np.concatenate(anchors), fans


def _ring(oval_xy: np.ndarray, width: int, height: int, config: MeshConfig) -> tuple[np.ndarray, np.ndarray]:
    """Anchors pushed out from the face boundary (those inside the picture), and which boundary
    point each came from."""
    centre = oval_xy.mean(axis=0)
    chin_line = centre[1] + 0.25 * (oval_xy[:, 1].max() - centre[1])
    scale = np.where(oval_xy[:, 1] > chin_line, config.ring_scale_below, config.ring_scale)
    ring = centre + scale[:, None] * (oval_xy - centre)
    margin = 0.02 * max(width, height)
    inside = (
        (ring[:, 0] > margin) & (ring[:, 0] < width - margin) & (ring[:, 1] > margin) & (ring[:, 1] < height - margin)
    )
    return ring[inside], np.nonzero(inside)[0]


def _border(width: int, height: int, spacing: float) -> np.ndarray:
    step = spacing * max(width, height)
    xs = np.linspace(0, width, max(2, int(np.ceil(width / step)) + 1))
    ys = np.linspace(0, height, max(2, int(np.ceil(height / step)) + 1))[1:-1]
    top, bottom = np.stack([xs, np.zeros_like(xs)], 1), np.stack([xs, np.full_like(xs, height)], 1)
    left, right = np.stack([np.zeros_like(ys), ys], 1), np.stack([np.full_like(ys, width), ys], 1)
    return np.vstack([top, bottom, left, right])


def _inside(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    import cv2

    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0 for x, y in points], dtype=bool)


def build_mesh(
    model: FaceModel,
    rest_xy: np.ndarray,
    eye_rest_xy: np.ndarray,
    width: int,
    height: int,
    mouth_split: np.ndarray | None = None,
    config: MeshConfig | None = None,
) -> WarpMesh:
    """The warp mesh of a fitted face.

    ``rest_xy``: (V, 2) the face model's vertices at rest in the picture (pixels);
    ``eye_rest_xy``: (E, 2) the eye points (``eye_points``) at rest, same pixels;
    ``mouth_split``: per inner lip point (corners excluded), where between upper (0) and lower
    (1) lip the picture's mouth splits into the halves (``mouth_split``); the middle if None."""
    config = config or MeshConfig()
    face_triangles = model.triangles[(model.triangles < NUM_MESH_POINTS).all(axis=1)].astype(np.int64)
    oval = boundary_loops(face_triangles)[0]
    eye_model, eye_anchor, eye_fans = eye_points(model, config.eye_margin)

    upper, lower = np.array(LIPS_INNER_UPPER), np.array(LIPS_INNER_LOWER)
    inner = slice(1, len(upper) - 1)  # the corners are shared by both lips
    split = np.full(len(upper) - 2, 0.5) if mouth_split is None else np.asarray(mouth_split, dtype=np.float64)
    middle = rest_xy[upper[inner]] + split[:, None] * (rest_xy[lower[inner]] - rest_xy[upper[inner]])
    mid_rest = np.vstack([middle, middle])
    mid_lip = np.concatenate([upper[inner], lower[inner]])

    oval_xy = rest_xy[oval]
    ring_rest, ring_from = _ring(oval_xy, width, height, config)
    keep = ~_inside(oval_xy, ring_rest)
    ring_rest, ring_from = ring_rest[keep], ring_from[keep]
    below = oval_xy[ring_from, 1] > oval_xy[:, 1].mean()
    ring_follow = np.where(below, config.neck_follow, 1.0)
    border = _border(width, height, config.border_spacing)
    border = border[~_inside(oval_xy, border)]
    drivers = Drivers(
        num_face=model.num_vertices,
        eye_model=eye_model,
        eye_anchor=eye_anchor,
        mid_rest=mid_rest,
        mid_lip=mid_lip,
        ring_rest=ring_rest,
        ring_vertex=oval[ring_from],
        ring_follow=ring_follow,
        border=border,
    )

    builder = _CopyBuilder()
    # FACE: every mesh point, textured where it sits in the picture.
    face_copies = builder.add(np.arange(NUM_MESH_POINTS), FACE, rest_xy[:NUM_MESH_POINTS])
    builder.triangles(face_copies[face_triangles], FACE)
    # EYES: fans over the widened openings.
    eye_copies = builder.add(drivers.eye_start + np.arange(len(eye_model)), EYES, eye_rest_xy)
    for fan in eye_fans:
        builder.triangles(eye_copies[fan], EYES)
    # MOUTH_HALVES: strips between each lip and its copy of the mid-line.
    count = len(middle)
    mid_upper = drivers.mid_start + np.arange(count)
    mid_lower = mid_upper + count
    for lip, mid in ((upper, mid_upper), (lower, mid_lower)):
        line = np.concatenate([[lip[0]], mid, [lip[-1]]])
        lip_copies = builder.add(lip, MOUTH_HALVES, rest_xy[lip])
        mid_copies = builder.add(line, MOUTH_HALVES, np.vstack([rest_xy[lip[0]], middle, rest_xy[lip[-1]]]))
        builder.triangles(_strip(lip_copies, mid_copies), MOUTH_HALVES)
    # GAP: between the two mid-lines (texture unused: painted).
    for_gap = [np.concatenate([[upper[0]], mid, [upper[-1]]]) for mid in (mid_upper, mid_lower)]
    gap_upper = builder.add(for_gap[0], GAP, np.zeros((count + 2, 2)))
    gap_lower = builder.add(for_gap[1], GAP, np.zeros((count + 2, 2)))
    builder.triangles(_strip(gap_upper, gap_lower), GAP)
    # OUTSIDE: Delaunay over the boundary, the ring and the border, minus what lies in the face.
    outside_drivers = np.concatenate(
        [oval, drivers.ring_start + np.arange(len(ring_rest)), drivers.border_start + np.arange(len(border))]
    )
    outside_xy = np.vstack([oval_xy, ring_rest, border])
    outside_copies = builder.add(outside_drivers, OUTSIDE, outside_xy)
    builder.triangles(outside_copies[_outside_triangles(outside_xy, len(oval))], OUTSIDE)
    gap_outline = np.concatenate([for_gap[0], for_gap[1][::-1]])
    return WarpMesh(drivers, *builder.arrays(), oval=oval, gap_outline=gap_outline)


def _strip(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Triangles between two polylines of equal length (a quad strip, two triangles a quad)."""
    i = np.arange(len(a) - 1)
    return np.vstack([np.stack([a[i], a[i + 1], b[i + 1]], 1), np.stack([a[i], b[i + 1], b[i]], 1)])


def _outside_triangles(points: np.ndarray, num_boundary: int) -> np.ndarray:
    from scipy.spatial import Delaunay

    triangles = Delaunay(points).simplices
    centroids = points[triangles].mean(axis=1)
    keep = ~_inside(points[:num_boundary], centroids)
    # Triangles with all three corners on the face boundary lie across the face (where the
    # boundary is concave they can sit outside it): the face mesh covers that area.
    on_boundary = (triangles < num_boundary).all(axis=1)
    return triangles[keep & ~on_boundary]


class _CopyBuilder:
    def __init__(self) -> None:
        self._driver: list[np.ndarray] = []
        self._layer: list[np.ndarray] = []
        self._source: list[np.ndarray] = []
        self._triangles: list[np.ndarray] = []
        self._triangle_layer: list[np.ndarray] = []
        self._count = 0

    def add(self, drivers: np.ndarray, layer: int, source: np.ndarray) -> np.ndarray:
        """New copies of ``drivers`` in ``layer``; returns their indices (by position in ``drivers``)."""
        drivers = np.asarray(drivers, dtype=np.int64)
        self._driver.append(drivers)
        self._layer.append(np.full(len(drivers), layer, dtype=np.int8))
        self._source.append(np.asarray(source, dtype=np.float32).reshape(len(drivers), 2))
        indices = self._count + np.arange(len(drivers))
        self._count += len(drivers)
        return indices

    def triangles(self, triangles: np.ndarray, layer: int) -> None:
        triangles = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
        self._triangles.append(triangles)
        self._triangle_layer.append(np.full(len(triangles), layer, dtype=np.int8))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (
            np.concatenate(self._driver),
            np.concatenate(self._layer),
            np.concatenate(self._source),
            np.concatenate(self._triangles),
            np.concatenate(self._triangle_layer),
        )
