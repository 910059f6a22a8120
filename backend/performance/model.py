"""The whole-face performance: blinks, gaze, brows and head from the speech timeline.

``Performer.load()`` reads the fitted parameters shipped as package data
(``backend/performance/data/face_motion.json``, written by ``steadytalk performance train``).
Each part draws from its own seeded stream, so turning one off or changing its amount leaves
the others as they were, and the same seed gives the same face.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from steadytalk_shared.curves import Phone
from steadytalk_shared.schema import CHANNEL_INDEX, NUM_CHANNELS
from steadytalk_shared.smoothing import gaussian_smooth
from steadytalk_shared.upper_face import brow_channels, look_channels

from ..errors import SteadyTalkError
from .blinks import BlinkModel
from .brows import BrowModel
from .features import SpeechTimeline, speech_timeline
from .gaze import GazeModel
from .head import HeadModel

DEFAULT_PATH = Path(__file__).parent / "data" / "face_motion.json"
FORMAT = "steadytalk.face_motion"
DEFAULT_SEED = 17
HEAD_SMOOTH_FRAMES = 1.0  # the head track's own light smoothing (the raw track is kept too)


@dataclass(frozen=True)
class FaceOptions:
    """What the user controls (CLI flags, wire fields, panel)."""

    blink_rate: float | None = None  # blinks per minute; None: the model's natural rate; 0: none
    head_motion: float = 1.0  # scale of the head motion; 0: still
    expressiveness: float = 1.0  # scale of brows and gaze
    seed: int = DEFAULT_SEED
    style: str | None = None  # a named style of the model (None: its default), or avatar:PATH

    def check(self) -> None:
        """ValueError with what to pass for values out of range."""
        if self.blink_rate is not None and not (np.isfinite(self.blink_rate) and 0.0 <= self.blink_rate <= 120.0):
            raise ValueError(f"blink rate must be between 0 and 120 per minute, got {self.blink_rate}")
        for name in ("head_motion", "expressiveness"):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0.0 <= value <= 5.0):
                raise ValueError(f"{name.replace('_', ' ')} must be between 0 and 5, got {value}")
        if not 0 <= int(self.seed) < 2**32:
            raise ValueError(f"seed must be between 0 and 4294967295, got {self.seed}")


@dataclass
class FacePerformance:
    channels: dict[str, np.ndarray]  # upper-face ARKit channels, (T,) each, in [0, 1]
    head_raw: np.ndarray  # (T, 3)
    head: np.ndarray  # (T, 3) smoothed
    gaze: np.ndarray  # (T, 2) yaw, pitch radians
    brows: np.ndarray  # (T, 2) inner, outer brow height in mm from rest
    blinks: list[dict] = field(default_factory=list)

    def write_into(self, curves: np.ndarray) -> np.ndarray:
        """``curves`` (T, NUM_CHANNELS) with the performance's channels set."""
        out = np.array(curves, dtype=np.float32)
        if out.shape[1] != NUM_CHANNELS:
            raise ValueError(f"expected {NUM_CHANNELS} channels, got {out.shape[1]}")
        for name, values in self.channels.items():
            out[:, CHANNEL_INDEX[name]] = values
        return out


class Performer:
    def __init__(
        self,
        blinks: BlinkModel,
        gaze: GazeModel,
        brows: BrowModel,
        heads: dict[str, HeadModel],
        default_style: str,
        source: dict | None = None,
    ) -> None:
        self.blinks, self.gaze, self.brows, self.heads = blinks, gaze, brows, heads
        self.default_style = default_style
        self.source = source or {}

    @property
    def styles(self) -> tuple[str, ...]:
        return tuple(self.heads)

    def perform(self, timeline: SpeechTimeline, options: FaceOptions | None = None) -> FacePerformance:
        options = options or FaceOptions()
        style = options.style or self.default_style
        if style.startswith("avatar:"):  # a person's own manner, learned from their video (``style``)
            from .style import person_performer

            return person_performer(style).perform(timeline, replace(options, style=None))
        if style not in self.heads:
            raise SteadyTalkError(f"Unknown style {style!r}.", f"Choose one of: {', '.join(self.heads)}.")
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(options.seed)).spawn(4)]
        n, fps = timeline.num_frames, timeline.fps
        events = self.blinks.events(timeline, streams[0], options.blink_rate)
        blink = self.blinks.curves(events, n, fps)
        gaze = self.gaze.track(timeline, streams[1], options.expressiveness)
        brows = self.brows.heights(timeline, streams[2], options.expressiveness)
        head_raw = self.heads[style].track(timeline, streams[3], options.head_motion)
        head = gaussian_smooth(head_raw, HEAD_SMOOTH_FRAMES).astype(np.float32) if n else head_raw
        channels = {"eyeBlinkLeft": blink[:, 0], "eyeBlinkRight": blink[:, 1]}
        channels |= look_channels(gaze) | brow_channels(brows)
        channels = {k: np.asarray(v, np.float32) for k, v in channels.items()}
        return FacePerformance(channels, head_raw.astype(np.float32), head, gaze.astype(np.float32), brows, events)

    def perform_speech(
        self,
        phones: list[Phone],
        energy_db: np.ndarray,
        f0: np.ndarray,
        num_frames: int,
        fps: float,
        options: FaceOptions | None = None,
    ) -> FacePerformance:
        return self.perform(speech_timeline(phones, energy_db, f0, num_frames, fps), options)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": 1,
            "default_style": self.default_style,
            "blinks": self.blinks.to_dict(),
            "gaze": self.gaze.to_dict(),
            "brows": self.brows.to_dict(),
            "heads": {name: h.to_dict() for name, h in self.heads.items()},
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Performer:
        if data.get("format") != FORMAT or data.get("version") != 1:
            raise ValueError("not a Steady Talk face-motion file of version 1")
        return cls(
            BlinkModel.from_dict(data["blinks"]),
            GazeModel.from_dict(data["gaze"]),
            BrowModel.from_dict(data["brows"]),
            {name: HeadModel.from_dict(h) for name, h in data["heads"].items()},
            data["default_style"],
            data.get("source", {}),
        )

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> Performer:
        return cls.from_dict(json.loads(Path(path).read_text()))


_DEFAULT: Performer | None = None


def default_performer() -> Performer:
    """The shipped parameters, loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Performer.load()
    return _DEFAULT
