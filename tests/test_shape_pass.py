"""The face-shape pass: the backend's batched rasterizer, its outputs, and Blender's Workbench
render of the same contract (the real ``bpy`` module)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import extension_module
from scipy.spatial.transform import Rotation

from steadytalk_backend.face.shape_pass import ShapePassRenderer, srgb_encode
from steadytalk_shared import render_contract as rc
from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.schema import CHANNELS

SIZE = 256
# A mean difference on the face of at most 2/255 (the aim); Workbench and the backend
# sample the same pixel centres, so coverage must agree almost pixel for pixel.
BLENDER_TOLERANCE = 2.0
NOSE_TIP = 1


def reference_rasterize(
    screen: np.ndarray, nearness: np.ndarray, triangles: np.ndarray, attributes: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An independent oracle: a plain per-triangle z-buffer loop in numpy (slow, obvious).

    Interpolate per-vertex ``attributes`` (V, K) over the triangles.

    screen: (V, 2) pixel coordinates; nearness: (V,); triangles: (F, 3); size: (height, width).
    Returns image (H, W, K) float32, mask (H, W) bool and nearness (H, W) (-inf off the mesh).
    Back faces are drawn too (the depth test resolves them); degenerate triangles are skipped.
    """
    height, width = size
    image = np.zeros((height, width, attributes.shape[1]), dtype=np.float32)
    zbuffer = np.full((height, width), -np.inf)
    corners = screen[triangles]  # (F, 3, 2)
    lo = np.clip(np.floor(corners.min(axis=1) - 0.5).astype(int), 0, [width - 1, height - 1])
    hi = np.clip(np.ceil(corners.max(axis=1) - 0.5).astype(int), 0, [width - 1, height - 1])
    for f, (a, b, c) in enumerate(triangles):
        (x0, y0), (x1, y1) = lo[f], hi[f]
        if x1 < x0 or y1 < y0:
            continue
        pa, pb, pc = screen[a], screen[b], screen[c]
        area = (pb[0] - pa[0]) * (pc[1] - pa[1]) - (pb[1] - pa[1]) * (pc[0] - pa[0])
        if abs(area) < 1e-12:
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        w_a = ((pb[0] - xs) * (pc[1] - ys) - (pb[1] - ys) * (pc[0] - xs)) / area
        w_b = ((pc[0] - xs) * (pa[1] - ys) - (pc[1] - ys) * (pa[0] - xs)) / area
        w_c = 1.0 - w_a - w_b
        inside = (w_a >= 0) & (w_b >= 0) & (w_c >= 0)
        if not inside.any():
            continue
        z = w_a * nearness[a] + w_b * nearness[b] + w_c * nearness[c]
        region = zbuffer[y0 : y1 + 1, x0 : x1 + 1]
        win = inside & (z > region)
        if not win.any():
            continue
        region[win] = z[win]
        values = (
            w_a[win][:, None] * attributes[a] + w_b[win][:, None] * attributes[b] + w_c[win][:, None] * attributes[c]
        )
        image[y0 : y1 + 1, x0 : x1 + 1][win] = values
    return image, np.isfinite(zbuffer), zbuffer


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel.load()


@pytest.fixture(scope="module")
def renderer(model) -> ShapePassRenderer:
    return ShapePassRenderer(model, SIZE, SIZE)


def posed_frame(model, seed: int, **values: float):
    """Contract matrix and posed model-space vertices of a plausible head in a 256 crop."""
    rng = np.random.default_rng(seed)
    coefficients = np.zeros(len(CHANNELS))
    for name, value in values.items():
        coefficients[CHANNELS.index(name)] = value
    # A face seen from the front: image y down and depth away from the camera flip model Y and Z.
    rotation = (
        np.diag([1.0, -1.0, -1.0]) @ Rotation.from_euler("xyz", rng.uniform(-20, 20, 3), degrees=True).as_matrix()
    )
    centre = np.array([rng.uniform(150, 210), rng.uniform(120, 170), rng.uniform(-5, 5)])
    crop = rc.Crop.around(centre[0], centre[1], rng.uniform(300, 360), SIZE)
    matrix = rc.model_matrix(rng.uniform(950, 1150), rotation, centre, crop)
    return matrix, model.pose(coefficients)


def screen_of(matrix, vertices):
    return rc.project(matrix, vertices).astype(np.float32)


