"""Backend traffic off Blender's main thread, and the optional local backend process.

Blender's data may only be touched on the main thread, and a request to the backend can take
seconds (minutes for long audio). So a ``Job`` runs its network work on a worker thread and
reports progress through a lock-protected state; ``tick()``, called on the main thread (by
``bpy.app.timers`` in Blender, by the modal operator, or by tests, since timers do not fire
in the ``bpy`` module), hands a finished job to its ``on_done`` callback, which applies the
result to the scene. One job at a time: a second "Lip-sync" while one runs is refused.

This module does not import ``bpy``; the operators pass it plain values.
"""

from __future__ import annotations

import atexit
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..shared.client import BackendClient, BackendError, BackendUnavailable, is_loopback
from ..shared.protocol import PROTOCOL_VERSION, ErrorCode

TICK_SECONDS = 0.1


class JobCancelled(Exception):
    pass


@dataclass
class Job:
    """Work on a thread; ``on_done(job)`` runs on the main thread once it has finished."""

    label: str
    work: Callable[[Job], Any]
    on_done: Callable[[Job], None] | None = None
    # Main-thread work that goes along with the worker (drawing with bpy), called by every
    # tick until it returns True; the job is handed to ``on_done`` only after that.
    main_step: Callable[[], bool] | None = None
    fraction: float = 0.0
    stage: str = "starting"
    result: Any = None
    error: str | None = None
    cancelled: bool = False
    _cancel: threading.Event = field(default_factory=threading.Event)
    _finished: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"steadytalk-{self.label}", daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self.work(self)
        except JobCancelled:
            self.cancelled = True
        except UserFacingError as exc:
            self.error = str(exc)
        except BackendError as exc:
            if exc.code == ErrorCode.CANCELLED:
                self.cancelled = True
            else:
                self.error = describe_backend_error(exc)
        except Exception as exc:  # a bug must reach the UI as a message, not kill the thread silently
            self.error = f"{self.label} failed: {type(exc).__name__}: {exc}"
        finally:
            if self._cancel.is_set() and self.error is None:
                self.cancelled = True
            self._finished.set()

    # -- called from the worker --------------------------------------------------------
    def progress(self, fraction: float, stage: str) -> None:
        with self._lock:
            self.fraction, self.stage = max(0.0, min(1.0, fraction)), stage

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled

    def is_cancel_requested(self) -> bool:
        return self._cancel.is_set()

    # -- called from the main thread ---------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def snapshot(self) -> tuple[float, str]:
        with self._lock:
            return self.fraction, self.stage


def describe_backend_error(exc: BackendError) -> str:
    """One line for the UI: what went wrong and what to do."""
    if isinstance(exc, BackendUnavailable):
        return exc.message
    hints = {
        ErrorCode.UNSUPPORTED_VERSION: "",
        ErrorCode.BAD_AUDIO: " Use a WAV, FLAC, OGG or MP3 file with speech in it.",
        ErrorCode.AUDIO_TOO_LONG: " Split the audio into shorter parts.",
        ErrorCode.TOO_LARGE: " Split the audio into shorter parts.",
        ErrorCode.BAD_TRANSCRIPT: " Fix or clear the transcript.",
        ErrorCode.INTERNAL: " The backend's console or log has the details.",
        # A request this add-on sends but the backend does not know (e.g. portrait_rig).
        ErrorCode.UNKNOWN_TYPE: " The backend is older than this add-on: install the same Steady Talk release on both.",
    }
    return f"Backend: {exc.message}{hints.get(exc.code, '')}"


# -- the one running job ---------------------------------------------------------------
_current: Job | None = None
_redraw: Callable[[], None] | None = None  # set by the add-on: tags the panels for redraw
last_message: tuple[str, str] = ("INFO", "")  # (level, text) shown in the panel


def current() -> Job | None:
    return _current


def set_redraw(callback: Callable[[], None] | None) -> None:
    global _redraw
    _redraw = callback


def set_message(level: str, text: str) -> None:
    global last_message
    last_message = (level, text)
    if text:
        print(f"Steady Talk: {text}")


def submit(job: Job) -> None:
    global _current
    if _current is not None and not _current.finished:
        raise RuntimeError(f"Steady Talk is busy ({_current.label}); wait for it or cancel it first.")
    _current = job
    set_message("INFO", "")
    job.start()


def cancel_current() -> bool:
    if _current is None or _current.finished:
        return False
    _current.cancel()
    return True


def tick() -> float | None:
    """Main-thread step: finish the current job if it is done. Returns the delay until the next
    tick, or None when there is nothing left to wait for (the ``bpy.app.timers`` convention)."""
    global _current
    job = _current
    if job is None:
        return None
    if _redraw is not None:
        _redraw()
    main_done = True
    if job.main_step is not None:
        try:
            main_done = job.main_step()
        except Exception as exc:  # a drawing failure ends the job with a message
            job.error = f"{job.label} failed: {type(exc).__name__}: {exc}"
            job.cancel()
            main_done = True
    if not job.finished or not main_done:
        return TICK_SECONDS
    _current = None
    if job.cancelled:
        set_message("WARNING", f"{job.label}: cancelled; nothing was changed.")
    elif job.error is not None:
        set_message("ERROR", job.error)
    elif job.on_done is not None:
        try:
            job.on_done(job)
        except UserFacingError as exc:
            set_message("ERROR", str(exc))
    if _redraw is not None:
        _redraw()
    return None


