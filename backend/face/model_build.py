"""Build the canonical face model: mediapipe's 468-point face-mesh topology with a neutral
shape, a clean triangulation, UVs, a small tongue, and the schema's 52 ARKit blendshapes.

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
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from steadytalk_shared.face_model import DEFAULT_PATH, FACE_MODEL_VERSION, FaceModel, Regions
from steadytalk_shared.schema import CHANNELS  # all 52 ARKit shapes (schema v2)

from .landmarks import (
    CHIN,
    EYE_OUTER_LEFT,
    EYE_OUTER_RIGHT,
    FOREHEAD,
    LIPS_INNER_LOWER,
    LIPS_INNER_UPPER,
    LIPS_OUTER_LOWER,
    LIPS_OUTER_UPPER,
    lip_gap_ratio,
)
from .shapes import BuildConfig, ShapeBuilder

EYE_CORNER_DISTANCE_M = 0.095


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


def rebuild_shapes(
    model: FaceModel, out: Path = DEFAULT_PATH, config: BuildConfig | None = None, log=print
) -> FaceModel:
    """The blendshapes built again on ``model``'s own neutral, mesh and regions (no video): what a
    change of the shapes needs, leaving the neutral, and so every avatar's identity, as it was."""
    config = config or BuildConfig()
    if json.loads(model.source or "{}").get("config"):
        config = BuildConfig(**{**config.__dict__, **json.loads(model.source)["config"]})
    vertices = model.vertices.astype(np.float64)
    deltas = ShapeBuilder(vertices, model.mirror, model.regions.tongue, config).all_shapes(model.regions.eye_left)
    rebuilt = FaceModel(
        version=FACE_MODEL_VERSION,
        vertices=model.vertices,
        triangles=model.triangles,
        uvs=model.uvs,
        shape_names=CHANNELS,
        deltas=deltas,
        mirror=model.mirror,
        regions=model.regions,
        source=model.source,
    )
    rebuilt.save(out)
    log(f"wrote {out}: {len(vertices)} vertices, {len(model.triangles)} triangles, {len(CHANNELS)} shapes")
    return rebuilt
