"""The portrait as a rig for Blender: the person's fitted face mesh with the face model's shape
keys, the picture as its texture, and a card behind it holding the rest of the picture, all in
the render contract's space, so the contract's camera frames the picture exactly.

numpy arrays only (they travel over the wire as binary frames); Blender builds the objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steadytalk_shared import render_contract as rc

from .locate import FaceChoice
from .pipeline import Portrait, PortraitOptions, prepare_portrait


@dataclass
class PortraitRig:
    vertices: np.ndarray  # (V, 3) float32, the person's neutral, face model metres
    triangles: np.ndarray  # (F, 3) int32, counter-clockwise from outside (the tongue included)
    uvs: np.ndarray  # (V, 2) float32: where each vertex sits on the texture (u right, v up)
    shape_names: tuple[str, ...]
    deltas: np.ndarray  # (S, V, 3) float32, metres at weight 1 (relaxed for a texture)
    texture: np.ndarray  # (H, W, 3) uint8: the picture at the video's size
    matrix: np.ndarray  # (4, 4) model metres -> contract space (the object's matrix_world)
    camera: rc.OrthoCamera  # frames the picture
    card: np.ndarray  # (4, 3) contract-space corners of the background card (behind the head)


def rig_of(portrait: Portrait) -> PortraitRig:
    face = portrait.face
    height, width = portrait.video.shape[:2]
    model = face.model
    pose = face.pose
    matrix = rc.model_matrix(pose.scale, pose.rotation, pose.translation, rc.Crop.full_frame(width, height))
    image = pose.apply(model.vertices.astype(np.float64))
    image[: len(face.landmarks), :2] = face.landmarks[: min(len(face.landmarks), len(image)), :2]
    uvs = np.stack([image[:, 0] / width, 1.0 - image[:, 1] / height], axis=1).astype(np.float32)
    # The card sits behind the whole head (two face heights behind its centre).
    nearness = rc.project(matrix, model.vertices.astype(np.float64))[:, 2]
    back = float(nearness.min() - 2.0 * face.height_pixels)
    card = np.array([[0, 0, back], [width, 0, back], [width, -height, back], [0, -height, back]], dtype=np.float32)
    return PortraitRig(
        vertices=model.vertices.astype(np.float32),
        triangles=model.triangles.astype(np.int32),
        uvs=np.clip(uvs, 0.0, 1.0),
        shape_names=tuple(model.shape_names),
        deltas=model.deltas.astype(np.float32),
        texture=portrait.video,
        matrix=matrix,
        camera=rc.camera(width, height),
        card=card,
    )


def portrait_rig(
    image: bytes | Path, options: PortraitOptions | None = None, name: str | None = None
) -> tuple[PortraitRig, list[str], FaceChoice]:
    """The textured rig of a picture, the warnings about it (several faces, a turned face) and
    which face it is (index, count). ``name``: the picture's name in messages."""
    portrait = prepare_portrait(image, options, name)
    return rig_of(portrait), portrait.warnings, portrait.choice
