"""The committed canonical face model: topology, symmetry and what each blendshape does."""

import collections
import itertools

import numpy as np
import pytest

from steadytalk_backend.face.model_build import boundary_loops
from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.schema import (
    CHANNELS,  # the model's shapes: all 52 (schema v2)
    V1_CHANNELS,
)
from steadytalk_shared.schema import CHANNELS as ALL_CHANNELS


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel.load()


def coefficients(**values):
    c = np.zeros(len(CHANNELS), dtype=np.float32)
    for name, value in values.items():
        c[CHANNELS.index(name)] = value
    return c


def test_contents_and_schema_order(model):
    assert model.num_vertices == 468 + 15
    assert model.shape_names == ALL_CHANNELS == CHANNELS
    assert model.deltas.shape == (52, model.num_vertices, 3)
    assert model.uvs.min() >= 0.0 and model.uvs.max() <= 1.0
    assert np.all(np.abs(model.deltas).max(axis=(1, 2)) > 9e-4), "every shape moves something (eye look: 1 mm)"


def test_no_degenerate_faces_and_a_clean_manifold(model):
    v, f = model.vertices, model.triangles
    areas = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    assert areas.min() > 1e-8
    assert len({tuple(sorted(t)) for t in f}) == len(f)
    directed = collections.Counter((a, b) for t in f for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])))
    assert max(directed.values()) == 1, "consistent winding: every edge used once per direction"
    undirected = collections.Counter(tuple(sorted(e)) for e in directed)
    assert max(undirected.values()) == 2


def test_holes_are_exactly_mouth_eyes_outline_and_tongue_rim(model):
    face = model.triangles[np.all(model.triangles < 468, axis=1)]
    loops = sorted(len(loop) for loop in boundary_loops(face))
    assert loops == [16, 16, 20, 36]  # eyes, mouth, face outline: no holes where skin should be
    assert set(model.regions.mouth_hole) >= {13, 14, 78, 308}


def test_normals_face_outward(model):
    v, f = model.vertices, model.triangles
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    front = v[f].mean(axis=1)[:, 2] > 0.0
    assert np.mean(normals[front, 2] > 0) > 0.95


def test_mirror_and_symmetry(model):
    mirror = model.mirror
    assert np.array_equal(mirror[mirror], np.arange(model.num_vertices))
    flip = np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(model.vertices[mirror] * flip, model.vertices, atol=1e-6)
    for name in CHANNELS:
        delta = model.deltas[CHANNELS.index(name)]
        if "Left" in name:
            twin = model.deltas[CHANNELS.index(name.replace("Left", "Right"))]
            np.testing.assert_allclose(twin, delta[mirror] * flip, atol=1e-6, err_msg=name)
            if name in {"jawLeft", "mouthLeft"}:  # directions: toward the character's left (+X)
                assert delta[:, 0].sum() > 0 and np.all(delta[:, 0] >= 0), name
                continue
            # character's left is +X: a one-sided Left shape moves the +X side more
            side = np.abs(delta).sum(axis=1)
            assert side[model.vertices[:, 0] > 0.005].sum() > 3 * side[model.vertices[:, 0] < -0.005].sum(), name
        elif "Right" not in name:
            np.testing.assert_allclose(delta[mirror] * flip, delta, atol=1e-6, err_msg=name)


def inner_lip_gap(vertices):
    """Upper minus lower inner-lip midpoint height: 0 closed, positive open."""
    return vertices[13, 1] - vertices[14, 1]


def test_jaw_open_drops_the_chin_and_opens_the_lips(model):
    neutral, open_ = model.vertices, model.pose(coefficients(jawOpen=1.0))
    assert neutral[152, 1] - open_[152, 1] > 0.025  # chin down more than 2.5 cm
    assert inner_lip_gap(open_) > 0.02
    assert np.allclose(open_[10], neutral[10])  # the forehead stays
    assert np.allclose(open_[1], neutral[1])  # and the nose


