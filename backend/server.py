"""ZeroMQ backend: a ROUTER socket serving ping/status/lipsync/cancel.

Only the main thread touches the ROUTER socket (ZeroMQ sockets are not thread-safe). Jobs run
on a thread pool; workers put finished replies on a queue and wake the main loop through an
inproc PUSH/PULL pair, so a long lip-sync never delays a ping. Malformed, oversized or
wrong-version messages get an error reply and the server keeps serving.
"""

from __future__ import annotations

import logging
import platform
import queue
import signal
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import zmq

from steadytalk_shared import protocol as wire
from steadytalk_shared.protocol import ErrorCode, Message, ProtocolError
from steadytalk_shared.schema import SCHEMA_VERSION

from . import __version__
from .audio import AudioConfig
from .engine import EngineConfig, LipsyncEngine
from .errors import CancelledError, SteadyTalkError

log = logging.getLogger(__name__)

_ERROR_CODES = {
    "bad_audio": ErrorCode.BAD_AUDIO,
    "audio_too_long": ErrorCode.AUDIO_TOO_LONG,
    "bad_transcript": ErrorCode.BAD_TRANSCRIPT,
    "cancelled": ErrorCode.CANCELLED,
}


@dataclass(frozen=True)
class ServerConfig:
    # Loopback by default: nothing beyond this machine can reach the backend unless asked.
    bind: str = "tcp://127.0.0.1:5757"
    workers: int = 2
    max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES
    # Poll interval of the main loop: bounds how long a SIGTERM waits to be noticed.
    poll_ms: int = 100
    audio: AudioConfig = AudioConfig()


def device_info() -> dict:
    try:
        import torch

        cuda = torch.cuda.is_available()
        return {
            "device": "cuda" if cuda else "cpu",
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "torch": torch.__version__,
        }
    except ImportError:  # the lip-sync path itself needs no torch
        return {"device": "cpu", "gpu": None, "torch": None}


