"""Piecewise-affine drawing of triangle meshes into a window, for one frame on a CPU.

The face-shape pass rasterizer (``face.shape_pass``) fills batches of frames with exact
pixel-centre coverage, which a renderer's training needs; a portrait needs one frame at a time,
fast. Here each triangle in the window is filled with its index (OpenCV's polygon fill, far to
near, so nearer triangles cover farther ones), then every covered pixel takes its triangle's
barycentric weights at its centre and with them the texture position (or any attribute).
Triangles of no area are skipped.
"""

from __future__ import annotations

import numpy as np

SUBPIXEL_BITS = 4  # OpenCV's fill takes fixed-point corners: 1/16 pixel
NO_AREA = 1e-3  # square pixels: triangles smaller than this cover nothing


def barycentric_maps(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle, the affine maps from a pixel position to its three barycentric weights.

    ``corners``: (F, 3, 2) pixel positions. Returns maps (F, 9): the weights of the three
    corners are ``map[0:3] * x + map[3:6] * y + map[6:9]``; and which triangles have an area
    (F,) bool. Closed form (a batched matrix inverse
    costs ten times more)."""
    x, y = corners[..., 0], corners[..., 1]
    xa, xb, xc = x[:, 0], x[:, 1], x[:, 2]
    ya, yb, yc = y[:, 0], y[:, 1], y[:, 2]
    twice = (xb - xa) * (yc - ya) - (yb - ya) * (xc - xa)
    usable = np.abs(twice) > 2.0 * NO_AREA
    inv = np.where(usable, 1.0 / np.where(usable, twice, 1.0), 0.0)[:, None]
    a = np.stack([yb - yc, yc - ya, ya - yb], axis=1) * inv
    b = np.stack([xc - xb, xa - xc, xb - xa], axis=1) * inv
    c = np.stack([xb * yc - xc * yb, xc * ya - xa * yc, xa * yb - xb * ya], axis=1) * inv
    return np.concatenate([a, b, c], axis=1), usable


def area(corners: np.ndarray) -> np.ndarray:
    """(F,) area of each triangle (F, 3, 2), square pixels."""
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    return 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def fill_ids(corners: np.ndarray, order: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) int32 map of which triangle covers each pixel (-1: none), triangles drawn in
    ``order`` (later ones cover earlier ones). ``corners``: (F, 3, 2) window pixels (pixel
    centres at +0.5)."""
    import cv2

    ids = np.full(shape, -1, dtype=np.int32)
    # OpenCV puts pixel centres at integers: shift by half a pixel, to fixed point.
    fixed = np.round((corners - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int32)
    for index in order:
        cv2.fillConvexPoly(ids, fixed[index], int(index), lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    return ids


def in_window(corners: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(F,) bool: triangles whose bounding box meets the window [0, w) x [0, h)."""
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    return (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] <= shape[1]) & (lo[:, 1] <= shape[0])


def sample(
    ids: np.ndarray,
    maps: np.ndarray,
    values: np.ndarray,
    pixels: np.ndarray | None = None,
    clamp: np.ndarray | None = None,
) -> np.ndarray:
    """Per-corner ``values`` (F, 3, K) interpolated at the centres of ``pixels`` (flat indices
    into ``ids``, all covered; default: every covered pixel, in order): (P, K).

    The fill covers a little more than each triangle; its edge pixels extend the triangle's
    affine map, which continues its neighbour's smoothly (exactly, at rest). Triangles marked
    in ``clamp`` (F,) bool (slivers, whose map a pixel away means something else entirely)
    have the weights clamped to the triangle instead: their edge pixels repeat the edge."""
    flat = ids.ravel()
    if pixels is None:
        pixels = np.nonzero(flat >= 0)[0]
    rows, cols = np.divmod(pixels, ids.shape[1])
    which = flat[pixels]
    chosen = np.take(maps, which, axis=0)  # (P, 9); take gathers rows 3x faster than indexing
    weights = chosen[:, 0:3] * (cols + 0.5)[:, None] + chosen[:, 3:6] * (rows + 0.5)[:, None] + chosen[:, 6:9]
    if clamp is not None:
        held = clamp[which]
        clipped = np.clip(weights[held], 0.0, None)
        weights[held] = clipped / np.maximum(clipped.sum(axis=1, keepdims=True), 1e-12)
    corner_values = np.take(values.reshape(len(values), -1), which, axis=0).reshape(len(which), 3, -1)
    return np.einsum("pi,pik->pk", weights, corner_values)
