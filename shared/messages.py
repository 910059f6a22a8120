"""The client's messages: request bodies built from Python values and replies read back into
them (no sockets here; ``client.py`` sends and receives). No torch, no bpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import protocol as wire
from .curves import LipsyncResult, Phone
from .protocol import Message
from .schema import CHANNELS, SCHEMA_VERSION, upgrade_curves


def picture_name(image: bytes | str | Path, name: str | None) -> dict:
    """The picture's file name for the backend's messages ("the face in NAME ..."); never a path."""
    name = name or (None if isinstance(image, bytes) else Path(image).name)
    return {"name": name} if name else {}


def file_bytes(source: bytes | str | Path) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def render_frames_message(
    session: str,
    first: int,
    context_before: int,
    count: int,
    references: list[int],
    shapes: np.ndarray,
    coefficients: np.ndarray,
) -> Message:
    """A ``render_frames`` request: shape passes (N, S, S, 3) uint8 and coefficients (N, C) of
    frames ``first - context_before`` onwards; the reply holds frames ``first .. first + count``."""
    body = {
        "session": session,
        "first": int(first),
        "context_before": int(context_before),
        "count": int(count),
        "references": [int(r) for r in references],
    }
    return Message(
        wire.RENDER_FRAMES,
        body=body,
        buffers=[np.ascontiguousarray(shapes, dtype=np.uint8), np.ascontiguousarray(coefficients, dtype=np.float32)],
    )


def result_from_reply(reply: Message) -> LipsyncResult:
    body = reply.body
    raw, smoothed, sigma = (np.array(reply.array(i), dtype=np.float32) for i in range(3))
    # Schema v2 servers add the head track (smoothed, raw) as two more arrays.
    head, head_raw = (np.array(reply.array(i), np.float32) for i in (3, 4)) if len(reply.buffers) >= 5 else (None, None)
    version = int(body["schema_version"])
    channels = tuple(body["channels"])
    if version < SCHEMA_VERSION:  # an older backend: its curves in this build's columns
        raw, smoothed = upgrade_curves(raw, version), upgrade_curves(smoothed, version)
        version, channels = SCHEMA_VERSION, CHANNELS
    return LipsyncResult(
        fps=float(body["fps"]),
        raw=raw,
        smoothed=smoothed,
        sigma=sigma,
        phones=[Phone(p[0], float(p[1]), float(p[2]), p[3]) for p in body["phones"]],
        duration=float(body["duration"]),
        mode=body["mode"],
        smoothing_strength=float(body["smoothing_strength"]),
        warnings=list(body.get("warnings", [])),
        channels=channels,
        schema_version=version,
        head=head,
        head_raw=head_raw,
        seed=body.get("seed"),
        transcript_text=(body.get("transcript") or {}).get("text", ""),
        transcript_source=(body.get("transcript") or {}).get("source", ""),
    )
