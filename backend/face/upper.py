"""The upper face and head measured from tracked landmarks: eye closure, gaze, brows, head pose.

What the whole-face performance models learn from (``steadytalk_backend.performance``) and what
``eval face`` compares against. Every measure is taken on the landmarks brought back into the
canonical face model's frame (the fitted similarity pose undone: X to the character's left,
Y up, Z out of the face, metres), so head turns do not read as gaze or brow motion.

- eye closure: the eye aspect ratio (mean lid gap over eye width, Soukupova and Cech 2016),
  mapped to 0 (open, the clip's typical opening) .. 1 (shut, 15% of it).
- gaze: the iris centre (mediapipe's refined landmarks) against the eye corners
  (``eyes.iris_gaze``, the same that fitting turns into the ``eyeLook*`` coefficients).
- brows: height of the inner and outer brow above the eye corners, millimetres from the
  clip's median (the landmarks themselves; fitting's brow coefficients follow the same points).
- head: ``[yaw, pitch, roll]`` (``steadytalk_shared.head``), radians from the clip's median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.head import euler_from_matrix

from .eyes import EYES, eye_aspects, iris_gaze
from .fitting import Fitter, weighted_similarity
from .landmarks import NUM_MESH_POINTS

BROWS = {"left": {"inner": (336, 296), "outer": (334, 293, 300)}, "right": {"inner": (107, 66), "outer": (105, 63, 70)}}
SHUT_RATIO = 0.15  # aspect ratio of a shut eye relative to the open one (the lashes still part)
# Image axes (x right, y down, z away) in the face model's frame (X left, Y up, Z out).
IMAGE_FROM_MODEL = np.diag([1.0, -1.0, -1.0])


@dataclass
class UpperFaceTrack:
    """Per-frame measures of one video (T frames at ``fps``)."""

    fps: float
    closure: np.ndarray  # (T, 2) left, right eye in [0, 1]
    aspect: np.ndarray  # (T, 2) raw eye aspect ratio
    gaze: np.ndarray  # (T, 2) [yaw, pitch] radians, mean of both eyes, from the clip's median
    brows: np.ndarray  # (T, 2) [inner, outer] height in mm from the clip's median, both sides averaged
    head: np.ndarray  # (T, 3) [yaw, pitch, roll] radians from the clip's median
    found: np.ndarray  # (T,) bool: a face was tracked (other frames are interpolated)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(getattr(self, k)) for k in ("closure", "aspect", "gaze", "brows", "head", "found")} | {
            "fps": np.array(self.fps)
        }

    @classmethod
    def from_arrays(cls, data) -> UpperFaceTrack:
        return cls(
            fps=float(data["fps"]),
            **{k: np.asarray(data[k]) for k in ("closure", "aspect", "gaze", "brows", "head", "found")},
        )


def measure(points: list[np.ndarray | None], fps: float, model: FaceModel | None = None) -> UpperFaceTrack:
    """Measures for (478, 3) pixel landmarks per frame (None where no face was found)."""
    fitter = Fitter(model or FaceModel.load())
    found = np.array([p is not None and len(p) >= 478 for p in points])
    if not found.any():
        raise ValueError("no face with iris landmarks was found in any frame")
    frames = [p for p, f in zip(points, found, strict=True) if f]
    identity = fitter.fit_identity(frames[:: max(1, len(frames) // 200)])
    rest = fitter.neutral + identity
    rows = []
    for observed in frames:
        pose = weighted_similarity(rest, observed[:NUM_MESH_POINTS], fitter.weights)
        canonical = pose.invert(observed)
        rows.append(_frame_measures(canonical, IMAGE_FROM_MODEL @ pose.rotation))
    table = np.array(rows)  # (F, 2 + 2 + 2 + 3)
    full = np.empty((len(points), table.shape[1]))
    index = np.flatnonzero(found)
    for column in range(table.shape[1]):  # untracked frames: interpolated, and flagged
        full[:, column] = np.interp(np.arange(len(points)), index, table[:, column])
    aspect, gaze, brows, head = full[:, 0:2], full[:, 2:4], full[:, 4:6], full[:, 6:9]
    open_level = np.percentile(aspect[found], 75, axis=0)
    closure = np.clip((open_level - aspect) / ((1.0 - SHUT_RATIO) * open_level), 0.0, 1.0)
    open_frames = found & (closure.max(axis=1) < 0.3)  # blinks would drag the gaze rest down
    return UpperFaceTrack(
        fps=float(fps),
        closure=closure.astype(np.float32),
        aspect=aspect.astype(np.float32),
        gaze=(gaze - np.median(gaze[open_frames], axis=0)).astype(np.float32),
        brows=(brows - np.median(brows[found], axis=0)).astype(np.float32),
        head=(head - np.median(head[found], axis=0)).astype(np.float32),
        found=found,
    )


def _frame_measures(p: np.ndarray, head_rotation: np.ndarray) -> list[float]:
    corners_y = np.mean([p[EYES[s][k]][1] for s in EYES for k in ("outer", "inner")])
    inner = np.mean([p[list(BROWS[s]["inner"])][:, 1].mean() for s in BROWS]) - corners_y
    outer = np.mean([p[list(BROWS[s]["outer"])][:, 1].mean() for s in BROWS]) - corners_y
    head = euler_from_matrix(head_rotation)
    return [*eye_aspects(p), *iris_gaze(p), 1000.0 * inner, 1000.0 * outer, *head]
