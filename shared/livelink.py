"""Live Link Face CSV: the layout Epic's Live Link Face app records, for Unreal and MetaHumans.

Columns: ``Timecode`` (``HH:MM:SS:FF.mmm``, frames at the result's rate rounded up to a
whole rate, the sub-frame in thousandths), ``BlendShapeCount`` (61: the 52 curves and 9
rotations), the 52 ARKit curves in Live Link's order and capitalization (Unreal's
``EARFaceBlendShape``: the eyes first, then jaw, mouth, brows, cheeks, nose, tongue), then
``HeadYaw, HeadPitch, HeadRoll``, ``LeftEyeYaw, LeftEyePitch, LeftEyeRoll`` and the same for
the right eye. Rotations are radians with this project's signs (``steadytalk_shared.head``:
yaw to the character's left, pitch chin down, roll towards its right shoulder); eye roll is 0.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from .curves import LipsyncResult
from .head import EYE_LOOK_FULL_PITCH, EYE_LOOK_FULL_YAW
from .schema import CHANNEL_INDEX

# Unreal's EARFaceBlendShape order (0..51), ARKit names with a capital first letter.
LIVE_LINK_CURVES: tuple[str, ...] = tuple(
    """eyeBlinkLeft eyeLookDownLeft eyeLookInLeft eyeLookOutLeft eyeLookUpLeft eyeSquintLeft eyeWideLeft
    eyeBlinkRight eyeLookDownRight eyeLookInRight eyeLookOutRight eyeLookUpRight eyeSquintRight eyeWideRight
    jawForward jawLeft jawRight jawOpen mouthClose mouthFunnel mouthPucker mouthLeft mouthRight
    mouthSmileLeft mouthSmileRight mouthFrownLeft mouthFrownRight mouthDimpleLeft mouthDimpleRight
    mouthStretchLeft mouthStretchRight mouthRollLower mouthRollUpper mouthShrugLower mouthShrugUpper
    mouthPressLeft mouthPressRight mouthLowerDownLeft mouthLowerDownRight mouthUpperUpLeft mouthUpperUpRight
    browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff cheekSquintLeft
    cheekSquintRight noseSneerLeft noseSneerRight tongueOut""".split()
)
ROTATIONS: tuple[str, ...] = tuple(
    f"{part}{axis}" for part in ("Head", "LeftEye", "RightEye") for axis in ("Yaw", "Pitch", "Roll")
)
HEADER: tuple[str, ...] = ("Timecode", "BlendShapeCount", *(n[0].upper() + n[1:] for n in LIVE_LINK_CURVES), *ROTATIONS)
BLEND_SHAPE_COUNT = len(LIVE_LINK_CURVES) + len(ROTATIONS)  # 61, as the app writes


def timecode(frame: int, fps: float) -> str:
    """``HH:MM:SS:FF.mmm`` of frame ``frame`` at ``fps`` (non-drop; FF at the whole rate)."""
    seconds = frame / fps
    whole = int(math.floor(seconds + 1e-9))
    rate = math.ceil(fps - 1e-6)
    sub = (seconds - whole) * rate
    ff = int(math.floor(sub + 1e-9))
    milli = min(int(round((sub - ff) * 1000)), 999)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:{ff:02d}.{milli:03d}"


def eye_rotations(curves: np.ndarray) -> np.ndarray:
    """(T, 2, 3) [left, right eye] x [yaw, pitch, roll] radians that the eyeLook curves show
    (looking to the character's left is the left eye out and the right eye in)."""

    def c(name: str) -> np.ndarray:
        return curves[:, CHANNEL_INDEX[name]]

    left_yaw = EYE_LOOK_FULL_YAW * (c("eyeLookOutLeft") - c("eyeLookInLeft"))
    right_yaw = EYE_LOOK_FULL_YAW * (c("eyeLookInRight") - c("eyeLookOutRight"))
    left_pitch = EYE_LOOK_FULL_PITCH * (c("eyeLookDownLeft") - c("eyeLookUpLeft"))
    right_pitch = EYE_LOOK_FULL_PITCH * (c("eyeLookDownRight") - c("eyeLookUpRight"))
    zero = np.zeros(len(curves))
    return np.stack([np.stack([left_yaw, left_pitch, zero], 1), np.stack([right_yaw, right_pitch, zero], 1)], 1)


def live_link_csv(result: LipsyncResult) -> str:
    """The smoothed result as a Live Link Face CSV."""
    curves = np.asarray(result.smoothed, dtype=np.float64)
    columns = [CHANNEL_INDEX[name] for name in LIVE_LINK_CURVES]
    eyes = eye_rotations(curves).reshape(-1, 6)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for i in range(result.num_frames):
        values = (*curves[i, columns], *result.head[i], *eyes[i])
        writer.writerow([timecode(i, result.fps), BLEND_SHAPE_COUNT, *(f"{v:.5f}" for v in values)])
    return out.getvalue()
