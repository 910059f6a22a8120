"""Audio front-end: any wav/flac/mp3/ogg (any rate, channel count, bit depth) -> 16 kHz mono.

Files are decoded by libsndfile (the soundfile wheel ships one with MP3 support) and
resampled by soxr in a streaming fashion, so hours of audio are read in bounded memory:
``AudioStream.chunks`` yields pieces, never the whole file at once.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, AudioTooLongError

SAMPLE_RATE = 16_000
SUPPORTED = "WAV, FLAC, MP3 or OGG"


@dataclass(frozen=True)
class AudioConfig:
    # Two hours covers a feature film's dialogue track; longer input is almost always a mistake.
    max_seconds: float = 2 * 3600.0
    # One minute per chunk keeps pocketsphinx's search small and memory bounded on long audio.
    chunk_seconds: float = 60.0
    # Peak below -60 dBFS is inaudible on any playback system: treat as silence.
    silence_peak_dbfs: float = -60.0


AudioSource = str | os.PathLike | bytes


def _describe(source: AudioSource) -> str:
    return "the uploaded audio" if isinstance(source, bytes) else str(source)


def _format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


class AudioStream:
    """An opened audio file or buffer, decoded and resampled to 16 kHz mono on demand."""

    def __init__(self, source: AudioSource, config: AudioConfig | None = None) -> None:
        self.config = config or AudioConfig()
        self.name = _describe(source)
        if not isinstance(source, bytes):
            path = Path(source)
            if not path.exists():
                raise AudioError(f"Audio file not found: {path}.", "Check the path and try again.")
            if path.is_dir():
                raise AudioError(f"{path} is a folder, not an audio file.", f"Pass a {SUPPORTED} file.")
        try:
            self._file = sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source))
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            reason = re.sub(r"^Error opening .*?: ", "", str(exc)).strip()
            raise AudioError(
                f"Could not read {self.name} as audio ({reason}).",
                f"Use a {SUPPORTED} file; if it plays elsewhere, re-export it, it may be damaged.",
            ) from exc
        self.source_rate = int(self._file.samplerate)
        self.source_channels = int(self._file.channels)
        frames = int(self._file.frames)
        if frames <= 0:
            self._file.close()
            raise AudioError(f"{self.name} contains no audio samples.", "Record or export the audio again.")
        self.duration = frames / self.source_rate
        if self.duration > self.config.max_seconds:
            self._file.close()
            raise AudioTooLongError(
                f"{self.name} is {_format_duration(self.duration)} long; the limit is "
                f"{_format_duration(self.config.max_seconds)}.",
                "Split the audio, or raise the limit (--max-duration SECONDS).",
            )

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def num_samples(self) -> int:
        """Length after resampling to 16 kHz."""
        return int(round(self.duration * SAMPLE_RATE))

    def chunks(self, seconds: float | None = None) -> Iterator[np.ndarray]:
        """Yield consecutive float32 16 kHz mono pieces of about ``seconds`` each."""
        seconds = seconds or self.config.chunk_seconds
        block = max(1, int(seconds * self.source_rate))
        resampler = (
            None
            if self.source_rate == SAMPLE_RATE
            else soxr.ResampleStream(self.source_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )
        self._file.seek(0)
        while True:
            try:
                data = self._file.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(
                    f"{self.name} is damaged part-way through ({exc}).", "Re-export the audio file."
                ) from exc
            last = len(data) < block
            mono = data.mean(axis=1) if len(data) else np.zeros(0, dtype=np.float32)
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"{self.name} contains invalid samples (NaN or infinity).", "Re-export it.")
            piece = mono if resampler is None else resampler.resample_chunk(mono, last=last)
            if len(piece):
                yield np.ascontiguousarray(piece, dtype=np.float32)
            if last:
                return


def load_audio(source: AudioSource, config: AudioConfig | None = None) -> np.ndarray:
    """Whole file as float32 16 kHz mono in [-1, 1]. For short clips; long audio uses ``AudioStream``."""
    with AudioStream(source, config) as stream:
        pieces = list(stream.chunks())
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def peak_dbfs(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else -np.inf


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 PCM, as pocketsphinx wants it."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
