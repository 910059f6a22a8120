"""Head rotation as the schema stores it: ``[yaw, pitch, roll]`` radians <-> rotation matrices.

Axes are the face model's (X to the character's left, Y up, Z out of the face) and the matrix
is ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)``, right-handed, so from the character's point of view
yaw > 0 turns the face to its left, pitch > 0 tips the chin down and roll > 0 tilts the head
towards its right shoulder (``steadytalk_shared.schema``). Tracking, the performance models,
the Live Link export and the add-on all convert through here.
"""

from __future__ import annotations

import numpy as np


def matrix_from_euler(angles: np.ndarray) -> np.ndarray:
    """(..., 3) [yaw, pitch, roll] -> (..., 3, 3) rotation matrices."""
    a = np.asarray(angles, dtype=np.float64)
    cy, sy = np.cos(a[..., 0]), np.sin(a[..., 0])
    cp, sp = np.cos(a[..., 1]), np.sin(a[..., 1])
    cr, sr = np.cos(a[..., 2]), np.sin(a[..., 2])
    one, zero = np.ones_like(cy), np.zeros_like(cy)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*a.shape[:-1], 3, 3)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(*a.shape[:-1], 3, 3)
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(*a.shape[:-1], 3, 3)
    return ry @ rx @ rz


def euler_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) [yaw, pitch, roll] (pitch within +-90 degrees)."""
    r = np.asarray(matrix, dtype=np.float64)
    pitch = np.arcsin(np.clip(-r[..., 1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return np.stack([yaw, pitch, roll], axis=-1)


# Gaze angle (radians) at which an ARKit eyeLook channel reaches 1, horizontally (In/Out) and
# vertically (Up/Down): about what ARKit's own face tracking gives. The performance's gaze and
# the Live Link export's eye rotations convert with these.
EYE_LOOK_FULL_YAW = 0.5
EYE_LOOK_FULL_PITCH = 0.4
