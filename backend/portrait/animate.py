"""One picture, animated: per frame, the fitted face deformed by the curves (any of the face
model's shapes, by name), the warp mesh moved, the picture warped through it, and the mouth's
inside painted where the lips part.

Only what moves is drawn again: the window around the triangles whose corners moved (plus
everything that overlaps it, for the depth order); every other pixel is the picture's own. So
the frame at rest *is* the picture, and a frame costs what its moving part costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from steadytalk_shared.schema import CHANNELS

from ..face.landmarks import NUM_MESH_POINTS
from . import raster
from .eyes import EyeLayer
from .locate import FittedFace
from .mesh import EYES, GAP, OUTSIDE, MeshConfig, build_mesh, eye_points, mouth_split
from .mouth import MouthConfig, MouthInterior, estimate_colours


@dataclass(frozen=True)
class AnimatorConfig:
    mesh: MeshConfig = field(default_factory=MeshConfig)
    mouth: MouthConfig = field(default_factory=MouthConfig)
    # A driver that moved less than this (pixels) counts as still: a frame whose curves are
    # all but zero is the picture, exactly.
    still_pixels: float = 0.02
    # Hidden layers sit this far behind the face (times the face height, in depth pixels), so
    # the depth test puts lids over eyes and lips over the mouth's inside.
    layer_depth: float = 0.03
    # Triangles drawn more than this many times their size in the picture are clamped at their
    # edges (see ``raster.sample``).
    max_magnification: float = 3.0
    # Head rotations turn about this point of the face model (metres: behind the jaw, in the
    # neck), as a head turns on the neck.
    head_pivot: tuple[float, float, float] = (0.0, -0.11, -0.08)


def head_rotation(angles: np.ndarray) -> np.ndarray:
    """(3, 3) rotation in the face model's axes (X to the character's left, Y up, Z out of the
    face) for ``angles`` = [yaw, pitch, roll] in radians, the head track of schema 2 (issue 17):
    R = R_Y(yaw) R_X(pitch) R_Z(roll), right-handed, so yaw > 0 turns the head to the
    character's left, pitch > 0 tips it down, roll > 0 tilts it toward their right shoulder."""
    yaw, pitch, roll = (float(a) for a in angles)
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_yaw @ r_pitch @ r_roll


