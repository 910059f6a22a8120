"""The server's settings and the parts its request hosts share: ``ServerConfig``, what the
server says about its device, and ``JobHost`` (the config, jobs folder, engine and cancel check
that the avatar and portrait hosts are built with)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from steadytalk_shared import protocol as wire
from steadytalk_shared.protocol import Message

from ..errors import SteadyTalkError
from ..lipsync.audio import AudioConfig
from ..lipsync.engine import LipsyncEngine
from .lipsync_worker import WorkerLimits


@dataclass(frozen=True)
class ServerConfig:
    # Loopback by default: nothing beyond this machine can reach the backend unless asked.
    bind: str = "tcp://127.0.0.1:5757"
    workers: int = 2
    max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES
    # Poll interval of the main loop: bounds how long a SIGTERM waits to be noticed.
    poll_ms: int = 100
    audio: AudioConfig = AudioConfig()
    # Folders holding trained avatars (or avatar folders themselves); clients name an avatar.
    avatars: tuple[Path, ...] = ()
    # The only place the server writes (renders in progress); a fresh temporary folder if None.
    jobs_dir: Path | None = None
    # CURVE keys folder made by ``steadytalk keys``; required to bind a non-loopback address.
    keys: Path | None = None
    max_frames_per_request: int = 64
    max_frames_per_session: int = 25 * 60 * 30  # 30 minutes at 25 fps
    max_sessions: int = 16
    device: str | None = None
    # Lip-sync children: memory ceiling and cancel grace; the word recognizer's model folder.
    lipsync_limits: WorkerLimits = WorkerLimits()
    asr_model: str | None = None
    # Start the lip-sync children and load their recognizers at once (``steadytalk serve``), so
    # the first request does not wait for them; tests leave it off.
    preload: bool = False


def device_info(device: str | None = None) -> dict:
    """The renderer's device as ``ping`` reports it; a device this machine lacks stops the server
    at start (``DeviceError``), not at the first render."""
    try:
        from ..device import describe, pick_device
    except ImportError:  # the lip-sync path itself needs no torch
        return {"device": "cpu", "gpu": None, "torch": None}
    return describe(pick_device(device))


class ServerSetupError(SteadyTalkError):
    code = "server_setup"


class JobHost:
    """Requests of one kind on one server: its config (limits, avatars, device), the only folder
    it writes (``jobs_dir``), the calling worker thread's lip-sync ``engine()`` and
    ``cancelled(request)``, which tells a running job whether to stop."""

    def __init__(
        self,
        config: ServerConfig,
        jobs_dir: Path,
        engine: Callable[[], LipsyncEngine],
        cancelled: Callable[[Message], Callable[[], bool]],
    ) -> None:
        self.config = config
        self.jobs_dir = jobs_dir
        self._engine = engine
        self._cancelled = cancelled
