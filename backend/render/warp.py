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
        """Append the inner-lip loop's centre, the mouth cap's extra vertex (on the vertex axis, -2)."""
        return torch.cat([screen, screen[..., self.shape_pass.mouth_loop, :].mean(-2, keepdim=True)], dim=-2)

    def flows(self, target: torch.Tensor, sources: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """target (N, V, 3), sources (N, k, V, 3) screen vertices (column, row, nearness) -> per
        target pixel each source's position (N, k, H, W, 2), which pixels are face (N, H, W), which
        the open mouth (N, H, W), and the target's canonical coordinates (N, 3, H, W).

        The target is rasterized once for all k sources: its coverage and barycentrics are the
        same whatever it carries, so the sources' positions and the canonical colours ride along
        as attributes of one pass (and one of the mouth cap)."""
        sp, h, w = self.shape_pass, self.height, self.width
        n, k = sources.shape[:2]
        carried = sources[..., :2].permute(0, 2, 1, 3).reshape(n, -1, 2 * k)  # (N, V, 2k)
        attributes = torch.cat([sp.colors.expand(n, -1, -1).to(carried.dtype), carried], dim=-1)
        _, face, values = rasterize(target, sp.triangles, h, w, attributes)
        centres = self._with_centre(sources[..., :2]).permute(0, 2, 1, 3).reshape(n, -1, 2 * k)
        _, opening, in_mouth = rasterize(self._with_centre(target), sp.mouth_cap, h, w, centres)
        mouth = opening & ~face
        on_face = values[..., 3:].view(n, h, w, k, 2)
        flow = torch.where(face[..., None, None], on_face, in_mouth.view(n, h, w, k, 2)).permute(0, 3, 1, 2, 4)
        return flow, face, mouth, values[..., :3].permute(0, 3, 1, 2)

    def warp_slots(self, target: torch.Tensor, sources: torch.Tensor, frames: torch.Tensor) -> Warped:
        """Warp k source frames per target at once: ``frames`` (N, k, 3, H, W) in [0, 1], shown
        with ``sources`` (N, k, V, 3), into the ``target`` (N, V, 3) pose and expression. The
        result's tensors have the slots on axis 1: frames (N, k, 3, H, W), valid (N, k, H, W)."""
        n, k = sources.shape[:2]
        flow, face, mouth, target_pass = self.flows(target, sources)
        flat = flow.reshape(n * k, self.height, self.width, 2)
        # Pixel centres are at +0.5 in screen space: normalized coordinates for grid_sample.
        scale = torch.tensor([2.0 / self.width, 2.0 / self.height], device=flow.device, dtype=flow.dtype)
        grid = flat * scale - 1.0
        warped = F.grid_sample(frames.flatten(0, 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # What each source shows at the mapped place: its own canonical coordinates and opening.
        src = self.shape_pass.render(sources.flatten(0, 1), torch.zeros(n * k, device=sources.device))
        src_planes = torch.cat([src.linear, (src.mouth & ~src.mask)[..., None].float()], dim=-1).permute(0, 3, 1, 2)
        seen = F.grid_sample(src_planes, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        seen = seen.view(n, k, 4, self.height, self.width)
        agree = (seen[:, :, :3] - target_pass[:, None]).abs().amax(2) <= MATCH_TOLERANCE
        inside = (grid.abs() <= 1).all(-1).view(n, k, self.height, self.width)
        valid = ((face[:, None] & agree) | (mouth[:, None] & (seen[:, :, 3] > 0.5))) & inside
        warped = warped.view(n, k, 3, self.height, self.width) * valid[:, :, None]
        return Warped(warped, valid.float(), flow)

    def __call__(self, target: torch.Tensor, source: torch.Tensor, frames: torch.Tensor) -> Warped:
        """Warp ``frames`` (N, 3, H, W) in [0, 1], shown with the source vertices (N, V, 3), into
        the target vertices' pose and expression."""
        out = self.warp_slots(target, source[:, None], frames[:, None])
        return Warped(out.frames[:, 0], out.valid[:, 0], out.flow[:, 0])
