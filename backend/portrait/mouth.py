"""The inside of the mouth, which the picture does not show: a dark cavity, the upper teeth
(fixed to the head), the lower teeth (riding on the jaw), and the tongue (moving as the face
model's tongue does, which ``tongueOut`` brings forward for th, dh and l), painted into the
lips' opening.

Everything is placed in the face model's space (metres) from the fitted lips and posed and
projected like the face, so it turns with the head and opens with the jaw, and the depth test
puts the tongue in front of the teeth only when it comes forward. Colours come from the
picture, so the mouth is lit like the face: the teeth from the picture's own teeth when the
mouth shows them, else from the whites of the eyes; cavity, gums and tongue from the lips; a
left/right light gradient from the cheeks; the lips' shadow on whatever is near them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steadytalk_shared.face_model import FaceModel

from ..face.landmarks import LIPS_INNER_LOWER, LIPS_INNER_UPPER, LIPS_OUTER_LOWER, LIPS_OUTER_UPPER
from . import raster
from .eyes import IRIS_POINTS

CAVITY, UPPER_TEETH, LOWER_TEETH, TONGUE = 0, 1, 2, 3
# Cheek points of the face mesh (character's left, then right): skin colour and light direction.
CHEEKS_LEFT, CHEEKS_RIGHT = (425, 411, 427, 280), (205, 187, 207, 50)


@dataclass(frozen=True)
class MouthConfig:
    columns: int = 24  # teeth strip resolution along the arch
    arch_share: float = 0.8  # the visible arch spans this share of the mouth's inner width
    visible_teeth: int = 8  # teeth across the visible arch (incisors, canines, premolars)
    # The upper incisors' edges sit this far below the upper lip's rest line at the middle
    # (metres); toward the mouth corners the arch turns away and rises under the lip.
    upper_edge_drop: float = 0.0035
    lower_edge_rise: float = 0.0015
    corner_rise: float = 0.002
    tooth_height: float = 0.011
    teeth_behind_lips: float = 0.003  # depth behind the inner lip line at the middle
    arch_depth: float = 0.012  # how much further back the arch is at its ends
    cavity_brightness: float = 0.22  # times the lip colour
    tongue_brightness: float = 0.9
    tongue_rows: int = 3
    tongue_width: float = 0.75  # share of the arch's half width
    tongue_rise: float = 0.004  # the crest's height above the lower teeth's edge (metres)
    tongue_behind: float = 0.007  # how far behind the lower teeth the tongue's front is
    tongue_lift: float = 0.3  # the tongue rises this much per unit it comes forward
    gum_share: float = 0.3  # the part of a tooth strip nearest its root shows gum
    shadow: float = 0.006  # lip shadow width on teeth and tongue, times the face height


@dataclass
class MouthColours:
    teeth: np.ndarray  # (3,) float RGB 0-255
    cavity: np.ndarray
    tongue: np.ndarray
    gum: np.ndarray
    light_slope: float  # brightness change across the mouth, character's right (-) to left (+)
    teeth_source: str  # "picture", "eyes" or "skin": where the teeth colour came from


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 4).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=2)
    return mask.astype(bool)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb) @ np.array([0.299, 0.587, 0.114])


def _bright_median(pixels: np.ndarray, share: float) -> np.ndarray | None:
    """Median colour of the brightest ``share`` of ``pixels`` (N, 3); None when too few."""
    if len(pixels) < 12:
        return None
    lum = _luminance(pixels)
    return np.median(pixels[lum >= np.quantile(lum, 1.0 - share)], axis=0)


def _sample(pixels: np.ndarray, points: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    cols = np.clip(points[:, 0].astype(int), 0, width - 1)
    rows = np.clip(points[:, 1].astype(int), 0, height - 1)
    return pixels[rows, cols]


def _eye_whites(pixels: np.ndarray, landmarks: np.ndarray, eye_loops: list[np.ndarray]) -> np.ndarray:
    """Pixels inside the eye openings and outside the irises (N, 3)."""
    shape = pixels.shape[:2]
    found = []
    for loop in eye_loops:
        mask = _polygon_mask(shape, landmarks[loop, :2])
        if len(landmarks) >= IRIS_POINTS + 10:
            for iris in landmarks[IRIS_POINTS : IRIS_POINTS + 10, :2].reshape(2, 5, 2):
                radius = 1.15 * np.linalg.norm(iris[1:] - iris[0], axis=1).mean()
                rows, cols = np.nonzero(mask)
                outside = (cols + 0.5 - iris[0, 0]) ** 2 + (rows + 0.5 - iris[0, 1]) ** 2 > radius**2
                mask[rows[~outside], cols[~outside]] = False
        found.append(pixels[mask])
    return np.vstack(found)


def estimate_colours(
    photo: np.ndarray, landmarks: np.ndarray, eye_loops: list[np.ndarray], config: MouthConfig | None = None
) -> MouthColours:
    """Colours of the unseen mouth from what the picture shows around it."""
    config = config or MouthConfig()
    pixels = photo.astype(np.float64)
    xy = landmarks[:, :2]
    outer = _polygon_mask(photo.shape[:2], np.vstack([xy[list(LIPS_OUTER_UPPER)], xy[list(LIPS_OUTER_LOWER)][::-1]]))
    opening = _polygon_mask(photo.shape[:2], np.vstack([xy[list(LIPS_INNER_UPPER)], xy[list(LIPS_INNER_LOWER)][::-1]]))
    lips_mask = outer & ~opening
    lips = np.median(pixels[lips_mask if lips_mask.sum() >= 12 else outer | opening], axis=0)
    left, right = _sample(pixels, xy[list(CHEEKS_LEFT)]), _sample(pixels, xy[list(CHEEKS_RIGHT)])
    skin = np.median(np.vstack([left, right]), axis=0)

    teeth, source = None, "picture"
    shown = pixels[opening]
    if len(shown) >= 30 and np.quantile(_luminance(shown), 0.9) > 1.15 * _luminance(skin):
        teeth = _bright_median(shown, 0.25)  # the picture shows its own teeth
    if teeth is None:
        sclera, source = _bright_median(_eye_whites(pixels, landmarks, eye_loops), 0.4), "eyes"
        if sclera is not None and _luminance(sclera) > 0.8 * _luminance(skin):
            teeth = 0.92 * sclera
    if teeth is None:  # eyes too small or too dark to measure: a desaturated skin highlight
        highlight, source = np.max(np.vstack([left, right]), axis=0), "skin"
        teeth = 0.5 * highlight.mean() + 0.5 * highlight
    lum_left, lum_right = float(np.median(_luminance(left))), float(np.median(_luminance(right)))
    slope = float(np.clip((lum_left - lum_right) / max(lum_left + lum_right, 1.0), -0.4, 0.4))
    return MouthColours(
        teeth=np.clip(teeth, 0, 255),
        cavity=np.clip(lips * config.cavity_brightness, 0, 255),
        tongue=np.clip(lips * np.array([1.0, 0.8, 0.8]) * config.tongue_brightness, 0, 255),
        gum=np.clip(lips * 0.85, 0, 255),
        light_slope=slope,
        teeth_source=source,
    )


def _interpolation_weights(knots: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(Q, K) weights that linearly interpolate values given at ``knots`` (any order) at ``queries``."""
    order = np.argsort(knots)
    sorted_knots = knots[order]
    weights = np.zeros((len(queries), len(knots)))
    for q, x in enumerate(np.clip(queries, sorted_knots[0], sorted_knots[-1])):
        hi = int(np.clip(np.searchsorted(sorted_knots, x), 1, len(knots) - 1))
        lo = hi - 1
        t = (x - sorted_knots[lo]) / max(sorted_knots[hi] - sorted_knots[lo], 1e-12)
        weights[q, order[lo]], weights[q, order[hi]] = 1.0 - t, t
    return weights


