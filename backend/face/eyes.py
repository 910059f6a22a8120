"""The eyes in face-mesh landmarks: which points are the lids, corners and irises, the eye
aspect ratio and the gaze from mediapipe's refined iris landmarks.

Used by fitting (the ``eyeLook*`` coefficients come from the iris: the 468-point mesh has no
eyeball for a least-squares fit to turn) and by ``upper`` (the tracked measures the performance
models learn from), so both read the eyes the same way. Points are in the face model's frame
(the head pose undone: X to the character's left, Y up, Z out of the face).
"""

from __future__ import annotations

import numpy as np

# Character's left eye (image right) and right eye of mediapipe's face mesh.
EYES = {
    "left": {"outer": 263, "inner": 362, "upper": (386, 385, 387), "lower": (374, 380, 373)},
    "right": {"outer": 33, "inner": 133, "upper": (159, 158, 160), "lower": (145, 153, 144)},
}
IRIS_BLOCKS = (slice(468, 473), slice(473, 478))
NUM_WITH_IRISES = 478
EYEBALL_RADIUS_WIDTHS = 0.42  # about 12 mm for a 29 mm eye


def eye_aspects(p: np.ndarray) -> np.ndarray:
    """(2,) mean lid gap over eye width, left and right eye (Soukupova and Cech 2016)."""
    out = []
    for side in ("left", "right"):
        eye = EYES[side]
        width = np.linalg.norm(p[eye["outer"]] - p[eye["inner"]])
        gaps = np.linalg.norm(p[list(eye["upper"])] - p[list(eye["lower"])], axis=1)
        out.append(gaps.mean() / width)
    return np.array(out)


def iris_gaze(p: np.ndarray) -> np.ndarray:
    """(2,) gaze ``[yaw, pitch]`` radians, both eyes averaged: the iris centre against the eye
    corners as angles on an eyeball of ``EYEBALL_RADIUS_WIDTHS`` eye widths; yaw > 0 to the
    character's left, pitch > 0 down (as the head). ``p``: (478, 3) with the irises."""
    irises = [p[block].mean(axis=0) for block in IRIS_BLOCKS]
    yaw, pitch = [], []
    for side in ("left", "right"):
        eye = EYES[side]
        outer, inner = p[eye["outer"]], p[eye["inner"]]
        centre = 0.5 * (outer + inner)
        iris = min(irises, key=lambda c: np.linalg.norm(c - centre))  # mediapipe's iris order varies by version
        offset = (iris - centre) / (EYEBALL_RADIUS_WIDTHS * np.linalg.norm(outer - inner))
        yaw.append(np.arcsin(np.clip(offset[0], -1.0, 1.0)))
        pitch.append(np.arcsin(np.clip(-offset[1], -1.0, 1.0)))
    return np.array([np.mean(yaw), np.mean(pitch)])
