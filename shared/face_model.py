"""The canonical face model: mesh, UVs and the schema's blendshapes, as project data.

Read by the backend (tracking, rasterizer) and by the Blender add-on (the rig), so it is an
``.npz`` of plain arrays (no pickle) read with numpy alone. Built by
``steadytalk face-model build`` (``steadytalk_backend.face.model_build``).

Topology: mediapipe's 468-point face mesh (Apache 2.0) with mouth and eyes as holes, plus a
15-vertex tongue; the schema's 52 ARKit shapes (files built before v2 have its first 33).
Units: metres; X to the character's left, Y up, Z out of the face.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from .schema import CHANNELS, NUM_CHANNELS, NUM_V1_CHANNELS

FACE_MODEL_VERSION = 1
DEFAULT_PATH = Path(__file__).parent / "data" / "face_model.npz"


@dataclass
class Regions:
    """Named vertex index sets used by tracking, evaluation and the rig."""

    lips_outer: np.ndarray
    lips_inner: np.ndarray
    eye_left: np.ndarray
    eye_right: np.ndarray
    mouth_hole: np.ndarray
    tongue: np.ndarray


@dataclass
class FaceModel:
    version: int
    vertices: np.ndarray  # (V, 3) float32 neutral shape, metres
    triangles: np.ndarray  # (F, 3) int32, counter-clockwise seen from outside
    uvs: np.ndarray  # (V, 2) float32 in [0, 1]
    shape_names: tuple[str, ...]  # schema order
    deltas: np.ndarray  # (S, V, 3) float32 displacement at weight 1
    mirror: np.ndarray  # (V,) int32: index of each vertex's left/right twin
    regions: Regions
    source: str = ""  # JSON: how it was built

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    def pose(self, coefficients: np.ndarray) -> np.ndarray:
        """Vertices for coefficients in schema order: (C,) -> (V, 3) or (T, C) -> (T, V, 3).

        C is the schema's width (52), v1's (33: the upper face at rest) or the model's own shape
        count (its shapes are the schema's first ones); channels the model has no shape for (an
        older model's upper face) do not move it."""
        c = np.asarray(coefficients, dtype=np.float32)
        if c.shape[-1] not in (NUM_CHANNELS, NUM_V1_CHANNELS, len(self.shape_names)):
            raise ValueError(f"expected {NUM_CHANNELS} coefficients, got {c.shape[-1]}")
        used = min(c.shape[-1], len(self.shape_names))
        return self.vertices + np.tensordot(c[..., :used], self.deltas[:used], axes=([-1], [0]))

    def with_shapes(self, names: tuple[str, ...]) -> FaceModel:
        """The same face with only the shapes ``names`` (a prefix of the schema, e.g. v1's 33 for
        a consumer that is v1-wide); a model that has fewer keeps what it has."""
        if tuple(names) != CHANNELS[: len(names)]:
            raise ValueError("shapes must be a prefix of the schema's channels")
        count = min(len(names), len(self.shape_names))
        return replace(self, shape_names=self.shape_names[:count], deltas=self.deltas[:count])

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "version": np.array(self.version),
            "vertices": self.vertices,
            "triangles": self.triangles,
            "uvs": self.uvs,
            "shape_names": np.array(self.shape_names),
            "deltas": self.deltas,
            "mirror": self.mirror,
            "source": np.array(self.source),
        }
        arrays.update({f"region_{f.name}": getattr(self.regions, f.name) for f in fields(Regions)})
        with open(path, "wb") as handle:  # np.savez_compressed would append ".npz" to odd names
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> FaceModel:
        with np.load(path, allow_pickle=False) as data:
            version = int(data["version"])
            if version != FACE_MODEL_VERSION:
                raise ValueError(f"{path} is face model version {version}; this build reads {FACE_MODEL_VERSION}")
            names = tuple(str(n) for n in data["shape_names"])
            if names != CHANNELS[: len(names)]:
                raise ValueError(f"{path} has blendshapes for another schema; rebuild it")
            return cls(
                version=version,
                vertices=data["vertices"],
                triangles=data["triangles"],
                uvs=data["uvs"],
                shape_names=names,
                deltas=data["deltas"],
                mirror=data["mirror"],
                regions=Regions(**{f.name: data[f"region_{f.name}"] for f in fields(Regions)}),
                source=str(data["source"]),
            )
