"""Image work of ``prepare``: the stable crop window, resampling a crop, the preview sheet."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steadytalk_shared import render_contract as rc

from ..atomic import atomic_output


def stable_crop_centres(centres: np.ndarray, sigma_frames: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(centres, sigma_frames, axis=0, mode="nearest") if sigma_frames > 0 else centres


def crop_image(frame: np.ndarray, crop: rc.Crop) -> np.ndarray:
    """The crop window of an RGB frame, resampled. Coordinates put pixel centres at +0.5, as
    the landmarks and the render contract do; OpenCV puts them at integers, hence the shift.
    Large reductions go through an area-averaged resize first so fine texture does not alias."""
    import cv2

    height, width = frame.shape[:2]
    scale_x = scale_y = crop.scale
    reduction = min(1.0, 1.5 * crop.scale)
    if reduction < 1.0:
        small = (max(1, round(width * reduction)), max(1, round(height * reduction)))
        frame = cv2.resize(frame, small, interpolation=cv2.INTER_AREA)
        scale_x, scale_y = crop.scale * width / small[0], crop.scale * height / small[1]
    affine = np.array(
        [
            [scale_x, 0.0, crop.offset_x + 0.5 * (scale_x - 1.0)],
            [0.0, scale_y, crop.offset_y + 0.5 * (scale_y - 1.0)],
        ]
    )
    return cv2.warpAffine(
        frame, affine, (crop.width, crop.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


PREVIEW_FRAMES = 4


def write_preview(path: Path, rows: list[list[np.ndarray]]) -> None:
    """One row per frame: the crop, the shape pass blended over it, the shape pass, the mouth
    region in red. A misfit (shifted or wrongly scaled face) is visible at a glance."""
    import cv2

    lines = []
    for crop, color, mask, mouth in rows:
        blend, region = crop.copy(), crop.copy()
        blend[mask] = (0.5 * crop[mask] + 0.5 * color[mask]).astype(np.uint8)
        region[mouth] = (0.5 * crop[mouth] + np.array([127, 0, 0])).astype(np.uint8)
        lines.append(np.concatenate([crop, blend, color, region], axis=1))
    encoded, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate(lines, axis=0), cv2.COLOR_RGB2BGR))
    if encoded:
        with atomic_output(path) as partial:
            partial.write_bytes(png.tobytes())
