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

from ..errors import AudioError, AudioTooLongError

SAMPLE_RATE = 16_000
SUPPORTED = "WAV, FLAC, MP3, OGG or M4A/AAC"


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


class _SoundfileDecoder:
    """libsndfile: WAV, FLAC, OGG/Vorbis, MP3 and more; exact length known up front."""

    def __init__(self, source: AudioSource) -> None:
        self._file = sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source))
        self.source_rate = int(self._file.samplerate)
        self.source_channels = int(self._file.channels)
        self.duration: float | None = int(self._file.frames) / self.source_rate

    def close(self) -> None:
        self._file.close()

    def pieces(self, seconds: float, name: str) -> Iterator[np.ndarray]:
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
                raise AudioError(f"{name} is damaged part-way through ({exc}).", "Re-export the audio file.") from exc
            last = len(data) < block
            mono = data.mean(axis=1) if len(data) else np.zeros(0, dtype=np.float32)
            yield mono if resampler is None else resampler.resample_chunk(mono, last=last)
            if last:
                return


class _PyAVDecoder:
    """FFmpeg through PyAV: AAC/M4A, Opus, and the audio track of video files (mp4, mov, mkv)."""

    def __init__(self, source: AudioSource) -> None:
        import av

        self._av = av
        self._container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))
        if not self._container.streams.audio:
            self._container.close()
            raise _NoAudioTrack()
        stream = self._container.streams.audio[0]
        self.source_rate = int(stream.codec_context.sample_rate or 0)
        self.source_channels = int(stream.codec_context.channels or 0)
        if stream.duration is not None and stream.time_base is not None:
            self.duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            self.duration = self._container.duration / av.time_base
        else:
            self.duration = None

    def close(self) -> None:
        self._container.close()

    def pieces(self, seconds: float, name: str) -> Iterator[np.ndarray]:
        resampler = self._av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        pending: list[np.ndarray] = []
        pending_samples = 0
        block = int(seconds * SAMPLE_RATE)
        try:
            self._container.seek(0)  # garbage that FFmpeg half-opened can refuse even this
            for frame in self._container.decode(audio=0):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    pending_samples += out.samples
                if pending_samples >= block:
                    yield np.concatenate(pending)
                    pending, pending_samples = [], 0
            for out in resampler.resample(None):  # flush
                pending.append(out.to_ndarray().reshape(-1))
        except self._av.error.FFmpegError as exc:
            raise AudioError(f"{name} is damaged part-way through ({exc}).", "Re-export the audio file.") from exc
        if pending:
            yield np.concatenate(pending)


class _NoAudioTrack(Exception):
    pass


class AudioStream:
    """An opened audio file or buffer, decoded and resampled to 16 kHz mono on demand.

    libsndfile reads the common audio formats; anything it cannot open (AAC/M4A, Opus, the
    audio track of a video) goes through FFmpeg (PyAV).
    """

    def __init__(self, source: AudioSource, config: AudioConfig | None = None) -> None:
        self.config = config or AudioConfig()
        self.name = _describe(source)
        if not isinstance(source, bytes):
            path = Path(source)
            if not path.exists():
                raise AudioError(f"Audio file not found: {path}.", "Check the path and try again.")
            if path.is_dir():
                raise AudioError(f"{path} is a folder, not an audio file.", f"Pass a {SUPPORTED} file.")
        self._decoder = self._open(source)
        self.source_rate = self._decoder.source_rate
        self.source_channels = self._decoder.source_channels
        self.duration = self._decoder.duration
        if self.duration is not None and self.duration <= 0:
            self.close()
            raise AudioError(f"{self.name} contains no audio samples.", "Record or export the audio again.")
        if self.duration is not None and self.duration > self.config.max_seconds:
            self.close()
            raise AudioTooLongError(
                f"{self.name} is {_format_duration(self.duration)} long; the limit is "
                f"{_format_duration(self.config.max_seconds)}.",
                "Split the audio, or raise the limit (--max-duration SECONDS).",
            )

    def _open(self, source: AudioSource) -> _SoundfileDecoder | _PyAVDecoder:
        try:
            return _SoundfileDecoder(source)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            reason = re.sub(r"^Error opening .*?: ", "", str(exc)).strip().rstrip(".")
            if "does not exist" in reason:  # libsndfile's words for unparseable MP3 data
                reason = "format not recognised or data damaged"
        try:
            return _PyAVDecoder(source)
        except _NoAudioTrack:
            raise AudioError(f"{self.name} has no audio track.", "Choose a file with sound.") from None
        except Exception:  # FFmpeg raises many types for garbage; libsndfile's reason is the clearer one
            pass
        raise AudioError(
            f"Could not read {self.name} as audio ({reason}).",
            f"Use a {SUPPORTED} file; if it plays elsewhere, re-export it, it may be damaged.",
        )

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._decoder.close()

    @property
    def num_samples(self) -> int:
        """Length after resampling to 16 kHz (an estimate when the container does not say)."""
        return int(round((self.duration or 0.0) * SAMPLE_RATE))

    def chunks(self, seconds: float | None = None) -> Iterator[np.ndarray]:
        """Yield consecutive float32 16 kHz mono pieces of about ``seconds`` each."""
        seconds = seconds or self.config.chunk_seconds
        total = 0
        for piece in self._decoder.pieces(seconds, self.name):
            if not np.all(np.isfinite(piece)):
                raise AudioError(f"{self.name} contains invalid samples (NaN or infinity).", "Re-export it.")
            total += len(piece)
            if total > self.config.max_seconds * SAMPLE_RATE:
                raise AudioTooLongError(
                    f"{self.name} is longer than the limit of {_format_duration(self.config.max_seconds)}.",
                    "Split the audio, or raise the limit (--max-duration SECONDS).",
                )
            if len(piece):
                yield np.ascontiguousarray(piece, dtype=np.float32)
        if total == 0:
            raise AudioError(f"{self.name} contains no audio samples.", "Record or export the audio again.")


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
