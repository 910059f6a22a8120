"""Fit the canonical face model to face-mesh landmarks: head pose, identity, expression.

Model: ``observed ≈ s R (V0 + identity + B c) + t`` over the 468 mesh points, with a
similarity pose per frame (mediapipe's depth is on the x scale, so a scaled orthographic
camera fits its landmarks), one identity offset per video, and expression coefficients
``c`` in [0, 1] (schema order). Alternates a weighted Umeyama pose (rigid points weigh most)
with bounded linear least squares for ``c``; the identity is the per-vertex median of what
pose and expression leave unexplained over many frames (robust to blinks and odd frames).

The eye-look coefficients are not least-squares unknowns: the mesh has no eyeball, and the lids
alone would confuse a look down with a blink. They come from mediapipe's iris landmarks
(``eyes.iris_gaze``, relative to the person's rest gaze, through ``upper_face.look_channels``)
and their lid motion is taken out before the other shapes are solved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import lsq_linear

from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.upper_face import LOOK_CHANNELS, look_channels

from .eyes import NUM_WITH_IRISES, iris_gaze
from .landmarks import NUM_MESH_POINTS, lip_gap_ratio

EYE_OUTER_LEFT, EYE_OUTER_RIGHT = 263, 33


@dataclass(frozen=True)
class FitConfig:
    iterations: int = 3
    # Points no blendshape moves more than this (metres) drive the pose at full weight.
    rigid_motion: float = 1e-4
    nonrigid_weight: float = 0.05
    # Ridge on the coefficients: several ARKit shapes are nearly collinear on 468 points
    # (press vs roll, funnel vs pucker); a little damping keeps the split stable frame to frame.
    # In squared metres: a localized shape at 1.0 carries ~1e-3 of data term, so 1e-6 barely shrinks.
    ridge: float = 1e-6


@dataclass
class Pose:
    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def invert(self, points: np.ndarray) -> np.ndarray:
        return (points - self.translation) @ self.rotation / self.scale


@dataclass
class FrameFit:
    pose: Pose
    coefficients: np.ndarray  # (C,)
    error: float  # mean landmark distance in the image plane / inter-ocular distance
    gaze: np.ndarray | None = None  # (2,) [yaw, pitch] radians from the rest gaze (no irises: None)


def weighted_similarity(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> Pose:
    """Least-squares s, R, t with ``target ≈ s R source + t`` (Umeyama 1991, weighted)."""
    w = weights / weights.sum()
    mu_s, mu_t = w @ source, w @ target
    a, b = source - mu_s, target - mu_t
    covariance = (b * w[:, None]).T @ a
    u, sigma, vt = np.linalg.svd(covariance)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sigma) @ d) / (w @ np.sum(a * a, axis=1)))
    return Pose(scale, rotation, mu_t - scale * rotation @ mu_s)


class Fitter:
    def __init__(self, model: FaceModel, config: FitConfig | None = None) -> None:
        self.model = model
        self.config = config or FitConfig()
        self.neutral = model.vertices[:NUM_MESH_POINTS].astype(np.float64)
        self.basis = model.deltas[:, :NUM_MESH_POINTS].astype(np.float64)  # (C, N, 3)
        motion = np.abs(self.basis).max(axis=(0, 2))
        self.weights = np.where(motion < self.config.rigid_motion, 1.0, self.config.nonrigid_weight)
        names = model.shape_names
        self.look = np.array([i for i, n in enumerate(names) if n in LOOK_CHANNELS], dtype=int)
        self.free = np.array([i for i, n in enumerate(names) if n not in LOOK_CHANNELS], dtype=int)
        self.rest_gaze = np.zeros(2)  # the person's straight-ahead iris angles (``track`` sets it)
        # Bounded least squares on the normal equations: with G = D^T D + ridge I = L L^T,
        # ||D c - r||^2 + ridge ||c||^2 = ||L^T c - L^-1 D^T r||^2 + const, a C x C problem
        # with the same minimizer instead of 1404 x C.
        self._design = self.basis[self.free].reshape(len(self.free), -1).T  # (3N, C free)
        gram = self._design.T @ self._design + self.config.ridge * np.eye(self._design.shape[1])
        self._cholesky = np.linalg.cholesky(gram)  # L
        self._reduced = self._cholesky.T

    def shape(self, coefficients: np.ndarray, identity: np.ndarray | None = None) -> np.ndarray:
        base = self.neutral if identity is None else self.neutral + identity
        return base + np.tensordot(coefficients, self.basis, axes=1)

    def look_coefficients(self, gaze: np.ndarray) -> np.ndarray:
        """(len(look),) eyeLook values in the model's order for gaze from the rest gaze."""
        values = look_channels(gaze)
        return np.array([float(values[self.model.shape_names[i]]) for i in self.look])

    def fit_frame(
        self, observed: np.ndarray, identity: np.ndarray | None = None, start: np.ndarray | None = None
    ) -> FrameFit:
        """Pose and coefficients for one frame of (>= 468, 3) landmarks (478: the irises give
        the eye look)."""
        irises = len(observed) >= NUM_WITH_IRISES and len(self.look) > 0
        coefficients = np.zeros(len(self.basis)) if start is None else start.copy()
        base = self.neutral if identity is None else self.neutral + identity
        mesh = observed[:NUM_MESH_POINTS]
        gaze = None
        for _ in range(self.config.iterations):
            pose = weighted_similarity(self.shape(coefficients, identity), mesh, self.weights)
            residual = pose.invert(mesh) - base
            if irises:
                gaze = iris_gaze(pose.invert(observed[:NUM_WITH_IRISES])) - self.rest_gaze
                coefficients[self.look] = self.look_coefficients(gaze)
                residual = residual - np.tensordot(coefficients[self.look], self.basis[self.look], axes=1)
            else:
                coefficients[self.look] = 0.0
            target = np.linalg.solve(self._cholesky, self._design.T @ residual.ravel())
            # bvls can overshoot its bounds by rounding (-3e-17); the schema promises [0, 1].
            solved = lsq_linear(self._reduced, target, bounds=(0.0, 1.0), method="bvls").x
            coefficients[self.free] = np.clip(solved, 0.0, 1.0)
        pose = weighted_similarity(self.shape(coefficients, identity), mesh, self.weights)
        error = self.reprojection_error(mesh, pose, coefficients, identity)
        return FrameFit(pose, coefficients, error, gaze)

    def reprojection_error(
        self, observed: np.ndarray, pose: Pose, coefficients: np.ndarray, identity: np.ndarray | None
    ) -> float:
        fitted = pose.apply(self.shape(coefficients, identity))
        interocular = np.linalg.norm(observed[EYE_OUTER_LEFT, :2] - observed[EYE_OUTER_RIGHT, :2])
        return float(np.mean(np.linalg.norm(fitted[:, :2] - observed[:NUM_MESH_POINTS, :2], axis=1)) / interocular)

    def fit_identity(self, frames: list[np.ndarray], closed_fraction: float = 0.2) -> np.ndarray:
        """The person's rest face as an offset from the canonical neutral.

        From the frames with the most closed lips (rest), with expression held at zero, so
        that the person's rest maps to all-zero coefficients: the per-vertex median of the
        pose-normalized landmarks minus the neutral (robust to blinks and odd frames)."""
        gaps = lip_gap_ratio(np.stack(frames))
        rest = [f for f, g in zip(frames, gaps, strict=True) if g <= np.quantile(gaps, closed_fraction)]
        zero = np.zeros(len(self.basis))
        offsets = []
        for observed in rest:
            pose = weighted_similarity(self.neutral, observed[:NUM_MESH_POINTS], self.weights)
            offsets.append(pose.invert(observed[:NUM_MESH_POINTS]) - self.shape(zero))
        identity = np.median(np.stack(offsets), axis=0)
        return identity - identity.mean(axis=0)  # no net translation: that belongs to the pose

    def track(
        self,
        frames: list[np.ndarray],
        identity_frames: int = 200,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, list[FrameFit]]:
        """Identity (and rest gaze) from a spread of frames, then every frame fitted with it
        (warm-started)."""
        step = max(1, len(frames) // identity_frames)
        identity = self.fit_identity(frames[::step])
        self.rest_gaze = self.fit_rest_gaze(frames[::step], identity)
        fits, previous = [], None
        for index, observed in enumerate(frames):
            fit = self.fit_frame(observed, identity, start=previous)
            fits.append(fit)
            previous = fit.coefficients
            if progress is not None:
                progress(index + 1, len(frames))
        return identity, fits

    def fit_rest_gaze(self, frames: list[np.ndarray], identity: np.ndarray) -> np.ndarray:
        """The person's straight-ahead gaze: the median iris angles over ``frames`` (a talking
        head looks at the camera most of the time; mediapipe's iris sits a little off the
        corners' midpoint even then). Zeros without irises."""
        rest = self.neutral + identity
        angles = [
            iris_gaze(weighted_similarity(rest, f[:NUM_MESH_POINTS], self.weights).invert(f[:NUM_WITH_IRISES]))
            for f in frames
            if len(f) >= NUM_WITH_IRISES
        ]
        return np.median(np.array(angles), axis=0) if angles else np.zeros(2)


def identity_model(model: FaceModel, identity: np.ndarray) -> FaceModel:
    """The canonical model with a person's identity offset applied to its neutral shape.

    The tongue (after the 468 mesh points) moves with the inner lips, so it stays in the mouth."""
    vertices = model.vertices.astype(np.float64).copy()
    vertices[:NUM_MESH_POINTS] += identity
    inner = model.regions.mouth_hole
    vertices[NUM_MESH_POINTS:] += identity[inner].mean(axis=0)
    return replace(model, vertices=vertices.astype(np.float32))