@pytest.mark.parametrize("jaw", [0.2, 0.5, 1.0])
def test_mouth_close_seals_the_lips_against_the_open_jaw(model, jaw):
    sealed = model.pose(coefficients(jawOpen=jaw, mouthClose=jaw))
    opened = model.pose(coefficients(jawOpen=jaw))
    assert abs(inner_lip_gap(sealed)) < 0.1 * abs(inner_lip_gap(opened)) + 5e-4
    assert sealed[152, 1] == pytest.approx(opened[152, 1])  # the jaw itself stays open


def test_rounding_and_spreading(model):
    width = lambda v: v[291, 0] - v[61, 0]  # noqa: E731
    neutral = model.vertices
    pucker = model.pose(coefficients(mouthPucker=1.0))
    funnel = model.pose(coefficients(mouthFunnel=1.0))
    assert width(pucker) < 0.75 * width(neutral) and pucker[0, 2] > neutral[0, 2] + 0.008
    assert inner_lip_gap(funnel) > 0.004 and width(funnel) < width(neutral)
    stretch = model.pose(coefficients(mouthStretchLeft=1.0, mouthStretchRight=1.0))
    assert width(stretch) > width(neutral) + 0.01
    smile = model.pose(coefficients(mouthSmileLeft=1.0))
    assert smile[291, 1] > neutral[291, 1] + 0.006 and smile[61, 1] == pytest.approx(neutral[61, 1], abs=1e-4)


def test_blink_closes_one_eye(model):
    blink = model.pose(coefficients(eyeBlinkLeft=1.0))
    assert abs(blink[386, 1] - blink[374, 1]) < 0.001  # left upper lid meets the lower lid
    assert model.vertices[386, 1] - model.vertices[374, 1] > 0.005
    np.testing.assert_allclose(blink[159], model.vertices[159])  # the right eye stays open


def test_tongue_comes_out_and_nothing_else_moves(model):
    out = model.pose(coefficients(tongueOut=1.0))
    moved = np.linalg.norm(out - model.vertices, axis=1) > 1e-7
    assert set(np.flatnonzero(moved)) == set(model.regions.tongue)
    assert out[model.regions.tongue, 2].max() > model.vertices[[13, 14], 2].max() + 0.005  # past the lips


def test_pose_accepts_sequences(model):
    frames = np.stack([coefficients(jawOpen=a) for a in (0.0, 0.5, 1.0)])
    posed = model.pose(frames)
    assert posed.shape == (3, model.num_vertices, 3)
    np.testing.assert_allclose(posed[1], model.pose(frames[1]))
    with pytest.raises(ValueError, match="52 coefficients"):
        model.pose(np.zeros(5))
    # a v1 frame (33 wide) poses with the upper face at rest
    v1 = coefficients(jawOpen=0.5)[: len(V1_CHANNELS)]
    np.testing.assert_allclose(model.pose(v1), model.pose(coefficients(jawOpen=0.5)))
    # a v1-wide consumer (the neural renderer) takes the model's first 33 shapes
    narrow = model.with_shapes(V1_CHANNELS)
    assert narrow.shape_names == V1_CHANNELS and len(narrow.deltas) == 33
    np.testing.assert_allclose(narrow.pose(v1), model.pose(v1))


