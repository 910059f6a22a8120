"""ZeroMQ backend: a ROUTER socket serving ping/status/cancel, lip-sync, photoreal renders and
talking portraits.

Only the main thread touches the ROUTER socket (ZeroMQ sockets are not thread-safe). Jobs run
on worker threads fed by a ``FairQueue`` (round-robin across clients, so one client streaming
thousands of frames cannot starve another); workers put finished replies on a queue and wake
the main loop through an inproc PUSH/PULL pair, so a long job never delays a ping. Lip-sync
jobs run further out, in a child process per worker thread (``lipsync_worker``), so a search
stuck in native code or a job that balloons is killed instead of freezing the loop. Malformed,
oversized or wrong-version messages get an error reply and the server keeps serving.

Safe to expose: loopback by default; any other address needs CURVE keys (``steadytalk keys``)
and only clients whose public key is in the keys folder's ``authorized`` directory get through
the handshake. Clients send bytes, never paths: an avatar is named, not located, and resolved
inside the server's ``--avatars`` folders; the only files the server writes are in its jobs
folder. Requests are capped in bytes, frames per request and frames per session.
"""

from __future__ import annotations

import logging
import platform
import queue
import signal
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq

from steadytalk_shared import protocol as wire
from steadytalk_shared.client import is_loopback
from steadytalk_shared.protocol import ErrorCode, Message, ProtocolError
from steadytalk_shared.schema import SCHEMA_VERSION

from .. import __version__
from ..errors import CancelledError, SteadyTalkError
from ..lipsync.engine import EngineConfig, LipsyncEngine
from ..lipsync.recognizer import WordRecognizerConfig
from .avatars import AvatarHost
from .config import ServerConfig, ServerSetupError, device_info
from .fair_queue import FairQueue
from .lipsync_worker import LipsyncProcess
from .portraits import PortraitHost
from .requests import lipsync_params, portrait_params, portrait_rig_params, render_audio_params, render_open_params

log = logging.getLogger(__name__)

_ERROR_CODES = {
    "bad_audio": ErrorCode.BAD_AUDIO,
    "audio_too_long": ErrorCode.AUDIO_TOO_LONG,
    "bad_transcript": ErrorCode.BAD_TRANSCRIPT,
    "cancelled": ErrorCode.CANCELLED,
    "too_many_frames": ErrorCode.TOO_MANY_FRAMES,
    "bad_portrait": ErrorCode.BAD_PORTRAIT,
    "internal": ErrorCode.INTERNAL,
    "bad_setting": ErrorCode.INTERNAL,  # the backend's own model setting, not the request
}