class LipsyncServer:
    def __init__(self, config: ServerConfig | None = None, context: zmq.Context | None = None) -> None:
        self.config = config or ServerConfig()
        self.context = context or zmq.Context.instance()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        # Transport-level cap (4x the protocol limit): bigger messages are dropped by ZeroMQ
        # before they use memory; between 1x and 4x the client gets a TOO_LARGE reply.
        self.router.setsockopt(zmq.MAXMSGSIZE, 4 * self.config.max_message_bytes)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.router.bind(self.config.bind)
        self.endpoint = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._wake_address = f"inproc://steadytalk-wake-{id(self)}"
        self._wake = self.context.socket(zmq.PULL)
        self._wake.bind(self._wake_address)
        self._local = threading.local()
        self._outbox: queue.Queue[tuple[bytes, Message]] = queue.Queue()
        self._stop = threading.Event()
        self._cancelled: set[str] = set()
        self._active: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, self.config.workers), thread_name_prefix="steadytalk-job")
        # One engine per worker thread: pocketsphinx decoders are not shared across threads,
        # so two jobs really run in parallel.
        self._engines = threading.local()
        self._info = {
            "server_version": __version__,
            "protocol": wire.PROTOCOL_VERSION,
            "schema_version": SCHEMA_VERSION,
            "platform": platform.platform(),
            **device_info(),
        }

    # -- lifecycle -----------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM stop the loop after the current poll; running jobs are abandoned."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())

    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(self.config.poll_ms))
                if self._wake in events:
                    while self._wake.poll(0):
                        self._wake.recv()
                self._flush_outbox()
                if self.router in events:
                    while self.router.poll(0) and not self._stop.is_set():
                        self._handle(self.router.recv_multipart(copy=True))
                        self._flush_outbox()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            self._cancelled.update(self._active)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._flush_outbox()
        self.router.close(linger=0)
        self._wake.close(linger=0)

    # -- message handling (main thread) --------------------------------------------------
    def _send(self, identity: bytes, message: Message) -> None:
        try:
            self.router.send_multipart([identity, *wire.encode(message)], copy=False)
        except zmq.ZMQError as exc:  # the peer went away: nothing to deliver to
            log.info("could not deliver reply %s: %s", message.id, exc)

    def _flush_outbox(self) -> None:
        while True:
            try:
                identity, message = self._outbox.get_nowait()
            except queue.Empty:
                return
            self._send(identity, message)

    def _handle(self, frames: list[bytes]) -> None:
        identity, payload = frames[0], frames[1:]
        try:
            request = wire.decode(payload, self.config.max_message_bytes)
        except ProtocolError as exc:
            reply = Message("error", wire.ERROR, id=exc.request_id, error={"code": exc.code, "message": exc.message})
            self._send(identity, reply)
            return
        if request.status != wire.REQUEST:
            self._send(identity, request.error_reply(ErrorCode.BAD_ENVELOPE, "clients may only send requests"))
            return
        handler = {
            wire.PING: self._ping,
            wire.STATUS: self._status,
            wire.CANCEL: self._cancel,
            wire.LIPSYNC: self._submit_lipsync,
        }.get(request.type)
        if handler is None:
            self._send(identity, request.error_reply(ErrorCode.UNKNOWN_TYPE, f"unknown message type {request.type!r}"))
            return
        handler(identity, request)

    def _ping(self, identity: bytes, request: Message) -> None:
        self._send(identity, request.reply(body=self._info))

    def _status(self, identity: bytes, request: Message) -> None:
        with self._lock:
            jobs = len(self._active)
        self._send(identity, request.reply(body={**self._info, "jobs_running": jobs}))

    def _cancel(self, identity: bytes, request: Message) -> None:
        target = request.body.get("target")
        if not isinstance(target, str):
            self._send(identity, request.error_reply(ErrorCode.BAD_REQUEST, "cancel needs body.target (a request id)"))
            return
        with self._lock:
            known = target in self._active
            if known:
                self._cancelled.add(target)
        self._send(identity, request.reply(body={"target": target, "was_running": known}))

    def _submit_lipsync(self, identity: bytes, request: Message) -> None:
        try:
            params = _lipsync_params(request)
        except ProtocolError as exc:
            self._send(identity, request.error_reply(exc.code, exc.message))
            return
        with self._lock:
            self._active[request.id] = identity
        self._pool.submit(self._run_lipsync, identity, request, params)

    # -- jobs (worker threads) -----------------------------------------------------------
    def _post(self, identity: bytes, message: Message) -> None:
        self._outbox.put((identity, message))
        wake = getattr(self._local, "wake", None)
        if wake is None:
            wake = self._local.wake = self.context.socket(zmq.PUSH)
            wake.setsockopt(zmq.LINGER, 0)
            wake.connect(self._wake_address)
        wake.send(b"", zmq.NOBLOCK)

    def _engine(self) -> LipsyncEngine:
        engine = getattr(self._engines, "engine", None)
        if engine is None:
            engine = self._engines.engine = LipsyncEngine(EngineConfig(audio=self.config.audio))
        return engine

    def _run_lipsync(self, identity: bytes, request: Message, params: dict) -> None:
        def progress(fraction: float, stage: str) -> None:
            self._post(identity, request.reply(wire.PROGRESS, {"fraction": round(fraction, 4), "stage": stage}))

        def cancelled() -> bool:
            return request.id in self._cancelled or self._stop.is_set()

        try:
            result = self._engine().run(params.pop("audio"), progress=progress, cancelled=cancelled, **params)
            body = {
                "fps": result.fps,
                "duration": result.duration,
                "mode": result.mode,
                "smoothing_strength": result.smoothing_strength,
                "channels": list(result.channels),
                "schema_version": result.schema_version,
                "phones": [[p.phone, p.start, p.end, p.word] for p in result.phones],
                "warnings": result.warnings,
            }
            reply = request.reply(body=body, buffers=[result.raw, result.smoothed, result.sigma])
        except CancelledError as exc:
            reply = request.error_reply(ErrorCode.CANCELLED, str(exc))
        except SteadyTalkError as exc:
            reply = request.error_reply(_ERROR_CODES.get(exc.code, ErrorCode.BAD_REQUEST), str(exc))
        except ValueError as exc:
            reply = request.error_reply(ErrorCode.BAD_REQUEST, str(exc))
        except Exception:  # a bug: report it with its traceback instead of dying silently
            log.exception("lipsync job %s failed", request.id)
            reply = request.error_reply(ErrorCode.INTERNAL, "internal error:\n" + traceback.format_exc(limit=8))
        finally:
            with self._lock:
                self._active.pop(request.id, None)
                self._cancelled.discard(request.id)
        self._post(identity, reply)


def _lipsync_params(request: Message) -> dict:
    body = request.body
    if len(request.buffers) != 1 or not isinstance(request.buffers[0], bytes):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "lipsync needs exactly one buffer: the audio file's bytes")
    transcript = body.get("transcript")
    if transcript is not None and not isinstance(transcript, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "transcript must be a string or absent")
    fps, strength = body.get("fps", 25.0), body.get("smoothing", 1.0)
    for name, value in (("fps", fps), ("smoothing", strength)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"{name} must be a number")
    return {"audio": request.buffers[0], "transcript": transcript, "fps": float(fps), "strength": float(strength)}
