"""A trained avatar at work: new audio -> photoreal mp4 (headless and batch renders), and a
client's shape passes -> photoreal frames (the server's render sessions for Blender).

Both paths share the same pieces:
- ``Reference``: the avatar's reference video over its loop (the first ``reference_seconds``),
  played forwards and backwards (``render_contract.reference_index``, which Blender's Mirror
  cycles reproduce on the rig) to give each output frame its background, head pose and blinks.
- ``perform``: audio -> the expression to render: the lip-sync engine, the person's own
  audio-to-expression model when trained, the avatar's jointly trained smoother; the eyes
  keep the reference frame's own blinks, so they match the background they sit in.
- ``Reference.paste``: the renderer works on the face crop; its output goes back into the
  full reference frame as a difference, so every pixel the renderer did not change is the
  plate's own, exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steadytalk_shared import render_contract as rc
from steadytalk_shared.schema import V1_CHANNELS as CHANNELS  # the renderer's models are v1-wide

from ..avatar.video import read_frames
from ..errors import CancelledError, SteadyTalkError
from .data import AvatarFrames
from .inference import AvatarRenderer, FrameInput
from .s2a_person import MOUTH

Progress = Callable[[float, str], None]
EYES = [i for i in range(len(CHANNELS)) if i not in MOUTH]


@dataclass(frozen=True)
class RenderConfig:
    # The reference loop: long enough that the background's motion does not visibly repeat,
    # short enough to hold in memory (30 s at 25 fps and 256 px: about 150 MB of crops).
    reference_seconds: float = rc.REFERENCE_SECONDS
    smoothing: float = 1.0
    # Paste the synthesized face back into the full reference frame (else: the face crop).
    full_frame: bool = True
    crf: int = 18
    chunk: int = 12


class RenderError(SteadyTalkError):
    code = "render"


class TooManyFrames(RenderError):
    code = "too_many_frames"


class Reference:
    """The avatar's reference video over the loop, in memory."""

    def __init__(self, avatar: Path, size: int, seconds: float = rc.REFERENCE_SECONDS) -> None:
        avatar = Path(avatar)
        scene = _read_json(avatar / "blender" / "scene.json")
        loop = rc.reference_loop(scene["frames"], scene["fps"], seconds)
        self.data = AvatarFrames.load(avatar, size, max_frames=loop)
        self.loop = self.data.num_frames
        self.windows = np.load(avatar / f"crop_{size}" / "crop.npy")[: self.loop]
        self.width, self.height = (int(v) for v in scene["resolution"])
        plate_path = (avatar / "blender" / scene["plate"]).resolve()
        self.plate = np.empty((self.loop, self.height, self.width, 3), dtype=np.uint8)
        count = 0
        for count, frame in enumerate(read_frames(plate_path), start=1):
            self.plate[count - 1] = frame
            if count == self.loop:
                break
        if count < self.loop:
            raise RenderError(f"{plate_path} holds {count} frames; the avatar needs {self.loop}.")

    def index(self, offsets: np.ndarray) -> np.ndarray:
        return rc.reference_index(offsets, self.loop)

    def frame_input(self, index: int, coefficients: np.ndarray, audio: np.ndarray, shape=None) -> FrameInput:
        d = self.data
        return FrameInput(coefficients, d.matrices[index], d.frames[index], d.mouth[index], audio, shape)

    def paste(self, crops: np.ndarray, index: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) rendered crops of reference frames ``index`` -> (N, H, W, 3) full frames."""
        import cv2

        out = np.empty((len(crops), self.height, self.width, 3), dtype=np.uint8)
        for n, (crop, i) in enumerate(zip(crops, index, strict=True)):
            scale, ox, oy = self.windows[i]
            to_source = np.array([[1 / scale, 0, -ox / scale], [0, 1 / scale, -oy / scale]], dtype=np.float64)
            delta = crop.astype(np.float32) - self.data.frames[i].astype(np.float32)
            moved = cv2.warpAffine(
                delta, to_source, (self.width, self.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
            out[n] = np.clip(self.plate[i].astype(np.float32) + moved + 0.5, 0, 255).astype(np.uint8)
        return out


def _read_json(path: Path) -> dict:
    import json

    if not path.exists():
        raise RenderError(f"{path} is missing.", "Prepare the avatar first: steadytalk prepare VIDEO --out AVATAR")
    return json.loads(path.read_text())


@dataclass
class Performance:
    """What an audio file asks the avatar to do."""

    coefficients: np.ndarray  # (T, 33) smoothed, the eyes from the reference
    audio: np.ndarray  # (T, 2K + 1, D) normalized S2A feature windows
    samples: np.ndarray  # (N,) float32 16 kHz mono, for muxing
    fps: float
    mode: str
    warnings: list[str]

    @property
    def num_frames(self) -> int:
        return len(self.coefficients)


_engines = threading.local()


def _engine():
    from ..lipsync.engine import LipsyncEngine

    engine = getattr(_engines, "engine", None)
    if engine is None:
        engine = _engines.engine = LipsyncEngine()
    return engine


def audio_features(samples: np.ndarray, phones) -> np.ndarray:
    from ..lipsync.prosody import s2a_features

    return s2a_features(samples, phones).values


def perform(
    renderer: AvatarRenderer,
    reference: Reference,
    audio: bytes | Path,
    transcript: str | None = None,
    smoothing: float = 1.0,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Performance:
    """Audio -> expression curves for the avatar (the person's own manner when it has an
    audio-to-expression model) and the renderer's audio feature windows."""
    from ..lipsync.audio import load_audio

    report = progress or (lambda fraction, stage: None)
    samples = load_audio(audio)
    result = _engine().run(
        audio,
        transcript,
        fps=renderer.fps,
        progress=lambda f, s: report(0.1 * f, s),
        cancelled=cancelled,
        whole_face=False,  # blinks and head pose come from the reference video
    )
    features = audio_features(samples, result.phones)
    mouth = result.raw[:, : len(CHANNELS)]  # the renderer's channels; blinks come from the reference below
    expression = mouth if renderer.s2a is None else renderer.s2a.predict(features, mouth, renderer.fps)
    coefficients = renderer.smooth(np.asarray(expression, dtype=np.float32), smoothing)
    index = reference.index(np.arange(len(coefficients)))
    coefficients[:, EYES] = reference.data.coefficients[index][:, EYES]
    windows = renderer.audio_for(features, len(coefficients), renderer.fps)
    return Performance(coefficients, windows, samples, renderer.fps, result.mode, list(result.warnings))


