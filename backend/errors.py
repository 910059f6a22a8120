"""User-facing errors: each says what went wrong and what to do, and the CLI and server
turn them into a one-line message (never a traceback)."""

from __future__ import annotations


class SteadyTalkError(Exception):
    """An error caused by the user's input or setup, with a stable machine-readable code."""

    code = "error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class AudioError(SteadyTalkError):
    code = "bad_audio"


class AudioTooLongError(AudioError):
    code = "audio_too_long"


class TranscriptError(SteadyTalkError):
    code = "bad_transcript"


class CancelledError(SteadyTalkError):
    code = "cancelled"


class TooManyFramesError(SteadyTalkError):
    """More frames than a server allows in one request (its ``--max-frames``/session limits)."""

    code = "too_many_frames"
