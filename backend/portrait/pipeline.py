"""A talking portrait from one picture and a speech recording, no training:

    picture --(read, upright, RGB)--> face found and fitted --(fit to --size)--> animator
    audio --(lip-sync engine: phones, coarticulation, adaptive smoothing)--> curves (T, C)
    curves --(animator, frame by frame)--> H.264 + AAC mp4, written to OUT.partial, renamed

Every check on the user's input (picture, face, audio) runs before the video file is opened,
so a bad input leaves no file behind. Entry points: ``render_portrait`` (paths, for the CLI),
``render_portrait_bytes`` (bytes in, mp4 bytes out, for a server), ``prepare_portrait`` (the
fitted picture, for the rig and the evaluation).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steadytalk_shared.schema import CHANNELS

from ..errors import CancelledError, TooManyFramesError
from ..performance.model import FaceOptions
from .animate import AnimatorConfig, PortraitAnimator
from .eyes import gaze_from_curves
from .locate import FaceChoice, FittedFace, LocateConfig, check_fit, choose_face, find_faces, fit_face
from .picture import SIZES, Picture, PictureConfig, PortraitError, fit_to_video, read_picture

Progress = Callable[[float, str], None]
REST_SECONDS = 0.5  # the whole-face motion's ease-in at the start


@dataclass(frozen=True)
class PortraitOptions:
    size: int = 512  # the video's longer side (the picture's aspect is kept, sides even)
    fps: float = 25.0
    face: int | None = None  # 1-based, left to right; None: the largest
    # Blinks, gaze, brows and head motion (the whole-face models): rate, amounts and the seed
    # their random parts draw from, so a rerun gives the same video.
    face_options: FaceOptions = field(default_factory=FaceOptions)
    whole_face: bool = True  # False: the mouth alone, eyes open, head still
    smoothing: float = 1.0  # adaptive smoothing strength of the lip-sync curves
    crf: int = 18  # H.264 quality (lower is better and larger)
    picture: PictureConfig = field(default_factory=PictureConfig)
    locate: LocateConfig = field(default_factory=LocateConfig)
    animator: AnimatorConfig = field(default_factory=AnimatorConfig)


@dataclass
class Portrait:
    """A picture ready to animate: at the video's size, its face found and fitted."""

    picture: Picture
    video: np.ndarray  # (H, W, 3) uint8, the picture at the video's size
    face: FittedFace
    choice: FaceChoice
    warnings: list[str]

    def animator(self, config: AnimatorConfig | None = None) -> PortraitAnimator:
        return PortraitAnimator(self.video, self.face, config)


def prepare_portrait(image: bytes | Path, options: PortraitOptions | None = None, name: str | None = None) -> Portrait:
    """Read the picture, find the face (``options.face`` or the largest), fit the face model.
    Raises ``PortraitError`` with a one-line message for every input it cannot use."""
    options = options or PortraitOptions()
    if not SIZES[0] <= options.size <= SIZES[1]:
        raise PortraitError(f"--size {options.size} is out of range.", f"Use {SIZES[0]} to {SIZES[1]} pixels.")
    picture = read_picture(image, name, options.picture)
    faces = find_faces(picture.rgb, options.locate)
    choice = choose_face(faces, picture.name, picture.size[0], options.face, options.locate)
    video = fit_to_video(picture.rgb, options.size)
    face = fit_face(choice.landmarks, video.shape[1] / picture.rgb.shape[1])
    warnings = [*picture.notes, *choice.warnings, *check_fit(face, picture.name, options.size, options.locate)]
    return Portrait(picture, video, face, choice, [w[:1].upper() + w[1:] for w in warnings])


@dataclass
class Performance:
    """What the audio asks the face to do."""

    curves: np.ndarray  # (T, C) smoothed, schema order
    head: np.ndarray | None  # (T, 3) yaw, pitch, roll (radians) or None
    gaze: np.ndarray | None  # (T, 2, 2) iris offsets, or None
    samples: np.ndarray  # (N,) float32 16 kHz mono, for the soundtrack
    fps: float
    mode: str
    warnings: list[str]

    @property
    def num_frames(self) -> int:
        return len(self.curves)


_engines = threading.local()


def _engine():
    from ..lipsync.engine import LipsyncEngine

    engine = getattr(_engines, "engine", None)
    if engine is None:
        engine = _engines.engine = LipsyncEngine()
    return engine


