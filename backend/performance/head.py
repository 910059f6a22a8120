"""Head motion: a smooth stochastic process whose amplitude follows the speech, with nods on
the prosodic beats.

Per axis (yaw, pitch, roll): Gaussian-filtered white noise (kernel width ``smooth_seconds``,
fitted from the tracked autocorrelation, so the head never jitters), scaled by an activity
envelope that is ``speech_std`` while talking (louder: more) and falls to ``pause_std`` in
pauses, so a long silence brings the head back to rest; plus, on each beat (accented vowel
onsets), a nod: a bump of ``nod`` radians on pitch (chin down) ``nod_lag`` after it. Fitted on
tracked video (``train``); seeded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from steadytalk_shared.smoothing import gaussian_smooth

from .features import SpeechTimeline

NOD_SECONDS = 0.12  # width of a nod bump
ENVELOPE_SECONDS = 0.4
REST_AFTER = 1.5  # seconds into a pause after which the envelope is the pause level
TRACK_NOISE_FRAMES = 1.5


@dataclass
class HeadModel:
    speech_std: tuple[float, float, float] = (0.04, 0.04, 0.03)  # radians
    pause_std: tuple[float, float, float] = (0.02, 0.02, 0.015)
    smooth_seconds: tuple[float, float, float] = (0.4, 0.3, 0.4)
    loudness_gain: float = 0.5  # envelope at full loudness vs average, +-
    nod: float = 0.01  # radians on pitch per beat (> 0 chin down)
    nod_lag: float = 0.05
    fitted_on: dict = field(default_factory=dict)

    def envelope(self, timeline: SpeechTimeline) -> np.ndarray:
        """(T,) share of the speech amplitude: 1 while talking at average loudness, toward the
        pause level in pauses."""
        fps = timeline.fps
        talking = timeline.speech | (timeline.since_pause < REST_AFTER) & (timeline.pause_length < 2 * REST_AFTER)
        loud = 1.0 + self.loudness_gain * (timeline.energy - 0.5) * 2.0 * timeline.speech
        level = np.where(talking, loud, 0.0)
        return gaussian_smooth(level[:, None], ENVELOPE_SECONDS * fps)[:, 0].astype(np.float64)

    def track(self, timeline: SpeechTimeline, rng: np.random.Generator, amount: float = 1.0) -> np.ndarray:
        """(T, 3) yaw, pitch, roll in radians from rest."""
        n, fps = timeline.num_frames, timeline.fps
        out = np.zeros((n, 3))
        if amount <= 0 or n == 0:
            return out
        env = self.envelope(timeline)
        speech, pause = np.asarray(self.speech_std), np.asarray(self.pause_std)
        scale = pause[None, :] + (speech - pause)[None, :] * env[:, None]
        pad = int(4 * max(self.smooth_seconds) * fps)  # noise beyond the ends, so they are not edge-held
        white = rng.normal(0.0, 1.0, (n + 2 * pad, 3))
        for axis in range(3):
            width = self.smooth_seconds[axis] * fps
            smooth = gaussian_smooth(white[:, axis : axis + 1], width)[pad : pad + n, 0]
            # Gaussian-filtered unit noise has std 1 / sqrt(2 sqrt(pi) width): back to unit
            out[:, axis] = smooth * np.sqrt(2.0 * np.sqrt(np.pi) * max(width, 1e-3)) * scale[:, axis]
        times = np.arange(n) / fps
        for beat in timeline.beats:
            strength = rng.uniform(0.5, 1.5)
            out[:, 1] += self.nod * strength * np.exp(-0.5 * ((times - beat - self.nod_lag) / NOD_SECONDS) ** 2)
        return amount * out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HeadModel:
        data = dict(data)
        for key in ("speech_std", "pause_std", "smooth_seconds"):
            data[key] = tuple(data[key])
        return cls(**data)


def _half_life(series: list[np.ndarray], fps: float) -> float:
    """Seconds at which the mean autocorrelation of the (mean-removed) series falls to 0.5."""
    max_lag = int(2.0 * fps)
    acf = np.zeros(max_lag)
    count = np.zeros(max_lag)
    for s in series:
        s = s - s.mean()
        var = s.var()
        if var <= 0 or len(s) < 10:
            continue
        for lag in range(min(max_lag, len(s) - 5)):
            acf[lag] += np.mean(s[: len(s) - lag] * s[lag:]) / var
            count[lag] += 1
    acf = acf / np.maximum(count, 1)
    # Tracking noise is white: it lowers every lag but 0 by the same share, so the half-life is
    # measured against lag 1, not lag 0.
    below = np.flatnonzero((acf < 0.5 * acf[1]) & (count > 0))
    return float(below[0] / fps) if len(below) else 1.0


def fit_head(timelines: list[SpeechTimeline], heads: list[np.ndarray]) -> HeadModel:
    """Per-axis std in speech and in pauses, smoothness from the autocorrelation, nod size by
    least squares of the pitch on the beat bumps."""
    fps = timelines[0].fps
    # The amplitude is the motion's, not the tracker's frame-to-frame noise: measured after a
    # light smoothing (1.5 frames, well under any head movement's duration).
    centred = [gaussian_smooth(h - np.median(h, axis=0), TRACK_NOISE_FRAMES).astype(np.float64) for h in heads]
    speech = np.concatenate([h[t.speech] for h, t in zip(centred, timelines, strict=True)])
    pause_rows = [h[~t.speech & (t.since_pause > 0.5)] for h, t in zip(centred, timelines, strict=True)]
    pause = np.concatenate(pause_rows) if sum(len(p) for p in pause_rows) > 20 else 0.6 * speech
    smooth = []
    raw = [h - np.median(h, axis=0) for h in heads]
    for axis in range(3):
        half = _half_life([h[:, axis] for h in raw], fps)
        smooth.append(float(np.clip(half / (2.0 * np.sqrt(np.log(2.0))), 0.08, 1.5)))
    bumps, pitch = [], []
    for h, t in zip(centred, timelines, strict=True):
        times = np.arange(t.num_frames) / fps
        b = np.zeros(t.num_frames)
        for beat in t.beats:
            b += np.exp(-0.5 * ((times - beat - 0.05) / NOD_SECONDS) ** 2)
        # the nod is the fast part: the pitch minus its slow drift
        slow = gaussian_smooth(h[:, 1:2], 0.5 * fps)[:, 0]
        bumps.append(b - b.mean())
        pitch.append(h[:, 1] - slow)
    b, p = np.concatenate(bumps), np.concatenate(pitch)
    nod = float(b @ p / max(b @ b, 1e-9))
    return HeadModel(
        speech_std=tuple(float(v) for v in speech.std(axis=0)),
        pause_std=tuple(float(v) for v in np.minimum(pause.std(axis=0), speech.std(axis=0))),
        smooth_seconds=tuple(smooth),
        nod=float(np.clip(nod, -0.05, 0.05)),  # < 0: the head comes up on a beat
        fitted_on={
            "frames": int(sum(len(h) for h in heads)),
            "clips": len(heads),
            "beats": int(sum(len(t.beats) for t in timelines)),
        },
    )