def test_matches_the_reference_rasterizer(model, renderer):
    matrix, vertices = posed_frame(model, 0, jawOpen=0.5, mouthSmileLeft=0.6)
    screen = screen_of(matrix, vertices)
    out = renderer.render(screen[None], np.array([matrix[2, 3]]))
    colors = rc.canonical_colors(model.vertices)
    image, mask, _ = reference_rasterize(
        screen[:, :2].astype(np.float64), screen[:, 2].astype(np.float64), model.triangles, colors, (SIZE, SIZE)
    )
    assert (out.mask[0].numpy() == mask).all()
    expected = srgb_encode(torch.as_tensor(image)).numpy()
    assert np.abs(out.color[0].numpy() - expected)[mask].max() < 1e-3


def test_colors_decode_to_canonical_coordinates(model, renderer):
    matrix, vertices = posed_frame(model, 1)
    screen = screen_of(matrix, vertices)
    out = renderer.render(screen[None], np.array([matrix[2, 3]]))
    decoded = rc.srgb_decode(out.color[0].numpy().astype(np.float64))
    colors = rc.canonical_colors(model.vertices)
    # At the pixel under a visible vertex the colour is (nearly) that vertex's coordinate.
    for vertex in (NOSE_TIP, 175, 9, 50, 280):  # nose tip, chin, between the brows, cheeks
        col, row = int(screen[vertex, 0]), int(screen[vertex, 1])
        assert out.mask[0, row, col]
        assert np.abs(decoded[row, col] - colors[vertex]).max() < 0.03, vertex
    assert not out.color[0][~out.mask[0]].any()  # black background


def test_depth_mouth_mask_and_batching(model, renderer):
    frames = [posed_frame(model, seed, jawOpen=jaw) for seed, jaw in ((2, 0.0), (3, 0.8), (4, 0.3))]
    screens = np.stack([screen_of(m, v) for m, v in frames])
    centres = np.array([m[2, 3] for m, _ in frames])
    batch = renderer.render(screens, centres)
    for i in range(len(frames)):
        single = renderer.render(screens[i : i + 1], centres[i : i + 1])
        # (vectorized float maths may differ in the last bit between batch sizes)
        assert torch.allclose(single.color[0], batch.color[i], atol=1e-6)
        assert torch.equal(single.mask[0], batch.mask[i]) and torch.equal(single.mouth[0], batch.mouth[i])
    depth, mask, mouth = batch.depth.numpy(), batch.mask.numpy(), batch.mouth.numpy()
    for i in range(len(frames)):
        nose = screens[i, NOSE_TIP]
        assert depth[i, int(nose[1]), int(nose[0])] == pytest.approx(depth[i][mask[i]].max(), abs=0.02)
        assert (depth[i][~mask[i]] == 0).all()
        # The mouth region covers the lips, their corners and the chin, not the nose or eyes.
        for vertex, inside in ((61, True), (291, True), (175, True), (0, True), (NOSE_TIP, False), (159, False)):
            col, row = screens[i, vertex, :2].astype(int)
            assert mouth[i, row, col] == inside, vertex
    # The open mouth is a hole in the face mask but inside the mouth region.
    lips = screens[1, [13, 14]]
    col, row = lips[:, 0].mean().astype(int), lips[:, 1].mean().astype(int)
    assert not mask[1, row, col] and mouth[1, row, col]
    assert mouth[1].sum() > mouth[0].sum()  # an open jaw makes the region larger


def test_blender_workbench_renders_the_same_image(model, renderer, tmp_path):
    pytest.importorskip("bpy")
    import bpy
    from PIL import Image

    face_shape_pass = extension_module("face_shape_pass")
    matrix, vertices = posed_frame(model, 5, jawOpen=0.45, mouthPucker=0.3, eyeBlinkLeft=1.0)
    screen = screen_of(matrix, vertices)
    ours = renderer.render(screen[None], np.array([matrix[2, 3]]))

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    face_shape_pass.configure_scene(scene, SIZE, SIZE)
    camera = rc.camera(SIZE, SIZE)
    face_shape_pass.contract_camera(scene, camera.location, camera.ortho_scale, camera.clip_start, camera.clip_end)
    face = face_shape_pass.face_object(scene, "face", vertices, model.triangles, rc.canonical_colors(model.vertices))
    face_shape_pass.set_matrix(face, matrix)
    scene.render.filepath = str(tmp_path / "blender.png")
    bpy.ops.render.render(write_still=True)
    blender = np.asarray(Image.open(tmp_path / "blender.png").convert("RGB")).astype(int)

    mask = ours.mask[0].numpy()
    blender_mask = blender.any(axis=-1)
    assert (mask != blender_mask).sum() <= 0.002 * mask.sum()
    difference = np.abs(blender - ours.color_uint8()[0].astype(int))
    assert difference[mask].mean() <= BLENDER_TOLERANCE
