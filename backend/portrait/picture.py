"""Reading the user's picture: any common format (PNG, JPEG, WebP, TIFF, BMP, GIF), greyscale,
16-bit or with transparency, turned upright by its EXIF orientation, huge pictures downscaled
on reading; and fitting it to the video's size.

What was done to the picture is recorded as notes, so the user hears about it (one line each).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SteadyTalkError

FORMATS = "PNG, JPEG, WebP, TIFF, BMP or GIF"
# The video's (or a rig texture's) longer side, pixels. Here, in the lightest module of the
# room, so a server checks requests against it without importing the pipeline.
SIZES = (128, 4096)


class PortraitError(SteadyTalkError):
    code = "bad_portrait"


@dataclass(frozen=True)
class PictureConfig:
    # Larger pictures are downscaled on reading: the video is at most a few thousand pixels
    # wide, and a 100-megapixel photo would cost gigabytes at every step.
    max_side: int = 4096
    # Transparent parts are shown on this colour (an mp4 has no alpha).
    matte: tuple[int, int, int] = (255, 255, 255)


@dataclass
class Picture:
    rgb: np.ndarray  # (H, W, 3) uint8, upright
    name: str
    stored_size: tuple[int, int]  # (width, height) as the file holds it
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


def read_picture(source: bytes | Path, name: str | None = None, config: PictureConfig | None = None) -> Picture:
    """Decode ``source`` (a path or the file's bytes) into an upright RGB picture."""
    from PIL import Image, ImageOps

    config = config or PictureConfig()
    data, name = _read_bytes(source, name)
    try:
        image = Image.open(io.BytesIO(data))
        stored = image.size
        image.draft("RGB", (config.max_side, config.max_side))  # JPEG: decode at a reduced scale
        image = ImageOps.exif_transpose(image)
        image.load()
    except Image.DecompressionBombError:
        raise PortraitError(
            f"{name} is too large to read safely (over {Image.MAX_IMAGE_PIXELS * 2 / 1e6:.0f} megapixels).",
            "Downscale it to a few thousand pixels first.",
        ) from None
    except Exception as exc:  # Pillow raises many types for data it cannot decode
        raise PortraitError(
            f"{name} is not a picture that can be read ({exc.__class__.__name__}).",
            f"Use a {FORMATS} file.",
        ) from None
    notes: list[str] = []
    rgb = _to_rgb(image, config.matte, notes)
    height, width = rgb.shape[:2]
    if max(width, height) > config.max_side:
        scale = config.max_side / max(width, height)
        new = (max(1, round(width * scale)), max(1, round(height * scale)))
        notes.append(f"{name} is {stored[0]}x{stored[1]} pixels; it was downscaled to {new[0]}x{new[1]} on reading.")
        rgb = _resize(rgb, new)
    elif max(stored) > config.max_side:
        notes.append(f"{name} is {stored[0]}x{stored[1]} pixels; it was read at {width}x{height}.")
    return Picture(np.ascontiguousarray(rgb), name, stored, notes)


def _read_bytes(source: bytes | Path, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        name = name or "the uploaded picture"
    else:
        path = Path(source)
        name = name or path.name
        if not path.exists():
            raise PortraitError(f"Picture not found: {path}.", "Check the path.")
        if path.is_dir():
            raise PortraitError(f"{path} is a folder, not a picture.", f"Pass a {FORMATS} file.")
        data = path.read_bytes()
    if not data:
        raise PortraitError(f"{name} is empty.", f"Pass a {FORMATS} file.")
    return data, name


def _to_rgb(image, matte: tuple[int, int, int], notes: list[str]) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8: 16-bit and float scaled down, greyscale repeated,
    transparency composited on ``matte``, palettes and CMYK converted."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        if mode == "F" and values.max() <= 1.0:
            top = 1.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        if alpha.min() < 1.0:
            notes.append("The picture's transparent parts are shown on white.")
        composite = rgba[..., :3] * alpha + np.asarray(matte, dtype=np.float32) * (1.0 - alpha)
        return np.clip(composite + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    shrinking = size[0] < rgb.shape[1]
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def video_size(width: int, height: int, longer_side: int) -> tuple[int, int]:
    """The video's (width, height): the picture's aspect with its longer side ``longer_side``,
    both even (H.264 4:2:0, which every player opens, needs even sizes)."""
    scale = longer_side / max(width, height)
    even = lambda v: max(2, int(round(v * scale / 2.0)) * 2)  # noqa: E731
    return even(width), even(height)


def fit_to_video(rgb: np.ndarray, longer_side: int) -> np.ndarray:
    """The picture at the video's size (see ``video_size``)."""
    size = video_size(rgb.shape[1], rgb.shape[0], longer_side)
    if size == (rgb.shape[1], rgb.shape[0]):
        return rgb
    return np.ascontiguousarray(_resize(rgb, size))
