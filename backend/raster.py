"""A small z-buffer triangle rasterizer in numpy (previews now; the face-shape pass builds on it).

Screen convention: pixel centres at integer + 0.5, x to the right, y down; ``nearness`` is
larger for points nearer the camera (the depth test keeps the largest).
"""

from __future__ import annotations

import numpy as np


def rasterize(
    screen: np.ndarray, nearness: np.ndarray, triangles: np.ndarray, attributes: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolate per-vertex ``attributes`` (V, K) over the triangles.

    screen: (V, 2) pixel coordinates; nearness: (V,); triangles: (F, 3); size: (height, width).
    Returns image (H, W, K) float32, mask (H, W) bool and nearness (H, W) (-inf off the mesh).
    Back faces are drawn too (the depth test resolves them); degenerate triangles are skipped.
    """
    height, width = size
    image = np.zeros((height, width, attributes.shape[1]), dtype=np.float32)
    zbuffer = np.full((height, width), -np.inf)
    corners = screen[triangles]  # (F, 3, 2)
    lo = np.clip(np.floor(corners.min(axis=1) - 0.5).astype(int), 0, [width - 1, height - 1])
    hi = np.clip(np.ceil(corners.max(axis=1) - 0.5).astype(int), 0, [width - 1, height - 1])
    for f, (a, b, c) in enumerate(triangles):
        (x0, y0), (x1, y1) = lo[f], hi[f]
        if x1 < x0 or y1 < y0:
            continue
        pa, pb, pc = screen[a], screen[b], screen[c]
        area = (pb[0] - pa[0]) * (pc[1] - pa[1]) - (pb[1] - pa[1]) * (pc[0] - pa[0])
        if abs(area) < 1e-12:
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        w_a = ((pb[0] - xs) * (pc[1] - ys) - (pb[1] - ys) * (pc[0] - xs)) / area
        w_b = ((pc[0] - xs) * (pa[1] - ys) - (pc[1] - ys) * (pa[0] - xs)) / area
        w_c = 1.0 - w_a - w_b
        inside = (w_a >= 0) & (w_b >= 0) & (w_c >= 0)
        if not inside.any():
            continue
        z = w_a * nearness[a] + w_b * nearness[b] + w_c * nearness[c]
        region = zbuffer[y0 : y1 + 1, x0 : x1 + 1]
        win = inside & (z > region)
        if not win.any():
            continue
        region[win] = z[win]
        values = (
            w_a[win][:, None] * attributes[a] + w_b[win][:, None] * attributes[b] + w_c[win][:, None] * attributes[c]
        )
        image[y0 : y1 + 1, x0 : x1 + 1][win] = values
    return image, np.isfinite(zbuffer), zbuffer


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (V, 3), unit length."""
    v0, v1, v2 = (vertices[triangles[:, i]] for i in range(3))
    face = np.cross(v1 - v0, v2 - v0)
    normals = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(normals, triangles[:, i], face)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
