"""The upper face's ARKit blendshapes (schema v2): brows, eye look, squint, wide and nose sneer,
as analytic displacement fields on the neutral shape, built for the character's left like the
mouth shapes in ``shapes`` (the Right twins are mirrored there).

Sizes follow what tracking measures (``face.upper``) and what the performance models write
(``steadytalk_shared.upper_face``): a brow-up channel at 1 lifts its brow landmarks by
``FULL_RAISE_MM``, ``browDown*`` lowers the inner brow by ``FULL_LOWER_MM``. The 468-point mesh
has no eyeballs (the eyes are holes), so the eye-look shapes move what a real face moves when
the eye turns: the lids follow the eye (down: the upper lid drops; up: it lifts; in/out: the lid
skin slides a little with the cornea). Lid shapes taper to nothing at the eye corners, which
stay put (eye closure and brow height are measured against them).
"""

from __future__ import annotations

import numpy as np

from steadytalk_shared.upper_face import FULL_LOWER_MM, FULL_RAISE_MM

# mediapipe face-mesh points of the character's left brow (upper edge, then lower edge).
BROW_INNER_LEFT = (336, 296)
BROW_OUTER_LEFT = (334, 293, 300)
BROW_LOWER_EDGE_LEFT = (285, 295, 282, 283, 276)
EYE_INNER_LEFT, EYE_OUTER_LEFT = 362, 263
NOSE_ALA_LEFT = (327, 294, 358, 278, 279)


