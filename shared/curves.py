"""The lip-sync result as it travels between backend, files and the Blender add-on.

Time is in seconds everywhere except the per-frame arrays, whose frame ``i`` is sampled at
``i / fps`` seconds (BRIEF section 4: seconds at the boundaries, frames only at the rig).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .schema import CHANNELS, SCHEMA_VERSION


@dataclass(frozen=True)
class Phone:
    """One ARPAbet phone (``SIL`` for silence) with its time span in seconds."""

    phone: str
    start: float
    end: float
    word: str = ""


@dataclass(frozen=True)
class WordSpan:
    """One aligned word (as the aligner spelled it: lower case, numbers in words), in seconds."""

    word: str
    start: float
    end: float


# How the phones were found: aligned to a typed transcript, aligned to recognized words, or
# recognized as phones (no words). Results written before recognized words existed say
# "recognition" for the last.
MODES = ("alignment", "recognized", "phones")
_LEGACY_MODES = {"recognition": "phones"}


def words_of_phones(phones: list[Phone]) -> list[WordSpan]:
    """The words of an alignment with their spans (consecutive phones of one word)."""
    words: list[WordSpan] = []
    for p in phones:
        if not p.word:
            continue
        if words and words[-1].word == p.word and abs(words[-1].end - p.start) < 1e-6:
            words[-1] = WordSpan(p.word, words[-1].start, p.end)
        else:
            words.append(WordSpan(p.word, p.start, p.end))
    return words


@dataclass
class LipsyncResult:
    fps: float
    raw: np.ndarray  # (T, C) coefficients before smoothing, in [0, 1]
    smoothed: np.ndarray  # (T, C) after adaptive smoothing
    sigma: np.ndarray  # (T,) Gaussian kernel width per frame, in frames (after strength)
    phones: list[Phone]
    duration: float  # seconds of audio
    mode: str  # one of MODES
    smoothing_strength: float = 1.0
    warnings: list[str] = field(default_factory=list)
    channels: tuple[str, ...] = CHANNELS
    schema_version: int = SCHEMA_VERSION
    # The words the phones were aligned to: typed by the user, or recognized (then "source" is
    # "recognized" and the text is the recognizer's, for the user to correct and run again).
    transcript_text: str = ""
    transcript_source: str = ""  # "typed", "recognized" or "" (phones only)

    @property
    def words(self) -> list[WordSpan]:
        return words_of_phones(self.phones)

    @property
    def transcript(self) -> dict | None:
        return {"text": self.transcript_text, "source": self.transcript_source} if self.transcript_source else None

    @property
    def num_frames(self) -> int:
        return int(self.raw.shape[0])

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "fps": self.fps,
            "duration": self.duration,
            "mode": self.mode,
            "smoothing_strength": self.smoothing_strength,
            "channels": list(self.channels),
            "raw": np.round(self.raw.astype(np.float64), 6).tolist(),
            "smoothed": np.round(self.smoothed.astype(np.float64), 6).tolist(),
            "sigma": np.round(self.sigma.astype(np.float64), 6).tolist(),
            "phones": [
                {"phone": p.phone, "start": round(p.start, 4), "end": round(p.end, 4), "word": p.word}
                for p in self.phones
            ],
            "warnings": list(self.warnings),
            "transcript": self.transcript,
            "words": [{"word": w.word, "start": round(w.start, 4), "end": round(w.end, 4)} for w in self.words],
        }

    @classmethod
    def from_dict(cls, data: dict) -> LipsyncResult:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"curves use schema version {version}; this build reads {SCHEMA_VERSION}")
        return cls(
            fps=float(data["fps"]),
            raw=np.asarray(data["raw"], dtype=np.float32).reshape(-1, len(data["channels"])),
            smoothed=np.asarray(data["smoothed"], dtype=np.float32).reshape(-1, len(data["channels"])),
            sigma=np.asarray(data["sigma"], dtype=np.float32),
            phones=[Phone(p["phone"], p["start"], p["end"], p.get("word", "")) for p in data["phones"]],
            duration=float(data["duration"]),
            mode=_LEGACY_MODES.get(data["mode"], data["mode"]),
            smoothing_strength=float(data.get("smoothing_strength", 1.0)),
            warnings=list(data.get("warnings", [])),
            channels=tuple(data["channels"]),
            schema_version=version,
            transcript_text=(data.get("transcript") or {}).get("text", ""),
            transcript_source=(data.get("transcript") or {}).get("source", ""),
        )

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), separators=(",", ":")))

    def to_csv(self, which: str = "smoothed") -> str:
        """One row per frame: ``frame, time`` then one column per channel (for other tools)."""
        values = {"smoothed": self.smoothed, "raw": self.raw}[which]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["frame", "time", *self.channels])
        for i, row in enumerate(values):
            writer.writerow([i, f"{i / self.fps:.4f}", *(f"{v:.5f}" for v in row)])
        return out.getvalue()


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """Time in seconds of each frame (frame i at i / fps); fps may be fractional (29.97)."""
    return np.arange(num_frames, dtype=np.float64) / fps


def num_frames_for(duration: float, fps: float) -> int:
    """Frames needed to cover ``duration`` seconds, the last frame at or before the end."""
    return int(np.floor(duration * fps + 1e-9)) + 1
