"""Pictures of the canonical face model's blendshapes, for a person to check them.

    steadytalk face-model sheet --out face_model_sheets/

One PNG per shape (neutral and shape at 1.0, front and side) plus ``overview.png`` with the
front view of every shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steadytalk_shared.face_model import FaceModel

from .shape_pass import rasterize


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (V, 3), unit length."""
    v0, v1, v2 = (vertices[triangles[:, i]] for i in range(3))
    face = np.cross(v1 - v0, v2 - v0)
    normals = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(normals, triangles[:, i], face)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


SKIN = np.array([0.86, 0.72, 0.64])
TONGUE = np.array([0.80, 0.35, 0.38])
LIGHT = np.array([0.35, 0.45, 0.82])


def shaded_view(model: FaceModel, vertices: np.ndarray, side: bool, size: int = 320) -> np.ndarray:
    """Orthographic Lambert-shaded render (size, size, 3) in [0, 1]; side views show the
    character's right profile (the face points to the image's left)."""
    normals = vertex_normals(vertices, model.triangles)
    if side:  # rotate the head 90 degrees about Y so its left profile faces the camera
        rotate = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
        vertices, normals = vertices @ rotate.T, normals @ rotate.T
    albedo = np.tile(SKIN, (len(vertices), 1))
    albedo[model.regions.tongue] = TONGUE
    light = LIGHT / np.linalg.norm(LIGHT)
    # two-sided lighting: the inside of the lips faces away from the camera
    shade = 0.25 + 0.75 * np.abs(normals @ light)
    return _orthographic(model, vertices, albedo * shade[:, None], size, background=0.12)


def _orthographic(model: FaceModel, vertices: np.ndarray, colors: np.ndarray, size: int, background: float):
    """The mesh seen along -Z with per-vertex colours (size, size, 3), 24 cm across, centred
    a little below the nose so the whole head fits."""
    centre = np.array([0.0, -0.035])
    scale = size / 0.24
    screen = np.stack(
        [(vertices[:, 0] - centre[0]) * scale + size / 2, (centre[1] - vertices[:, 1]) * scale + size / 2], 1
    )
    points = torch.as_tensor(np.concatenate([screen, vertices[:, 2:3]], axis=1)[None], dtype=torch.float32)
    _, mask, image = rasterize(
        points, torch.as_tensor(model.triangles, dtype=torch.long), size, size, torch.as_tensor(colors)[None]
    )
    image, mask = image[0].numpy(), mask[0].numpy()
    image[~mask] = background
    return image


def displacement_view(model: FaceModel, delta: np.ndarray, size: int = 320) -> np.ndarray:
    """The neutral face coloured by how far each vertex moves (black: still, yellow: the most),
    so small shapes (a 2 mm lid, a brow) show where the shaded view barely does."""
    import matplotlib

    magnitude = np.linalg.norm(delta, axis=1)
    colors = matplotlib.colormaps["inferno"](magnitude / max(float(magnitude.max()), 1e-9))[:, :3]
    return _orthographic(model, model.vertices, colors, size, background=0.3)


def write_sheets(model: FaceModel, out: Path, only: str | None = None) -> list[Path]:
    """A PNG per shape (neutral, shape at 1 front, where it moves, neutral and shape from the
    side) and ``overview.png``; ``only``: just the shapes whose name contains it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    neutral_front = shaded_view(model, model.vertices, side=False)
    neutral_side = shaded_view(model, model.vertices, side=True)
    written = []
    fronts, names = [], []
    for index, name in enumerate(model.shape_names):
        if only and only.lower() not in name.lower():
            continue
        shaped = model.vertices + model.deltas[index]
        front, side = shaded_view(model, shaped, False), shaded_view(model, shaped, True)
        moved = displacement_view(model, model.deltas[index])
        fronts.append(front)
        names.append(name)
        travel = 1000.0 * float(np.linalg.norm(model.deltas[index], axis=1).max())
        fig, axes = plt.subplots(1, 5, figsize=(15, 3.3))
        for ax, image, title in zip(
            axes,
            (neutral_front, front, moved, neutral_side, side),
            ("neutral", f"{name} = 1", f"moves (max {travel:.1f} mm)", "neutral", f"{name} = 1"),
            strict=True,
        ):
            ax.imshow(np.clip(image, 0, 1))
            ax.set_title(title, fontsize=10)
            ax.axis("off")
        fig.tight_layout()
        path = out / f"{index:02d}_{name}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    columns = 7
    rows = max(1, int(np.ceil(len(names) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 2.2, rows * 2.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, name in zip(axes.ravel(), fronts, names, strict=False):
        ax.imshow(np.clip(image, 0, 1))
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    overview = out / "overview.png"
    fig.savefig(overview, dpi=80)
    plt.close(fig)
    return [overview, *written]
