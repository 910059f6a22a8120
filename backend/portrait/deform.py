"""The face model's shapes, made fit to carry a picture's texture.

The shapes are built for a shape pass, where only the outline of a region matters. A texture
shows more: where a shape moves neighbouring vertices very differently (jawOpen moves the lips'
loops fully but the lower lip's flesh between them, and the skin beside the mouth corners, by a
fraction), the triangles between fold over or stretch tenfold, and the picture tears into
streaks. So every shape is relaxed over the mesh (a few rounds of averaging each vertex's
displacement with its neighbours'), with the hole loops (lips, eyes) held where the shape puts
them: openings keep their exact outline, the skin around them follows smoothly. Generic over
the model's shapes: whatever shapes it has are relaxed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from steadytalk_shared.face_model import FaceModel

from ..face.landmarks import NUM_MESH_POINTS


@dataclass(frozen=True)
class RelaxConfig:
    rounds: int = 12
    step: float = 0.5  # share of the way to the neighbours' mean per round


def neighbour_mean_operator(triangles: np.ndarray, count: int) -> np.ndarray:
    """(count, count) row-normalized adjacency of the mesh's first ``count`` vertices."""
    adjacency = np.zeros((count, count))
    for a, b, c in triangles:
        for u, v in ((a, b), (b, c), (c, a)):
            adjacency[u, v] = adjacency[v, u] = 1.0
    degree = adjacency.sum(axis=1, keepdims=True)
    return adjacency / np.maximum(degree, 1.0)


def relax_shapes(model: FaceModel, config: RelaxConfig | None = None) -> FaceModel:
    """The model with every shape relaxed over the face mesh, hole loops held."""
    config = config or RelaxConfig()
    face_triangles = model.triangles[(model.triangles < NUM_MESH_POINTS).all(axis=1)]
    mean = neighbour_mean_operator(face_triangles, NUM_MESH_POINTS)
    regions = model.regions
    held = np.zeros(NUM_MESH_POINTS, dtype=bool)
    for loop in (regions.lips_outer, regions.lips_inner, regions.eye_left, regions.eye_right):
        held[loop] = True
    deltas = model.deltas.astype(np.float64).copy()
    shapes = len(deltas)
    # Vertices first, (shape, axis) after: one matrix product per round.
    face = deltas[:, :NUM_MESH_POINTS].transpose(1, 0, 2).reshape(NUM_MESH_POINTS, -1)
    fixed = face[held].copy()
    for _ in range(config.rounds):
        face += config.step * (mean @ face - face)
        face[held] = fixed
    deltas[:, :NUM_MESH_POINTS] = face.reshape(NUM_MESH_POINTS, shapes, 3).transpose(1, 0, 2)
    return replace(model, deltas=deltas.astype(np.float32))
