"""The upper face in measured units and as ARKit channels, both ways: gaze angles <-> the eight
``eyeLook*`` channels, brow heights in millimetres <-> ``browInnerUp``, ``browOuterUp*``,
``browDown*``. One place for the scale of these channels: the face model's shapes are built to
it (a brow-up channel at 1 lifts the brow by ``FULL_RAISE_MM``), tracking writes fitted
coefficients with it and the performance models write their curves with it. Numpy only.
"""

from __future__ import annotations

import numpy as np

from .head import EYE_LOOK_FULL_PITCH, EYE_LOOK_FULL_YAW
from .schema import CHANNEL_INDEX

FULL_RAISE_MM = 6.0  # a brow-up channel at 1: the brow 6 mm higher
FULL_LOWER_MM = 4.0  # browDown at 1: the inner brow 4 mm lower
LOOK_CHANNELS = tuple(f"eyeLook{d}{s}" for d in ("Down", "In", "Out", "Up") for s in ("Left", "Right"))
BROW_CHANNELS = ("browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight")


def look_channels(gaze: np.ndarray) -> dict[str, np.ndarray]:
    """ARKit eyeLook* values for gaze ``[yaw, pitch]`` radians (``(..., 2)``; yaw > 0 to the
    character's left, pitch > 0 down): looking to the character's left is the left eye looking
    out and the right eye looking in."""
    gaze = np.asarray(gaze, dtype=np.float64)
    yaw, pitch = gaze[..., 0], gaze[..., 1]
    left = np.clip(yaw / EYE_LOOK_FULL_YAW, 0.0, 1.0)
    right = np.clip(-yaw / EYE_LOOK_FULL_YAW, 0.0, 1.0)
    down = np.clip(pitch / EYE_LOOK_FULL_PITCH, 0.0, 1.0)
    up = np.clip(-pitch / EYE_LOOK_FULL_PITCH, 0.0, 1.0)
    return {
        "eyeLookOutLeft": left,
        "eyeLookInRight": left,
        "eyeLookInLeft": right,
        "eyeLookOutRight": right,
        "eyeLookDownLeft": down,
        "eyeLookDownRight": down,
        "eyeLookUpLeft": up,
        "eyeLookUpRight": up,
    }


def brow_channels(heights: np.ndarray) -> dict[str, np.ndarray]:
    """ARKit brow values for brow heights ``[inner, outer]`` in mm from rest (``(..., 2)``)."""
    heights = np.asarray(heights, dtype=np.float64)
    inner, outer = heights[..., 0], heights[..., 1]
    up_outer = np.clip(outer / FULL_RAISE_MM, 0.0, 1.0)
    down = np.clip(-inner / FULL_LOWER_MM, 0.0, 1.0)
    return {
        "browInnerUp": np.clip(inner / FULL_RAISE_MM, 0.0, 1.0),
        "browOuterUpLeft": up_outer,
        "browOuterUpRight": up_outer,
        "browDownLeft": down,
        "browDownRight": down,
    }


def gaze_from_channels(curves: np.ndarray) -> np.ndarray:
    """(T, 2) gaze ``[yaw, pitch]`` radians from (T, 52) schema curves (both eyes averaged)."""
    c = {name: np.asarray(curves)[:, CHANNEL_INDEX[name]] for name in LOOK_CHANNELS}
    yaw = 0.5 * (c["eyeLookOutLeft"] - c["eyeLookInLeft"] + c["eyeLookInRight"] - c["eyeLookOutRight"])
    pitch = 0.5 * (c["eyeLookDownLeft"] - c["eyeLookUpLeft"] + c["eyeLookDownRight"] - c["eyeLookUpRight"])
    return np.stack([EYE_LOOK_FULL_YAW * yaw, EYE_LOOK_FULL_PITCH * pitch], axis=1)


def brows_from_channels(curves: np.ndarray) -> np.ndarray:
    """(T, 2) brow heights ``[inner, outer]`` mm from (T, 52) schema curves (sides averaged):
    what the brow shapes move the brow landmarks by (``browDown`` lowers the outer brow about
    half as much as the inner)."""
    c = {name: np.asarray(curves)[:, CHANNEL_INDEX[name]] for name in BROW_CHANNELS}
    down = 0.5 * (c["browDownLeft"] + c["browDownRight"])
    outer_up = 0.5 * (c["browOuterUpLeft"] + c["browOuterUpRight"])
    inner = FULL_RAISE_MM * c["browInnerUp"] - FULL_LOWER_MM * down
    outer = FULL_RAISE_MM * outer_up - 0.5 * FULL_LOWER_MM * down
    return np.stack([inner, outer], axis=1)