def _falloff(distance: np.ndarray, radius: float, core: float = 0.0) -> np.ndarray:
    """1 within ``core``, then a smooth compact bump reaching 0 at ``core + radius``."""
    t = np.clip((distance - core) / radius, 0.0, 1.0)
    return (1.0 - t * t) ** 2


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class UpperFaceShapes:
    """Left-side (and symmetric) upper-face fields (V, 3) on a neutral shape in metres."""

    def __init__(self, vertices: np.ndarray, tongue: np.ndarray, eye_left_loop: np.ndarray) -> None:
        self.v = vertices
        self.n = len(vertices)
        self.tongue = tongue
        centre = vertices[eye_left_loop].mean(0)
        self.eye_centre = centre
        self.upper_lid = eye_left_loop[vertices[eye_left_loop, 1] >= centre[1]]
        self.lower_lid = eye_left_loop[vertices[eye_left_loop, 1] < centre[1]]
        self.eye_top = float(vertices[self.upper_lid, 1].max())
        self.brow_low = float(vertices[list(BROW_LOWER_EDGE_LEFT), 1].mean())
        inner_x, outer_x = vertices[EYE_INNER_LEFT, 0], vertices[EYE_OUTER_LEFT, 0]
        # 0 at the eye corners, 1 over the middle of the eye, for the lids and the skin by them.
        across = np.clip((vertices[:, 0] - inner_x) / (outer_x - inner_x), 0.0, 1.0)
        self.lid_taper = (4.0 * across * (1.0 - across)) ** 0.7
        self.lid_taper[vertices[:, 0] < inner_x - 0.004] = 0.0  # the nose side of the other eye

    def _masked(self, weight: np.ndarray) -> np.ndarray:
        weight = np.asarray(weight, dtype=float).copy()
        weight[self.tongue] = 0.0
        return weight

    def _field(self, weight: np.ndarray, offset: tuple[float, float, float]) -> np.ndarray:
        return self._masked(weight)[:, None] * np.array(offset)

    def _lid(self, lid: np.ndarray, radius: float) -> np.ndarray:
        """Weight of the lid ``lid`` (vertex indices) and the skin on its side of the eye."""
        distance = np.min(np.linalg.norm(self.v[:, None] - self.v[None, lid], axis=-1), axis=1)
        upper = lid is self.upper_lid
        side = self.v[:, 1] >= self.eye_centre[1] - 1e-6 if upper else self.v[:, 1] < self.eye_centre[1] + 1e-6
        return _falloff(distance, radius) * side * self.lid_taper

    # eyes
    def eye_wide(self) -> np.ndarray:
        return self._field(self._lid(self.upper_lid, 0.010), (0.0, 0.0025, 0.0003)) + self._field(
            self._lid(self.lower_lid, 0.006), (0.0, -0.0005, 0.0)
        )

    def eye_squint(self) -> np.ndarray:
        return self._field(self._lid(self.lower_lid, 0.012), (0.0, 0.0020, 0.0004)) + self._field(
            self._lid(self.upper_lid, 0.006), (0.0, -0.0006, 0.0)
        )

    def eye_look_up(self) -> np.ndarray:
        return self._field(self._lid(self.upper_lid, 0.010), (0.0, 0.0015, 0.0)) + self._field(
            self._lid(self.lower_lid, 0.006), (0.0, 0.0008, 0.0)
        )

    def eye_look_down(self) -> np.ndarray:
        return self._field(self._lid(self.upper_lid, 0.010), (0.0, -0.0025, 0.0003)) + self._field(
            self._lid(self.lower_lid, 0.008), (0.0, -0.0010, 0.0)
        )

    def _eye_slide(self, dx: float) -> np.ndarray:
        """The lids and the skin about the eye slide with the cornea (no slide at the corners)."""
        weight = _falloff(np.linalg.norm(self.v - self.eye_centre, axis=1), 0.016, core=0.004) * self.lid_taper
        return self._field(weight, (dx, 0.0, 0.0))

    def eye_look_in(self) -> np.ndarray:
        return self._eye_slide(-0.0010)  # toward the nose: -X for the left eye

    def eye_look_out(self) -> np.ndarray:
        return self._eye_slide(0.0010)

    # brows
    def _brow_weight(self, points: tuple[int, ...], radius: float, core: float) -> np.ndarray:
        """Around the brow points: further up the forehead than down, nothing at the eye."""
        centre = self.v[list(points)].mean(0)
        rel = self.v - centre
        rel[:, 1] *= np.where(rel[:, 1] > 0, 0.55, 1.0)  # forehead skin rides along further up
        weight = _falloff(np.linalg.norm(rel, axis=1), radius, core)
        below = _smoothstep((self.v[:, 1] - self.eye_top - 0.002) / (self.brow_low - self.eye_top - 0.002))
        return weight * below

    def _normalized(self, field: np.ndarray, points: tuple[int, ...], millimetres: float) -> np.ndarray:
        """``field`` scaled so the mean vertical travel of ``points`` is ``millimetres``."""
        travel = float(np.abs(field[list(points), 1]).mean())
        return field * (millimetres / 1000.0 / travel)

    def brow_inner_up_half(self) -> np.ndarray:
        field = self._field(self._brow_weight(BROW_INNER_LEFT, 0.024, 0.006), (0.0, 1.0, 0.1))
        return self._normalized(field, BROW_INNER_LEFT, FULL_RAISE_MM)

    def brow_outer_up(self) -> np.ndarray:
        field = self._field(self._brow_weight(BROW_OUTER_LEFT, 0.022, 0.007), (0.0, 1.0, 0.0))
        return self._normalized(field, BROW_OUTER_LEFT, FULL_RAISE_MM)

    def brow_down(self) -> np.ndarray:
        """Corrugator and depressors: the brow lowered, most at its inner end, pulled toward the nose."""
        points = BROW_INNER_LEFT + BROW_OUTER_LEFT
        weight = self._brow_weight(points, 0.026, 0.010)
        inner_x, outer_x = self.v[BROW_INNER_LEFT[0], 0], self.v[BROW_OUTER_LEFT[-1], 0]
        inner_bias = np.clip(1.0 - 0.55 * (self.v[:, 0] - inner_x) / (outer_x - inner_x), 0.45, 1.0)
        field = self._field(weight * inner_bias, (0.0, -1.0, 0.0))
        field[:, 0] = -0.35 * weight * inner_bias * np.clip(1.0 - self.v[:, 0] / outer_x, 0.0, 1.0)
        field[self.tongue] = 0.0
        return self._normalized(field, BROW_INNER_LEFT, FULL_LOWER_MM)

    # nose
    def nose_sneer(self) -> np.ndarray:
        """The nostril wing and the skin beside the nose drawn up (levator labii alaeque nasi)."""
        centre = self.v[list(NOSE_ALA_LEFT)].mean(0)
        weight = _falloff(np.linalg.norm(self.v - centre, axis=1), 0.012, core=0.006)
        weight *= self.v[:, 0] > -0.002  # the left side (and the midline a little, below)
        weight *= _smoothstep((self.v[:, 1] - (centre[1] - 0.012)) / 0.008)  # not the lips
        return self._field(weight, (0.0005, 0.0030, -0.0005))

    def left_shapes(self) -> dict[str, np.ndarray]:
        """The one-sided shapes, for the character's left."""
        return {
            "browDownLeft": self.brow_down(),
            "browOuterUpLeft": self.brow_outer_up(),
            "eyeLookDownLeft": self.eye_look_down(),
            "eyeLookInLeft": self.eye_look_in(),
            "eyeLookOutLeft": self.eye_look_out(),
            "eyeLookUpLeft": self.eye_look_up(),
            "eyeSquintLeft": self.eye_squint(),
            "eyeWideLeft": self.eye_wide(),
            "noseSneerLeft": self.nose_sneer(),
        }
