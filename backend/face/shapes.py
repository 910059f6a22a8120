"""The ARKit blendshapes of the canonical face model as analytic displacement fields on its
neutral shape. One-sided shapes are built for the character's left and mirrored, so Left and
Right are exact mirror images; symmetric shapes are made exactly symmetric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steadytalk_shared.schema import CHANNELS

from .landmarks import (
    CHEEK_LEFT,
    LIPS_INNER_LOWER,
    LIPS_INNER_UPPER,
    LIPS_OUTER_LOWER,
    LIPS_OUTER_UPPER,
    MOUTH_CORNER_LEFT,
    MOUTH_CORNER_RIGHT,
)
from .shapes_upper import UpperFaceShapes


@dataclass(frozen=True)
class BuildConfig:
    frame_step: int = 5  # every 5th frame of the video is enough for a mean shape
    max_frames: int = 7500
    closed_fraction: float = 0.2  # frames with the most closed lips form the neutral
    jaw_open_degrees: float = 20.0  # jawOpen = 1: a wide-open jaw (ARKit)
    # Temporomandibular joint relative to the eye-corner midpoint: below and well behind.
    jaw_pivot_y: float = -0.035
    jaw_pivot_z: float = -0.085
    # The condyle glides forward as the jaw opens, so the chin drops more than it retracts.
    jaw_glide: float = 0.010


def _falloff(distance: np.ndarray, radius: float) -> np.ndarray:
    """Smooth compact bump: 1 at 0, 0 beyond ``radius``, C1 at both ends."""
    t = np.clip(distance / radius, 0.0, 1.0)
    return (1.0 - t * t) ** 2


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class ShapeBuilder:
    """Displacement fields (V, 3) for every schema channel on a symmetric neutral shape."""

    def __init__(self, vertices: np.ndarray, mirror: np.ndarray, tongue: np.ndarray, config: BuildConfig) -> None:
        self.v = vertices
        self.mirror = mirror
        self.tongue = tongue
        self.config = config
        self.n = len(vertices)
        lips_upper = set(LIPS_OUTER_UPPER + LIPS_INNER_UPPER) - {61, 291, 78, 308}
        lips_lower = set(LIPS_OUTER_LOWER + LIPS_INNER_LOWER) - {61, 291, 78, 308}
        self.mouth = 0.5 * (vertices[13] + vertices[14])
        self.width = vertices[MOUTH_CORNER_LEFT, 0] - vertices[MOUTH_CORNER_RIGHT, 0]
        x, y = vertices[:, 0], vertices[:, 1]
        # Upper / lower side of the mouth: explicit for lip vertices, by height elsewhere.
        self.lower = (y < self.mouth[1]).astype(float)
        self.lower[list(lips_upper)] = 0.0
        self.lower[list(lips_lower)] = 1.0
        self.lower[[61, 291, 78, 308]] = 0.5
        self.lower[tongue] = 0.0
        self.upper = 1.0 - self.lower
        self.upper[tongue] = 0.0
        ellipse = np.hypot((x - self.mouth[0]) / (0.75 * self.width), (y - self.mouth[1]) / 0.022)
        self.mouth_region = _falloff(ellipse, 1.0)
        self.mouth_region[tongue] = 0.0
        self.lips = np.zeros(self.n)
        self.lips[list(lips_upper | lips_lower | {61, 291, 78, 308})] = 1.0
        self.lips = np.maximum(self.lips, _falloff(ellipse, 0.55))
        self.lips[tongue] = 0.0
        # Left side weight: 0.5 on the midline, 1 at the left corner and beyond.
        self.left = np.clip(0.5 + (x - self.mouth[0]) / self.width, 0.0, 1.0)

    # helpers
    def _zeros(self) -> np.ndarray:
        return np.zeros((self.n, 3))

    def _around(self, center: np.ndarray, radius: float) -> np.ndarray:
        w = _falloff(np.linalg.norm(self.v - center, axis=1), radius)
        w[self.tongue] = 0.0
        return w

    def mirrored(self, left: np.ndarray) -> np.ndarray:
        """The Right twin of a Left shape: reflect the field across X = 0."""
        return left[self.mirror] * np.array([-1.0, 1.0, 1.0])

    # jaw
    def jaw_weight(self) -> np.ndarray:
        y = self.v[:, 1]
        w = _smoothstep((self.mouth[1] + 0.003 - y) / 0.015)
        w = np.where(self.lips > 0.99, self.lower, w)
        w[self.tongue] = 0.6  # the tongue rides on the jaw
        return w

    def jaw_open(self) -> np.ndarray:
        angle = np.radians(self.config.jaw_open_degrees)
        pivot = np.array([0.0, self.config.jaw_pivot_y, self.config.jaw_pivot_z])
        rel = self.v - pivot
        c, s = np.cos(angle), np.sin(angle)  # positive about X: the chin swings down (and back)
        rotated = np.stack([rel[:, 0], c * rel[:, 1] - s * rel[:, 2], s * rel[:, 1] + c * rel[:, 2]], axis=1)
        glide = np.array([0.0, 0.0, self.config.jaw_glide])
        return (rotated - rel + glide) * self.jaw_weight()[:, None]

    def jaw_forward(self) -> np.ndarray:
        d = self._zeros()
        d[:, 2] = 0.008 * self.jaw_weight()
        return d

    def jaw_left(self) -> np.ndarray:
        d = self._zeros()
        d[:, 0] = 0.010 * self.jaw_weight()
        return d

    # lips together against an open jaw (ARKit mouthClose)
    def mouth_close(self) -> np.ndarray:
        jaw = self.jaw_open()
        inner_lower = np.array(LIPS_INNER_LOWER)
        nearest = inner_lower[np.argmin(np.abs(self.v[:, None, 0] - self.v[None, inner_lower, 0]), axis=1)]
        weight = self.lips
        # lower lip travels back up 60% of its jaw displacement, upper lip comes down 40%
        return (-0.6 * jaw * self.lower[:, None] + 0.4 * jaw[nearest] * self.upper[:, None]) * weight[:, None]

    def funnel(self) -> np.ndarray:
        d = self._zeros()
        w = self.lips
        d[:, 0] = -0.25 * (self.v[:, 0] - self.mouth[0]) * w
        d[:, 2] = 0.008 * w
        inner = np.zeros(self.n)
        inner[list(LIPS_INNER_UPPER + LIPS_INNER_LOWER)] = 1.0
        opening = (
            0.004 * (0.5 + 0.5 * inner) * w * (1.0 - np.abs(self.v[:, 0] - self.mouth[0]) / self.width * 1.6).clip(0)
        )
        d[:, 1] = opening * (self.upper - self.lower)
        return d

    def pucker(self) -> np.ndarray:
        d = self._zeros()
        w = self.lips
        d[:, 0] = -0.42 * (self.v[:, 0] - self.mouth[0]) * w
        d[:, 2] = 0.013 * w
        return d

    def mouth_left(self) -> np.ndarray:
        d = self._zeros()
        d[:, 0] = 0.012 * self.mouth_region
        return d

    def _corner(self, offset: tuple[float, float, float], radius: float = 0.03) -> np.ndarray:
        return self._around(self.v[MOUTH_CORNER_LEFT], radius)[:, None] * np.array(offset)

    def smile_left(self) -> np.ndarray:
        return self._corner((0.006, 0.009, -0.004))

    def frown_left(self) -> np.ndarray:
        return self._corner((0.002, -0.007, 0.0))

    def dimple_left(self) -> np.ndarray:
        return self._corner((0.004, 0.0, -0.005), radius=0.022)

    def stretch_left(self) -> np.ndarray:
        return self._corner((0.008, -0.004, -0.002))

    def roll_lower(self) -> np.ndarray:
        w = (self.lips * self.lower)[:, None]
        return w * np.array([0.0, 0.003, -0.006])

    def roll_upper(self) -> np.ndarray:
        w = (self.lips * self.upper)[:, None]
        return w * np.array([0.0, -0.003, -0.006])

    def shrug_lower(self) -> np.ndarray:
        chin = self._around(self.v[17] + np.array([0, -0.01, 0]), 0.035)
        return (chin * self.lower)[:, None] * np.array([0.0, 0.005, 0.003])

    def shrug_upper(self) -> np.ndarray:
        return (self.mouth_region * self.upper)[:, None] * np.array([0.0, 0.004, 0.002])

    def press_left(self) -> np.ndarray:
        w = self.lips * self.left
        d = self._zeros()
        d[:, 1] = 0.0025 * w * (self.lower - self.upper)
        d[:, 2] = -0.002 * w
        return d

    def lower_down_left(self) -> np.ndarray:
        w = (self.mouth_region * self.lower * self.left)[:, None]
        return w * np.array([0.0, -0.010, 0.001])  # ARKit pulls the lip about a centimetre

    def upper_up_left(self) -> np.ndarray:
        w = (self.mouth_region * self.upper * self.left)[:, None]
        return w * np.array([0.0, 0.010, 0.001])

    def cheek_puff(self) -> np.ndarray:
        left = self._around(self.v[CHEEK_LEFT] + np.array([0.0, -0.015, 0.0]), 0.035)[:, None] * np.array(
            [0.008, 0.0, 0.004]
        )
        return left + self.mirrored(left)

    def cheek_squint_left(self) -> np.ndarray:
        center = 0.5 * (self.v[374] + self.v[CHEEK_LEFT])
        return self._around(center, 0.022)[:, None] * np.array([0.0, 0.004, 0.001])

    def tongue_out(self) -> np.ndarray:
        """Tongue out between the lips, tip lowered so its upper surface faces the camera."""
        d = self._zeros()
        z = self.v[self.tongue, 2]
        reach = (z - z.min()) / (z.max() - z.min())  # 0 at the root, 1 at the tip
        d[self.tongue, 1] = -0.004 - 0.010 * reach
        d[self.tongue, 2] = 0.014 + 0.010 * reach
        return d

    def blink_left(self, upper_lid: np.ndarray, lower_lid: np.ndarray) -> np.ndarray:
        """Upper lid down onto the lower lid; the lid skin above follows."""
        d = self._zeros()
        order = np.argsort(self.v[lower_lid, 0])
        lower_y = np.interp(self.v[:, 0], self.v[lower_lid[order], 0], self.v[lower_lid[order], 1])
        drop = lower_y - self.v[:, 1] + 0.0004  # a hair of overlap so the eye is fully shut
        lid_distance = np.min(np.linalg.norm(self.v[:, None] - self.v[None, upper_lid], axis=-1), axis=1)
        eye_center = self.v[list(upper_lid) + list(lower_lid)].mean(0)
        above = self.v[:, 1] >= eye_center[1] - 1e-6
        weight = _falloff(lid_distance, 0.012) * above
        weight[self.tongue] = 0.0
        d[:, 1] = np.minimum(drop, 0.0) * weight
        return d

    def all_shapes(self, eye_left_loop: np.ndarray) -> np.ndarray:
        center = self.v[eye_left_loop].mean(0)
        upper_lid = eye_left_loop[self.v[eye_left_loop, 1] >= center[1]]
        lower_lid = eye_left_loop[self.v[eye_left_loop, 1] < center[1]]
        one_sided = {
            "jawLeft": self.jaw_left(),
            "mouthLeft": self.mouth_left(),
            "mouthSmileLeft": self.smile_left(),
            "mouthFrownLeft": self.frown_left(),
            "mouthDimpleLeft": self.dimple_left(),
            "mouthStretchLeft": self.stretch_left(),
            "mouthPressLeft": self.press_left(),
            "mouthLowerDownLeft": self.lower_down_left(),
            "mouthUpperUpLeft": self.upper_up_left(),
            "cheekSquintLeft": self.cheek_squint_left(),
            "eyeBlinkLeft": self.blink_left(upper_lid, lower_lid),
        }
        upper_face = UpperFaceShapes(self.v, self.tongue, eye_left_loop)
        one_sided |= upper_face.left_shapes()
        shapes = {
            "jawOpen": self.jaw_open(),
            "jawForward": self.jaw_forward(),
            "mouthClose": self.mouth_close(),
            "mouthFunnel": self.funnel(),
            "mouthPucker": self.pucker(),
            "mouthRollLower": self.roll_lower(),
            "mouthRollUpper": self.roll_upper(),
            "mouthShrugLower": self.shrug_lower(),
            "mouthShrugUpper": self.shrug_upper(),
            "cheekPuff": self.cheek_puff(),
            "tongueOut": self.tongue_out(),
            "browInnerUp": (inner := upper_face.brow_inner_up_half()) + self.mirrored(inner),
            **one_sided,
        }
        for name, field in one_sided.items():
            twin = name.replace("Left", "Right")
            shapes[twin] = self.mirrored(field)
        # symmetric shapes made exactly symmetric (fields built from symmetric geometry already are, up to rounding)
        for name in ("jawOpen", "jawForward", "mouthClose", "mouthFunnel", "mouthPucker", "mouthRollLower",
                     "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "cheekPuff", "tongueOut",
                     "browInnerUp"):  # fmt: skip
            shapes[name] = 0.5 * (shapes[name] + self.mirrored(shapes[name]))
        return np.stack([shapes[name] for name in CHANNELS]).astype(np.float32)
