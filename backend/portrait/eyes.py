"""The eyes behind the lids: when the gaze moves, the iris slides within the eye opening and
the white of the eye appears where it was.

The picture shows each eye once: an iris partly under the lids and some white on either side.
Built once per eye: the *white* (the opening with the iris filled in from the visible white,
``cv2.inpaint`` from those pixels alone) and the *iris* (the picture's iris disc with a soft
edge). A frame with a gaze writes, inside each rest opening of a copy of the picture, the white
with the iris moved over it; the warp then shows that copy through the eye layer, under the
lids. Without a gaze the picture itself is used, so the rest frame stays the picture.

Gaze comes from the eyeLook* channels when the schema has them (``gaze_from_curves``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steadytalk_shared.schema import CHANNELS

from .locate import FittedFace

IRIS_POINTS = 468  # refined landmarks: two irises of 5 points each (centre, then the rim)
# ARKit's eyeLook* at 1 turn the eye about 30 degrees: the iris moves about a quarter of the
# eye's width.
GAZE_SHARE_AT_ONE = 0.25
STILL_GAZE = 1e-3


def gaze_from_curves(curves: np.ndarray) -> np.ndarray | None:
    """(T, 2, 2) iris offsets (eye left then right; toward the character's left, up) in shares
    of the eye's width, from the schema's eyeLook* channels; None when the schema has none."""
    names = [f"eyeLook{d}{s}" for s in ("Left", "Right") for d in ("In", "Out", "Up", "Down")]
    if not any(n in CHANNELS for n in names):
        return None
    c = np.asarray(curves, dtype=np.float64)

    def channel(name: str) -> np.ndarray:
        return c[:, CHANNELS.index(name)] if name in CHANNELS else np.zeros(len(c))

    gaze = np.zeros((len(c), 2, 2))
    # The left eye looks toward the character's left when it looks out; the right one when in.
    gaze[:, 0, 0] = channel("eyeLookOutLeft") - channel("eyeLookInLeft")
    gaze[:, 1, 0] = channel("eyeLookInRight") - channel("eyeLookOutRight")
    gaze[:, 0, 1] = channel("eyeLookUpLeft") - channel("eyeLookDownLeft")
    gaze[:, 1, 1] = channel("eyeLookUpRight") - channel("eyeLookDownRight")
    return gaze * GAZE_SHARE_AT_ONE


@dataclass
class _Eye:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the picture
    opening: np.ndarray  # (h, w) bool: the eye opening at rest
    white: np.ndarray  # (h, w, 3) float: the opening with the iris filled in
    iris: np.ndarray  # (h, w, 3) float: the picture's pixels
    alpha: np.ndarray  # (h, w) float: the iris disc, soft-edged
    width: float  # corner to corner, pixels
    right: np.ndarray  # (2,) image direction of the character's left (model +X)
    up: np.ndarray  # (2,) image direction of model +Y


class EyeLayer:
    def __init__(self, photo: np.ndarray, face: FittedFace, rest_xy: np.ndarray) -> None:
        self.photo = photo
        self._buffer: np.ndarray | None = None
        axes = face.pose.rotation[:2, :2]
        self.eyes: list[_Eye] = []
        irises = (
            face.landmarks[IRIS_POINTS : IRIS_POINTS + 10, :2].reshape(2, 5, 2) if len(face.landmarks) >= 478 else None
        )
        for loop in (face.model.regions.eye_left, face.model.regions.eye_right):
            eye = self._build(rest_xy[loop], irises, axes)
            if eye is not None:
                self.eyes.append(eye)

    def _build(self, outline: np.ndarray, irises: np.ndarray | None, axes: np.ndarray) -> _Eye | None:
        import cv2

        if irises is None:
            return None
        centre = outline.mean(axis=0)
        iris = irises[int(np.argmin(np.linalg.norm(irises[:, 0] - centre, axis=1)))]
        radius = float(np.linalg.norm(iris[1:] - iris[0], axis=1).mean())
        height, width = self.photo.shape[:2]
        lo = np.floor(np.minimum(outline.min(axis=0), iris[0] - radius)).astype(int) - 2
        hi = np.ceil(np.maximum(outline.max(axis=0), iris[0] + radius)).astype(int) + 3
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], width), min(hi[1], height)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        opening = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        cv2.fillPoly(opening, [np.round((outline - (x0, y0)) * 4).astype(np.int32)], 1, shift=2)
        rows, cols = np.mgrid[y0:y1, x0:x1]
        distance = np.hypot(cols + 0.5 - iris[0, 0], rows + 0.5 - iris[0, 1])
        disc = distance <= 1.1 * radius
        patch = self.photo[y0:y1, x0:x1]
        known = opening.astype(bool) & ~disc
        if known.sum() >= 6:
            white = cv2.inpaint(patch, (~known).astype(np.uint8), 3, cv2.INPAINT_TELEA).astype(np.float64)
        else:  # no white visible: a plain white as light as the brightest of the eye
            white = np.broadcast_to(np.quantile(patch.reshape(-1, 3), 0.9, axis=0), patch.shape).astype(np.float64)
        alpha = np.clip(1.1 * radius - distance + 0.5, 0.0, 1.0) * opening
        direction = lambda v: v / max(np.linalg.norm(v), 1e-9)  # noqa: E731
        return _Eye(
            box=(x0, y0, x1, y1),
            opening=opening.astype(bool),
            white=white,
            iris=patch.astype(np.float64),
            alpha=alpha,
            width=float(np.ptp(outline[:, 0])),
            right=direction(axes[:, 0]),
            up=direction(axes[:, 1]),
        )

    def source(self, gaze: np.ndarray | None) -> tuple[np.ndarray, bool]:
        """The picture the warp reads this frame, and whether the eyes changed in it."""
        import cv2

        if gaze is None or len(self.eyes) == 0 or np.abs(gaze).max() < STILL_GAZE:
            return self.photo, False
        if self._buffer is None:
            self._buffer = self.photo.copy()
        for eye, (along, up) in zip(self.eyes, np.asarray(gaze, dtype=np.float64), strict=False):
            offset = eye.width * (along * eye.right + up * eye.up)
            shift = np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]]])
            size = (eye.alpha.shape[1], eye.alpha.shape[0])
            alpha = cv2.warpAffine(eye.alpha, shift, size, flags=cv2.INTER_LINEAR)[..., None]
            iris = cv2.warpAffine(eye.iris, shift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            mixed = alpha * iris + (1.0 - alpha) * eye.white
            x0, y0, x1, y1 = eye.box
            view = self._buffer[y0:y1, x0:x1]
            view[eye.opening] = np.clip(mixed[eye.opening] + 0.5, 0, 255).astype(np.uint8)
        return self._buffer, True
