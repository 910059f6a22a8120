"""Gaze: fixations held for a log-normal time, joined by quick small saccades; in pauses the
eyes look away more (thinking aversion) and come back as speech resumes.

Targets are drawn around the camera (the listener) with a per-axis spread for speech and a
wider, shifted one in pauses, all fitted from the tracked iris (``train``). A saccade takes
``SACCADE_SECONDS``. Output: gaze ``[yaw, pitch]`` radians (yaw > 0 to the character's left,
pitch > 0 down, as the head) and the eight ARKit ``eyeLook*`` channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from steadytalk_shared.upper_face import look_channels  # noqa: F401  (the gaze's channels: one place)

from .features import SpeechTimeline

SACCADE_SECONDS = 0.04


@dataclass
class GazeModel:
    fixation_log_mean: float = np.log(0.8)
    fixation_log_std: float = 0.6
    speech_spread: tuple[float, float] = (0.03, 0.03)  # radians, yaw and pitch
    pause_spread: tuple[float, float] = (0.05, 0.05)
    pause_offset: tuple[float, float] = (0.0, 0.0)  # mean look-away in pauses
    fitted_on: dict = field(default_factory=dict)

    def track(self, timeline: SpeechTimeline, rng: np.random.Generator, amount: float = 1.0) -> np.ndarray:
        """(T, 2) gaze angles for the timeline."""
        n, fps = timeline.num_frames, timeline.fps
        out = np.zeros((n, 2))
        if amount <= 0 or n == 0:
            return out
        ramp = max(1, int(round(SACCADE_SECONDS * fps)))
        index, current = 0, np.zeros(2)
        while index < n:
            in_pause = not timeline.speech[index] and timeline.pause_length[index] > 0.3
            spread = np.asarray(self.pause_spread if in_pause else self.speech_spread)
            centre = np.asarray(self.pause_offset) if in_pause else np.zeros(2)
            target = centre + rng.normal(0.0, 1.0, 2) * spread
            hold = float(np.exp(rng.normal(self.fixation_log_mean, self.fixation_log_std)))
            stop = min(n, index + max(ramp + 1, int(round(hold * fps))))
            if in_pause:  # look back when speech resumes
                resume = (
                    index + int(np.argmax(timeline.speech[index:stop])) if timeline.speech[index:stop].any() else stop
                )
                stop = max(index + ramp + 1, resume)
                stop = min(stop, n)
            steps = np.clip((np.arange(stop - index) + 1) / ramp, 0.0, 1.0)[:, None]
            out[index:stop] = current + steps * (target - current)
            current, index = target, stop
        return amount * out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GazeModel:
        data = dict(data)
        for key in ("speech_spread", "pause_spread", "pause_offset"):
            data[key] = tuple(data[key])
        return cls(**data)


def fit_gaze(timelines: list[SpeechTimeline], gazes: list[np.ndarray], open_eyes: list[np.ndarray]) -> GazeModel:
    """Fixations from the tracked gaze: a saccade where the gaze speed passes 1.5 rad/s (iris
    noise stays well under it); spreads and the pause offset from the open-eye frames."""
    holds, speech_rows, pause_rows = [], [], []
    for timeline, gaze, open_ in zip(timelines, gazes, open_eyes, strict=True):
        speed = np.linalg.norm(np.diff(gaze, axis=0), axis=1) * timeline.fps
        jumps = np.flatnonzero((speed > 1.5) & open_[1:] & open_[:-1])
        edges = np.concatenate([[0], jumps, [len(gaze)]])
        holds += [d / timeline.fps for d in np.diff(edges) if d >= 3]
        pause = ~timeline.speech & (timeline.pause_length > 0.3) & open_
        speech_rows.append(gaze[timeline.speech & open_])
        pause_rows.append(gaze[pause])
    speech = np.concatenate(speech_rows)
    pause = np.concatenate(pause_rows) if sum(len(p) for p in pause_rows) > 10 else speech
    holds = np.array(holds) if len(holds) > 3 else np.array([0.5, 0.8, 1.2])
    return GazeModel(
        fixation_log_mean=float(np.log(holds).mean()),
        fixation_log_std=float(max(np.log(holds).std(), 0.1)),
        speech_spread=tuple(float(v) for v in speech.std(axis=0)),
        pause_spread=tuple(float(v) for v in pause.std(axis=0)),
        pause_offset=tuple(float(v) for v in pause.mean(axis=0) - np.median(speech, axis=0)),
        fitted_on={"fixations": len(holds), "speech_frames": len(speech), "pause_frames": len(pause)},
    )
