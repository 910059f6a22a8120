"""Build the canonical face model: mediapipe's 468-point face-mesh topology with a neutral
shape, a clean triangulation, UVs, a small tongue, and the schema's 33 ARKit blendshapes.

    steadytalk face-model build [--video ../shared/data/video/grid_s1_train_300s.mp4]

Neutral shape: mediapipe landmarks of a real talking-head video, similarity-aligned, the
20% of frames with the most closed lips averaged, then made exactly left/right symmetric
through the mesh's mirror pairs. Units are metres (outer eye corners 9.5 cm apart); X to the
character's left, Y up, Z out of the face. Blendshapes are analytic displacement fields on
that shape; one-sided shapes are built for the left side and mirrored, so Left/Right are
exact mirror images. The result is written to ``shared/data/face_model.npz``.
"""

from __future__ import annotations

import collections
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from steadytalk_shared.face_model import DEFAULT_PATH, FACE_MODEL_VERSION, FaceModel, Regions
from steadytalk_shared.schema import CHANNELS

from .landmarks import MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT, lip_gap_ratio

# mediapipe face-mesh landmark indices (fixed by its topology).
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
EYE_OUTER_LEFT, EYE_OUTER_RIGHT = 263, 33
CHEEK_LEFT = 425
CHIN = 152
FOREHEAD = 10
EYE_CORNER_DISTANCE_M = 0.095


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


# -- neutral shape ----------------------------------------------------------------------------
def collect_landmarks(video: Path, config: BuildConfig) -> np.ndarray:
    """(N, 468, 3) landmarks (pixels) of the frames with exactly one face."""
    import av

    from .landmarks import NUM_MESH_POINTS, FaceLandmarker

    frames = []
    with av.open(str(video)) as container, FaceLandmarker() as landmarker:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= config.max_frames:
                break
            if index % config.frame_step:
                continue
            faces = landmarker.detect(frame.to_ndarray(format="rgb24"))
            if len(faces) == 1:
                frames.append(faces[0][:NUM_MESH_POINTS])
    if len(frames) < 20:
        raise RuntimeError(f"only {len(frames)} frames with one face in {video}")
    return np.array(frames)


def _similarity_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``source`` rotated, scaled and translated onto ``target`` (Umeyama)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / np.sum(a**2)
    return (a @ rotation) * scale + mu_t


def neutral_shape(landmarks: np.ndarray, config: BuildConfig) -> np.ndarray:
    """Mean closed-mouth shape in the canonical frame (metres, X left, Y up, Z forward)."""
    points = landmarks * np.array([1.0, -1.0, -1.0])  # image y down and z away -> Y up, Z forward
    reference = points[0]
    for _ in range(3):  # generalized Procrustes
        aligned = np.array([_similarity_align(p, reference) for p in points])
        reference = aligned.mean(0)
    gaps = lip_gap_ratio(aligned)
    closed = gaps <= np.quantile(gaps, config.closed_fraction)
    mean = aligned[closed].mean(0)
    mean *= EYE_CORNER_DISTANCE_M / np.linalg.norm(mean[EYE_OUTER_LEFT] - mean[EYE_OUTER_RIGHT])
    x_axis = mean[EYE_OUTER_LEFT] - mean[EYE_OUTER_RIGHT]
    x_axis /= np.linalg.norm(x_axis)
    y_axis = mean[FOREHEAD] - mean[CHIN]
    y_axis -= y_axis.dot(x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    frame = np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)])
    return (mean - 0.5 * (mean[EYE_OUTER_LEFT] + mean[EYE_OUTER_RIGHT])) @ frame.T


def mirror_pairs(points: np.ndarray) -> np.ndarray:
    """mirror[i] = the vertex that is i's reflection across X = 0 (a permutation, involution)."""
    reflected = points * np.array([-1.0, 1.0, 1.0])
    cost = np.linalg.norm(points[:, None] - reflected[None], axis=-1)
    _, mirror = linear_sum_assignment(cost)
    if not np.array_equal(mirror[mirror], np.arange(len(points))):
        raise RuntimeError("mirror matching is not an involution")
    return mirror