def perform(
    audio: bytes | Path,
    transcript: str | None,
    options: PortraitOptions,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    engine=None,
) -> Performance:
    """Audio -> the curves of the whole face and the head track (the lip-sync engine's).
    ``engine``: a ``LipsyncEngine`` whose audio limits apply (a server's); default one per thread."""
    from ..lipsync.audio import load_audio

    report = progress or (lambda fraction, stage: None)
    engine = engine or _engine()
    result = engine.run(
        audio,
        transcript,
        fps=options.fps,
        strength=options.smoothing,
        progress=report,
        cancelled=cancelled,
        whole_face=options.whole_face,
        face=options.face_options,
    )
    samples = load_audio(audio, engine.config.audio)
    curves = np.asarray(result.smoothed, dtype=np.float32).copy()
    head = result.head if options.whole_face and np.any(result.head) else None
    # The video opens on the picture itself: the eyes, brows and head ease in from rest (the
    # mouth is at rest anyway until the speech starts).
    ramp = np.clip(np.arange(len(curves)) / max(REST_SECONDS * options.fps, 1.0), 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)
    upper = [i for i, name in enumerate(CHANNELS) if name.startswith(("eye", "brow", "nose"))]
    curves[:, upper] *= ramp[:, None]
    if head is not None:
        head = head * ramp[:, None]
    return Performance(curves, head, gaze_from_curves(curves), samples, options.fps, result.mode, list(result.warnings))


def animate(animator: PortraitAnimator, performance: Performance) -> Iterator[np.ndarray]:
    """The performance's frames, in order."""
    for t in range(performance.num_frames):
        head = None if performance.head is None else performance.head[t]
        gaze = None if performance.gaze is None else performance.gaze[t]
        yield animator.frame(performance.curves[t], head, gaze)


def render_portrait(
    image: bytes | Path,
    audio: bytes | Path,
    out: Path,
    transcript: str | None = None,
    options: PortraitOptions | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    image_name: str | None = None,
    engine=None,
    max_frames: int | None = None,
) -> dict:
    """Picture + audio -> ``out`` (mp4: H.264 4:2:0 and AAC, the audio's duration within a
    frame). Written to ``out.partial`` and renamed when done: a failed or cancelled render
    leaves nothing under the final name, and a bad input leaves no file at all.
    ``engine`` and ``max_frames``: a server's lip-sync engine (its audio limits) and frame cap."""
    from ..avatar.video import VideoWriter

    options = options or PortraitOptions()
    report = progress or (lambda fraction, stage: None)
    report(0.0, "finding the face")
    portrait = prepare_portrait(image, options, image_name)
    performance = perform(audio, transcript, options, lambda f, s: report(0.02 + 0.13 * f, s), cancelled, engine)
    if max_frames is not None and performance.num_frames > max_frames:
        raise TooManyFramesError(
            f"The audio asks for {performance.num_frames} frames at {options.fps:g} fps; the limit is {max_frames}.",
            "Split the audio into shorter parts.",
        )
    animator = portrait.animator(options.animator)
    height, width = portrait.video.shape[:2]
    total = performance.num_frames
    out = Path(out)
    with VideoWriter(out, width, height, options.fps, crf=options.crf, audio_rate=16000, pix_fmt="yuv420p") as writer:
        for t, frame in enumerate(animate(animator, performance)):
            if cancelled is not None and cancelled():
                raise CancelledError("The portrait render was cancelled.")
            writer.write(frame)
            if t % 12 == 0 or t == total - 1:
                report(0.15 + 0.85 * (t + 1) / total, f"frame {t + 1}/{total}")
        writer.add_audio(performance.samples)
    return {
        "out": str(out),
        "frames": total,
        "fps": options.fps,
        "duration": len(performance.samples) / 16000,
        "size": [width, height],
        "face": portrait.choice.index,
        "faces": portrait.choice.count,
        "mode": performance.mode,
        "seed": options.face_options.seed,
        "warnings": [*portrait.warnings, *performance.warnings],
    }


def render_portrait_bytes(
    image: bytes,
    audio: bytes,
    transcript: str | None = None,
    options: PortraitOptions | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    engine=None,
    max_frames: int | None = None,
    folder: Path | None = None,
    image_name: str | None = None,
) -> tuple[bytes, dict]:
    """``render_portrait`` for a server: the picture and audio as bytes, the mp4 as bytes and
    the summary (no paths of the client's are read or written; the video is made in a fresh
    temporary folder inside ``folder``, a server's jobs folder, and removed)."""
    with tempfile.TemporaryDirectory(prefix="steadytalk-portrait-", dir=folder) as work:
        out = Path(work) / "portrait.mp4"
        summary = render_portrait(
            image, audio, out, transcript, options, progress, cancelled, image_name, engine, max_frames
        )
        data = out.read_bytes()
    summary.pop("out")
    return data, summary
