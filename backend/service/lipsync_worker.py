"""Lip-sync jobs in a child process, so no job can hold the server hostage.

A pocketsphinx search or a ballooning job runs in native code holding the GIL: in a thread it
would stop the socket loop from answering pings and cancels. Each server worker thread owns
one child process (``python -m steadytalk_backend.service.lipsync_worker``, so nothing of the
server's own ``__main__`` is re-run) that keeps its engine, recognizer and aligners loaded
between jobs. The thread relays progress, forwards cancels, and kills the child when a cancel
is not honoured within a grace period, when it grows past a memory ceiling, or on shutdown;
a child that dies becomes an error reply and a fresh child serves the next job.

Parent and child speak ``multiprocessing.connection`` (pickled tuples) over two pipes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from steadytalk_shared.curves import LipsyncResult

from ..children import child_ends, start_child
from ..errors import CancelledError, SteadyTalkError
from ..lipsync.engine import EngineConfig


class JobFailedError(SteadyTalkError):
    code = "internal"


class RemoteError(SteadyTalkError):
    """A user error raised in the child, with the child's code."""

    def __init__(self, code: str, message: str, hint: str) -> None:
        super().__init__(message, hint)
        self.code = code


@dataclass(frozen=True)
class WorkerLimits:
    # A job past this resident size is stopped: an hour of audio peaks near 300 MB, the word
    # recognizer adds ~150 MB; gigabytes mean a runaway input.
    memory_mb: int = 2500
    # A cancel the child does not honour in this time (stuck in native code) kills it.
    cancel_grace_seconds: float = 2.0
    poll_seconds: float = 0.05


def _resident_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # not Linux, or already gone
        return 0.0


class LipsyncProcess:
    """One child process running lip-sync jobs one at a time (not thread-safe: one per thread)."""

    def __init__(self, engine_config: EngineConfig, limits: WorkerLimits | None = None) -> None:
        self.engine_config = engine_config
        self.limits = limits or WorkerLimits()
        self._proc: subprocess.Popen | None = None
        self._to_child: Connection | None = None
        self._from_child: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, preload: bool = False) -> None:
        """Start the child if it is not running; ``preload`` loads its recognizer now."""
        if self._proc is not None and self._proc.poll() is None:
            return
        # Its own process group: stop() kills the child with the aligner processes it started.
        self._proc, self._to_child, self._from_child = start_child(
            "steadytalk_backend.service.lipsync_worker", new_session=True
        )
        self._to_child.send(("config", self.engine_config))
        if preload:
            self._to_child.send(("load",))

    def stop(self) -> None:
        """Kill the child (it holds no state worth a graceful exit)."""
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._proc.wait()
        for connection in (self._to_child, self._from_child):
            if connection is not None:
                connection.close()
        self._proc = self._to_child = self._from_child = None

    def _send(self, message: tuple) -> None:
        """A message to the child; a child that died meanwhile (even halfway through a large
        message) is not an error here: the loop in ``run`` sees it gone and says why."""
        try:
            self._to_child.send(message)
        except OSError:
            pass

    def run(self, params: dict, progress: Callable[[float, str], None], cancelled: Callable[[], bool]) -> LipsyncResult:
        """``LipsyncEngine.run(**params)`` in the child; raises what it raised (rebuilt here)."""
        self.start()
        assert self._to_child is not None and self._from_child is not None and self._proc is not None
        self._send(("run", params))
        cancel_sent = None
        while True:
            try:
                if self._from_child.poll(self.limits.poll_seconds):
                    message = self._from_child.recv()
                    if message[0] == "progress":
                        progress(*message[1:])
                        continue
                    if message[0] == "result":
                        return message[1]
                    _kind, code, text, hint = message
                    if code == "value":
                        raise ValueError(text)
                    if code == "internal":
                        raise JobFailedError(text)
                    raise (CancelledError(text) if code == "cancelled" else RemoteError(code, text, hint))
            except (EOFError, OSError):
                pass  # the child is gone; its exit status says why, below
            if self._proc.poll() is not None:
                status = self._proc.returncode
                self.stop()
                if cancel_sent is not None:
                    raise CancelledError("Lip-sync was cancelled.")
                raise JobFailedError(
                    f"The lip-sync worker stopped unexpectedly (exit status {status}).",
                    "The backend is still running; try again, and report the audio that caused it.",
                )
            if cancel_sent is None and cancelled():
                self._send(("cancel",))
                cancel_sent = time.monotonic()
            if cancel_sent is not None and time.monotonic() - cancel_sent > self.limits.cancel_grace_seconds:
                self.stop()  # stuck in native code: the only way out
                raise CancelledError("Lip-sync was cancelled (the job was stopped).")
            used = _resident_mb(self._proc.pid)
            if used > self.limits.memory_mb:
                self.stop()
                raise JobFailedError(
                    f"The lip-sync job used more than {self.limits.memory_mb} MB and was stopped.",
                    "Split the audio into shorter parts, or check that the transcript belongs to it.",
                )


# -- the child ---------------------------------------------------------------------------------
def die_with_parent() -> None:
    """Linux: be killed when the server's worker thread that started us goes, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(down: Connection, up: Connection) -> None:
    from ..lipsync.engine import LipsyncEngine

    die_with_parent()
    _, config = down.recv()
    engine = LipsyncEngine(config)
    cancel = {"asked": False}

    def cancelled() -> bool:
        while down.poll(0):
            if down.recv()[0] == "cancel":
                cancel["asked"] = True
        return cancel["asked"]

    while True:
        try:
            message = down.recv()
        except EOFError:  # the server closed the pipe: leave
            break
        if message[0] == "load":
            try:
                engine.load()
            except SteadyTalkError:  # a bad model setting: the first job reports it
                pass
            continue
        if message[0] != "run":
            continue
        cancel["asked"] = False
        params = message[1]
        try:
            result = engine.run(
                progress=lambda fraction, stage: up.send(("progress", fraction, stage)), cancelled=cancelled, **params
            )
            up.send(("result", result))
        except CancelledError as exc:
            up.send(("error", "cancelled", str(exc), ""))
        except SteadyTalkError as exc:
            up.send(("error", exc.code, exc.message, exc.hint))
        except ValueError as exc:
            up.send(("error", "value", str(exc), ""))
        except Exception:  # noqa: BLE001 - a bug: its traceback goes back as the error
            up.send(("error", "internal", "internal error:\n" + traceback.format_exc(limit=8), ""))
    engine.close()


if __name__ == "__main__":
    _child(*child_ends())
