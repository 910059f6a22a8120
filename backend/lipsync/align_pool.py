"""Forced alignment on several cores: pocketsphinx's search holds the GIL, so threads do not help.

Each worker is a separate Python process (``python -m steadytalk_backend.lipsync.align_pool``)
holding its own ``Phonetizer`` (decoders made once); pieces of speech cut at pauses are aligned
in parallel while the word recognizer goes on with the next minute in the caller. Workers are
started fresh, not forked: forking a process that runs other threads (ZeroMQ, CTranslate2,
torch, a test runner's) can copy a lock mid-hold and hang the child, and ``multiprocessing``'s
spawn would re-run the caller's main script. A worker leaves when its pipe closes, so it never
outlives the process that started it. With ``workers <= 1`` everything runs in the caller.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from steadytalk_shared.curves import Phone

from ..children import child_ends, start_child
from ..errors import TranscriptError
from .phonetics import Phonetizer, RecognizerConfig

log = logging.getLogger(__name__)

# Recognized words may include one that was never said (or miss one): an alignment that fits
# nearly all of them is better lips than phone recognition.
MIN_WORD_FRACTION = 0.85


@dataclass(frozen=True)
class Aligned:
    """One piece's outcome: phones, or why alignment did not fit."""

    phones: list[Phone] | None
    failure: str = ""


def align_piece(
    phonetizer: Phonetizer, samples: np.ndarray, words: list[str], offset: float, pronunciations: dict
) -> Aligned:
    phonetizer.add_known_pronunciations(pronunciations)
    try:
        return Aligned(phonetizer.align(samples, words, offset=offset, min_word_fraction=MIN_WORD_FRACTION))
    except TranscriptError as exc:
        return Aligned(None, exc.message)


class _Worker:
    """One aligner process and the two pipes to it."""

    def __init__(self, config: RecognizerConfig) -> None:
        self.proc, self.to_worker, self.from_worker = start_child("steadytalk_backend.lipsync.align_pool")
        self.to_worker.send(config)

    def ready(self) -> None:
        if self.from_worker.recv() != "ready":
            raise RuntimeError("the aligner process did not start")

    def align(self, job: tuple) -> Aligned:
        self.to_worker.send(job)
        return self.from_worker.recv()

    def close(self) -> None:
        self.to_worker.close()  # the worker reads EOF and leaves
        self.from_worker.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class AlignmentPool:
    def __init__(self, phonetizer: Phonetizer, workers: int | None = None) -> None:
        self.phonetizer = phonetizer
        self.workers = min(2, os.cpu_count() or 1) if workers is None else workers
        self._jobs: queue.Queue = queue.Queue()
        self._started: list[_Worker] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the workers now (their start-up is then not paid by the first request)."""
        with self._lock:
            if self.workers <= 1 or self._started:
                return
            workers: list[_Worker] = []
            try:
                workers = [_Worker(self.phonetizer.config) for _ in range(self.workers)]
                for worker in workers:  # they load in parallel; wait for all
                    worker.ready()
            except (OSError, EOFError, RuntimeError) as exc:
                log.warning("aligner processes did not start (%s); aligning in this process", exc)
                for worker in workers:
                    worker.close()
                self.workers = 1
                return
            self._started = workers
            self._threads = [threading.Thread(target=self._serve, args=(w,), daemon=True) for w in workers]
            for thread in self._threads:
                thread.start()

    def _serve(self, worker: _Worker) -> None:
        """Feed one worker from the shared queue, one piece at a time."""
        while (item := self._jobs.get()) is not None:
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(worker.align(job))
            except Exception as exc:  # noqa: BLE001 - the worker died or spoke nonsense: phones for this piece
                future.set_exception(RuntimeError(f"the aligner process failed ({exc or 'no reply'})"))
                break
        # Leaving: if no other worker is left, nothing would ever take the queued pieces.
        if not any(t.is_alive() for t in self._threads if t is not threading.current_thread()):
            while True:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    return
                if item is not None and item[0].set_running_or_notify_cancel():
                    item[0].set_exception(RuntimeError("no aligner process is left"))

    def submit(self, samples: np.ndarray, words: list[str], offset: float, uncertain: list[str] = ()) -> Future:
        """Align ``words`` to ``samples`` (times shifted by ``offset``); a Future of ``Aligned``.
        ``uncertain`` words get onset variants (``Phonetizer.add_onset_variants``)."""
        self.phonetizer.add_pronunciations(words)
        self.phonetizer.add_onset_variants(list(uncertain))
        self.start()
        if any(thread.is_alive() for thread in self._threads):
            future: Future = Future()
            self._jobs.put((future, (samples, words, offset, self.phonetizer.added_for(words))))
            return future
        done: Future = Future()
        done.set_result(align_piece(self.phonetizer, samples, words, offset, {}))
        return done

    def close(self) -> None:
        with self._lock:
            for _ in self._threads:
                self._jobs.put(None)
            for worker in self._started:
                worker.close()
            self._started, self._threads = [], []


def _worker_main(down: Connection, up: Connection) -> None:
    phonetizer = Phonetizer(down.recv())
    phonetizer.warm_aligners()  # loading the dictionary twice costs ~0.5 s: not per request
    up.send("ready")
    while True:
        try:
            samples, words, offset, pronunciations = down.recv()
        except EOFError:  # the process that started us closed the pipe, or died
            return
        up.send(align_piece(phonetizer, samples, words, offset, pronunciations))


if __name__ == "__main__":
    # Run the package's copy of this module, not __main__'s: what the worker pickles back
    # (Aligned, Phone) must name classes the parent can import.
    from steadytalk_backend.lipsync import align_pool

    align_pool._worker_main(*child_ends())
