"""Augmented erosion: expression noise and mouth-mask erosion/dilation, shift and rotation."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from steadytalk_backend.render.augment import (
    ErosionConfig,
    MaskAugmentation,
    augment_masks,
    draw_augmentation,
    erase,
    perturb_expression,
)
from steadytalk_shared.schema import CHANNELS

SIZE = 256
ARTEFACTS = Path(os.environ.get("STEADYTALK_ARTEFACTS", Path(__file__).resolve().parents[1] / "build" / "artefacts"))


def ellipse(cx=128.0, cy=170.0, ax=40.0, ay=16.0, size=SIZE) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return (((cols - cx) / ax) ** 2 + ((rows - cy) / ay) ** 2 <= 1).float()


def centroid(mask: torch.Tensor) -> np.ndarray:
    rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
    return np.array([cols.float().mean().item(), rows.float().mean().item()])


def principal_angle(mask: torch.Tensor) -> float:
    rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
    points = torch.stack([cols, rows], 1).double()
    points -= points.mean(0)
    _, vectors = torch.linalg.eigh(points.T @ points)
    major = vectors[:, -1]
    return math.degrees(math.atan2(major[1].item(), major[0].item())) % 180


def only(radius=0, shift=(0.0, 0.0), rotation=0.0) -> MaskAugmentation:
    return MaskAugmentation(torch.tensor([radius]), torch.tensor([shift]), torch.tensor([rotation]))


def test_same_seed_same_batch_and_another_seed_another():
    masks = ellipse()[None].repeat(4, 1, 1)
    config = ErosionConfig()

    def batch(seed):
        generator = torch.Generator().manual_seed(seed)
        return augment_masks(masks, draw_augmentation(4, SIZE, config, generator))

    assert torch.equal(batch(3), batch(3))
    assert not torch.equal(batch(3), batch(4))


def test_no_augmentation_is_the_identity_and_masks_stay_binary():
    mask = ellipse()
    out = augment_masks(mask[None], only())
    assert torch.equal(out[0], mask)
    generator = torch.Generator().manual_seed(0)
    out = augment_masks(mask[None].repeat(8, 1, 1), draw_augmentation(8, SIZE, ErosionConfig(), generator))
    assert set(out.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("radius", [-4, -1, 2, 6])
def test_erosion_shrinks_and_dilation_grows_by_the_radius(radius):
    mask = torch.zeros(SIZE, SIZE)
    mask[150:180, 90:170] = 1  # a box: each edge moves by exactly the radius
    out = augment_masks(mask[None], only(radius=radius))[0]
    expected = torch.zeros(SIZE, SIZE)
    expected[150 - radius : 180 + radius, 90 - radius : 170 + radius] = 1
    assert torch.equal(out, expected)
    curved = augment_masks(ellipse()[None], only(radius=radius))[0]
    assert (curved.sum() > ellipse().sum()) == (radius > 0)


def test_shift_moves_the_mask_by_that_fraction_of_the_image():
    mask = ellipse()
    out = augment_masks(mask[None], only(shift=(0.03, -0.02)))[0]
    moved = centroid(out) - centroid(mask)
    np.testing.assert_allclose(moved, [0.03 * SIZE, -0.02 * SIZE], atol=1.0)


def test_rotation_turns_the_mask_about_its_centre():
    mask = ellipse()
    out = augment_masks(mask[None], only(rotation=math.radians(10)))[0]
    np.testing.assert_allclose(centroid(out), centroid(mask), atol=1.0)
    assert out.sum().item() == pytest.approx(mask.sum().item(), rel=0.03)
    turned = (principal_angle(out) - principal_angle(mask) + 90) % 180 - 90
    assert abs(abs(turned) - 10) < 1.5


def test_expression_noise_touches_only_the_mouth_and_stays_in_range():
    coefficients = torch.full((2000, len(CHANNELS)), 0.5)
    coefficients[:, CHANNELS.index("jawOpen")] = 0.0
    generator = torch.Generator().manual_seed(1)
    out = perturb_expression(coefficients, ErosionConfig(expression_noise=0.05), generator)
    eyes = [CHANNELS.index("eyeBlinkLeft"), CHANNELS.index("eyeBlinkRight")]
    assert torch.equal(out[:, eyes], coefficients[:, eyes])
    assert out.min() >= 0 and out.max() <= 1
    assert (out[:, CHANNELS.index("mouthFunnel")] - 0.5).std().item() == pytest.approx(0.05, rel=0.1)


def test_erase_blanks_exactly_the_mask():
    frames = torch.rand(1, 3, SIZE, SIZE) + 0.1
    mask = ellipse()
    out = erase(frames, mask[None])
    assert (out[0][:, mask > 0] == 0).all() and torch.equal(out[0][:, mask == 0], frames[0][:, mask == 0])


def test_picture_of_augmented_erosion_on_a_rendered_mouth():
    """A sheet a person can look at: the shape pass of a posed face (top left), then eight
    augmented mouth masks erasing it (the shape pass stands in for the background frame here;
    red: the original region's outline; labels: radius, shift, rotation)."""
    import cv2

    from steadytalk_backend.face.shape_pass import ShapePassRenderer
    from steadytalk_shared import render_contract as rc
    from steadytalk_shared.face_model import FaceModel

    model = FaceModel.load()
    coefficients = np.zeros(len(CHANNELS))
    coefficients[CHANNELS.index("jawOpen")] = 0.4
    rotation = np.diag([1.0, -1.0, -1.0])
    crop = rc.Crop.around(180.0, 140.0, 330.0, SIZE)
    matrix = rc.model_matrix(1050.0, rotation, np.array([180.0, 140.0, 0.0]), crop)
    screen = rc.project(matrix, model.pose(coefficients)).astype(np.float32)
    shape = ShapePassRenderer(model, SIZE, SIZE).render(screen[None], np.array([matrix[2, 3]]))
    mouth = shape.mouth.float()
    assert 0.01 < mouth.mean().item() < 0.2
    generator = torch.Generator().manual_seed(7)
    augmentation = draw_augmentation(8, SIZE, ErosionConfig(), generator)
    masks = augment_masks(mouth.repeat(8, 1, 1), augmentation)
    background = torch.as_tensor(shape.color_uint8()[0]).permute(2, 0, 1)[None].float() / 255
    tiles = [np.ascontiguousarray(shape.color_uint8()[0][..., ::-1])]
    outline = cv2.findContours(mouth[0].numpy().astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0]
    for i in range(8):
        eroded = erase(background, masks[i : i + 1])[0].permute(1, 2, 0).numpy()
        tile = np.ascontiguousarray((eroded * 255).astype(np.uint8)[..., ::-1])
        cv2.drawContours(tile, outline, -1, (0, 0, 255), 1)
        r, (sx, sy), a = augmentation.radius[i].item(), augmentation.shift[i].tolist(), augmentation.rotation[i].item()
        cv2.putText(tile, f"r{r:+d} s{sx:+.2f},{sy:+.2f} {math.degrees(a):+.0f}deg", (4, 14), 0, 0.4, (255,) * 3)
        tiles.append(tile)
    sheet = np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:6]), np.hstack(tiles[6:9])])
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(ARTEFACTS / "augmented_erosion.png"), sheet)
    assert not torch.equal(masks[0], masks[1])