def render_frames(
    renderer: AvatarRenderer, reference: Reference, performance: Performance, config: RenderConfig
) -> Iterator[np.ndarray]:
    """The performance's frames, in order, with bounded memory (windowed inference)."""
    index = reference.index(np.arange(performance.num_frames))
    inputs = (
        reference.frame_input(int(i), performance.coefficients[t], performance.audio[t]) for t, i in enumerate(index)
    )
    for t, crop in enumerate(renderer.stream(inputs, chunk=config.chunk)):
        yield reference.paste(crop[None], index[t : t + 1])[0] if config.full_frame else crop


def render_audio(
    renderer: AvatarRenderer,
    reference: Reference,
    audio: Path,
    out: Path,
    transcript: str | None = None,
    config: RenderConfig | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    max_frames: int | None = None,
) -> dict:
    """Audio -> ``out`` (mp4: H.264 4:2:0 and AAC). Written to ``out.partial`` and renamed at
    the end: a cancelled or failed render leaves no half video under the final name."""
    from ..avatar.video import VideoWriter

    config = config or RenderConfig()
    report = progress or (lambda fraction, stage: None)
    performance = perform(renderer, reference, Path(audio), transcript, config.smoothing, report, cancelled)
    if max_frames is not None and performance.num_frames > max_frames:
        raise TooManyFrames(
            f"The audio asks for {performance.num_frames} frames; the limit is {max_frames}.",
            "Split the audio into shorter parts.",
        )
    size = renderer.config.size
    width, height = (reference.width, reference.height) if config.full_frame else (size, size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    total = performance.num_frames
    with VideoWriter(out, width, height, performance.fps, crf=config.crf, audio_rate=16000, pix_fmt="yuv420p") as w:
        for t, frame in enumerate(render_frames(renderer, reference, performance, config)):
            if cancelled is not None and cancelled():
                raise CancelledError("The render was cancelled.")
            w.write(frame)
            if t % 12 == 0 or t == total - 1:
                report(0.1 + 0.9 * (t + 1) / total, f"frame {t + 1}/{total}")
        w.add_audio(performance.samples)
    return {
        "out": str(out),
        "frames": total,
        "fps": performance.fps,
        "duration": len(performance.samples) / 16000,
        "mode": performance.mode,
        "warnings": performance.warnings,
        "size": [width, height],
    }
