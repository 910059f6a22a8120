"""Face landmarks with mediapipe 0.10.21's face mesh (the model ships inside the wheel).

Landmarks come back in pixel units of the input image: ``x * width``, ``y * height`` and
``z * width`` (mediapipe's relative depth is on the x scale, smaller is nearer the camera).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# mediapipe logs through absl/glog to stderr at import; keep the user's terminal clean.
os.environ.setdefault("GLOG_minloglevel", "2")

NUM_MESH_POINTS = 468  # the face mesh; refined landmarks add 10 iris points after these
INNER_LIP_UPPER, INNER_LIP_LOWER = 13, 14
MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT = 291, 61
# Lip contours, corner to corner, and other fixed points of the face-mesh topology.
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
EYE_OUTER_LEFT, EYE_OUTER_RIGHT = 263, 33
CHEEK_LEFT = 425
CHIN = 152
FOREHEAD = 10


def lip_gap_ratio(points: np.ndarray) -> np.ndarray:
    """Inner-lip opening over mouth width, for (..., >= 468, 3) landmarks: 0 when the lips
    touch; free of scale and nearly of pose, so it ranks frames from closed to open."""
    gap = np.linalg.norm(points[..., INNER_LIP_UPPER, :] - points[..., INNER_LIP_LOWER, :], axis=-1)
    width = np.linalg.norm(points[..., MOUTH_CORNER_LEFT, :] - points[..., MOUTH_CORNER_RIGHT, :], axis=-1)
    return gap / width


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """mediapipe's C++ side writes start-up notices straight to file descriptor 2 (before its
    logging is configured, so GLOG settings do not reach them); keep them off the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass(frozen=True)
class LandmarkerConfig:
    # Video mode tracks between frames (faster, steadier); static mode detects every frame.
    video: bool = True
    refine: bool = True
    max_faces: int = 2  # 2, so "more than one face" can be told apart from one
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


class FaceLandmarker:
    def __init__(self, config: LandmarkerConfig | None = None) -> None:
        import mediapipe as mp

        self.config = config or LandmarkerConfig()
        with _native_stderr_silenced():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not self.config.video,
                refine_landmarks=self.config.refine,
                max_num_faces=self.config.max_faces,
                min_detection_confidence=self.config.min_detection_confidence,
                min_tracking_confidence=self.config.min_tracking_confidence,
            )
            # The graph starts its calculators in background threads, which print after the
            # constructor returns; one blank frame waits for them while stderr is still closed.
            self._mesh.process(np.zeros((64, 64, 3), dtype=np.uint8))

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._mesh.close()

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """All faces in an RGB uint8 image (H, W, 3): a list of (478 or 468, 3) arrays in pixels."""
        height, width = rgb.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(rgb))
        faces = []
        for face in result.multi_face_landmarks or []:
            points = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)
            faces.append(points * np.array([width, height, width]))
        return faces
