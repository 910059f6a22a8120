"""Checking requests on the main thread, before any work is queued: each parser returns the
request's fields as plain values or raises ``ProtocolError`` (answered at once with its code).
Clients send bytes and names, never paths: ``confined`` keeps every name inside its folder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from steadytalk_shared.protocol import ErrorCode, Message, ProtocolError
from steadytalk_shared.schema import CHANNELS, V1_CHANNELS

from ..performance.model import DEFAULT_SEED, FaceOptions

PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def confined(folder: Path, name: str) -> Path:
    """``folder / name`` for a plain file name; anything that would leave ``folder`` is refused."""
    if not PLAIN_NAME.fullmatch(name) or ".." in name:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{name!r} is not a plain file name")
    path = (folder / name).resolve()
    if path.parent != folder.resolve():
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{name!r} leaves the jobs folder")
    return path


def audio_and_transcript(request: Message) -> tuple[bytes, str | None]:
    """The one audio buffer and the optional transcript of a lipsync or render_audio request."""
    if len(request.buffers) != 1 or not isinstance(request.buffers[0], bytes):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{request.type} needs exactly one buffer: the audio file's bytes")
    transcript = request.body.get("transcript")
    if transcript is not None and not isinstance(transcript, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "transcript must be a string or absent")
    return request.buffers[0], transcript


def lipsync_params(request: Message) -> dict:
    body = request.body
    audio, transcript = audio_and_transcript(request)
    avatar = body.get("avatar")
    if avatar is not None and not isinstance(avatar, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "avatar must be a name or absent")
    recognizer = body.get("recognizer", "words")
    if recognizer not in ("words", "phones"):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "recognizer must be 'words' or 'phones'")
    return {
        "audio": audio,
        "transcript": transcript,
        "fps": number(body, "fps", 25.0),
        "strength": number(body, "smoothing", 1.0),
        "avatar": avatar,
        "whole_face": body.get("whole_face", True) is not False,
        "face": face_options(body),
        "recognizer": recognizer,
    }


def face_options(body: dict) -> FaceOptions:
    """The whole-face fields of a lipsync request (``protocol.LIPSYNC_FACE_FIELDS``)."""
    blink = body.get("blink_rate")
    seed = body.get("seed", DEFAULT_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "seed must be an integer")
    style = body.get("style")
    if style is not None and not isinstance(style, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "style must be a name or absent")
    # avatar:NAME, the manner of an avatar the server knows (resolved by the server, never a path)
    if style is not None and style.startswith("avatar:"):
        name = style.removeprefix("avatar:")
        if not PLAIN_NAME.fullmatch(name) or ".." in name:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"style {style!r}: avatar:NAME takes an avatar's name, not a path"
            )
    options = FaceOptions(
        blink_rate=None if blink is None else number(body, "blink_rate"),
        head_motion=number(body, "head_motion", 1.0),
        expressiveness=number(body, "expressiveness", 1.0),
        seed=seed,
        style=style,
    )
    try:
        options.check()
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc)) from None
    return options


def number(body: dict, name: str, default: float | None = None) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{name} must be a number")
    return float(value)


def integer(body: dict, name: str, low: int, high: int) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{name} must be an integer in {low}..{high}")
    return value


def avatar_name(body: dict) -> str:
    name = body.get("avatar")
    if not isinstance(name, str) or not name:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "body.avatar must name a trained avatar")
    return name


def render_open_params(request: Message) -> dict:
    body = request.body
    if len(request.buffers) > 1 or (request.buffers and not isinstance(request.buffers[0], bytes)):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "render_open takes at most one buffer: the audio file's bytes")
    fps = number(body, "fps")
    if not 1.0 <= fps <= 1000.0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "fps must be between 1 and 1000")
    return {
        "avatar": avatar_name(body),
        "fps": fps,
        "frames": integer(body, "frames", 1, 2**31),
        "audio": request.buffers[0] if request.buffers else None,
    }


def render_frames_params(request: Message, max_frames: int) -> dict:
    body = request.body
    if not isinstance(body.get("session"), str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "body.session must be a session id from render_open")
    if len(request.buffers) != 2:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "render_frames needs two buffers: shape passes and coefficients")
    shapes, coefficients = request.array(0), request.array(1)
    if shapes.dtype != np.uint8 or shapes.ndim != 4 or shapes.shape[-1] != 3:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "shape passes must be uint8 (N, S, S, 3)")
    n = len(shapes)
    if n == 0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "render_frames needs at least one shape pass")
    if n > max_frames:
        raise ProtocolError(
            ErrorCode.TOO_MANY_FRAMES, f"{n} frames in one request; this backend takes at most {max_frames}"
        )
    if coefficients.dtype != np.float32 or coefficients.shape not in ((n, len(CHANNELS)), (n, len(V1_CHANNELS))):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"coefficients must be float32 ({n}, {len(CHANNELS)})")
    coefficients = coefficients[:, : len(V1_CHANNELS)]  # the renderer draws the v1 channels
    if not np.isfinite(coefficients).all():
        raise ProtocolError(ErrorCode.BAD_REQUEST, "coefficients must be finite")
    references = body.get("references")
    if (
        not isinstance(references, list)
        or len(references) != n
        or not all(isinstance(r, int) and not isinstance(r, bool) for r in references)
    ):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "body.references must list one reference frame per shape pass")
    context_before = integer(body, "context_before", 0, n)
    count = integer(body, "count", 1, n - context_before)
    return {
        "session": body["session"],
        "first": integer(body, "first", 0, 2**31),
        "context_before": context_before,
        "count": count,
        "references": references,
        "shapes": shapes,
        "coefficients": coefficients,
    }


def render_audio_params(request: Message) -> dict:
    body = request.body
    audio, transcript = audio_and_transcript(request)
    return {
        "avatar": avatar_name(body),
        "audio": audio,
        "transcript": transcript,
        "smoothing": number(body, "smoothing", 1.0),
    }


def _optional_integer(body: dict, name: str, low: int, high: int, default: int | None) -> int | None:
    return default if body.get(name) is None else integer(body, name, low, high)


def portrait_options(body: dict, default_size: int) -> dict:
    """The picture-side fields of a portrait or portrait_rig request (``name``: the picture's file
    name, for messages only; the pipeline's own checks,
    such as the size range, answer with its message; these only refuse the wrong kinds)."""
    fps = number(body, "fps", 25.0)
    if not 1.0 <= fps <= 120.0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "fps must be between 1 and 120")
    smoothing = number(body, "smoothing", 1.0)
    if not 0.0 <= smoothing <= 10.0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "smoothing must be between 0 and 10")
    from ..portrait.picture import SIZES  # the pipeline's range, said once (a light import)

    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 200):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "name must be the picture's file name (1 to 200 characters)")
    if name is not None:  # only for messages ("the face in NAME is turned"): never opened
        name = name.replace("\\", "/").rsplit("/", 1)[-1] or None
    return {
        "name": name,
        "size": _optional_integer(body, "size", *SIZES, default_size),
        "fps": fps,
        "face": _optional_integer(body, "face", 1, 1000, None),
        "face_options": face_options(body),  # blinks, gaze, brows, head motion and their seed
        "smoothing": smoothing,
    }


def _picture(request: Message, count: int, what: str) -> bytes:
    buffers = request.buffers
    if len(buffers) != count or not all(isinstance(b, bytes) for b in buffers):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{request.type} needs exactly {count} buffer(s): {what}")
    if not buffers[0]:
        raise ProtocolError(ErrorCode.BAD_PORTRAIT, "the picture is empty (0 bytes); send the image file's bytes")
    return buffers[0]


def portrait_params(request: Message) -> dict:
    """``portrait``: buffers [picture file bytes, audio file bytes]; body as ``portrait_options``
    plus ``transcript``."""
    image = _picture(request, 2, "the picture's file bytes, then the audio file's bytes")
    transcript = request.body.get("transcript")
    if transcript is not None and not isinstance(transcript, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "transcript must be a string or absent")
    return {
        "image": image,
        "audio": request.buffers[1],
        "transcript": transcript,
        **portrait_options(request.body, 512),
    }


def portrait_rig_params(request: Message) -> dict:
    """``portrait_rig``: buffers [picture file bytes]; body ``size`` (the texture's longer side,
    1024 by default) and ``face``."""
    image = _picture(request, 1, "the picture's file bytes")
    options = portrait_options(request.body, 1024)
    return {"image": image, "size": options["size"], "face": options["face"], "name": options["name"]}
