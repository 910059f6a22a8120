"""Finding the face in a picture (mediapipe's face mesh, as ``prepare`` uses it, in still-image
mode) and fitting the canonical face model to it: identity, head pose and the expression the
picture holds, which becomes the rest of the animation (so the first frame is the picture).

Faces are numbered left to right, from 1, as the user sees them. With several, the largest is
taken unless ``--face N`` chooses, and the user hears which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steadytalk_shared.face_model import FaceModel

from ..face.fitting import Fitter, Pose, identity_model
from ..face.landmarks import (
    CHIN,
    FOREHEAD,
    NUM_MESH_POINTS,
    FaceLandmarker,
    LandmarkerConfig,
    _native_stderr_silenced,
)
from .deform import relax_shapes
from .picture import PortraitError


@dataclass(frozen=True)
class LocateConfig:
    max_faces: int = 8
    # Forehead-to-chin height, in the picture and in the video: below this the face mesh has
    # too few pixels per triangle for the lips to move visibly.
    min_face_pixels: int = 64
    # mediapipe sees the picture at most this big (its detector works on 128 px anyway).
    detect_side: int = 1600
    # Beyond this turn (degrees between the face's normal and the camera) the far side of
    # the face, the teeth and the jaw line are guessed from too little: the user is warned.
    max_turn_degrees: float = 35.0


@dataclass
class FaceChoice:
    landmarks: np.ndarray  # (478, 3) picture pixels: x, y, depth on the x scale (larger is farther)
    index: int  # 1-based, left to right
    count: int
    warnings: list[str]


def _height(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[FOREHEAD, :2] - points[CHIN, :2]))


def _describe(faces: list[np.ndarray], width: int) -> str:
    parts = []
    for n, points in enumerate(faces, start=1):
        centre = float(points[:NUM_MESH_POINTS, 0].mean())
        where = "left" if centre < width / 3 else "right" if centre > 2 * width / 3 else "middle"
        parts.append(f"{n} ({where}, {_height(points):.0f} px tall)")
    return ", ".join(parts)


def find_faces(rgb: np.ndarray, config: LocateConfig | None = None) -> list[np.ndarray]:
    """Every face in the picture, left to right: (478, 3) landmarks in the picture's pixels."""
    import cv2

    config = config or LocateConfig()
    height, width = rgb.shape[:2]
    scale = min(1.0, config.detect_side / max(height, width))
    seen = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    detector = LandmarkerConfig(video=False, max_faces=config.max_faces)
    # In still-image mode mediapipe's C++ side warns about its region of interest on every
    # picture (to file descriptor 2); the warning says nothing to a user.
    with FaceLandmarker(detector) as landmarker, _native_stderr_silenced():
        faces = landmarker.detect(seen)
    faces = [f / scale for f in faces]
    return sorted(faces, key=lambda f: float(f[:NUM_MESH_POINTS, 0].mean()))


def choose_face(
    faces: list[np.ndarray], name: str, width: int, requested: int | None = None, config: LocateConfig | None = None
) -> FaceChoice:
    """The face to animate: ``requested`` (1-based, left to right), else the largest."""
    config = config or LocateConfig()
    if not faces:
        raise PortraitError(
            f"No face was found in {name}.",
            f"Use a picture with one face clearly visible, near frontal, at least {config.min_face_pixels} "
            "pixels tall.",
        )
    warnings = []
    if requested is not None:
        if not 1 <= requested <= len(faces):
            raise PortraitError(
                f"There is no face {requested} in {name}: it has {len(faces)} "
                f"(left to right: {_describe(faces, width)}).",
                f"Choose --face 1 to {len(faces)}.",
            )
        index = requested
    else:
        index = 1 + int(np.argmax([_height(f) for f in faces]))
        if len(faces) > 1:
            warnings.append(
                f"{name} has {len(faces)} faces (left to right: {_describe(faces, width)}); animating face "
                f"{index}, the largest. Choose another with --face N."
            )
    chosen = faces[index - 1]
    tall = _height(chosen)
    if tall < config.min_face_pixels:
        raise PortraitError(
            f"The face in {name} is {tall:.0f} pixels tall (forehead to chin); at least "
            f"{config.min_face_pixels} are needed.",
            "Use a larger picture, or one taken closer to the face.",
        )
    return FaceChoice(chosen, index, len(faces), warnings)


@dataclass
class FittedFace:
    """The canonical face model fitted to the picture, in the video's pixels."""

    # The person's identity (its neutral is the picture's face), shapes relaxed for a texture.
    model: FaceModel
    pose: Pose  # model metres -> video pixels (x right, y down, depth larger is farther)
    landmarks: np.ndarray  # (478, 3) mediapipe's points in video pixels
    expression: np.ndarray  # (C,) the coefficients the picture holds (its rest, for information)
    error: float  # fit error over the eye distance

    @property
    def turn_degrees(self) -> float:
        """Angle between the face's normal and the direction to the camera."""
        normal = self.pose.rotation @ np.array([0.0, 0.0, 1.0])  # model +Z: out of the face
        return float(np.degrees(np.arccos(np.clip(-normal[2], -1.0, 1.0))))

    @property
    def height_pixels(self) -> float:
        return _height(self.landmarks)


def fit_face(landmarks: np.ndarray, scale: float, model: FaceModel | None = None) -> FittedFace:
    """Fit identity, pose and expression to one face's landmarks (picture pixels), then move
    everything to the video, whose pixels are ``scale`` picture pixels."""
    model = model or FaceModel.load()
    points = landmarks * scale
    fitter = Fitter(model)
    identity = fitter.fit_identity([points])
    fit = fitter.fit_frame(points, identity)
    expression = fitter.fit_frame(points).coefficients  # against the canonical face: what the picture holds
    person = relax_shapes(identity_model(model, identity))
    return FittedFace(person, fit.pose, points, expression, fit.error)


def check_fit(face: FittedFace, name: str, size_flag: int, config: LocateConfig | None = None) -> list[str]:
    """Problems of the fitted face that the video would show: a face too small at the chosen
    ``--size`` (an error) or turned far from the camera (a warning)."""
    config = config or LocateConfig()
    tall = face.height_pixels
    if tall < config.min_face_pixels:
        needed = int(np.ceil(size_flag * config.min_face_pixels / tall / 16.0)) * 16
        raise PortraitError(
            f"At --size {size_flag} the face would be {tall:.0f} pixels tall; at least {config.min_face_pixels} "
            "are needed.",
            f"Use --size {needed} or more.",
        )
    warnings = []
    turn = face.turn_degrees
    if turn > config.max_turn_degrees:
        warnings.append(
            f"The face in {name} is turned {turn:.0f} degrees from the camera; portraits work best within "
            f"{config.max_turn_degrees:.0f} (the far side of the face and the mouth's inside are guessed)."
        )
    return warnings