class LipsyncServer:
    def __init__(self, config: ServerConfig | None = None, context: zmq.Context | None = None) -> None:
        self.config = config or ServerConfig()
        device = device_info(self.config.device)  # before binding: a bad --device stops here
        self.context = context or zmq.Context.instance()
        self._authenticator = None
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        # Transport-level cap (4x the protocol limit): bigger messages are dropped by ZeroMQ
        # before they use memory; between 1x and 4x the client gets a TOO_LARGE reply.
        self.router.setsockopt(zmq.MAXMSGSIZE, 4 * self.config.max_message_bytes)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self._secure(self.config)
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
        self._jobs = FairQueue()
        # One engine per worker thread: pocketsphinx decoders are not shared across threads,
        # so two jobs really run in parallel. Lip-sync itself runs in one child per thread.
        self._engines = threading.local()
        self._children: list[LipsyncProcess] = []
        self._workers = [
            threading.Thread(target=self._work, name=f"steadytalk-job-{i}", daemon=True)
            for i in range(max(1, self.config.workers))
        ]
        for worker in self._workers:
            worker.start()
        if self.config.jobs_dir is None:
            self._jobs_tmp = tempfile.TemporaryDirectory(prefix="steadytalk-jobs-")
            self.jobs_dir = Path(self._jobs_tmp.name)
        else:
            self._jobs_tmp = None
            self.jobs_dir = Path(self.config.jobs_dir)
            self.jobs_dir.mkdir(parents=True, exist_ok=True)

        self.avatars = AvatarHost(self.config, self.jobs_dir, self._engine, self._is_cancelled)
        self.portraits = PortraitHost(self.config, self.jobs_dir, self._engine, self._is_cancelled)
        self._info = {
            "server_version": __version__,
            "protocol": wire.PROTOCOL_VERSION,
            "schema_version": SCHEMA_VERSION,
            "platform": platform.platform(),
            "avatars": self.avatars.names(),
            "max_frames_per_request": self.config.max_frames_per_request,
            **device,
        }

    def _secure(self, config: ServerConfig) -> None:
        """CURVE on the ROUTER when keys are given; refuse to expose the backend without them."""
        from .keys import server_keys

        if config.keys is None:
            if not is_loopback(config.bind):
                self.router.close(linger=0)
                raise ServerSetupError(
                    f"Refusing to listen on {config.bind} without authentication.",
                    "Create keys with 'steadytalk keys DIR' and start with --keys DIR, or bind a loopback "
                    "address (tcp://127.0.0.1:PORT).",
                )
            return
        from zmq.auth.thread import ThreadAuthenticator

        public, secret, authorized = server_keys(Path(config.keys))
        self._authenticator = ThreadAuthenticator(self.context)
        self._authenticator.start()
        self._authenticator.configure_curve(domain="*", location=str(authorized))
        self.router.curve_secretkey = secret
        self.router.curve_publickey = public
        self.router.curve_server = True

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
        self._jobs.close()
        for worker in self._workers:
            worker.join()
        for child in self._children:
            child.stop()
        self._flush_outbox()
        self.router.close(linger=0)
        self._wake.close(linger=0)
        if self._authenticator is not None:
            self._authenticator.stop()
        if self._jobs_tmp is not None:
            self._jobs_tmp.cleanup()

    def _work(self) -> None:
        if self.config.preload:
            self._lipsync_process().start(preload=True)
        while (job := self._jobs.get()) is not None:
            job()

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
            wire.RENDER_OPEN: self._submit(render_open_params, self.avatars.open_session),
            wire.RENDER_FRAMES: self._submit(self.avatars.frames_session, self.avatars.render_frames),
            wire.RENDER_AUDIO: self._submit(render_audio_params, self.avatars.render_audio),
            wire.PORTRAIT: self._submit(self._portrait_params, self.portraits.portrait),
            wire.PORTRAIT_RIG: self._submit(portrait_rig_params, self.portraits.rig),
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
        body = {
            **self._info,
            "jobs_running": jobs,
            "jobs_queued": self._jobs.pending(),
            "render_sessions": self.avatars.session_count(),
        }
        self._send(identity, request.reply(body=body))

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
        self._submit(lipsync_params, self._run_lipsync)(identity, request)

    def _submit(self, parse: Callable[[Message], dict], run: Callable[[Message, dict, Callable], Message]):
        """A handler that checks the request on the main thread (bad ones are answered at once)
        and queues ``run`` for a worker; whatever ``run`` raises becomes an error reply."""

        def handler(identity: bytes, request: Message) -> None:
            try:
                params = parse(request)
            except ProtocolError as exc:
                self._send(identity, request.error_reply(exc.code, exc.message))
                return
            with self._lock:
                self._active[request.id] = identity
            self._jobs.put(identity, lambda: self._run(identity, request, params, run))

        return handler

    # -- jobs (worker threads) -----------------------------------------------------------
    def _post(self, identity: bytes, message: Message) -> None:
        self._outbox.put((identity, message))
        wake = getattr(self._local, "wake", None)
        if wake is None:
            wake = self._local.wake = self.context.socket(zmq.PUSH)
            wake.setsockopt(zmq.LINGER, 0)
            wake.connect(self._wake_address)
        wake.send(b"", zmq.NOBLOCK)

    def _engine_config(self, alignment_workers: int | None = None) -> EngineConfig:
        return EngineConfig(
            audio=self.config.audio,
            words=WordRecognizerConfig(model=self.config.asr_model),
            alignment_workers=alignment_workers,
        )

    def _engine(self) -> LipsyncEngine:
        """The worker thread's own engine (renders lip-sync their audio with it). It aligns in
        this process, so renders do not add aligner processes to the lip-sync children's."""
        engine = getattr(self._engines, "engine", None)
        if engine is None:
            engine = self._engines.engine = LipsyncEngine(self._engine_config(alignment_workers=1))
        return engine

    def _lipsync_process(self) -> LipsyncProcess:
        child = getattr(self._engines, "child", None)
        if child is None:
            child = self._engines.child = LipsyncProcess(self._engine_config(), self.config.lipsync_limits)
            with self._lock:
                self._children.append(child)
        return child

    def _run(self, identity: bytes, request: Message, params: dict, run) -> None:
        def progress(fraction: float, stage: str) -> None:
            self._post(identity, request.reply(wire.PROGRESS, {"fraction": round(fraction, 4), "stage": stage}))

        try:
            if request.id in self._cancelled or self._stop.is_set():
                raise CancelledError("cancelled before it started")
            reply = run(request, params, progress)
        except CancelledError as exc:
            reply = request.error_reply(ErrorCode.CANCELLED, str(exc))
        except ProtocolError as exc:
            reply = request.error_reply(exc.code, exc.message)
        except SteadyTalkError as exc:
            reply = request.error_reply(_ERROR_CODES.get(exc.code, ErrorCode.BAD_REQUEST), str(exc))
        except ValueError as exc:
            reply = request.error_reply(ErrorCode.BAD_REQUEST, str(exc))
        except Exception:  # a bug: report it with its traceback instead of dying silently
            log.exception("%s job %s failed", request.type, request.id)
            reply = request.error_reply(ErrorCode.INTERNAL, "internal error:\n" + traceback.format_exc(limit=8))
        finally:
            with self._lock:
                self._active.pop(request.id, None)
                self._cancelled.discard(request.id)
        self._post(identity, reply)

    def _portrait_params(self, request: Message) -> dict:
        params = portrait_params(request)
        params["face_options"] = self.avatars.resolve_style(params["face_options"])
        return params

    def _is_cancelled(self, request: Message) -> Callable[[], bool]:
        return lambda: request.id in self._cancelled or self._stop.is_set()

    def _run_lipsync(self, request: Message, params: dict, progress) -> Message:
        avatar_name = params.pop("avatar")
        params["source"] = params.pop("audio")
        params["face"] = self.avatars.resolve_style(params["face"])  # style avatar:NAME -> its style.json
        result = self._lipsync_process().run(params, progress, self._is_cancelled(request))
        if avatar_name is not None:
            result = self._in_avatars_manner(avatar_name, result, request, progress)
        body = {
            "fps": result.fps,
            "duration": result.duration,
            "mode": result.mode,
            "smoothing_strength": result.smoothing_strength,
            "channels": list(result.channels),
            "schema_version": result.schema_version,
            "phones": [[p.phone, p.start, p.end, p.word] for p in result.phones],
            "warnings": result.warnings,
            "seed": result.seed,
            "transcript": result.transcript,
            "words": [[w.word, w.start, w.end] for w in result.words],
        }
        buffers = [result.raw, result.smoothed, result.sigma, result.head, result.head_raw]
        return request.reply(body=body, buffers=buffers)

    def _in_avatars_manner(self, name: str, result, request: Message, progress):
        """The lip-sync redone with an avatar's own audio-to-expression model and smoother."""
        import dataclasses

        from ..lipsync.audio import load_audio
        from ..render.pipeline import audio_features

        renderer = self.avatars.load(name, progress).renderer
        raw = result.raw
        if renderer.s2a is not None:
            samples = load_audio(request.buffers[0], self.config.audio)
            raw = renderer.s2a.predict(audio_features(samples, result.phones), result.raw, result.fps)
        smoother = renderer.smoother or self._engine().smoother
        smoothed, sigma = smoother.smooth(raw, result.smoothing_strength)
        warnings = [*result.warnings]
        if renderer.s2a is None:
            warnings.append(f"avatar {name} has no audio-to-expression model; the rule engine's curves were used")
        return dataclasses.replace(
            result, raw=raw.astype(np.float32), smoothed=smoothed.astype(np.float32), sigma=sigma.astype(np.float32),
            warnings=warnings,
        )  # fmt: skip