def symmetrize(points: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    out = 0.5 * (points + points[mirror] * np.array([-1.0, 1.0, 1.0]))
    on_plane = mirror == np.arange(len(points))
    out[on_plane, 0] = 0.0
    return out


# -- topology --------------------------------------------------------------------------------
def triangles_from_tesselation(edges: set[tuple[int, int]]) -> np.ndarray:
    """Faces of mediapipe's tesselation, from its edge list.

    Every face is a 3-cycle of edges; the edge graph has exactly two 3-cycles that are not
    faces, recognisable because each of their edges already borders two faces."""
    adjacency = collections.defaultdict(set)
    for a, b in edges:
        adjacency[a].add(b)
        adjacency[b].add(a)
    cycles = {tuple(sorted((a, b, c))) for a, b in edges for c in adjacency[a] & adjacency[b]}
    uses = collections.Counter(e for t in cycles for e in itertools.combinations(t, 2))
    faces = [t for t in cycles if not all(uses[e] == 3 for e in itertools.combinations(t, 2))]
    return np.array(sorted(faces), dtype=np.int32)


def orient(triangles: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Consistent winding across shared edges (BFS), then outward: normals toward +Z on average."""
    triangles = triangles.copy()
    by_edge = collections.defaultdict(list)
    for f, tri in enumerate(triangles):
        for e in itertools.combinations(sorted(tri), 2):
            by_edge[e].append(f)
    done = np.zeros(len(triangles), dtype=bool)
    for seed in range(len(triangles)):
        if done[seed]:
            continue
        done[seed] = True
        queue = [seed]
        while queue:
            f = queue.pop()
            a, b, c = triangles[f]
            for u, v in ((a, b), (b, c), (c, a)):
                for g in by_edge[tuple(sorted((u, v)))]:
                    if g == f or done[g]:
                        continue
                    ga, gb, gc = triangles[g]
                    directed = {(ga, gb), (gb, gc), (gc, ga)}
                    if (u, v) in directed:  # same direction on a shared edge: flip the neighbour
                        triangles[g] = triangles[g][::-1]
                    done[g] = True
                    queue.append(g)
    normals = np.cross(
        vertices[triangles[:, 1]] - vertices[triangles[:, 0]], vertices[triangles[:, 2]] - vertices[triangles[:, 0]]
    )
    if normals[:, 2].sum() < 0:
        triangles = triangles[:, ::-1].copy()
    return triangles


def add_tongue(vertices: np.ndarray, mouth_center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A small tongue blade (5 x 3 grid) hidden behind the closed lips: vertices and faces."""
    xs = np.linspace(-0.018, 0.018, 5)
    zs = np.linspace(-0.030, -0.008, 3)  # behind the lip line
    grid = np.array([[x, -0.003 - 8.0 * x * x, z] for z in zs for x in xs])  # edges 2.6 mm lower: arched
    tongue = grid + np.array([0.0, mouth_center[1], mouth_center[2]])
    base = len(vertices)
    faces = []
    for r in range(len(zs) - 1):
        for c in range(len(xs) - 1):
            i = base + r * len(xs) + c
            faces += [(i, i + 1, i + len(xs) + 1), (i, i + len(xs) + 1, i + len(xs))]
    return tongue, np.array(faces, dtype=np.int32)


# -- blendshapes -----------------------------------------------------------------------------
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
            **one_sided,
        }
        for name, field in one_sided.items():
            twin = name.replace("Left", "Right")
            shapes[twin] = self.mirrored(field)
        # symmetric shapes made exactly symmetric (fields built from symmetric geometry already are, up to rounding)
        for name in ("jawOpen", "jawForward", "mouthClose", "mouthFunnel", "mouthPucker", "mouthRollLower",
                     "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "cheekPuff", "tongueOut"):  # fmt: skip
            shapes[name] = 0.5 * (shapes[name] + self.mirrored(shapes[name]))
        return np.stack([shapes[name] for name in CHANNELS]).astype(np.float32)


# -- assembly ----------------------------------------------------------------------------------
def boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    uses = collections.Counter(tuple(sorted(e)) for t in triangles for e in itertools.combinations(t, 2))
    neighbours = collections.defaultdict(list)
    for (a, b), count in uses.items():
        if count == 1:
            neighbours[a].append(b)
            neighbours[b].append(a)
    loops, seen = [], set()
    for start in neighbours:
        if start in seen:
            continue
        loop, previous, current = [start], None, start
        seen.add(start)
        while True:
            following = [n for n in neighbours[current] if n != previous and n not in seen]
            if not following:
                break
            previous, current = current, following[0]
            loop.append(current)
            seen.add(current)
        loops.append(np.array(loop))
    return loops


def build(video: Path, out: Path = DEFAULT_PATH, config: BuildConfig | None = None, log=print) -> FaceModel:
    import mediapipe as mp

    config = config or BuildConfig()
    log(f"tracking {video} ...")
    landmarks = collect_landmarks(video, config)
    log(f"{len(landmarks)} frames with one face")
    neutral = neutral_shape(landmarks, config)
    mirror = mirror_pairs(neutral)
    neutral = symmetrize(neutral, mirror)
    edges = {tuple(sorted(e)) for e in mp.solutions.face_mesh_connections.FACEMESH_TESSELATION}
    triangles = orient(triangles_from_tesselation(edges), neutral)
    loops = sorted(boundary_loops(triangles), key=len)
    eye_left = next(loop for loop in loops if neutral[loop, 0].mean() > 0.01 and len(loop) < 20)
    eye_right = next(loop for loop in loops if neutral[loop, 0].mean() < -0.01 and len(loop) < 20)
    mouth_hole = next(loop for loop in loops if 13 in loop or 14 in loop)
    mouth_center = 0.5 * (neutral[13] + neutral[14])
    tongue, tongue_faces = add_tongue(neutral, mouth_center)
    vertices = np.concatenate([neutral, tongue])
    tongue_index = np.arange(len(neutral), len(vertices))
    columns = 5
    tongue_mirror = tongue_index.reshape(-1, columns)[:, ::-1].ravel()
    mirror = np.concatenate([mirror, tongue_mirror])
    triangles = np.concatenate([triangles, orient(tongue_faces, vertices)])
    deltas = ShapeBuilder(vertices, mirror, tongue_index, config).all_shapes(eye_left)
    lo, hi = vertices[:, :2].min(0), vertices[:, :2].max(0)
    uvs = ((vertices[:, :2] - lo) / (hi - lo)).astype(np.float32)
    model = FaceModel(
        version=FACE_MODEL_VERSION,
        vertices=vertices.astype(np.float32),
        triangles=triangles.astype(np.int32),
        uvs=uvs,
        shape_names=CHANNELS,
        deltas=deltas,
        mirror=mirror.astype(np.int32),
        regions=Regions(
            lips_outer=np.array(LIPS_OUTER_UPPER + LIPS_OUTER_LOWER[1:-1], dtype=np.int32),
            lips_inner=np.array(LIPS_INNER_UPPER + LIPS_INNER_LOWER[1:-1], dtype=np.int32),
            eye_left=eye_left.astype(np.int32),
            eye_right=eye_right.astype(np.int32),
            mouth_hole=mouth_hole.astype(np.int32),
            tongue=tongue_index.astype(np.int32),
        ),
        source=json.dumps({"video": Path(video).name, "frames": int(len(landmarks)), "config": config.__dict__}),
    )
    model.save(out)
    log(f"wrote {out}: {len(vertices)} vertices, {len(triangles)} triangles, {len(CHANNELS)} shapes")
    return model