def _strip(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    i = np.arange(len(a) - 1)
    return np.vstack([np.stack([a[i], a[i + 1], b[i + 1]], 1), np.stack([a[i], b[i + 1], b[i]], 1)])


class MouthInterior:
    """Teeth and tongue geometry of one fitted face, and the painter of the lips' opening.

    Points (model space): the upper teeth strip (edge row, root row), the lower teeth strip
    (edge row, root row) and the tongue's upper surface, a dome behind the lower teeth (rows
    from its base to its crest). The face model's tongue is a flat sheet that a frontal camera
    sees edge-on; the dome takes its motion (the jaw's share and ``tongueOut``) instead."""

    def __init__(self, model: FaceModel, colours: MouthColours, face_height: float, config: MouthConfig | None = None):
        """``model``: the face model with the person's identity; ``face_height``: in video pixels."""
        self.config = config = config or MouthConfig()
        self.colours = colours
        self.shadow_pixels = max(1.0, config.shadow * face_height)
        rest = model.vertices.astype(np.float64)
        self.upper, self.lower = np.array(LIPS_INNER_UPPER), np.array(LIPS_INNER_LOWER)
        corners = rest[[self.upper[0], self.upper[-1]]]
        centre_x = 0.5 * (corners[0, 0] + corners[1, 0])
        half = 0.5 * config.arch_share * abs(corners[1, 0] - corners[0, 0])
        along = np.linspace(-1.0, 1.0, config.columns + 1)  # -1: character's right, +1: left
        xs = centre_x + half * along
        self.upper_weights = _interpolation_weights(rest[self.upper, 0], xs)  # (J, 11)
        self.lower_weights = _interpolation_weights(rest[self.lower, 0], xs)
        bend = along**2
        back = np.zeros((len(along), 3))
        back[:, 2] = config.teeth_behind_lips + config.arch_depth * bend
        edge_up = self.upper_weights @ rest[self.upper] - back
        edge_up[:, 1] += -config.upper_edge_drop * (1 - bend) + config.corner_rise * bend
        edge_low = self.lower_weights @ rest[self.lower] - back
        edge_low[:, 1] += config.lower_edge_rise * (1 - bend) - config.corner_rise * bend
        edge_low[:, 2] -= 0.001  # the lower incisors close behind the upper ones
        rise = np.array([0.0, config.tooth_height, 0.0])
        # The tongue's crest rises above the lower teeth's edge in the middle, behind them.
        rows = np.linspace(0.0, 1.0, config.tongue_rows)[:, None]
        crest = np.clip(1.0 - (along / config.tongue_width) ** 2, 0.0, None) ** 0.5
        base = edge_low - np.array([0.0, config.tongue_rise * 0.5, config.tongue_behind])
        tongue = (
            base[None]
            + rows[..., None]
            * np.stack([np.zeros_like(along), config.tongue_rise * 1.5 * crest, np.full_like(along, 0.004)], 1)[None]
        )
        self.num_columns = n = len(along)
        self.rest_points = np.vstack([edge_up, edge_up + rise, edge_low, edge_low - rise, tongue.reshape(-1, 3)])
        u = (along + 1.0) / 2.0
        zeros, ones = np.zeros(n), np.ones(n)
        parts = [(u, zeros, UPPER_TEETH), (u, ones, UPPER_TEETH), (u, zeros, LOWER_TEETH), (u, ones, LOWER_TEETH)]
        # Tongue shading: lit toward its crest and its middle, dark at its base and sides.
        parts += [(u, (0.6 + 0.4 * float(r)) * (0.7 + 0.3 * crest), TONGUE) for r in rows[:, 0]]
        self.attributes = np.vstack([np.stack([a, b], 1) for a, b, _ in parts])  # (N, 2): u, v
        line = np.arange(n)
        strips = [_strip(line, line + n), _strip(line + 2 * n, line + 3 * n)]
        strips += [_strip(line + (4 + r) * n, line + (5 + r) * n) for r in range(config.tongue_rows - 1)]
        self.triangles = np.vstack(strips)
        point_material = np.concatenate([np.full(n, m) for _, _, m in parts])
        self.triangle_material = point_material[self.triangles[:, 0]]
        self.tongue_start = 4 * n
        # The lower teeth ride on the jaw alone (not on the lips' own shapes); the tongue moves
        # as the face model's tongue moves on average.
        self.jaw_shapes = [i for i, name in enumerate(model.shape_names) if name.startswith("jaw")]
        self.jaw_deltas = model.deltas[self.jaw_shapes][:, self.lower].astype(np.float64)  # (J, 11, 3)
        # The face model's tongue drops its tip as it comes out, so that a frontal camera sees
        # its flat upper side; the dome has a front already, so from shapes other than the jaw's
        # it takes only the forward motion, and rises with it toward the upper teeth (th, l).
        tongue = model.deltas[:, model.regions.tongue].astype(np.float64).mean(axis=1)  # (S, 3)
        own = np.array([not name.startswith("jaw") for name in model.shape_names])
        tongue[own, 1] = config.tongue_lift * np.maximum(tongue[own, 2], 0.0)
        self.tongue_deltas = tongue

    def model_points(self, coefficients: np.ndarray) -> np.ndarray:
        """Teeth and tongue this frame, model space (metres, before head motion): (N, 3).

        ``coefficients``: (S,) in the model's shape order."""
        n = self.num_columns
        jaw = self.lower_weights @ np.tensordot(coefficients[self.jaw_shapes], self.jaw_deltas, axes=1)
        points = self.rest_points.copy()
        points[2 * n : 4 * n] += np.vstack([jaw, jaw])
        points[self.tongue_start :] += coefficients @ self.tongue_deltas
        return points

    def corrections(self, face: np.ndarray) -> np.ndarray:
        """(N, 2) the picture-fit corrections of the teeth and tongue (pixels), from those of the
        face vertices they sit behind (``face``: (V, 2))."""
        up, low = self.upper_weights @ face[self.upper], self.lower_weights @ face[self.lower]
        rows = self.config.tongue_rows
        return np.vstack([up, up, low, low, *([low] * rows)])

    def paint(self, screen: np.ndarray, opening: np.ndarray) -> np.ndarray:
        """The mouth's inside over a window: (h, w, 3) float RGB 0-255.

        ``screen``: (N, 3) this frame's teeth and tongue in window pixels (column, row, nearness);
        ``opening``: (h, w) bool, the lips' opening in the window (the lips shadow what is near them)."""
        import cv2

        height, width = opening.shape
        c = self.colours
        corners = screen[self.triangles, :2]
        maps, usable = raster.barycentric_maps(corners)
        drawn = np.nonzero(usable & raster.in_window(corners, (height, width)))[0]
        depth = screen[self.triangles[drawn], 2].mean(axis=1)
        ids = raster.fill_ids(corners, drawn[np.argsort(depth, kind="stable")], (height, width))
        pixels = np.nonzero(ids.ravel() >= 0)[0]
        rows, cols = np.divmod(pixels, width)
        values = raster.sample(ids, maps, self.attributes[self.triangles], pixels, clamp=np.ones(len(maps), bool))
        material = np.full((height, width), CAVITY, dtype=np.int64)
        material[rows, cols] = self.triangle_material[ids[rows, cols]]
        u = np.zeros((height, width))
        v = np.zeros((height, width))
        u[rows, cols], v[rows, cols] = values[:, 0], values[:, 1]
        out = np.empty((height, width, 3))
        out[:] = c.cavity
        teeth = (material == UPPER_TEETH) | (material == LOWER_TEETH)
        if teeth.any():
            uu, vv = u[teeth], v[teeth]
            phase = (uu * self.config.visible_teeth) % 1.0
            separation = 1.0 - 0.3 * np.exp(-((np.minimum(phase, 1.0 - phase) / 0.07) ** 2))
            arch = 1.0 - 0.75 * np.abs(2.0 * uu - 1.0) ** 1.5
            light = 1.0 + c.light_slope * (2.0 * uu - 1.0)
            lower = np.where(material[teeth] == LOWER_TEETH, 0.85, 1.0)
            colour = c.teeth[None] * (separation * arch * light * lower)[:, None]
            gum = np.clip((vv - (1.0 - self.config.gum_share)) / self.config.gum_share, 0.0, 1.0)[:, None]
            out[teeth] = (1.0 - gum) * colour + gum * c.gum[None] * (arch * light)[:, None]
        tongue = material == TONGUE
        if tongue.any():
            out[tongue] = c.tongue[None] * v[tongue][:, None]
        # The lips shadow the inside near them: light falls off toward the opening's edges.
        lit = cv2.GaussianBlur(opening.astype(np.float32), (0, 0), self.shadow_pixels)
        solid = material != CAVITY
        out[solid] *= (0.45 + 0.55 * np.clip(lit[solid], 0.0, 1.0))[:, None]
        return out
