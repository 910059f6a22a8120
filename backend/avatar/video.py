"""Video in and out with PyAV: probing, constant-frame-rate decoding, H.264 writing.

Variable-frame-rate video (phones, screen recorders) is resampled to a constant rate by
nearest timestamp: each output frame shows the source frame closest to its time, so frames
are repeated or dropped, never blended, and the count of each is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import SteadyTalkError

COMMON_RATES = (23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0)
# Frame intervals that differ by more than this share of the mean make a video "variable".
VARIABLE_TOLERANCE = 0.05


class VideoError(SteadyTalkError):
    code = "bad_video"


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float  # the container's average rate
    duration: float  # seconds
    has_audio: bool
    codec: str


def probe(path: Path) -> VideoInfo:
    import av

    if not path.exists():
        raise VideoError(f"Video not found: {path}.", "Check the path.")
    if path.is_dir():
        raise VideoError(f"{path} is a folder, not a video.", "Pass a video file (mp4, mov, mkv, webm, avi, mpg).")
    try:
        container = av.open(str(path))
    except Exception as exc:  # FFmpeg raises many types for unreadable data
        raise VideoError(
            f"Could not read {path.name} as video ({exc.__class__.__name__}).",
            "Use a common video format (mp4, mov, mkv, webm, avi, mpg); re-export it if it plays elsewhere.",
        ) from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path.name} has no video track.", "Pass a video of the person talking.")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        # Container durations are often a frame short or missing (MPEG-PS, webm): read the
        # packet timestamps instead (demuxing only, no decoding; a second per hour of video).
        stamps = [float(p.pts * p.time_base) for p in container.demux(stream) if p.pts is not None]
        if len(stamps) >= 2:
            stamps.sort()
            duration = stamps[-1] - stamps[0] + (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        elif stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (container.duration or 0) / 1_000_000
        return VideoInfo(
            path=path,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate) if rate else (len(stamps) / duration if duration > 0 else 0.0),
            duration=duration,
            has_audio=bool(container.streams.audio),
            codec=stream.codec_context.name,
        )


def constant_rate(fps: float) -> float:
    """The nearest common rate when ``fps`` is within 1% of one (29.97 stays 29.97), else ``fps``."""
    nearest = min(COMMON_RATES, key=lambda r: abs(r - fps))
    return nearest if abs(nearest - fps) <= 0.01 * nearest else round(fps, 3)


@dataclass
class CfrReport:
    source_frames: int = 0
    output_frames: int = 0
    repeated: int = 0  # output frames that show the same source frame as the one before
    dropped: int = 0  # source frames no output frame shows
    variable: bool = False  # the source's frame intervals vary

    def describe(self) -> str:
        kind = "variable" if self.variable else "constant"
        return (
            f"{kind} frame rate: {self.source_frames} source frames -> {self.output_frames} "
            f"({self.repeated} repeated, {self.dropped} dropped)"
        )


def frames_at_constant_rate(
    path: Path, fps: float, num_frames: int, report: CfrReport, start: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, RGB uint8 frame) for output frames ``start`` .. ``num_frames - 1``, frame k
    showing the source frame nearest to time k / fps (times measured from the first frame)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index, first_time, previous, previous_time = 0, None, None, None
        intervals: list[float] = []
        shown_previous = False
        for frame in container.decode(stream):
            time = frame.time if frame.time is not None else (report.source_frames / fps)
            report.source_frames += 1
            if first_time is None:
                first_time = time
            time -= first_time
            if previous is not None:
                intervals.append(time - previous_time)
                # Output frames closer to the previous source frame than to this one show it.
                midpoint = 0.5 * (previous_time + time)
                while index < num_frames and index / fps < midpoint:
                    if index >= start:
                        yield index, previous.to_ndarray(format="rgb24")
                    report.repeated += shown_previous
                    shown_previous, index = True, index + 1
                report.dropped += not shown_previous
            previous, previous_time, shown_previous = frame, time, False
        if previous is None:
            raise VideoError(f"{path.name} contains no decodable frames.", "Re-export the video.")
        while index < num_frames:  # the last source frame covers the tail
            if index >= start:
                yield index, previous.to_ndarray(format="rgb24")
            report.repeated += shown_previous
            shown_previous, index = True, index + 1
        report.dropped += not shown_previous
        report.output_frames = index
        if intervals:
            spread = np.asarray(intervals)
            report.variable = bool(np.abs(spread - spread.mean()).max() > VARIABLE_TOLERANCE * spread.mean())


class VideoWriter:
    """H.264 (x264, 4:4:4, near-lossless by default) written to ``path.partial``, renamed on close."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: float,
        crf: int = 12,
        audio_rate: int | None = None,
        pix_fmt: str = "yuv444p",
    ) -> None:
        """``pix_fmt``: yuv444p keeps colour exact for our own intermediates; yuv420p (even
        sizes only) is what every player and editor opens, for videos given to people."""
        import av

        self.path = path
        self._partial = path.with_name(path.name + ".partial")
        self._container = av.open(str(self._partial), "w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = pix_fmt
        self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        # An audio track must be declared before the first packet is written (the header).
        self._audio = None if audio_rate is None else self._container.add_stream("aac", rate=audio_rate, layout="mono")

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def add_audio(self, samples: np.ndarray) -> None:
        """Mux mono float samples in [-1, 1] at the ``audio_rate`` given at creation, as AAC."""
        import av

        stream, rate = self._audio, self._audio.rate
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
        block = 1024  # AAC frame size
        for start in range(0, len(pcm), block):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + block], format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                self._container.mux(packet)
        for packet in stream.encode():
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._partial.replace(self.path)

    def abort(self) -> None:
        self._container.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a (constant-rate) video the avatar folder holds, RGB uint8."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
