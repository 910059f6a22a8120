"""Blinks while speaking: a point process whose rate follows the speech, and a blink's shape.

Rate: a log-linear (Poisson regression) intensity over the speech timeline,
``rate(t) = exp(b + w . x(t))`` blinks per second, with x: in a short pause, in a long pause
(> 1 s), the first 0.5 s of a pause (phrase boundary), around an utterance onset, and the
syllable rate (people blink less in fast speech). After a blink none follows for a refractory
gap (the shortest interval seen in the tracked video). Shape: duration log-normal; closing
takes ``close_share`` of it (fast close, slower open); both eyes together, one eye alone with
``single_eye`` probability (the other closes a little). All fitted from tracked video (``train``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .features import SpeechTimeline

FEATURES = ("short_pause", "long_pause", "phrase_boundary", "utterance_onset", "fast_speech")


def design(timeline: SpeechTimeline) -> np.ndarray:
    """(T, len(FEATURES)) blink-rate features of each frame."""
    pause = ~timeline.speech
    long_pause = pause & (timeline.pause_length > 1.0)
    boundary = pause & (timeline.since_pause < 0.5)
    onset = (pause & (timeline.until_speech < 0.25)) | (timeline.since_speech < 0.4)
    rate = timeline.syllable_rate
    fast = np.where(timeline.speech, np.clip((rate - 4.0) / 2.0, -1.5, 1.5), 0.0)
    return np.stack([pause & ~long_pause, long_pause, boundary, onset, fast], axis=1).astype(np.float64)


@dataclass
class BlinkModel:
    bias: float = np.log(15 / 60)  # log blinks per second at the all-zero features
    weights: tuple[float, ...] = (0.0,) * len(FEATURES)
    refractory: float = 0.4  # seconds
    duration_log_mean: float = np.log(0.25)
    duration_log_std: float = 0.3
    close_share: float = 0.35
    peak: float = 1.0
    single_eye: float = 0.03
    blinks_per_minute: float = 15.0  # the natural rate on the training speech
    fitted_on: dict = field(default_factory=dict)

    def rate(self, timeline: SpeechTimeline) -> np.ndarray:
        """Blinks per second at each frame."""
        return np.exp(self.bias + design(timeline) @ np.asarray(self.weights))

    def events(self, timeline: SpeechTimeline, rng: np.random.Generator, per_minute: float | None = None) -> list[dict]:
        """Blink onsets (seconds), durations and which eyes, drawn frame by frame."""
        rate = self.rate(timeline)
        if per_minute is not None:  # the user's average rate, the timing still the speech's
            if per_minute <= 0:
                return []
            rate = rate * (per_minute / 60.0) / max(rate.mean(), 1e-9)
        dt = 1.0 / timeline.fps
        chance = 1.0 - np.exp(-rate * dt)
        draws = rng.random(len(rate))
        events, free_at = [], 0.0
        for index in np.flatnonzero(draws < chance):
            t = index * dt
            if t < free_at:
                continue
            duration = float(np.exp(rng.normal(self.duration_log_mean, self.duration_log_std)))
            duration = float(np.clip(duration, 0.08, MAX_BLINK_SECONDS))
            single = rng.random() < self.single_eye
            eyes = (1.0, 0.25) if rng.random() < 0.5 else (0.25, 1.0)
            events.append({"start": t, "duration": duration, "eyes": eyes if single else (1.0, 1.0)})
            free_at = t + duration + self.refractory
        return events

    def curves(self, events: list[dict], num_frames: int, fps: float) -> np.ndarray:
        """(T, 2) eyeBlinkLeft/Right for ``events``: a raised-cosine close and a slower open."""
        out = np.zeros((num_frames, 2))
        times = np.arange(num_frames) / fps
        for e in events:
            close = self.close_share * e["duration"]
            u = times - e["start"]
            shape = np.where(
                (u >= 0) & (u < close),
                0.5 - 0.5 * np.cos(np.pi * np.clip(u / close, 0, 1)),
                np.where(
                    (u >= close) & (u < e["duration"]),
                    0.5 + 0.5 * np.cos(np.pi * (u - close) / (e["duration"] - close)),
                    0.0,
                ),
            )
            out = np.maximum(out, self.peak * shape[:, None] * np.asarray(e["eyes"])[None, :])
        return np.clip(out, 0.0, 1.0)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["weights"] = dict(zip(FEATURES, self.weights, strict=True))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> BlinkModel:
        data = dict(data)
        data["weights"] = tuple(float(data["weights"][name]) for name in FEATURES)
        return cls(**data)


# Closures longer than this are not blinks (GRID s1 looks down to read the next sentence; eyes
# rested shut): left out of the blink statistics, and never generated.
MAX_BLINK_SECONDS = 0.5


def detect_blinks(closure: np.ndarray, fps: float, threshold: float = 0.5, rest: float = 0.2) -> list[dict]:
    """Blinks in tracked (T, 2) eye closure: where the eyes' mean closure passes ``threshold``;
    a blink runs from the last frame under ``rest`` before its peak to the first one after;
    closures longer than ``MAX_BLINK_SECONDS`` are not counted."""
    both = closure.mean(axis=1)
    strongest = closure.max(axis=1)
    events = []
    index = 0
    while index < len(both):
        if strongest[index] < threshold:
            index += 1
            continue
        hi = index
        while hi < len(both) and strongest[hi] >= threshold:
            hi += 1
        peak = index + int(np.argmax(strongest[index:hi]))
        lo = peak
        while lo > 0 and strongest[lo - 1] >= rest and peak - lo < fps:
            lo -= 1
        end = hi
        while end < len(both) and strongest[end] >= rest and end - peak < fps:
            end += 1
        left, right = closure[lo:end, 0].max(), closure[lo:end, 1].max()
        if (end - lo) / fps > MAX_BLINK_SECONDS:
            index = end
            continue
        events.append(
            {
                "start": lo / fps,
                "peak": peak / fps,
                "duration": (end - lo) / fps,
                "single": bool(min(left, right) < 0.3 and max(left, right) >= threshold),
                "amplitude": float(strongest[peak]),
            }
        )
        index = end
    return events


def _gaps(events: list[list[dict]]) -> np.ndarray:
    """Seconds from the end of each blink to the start of the next."""
    gaps = [b["start"] - a["start"] - a["duration"] for ev in events for a, b in zip(ev, ev[1:], strict=False)]
    return np.array(gaps) if gaps else np.array([0.4])


def fit_blinks(timelines: list[SpeechTimeline], events: list[list[dict]], ridge: float = 1.0) -> BlinkModel:
    """Poisson regression of blink onsets on the features (Newton, a ridge on the weights), and
    the shape statistics of the events."""
    x = np.concatenate([design(t) for t in timelines])
    y = np.concatenate(
        [
            np.bincount([min(int(round(e["start"] * t.fps)), t.num_frames - 1) for e in ev], minlength=t.num_frames)
            for t, ev in zip(timelines, events, strict=True)
        ]
    ).astype(np.float64)
    # Only frames at risk count (not inside a blink or its refractory gap), as in generation:
    # otherwise the fitted rate is the rate of a process without the gap, and too low with it.
    refractory = float(np.clip(np.percentile(_gaps(events), 2), 0.25, 1.0))
    at_risk = []
    for t, ev in zip(timelines, events, strict=True):
        risk = np.ones(t.num_frames)
        for e in ev:
            lo = int(round(e["start"] * t.fps)) + 1
            risk[lo : lo + int(round((e["duration"] + refractory) * t.fps))] = 0.0
        at_risk.append(risk / t.fps)
    dt = np.concatenate(at_risk)
    a = np.column_stack([np.ones(len(x)), x])
    beta = np.zeros(a.shape[1])
    beta[0] = np.log(max(y.sum(), 1.0) / dt.sum())
    penalty = np.diag([0.0] + [ridge] * x.shape[1])
    for _ in range(30):
        mu = dt * np.exp(a @ beta)
        gradient = a.T @ (y - mu) - penalty @ beta
        hessian = (a * mu[:, None]).T @ a + penalty
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    flat = [e for ev in events for e in ev]
    durations = np.array([e["duration"] for e in flat])
    close = np.array([(e["peak"] - e["start"]) / max(e["duration"], 1e-6) for e in flat])
    total_minutes = sum(t.num_frames / t.fps for t in timelines) / 60.0
    return BlinkModel(
        bias=float(beta[0]),
        weights=tuple(float(b) for b in beta[1:]),
        refractory=refractory,
        # robust: a few long closures (looking down, tracker losses) must not stretch every blink
        duration_log_mean=float(np.median(np.log(durations))),
        duration_log_std=float(max(1.4826 * np.median(np.abs(np.log(durations) - np.median(np.log(durations)))), 0.05)),
        # frames quantize the peak; a blink closes in the first part of it
        close_share=float(np.clip(np.mean(close) + 0.5 / (timelines[0].fps * durations.mean()), 0.15, 0.6)),
        peak=float(np.clip(np.median([e["amplitude"] for e in flat]), 0.6, 1.0)),
        single_eye=float(np.mean([e["single"] for e in flat])),
        blinks_per_minute=float(len(flat) / total_minutes),
        fitted_on={"blinks": len(flat), "minutes": round(float(total_minutes), 2)},
    )
