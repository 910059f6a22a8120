"""Client of the Steady Talk backend, used by the Blender add-on and by scripts.

Lazy Pirate (zguide): a DEALER socket, every receive polled under a timeout; on timeout the
socket is closed and reopened and an idempotent request is retried; replies whose id is not
the pending request's (stale replies of an abandoned try) are dropped. Long jobs stream
``progress`` messages, each of which resets the inactivity timeout, so a two-hour file
does not need a two-hour timeout to be safe.

Needs pyzmq and msgpack (bundled as wheels with the Blender extension); no torch, no bpy.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import zmq

from . import protocol as wire
from .curves import LipsyncResult
from .messages import file_bytes, picture_name, result_from_reply
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


def is_loopback(endpoint: str) -> bool:
    """True for tcp://127.x / [::1] / localhost and for ipc:// (same machine)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class CurveKeys:
    """A client's CURVE key pair and the server's public key (Z85), for a backend that is
    exposed beyond loopback. Made by ``steadytalk keys``."""

    public: bytes
    secret: bytes
    server: bytes

    @classmethod
    def load(cls, client_secret_file: str | Path, server_public_file: str | Path) -> CurveKeys:
        import zmq.auth

        for path, what in ((client_secret_file, "client key (.key_secret)"), (server_public_file, "server key (.key)")):
            if not Path(path).is_file():
                raise BackendError("bad_keys", f"The {what} file {path} does not exist.")
        public, secret = zmq.auth.load_certificate(str(client_secret_file))
        server, _ = zmq.auth.load_certificate(str(server_public_file))
        if secret is None:
            raise BackendError("bad_keys", f"{client_secret_file} holds no secret key; use the .key_secret file.")
        return cls(public, secret, server)


