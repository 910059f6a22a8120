"""Head motion: moves and holds, timed by the speech, plus a little smooth sway.

Tracked speakers do not sway like a sine: the head holds a pose, moves to another in a quarter
of a second, and holds again, and the moves come on the prosodic beats (accented vowels) and
at phrase starts. So the model is a sequence of minimum-jerk moves between held targets:

- a move may start on each beat (``move_per_beat``) and, in speech without beats, at
  ``extra_rate`` per second; it lasts ``move_seconds``;
- each new target is an AR(1) step from the last (``hold_rho``, so the head wanders but comes
  back), with the per-axis spread ``target_std`` scaled by the speech's loudness;
- in a pause longer than ``REST_AFTER`` the head moves back toward rest (``pause_return``);
- under it, Gaussian-filtered noise of ``sway_std`` and width ``sway_seconds``, never jitter.

All fitted on tracked video (``train``); seeded. Axes and signs: ``steadytalk_shared.head``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from steadytalk_shared.smoothing import gaussian_smooth

from .features import SpeechTimeline

REST_AFTER = 1.0  # seconds into a pause after which the head heads back to rest
TRACK_NOISE_FRAMES = 1.5  # the tracker's frame-to-frame noise is removed before fitting
MOVE_SPEED_QUANTILE = 0.8  # a tracked move is a head-speed peak above this quantile


@dataclass
class HeadModel:
    target_std: tuple[float, float, float] = (0.03, 0.04, 0.02)  # radians
    hold_rho: float = 0.5
    move_seconds: float = 0.3
    move_per_beat: float = 0.5
    extra_rate: float = 0.5  # moves per second of speech beyond those on beats
    pause_return: float = 0.3  # share of the held pose kept after a long pause
    sway_std: tuple[float, float, float] = (0.005, 0.005, 0.003)
    sway_seconds: float = 0.5
    fitted_on: dict = field(default_factory=dict)

    def move_times(self, timeline: SpeechTimeline, rng: np.random.Generator) -> list[tuple[float, str]]:
        """(start seconds, why) of each move: beats, extra moves in speech, returns in pauses."""
        fps, n = timeline.fps, timeline.num_frames
        moves = [(float(b), "beat") for b in timeline.beats if rng.random() < self.move_per_beat]
        speech_frames = np.flatnonzero(timeline.speech)
        extra = rng.poisson(self.extra_rate * len(speech_frames) / fps) if len(speech_frames) else 0
        moves += [(float(speech_frames[i]) / fps, "extra") for i in rng.integers(0, len(speech_frames), extra)]
        starts = np.flatnonzero((~timeline.speech) & (np.abs(timeline.since_pause - REST_AFTER) < 0.5 / fps))
        moves += [(float(i) / fps, "rest") for i in starts if timeline.pause_length[i] > REST_AFTER + self.move_seconds]
        moves.sort()
        kept, last = [], -np.inf
        for t, why in moves:  # a move is not interrupted by the next
            if t >= last + self.move_seconds and t < n / fps:
                kept.append((t, why))
                last = t
        return kept

    def track(self, timeline: SpeechTimeline, rng: np.random.Generator, amount: float = 1.0) -> np.ndarray:
        """(T, 3) yaw, pitch, roll in radians from rest."""
        n, fps = timeline.num_frames, timeline.fps
        out = np.zeros((n, 3))
        if amount <= 0 or n == 0:
            return out
        times = np.arange(n) / fps
        spread = np.asarray(self.target_std)
        pose = np.zeros(3)
        innovation = np.sqrt(max(1.0 - self.hold_rho**2, 0.0))
        for start, why in self.move_times(timeline, rng):
            i = min(int(start * fps), n - 1)
            if why == "rest":
                target = self.pause_return * pose
            else:
                loud = 0.6 + 0.8 * float(timeline.energy[i])
                target = self.hold_rho * pose + innovation * loud * spread * rng.normal(0.0, 1.0, 3)
            u = np.clip((times - start) / self.move_seconds, 0.0, 1.0)
            blend = u**3 * (10 - 15 * u + 6 * u**2)  # minimum jerk
            after = times >= start
            out[after] = pose + blend[after, None] * (target - pose)
            pose = target
        pad = int(4 * self.sway_seconds * fps)
        white = rng.normal(0.0, 1.0, (n + 2 * pad, 3))
        width = self.sway_seconds * fps
        sway = gaussian_smooth(white, width)[pad : pad + n] * np.sqrt(2.0 * np.sqrt(np.pi) * width)
        return amount * (out + sway * np.asarray(self.sway_std))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HeadModel:
        data = dict(data)
        for key in ("target_std", "sway_std"):
            data[key] = tuple(data[key])
        return cls(**data)


def tracked_moves(head: np.ndarray, fps: float, threshold: float) -> list[tuple[int, int]]:
    """[start, stop) frames of each move in a (smoothed) head track: runs of speed above ``threshold``."""
    speed = np.linalg.norm(np.diff(head, axis=0), axis=1) * fps
    edges = np.diff(np.concatenate([[0], (speed > threshold).astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) + 1, strict=True))


def fit_head(timelines: list[SpeechTimeline], heads: list[np.ndarray]) -> HeadModel:
    """Moves are the runs of fast head speed (above the ``MOVE_SPEED_QUANTILE`` of all frames):
    their rate, duration and share on beats; targets are the poses held between them."""
    fps = timelines[0].fps
    smooth = [gaussian_smooth(h - np.median(h, axis=0), TRACK_NOISE_FRAMES).astype(np.float64) for h in heads]
    speeds = np.concatenate([np.linalg.norm(np.diff(h, axis=0), axis=1) * fps for h in smooth])
    threshold = float(np.quantile(speeds, MOVE_SPEED_QUANTILE))
    durations, on_beat, in_speech, holds, steps, speech_seconds, beats = [], 0, 0, [], [], 0.0, 0
    for h, t in zip(smooth, timelines, strict=True):
        moves = tracked_moves(h, fps, threshold)
        speech_seconds += t.speech.sum() / fps
        beats += len(t.beats)
        previous = None
        for lo, hi in moves:
            durations.append((hi - lo) / fps)
            if t.speech[min(lo, t.num_frames - 1)]:
                in_speech += 1
                if len(t.beats) and np.min(np.abs(t.beats - lo / fps)) < 0.15:
                    on_beat += 1
            pose = h[min(hi, len(h) - 1)]
            holds.append(pose)
            if previous is not None:
                steps.append((previous, pose))
            previous = pose
    holds = np.array(holds) if len(holds) > 3 else np.concatenate(smooth)
    # A robust spread (1.4826 MAD): one big lean in a short video must not set the size of every
    # move (the Obama training parts' roll: std 3.6 degrees, MAD 2.0; their held-out ends: 1.0).
    target_std = 1.4826 * np.median(np.abs(holds - np.median(holds, axis=0)), axis=0)
    if len(steps) > 5:
        a, b = np.array([s[0] for s in steps]), np.array([s[1] for s in steps])
        rho = float(np.clip(np.mean([np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(3)]), 0.0, 0.95))
    else:
        rho = 0.5
    residual = np.concatenate([h - gaussian_smooth(h, 0.5 * fps) for h in smooth]).std(axis=0)
    return HeadModel(
        target_std=tuple(float(v) for v in target_std),
        hold_rho=rho,
        # the run above the threshold is the middle of a move: a minimum-jerk move is above half
        # its peak speed for 55% of its duration, and the threshold is about half a move's peak
        move_seconds=float(np.clip(np.median(durations) / 0.55 if durations else 0.3, 0.12, 0.8)),
        move_per_beat=float(np.clip(on_beat / max(beats, 1), 0.05, 1.0)),
        extra_rate=float(max(in_speech - on_beat, 0) / max(speech_seconds, 1e-9)),
        sway_std=tuple(float(v) for v in 0.5 * residual),
        fitted_on={"clips": len(heads), "moves": len(durations), "beats": beats, "speed_threshold_rad_s": threshold},
    )
