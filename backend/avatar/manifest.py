"""The avatar folder's manifest: what made it (source video, settings), which stages are done,
and what each file holds (``FILES``, written into ``manifest.json`` itself)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import write_text_atomic

AVATAR_VERSION = 1
STAGES = ("landmarks", "fit", "crops", "audio", "blender", "style")


@dataclass
class Manifest:
    version: int = AVATAR_VERSION
    source: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)  # stage -> {"seconds": ..., ...}
    video: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    schema: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(asdict(self), indent=2) + "\n")


FILES = {
    "landmarks.npz": "mediapipe landmarks, pixels of the source frame (x*W, y*H, z*W): points (T, 478, 3), "
    "found (T,) bool, faces (T,) faces seen per frame",
    "params.npz": "per-frame fit: coefficients (T, C) in [0, 1], columns named by channels (C,): all 52 ARKit channels "
    "in schema order (avatars prepared before schema v2: the 33 of v1; read them by name), "
    "scale (T,), rotation (T, 3, 3), "
    "translation (T, 3) with source_pixels = scale * R @ model_metres + t (y down, depth on the x scale), "
    "tracked (T,) bool (False: landmarks interpolated), error (T,) reprojection / inter-ocular distance, "
    "identity (468, 3) metres offset from the canonical neutral",
    "crop_{size}/frames.mp4": "face-centred crop of every frame, H.264 4:4:4, constant rate",
    "crop_{size}/crop.npy": "(T, 3) crop window per frame: scale, offset_x, offset_y (crop = scale * source + offset)",
    "crop_{size}/mouth_masks.npz": "mouth region per frame: bits (T, H, ceil(W / 8)) from np.packbits along x",
    "plate.mp4": "the full source frames at the constant rate (the background plate)",
    "preview.png": "a few frames: crop | shape pass over it | shape pass | mouth region (check the tracking)",
    "audio.wav": "16 kHz mono PCM",
    "lipsync.json": "the lip-sync engine's curves for the audio at the video's frame rate",
    "features.npz": "S2A features of the lip-sync engine: values (N, D) at rate (100 Hz) with its layout",
    "blender/rig.npz": "face model of this person (identity applied), loadable with FaceModel.load",
    "blender/scene.json": "camera (orthographic, source pixels), fps, frame count and plate path",
    "blender/head_pose.npy": "(T, 4, 4) model metres -> contract space of the full source frame",
    "style.json": "the person's manner learned from this video (blinks, gaze, brows, head motion): "
    "lipsync --style avatar:AVATAR",
}


def source_fingerprint(path: Path) -> dict:
    stat = path.stat()
    with open(path, "rb") as handle:
        head = hashlib.sha256(handle.read(1 << 20)).hexdigest()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "sha256_first_mib": head}
