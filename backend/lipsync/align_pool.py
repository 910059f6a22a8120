"""Forced alignment on several cores: pocketsphinx's search holds the GIL, so threads do not help.

Each worker process holds its own ``Phonetizer`` (decoders made once); pieces of speech cut at
pauses are aligned in parallel while the word recognizer goes on with the next minute in the
parent. With ``workers <= 1`` everything runs in the calling process (tests, small machines).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from steadytalk_shared.curves import Phone

from ..errors import TranscriptError
from .phonetics import Phonetizer, RecognizerConfig


@dataclass(frozen=True)
class Aligned:
    """One piece's outcome: phones, or why alignment did not fit."""

    phones: list[Phone] | None
    failure: str = ""


# Recognized words may include one that was never said (or miss one): an alignment that fits
# nearly all of them is better lips than phone recognition.
MIN_WORD_FRACTION = 0.85

_worker_phonetizer: Phonetizer | None = None


def die_with_parent() -> None:
    """Linux: be killed when the parent dies, even by SIGKILL (no orphans holding its pipes)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(config: RecognizerConfig) -> None:
    global _worker_phonetizer
    die_with_parent()
    _worker_phonetizer = Phonetizer(config)
    _worker_phonetizer.warm_aligners()  # loading the dictionary twice costs ~0.5 s: not per request


def _align_piece(
    phonetizer: Phonetizer, samples: np.ndarray, words: list[str], offset: float, pronunciations: dict
) -> Aligned:
    phonetizer.add_known_pronunciations(pronunciations)
    try:
        return Aligned(phonetizer.align(samples, words, offset=offset, min_word_fraction=MIN_WORD_FRACTION))
    except TranscriptError as exc:
        return Aligned(None, exc.message)


def _align_in_worker(samples: np.ndarray, words: list[str], offset: float, pronunciations: dict) -> Aligned:
    assert _worker_phonetizer is not None
    return _align_piece(_worker_phonetizer, samples, words, offset, pronunciations)


class AlignmentPool:
    def __init__(self, phonetizer: Phonetizer, workers: int | None = None) -> None:
        self.phonetizer = phonetizer
        self.workers = min(2, os.cpu_count() or 1) if workers is None else workers
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor | None:
        if self.workers <= 1:
            return None
        if self._executor is None:
            # fork, started before the word recognizer loads (the engine sees to it), so no
            # CTranslate2 thread exists to be copied mid-lock; spawn would re-run the caller's
            # main script in each worker, which breaks any script without a __main__ guard.
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_init_worker,
                initargs=(self.phonetizer.config,),
            )
        return self._executor

    def start(self) -> None:
        """Start the workers now (their start-up is then not paid by the first request)."""
        pool = self._pool()
        if pool is not None:
            # ProcessPoolExecutor forks all its workers on the first submit.
            pool.submit(os.getpid).result()

    def submit(self, samples: np.ndarray, words: list[str], offset: float, uncertain: list[str] = ()) -> Future:
        """Align ``words`` to ``samples`` (times shifted by ``offset``); a Future of ``Aligned``.
        ``uncertain`` words get onset variants (``Phonetizer.add_onset_variants``)."""
        self.phonetizer.add_pronunciations(words)
        self.phonetizer.add_onset_variants(list(uncertain))
        pronunciations = self.phonetizer.added_for(words)
        pool = self._pool()
        if pool is not None:
            try:
                return pool.submit(_align_in_worker, samples, words, offset, pronunciations)
            except BrokenProcessPool:  # a worker was killed: carry on in this process
                self._executor = None
                self.workers = 1
        done: Future = Future()
        done.set_result(_align_piece(self.phonetizer, samples, words, offset, {}))
        return done

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
