"""The dense-correspondence warp (``render/warp.py``): identity on a frame's own pose, and a
known pose change reproduced within a pixel. A real GRID frame, the canonical face model and
the backend's rasterizer; no data but the frame is made up."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from steadytalk_backend.face.shape_pass import ShapePassRenderer
from steadytalk_backend.render.data import to_tensor
from steadytalk_backend.render.warp import FaceWarper
from steadytalk_shared import render_contract as rc
from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.schema import V1_CHANNELS

SIZE = 256


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel.load()


@pytest.fixture(scope="module")
def warper() -> FaceWarper:
    return FaceWarper(ShapePassRenderer(FaceModel.load(), SIZE, SIZE))


@pytest.fixture(scope="module")
def frame(shared_data) -> np.ndarray:
    from steadytalk_backend.avatar.video import read_frames

    first = next(iter(read_frames(shared_data / "video" / "grid_s1_val" / "bgbb2p.mpg")))
    return cv2.resize(first, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def _screen(model: FaceModel, rotation: np.ndarray, centre: tuple[float, float], jaw: float = 0.0) -> torch.Tensor:
    """(1, V, 3) screen vertices of the model posed at ``rotation`` with its head centre at
    ``centre`` (pixels), the face about 170 px tall, jawOpen ``jaw``."""
    weights = np.zeros(len(model.shape_names), dtype=np.float32)
    weights[V1_CHANNELS.index("jawOpen")] = jaw
    posed = model.vertices + np.tensordot(weights, model.deltas, axes=1)
    matrix = rc.model_matrix(900.0, rotation, np.array([*centre, 0.0]), rc.Crop.full_frame(SIZE, SIZE))
    return torch.as_tensor(rc.project(matrix, posed), dtype=torch.float32)[None]


def test_a_frame_warped_onto_its_own_pose_is_itself(model, warper, frame):
    for jaw in (0.0, 0.6):  # closed, and open: the mouth's inside through the lip-contour fan
        screen = _screen(model, Rotation.from_euler("y", 8, degrees=True).as_matrix(), (128, 120), jaw)
        warped = warper(screen, screen, to_tensor(frame[None], torch.device("cpu")))
        valid = warped.valid[0].bool()
        assert valid.sum() > 0.2 * SIZE * SIZE  # the face covers much of the crop
        if jaw > 0:
            _, _, mouth, _ = warper.flows(screen, screen[:, None])
            assert (mouth[0] & valid).sum() > 50  # the open mouth is warped too
        got = warped.frames[0].permute(1, 2, 0).numpy()[valid.numpy()]
        # Rounded to 8 bits it is the frame itself (float32 rasterization: under 0.01 px).
        assert np.array_equal(np.round(got * 255).astype(np.uint8), frame[valid.numpy()])
        # Exactly each pixel's own centre, not merely a similar colour.
        ys, xs = np.nonzero(valid.numpy())
        flow = warped.flow[0].numpy()[ys, xs]
        assert np.abs(flow - np.stack([xs + 0.5, ys + 0.5], -1)).max() < 0.01


def test_a_known_pose_change_is_reproduced_within_a_pixel(model, warper, frame):
    source = _screen(model, np.eye(3), (128, 124))
    # In-plane: the head turned 7 degrees, 6% larger and moved (-5.5, 3.25) px. The image of
    # that pose is the source frame under the same similarity transform.
    angle, zoom, shift = 7.0, 1.06, (-5.5, 3.25)
    centre = (128.0, 124.0)
    affine = cv2.getRotationMatrix2D(centre, angle, zoom)
    affine[:, 2] += shift
    linear = np.asarray(affine[:, :2])
    target_vertices = source[0, :, :2].numpy() @ linear.T + affine[:, 2]
    target = source.clone()
    target[0, :, :2] = torch.as_tensor(target_vertices, dtype=torch.float32)
    target[0, :, 2] *= zoom
    expected = cv2.warpAffine(frame, affine, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    warped = warper(target, source, to_tensor(frame[None], torch.device("cpu")))
    valid = warped.valid[0].numpy().astype(bool)
    assert valid.sum() > 0.2 * SIZE * SIZE
    # Every valid pixel samples where the inverse transform says, well within a pixel.
    ys, xs = np.nonzero(valid)
    pixels = np.stack([xs + 0.5, ys + 0.5], -1)
    inverse = cv2.invertAffineTransform(affine)
    wanted = (pixels - 0.5) @ inverse[:, :2].T + inverse[:, 2] + 0.5  # OpenCV's maps are on integer centres
    error = np.linalg.norm(warped.flow[0].numpy()[ys, xs] - wanted, axis=-1)
    assert error.max() < 0.25, error.max()  # float32 rasterization: ~0.1 px at most
    # And the pixels agree with OpenCV's warp of the frame (bilinear both ways; the border of
    # the valid region aside).
    inner = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    got = (warped.frames[0].permute(1, 2, 0).numpy() * 255)[inner]
    assert np.abs(got - expected[inner]).mean() < 1.0

    # A head turn (yaw): every vertex visible in both frames lands on its own source position.
    turned = _screen(model, Rotation.from_euler("y", 12, degrees=True).as_matrix(), (128, 124))
    flow, face, _, _ = warper.flows(turned, source[:, None])
    flow = flow[:, 0]
    points = turned[0, :, :2].numpy()
    cols, rows = np.floor(points).astype(int).T
    inside = (cols >= 0) & (cols < SIZE) & (rows >= 0) & (rows < SIZE)
    sampled = np.full_like(points, np.nan)
    covered = np.zeros(len(points), dtype=bool)
    covered[inside] = face[0].numpy()[rows[inside], cols[inside]]
    sampled[covered] = flow[0].numpy()[rows[covered], cols[covered]]
    # The pixel holding a vertex maps to the vertex's source position, give or take the half
    # pixel between the vertex and that pixel's centre (scaled by the local stretch) and the
    # vertices hidden behind the nose in one view.
    distance = np.linalg.norm(sampled[covered] - source[0, covered, :2].numpy(), axis=-1)
    assert covered.sum() > 300
    assert np.median(distance) < 0.5 and np.quantile(distance, 0.9) < 1.0, np.quantile(distance, [0.5, 0.9])


def test_slots_warped_together_are_each_warped_alone(model, warper, frame):
    """The target is rasterized once for all slots; each slot still gets exactly its own warp."""
    target = _screen(model, Rotation.from_euler("y", 5, degrees=True).as_matrix(), (128, 122), 0.4)
    sources = [
        _screen(model, np.eye(3), (126, 124), 0.1),
        _screen(model, Rotation.from_euler("x", 6, degrees=True).as_matrix(), (130, 120), 0.6),
    ]
    image = to_tensor(frame[None], torch.device("cpu"))
    both = warper.warp_slots(
        target, torch.stack([s[0] for s in sources])[None], torch.stack([image[0], image[0].flip(-1)])[None]
    )
    for slot, (source, img) in enumerate(zip(sources, (image, image.flip(-1)), strict=True)):
        alone = warper(target, source, img)
        assert torch.equal(both.valid[:, slot], alone.valid)
        assert torch.allclose(both.frames[:, slot], alone.frames, atol=1e-6)
    assert not torch.equal(both.valid[:, 0], both.valid[:, 1])  # the slots do differ
