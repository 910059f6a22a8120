"""Speech without a typed transcript: one minute at a time, recognize the words, align them.

Per chunk (cut at a pause, so memory stays bounded on hours of audio) the word recognizer runs
in this process while the previous chunk's pieces are aligned in the alignment pool's worker
processes, so both cores work. A chunk whose words are not to be trusted (another language,
noise, music) or whose alignment fails falls back to phone recognition, with a warning that
says where and why. ``use_words=False`` is the phone path alone (``--recognizer phones``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from steadytalk_shared.curves import Phone

from ..errors import CancelledError
from .align_pool import Aligned, AlignmentPool
from .audio import SAMPLE_RATE, AudioStream, peak_dbfs
from .phonetics import SILENCE, Phonetizer
from .prosody import HOP, frame_energy_db
from .recognizer import RecognizedWord, WordRecognizer
from .text import normalize_transcript

# Alignment pieces: at least this long, cut only in a pause at least this long between
# recognized words (the recognizer's word times are good to about 0.1 s).
MIN_PIECE_SECONDS = 6.0
MIN_CUT_GAP_SECONDS = 0.3
# Words the recognizer gives less confidence than this may have been misheard at their onset.
UNCERTAIN_WORD = 0.6
# A piece whose recognized words do not align is retried on its runs of at least this many
# confident words: one misheard phrase must not cost the lips of a whole sentence.
MIN_CONFIDENT_RUN = 3
RUN_MARGIN_SECONDS = 0.15


@dataclass
class Decoded:
    phones: list[Phone] = field(default_factory=list)
    energy: np.ndarray = field(default_factory=lambda: np.zeros(1))
    peak: float = -np.inf
    num_samples: int = 0
    text: list[str] = field(default_factory=list)  # recognized text, chunk by chunk
    aligned_chunks: int = 0  # pieces whose recognized words were aligned
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Piece:
    samples: np.ndarray
    start: float
    aligned: Future | None  # None: decode as phones
    words: list[RecognizedWord] = field(default_factory=list)  # the recognized words inside


def quiet_cut(buffer: np.ndarray, chunk_samples: int, search: int) -> int:
    """Index near ``chunk_samples`` at the quietest 10 ms frame, a multiple of the hop."""
    window = buffer[chunk_samples : chunk_samples + search]
    frames = len(window) // HOP
    if frames == 0:
        return min(chunk_samples, len(buffer))
    power = (window[: frames * HOP].reshape(frames, HOP) ** 2).mean(axis=1)
    return chunk_samples + int(np.argmin(power)) * HOP


def chunks_at_pauses(stream: AudioStream, chunk_seconds: float, search_seconds: float) -> Iterator[np.ndarray]:
    """The stream in pieces of about ``chunk_seconds``, each cut at a pause."""
    chunk_samples = int(chunk_seconds * SAMPLE_RATE)
    search = int(search_seconds * SAMPLE_RATE)
    buffer = np.zeros(0, dtype=np.float32)
    pieces = stream.chunks()
    exhausted = False
    while not exhausted or len(buffer):
        while not exhausted and len(buffer) < chunk_samples + search:
            piece = next(pieces, None)
            if piece is None:
                exhausted = True
            else:
                buffer = np.concatenate([buffer, piece])
        cut = len(buffer) if exhausted else quiet_cut(buffer, chunk_samples, search)
        segment, buffer = buffer[:cut], buffer[cut:]
        if len(segment):
            yield segment


def cuts_between_words(words: list[RecognizedWord], piece_start: float) -> list[tuple[float, float]]:
    """Pauses to cut in after ``piece_start``, as (from, to) in seconds: gaps between words of at
    least MIN_CUT_GAP_SECONDS, pieces at least MIN_PIECE_SECONDS long (the last piece, up to the
    chunk's end, may be shorter)."""
    cuts = []
    for before, after in zip(words, words[1:], strict=False):
        middle = 0.5 * (before.end + after.start)
        if after.start - before.end >= MIN_CUT_GAP_SECONDS and middle - piece_start >= MIN_PIECE_SECONDS:
            cuts.append((before.end, after.start))
            piece_start = middle
    return cuts


def quietest_between(segment: np.ndarray, segment_start: float, lo: float, hi: float) -> float:
    """The quietest 10 ms inside the pause [lo, hi] (the recognizer's word times are good to
    ~0.1 s, so its pause middle can fall inside a word's tail)."""
    a = max(int((lo - segment_start) * SAMPLE_RATE), 0)
    b = min(int((hi - segment_start) * SAMPLE_RATE), len(segment))
    frames = (b - a) // HOP
    if frames < 1:
        return 0.5 * (lo + hi)
    power = (segment[a : a + frames * HOP].reshape(frames, HOP) ** 2).mean(axis=1)
    return segment_start + (a + (int(np.argmin(power)) + 0.5) * HOP) / SAMPLE_RATE


def _fmt(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60.0)
    return f"{int(minutes)}:{secs:04.1f}"


class UntypedDecoder:
    def __init__(
        self,
        phonetizer: Phonetizer,
        recognizer: WordRecognizer | None,
        pool: AlignmentPool | None,
        silence_peak_dbfs: float,
        implausible: Callable[[list[Phone], np.ndarray], str],
    ) -> None:
        self.phonetizer = phonetizer
        self.recognizer = recognizer  # None: phones only
        self.pool = pool
        self.silence_peak_dbfs = silence_peak_dbfs
        self.implausible = implausible

    def decode(
        self,
        chunks: Iterator[np.ndarray],
        total_samples: int,
        report: Callable[[float, str], None],
        cancelled: Callable[[], bool] | None,
    ) -> Decoded:
        out = Decoded()
        energies: list[np.ndarray] = []
        pending: deque[list[_Piece]] = deque()
        offset = 0
        stage = "recognizing words" if self.recognizer is not None else "recognizing phones"
        for segment in chunks:
            if cancelled is not None and cancelled():
                raise CancelledError("Lip-sync was cancelled.")
            start = offset / SAMPLE_RATE
            segment_peak = peak_dbfs(segment)
            out.peak = max(out.peak, segment_peak)
            energies.append(frame_energy_db(segment)[: len(segment) // HOP])
            if segment_peak < self.silence_peak_dbfs:
                out.phones.append(Phone(SILENCE, start, start + len(segment) / SAMPLE_RATE))
            else:
                # Keep one chunk in flight: its alignment runs while the next one is recognized.
                pending.append(self._plan(segment, start, out))
                while len(pending) > 1:
                    out.phones += self._finish(pending.popleft(), out)
            offset += len(segment)
            report(0.05 + 0.9 * min(offset / max(total_samples, 1), 1.0), stage)
        while pending:
            out.phones += self._finish(pending.popleft(), out)
        out.energy = np.concatenate(energies) if energies else np.zeros(1)
        out.num_samples = offset
        return out

    def _plan(self, segment: np.ndarray, start: float, out: Decoded) -> list[_Piece]:
        if self.recognizer is None:
            return [_Piece(segment, start, None)]
        end = start + len(segment) / SAMPLE_RATE
        words: list[RecognizedWord] = []
        pieces: list[_Piece] = []
        piece_start = [start]  # where the next piece begins

        def submit(piece_end: float) -> None:
            lo = piece_start[0]
            a, b = int(round((lo - start) * SAMPLE_RATE)), int(round((piece_end - start) * SAMPLE_RATE))
            inside = [w for w in words if lo <= 0.5 * (w.start + w.end) < piece_end]
            spoken = [s for w in inside for s in normalize_transcript(w.text)]
            uncertain = [s for w in inside if w.probability < UNCERTAIN_WORD for s in normalize_transcript(w.text)]
            samples = segment[a:b]
            aligned = self.pool.submit(samples, spoken, lo, uncertain) if spoken and self.pool is not None else None
            pieces.append(_Piece(samples, lo, aligned, inside))
            piece_start[0] = piece_end

        def unaligned() -> list[RecognizedWord]:
            return [w for w in words if w.start >= piece_start[0]]

        def on_segment(new: list[RecognizedWord]) -> None:
            # A cut between two words already heard is final: align up to it while the
            # recognizer decodes the rest of the chunk.
            words.extend(new)
            for gap in cuts_between_words(unaligned(), piece_start[0]):
                submit(quietest_between(segment, start, *gap))

        recognition = self.recognizer.recognize(segment, offset=start, on_segment=on_segment)
        if recognition.problem:
            for piece in pieces:
                if piece.aligned is not None:
                    piece.aligned.cancel()
            out.warnings.append(f"{_fmt(start)}-{_fmt(end)}: {recognition.problem}; used phone recognition there.")
            return [_Piece(segment, start, None)]
        out.text.append(recognition.text)
        for gap in cuts_between_words(unaligned(), piece_start[0]):
            if end - gap[1] >= MIN_PIECE_SECONDS:
                submit(quietest_between(segment, start, *gap))
        submit(end)
        return pieces

    def _finish(self, pieces: list[_Piece], out: Decoded) -> list[Phone]:
        phones: list[Phone] = []
        for piece in pieces:
            end = piece.start + len(piece.samples) / SAMPLE_RATE
            if piece.aligned is not None:
                try:
                    aligned = piece.aligned.result()
                except Exception as exc:  # noqa: BLE001 - a worker process died: phones for this piece
                    aligned = Aligned(None, f"the alignment worker failed: {exc}")
                problem = aligned.failure or self.implausible(aligned.phones, frame_energy_db(piece.samples))
                if not problem:
                    phones += aligned.phones
                    out.aligned_chunks += 1
                    continue
                runs = self._confident_runs(piece)
                if runs is not None:
                    phones += runs
                    out.aligned_chunks += 1
                    out.warnings.append(
                        f"{_fmt(piece.start)}-{_fmt(end)}: the recognized words did not align ({problem}); "
                        "aligned the confidently heard words and used phone recognition between them."
                    )
                    continue
                out.warnings.append(
                    f"{_fmt(piece.start)}-{_fmt(end)}: the recognized words did not align ({problem}); "
                    "used phone recognition there."
                )
            phones += self._phones(piece.samples, piece.start)
        return phones

    def _phones(self, samples: np.ndarray, start: float) -> list[Phone]:
        end = start + len(samples) / SAMPLE_RATE
        if len(samples) < HOP * 5 or peak_dbfs(samples) < self.silence_peak_dbfs:
            return [Phone(SILENCE, start, end)] if end > start else []
        return self.phonetizer.recognize(samples, offset=start)

    def _confident_runs(self, piece: _Piece) -> list[Phone] | None:
        """The piece again, its runs of confidently recognized words aligned one by one and
        phone recognition between them; None when no run aligns (or there is none)."""
        runs: list[list[RecognizedWord]] = [[]]
        for word in piece.words:
            if word.probability >= UNCERTAIN_WORD:
                runs[-1].append(word)
            elif runs[-1]:
                runs.append([])
        runs = [r for r in runs if len(r) >= MIN_CONFIDENT_RUN]
        if not runs or self.pool is None:
            return None
        end = piece.start + len(piece.samples) / SAMPLE_RATE
        bounds = []
        for i, run in enumerate(runs):
            lo = max(piece.start if i == 0 else bounds[-1][1], run[0].start - RUN_MARGIN_SECONDS)
            after = runs[i + 1][0].start if i + 1 < len(runs) else end
            bounds.append((lo, min(after, run[-1].end + RUN_MARGIN_SECONDS, end)))

        def cut(lo: float, hi: float) -> np.ndarray:
            a, b = (int(round((t - piece.start) * SAMPLE_RATE)) for t in (lo, hi))
            return piece.samples[max(a, 0) : max(b, 0)]

        futures = []
        for run, (lo, hi) in zip(runs, bounds, strict=True):
            spoken = [s for w in run for s in normalize_transcript(w.text)]
            futures.append(self.pool.submit(cut(lo, hi), spoken, lo))
        phones: list[Phone] = []
        cursor, aligned = piece.start, 0
        for future, (lo, hi) in zip(futures, bounds, strict=True):
            phones += self._phones(cut(cursor, lo), cursor)
            try:
                result = future.result()
            except Exception:  # noqa: BLE001 - a worker process died: phones for this run
                result = Aligned(None, "the alignment worker failed")
            if result.phones and not self.implausible(result.phones, frame_energy_db(cut(lo, hi))):
                phones += result.phones
                aligned += 1
            else:
                phones += self._phones(cut(lo, hi), lo)
            cursor = hi
        phones += self._phones(cut(cursor, end), cursor)
        return phones if aligned else None
