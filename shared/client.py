"""Client of the Steady Talk backend, used by the Blender add-on and by scripts.

Lazy Pirate (zguide): a DEALER socket, every receive polled under a timeout; on timeout the
socket is closed and reopened and an idempotent request is retried; replies whose id is not
the pending request's (stale replies of an abandoned try) are dropped. Long jobs stream
``progress`` messages, each of which resets the inactivity timeout, so a two-hour file
does not need a two-hour timeout to be safe.

Needs pyzmq and msgpack (bundled as wheels with the Blender extension); no torch, no bpy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq

from . import protocol as wire
from .curves import LipsyncResult, Phone
from .protocol import Message, ProtocolError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5757"


class BackendError(Exception):
    """The backend answered with an error; ``code`` is one of ``protocol.ErrorCode``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BackendUnavailable(BackendError):
    """No answer from the backend within the timeout, after the retries."""

    def __init__(self, endpoint: str, timeout: float, attempts: int) -> None:
        super().__init__(
            "unavailable",
            f"No answer from the Steady Talk backend at {endpoint} after {attempts} attempt(s) of {timeout:g} s. "
            "Start it with 'steadytalk serve' (or enable auto-start in the add-on preferences) and check the address.",
        )


ProgressCallback = Callable[[float, str], None]


class BackendClient:
    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = 10.0,
        retries: int = 2,
        context: zmq.Context | None = None,
        max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.max_message_bytes = max_message_bytes
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket | None = None

    def __enter__(self) -> BackendClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            self._socket = self._context.socket(zmq.DEALER)
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.connect(self.endpoint)
        return self._socket

    # -- generic request -----------------------------------------------------------------
    def request(
        self,
        message: Message,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Message:
        """Send ``message`` and return the final reply (``ok``); raise BackendError otherwise.

        ``timeout`` is the longest silence tolerated from the backend; progress messages reset
        it. ``cancelled`` is polled while waiting: when it returns True a cancel request is sent.
        """
        timeout = self.timeout if timeout is None else timeout
        frames = wire.encode(message)
        attempts = self.retries + 1
        for _ in range(attempts):
            socket = self._connect()
            socket.send_multipart(frames, copy=False)
            reply = self._await(socket, message.id, timeout, progress, cancelled)
            if reply is not None:
                if reply.status == wire.ERROR:
                    error = reply.error or {}
                    raise BackendError(error.get("code", "error"), error.get("message", "unknown backend error"))
                return reply
            self.close()  # Lazy Pirate: a fresh socket, so a late reply of this try cannot confuse the next
        raise BackendUnavailable(self.endpoint, timeout, attempts)

    def _await(
        self,
        socket: zmq.Socket,
        request_id: str,
        timeout: float,
        progress: ProgressCallback | None,
        cancelled: Callable[[], bool] | None,
    ) -> Message | None:
        deadline = time.monotonic() + timeout
        cancel_sent = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if cancelled is not None and not cancel_sent and cancelled():
                socket.send_multipart(wire.encode(Message(wire.CANCEL, body={"target": request_id})))
                cancel_sent = True
            # Short polls when a cancel hook is given, so Esc in Blender acts within 0.1 s.
            wait = min(remaining, 0.1) if cancelled is not None else remaining
            if not socket.poll(int(wait * 1000) + 1, zmq.POLLIN):
                continue
            try:
                reply = wire.decode(socket.recv_multipart(), self.max_message_bytes)
            except ProtocolError as exc:
                raise BackendError(exc.code, f"unreadable reply from the backend: {exc.message}") from exc
            if reply.id != request_id:
                continue  # stale reply of an earlier try, or the cancel acknowledgement
            if reply.status == wire.PROGRESS:
                deadline = time.monotonic() + timeout
                if progress is not None:
                    progress(float(reply.body.get("fraction", 0.0)), str(reply.body.get("stage", "")))
                continue
            return reply

    # -- typed calls ---------------------------------------------------------------------
    def ping(self, timeout: float | None = None) -> dict:
        """Versions and device of the backend; raises BackendError on protocol mismatch."""
        return self.request(Message(wire.PING), timeout=timeout).body

    def status(self, timeout: float | None = None) -> dict:
        return self.request(Message(wire.STATUS), timeout=timeout).body

    def lipsync(
        self,
        audio: bytes | str | Path,
        transcript: str | None = None,
        fps: float = 25.0,
        smoothing: float = 1.0,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> LipsyncResult:
        """Lip-sync audio on the backend. ``audio`` is the file's bytes or a local path whose
        bytes are sent (the backend never reads client paths)."""
        data = audio if isinstance(audio, bytes) else Path(audio).read_bytes()
        body = {"fps": float(fps), "smoothing": float(smoothing)}
        if transcript is not None:
            body["transcript"] = transcript
        reply = self.request(
            Message(wire.LIPSYNC, body=body, buffers=[data]), timeout=timeout, progress=progress, cancelled=cancelled
        )
        return result_from_reply(reply)


def result_from_reply(reply: Message) -> LipsyncResult:
    body = reply.body
    raw, smoothed, sigma = (np.array(reply.array(i), dtype=np.float32) for i in range(3))
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
        channels=tuple(body["channels"]),
        schema_version=int(body["schema_version"]),
    )
