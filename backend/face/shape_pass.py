"""The backend's face-shape pass (see ``steadytalk_shared.render_contract``), batched in torch.

A scanline rasterizer written for this mesh size (under a thousand triangles, images of
256-512 px): every triangle expands to its pixel rows, every row to the exact span of pixel
centres inside the triangle, all in flat tensors; along a span depth and attributes are affine
in the column, a scatter-max is the z-buffer and a second scatter writes the winners. No
Python loop over triangles or frames, so the same code fills a batch of frames on the CPU or
on a GPU (the renderer's training renders its inputs on the fly, with noise on the expression).

Outputs per frame: the colour image (sRGB-encoded canonical coordinates, exactly what Blender
writes), the face coverage mask, depth (nearness relative to the head centre, over the image
width; 0 off the face) and the mouth-region mask of augmented erosion (the face below the
subnasale's canonical height, plus the open mouth itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.render_contract import canonical_colors

SUBNASALE = 2  # mediapipe point under the nose: the top of the mouth region


@dataclass
class ShapePass:
    linear: torch.Tensor  # (B, H, W, 3) canonical coordinates in [0, 1] (0 off the face)
    mask: torch.Tensor  # (B, H, W) bool, the face mesh covers the pixel
    depth: torch.Tensor  # (B, H, W) float
    mouth: torch.Tensor  # (B, H, W) bool, mouth region

    @property
    def color(self) -> torch.Tensor:
        """(B, H, W, 3) the contract's image in [0, 1]: sRGB-encoded canonical coordinates."""
        # Encode only the face's pixels (the background stays 0): the power is most of the cost.
        encoded = torch.zeros_like(self.linear)
        encoded[self.mask] = srgb_encode(self.linear[self.mask])
        return encoded

    def color_uint8(self) -> np.ndarray:
        """(B, H, W, 3) uint8, rounded the way an 8-bit PNG stores it."""
        return (self.color * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()


def srgb_encode(linear: torch.Tensor) -> torch.Tensor:
    x = linear.clamp(0.0, 1.0)
    # The power branch is clamped to its own domain so its gradient stays small where unused
    # (the joint training stage differentiates the shape pass).
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055)


def mouth_cap_triangles(model: FaceModel) -> np.ndarray:
    """A fan over the mouth opening (inner-lip loop) to one extra vertex, index V, the loop's
    centre: the open mouth is a hole in the mesh but belongs to the mouth region."""
    loop = model.regions.mouth_hole
    return np.stack([loop, np.roll(loop, -1), np.full_like(loop, model.num_vertices)], axis=1).astype(np.int64)