def wait(timeout: float = 600.0) -> None:
    """Tick until the current job is handled (scripts, background Blender and tests)."""
    deadline = time.monotonic() + timeout
    while tick() is not None:
        if time.monotonic() > deadline:
            cancel_current()
            raise TimeoutError(f"Steady Talk job did not finish within {timeout:g} s")
        time.sleep(0.02)


class UserFacingError(Exception):
    """A problem the user can fix; its text is shown as is."""


# -- endpoints -------------------------------------------------------------------------
def check_endpoint(endpoint: str, online_access: bool) -> None:
    """Refuse endpoints that are not ZeroMQ tcp/ipc, and remote ones while Blender is offline."""
    if not endpoint.startswith(("tcp://", "ipc://")) or len(endpoint) < 8:
        raise UserFacingError(
            f"Backend address {endpoint!r} is not valid; use tcp://HOST:PORT (default tcp://127.0.0.1:5757)."
        )
    if endpoint.startswith("tcp://"):
        port = urlsplit(endpoint).port if ":" in endpoint[6:] else None
        if port is None:
            raise UserFacingError(f"Backend address {endpoint!r} has no port; e.g. tcp://127.0.0.1:5757.")
    if not online_access and not is_loopback(endpoint):
        raise UserFacingError(
            f"Blender's online access is off, so Steady Talk only talks to a backend on this computer; "
            f"{endpoint} is remote. Allow online access (Preferences > System > Network) or use tcp://127.0.0.1."
        )


def check_versions(info: dict) -> None:
    if info.get("protocol") != PROTOCOL_VERSION:
        raise UserFacingError(
            f"The backend speaks protocol {info.get('protocol')!r}, this add-on {PROTOCOL_VERSION}. "
            "Install the same Steady Talk release on both sides."
        )


def describe_backend(info: dict) -> str:
    gpu = info.get("gpu") or "no GPU"
    return (
        f"Steady Talk backend {info.get('server_version', '?')} (protocol {info.get('protocol', '?')}), "
        f"device {info.get('device', '?')}, {gpu}"
    )


# -- a local backend started by the add-on ---------------------------------------------
@dataclass
class LocalBackend:
    """``steadytalk serve`` started by the add-on (preference "Start a local backend").

    ``command`` is what the user configured: the ``steadytalk`` executable or a Python
    interpreter that has the backend installed (then ``-m steadytalk_backend.cli`` is used)."""

    command: str
    endpoint: str
    avatars: tuple[str, ...] = ()  # folders holding the avatars loaded in Blender
    process: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        parts = shlex.split(self.command)
        if not parts:
            raise UserFacingError("Set the local backend command in the add-on preferences (e.g. steadytalk).")
        if "python" in parts[0].rsplit("/", 1)[-1].rsplit("\\", 1)[-1].lower():
            parts += ["-m", "steadytalk_backend.cli"]
        avatars = [arg for folder in self.avatars for arg in ("--avatars", folder)]
        return [*parts, "serve", "--bind", self.endpoint, *avatars]

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running():
            return
        try:
            self.process = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise UserFacingError(
                f"Could not start the local backend with {self.command!r}: {exc.strerror or exc}. "
                "Set the command in the add-on preferences (the steadytalk executable or a Python with it)."
            ) from None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def failure(self) -> str | None:
        """Why the process ended, if it has."""
        if self.process is None or self.process.poll() is None:
            return None
        tail = (self.process.stderr.read() or b"").decode(errors="replace").strip().splitlines()[-3:]
        return f"the local backend exited with code {self.process.returncode}: {' / '.join(tail) or 'no output'}"


_local: LocalBackend | None = None
_local_lock = threading.Lock()


def stop_local_backend() -> None:
    global _local
    with _local_lock:
        if _local is not None:
            _local.stop()
            _local = None


atexit.register(stop_local_backend)  # Blender's exit stops what the add-on started


def local_backend() -> LocalBackend | None:
    return _local


@dataclass(frozen=True)
class Connection:
    """What a worker needs to reach the backend (a snapshot of the preferences)."""

    endpoint: str
    timeout: float = 30.0
    auto_start: bool = False
    start_command: str = "steadytalk"
    start_timeout: float = 120.0
    avatars: tuple[str, ...] = ()

    def client(self, timeout: float | None = None) -> BackendClient:
        return BackendClient(self.endpoint, timeout=self.timeout if timeout is None else timeout, retries=0)


def connect(connection: Connection, job: Job | None = None) -> dict:
    """Ping the backend (starting the local one first if allowed and needed); its info dict."""
    global _local
    try:
        with connection.client(timeout=min(connection.timeout, 3.0)) as client:
            info = client.ping()
    except BackendUnavailable:
        if not (connection.auto_start and is_loopback(connection.endpoint)):
            raise
        with _local_lock:
            if _local is None or _local.endpoint != connection.endpoint or not _local.running():
                if _local is not None:
                    _local.stop()
                _local = LocalBackend(connection.start_command, connection.endpoint, connection.avatars)
                _local.start()
            local = _local
        info = _await_local(connection, local, job)
    check_versions(info)
    return info


def _await_local(connection: Connection, local: LocalBackend, job: Job | None) -> dict:
    deadline = time.monotonic() + connection.start_timeout
    while True:
        if job is not None:
            job.progress(0.0, "starting the local backend")
            job.check_cancelled()
        failure = local.failure()
        if failure is not None:
            raise UserFacingError(f"Could not start the backend: {failure}")
        try:
            with connection.client(timeout=1.0) as client:
                return client.ping()
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise UserFacingError(
                    f"The local backend did not answer within {connection.start_timeout:g} s at {connection.endpoint}."
                ) from None
