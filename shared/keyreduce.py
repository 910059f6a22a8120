"""Key reduction: sparse Bezier keys that stay within a tolerance of a dense curve.

Animators edit a few keys per syllable, not one per frame. Each kept key gets the dense
curve's own slope as its tangent, and its Bezier handles sit at a third of the way to the
neighbouring keys, so between two keys the F-curve is exactly the cubic Hermite segment
evaluated here (Blender's Bezier with handles at 1/3 is linear in time). Keys are added where
the error is largest until every frame is within ``tolerance``; in the worst case every frame
is kept and the curve is exact.

numpy only: it runs inside Blender.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseKeys:
    """Keys of one curve: positions in frames (relative to the curve's first frame) and values,
    with the slope (value per frame) at each key; ``handles`` gives Blender's handle points."""

    frames: np.ndarray  # (K,) int, ascending, first 0 and last T-1
    values: np.ndarray  # (K,) float32
    slopes: np.ndarray  # (K,) float32

    def handles(self) -> tuple[np.ndarray, np.ndarray]:
        """(left, right) handle points (K, 2) in (frame, value), relative frames."""
        frames = self.frames.astype(np.float64)
        gap_before = np.diff(frames, prepend=frames[0] - 1.0) / 3.0
        gap_after = np.diff(frames, append=frames[-1] + 1.0) / 3.0
        slopes = self.slopes.astype(np.float64)
        left = np.stack([frames - gap_before, self.values - slopes * gap_before], axis=1)
        right = np.stack([frames + gap_after, self.values + slopes * gap_after], axis=1)
        return left, right


def slopes_of(values: np.ndarray) -> np.ndarray:
    """Per-frame slope of a dense curve (central differences, one-sided at the ends)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return np.zeros(len(values))
    return np.gradient(values)


def hermite(keys: SparseKeys, length: int) -> np.ndarray:
    """The curve the keys describe, at every frame 0..length-1."""
    frames = np.arange(length, dtype=np.float64)
    if len(keys.frames) == 1:
        return np.full(length, float(keys.values[0]))
    segment = np.clip(np.searchsorted(keys.frames, frames, side="right") - 1, 0, len(keys.frames) - 2)
    x0 = keys.frames[segment].astype(np.float64)
    span = keys.frames[segment + 1] - x0
    s = (frames - x0) / span
    y0, y1 = keys.values[segment].astype(np.float64), keys.values[segment + 1].astype(np.float64)
    m0, m1 = keys.slopes[segment] * span, keys.slopes[segment + 1] * span
    s2, s3 = s * s, s * s * s
    return (2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * m0 + (-2 * s3 + 3 * s2) * y1 + (s3 - s2) * m1


def reduce_keys(values: np.ndarray, tolerance: float = 0.01) -> SparseKeys:
    """The fewest keys (greedy) whose Hermite curve is within ``tolerance`` of ``values`` everywhere."""
    values = np.asarray(values, dtype=np.float64)
    length = len(values)
    if length == 0:
        raise ValueError("cannot key an empty curve")
    slopes = slopes_of(values)
    if length == 1:
        return SparseKeys(np.zeros(1, dtype=np.int64), values.astype(np.float32), slopes.astype(np.float32))
    # Start from the ends and every turning point: peaks and closures are what animators look for.
    step = np.diff(values)
    direction = np.where(np.abs(step) < 1e-6, 0.0, np.sign(step))  # float noise is not a turn
    turning = np.flatnonzero(np.diff(direction) != 0) + 1
    kept = np.unique(np.concatenate([[0, length - 1], turning]))
    while True:
        keys = SparseKeys(kept, values[kept].astype(np.float32), slopes[kept].astype(np.float32))
        error = np.abs(hermite(keys, length) - values)
        if error.max() <= tolerance:
            return keys
        # The worst frame of every segment that is out of tolerance becomes a key (all at once).
        segment = np.clip(np.searchsorted(kept, np.arange(length), side="right") - 1, 0, len(kept) - 2)
        bad = error > tolerance
        order = np.lexsort((-error, segment))  # by segment, worst first
        first_of_segment = np.ones(length, dtype=bool)
        first_of_segment[1:] = segment[order][1:] != segment[order][:-1]
        worst = order[first_of_segment & bad[order]]
        kept = np.unique(np.concatenate([kept, worst]))
