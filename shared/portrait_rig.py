"""The talking-portrait rig as it travels (``portrait_rig`` reply, see ``protocol``): the fitted
face mesh, its ARKit shape keys, the picture as a PNG texture, the background card and the
camera. numpy only: the Blender add-on builds the objects from this, with no file paths."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .png import decode_png
from .protocol import PORTRAIT_RIG_BUFFERS, ErrorCode, Message, ProtocolError
from .render_contract import OrthoCamera


@dataclass
class PortraitRigData:
    vertices: np.ndarray  # (V, 3) float32, model metres
    triangles: np.ndarray  # (F, 3) int32
    uvs: np.ndarray  # (V, 2) float32
    shape_names: tuple[str, ...]
    deltas: np.ndarray  # (S, V, 3) float32
    matrix: np.ndarray  # (4, 4) float64, model -> contract space
    card: np.ndarray  # (4, 3) float32, contract space
    texture_png: bytes
    width: int
    height: int
    camera: OrthoCamera
    face: int
    faces: int
    warnings: list[str]

    def texture(self) -> np.ndarray:
        """(H, W, 3) uint8, row 0 at the top."""
        return decode_png(self.texture_png)


def rig_from_reply(reply: Message) -> PortraitRigData:
    """Check a ``portrait_rig`` reply's buffers against each other and unpack it."""
    body = reply.body
    if len(reply.buffers) != len(PORTRAIT_RIG_BUFFERS) or body.get("buffers") != list(PORTRAIT_RIG_BUFFERS):
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "portrait_rig reply does not hold the rig's buffers")
    vertices, triangles, uvs, deltas, matrix, card = (np.array(reply.array(i)) for i in range(6))
    names = tuple(body["shape_names"])
    count = len(vertices)
    if (
        vertices.shape != (count, 3)
        or uvs.shape != (count, 2)
        or deltas.shape != (len(names), count, 3)
        or triangles.ndim != 2
        or triangles.shape[1] != 3
        or (len(triangles) and (triangles.min() < 0 or triangles.max() >= count))
        or matrix.shape != (4, 4)
        or card.shape != (4, 3)
    ):
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "portrait_rig reply: the rig's arrays do not fit together")
    camera = body["camera"]
    return PortraitRigData(
        vertices=vertices.astype(np.float32),
        triangles=triangles.astype(np.int32),
        uvs=uvs.astype(np.float32),
        shape_names=names,
        deltas=deltas.astype(np.float32),
        matrix=matrix.astype(np.float64),
        card=card.astype(np.float32),
        texture_png=bytes(reply.buffers[6]),
        width=int(body["width"]),
        height=int(body["height"]),
        camera=OrthoCamera(
            tuple(float(v) for v in camera["location"]),
            float(camera["ortho_scale"]),
            float(camera["clip_start"]),
            float(camera["clip_end"]),
        ),
        face=int(body["face"]),
        faces=int(body["faces"]),
        warnings=list(body.get("warnings", [])),
    )
