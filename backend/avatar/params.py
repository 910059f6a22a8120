"""An avatar's ``params.npz``: the per-frame fit (pose, coefficients, tracked flag, error) and the
person's identity, written by ``prepare`` and read by the renderer, evaluation and Blender.

The coefficients are stored with their channel names (``channels``): avatars prepared since
schema v2 hold all 52 ARKit channels, older ones the 33 of v1. A consumer takes the channels it
needs BY NAME (``tracked_coefficients``), so it reads either; a channel an older file lacks is at
rest (0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from steadytalk_shared.schema import CHANNELS, V1_CHANNELS

from ..atomic import savez_atomic


def write_params(path: Path, fits: Sequence, found: np.ndarray, identity: np.ndarray) -> np.ndarray:
    """Write the fit of every frame (``face.fitting.FrameFit``); returns the per-frame errors."""
    errors = np.array([f.error for f in fits])
    savez_atomic(
        path,
        coefficients=np.stack([f.coefficients for f in fits]).astype(np.float32),
        scale=np.array([f.pose.scale for f in fits]),
        rotation=np.stack([f.pose.rotation for f in fits]),
        translation=np.stack([f.pose.translation for f in fits]),
        tracked=found,
        error=errors,
        identity=identity.astype(np.float32),
        channels=np.array(CHANNELS),
    )
    return errors


def stored_channels(params: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    """The names of the stored coefficient columns (files without names are v1, in its order)."""
    if "channels" in params:
        return tuple(str(n) for n in params["channels"])
    width = np.asarray(params["coefficients"]).shape[1]
    return CHANNELS[:width]


def tracked_coefficients(params: Mapping[str, np.ndarray], channels: Sequence[str] = V1_CHANNELS) -> np.ndarray:
    """(T, len(channels)) float32: the stored coefficients of ``channels``, picked by name (the
    renderer is v1-wide: the default), 0 for a channel the file does not have."""
    stored = {name: i for i, name in enumerate(stored_channels(params))}
    values = np.asarray(params["coefficients"], dtype=np.float32)
    out = np.zeros((len(values), len(channels)), dtype=np.float32)
    for column, name in enumerate(channels):
        if name in stored:
            out[:, column] = values[:, stored[name]]
    return out


def load_coefficients(folder: Path, channels: Sequence[str] = V1_CHANNELS) -> np.ndarray:
    """``tracked_coefficients`` of an avatar folder's ``params.npz``."""
    with np.load(Path(folder) / "params.npz") as data:
        return tracked_coefficients(data, channels)