def _expand(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For items with ``counts`` children each: (parent index, index within parent) per child."""
    total = int(counts.sum())
    parent = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts, output_size=total)
    first = torch.cumsum(counts, 0) - counts
    return parent, torch.arange(total, device=counts.device) - first[parent]


def rasterize(
    screen: torch.Tensor,
    triangles: torch.Tensor,
    height: int,
    width: int,
    attributes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Z-buffered rasterization of a batch, by scanline spans.

    screen: (B, V, 3) column, row, nearness (larger is nearer), pixel centres at +0.5;
    triangles: (F, 3) long; attributes: (B or 1, V, K) or None (coverage only, no depth test).
    A pixel belongs to a triangle when its centre is inside or on an edge (shared edges are
    resolved by the depth test). Returns nearness (B, H, W) (-inf where empty), coverage
    (B, H, W) bool and the interpolated attributes (B, H, W, K) (zeros where empty) or None.
    """
    batch, device, dtype = screen.shape[0], screen.device, screen.dtype
    num_tri = triangles.shape[0]
    corners = screen[:, triangles].reshape(-1, 3, 3)  # (B*F, corner, xyz)
    x, y = corners[..., 0], corners[..., 1]
    xa, xb, xc = x.unbind(-1)
    ya, yb, yc = y.unbind(-1)
    area = (xb - xa) * (yc - ya) - (yb - ya) * (xc - xa)
    usable = area.abs() > 1e-9
    inv = torch.where(usable, 1.0 / torch.where(usable, area, torch.ones_like(area)), torch.zeros_like(area))
    # Barycentric weights are affine in the pixel centre: w_i = a_i px + b_i py + c_i
    # (w_a from edge b-c, w_b from edge c-a, w_c = 1 - w_a - w_b).
    a = torch.stack([(yb - yc) * inv, (yc - ya) * inv], -1)  # (T, 2)
    b = torch.stack([(xc - xb) * inv, (xa - xc) * inv], -1)
    c = torch.stack([(xb * yc - xc * yb) * inv, (xc * ya - xa * yc) * inv], -1)

    # Level 1, triangle -> pixel rows whose centres lie within its vertical extent.
    y0 = torch.ceil(y.amin(-1) - 0.5).clamp(0, height)
    y1 = torch.floor(y.amax(-1) - 0.5).clamp(-1, height - 1)
    rows = torch.where(usable, (y1 - y0 + 1).clamp_min(0), torch.zeros_like(y0)).long()
    tri, r = _expand(rows)
    cy = (y0[tri] + r).to(dtype) + 0.5
    # On that row every weight is affine in px: w_i = a_i px + k_i; the span keeps all three >= 0.
    slope = torch.cat([a[tri], -(a[tri].sum(-1, keepdim=True))], -1)  # (R, 3)
    k2 = b[tri] * cy[:, None] + c[tri]
    offset = torch.cat([k2, 1.0 - k2.sum(-1, keepdim=True)], -1)
    bound = -offset / torch.where(slope == 0, torch.ones_like(slope), slope)
    lo = torch.where(slope > 0, bound, torch.full_like(bound, -torch.inf)).amax(-1)
    hi = torch.where(slope < 0, bound, torch.full_like(bound, torch.inf)).amin(-1)
    empty = ((slope == 0) & (offset < 0)).any(-1)
    x0 = torch.ceil(torch.maximum(lo, x.amin(-1)[tri]) - 0.5).clamp(0, width)
    x1 = torch.floor(torch.minimum(hi, x.amax(-1)[tri]) - 0.5).clamp(-1, width - 1)
    spans = torch.where(empty, torch.zeros_like(x0), (x1 - x0 + 1).clamp_min(0)).long()

    # Level 2, row -> pixels of its span.
    row, col = _expand(spans)
    px = x0.long()[row] + col
    frame = torch.div(tri, num_tri, rounding_mode="floor")
    pixel = (frame[row] * height + (cy[row] - 0.5).long()) * width + px
    coverage = torch.zeros(batch * height * width, dtype=torch.bool, device=device)
    coverage[pixel] = True
    coverage = coverage.view(batch, height, width)
    if attributes is None:
        return torch.full((batch, height, width), -torch.inf, dtype=dtype, device=device), coverage, None

    # Nearness and attributes are affine along a row too: value = start + step * px.
    attributes = attributes.to(dtype)
    faces = tri % num_tri
    source = frame if attributes.shape[0] > 1 else torch.zeros_like(faces)
    values = torch.cat([corners[tri, :, 2:3], attributes[source[:, None], triangles[faces]]], -1)  # (R, 3, 1+K)
    step = (slope[..., None] * values).sum(1)
    start = (offset[..., None] * values).sum(1)
    cx = px.to(dtype) + 0.5
    interpolated = start[row] + step[row] * cx[:, None]  # (N, 1+K)
    near = interpolated[:, 0]
    zbuffer = torch.full((batch * height * width,), -torch.inf, dtype=dtype, device=device)
    zbuffer.scatter_reduce_(0, pixel, near, reduce="amax")
    win = torch.nonzero(near >= zbuffer[pixel]).squeeze(1)
    image = torch.zeros(batch * height * width, attributes.shape[-1], dtype=dtype, device=device)
    image[pixel[win]] = interpolated[win, 1:]
    return zbuffer.view(batch, height, width), coverage, image.view(batch, height, width, -1)


class ShapePassRenderer:
    """Renders the contract for batches of posed meshes on one device."""

    def __init__(self, model: FaceModel, height: int, width: int, device: str | torch.device = "cpu") -> None:
        self.height, self.width = height, width
        self.device = torch.device(device)
        self.triangles = torch.as_tensor(model.triangles.astype(np.int64), device=self.device)
        self.mouth_cap = torch.as_tensor(mouth_cap_triangles(model), device=self.device)
        self.mouth_loop = torch.as_tensor(model.regions.mouth_hole.astype(np.int64), device=self.device)
        colors = canonical_colors(model.vertices)
        self.colors = torch.as_tensor(colors, device=self.device)[None]
        # The mouth region starts at the subnasale's canonical height, so its top edge is a
        # smooth line across the face however the triangles fall.
        self.mouth_top = float(colors[SUBNASALE, 1])

    def render(self, screen: torch.Tensor | np.ndarray, centre_nearness: torch.Tensor | np.ndarray) -> ShapePass:
        """screen: (B, V, 3) posed vertices in output pixels (column, row, nearness), e.g.
        ``render_contract.project(matrix, vertices)``; centre_nearness: (B,) nearness of the head centre."""
        screen = torch.as_tensor(screen, dtype=torch.float32, device=self.device)
        centre = torch.as_tensor(centre_nearness, dtype=torch.float32, device=self.device)
        near, mask, linear = rasterize(screen, self.triangles, self.height, self.width, self.colors)
        depth = torch.where(mask, (near - centre[:, None, None]) / self.width, torch.zeros_like(near))
        with_centre = torch.cat([screen, screen[:, self.mouth_loop].mean(1, keepdim=True)], dim=1)
        _, opening, _ = rasterize(with_centre, self.mouth_cap, self.height, self.width)
        mouth = (mask & (linear[..., 1] <= self.mouth_top)) | opening
        return ShapePass(linear, mask, depth, mouth)

    def mouth_of_image(self, images: np.ndarray) -> np.ndarray:
        """The mouth region of shape passes drawn elsewhere (Blender): (N, H, W, 3) uint8 ->
        (N, H, W) bool, the same region ``render`` gives, read from the colours alone.

        A pixel's colour is its canonical coordinate, so the face below the subnasale is the
        face whose decoded height is under ``mouth_top``. The open mouth is a hole in the mesh
        (black, like the background); it is the hole that the lower face encloses."""
        from scipy import ndimage

        from steadytalk_shared.render_contract import srgb_decode

        images = np.asarray(images)
        face = images.max(axis=-1) > 0
        height = srgb_decode(images[..., 1].astype(np.float32) / 255.0)
        lower = face & (height <= self.mouth_top)
        out = np.empty(face.shape, dtype=bool)
        for n in range(len(images)):
            holes = ndimage.binary_fill_holes(face[n]) & ~face[n]
            labels, count = ndimage.label(holes)
            # Holes touching the lower face are the mouth; the eyes' holes are above it.
            near_lower = ndimage.binary_dilation(lower[n], iterations=2)
            keep = np.unique(labels[near_lower & (labels > 0)])
            out[n] = lower[n] | np.isin(labels, keep[keep > 0])
        return out
