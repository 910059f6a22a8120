"""Motion Stability Index (StableFace, Ling et al. 2022, arXiv 2208.13717; BRIEF section 3).

MSI is the reciprocal of the temporal variance of keypoint acceleration, following the
authors' evaluation code:

1. scale the sequence so the mean mouth-corner distance over the first 10 frames is 64 units;
2. per coordinate (x and y separately): ``v = x[t+1] - x[t]``, ``a = v[t+1] - v[t]``;
3. over windows of 12 frames with stride 6, per keypoint: ``var(a)`` over the window, then
   ``1 / (var + 0.5)``;
4. average over keypoints, then over windows, then over x and y.

Range (0, 2]; a perfectly smooth (constant-velocity) track gives 2.
"""

from __future__ import annotations

import numpy as np

from .schema import CHANNEL_INDEX

MOUTH_WIDTH_UNITS = 64.0
SCALE_FRAMES = 10
WINDOW = 12
STRIDE = 6
VARIANCE_OFFSET = 0.5


def _windowed_stability(accel: np.ndarray) -> float:
    """Mean over windows of mean over keypoints of 1/(var + 0.5). ``accel``: (T, K)."""
    if accel.shape[0] < WINDOW:
        raise ValueError(
            f"MSI needs at least {WINDOW + 2} frames (a {WINDOW}-frame window of accelerations); "
            f"got {accel.shape[0] + 2}"
        )
    starts = range(0, accel.shape[0] - WINDOW + 1, STRIDE)
    per_window = [np.mean(1.0 / (np.var(accel[s : s + WINDOW], axis=0) + VARIANCE_OFFSET)) for s in starts]
    return float(np.mean(per_window))


def _acceleration(track: np.ndarray) -> np.ndarray:
    return np.diff(track, n=2, axis=0)


def landmark_msi(landmarks: np.ndarray, corner_indices: tuple[int, int]) -> float:
    """MSI of a keypoint track.

    ``landmarks``: (T, K, 2) image coordinates of the lip keypoints (or jaw keypoints for the
    jaw variant; any unit). ``corner_indices``: indices into K of the two mouth corners, used
    only for the 64-unit normalisation (for the jaw variant pass the mouth corners' indices
    within an array that contains them).
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 3 or points.shape[2] != 2:
        raise ValueError(f"landmarks must have shape (T, K, 2), got {points.shape}")
    left, right = corner_indices
    width = np.linalg.norm(points[:SCALE_FRAMES, left] - points[:SCALE_FRAMES, right], axis=-1).mean()
    if not np.isfinite(width) or width <= 0:
        raise ValueError("mouth corners coincide in the first frames; cannot normalise the track")
    scaled = points * (MOUTH_WIDTH_UNITS / width)
    per_axis = [_windowed_stability(_acceleration(scaled[:, :, axis])) for axis in (0, 1)]
    return float(np.mean(per_axis))


# Channels that move the lips and jaw; the cheek, tongue and blink channels are excluded so a
# sequence is not rated stable just because most of its channels sit at zero.
ARTICULATION_CHANNELS: tuple[str, ...] = (
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
)


def curve_msi(curves: np.ndarray, channels: tuple[str, ...] = ARTICULATION_CHANNELS) -> float:
    """MSI variant on coefficient curves.

    ``curves``: (T, NUM_CHANNELS) in schema order, values in [0, 1]. Each channel is treated as
    one keypoint coordinate; a full 0-to-1 swing is scaled to 64 units (one mouth width, as the
    landmark normalisation does), then the same acceleration/window/1/(var+0.5) steps apply.
    """
    values = np.asarray(curves, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"curves must have shape (T, C), got {values.shape}")
    columns = [CHANNEL_INDEX[name] for name in channels]
    scaled = values[:, columns] * MOUTH_WIDTH_UNITS
    return _windowed_stability(_acceleration(scaled))
