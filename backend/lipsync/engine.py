"""The lip-sync engine: audio (+ optional transcript) -> adaptively smoothed ARKit curves.

    audio --(16 kHz mono, chunks cut at pauses)--> phones (alignment or recognition)
          --> frame energy --> viseme coarticulation --> raw curves
          --> adaptive Gaussian smoothing (numpy, shared/) --> LipsyncResult
          phones + energy + pitch --> performance models (blinks, gaze, brows, head) --/

Long audio is processed chunk by chunk, so memory stays bounded by the chunk size plus the
per-frame outputs (about 4 KB per second of audio at 30 fps).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from steadytalk_shared.curves import LipsyncResult, Phone, frame_times, num_frames_for
from steadytalk_shared.schema import rest_pose
from steadytalk_shared.smoothing import AdaptiveSmoother, default_smoother

from ..errors import CancelledError, TranscriptError
from ..performance.model import FaceOptions, Performer, default_performer
from .audio import SAMPLE_RATE, AudioConfig, AudioSource, AudioStream, peak_dbfs
from .phonetics import SILENCE, Phonetizer, RecognizerConfig, normalize_transcript
from .prosody import HOP, HOP_SECONDS, frame_energy_db, pitch_hz
from .visemes import CoarticulationConfig, phones_to_curves

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class EngineConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    coarticulation: CoarticulationConfig = field(default_factory=CoarticulationConfig)
    # Forced alignment runs over the whole utterance in one search; beyond ten minutes its
    # memory grows past what a laptop should spend, so longer audio must be split.
    max_alignment_seconds: float = 600.0
    # A chunk is cut at the quietest 10 ms inside its last this-many seconds (a pause).
    cut_search_seconds: float = 8.0


class LipsyncEngine:
    """Reusable engine: holds the pocketsphinx decoders and the smoother between calls."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        smoother: AdaptiveSmoother | None = None,
        performer: Performer | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.phonetizer = Phonetizer(self.config.recognizer)
        self.smoother = smoother or default_smoother()
        self._performer = performer

    def run(
        self,
        source: AudioSource,
        transcript: str | None = None,
        fps: float = 25.0,
        strength: float = 1.0,
        progress: ProgressCallback | None = None,
        cancelled: CancelCheck | None = None,
        whole_face: bool = True,
        face: FaceOptions | None = None,
    ) -> LipsyncResult:
        """``whole_face``: add blinks, gaze, brows and head motion (``face`` controls them);
        False gives the mouth alone, the upper face and head at rest."""
        face = face or FaceOptions()
        face.check()
        if not (np.isfinite(fps) and 1.0 <= fps <= 1000.0):
            raise ValueError(f"fps must be between 1 and 1000, got {fps}")
        if not (np.isfinite(strength) and 0.0 <= strength <= 10.0):
            raise ValueError(f"smoothing strength must be between 0 and 10, got {strength}")
        report = progress or (lambda fraction, stage: None)
        warnings: list[str] = []
        with AudioStream(source, self.config.audio) as stream:
            words = self._transcript_words(transcript, stream.duration or 0.0, warnings)
            pitches: list[np.ndarray] | None = [] if whole_face else None
            if words:
                phones, energy, peak, num_samples = self._align(stream, words, warnings, report, pitches)
                mode = "alignment" if phones is not None else "recognition"
            else:
                phones, mode = None, "recognition"
            if phones is None:
                if pitches:
                    pitches.clear()
                phones, energy, peak, num_samples = self._recognize(stream, report, cancelled, pitches)
        # The decoded length, not the container's claim (missing for some streams, and AAC
        # counts its encoder priming).
        duration = num_samples / SAMPLE_RATE

        num_frames = num_frames_for(duration, fps)
        if peak < self.config.audio.silence_peak_dbfs:
            warnings.append(
                f"The audio is silent (peak {peak:.0f} dBFS); the result is the rest pose. "
                "Check that the right file or track was chosen."
            )
            raw = rest_pose(num_frames)
            phones = [Phone(SILENCE, 0.0, duration)]
        else:
            times = frame_times(num_frames, fps)
            # frame_energy_db frames are centred on multiples of the hop
            energy_at_frames = np.interp(times, np.arange(len(energy)) * HOP_SECONDS, energy)
            speech = _speech_mask(phones, times)
            raw = phones_to_curves(phones, num_frames, fps, energy_at_frames, speech, self.config.coarticulation)
        head = None
        if whole_face and peak >= self.config.audio.silence_peak_dbfs:
            report(0.96, "blinks, gaze, brows and head")
            f0 = np.concatenate(pitches) if pitches else np.zeros(len(energy))
            performance = self.performer.perform_speech(phones, energy, f0, num_frames, fps, face)
            raw = performance.write_into(raw)
            head = (performance.head, performance.head_raw)
        report(0.97, "smoothing")
        smoothed, sigma = self.smoother.smooth(raw, strength)
        report(1.0, "done")
        return LipsyncResult(
            fps=float(fps),
            raw=raw,
            smoothed=smoothed,
            sigma=sigma.astype(np.float32),
            phones=phones,
            duration=duration,
            mode=mode,
            smoothing_strength=float(strength),
            warnings=warnings,
            head=None if head is None else head[0],
            head_raw=None if head is None else head[1],
            seed=int(face.seed) if whole_face else None,
        )

    @property
    def performer(self) -> Performer:
        if self._performer is None:
            self._performer = default_performer()
        return self._performer

    def _transcript_words(self, transcript: str | None, duration: float, warnings: list[str]) -> list[str]:
        if transcript is None or not transcript.strip():
            return []
        words = normalize_transcript(transcript)
        if not words:
            raise TranscriptError("The transcript has no words.", "Pass the words spoken, or no transcript.")
        if duration > self.config.max_alignment_seconds:
            raise TranscriptError(*_alignment_too_long(self.config.max_alignment_seconds, duration))
        unknown = self.phonetizer.unknown_words(words)
        if unknown:
            warnings.append(
                "Not in the pronunciation dictionary: "
                + ", ".join(sorted(set(unknown))[:10])
                + ". Used phone recognition instead of the transcript; spell these words out for alignment."
            )
            return []
        return words

    def _align(
        self,
        stream: AudioStream,
        words: list[str],
        warnings: list[str],
        report: ProgressCallback,
        pitches: list[np.ndarray] | None = None,
    ) -> tuple[list[Phone] | None, np.ndarray, float, int]:
        report(0.05, "aligning")
        samples = np.concatenate(list(stream.chunks()))
        count = len(samples)
        energy = frame_energy_db(samples)
        if pitches is not None:
            pitches.append(pitch_hz(samples)[0][: len(energy)])
        peak = peak_dbfs(samples)
        if peak < self.config.audio.silence_peak_dbfs:
            return [Phone(SILENCE, 0.0, count / SAMPLE_RATE)], energy, peak, count
        if count > self.config.max_alignment_seconds * SAMPLE_RATE:
            raise TranscriptError(*_alignment_too_long(self.config.max_alignment_seconds, count / SAMPLE_RATE))
        try:
            phones = self.phonetizer.align(samples, words)
        except TranscriptError as exc:
            warnings.append(f"{exc.message} Used phone recognition instead.")
            return None, energy, peak, count
        problem = _implausible_alignment(phones, energy)
        if problem:
            warnings.append(
                f"The transcript does not seem to cover the audio ({problem}). Used phone recognition instead."
            )
            return None, energy, peak, count
        report(0.9, "aligned")
        return phones, energy, peak, count

    def _recognize(
        self,
        stream: AudioStream,
        report: ProgressCallback,
        cancelled: CancelCheck | None,
        pitches: list[np.ndarray] | None = None,
    ) -> tuple[list[Phone], np.ndarray, float, int]:
        chunk_samples = int(self.config.audio.chunk_seconds * SAMPLE_RATE)
        search = int(self.config.cut_search_seconds * SAMPLE_RATE)
        total = max(stream.num_samples, 1)
        phones: list[Phone] = []
        energies: list[np.ndarray] = []
        peak = -np.inf
        buffer = np.zeros(0, dtype=np.float32)
        offset = 0  # samples already handed to the recognizer
        pieces = stream.chunks()
        exhausted = False
        while not exhausted or len(buffer):
            while not exhausted and len(buffer) < chunk_samples + search:
                piece = next(pieces, None)
                if piece is None:
                    exhausted = True
                else:
                    buffer = np.concatenate([buffer, piece])
            cut = len(buffer) if exhausted else _quiet_cut(buffer, chunk_samples, search)
            segment, buffer = buffer[:cut], buffer[cut:]
            if cancelled is not None and cancelled():
                raise CancelledError("Lip-sync was cancelled.")
            segment_peak = peak_dbfs(segment)
            peak = max(peak, segment_peak)
            energies.append(frame_energy_db(segment)[: cut // HOP])
            if pitches is not None:  # chunk by chunk, like the energy: memory stays bounded
                f0 = pitch_hz(segment)[0][: cut // HOP]
                pitches.append(np.pad(f0, (0, len(energies[-1]) - len(f0))))
            start = offset / SAMPLE_RATE
            if segment_peak >= self.config.audio.silence_peak_dbfs:
                phones += self.phonetizer.recognize(segment, offset=start)
            else:
                phones.append(Phone(SILENCE, start, start + cut / SAMPLE_RATE))
            offset += cut
            report(0.05 + 0.9 * min(offset / total, 1.0), "recognizing phones")
        energy = np.concatenate(energies) if energies else np.zeros(1)
        return phones, energy, peak, offset


# An aligned non-silence phone longer than this means the search stretched a word over speech
# the transcript does not contain (phones last 30-300 ms; a held vowel rarely 1 s).
MAX_PHONE_SECONDS = 1.2
# Loud audio that may fall in aligned silence before the transcript is considered incomplete:
# both a share and an amount, because breaths, lip smacks and clicks are loud but not words
# (GRID's own alignment leaves a 0.4 s, -14 dBFS noise as silence).
MAX_LOUD_SILENCE_SHARE = 0.25
MAX_LOUD_SILENCE_SECONDS = 1.0


def _implausible_alignment(phones: list[Phone], energy_db: np.ndarray) -> str:
    """Why an alignment that pocketsphinx accepted cannot be right, or "" when it looks fine."""
    longest = max((p.end - p.start for p in phones if p.phone != SILENCE), default=0.0)
    if longest > MAX_PHONE_SECONDS:
        return f"one phone lasts {longest:.1f} s"
    # "Loud" is above the midpoint (in dB) between the noise floor and the speech level, so
    # recordings with 20-30 dB of SNR (GRID) count their noise as silence.
    floor, speech_level = np.percentile(energy_db, [10, 90])
    loud = energy_db > 0.5 * (floor + speech_level)
    in_silence = np.zeros(len(energy_db) + 1, dtype=bool)
    for p in phones:
        if p.phone == SILENCE:
            in_silence[int(p.start / HOP_SECONDS) : int(np.ceil(p.end / HOP_SECONDS))] = True
    unaligned = loud & in_silence[: len(loud)]
    share = float(unaligned.sum() / max(loud.sum(), 1))
    if share > MAX_LOUD_SILENCE_SHARE and unaligned.sum() * HOP_SECONDS > MAX_LOUD_SILENCE_SECONDS:
        return f"{share:.0%} of the speech is left unaligned"
    return ""


def _alignment_too_long(limit: float, duration: float) -> tuple[str, str]:
    return (
        f"Transcripts can be aligned to at most {limit / 60:.0f} minutes of audio; this audio is "
        f"{duration / 60:.1f} minutes.",
        "Split audio and transcript into parts, or run without a transcript.",
    )


def _quiet_cut(buffer: np.ndarray, chunk_samples: int, search: int) -> int:
    """Index near ``chunk_samples`` at the quietest 10 ms frame, a multiple of the hop."""
    window = buffer[chunk_samples : chunk_samples + search]
    frames = len(window) // HOP
    if frames == 0:
        return min(chunk_samples, len(buffer))
    power = (window[: frames * HOP].reshape(frames, HOP) ** 2).mean(axis=1)
    return chunk_samples + int(np.argmin(power)) * HOP


def _speech_mask(phones: list[Phone], times: np.ndarray) -> np.ndarray:
    mask = np.zeros(len(times), dtype=bool)
    for p in phones:
        if p.phone != SILENCE:
            lo, hi = np.searchsorted(times, [p.start, p.end])
            mask[lo:hi] = True
    return mask
