"""Wire protocol between the backend and its clients (Blender add-on, batch tools).

A message is a ZeroMQ multipart message: one msgpack header frame, then raw binary frames
for bulk data (audio bytes, float32 arrays), never pickle. The header::

    {"protocol": 1, "id": "<request id>", "type": "lipsync", "status": "request",
     "body": {...}, "error": {"code": ..., "message": ...} | None,
     "buffers": [{"dtype": "<f4", "shape": [T, C]} | {"dtype": "bytes"}, ...]}

``status`` is ``request`` from clients; replies carry the request's ``id`` and ``ok``,
``error`` or (zero or more, before the final reply) ``progress``. The protocol version is
independent of the package version (jupyter_client does the same) and changes only when
the header or a message body changes incompatibly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
# 256 MiB: two hours of 16-bit mono 16 kHz audio is 230 MB as WAV; compressed formats are far smaller.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# Message types
PING = "ping"
STATUS = "status"
LIPSYNC = "lipsync"
# Optional body fields of a lipsync request for the whole face (schema v2; servers of v1 ignore
# them): blink_rate (per minute, 0 none; absent: natural), head_motion and expressiveness
# (scales, 0 still), seed (integer), style (a name), whole_face (false: the mouth only).
# The reply then carries two more float32 arrays: head (T, 3) smoothed and head_raw (T, 3).
LIPSYNC_FACE_FIELDS = ("blink_rate", "head_motion", "expressiveness", "seed", "style", "whole_face")
CANCEL = "cancel"
# Photoreal rendering with a trained avatar (see backend/service/requests.py for the bodies).
RENDER_OPEN = "render_open"  # audio for a pass -> a session
RENDER_FRAMES = "render_frames"  # shape passes of a run of frames (+ context) -> photoreal frames
RENDER_AUDIO = "render_audio"  # audio -> an mp4, rendered whole on the backend
# Talking portraits from one picture, no training (bodies below, under PORTRAIT_RIG_BUFFERS).
PORTRAIT = "portrait"  # picture + audio -> an mp4
PORTRAIT_RIG = "portrait_rig"  # picture -> the textured face rig (mesh, shape keys, texture, card, camera)

# ``portrait`` request: buffers [picture file bytes (PNG, JPEG, WebP, TIFF, BMP, GIF), audio file
# bytes]; body ``transcript`` (optional), ``fps`` (25), ``size`` (the video's longer side, 512,
# 128..4096), ``face`` (1 = leftmost; absent: the largest), ``seed`` (0), ``smoothing`` (1.0),
# ``name`` (the picture's file name, only for the messages; never opened).
# Progress replies, then ``ok`` with buffers [mp4 bytes (H.264 + AAC)] and body ``frames``,
# ``fps``, ``duration``, ``size`` [w, h], ``face``, ``faces``, ``mode``, ``seed``, ``warnings``.
#
# ``portrait_rig`` request: buffers [picture file bytes]; body ``size`` (the texture's longer
# side, 1024), ``face`` and ``name``. Reply body: ``shape_names`` (the schema's ARKit names, the order of
# the deltas), ``width``/``height`` (the texture, = the contract space's image), ``camera``
# (``location``, ``ortho_scale``, ``clip_start``, ``clip_end``: render_contract's orthographic
# camera, rotation identity), ``face``, ``faces``, ``warnings``, ``buffers`` (the names below);
# buffers, in this order:
PORTRAIT_RIG_BUFFERS = (
    "vertices",  # (V, 3) <f4, the person's neutral face, model metres (Y up, Z out of the face)
    "triangles",  # (F, 3) <i4, counter-clockwise seen from outside
    "uvs",  # (V, 2) <f4, texture coordinates (u right, v up)
    "deltas",  # (S, V, 3) <f4, shape key offsets at weight 1, in ``shape_names`` order
    "matrix",  # (4, 4) <f8, model metres -> contract space (the object's matrix_world)
    "card",  # (4, 3) <f4, contract-space corners of the background card (TL, TR, BR, BL), behind the head
    "texture",  # bytes: PNG, 8-bit RGB, width x height: the picture (the card and the face use it)
)

# Statuses
REQUEST = "request"
OK = "ok"
ERROR = "error"
PROGRESS = "progress"


class ErrorCode:
    """Codes of error replies; clients switch on these, people read the message."""

    BAD_ENVELOPE = "bad_envelope"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"
    BAD_REQUEST = "bad_request"
    BAD_AUDIO = "bad_audio"
    AUDIO_TOO_LONG = "audio_too_long"
    BAD_TRANSCRIPT = "bad_transcript"
    CANCELLED = "cancelled"
    UNKNOWN_AVATAR = "unknown_avatar"
    UNKNOWN_SESSION = "unknown_session"  # expired or lost with a backend restart: open it again
    TOO_MANY_FRAMES = "too_many_frames"
    BAD_PORTRAIT = "bad_portrait"  # not a picture, no face, a face too small, no face N
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A message that cannot be decoded or is not allowed; carries the error code to reply with."""

    def __init__(self, code: str, message: str, request_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass
class Message:
    type: str
    status: str = REQUEST
    body: dict[str, Any] = field(default_factory=dict)
    buffers: list[Any] = field(default_factory=list)  # bytes or numpy arrays
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    error: dict[str, str] | None = None
    protocol: int = PROTOCOL_VERSION

    def reply(self, status: str = OK, body: dict | None = None, buffers: list | None = None) -> Message:
        return Message(self.type, status, body or {}, buffers or [], id=self.id)

    def error_reply(self, code: str, message: str) -> Message:
        return Message(self.type, ERROR, {}, [], id=self.id, error={"code": code, "message": message})

    def array(self, index: int) -> np.ndarray:
        value = self.buffers[index]
        if not isinstance(value, np.ndarray):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"buffer {index} is not an array", self.id)
        return value


