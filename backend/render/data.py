"""What the neural renderer reads from an avatar folder, and the per-frame conditioning it gets.

``AvatarFrames`` loads a prepared avatar (``steadytalk prepare``): the face-centred crops, the
fitted pose and coefficients, the stored mouth regions and the S2A audio features.
``Conditioner`` turns coefficients + pose + a background frame into the renderer's input planes,
the same way for training (with augmented erosion) and for inference (without): the shape pass
drawn by the batched rasterizer, differentiable in the coefficients (the joint stage trains the
smoother through it), the region to erase and the eye attention map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from steadytalk_shared import render_contract as rc
from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.schema import V1_CHANNELS as CHANNELS  # the renderer's models are v1-wide

from ..avatar.params import tracked_coefficients
from ..avatar.video import read_frames
from ..errors import SteadyTalkError
from ..face.shape_pass import ShapePassRenderer
from .augment import ErosionConfig, augment_masks, draw_augmentation, perturb_expression
from .texture import RetrievedBatch
from .warp import FaceWarper

BLINK = (CHANNELS.index("eyeBlinkLeft"), CHANNELS.index("eyeBlinkRight"))
FEATURE_RATE = 100.0  # S2A features per second


class AvatarError(SteadyTalkError):
    pass


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise AvatarError(
            f"{path.parent} has no {path.name} ({what}).",
            "Build the avatar first: steadytalk prepare VIDEO --out AVATAR_DIR (or finish it by running that again).",
        )
    return path


@dataclass
class AvatarFrames:
    folder: Path
    size: int
    fps: float
    frames: np.ndarray | None  # (T, S, S, 3) uint8 crops, None when not loaded
    coefficients: np.ndarray  # (T, 33) float32, tracked
    matrices: np.ndarray  # (T, 4, 4) model metres -> crop pixels (contract space)
    mouth: np.ndarray  # (T, S, S) bool, the stored mouth region of each frame
    features: np.ndarray  # (N, D) float32 S2A features at 100 Hz
    rig: FaceModel  # the person's face model (identity applied)

    @property
    def num_frames(self) -> int:
        return len(self.coefficients)

    @classmethod
    def load(cls, folder: Path, size: int = 256, max_frames: int | None = None, frames: bool = True) -> AvatarFrames:
        folder = Path(folder)
        manifest = json.loads(_require(folder / "manifest.json", "the avatar's manifest").read_text())
        crop_dir = folder / f"crop_{size}"
        if not crop_dir.exists():
            sizes = ", ".join(str(s) for s in manifest.get("settings", {}).get("sizes", [])) or "none"
            raise AvatarError(
                f"{folder} has no {size}x{size} crops (it has: {sizes}).",
                f"Choose one of those sizes, or prepare the avatar again with --size {size}.",
            )
        with np.load(_require(folder / "params.npz", "the tracked poses and coefficients")) as params:
            coefficients = tracked_coefficients(params, CHANNELS)  # by name: v2 avatars store all 52
            scale, rotation, translation = params["scale"], params["rotation"], params["translation"]
        windows = np.load(_require(crop_dir / "crop.npy", "the crop windows"))
        total = len(coefficients) if max_frames is None else min(max_frames, len(coefficients))
        matrices = np.stack(
            [
                rc.model_matrix(
                    float(scale[i]), rotation[i], translation[i], rc.Crop(*map(float, windows[i]), size, size)
                )
                for i in range(total)
            ]
        ).astype(np.float32)
        with np.load(_require(crop_dir / "mouth_masks.npz", "the mouth regions")) as data:
            mouth = np.unpackbits(data["bits"][:total], axis=-1, count=size).astype(bool)
        with np.load(_require(folder / "features.npz", "the audio features")) as data:
            features = data["values"].astype(np.float32)
        rig = FaceModel.load(_require(folder / "blender" / "rig.npz", "the person's face model")).with_shapes(CHANNELS)
        images = None
        if frames:
            images = np.empty((total, size, size, 3), dtype=np.uint8)
            count = 0
            for count, frame in enumerate(read_frames(_require(crop_dir / "frames.mp4", "the face crops"))):
                if count >= total:
                    count -= 1
                    break
                images[count] = frame
            if count + 1 < total:
                raise AvatarError(f"{crop_dir / 'frames.mp4'} holds {count + 1} frames, the avatar {total}.")
        return cls(
            folder=folder,
            size=size,
            fps=float(manifest["video"]["fps"]),
            frames=images,
            coefficients=coefficients[:total],
            matrices=matrices,
            mouth=mouth,
            features=features,
            rig=rig,
        )


def audio_windows(features: np.ndarray, frame_times: np.ndarray, context: int) -> np.ndarray:
    """(N, D) features at 100 Hz -> (T, 2 * context + 1, D): the window around each frame time
    (seconds), edge-padded: the motion audio embedding's input."""
    centre = np.round(np.asarray(frame_times) * FEATURE_RATE).astype(np.int64)
    index = np.clip(centre[:, None] + np.arange(-context, context + 1)[None], 0, len(features) - 1)
    return features[index]