class BackendClient:
    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = 10.0,
        retries: int = 2,
        context: zmq.Context | None = None,
        max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.curve = curve
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
            if self.curve is not None:
                self._socket.curve_publickey = self.curve.public
                self._socket.curve_secretkey = self.curve.secret
                self._socket.curve_serverkey = self.curve.server
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
        avatar: str | None = None,
        face: dict | None = None,
        recognizer: str = "words",
    ) -> LipsyncResult:
        """Lip-sync audio on the backend. ``audio`` is the file's bytes or a local path whose
        bytes are sent (the backend never reads client paths). Without a transcript,
        ``recognizer`` "words" (the default) recognizes the words and aligns them, "phones"
        recognizes phones only. With ``avatar`` (a name the
        backend knows), in that person's manner: their audio-to-expression model and smoother.
        ``face``: the whole-face options (``protocol.LIPSYNC_FACE_FIELDS``), e.g.
        ``{"blink_rate": 0, "head_motion": 0.5, "seed": 3}``."""
        data = audio if isinstance(audio, bytes) else Path(audio).read_bytes()
        body: dict = {"fps": float(fps), "smoothing": float(smoothing), "recognizer": recognizer}
        unknown = set(face or {}) - set(wire.LIPSYNC_FACE_FIELDS)
        if unknown:
            raise ValueError(f"unknown whole-face options: {', '.join(sorted(unknown))}")
        body.update({k: v for k, v in (face or {}).items() if v is not None})
        if avatar is not None:
            body["avatar"] = avatar
        if transcript is not None:
            body["transcript"] = transcript
        reply = self.request(
            Message(wire.LIPSYNC, body=body, buffers=[data]), timeout=timeout, progress=progress, cancelled=cancelled
        )
        return result_from_reply(reply)

    def render_open(
        self,
        avatar: str,
        frames: int,
        fps: float,
        audio: bytes | str | Path | None = None,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> dict:
        """Open a photoreal render session on ``avatar`` (a name the backend knows) for a pass of
        ``frames`` frames whose first frame starts with ``audio``. Returns the session's facts:
        ``session``, ``size`` (shape-pass side), ``context``, ``loop``, ``width``/``height``..."""
        buffers = [] if audio is None else [audio if isinstance(audio, bytes) else Path(audio).read_bytes()]
        message = Message(
            wire.RENDER_OPEN, body={"avatar": avatar, "frames": int(frames), "fps": float(fps)}, buffers=buffers
        )
        return self.request(message, timeout=timeout, progress=progress, cancelled=cancelled).body

    def pipeline(
        self,
        messages: Iterable[Message],
        in_flight: int = 4,
        timeout: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[Message, Message]]:
        """Send ``messages`` keeping at most ``in_flight`` unanswered; yield (request, reply)
        as replies arrive. No retries: a silent backend raises BackendUnavailable, an error
        reply BackendError; what was yielded before stays valid (callers resume from it)."""
        timeout = self.timeout if timeout is None else timeout
        socket = self._connect()
        pending: dict[str, Message] = {}
        source = iter(messages)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < in_flight:
                    message = next(source, None)
                    if message is None:
                        exhausted = True
                        break
                    pending[message.id] = message
                    socket.send_multipart(wire.encode(message), copy=False)
                if not pending:
                    return
                deadline = time.monotonic() + timeout
                reply = None
                while reply is None:
                    if cancelled is not None and cancelled():
                        return
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise BackendUnavailable(self.endpoint, timeout, 1)
                    if not socket.poll(int(min(remaining, 0.1) * 1000) + 1, zmq.POLLIN):
                        continue
                    try:
                        candidate = wire.decode(socket.recv_multipart(), self.max_message_bytes)
                    except ProtocolError as exc:
                        raise BackendError(exc.code, f"unreadable reply from the backend: {exc.message}") from exc
                    if candidate.id not in pending:
                        continue
                    if candidate.status == wire.PROGRESS:
                        deadline = time.monotonic() + timeout
                        continue
                    reply = candidate
                request = pending.pop(reply.id)
                if reply.status == wire.ERROR:
                    error = reply.error or {}
                    raise BackendError(error.get("code", "error"), error.get("message", "unknown backend error"))
                yield request, reply
        finally:
            if pending:
                self.close()  # abandoned requests: a fresh socket drops their late replies

    def render_audio(
        self,
        avatar: str,
        audio: bytes | str | Path,
        transcript: str | None = None,
        smoothing: float = 1.0,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[bytes, dict]:
        """Audio -> (mp4 bytes, summary), rendered whole on the backend."""
        data = audio if isinstance(audio, bytes) else Path(audio).read_bytes()
        body: dict = {"avatar": avatar, "smoothing": float(smoothing)}
        if transcript is not None:
            body["transcript"] = transcript
        reply = self.request(
            Message(wire.RENDER_AUDIO, body=body, buffers=[data]),
            timeout=timeout,
            progress=progress,
            cancelled=cancelled,
        )
        return bytes(reply.buffers[0]), reply.body

    def portrait(
        self,
        image: bytes | str | Path,
        audio: bytes | str | Path,
        transcript: str | None = None,
        size: int = 512,
        fps: float = 25.0,
        face: int | None = None,
        seed: int = 0,
        name: str | None = None,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[bytes, dict]:
        """A picture and speech -> (mp4 bytes, summary): the talking portrait, made on the backend."""
        body: dict = {"size": int(size), "fps": float(fps), "seed": int(seed)}
        if face is not None:
            body["face"] = int(face)
        if transcript is not None:
            body["transcript"] = transcript
        buffers = [file_bytes(image), file_bytes(audio)]
        body.update(picture_name(image, name))
        reply = self.request(
            Message(wire.PORTRAIT, body=body, buffers=buffers), timeout=timeout, progress=progress, cancelled=cancelled
        )
        return bytes(reply.buffers[0]), reply.body

    def portrait_rig(
        self,
        image: bytes | str | Path,
        size: int = 1024,
        face: int | None = None,
        name: str | None = None,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ):
        """A picture -> ``portrait_rig.PortraitRigData``: the fitted, textured face rig."""
        from .portrait_rig import rig_from_reply

        body: dict = {"size": int(size)}
        if face is not None:
            body["face"] = int(face)
        body.update(picture_name(image, name))
        message = Message(wire.PORTRAIT_RIG, body=body, buffers=[file_bytes(image)])
        return rig_from_reply(self.request(message, timeout=timeout, progress=progress, cancelled=cancelled))