class PortraitAnimator:
    """Frames of one fitted picture: ``frame(coefficients, head, gaze)``."""

    def __init__(self, photo: np.ndarray, face: FittedFace, config: AnimatorConfig | None = None) -> None:
        self.config = config = config or AnimatorConfig()
        self.photo = np.ascontiguousarray(photo)
        self.height, self.width = photo.shape[:2]
        model = self.model = face.model
        self.linear = face.pose.scale * face.pose.rotation  # model metres -> pixels
        self.translation = face.pose.translation
        self.rest = model.vertices.astype(np.float64)
        self.deltas = model.deltas.astype(np.float64).reshape(len(model.shape_names), -1)
        # Curves come in the schema's order; the model's shapes are matched by name, so a model
        # with more (or fewer) shapes than the schema needs no change here.
        self.shape_columns = np.array([CHANNELS.index(n) if n in CHANNELS else -1 for n in model.shape_names])
        self.pivot = np.array(config.head_pivot)

        projected = self._project(self.rest)
        correction = np.zeros((model.num_vertices, 2))
        correction[:NUM_MESH_POINTS] = face.landmarks[:NUM_MESH_POINTS, :2] - projected[:NUM_MESH_POINTS, :2]
        correction[NUM_MESH_POINTS:] = correction[model.regions.mouth_hole].mean(axis=0)
        self.correction = correction
        rest_xy = projected[:, :2] + correction
        self.face_height = face.height_pixels
        self.depth_step = config.layer_depth * self.face_height

        self.rest_face = projected.copy()
        self.rest_face[:, :2] = rest_xy
        eye_model, eye_anchor, _ = eye_points(model, config.mesh.eye_margin)
        eye_xy = self._project(eye_model)[:, :2] + correction[eye_anchor]
        split = mouth_split(self.photo, rest_xy)
        self.mesh = build_mesh(model, rest_xy, eye_xy, self.width, self.height, split, config.mesh)
        self.rest_drivers = self.drivers(np.zeros(len(CHANNELS)))
        layer_offset = np.array([0.0, -1.0, -1.0, -2.0, 0.0])[self.mesh.copy_layer] * self.depth_step
        self.copy_offset = layer_offset
        self.outside_copy = self.mesh.copy_layer == OUTSIDE
        self.source_area = raster.area(self.mesh.copy_source[self.mesh.triangles].astype(np.float64))
        # Pixel positions (identity maps for the warp); a window's maps start from these.
        self._grid_y, self._grid_x = (g.astype(np.float32) for g in np.mgrid[: self.height, : self.width])
        colours = estimate_colours(self.photo, face.landmarks, [model.regions.eye_left, model.regions.eye_right])
        self.interior = MouthInterior(model, colours, self.face_height, config.mouth)
        self.interior_correction = self.interior.corrections(correction)
        self.eyes = EyeLayer(self.photo, face, rest_xy)

    # -- geometry --------------------------------------------------------------------------
    def _project(self, points: np.ndarray) -> np.ndarray:
        """Model points -> (column, row, nearness) in video pixels (before the landmark fit's
        correction)."""
        image = points @ self.linear.T + self.translation
        image[:, 2] *= -1.0  # image depth grows away from the camera; nearness toward it
        return image

    def _turn(self, points: np.ndarray, rotation: np.ndarray | None) -> np.ndarray:
        return points if rotation is None else (points - self.pivot) @ rotation.T + self.pivot

    def model_coefficients(self, coefficients: np.ndarray) -> np.ndarray:
        """Schema-order coefficients -> the model's shape order (0 for shapes the schema lacks)."""
        c = np.asarray(coefficients, dtype=np.float64)
        return np.where(self.shape_columns >= 0, c[np.maximum(self.shape_columns, 0)], 0.0)

    def posed_model(self, coefficients: np.ndarray) -> np.ndarray:
        """(V, 3) model vertices for schema-order coefficients, before head motion."""
        c = self.model_coefficients(coefficients)
        active = np.flatnonzero(c)  # most shapes are at rest in any frame
        # einsum, not a BLAS product: a multithreaded gemv this small costs more than it computes.
        flat = self.rest.reshape(-1) + np.einsum("s,sk->k", c[active], self.deltas[active])
        return flat.reshape(self.rest.shape)

    def drivers(self, coefficients: np.ndarray, head: np.ndarray | None = None) -> np.ndarray:
        """(D, 3) every driver point this frame: column, row, nearness."""
        d = self.mesh.drivers
        rotation = None if head is None or not np.any(head) else head_rotation(head)
        posed = self._turn(self.posed_model(coefficients), rotation)
        face = self._project(posed)
        face[:, :2] += self.correction
        eyes = self._project(self._turn(d.eye_model, rotation))
        eyes[:, :2] += self.correction[d.eye_anchor]
        rest_face = self.rest_face
        mids = np.empty((len(d.mid_rest), 3))
        mids[:, :2] = d.mid_rest + (face[d.mid_lip, :2] - rest_face[d.mid_lip, :2])
        mids[:, 2] = face[d.mid_lip, 2]
        ring = np.zeros((len(d.ring_rest), 3))
        ring[:, :2] = d.ring_rest
        if rotation is not None:
            rigid = self._project(self._turn(self.rest[d.ring_vertex], rotation))[:, :2]
            ring[:, :2] += d.ring_follow[:, None] * (rigid - self._project(self.rest[d.ring_vertex])[:, :2])
        border = np.zeros((len(d.border), 3))
        border[:, :2] = d.border
        return np.vstack([face, eyes, mids, ring, border])

    # -- frames ----------------------------------------------------------------------------
    def frame(
        self, coefficients: np.ndarray, head: np.ndarray | None = None, gaze: np.ndarray | None = None
    ) -> np.ndarray:
        """(H, W, 3) uint8: the picture with the face in ``coefficients`` (schema order, [0, 1]),
        the head turned by ``head`` (yaw, pitch, roll; radians) and the eyes looking ``gaze``
        ((2, 2): per eye, left then right, the iris offset (toward the character's left, up)
        in shares of the eye's width)."""
        drivers = self.drivers(coefficients, head)
        source, eyes_moved = self.eyes.source(gaze)
        moved = np.abs(drivers[:, :2] - self.rest_drivers[:, :2]).max(axis=1) > self.config.still_pixels
        copy_moved = moved[self.mesh.copy_driver]
        if eyes_moved:
            copy_moved |= self.mesh.copy_layer == EYES
        changed = copy_moved[self.mesh.triangles].any(axis=1)
        out = self.photo.copy()
        if not changed.any():
            return out
        window = self._window(drivers, changed)
        self._draw(out, source, drivers, changed, coefficients, head, window)
        return out

    def _window(self, drivers: np.ndarray, changed: np.ndarray) -> tuple[int, int, int, int]:
        corners = self.mesh.copy_driver[self.mesh.triangles[changed]].ravel()
        both = np.vstack([drivers[corners, :2], self.rest_drivers[corners, :2]])
        x0, y0 = np.floor(both.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(both.max(axis=0)).astype(int) + 2
        return max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)

    def _draw(self, out, source, drivers, changed, coefficients, head, window) -> None:
        """Redraw ``window``: every triangle in it, far to near (so unchanged triangles still
        cover changed ones behind them), but only the pixels of changed triangles are sampled
        (the others show the picture where it is: they are the picture)."""
        import cv2

        x0, y0, x1, y1 = window
        shape = (y1 - y0, x1 - x0)
        screen = drivers[self.mesh.copy_driver]
        xy = screen[:, :2] - np.array([x0, y0], dtype=np.float64)
        nearness = screen[:, 2] + self.copy_offset
        nearness[self.outside_copy] = -1e6  # behind everything: the face always wins
        triangles = self.mesh.triangles
        corners = xy[triangles]
        here = np.nonzero(raster.in_window(corners, shape))[0]
        maps, usable = raster.barycentric_maps(corners[here])
        depth = nearness[triangles[here]].mean(axis=1)
        moved = changed[here]
        # An unchanged triangle behind every changed one needs no drawing: drawn first, it would
        # only be covered or show what the picture already shows there.
        needed = usable & (moved | (depth > depth[moved].min()))
        drawn = np.nonzero(needed)[0]
        ids = raster.fill_ids(corners[here], drawn[np.argsort(depth[drawn], kind="stable")], shape)
        flat = ids.ravel()
        pixels = np.nonzero(flat >= 0)[0]
        pixels = pixels[moved[flat[pixels]]]
        sources = self.mesh.copy_source[triangles[here]].astype(np.float64)
        # A triangle magnified many times (a sliver of texture opened up, as the mouth's halves
        # when the lips part) must not be extended past its edges: a pixel beyond reads far away.
        magnified = raster.area(corners[here]) > self.config.max_magnification * self.source_area[here] + 1.0
        texture = raster.sample(ids, maps, sources, pixels, clamp=magnified)
        gap = self.mesh.triangle_layer[here][flat[pixels]] == GAP
        textured = pixels[~gap]
        map_x = np.ascontiguousarray(self._grid_x[y0:y1, x0:x1])
        map_y = np.ascontiguousarray(self._grid_y[y0:y1, x0:x1])
        map_x.ravel()[textured] = texture[~gap, 0] - 0.5
        map_y.ravel()[textured] = texture[~gap, 1] - 0.5
        warped = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = np.zeros(shape, dtype=bool)
        mask.ravel()[textured] = True
        region = out[y0:y1, x0:x1]
        np.copyto(region, warped, where=mask[..., None])
        if gap.any():
            opening = np.zeros(shape, dtype=bool)
            opening.ravel()[pixels[gap]] = True
            self._paint_mouth(region, opening, drivers, coefficients, head, (x0, y0))

    def _paint_mouth(self, region, opening, drivers, coefficients, head, origin) -> None:
        """Paint the mouth's inside into ``opening`` (pixels of ``region`` where the gap is the
        nearest layer), blended by how much of each pixel the gap covers: an opening thinner than
        a pixel (lips just parting) shows only that share, and the lips' edges are anti-aliased."""
        import cv2

        rotation = None if head is None or not np.any(head) else head_rotation(head)
        points = self._turn(self.interior.model_points(self.model_coefficients(coefficients)), rotation)
        screen = self._project(points)
        screen[:, :2] += self.interior_correction - np.asarray(origin, dtype=np.float64)
        rows, cols = np.nonzero(opening)
        pad = 3
        r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, opening.shape[0])
        c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, opening.shape[1])
        local = opening[r0:r1, c0:c1]
        screen[:, 0] -= c0
        screen[:, 1] -= r0
        inside = self.interior.paint(screen, local)
        outline = drivers[self.mesh.gap_outline, :2] - np.array([origin[0] + c0, origin[1] + r0]) - 0.5
        # The share of each pixel inside the gap, from a fill at 4x4 samples per pixel.
        fine = np.zeros((local.shape[0] * 4, local.shape[1] * 4), dtype=np.uint8)
        cv2.fillPoly(fine, [np.round((outline + 0.5) * 4 * 16 - 0.5 * 16).astype(np.int32)], 255, shift=4)
        coverage = cv2.resize(fine, (local.shape[1], local.shape[0]), interpolation=cv2.INTER_AREA)
        near = cv2.dilate(local.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        alpha = np.where(near, coverage / 255.0, 0.0)[..., None]
        patch = region[r0:r1, c0:c1].astype(np.float64)
        region[r0:r1, c0:c1] = np.clip(alpha * inside + (1.0 - alpha) * patch + 0.5, 0, 255).astype(np.uint8)