def test_brows_rise_and_lower_by_their_measured_size(model):
    """A brow-up channel at 1 lifts its brow landmarks by FULL_RAISE_MM, browDown lowers the
    inner brow by FULL_LOWER_MM (the scale tracking and the performance models use); the eye
    corners stay put, so brow height above them is what moved."""
    from steadytalk_shared.upper_face import FULL_LOWER_MM, FULL_RAISE_MM

    def lift(name, points):
        return 1000.0 * (model.pose(coefficients(**{name: 1.0}))[list(points), 1] - model.vertices[list(points), 1])

    assert lift("browInnerUp", (336, 296, 107, 66)).mean() == pytest.approx(FULL_RAISE_MM, abs=0.05)
    assert lift("browOuterUpLeft", (334, 293, 300)).mean() == pytest.approx(FULL_RAISE_MM, abs=0.05)
    assert np.abs(lift("browOuterUpLeft", (105, 63, 70))).max() < 0.01  # the other brow stays
    assert lift("browDownLeft", (336, 296)).mean() == pytest.approx(-FULL_LOWER_MM, abs=0.05)
    assert -FULL_LOWER_MM < lift("browDownLeft", (334, 293, 300)).mean() < -0.3 * FULL_LOWER_MM  # outer: less
    for name in ("browInnerUp", "browOuterUpLeft", "browDownLeft"):
        assert np.abs(lift(name, (263, 362, 33, 133, 386, 374))).max() < 0.01, name  # corners and lids


def test_eye_shapes_move_the_lids_not_the_corners(model):
    def gap(v):  # left eye: upper minus lower lid at the middle
        return v[386, 1] - v[374, 1]

    rest = gap(model.vertices)
    assert gap(model.pose(coefficients(eyeWideLeft=1.0))) > rest + 0.002
    assert gap(model.pose(coefficients(eyeSquintLeft=1.0))) < rest - 0.002
    down, up = model.pose(coefficients(eyeLookDownLeft=1.0)), model.pose(coefficients(eyeLookUpLeft=1.0))
    assert down[386, 1] < model.vertices[386, 1] - 0.002 and up[386, 1] > model.vertices[386, 1] + 0.001
    inward = model.pose(coefficients(eyeLookInLeft=1.0)) - model.vertices
    assert inward[[386, 374], 0].max() < -0.0005  # the left eye's lids slide toward the nose (-X)
    for name in ("eyeWideLeft", "eyeSquintLeft", "eyeLookDownLeft", "eyeLookUpLeft", "eyeLookInLeft"):
        moved = model.pose(coefficients(**{name: 1.0})) - model.vertices
        assert np.abs(moved[[263, 362]]).max() < 1e-4, name  # the corners do not move
        assert np.abs(moved[[159, 145, 33, 133]]).max() < 1e-5, name  # nor the other eye


def test_nose_sneer_lifts_the_nostril_not_the_lips(model):
    sneer = model.pose(coefficients(noseSneerLeft=1.0)) - model.vertices
    assert sneer[[327, 294], 1].min() > 0.002  # the left nostril wing rises
    assert np.abs(sneer[[98, 64]]).max() < 1e-4  # the right one does not
    lips = list(model.regions.lips_outer) + list(model.regions.lips_inner)
    assert np.abs(sneer[lips]).max() < 2e-4


def test_loader_rejects_other_versions(model, tmp_path):
    from dataclasses import replace

    path = tmp_path / "old.npz"
    replace(model, version=99).save(path)
    with pytest.raises(ValueError, match="version 99"):
        FaceModel.load(path)


def test_builder_triangulation_recovers_the_faces_from_edges():
    import mediapipe as mp

    from steadytalk_backend.face.model_build import triangles_from_tesselation

    edges = {tuple(sorted(e)) for e in mp.solutions.face_mesh_connections.FACEMESH_TESSELATION}
    triangles = triangles_from_tesselation(edges)
    # Euler: V - E + F = 2 - holes for a sphere with 4 holes (mouth, two eyes, outline)
    assert 468 - len(edges) + len(triangles) == 2 - 4
    used = {tuple(sorted(e)) for t in triangles for e in itertools.combinations(t, 2)}
    assert used == edges


def test_preview_renders_a_face(model):
    from steadytalk_backend.face.preview import shaded_view

    front = shaded_view(model, model.vertices, side=False, size=96)
    background = np.isclose(front, 0.12).all(axis=2)
    assert 0.3 < 1 - background.mean() < 0.8  # a face in the middle, background around