def encode(message: Message) -> list[bytes | memoryview]:
    """Message -> multipart frames (header, *buffers)."""
    descriptors = []
    frames: list[bytes | memoryview] = []
    for buffer in message.buffers:
        if isinstance(buffer, np.ndarray):
            array = np.ascontiguousarray(buffer)
            if array.dtype.byteorder == ">" or array.dtype.kind not in "fiub":
                raise ValueError(f"cannot send arrays of dtype {array.dtype}")
            descriptors.append({"dtype": array.dtype.newbyteorder("<").str, "shape": list(array.shape)})
            frames.append(memoryview(array).cast("B"))
        else:
            descriptors.append({"dtype": "bytes"})
            frames.append(bytes(buffer))
    header = {
        "protocol": message.protocol,
        "id": message.id,
        "type": message.type,
        "status": message.status,
        "body": message.body,
        "error": message.error,
        "buffers": descriptors,
    }
    return [msgpack.packb(header, use_bin_type=True), *frames]


_ALLOWED_DTYPES = {"<f4", "<f8", "<i2", "<i4", "<i8", "|u1", "<u2"}


def decode(frames: list[bytes], max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """Multipart frames -> Message. Raises ProtocolError for anything malformed or too large."""
    if not frames:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "empty message")
    size = sum(len(f) for f in frames)
    if size > max_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message is {size} bytes; the limit is {max_bytes}")
    try:
        header = msgpack.unpackb(frames[0], raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
    except Exception as exc:  # msgpack raises several unrelated types for garbage input
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"header is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "header must be a map")
    request_id = header.get("id") if isinstance(header.get("id"), str) else ""
    version = header.get("protocol")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not supported; this side speaks {PROTOCOL_VERSION}. "
            "Update the add-on and the backend to the same release.",
            request_id,
        )
    for key, kind in (("id", str), ("type", str), ("status", str), ("body", dict), ("buffers", list)):
        if not isinstance(header.get(key), kind):
            raise ProtocolError(
                ErrorCode.BAD_ENVELOPE, f"header field {key!r} missing or not a {kind.__name__}", request_id
            )
    descriptors = header["buffers"]
    if len(descriptors) != len(frames) - 1:
        raise ProtocolError(
            ErrorCode.BAD_ENVELOPE,
            f"header lists {len(descriptors)} buffers but {len(frames) - 1} were sent",
            request_id,
        )
    buffers = [_decode_buffer(d, f, request_id) for d, f in zip(descriptors, frames[1:], strict=True)]
    error = header.get("error")
    return Message(
        type=header["type"],
        status=header["status"],
        body=header["body"],
        buffers=buffers,
        id=header["id"],
        error=error if isinstance(error, dict) else None,
        protocol=version,
    )


def _decode_buffer(descriptor: Any, frame: bytes, request_id: str) -> Any:
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("dtype"), str):
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, "buffer descriptor must be a map with a dtype", request_id)
    dtype = descriptor["dtype"]
    if dtype == "bytes":
        return bytes(frame)
    shape = descriptor.get("shape")
    if dtype not in _ALLOWED_DTYPES:
        raise ProtocolError(ErrorCode.BAD_ENVELOPE, f"buffer dtype {dtype!r} is not allowed", request_id)
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape) or len(shape) > 4:
        raise ProtocolError(
            ErrorCode.BAD_ENVELOPE, "buffer shape must be a list of up to 4 non-negative ints", request_id
        )
    itemsize = np.dtype(dtype).itemsize
    if int(np.prod(shape, dtype=np.int64)) * itemsize != len(frame):
        raise ProtocolError(
            ErrorCode.BAD_ENVELOPE, f"buffer of {len(frame)} bytes does not match shape {shape}", request_id
        )
    return np.frombuffer(frame, dtype=dtype).reshape(shape)
