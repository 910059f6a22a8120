"""Warp a frame of the avatar's video into a target frame through the face's dense correspondence.

The render contract colours every face pixel with its canonical coordinate: the same surface
point has the same colour in every frame, whatever the expression and pose. So for each face
pixel of the target there is one place in a source frame showing that point, and because the
mesh is shared, that place is the source's screen position of the same surface point:
rasterizing the *target* mesh with each vertex carrying its *source* screen position
(barycentric interpolation) gives, per target pixel, where to sample the source frame. That
is exact on every triangle (an affine map per triangle, the same interpolation the shape
pass's colours use), so a frame warped onto its own pose and expression is itself.

The open mouth is a hole in the mesh: it is filled by the fan of the shape pass's mouth cap
(the inner-lip loop to its centre), so the mouth's inside (teeth, tongue, cavity) follows the
lip contour from the source's opening to the target's.

Validity: a warped pixel counts only where the source shows the same surface point: its
canonical coordinate sampled at the mapped place matches the target's (an occluded or
off-image point does not), and for the mouth's inside, where the mapped place lies in the
source's own opening.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..face.shape_pass import ShapePassRenderer, rasterize

# Canonical coordinates are in [0, 1] over the whole head; 0.02 is about 3 mm of face, a few
# pixels at 256: neighbours agree, an occluding surface (the other cheek, the nose) does not.
MATCH_TOLERANCE = 0.02


@dataclass
class Warped:
    frames: torch.Tensor  # (N, 3, H, W) the source frames seen from the target, 0 where invalid
    valid: torch.Tensor  # (N, H, W) float 0/1
    flow: torch.Tensor  # (N, H, W, 2) source pixel (column, row) sampled per target pixel


class FaceWarper:
    """Dense-correspondence warps for one image size on one device."""

    def __init__(self, shape_pass: ShapePassRenderer) -> None:
        self.shape_pass = shape_pass
        self.height, self.width = shape_pass.height, shape_pass.width

    def _with_centre(self, screen: torch.Tensor) -> torch.Tensor:
        """Append the inner-lip loop's centre, the mouth cap's extra vertex."""
        return torch.cat([screen, screen[:, self.shape_pass.mouth_loop].mean(1, keepdim=True)], dim=1)

    def flow(self, target: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """target, source: (N, V, 3) screen vertices (column, row, nearness) -> per target pixel
        the source position (N, H, W, 2), which pixels are face (N, H, W) and which the open
        mouth (N, H, W)."""
        sp, h, w = self.shape_pass, self.height, self.width
        _, face, on_face = rasterize(target, sp.triangles, h, w, source[..., :2])
        target_c, source_c = self._with_centre(target), self._with_centre(source)
        _, opening, in_mouth = rasterize(target_c, sp.mouth_cap, h, w, source_c[..., :2])
        mouth = opening & ~face
        flow = torch.where(face[..., None], on_face, in_mouth)
        return flow, face, mouth

    def target_pass(self, target: torch.Tensor) -> torch.Tensor:
        """(N, V, 3) target vertices -> (N, 3, H, W) their canonical coordinates per pixel: what
        every warp into these targets compares against, so several slots draw it once."""
        tgt = self.shape_pass.render(target, torch.zeros(len(target), device=target.device))
        return tgt.linear.permute(0, 3, 1, 2)

    def __call__(
        self, target: torch.Tensor, source: torch.Tensor, frames: torch.Tensor, target_pass: torch.Tensor | None = None
    ) -> Warped:
        """Warp ``frames`` (N, 3, H, W) in [0, 1], shown with the source vertices, into the target
        vertices' pose and expression (``target_pass``: ``self.target_pass(target)`` if drawn)."""
        flow, face, mouth = self.flow(target, source)
        # Pixel centres are at +0.5 in screen space: normalized coordinates for grid_sample.
        scale = torch.tensor([2.0 / self.width, 2.0 / self.height], device=flow.device, dtype=flow.dtype)
        grid = flow * scale - 1.0
        warped = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # What the source shows at the mapped place: its own canonical coordinates and opening.
        src = self.shape_pass.render(source, torch.zeros(len(source), device=source.device))
        if target_pass is None:
            target_pass = self.target_pass(target)
        src_planes = torch.cat([src.linear, (src.mouth & ~src.mask)[..., None].float()], dim=-1).permute(0, 3, 1, 2)
        seen = F.grid_sample(src_planes, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        agree = (seen[:, :3] - target_pass).abs().amax(1) <= MATCH_TOLERANCE
        inside = (grid.abs() <= 1).all(-1)
        valid = ((face & agree) | (mouth & (seen[:, 3] > 0.5))) & inside
        warped = warped * valid[:, None]
        return Warped(warped, valid.float(), flow)
