"""The face-shape pass: one render contract for Blender (Workbench) and the backend's rasterizer.

What the image is:
- The posed face mesh, seen by an orthographic camera, on a black background.
- Colour of a surface point = its *canonical coordinate*: where that point sits on the
  canonical neutral face, normalized to [0, 1] per axis (x to the character's left, y up, z
  out of the face). Vertex colours carry it, interpolated linearly across each triangle in
  scene-linear space, flat (unlit), then encoded by Blender's Standard view transform (the
  sRGB curve) into the 8-bit image. So ``srgb_decode(pixel)`` gives the canonical coordinate
  back, and the renderer always knows which part of the face a pixel shows.

Where it is: *contract space*, in pixels of the output image: X = column (right), Y = -row
(up), Z = nearness (towards the camera). The camera sits at (W/2, -H/2, far) looking down -Z
with an orthographic width of max(W, H), so contract (x, -y) lands on pixel (x, y), pixel
centres at half-integers. ``model_matrix`` maps the face model (metres) into it from a fitted
head pose and an image crop; Blender gets the same 4x4 as the object's ``matrix_world``.

numpy only: imported by the backend and by the Blender extension.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RENDER_CONTRACT_VERSION = 1
# Mesh points that belong to the face proper (mediapipe topology); the tongue follows them.
FACE_POINTS = 468
# Far enough that any head (a few hundred pixels deep) stays between the clip planes.
CAMERA_DISTANCE_IMAGES = 8.0


def canonical_colors(neutral: np.ndarray) -> np.ndarray:
    """(V, 3) float32 in [0, 1]: each vertex's canonical coordinate, normalized over the face box."""
    face = neutral[:FACE_POINTS]
    lo, hi = face.min(axis=0), face.max(axis=0)
    return np.clip((neutral - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Scene-linear [0, 1] -> display value, the IEC 61966-2-1 curve of Blender's Standard view."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """Inverse of :func:`srgb_encode`."""
    x = np.clip(encoded, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


@dataclass(frozen=True)
class Crop:
    """Axis-aligned, uniformly scaled window of a source frame: ``out = scale * src + offset``."""

    scale: float
    offset_x: float
    offset_y: float
    width: int
    height: int

    @classmethod
    def around(cls, center_x: float, center_y: float, side: float, size: int) -> Crop:
        """A ``size`` x ``size`` output showing the square of ``side`` source pixels at the centre."""
        scale = size / side
        return cls(scale, size / 2 - scale * center_x, size / 2 - scale * center_y, size, size)

    @classmethod
    def full_frame(cls, width: int, height: int) -> Crop:
        return cls(1.0, 0.0, 0.0, width, height)


# Source image axes (x right, y down, depth away from the camera) -> contract (x, up, nearness).
_IMAGE_TO_CONTRACT = np.diag([1.0, -1.0, -1.0])


def model_matrix(scale: float, rotation: np.ndarray, translation: np.ndarray, crop: Crop) -> np.ndarray:
    """4x4 from face-model metres to contract space.

    ``scale, rotation, translation``: the fitted head pose, model -> source-image pixels
    (x right, y down, depth on the x scale, larger is farther), as the tracker writes it."""
    linear = crop.scale * scale * (_IMAGE_TO_CONTRACT @ np.asarray(rotation, dtype=np.float64))
    shift = _IMAGE_TO_CONTRACT @ (crop.scale * np.asarray(translation, dtype=np.float64))
    shift += np.array([crop.offset_x, -crop.offset_y, 0.0])
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = shift
    return matrix


def project(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Model points through ``model_matrix`` into output pixels: (column, row, nearness).

    matrix (4, 4) with points (V, 3), or a batch: matrix (B, 4, 4) with points (B, V, 3)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    contract = np.asarray(points) @ np.swapaxes(matrix[..., :3, :3], -1, -2) + matrix[..., None, :3, 3]
    return contract * np.array([1.0, -1.0, 1.0])  # contract Y is up, image rows go down


@dataclass(frozen=True)
class OrthoCamera:
    location: tuple[float, float, float]
    ortho_scale: float
    clip_start: float
    clip_end: float


def camera(width: int, height: int) -> OrthoCamera:
    """The contract's camera for a ``width`` x ``height`` image (Blender: rotation identity)."""
    side = float(max(width, height))
    distance = CAMERA_DISTANCE_IMAGES * side
    return OrthoCamera((width / 2.0, -height / 2.0, distance), side, 0.01 * side, 2.0 * distance)


def crop_camera(crop: Crop, full_width: int, full_height: int) -> OrthoCamera:
    """The camera that, placed in the full frame's contract space, renders exactly ``crop``
    (a square ``crop.width`` output): the full frame's camera moved over the window and
    zoomed by the crop's scale. Lets Blender draw the shape pass of an avatar's face crop
    while the rig keeps the head pose of the whole reference frame."""
    size = float(crop.width)
    full = camera(full_width, full_height)
    return OrthoCamera(
        ((size / 2 - crop.offset_x) / crop.scale, (crop.offset_y - size / 2) / crop.scale, full.location[2]),
        size / crop.scale,
        full.clip_start,
        full.clip_end,
    )


# How much of an avatar's reference video a render loops over (see ``reference_index``).
REFERENCE_SECONDS = 30.0


def reference_loop(frames: int, fps: float, seconds: float = REFERENCE_SECONDS) -> int:
    """Number of reference frames a render plays (the first ``seconds`` of the video)."""
    return max(1, min(int(frames), int(round(seconds * float(fps)))))


def reference_index(offset: np.ndarray | int, loop: int) -> np.ndarray:
    """Which frame of an avatar's reference video plays at ``offset`` frames into a render:
    forwards, then backwards, then forwards (a ping-pong never jumps). The same as Blender's
    Cycles F-curve modifier in Mirror mode over keys 0 .. loop - 1, which is how the add-on
    animates the reference head pose."""
    offset = np.asarray(offset, dtype=np.int64)
    if loop <= 1:
        return np.zeros_like(offset)
    period = loop - 1
    phase = np.mod(offset, 2 * period)
    return np.where(phase <= period, phase, 2 * period - phase)