@dataclass
class Normalizer:
    """Per-dimension mean and std of the audio features (from the training avatar, kept in the
    model's JSON so inference normalizes new audio the same way)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> Normalizer:
        return cls(features.mean(0).astype(np.float32), np.maximum(features.std(0), 1e-3).astype(np.float32))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))


@dataclass
class Conditioning:
    inputs: torch.Tensor  # (N, planes, h, w) at the network's size
    background: torch.Tensor  # (N, 3, S, S) the unerased background frames in [0, 1]
    erased: torch.Tensor  # (N, S, S) float, the region the renderer fills
    shape: torch.Tensor  # (N, 3, S, S) shape pass colour (for the discriminator and pictures)
    # Native resolution: (N, 2) top-left (row, column) of each frame's mouth window; None when
    # the network sees the whole crop (resized to its work size).
    offsets: torch.Tensor | None = None
    network_size: tuple[int, int] | None = None

    def to_network(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) at the crop size -> what the network sees of them: the mouth windows, or
        the whole crop area-resized to the work size."""
        h, w = self.network_size or images.shape[-2:]
        if self.offsets is not None:
            return torch.stack(
                [x[:, r : r + h, c : c + w] for x, (r, c) in zip(images, self.offsets.tolist(), strict=True)]
            )
        if (h, w) == tuple(images.shape[-2:]):
            return images
        return F.interpolate(images, size=(h, w), mode="area")

    def from_network(self, generated: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) network output -> (N, 3, S, S): the windows pasted into the background,
        or the whole image upsampled."""
        size = self.background.shape[-2:]
        if self.offsets is None:
            if tuple(generated.shape[-2:]) == tuple(size):
                return generated
            return F.interpolate(generated, size=size, mode="bilinear", align_corners=False)
        h, w = generated.shape[-2:]
        out = self.background.clone().to(generated.dtype)
        for n, (r, c) in enumerate(self.offsets.tolist()):
            out[n, :, r : r + h, c : c + w] = generated[n]
        return out


def mouth_windows(mouth: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """(N, S, S) mouth regions -> (N, 2) top-left of the ``window`` (height, width) centred on
    each region's bounding box, kept inside the image."""
    size_h, size_w = mouth.shape[-2:]
    h, w = window
    offsets = []
    for region in mouth.bool():
        rows, cols = torch.nonzero(region.any(1)), torch.nonzero(region.any(0))
        cy = (int(rows.min()) + int(rows.max()) + 1) // 2 if len(rows) else size_h // 2
        cx = (int(cols.min()) + int(cols.max()) + 1) // 2 if len(cols) else size_w // 2
        offsets.append((min(max(cy - h // 2, 0), size_h - h), min(max(cx - w // 2, 0), size_w - w)))
    return torch.as_tensor(offsets, dtype=torch.long)


class Conditioner:
    """Coefficients + pose + background -> the renderer's input planes, at ``size``."""

    def __init__(
        self,
        rig: FaceModel,
        size: int,
        work_size: int,
        device: torch.device,
        erosion: ErosionConfig | None = None,
        erase_eyes: bool = True,
        native_window: tuple[int, int] = (0, 0),
        match_texture: bool = False,
    ) -> None:
        self.size, self.work_size, self.device = size, work_size, device
        self.native_window = tuple(native_window)
        self.erosion, self.erase_eyes = erosion or ErosionConfig(), erase_eyes
        # Colours come from the canonical model (the contract), the geometry from the person's rig.
        self.shape_pass = ShapePassRenderer(FaceModel.load(), size, size, device)
        self.neutral = torch.as_tensor(rig.vertices, device=device)
        self.deltas = torch.as_tensor(rig.deltas, device=device).flatten(1)  # (C, V*3)
        self.eyes = [
            torch.as_tensor(r.astype(np.int64), device=device) for r in (rig.regions.eye_left, rig.regions.eye_right)
        ]
        self.margin = self.erosion.radius_for(size)  # the erased region always covers the mouth by this much
        self.warper = FaceWarper(self.shape_pass)
        # Renderers that copy the retrieved texture get it colour-matched (``match_colour``).
        self.match_texture = match_texture
        self.colour_band = max(4, size // 16)  # 16 px at 256

    def screen(self, coefficients: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
        """(N, 33), (N, 4, 4) -> (N, V, 3) pixels (column, row, nearness); differentiable."""
        posed = self.neutral + (coefficients @ self.deltas).view(len(coefficients), -1, 3)
        contract = posed @ matrices[:, :3, :3].transpose(1, 2) + matrices[:, None, :3, 3]
        return contract * torch.tensor([1.0, -1.0, 1.0], device=contract.device)

    def eye_regions(self, screen: torch.Tensor, blink: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ellipses around each eye (lids included) and the eye attention map: the regions
        weighted by the blink coefficient (a floor of 0.25 marks where the eyes are when open)."""
        ys = torch.arange(self.size, device=screen.device, dtype=screen.dtype) + 0.5
        region = torch.zeros(len(screen), self.size, self.size, device=screen.device)
        attention = torch.zeros_like(region)
        for side, index in enumerate(self.eyes):
            points = screen[:, index, :2].detach()
            centre = points.mean(1)
            half = (points.amax(1) - points.amin(1)) / 2
            rx = (half[:, 0] * 1.5).clamp_min(2.0)
            ry = (half[:, 0] * 0.9).clamp_min(2.0)  # from the width: a closed eye has no height
            dx = (ys[None, None, :] - centre[:, 0, None, None]) / rx[:, None, None]
            dy = (ys[None, :, None] - centre[:, 1, None, None]) / ry[:, None, None]
            inside = (dx**2 + dy**2 <= 1).float()
            region = torch.maximum(region, inside)
            weight = 0.25 + 0.75 * blink[:, side].detach().clamp(0, 1)
            attention = torch.maximum(attention, inside * weight[:, None, None])
        return region, attention

    def __call__(
        self,
        coefficients: torch.Tensor,
        matrices: torch.Tensor,
        background: torch.Tensor,
        background_mouth: torch.Tensor,
        augment: bool = False,
        generator: torch.Generator | None = None,
        shape_images: np.ndarray | None = None,
        retrieved: RetrievedBatch | None = None,
    ) -> Conditioning:
        """coefficients (N, 33), matrices (N, 4, 4), background (N, 3, S, S) in [0, 1] and its
        own mouth region (N, S, S). With ``augment``, StableFace's augmented erosion.

        ``shape_images`` (N, S, S, 3) uint8: shape passes drawn by the client (Blender, the
        render contract) instead of by the rasterizer; the coefficients then only place the
        eye attention map (and the warp of ``retrieved``: the avatar's frames seen from them)."""
        if augment:
            coefficients = perturb_expression(coefficients, self.erosion, generator)
        screen = self.screen(coefficients, matrices)
        if shape_images is None:
            shape = self.shape_pass.render(screen, matrices[:, 2, 3])
            colour, shape_mouth = shape.color.permute(0, 3, 1, 2), shape.mouth
        else:
            colour = to_tensor(shape_images, self.device)
            shape_mouth = torch.as_tensor(self.shape_pass.mouth_of_image(shape_images), device=self.device)
        # The erased region covers the wanted mouth and the background's own mouth, so no trace
        # of the background's mouth survives whatever the new expression.
        mouth = (shape_mouth | background_mouth.bool()).float()
        mouth = dilate(mouth, self.margin)
        if augment:
            mouth = augment_masks(mouth, draw_augmentation(len(mouth), self.size, self.erosion, generator))
        eyes, attention = self.eye_regions(screen, coefficients[:, list(BLINK)])
        erased = torch.maximum(mouth, eyes) if self.erase_eyes else mouth
        eroded = background * (1 - erased[:, None])
        planes = [eroded, erased[:, None], colour, attention[:, None]]
        if retrieved is not None:
            match = background if self.match_texture else None
            planes += self.texture_planes(screen.detach(), retrieved, match, erased.detach())
        planes = torch.cat(planes, dim=1)
        if self.native_window[0] > 0:
            cond = Conditioning(planes, background, erased, colour, mouth_windows(mouth, self.native_window))
            cond.network_size = self.native_window
        else:
            cond = Conditioning(planes, background, erased, colour, network_size=(self.work_size, self.work_size))
        cond.inputs = cond.to_network(planes)
        return cond

    def texture_planes(
        self,
        screen: torch.Tensor,
        retrieved: RetrievedBatch,
        background: torch.Tensor | None = None,
        erased: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Each retrieved frame warped into the target (N, V, 3) mesh: RGB and validity x weight.
        With ``background`` (N, 3, S, S) and ``erased`` (N, S, S), each warped frame's colour is
        matched to the target's where both are known (``match_colour``)."""
        planes = []
        warped = self.warper.warp_slots(screen, retrieved.screens, retrieved.frames)
        for slot in range(retrieved.frames.shape[1]):
            frames, valid = warped.frames[:, slot], warped.valid[:, slot]
            if background is not None:
                frames = match_colour(frames, valid, background, erased, self.colour_band)
            planes += [frames, (valid * retrieved.weights[:, slot, None, None])[:, None]]
        return planes


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, H, W) -> the maximum over the (2r + 1)-pixel square around each pixel, as a row pass
    then a column pass: the same result as one square max-pool at a fraction of its cost (a
    33 px square pool was most of a textured frame's render time)."""
    k = 2 * radius + 1
    rows = F.max_pool2d(mask[:, None], (1, k), stride=1, padding=(0, radius))
    return F.max_pool2d(rows, (k, 1), stride=1, padding=(radius, 0))[:, 0]


def match_colour(
    warped: torch.Tensor, valid: torch.Tensor, background: torch.Tensor, erased: torch.Tensor, band: int
) -> torch.Tensor:
    """Shift each warped frame's colour (N, 3, S, S) by its mean difference to the target frame
    over the band of ``band`` px around the erased region, where the target is known and the warp
    valid: another moment of the video is lit a little differently (head turned, light moved),
    and a copied mouth must not sit on the face like a sticker. Pixels not valid stay 0."""
    near = dilate(erased, band) > 0
    ring = (near & (erased < 0.5) & (valid > 0.5)).to(warped.dtype)[:, None]
    count = ring.sum((2, 3))
    offset = ((background - warped) * ring).sum((2, 3)) / count.clamp_min(1.0)
    offset = torch.where(count > 16, offset, torch.zeros_like(offset))  # too few pixels: leave it
    return ((warped + offset[:, :, None, None]).clamp(0, 1)) * valid[:, None]


def to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.as_tensor(frames, device=device).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> (N, H, W, 3) uint8."""
    return (frames.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
