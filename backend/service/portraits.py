"""Talking portraits over the wire: ``portrait`` renders a picture + audio into an mp4 (as
``render_audio`` does for a trained avatar), ``portrait_rig`` fits the picture and sends the
textured rig Blender builds. The client sends the picture's and audio's bytes, never a path;
the only file written is the video in progress, inside the server's jobs folder."""

from __future__ import annotations

import numpy as np

from steadytalk_shared.png import encode_png
from steadytalk_shared.protocol import PORTRAIT_RIG_BUFFERS, ErrorCode, Message, ProtocolError

from .config import JobHost


class PortraitHost(JobHost):
    """The portrait requests of one server: its lip-sync engine per worker (so its audio limits
    apply), its frame and message limits, and its jobs folder."""

    def _options(self, params: dict):
        from ..portrait.pipeline import PortraitOptions

        keys = ("size", "fps", "face", "face_options", "smoothing")
        return PortraitOptions(**{k: params[k] for k in keys if k in params})

    def _fits(self, size: int, what: str) -> None:
        # Leave room for the header: a reply the client cannot take is better refused here.
        if size > self.config.max_message_bytes - 64 * 1024:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"the {what} is {size} bytes, over this backend's {self.config.max_message_bytes}-byte message "
                "limit; use a smaller size or shorter audio",
            )

    def portrait(self, request: Message, params: dict, progress) -> Message:
        from ..portrait.pipeline import render_portrait_bytes

        data, summary = render_portrait_bytes(
            params["image"],
            params["audio"],
            params["transcript"],
            self._options(params),
            progress,
            self._cancelled(request),
            engine=self._engine(),
            max_frames=self.config.max_frames_per_session,
            folder=self.jobs_dir,
            image_name=params["name"],
        )
        self._fits(len(data), "video")
        return request.reply(body=summary, buffers=[data])

    def rig(self, request: Message, params: dict, progress) -> Message:
        from ..portrait.rig import portrait_rig

        progress(0.0, "finding the face")
        rig, warnings, choice = portrait_rig(params["image"], self._options(params), params["name"])
        progress(0.8, "sending the rig")
        texture = encode_png(rig.texture)
        height, width = rig.texture.shape[:2]
        camera = rig.camera
        body = {
            "shape_names": list(rig.shape_names),
            "width": int(width),
            "height": int(height),
            "camera": {
                "location": [float(v) for v in camera.location],
                "ortho_scale": float(camera.ortho_scale),
                "clip_start": float(camera.clip_start),
                "clip_end": float(camera.clip_end),
            },
            "face": choice.index,
            "faces": choice.count,
            "warnings": warnings,
            "buffers": list(PORTRAIT_RIG_BUFFERS),
        }
        buffers = [
            np.ascontiguousarray(rig.vertices, dtype=np.float32),
            np.ascontiguousarray(rig.triangles, dtype=np.int32),
            np.ascontiguousarray(rig.uvs, dtype=np.float32),
            np.ascontiguousarray(rig.deltas, dtype=np.float32),
            np.ascontiguousarray(rig.matrix, dtype=np.float64),
            np.ascontiguousarray(rig.card, dtype=np.float32),
            texture,
        ]
        self._fits(sum(b.nbytes if isinstance(b, np.ndarray) else len(b) for b in buffers), "rig")
        return request.reply(body=body, buffers=buffers)
