"""Augmented erosion (StableFace): make training look like inference.

At training time the background frame and the face shape come from the same video frame, so
a renderer could copy the mouth from the background instead of drawing it from the shape
pass. At inference the mouth shape comes from new audio. StableFace closes that gap in two
steps, both here, batched in torch (CPU or GPU):

1. ``perturb_expression``: noise on the mouth/jaw coefficients *before* the shape pass is
   rendered, so the shape no longer matches the frame exactly;
2. ``augment_masks``: the mouth-region mask (from the 3D face, ``ShapePass.mouth``) randomly
   eroded or dilated, shifted and rotated about its centre; ``erase`` then blanks that region
   of the background frame, which the renderer must fill from the shape pass.

Every random draw comes from an explicit ``torch.Generator``, so a seed reproduces a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from steadytalk_shared.schema import V1_CHANNELS as CHANNELS  # the renderer's models are v1-wide

# Blinks are not mouth expression: the eye attention map handles them.
_MOUTH_CHANNELS = torch.tensor([i for i, name in enumerate(CHANNELS) if not name.startswith("eye")])


@dataclass(frozen=True)
class ErosionConfig:
    expression_noise: float = 0.05  # std of the Gaussian noise on each mouth/jaw coefficient
    # Morphology radius in pixels at 256x256 (scaled with the image): negative erodes, positive dilates.
    max_radius: int = 6
    max_shift: float = 0.04  # of the image size, in x and y
    max_rotation_degrees: float = 10.0

    def radius_for(self, size: int) -> int:
        return max(0, round(self.max_radius * size / 256))


def perturb_expression(
    coefficients: torch.Tensor, config: ErosionConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(..., CHANNELS) coefficients with Gaussian noise on the mouth/jaw channels, kept in [0, 1]."""
    noise = torch.zeros_like(coefficients)
    mouth = _MOUTH_CHANNELS.to(coefficients.device)
    # Drawn on the generator's device, so a CPU generator reproduces the same noise for a GPU batch.
    draw = torch.randn(
        (*coefficients.shape[:-1], len(mouth)),
        generator=generator,
        device=generator.device if generator is not None else coefficients.device,
        dtype=coefficients.dtype,
    ).to(coefficients.device)
    noise[..., mouth] = draw * config.expression_noise
    return (coefficients + noise).clamp(0.0, 1.0)


@dataclass(frozen=True)
class MaskAugmentation:
    """The draws for one batch (per sample), kept so a picture or a test can show them."""

    radius: torch.Tensor  # (B,) int, negative = erode
    shift: torch.Tensor  # (B, 2) fraction of the image, x and y
    rotation: torch.Tensor  # (B,) radians


def draw_augmentation(
    batch: int, size: int, config: ErosionConfig, generator: torch.Generator | None = None
) -> MaskAugmentation:
    limit = config.radius_for(size)
    radius = torch.randint(-limit, limit + 1, (batch,), generator=generator)
    shift = (torch.rand((batch, 2), generator=generator) * 2 - 1) * config.max_shift
    rotation = (torch.rand((batch,), generator=generator) * 2 - 1) * math.radians(config.max_rotation_degrees)
    return MaskAugmentation(radius, shift, rotation)


def _morphology(masks: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Per-sample square erosion (radius < 0) or dilation (> 0) of (B, H, W) float masks in {0, 1}:
    3x3 max-pool steps, each sample keeping the result of its own number of steps."""
    x = masks[:, None]
    dilated, eroded = x, x
    out = x.clone()
    steps = int(radius.abs().max()) if len(radius) else 0
    for step in range(1, steps + 1):
        dilated = F.max_pool2d(dilated, 3, stride=1, padding=1)
        eroded = -F.max_pool2d(-eroded, 3, stride=1, padding=1)
        out = torch.where((radius == step).view(-1, 1, 1, 1), dilated, out)
        out = torch.where((radius == -step).view(-1, 1, 1, 1), eroded, out)
    return out[:, 0]


def augment_masks(masks: torch.Tensor, augmentation: MaskAugmentation) -> torch.Tensor:
    """(B, H, W) mouth masks -> eroded/dilated, then rotated about their centroid and shifted.

    Nearest-neighbour resampling keeps the mask binary (float 0/1)."""
    masks = masks.float()
    batch, height, width = masks.shape
    device = masks.device
    shaped = _morphology(masks, augmentation.radius.to(device))
    # Centroid in normalized [-1, 1] coordinates (image centre for an empty mask).
    ys = torch.linspace(-1, 1, height, device=device)
    xs = torch.linspace(-1, 1, width, device=device)
    area = shaped.sum(dim=(1, 2)).clamp(min=1.0)
    cx = (shaped.sum(dim=1) * xs).sum(dim=1) / area
    cy = (shaped.sum(dim=2) * ys).sum(dim=1) / area
    angle = augmentation.rotation.to(device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    shift = augmentation.shift.to(device) * 2  # fraction of the image -> normalized units
    # Output point p samples the input at R^-1 (p - c - shift) + c (grid_sample maps output -> input).
    tx, ty = shift[:, 0], shift[:, 1]
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, sin
    theta[:, 1, 0], theta[:, 1, 1] = -sin, cos
    ox, oy = -(cx + tx), -(cy + ty)
    theta[:, 0, 2] = cos * ox + sin * oy + cx
    theta[:, 1, 2] = -sin * ox + cos * oy + cy
    grid = F.affine_grid(theta, (batch, 1, height, width), align_corners=True)
    return F.grid_sample(shaped[:, None], grid, mode="nearest", padding_mode="zeros", align_corners=True)[:, 0]


def erase(frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The eroded background: (B, C, H, W) frames with the (B, H, W) mask region set to 0."""
    return frames * (1.0 - masks[:, None].to(frames.dtype))
