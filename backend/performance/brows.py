"""Brows: raised on pitch accents and emphasis, lowered on loud low-pitch (stressed) syllables.

A linear response model: the inner and outer brow heights (mm from rest) are sums of the
speech features (accent, low stress, loudness, pause, the pitch contour) each passed through Gaussian bumps at
lags from 0.4 s before to 0.6 s after (brows lead and trail the accent), weights by ridge
regression on the tracked brows (``train``). Plus slow seeded noise at the size of what the
features leave unexplained, so a monotone stretch is not frozen. Heights become ARKit
``browInnerUp``, ``browOuterUp*`` (raise) and ``browDown*`` (lower).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from steadytalk_shared.smoothing import gaussian_smooth
from steadytalk_shared.upper_face import brow_channels  # noqa: F401  (the brows' channels: one place)

from .features import SpeechTimeline

FEATURES = ("accent", "low_stress", "energy", "pause", "pitch")
# Seconds: the response at t sees the feature at t - lag. 0.4 s before to 0.6 s after, with
# 0.15 s bumps, follows the held-out brows better than the first fit's -0.2..0.4 s and 0.1 s
# (response r 0.376 -> 0.422 on the held-out clips, 0.343 -> 0.397 on the training video);
# files fitted before keep theirs (``BrowModel.lags``).
LAGS = (-0.4, -0.2, 0.0, 0.2, 0.4, 0.6)
BUMP_SECONDS = 0.15
FIRST_LAGS, FIRST_BUMP_SECONDS = (-0.2, 0.0, 0.2, 0.4), 0.1
NOISE_SECONDS = 0.5


def design(timeline: SpeechTimeline, lags: tuple[float, ...] = LAGS, bump: float = BUMP_SECONDS) -> np.ndarray:
    """(T, len(FEATURES) * len(lags) + 1) lagged, bump-smoothed features and a constant."""
    fps = timeline.fps
    pitch = np.clip(timeline.pitch, -6.0, 6.0) / 6.0  # the pitch contour itself (0 unvoiced)
    base = np.stack(
        [
            timeline.accent,
            timeline.low_stress,
            timeline.energy * timeline.speech,
            (~timeline.speech).astype(float),
            pitch,
        ],
        1,
    )
    smooth = gaussian_smooth(base, bump * fps).astype(np.float64)
    columns = []
    for lag in lags:
        shift = int(round(lag * fps))
        shifted = np.roll(smooth, shift, axis=0)
        if shift > 0:
            shifted[:shift] = smooth[0]
        elif shift < 0:
            shifted[shift:] = smooth[-1]
        columns.append(shifted)
    return np.column_stack([*columns, np.ones(len(base))])


@dataclass
class BrowModel:
    weights: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0,) * 31, (0.0,) * 31)  # inner, outer
    residual_mm: tuple[float, float] = (0.3, 0.3)
    noise_share: float = 0.5
    correlation: float = 0.0  # of the fitted response with the tracked inner brow (training)
    lags: tuple[float, ...] = LAGS
    bump_seconds: float = BUMP_SECONDS
    fitted_on: dict = field(default_factory=dict)

    def heights(self, timeline: SpeechTimeline, rng: np.random.Generator, amount: float = 1.0) -> np.ndarray:
        """(T, 2) inner, outer brow height in mm from rest."""
        x = design(timeline, self.lags, self.bump_seconds)
        response = x @ np.asarray(self.weights, dtype=np.float64).T
        response -= response[~timeline.speech].mean(axis=0) if (~timeline.speech).any() else response.mean(axis=0)
        noise = gaussian_smooth(rng.normal(0.0, 1.0, (timeline.num_frames, 2)), NOISE_SECONDS * timeline.fps)
        noise = noise / max(float(noise.std()), 1e-9) if timeline.num_frames > 4 else noise * 0
        return amount * (response + self.noise_share * np.asarray(self.residual_mm) * noise)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BrowModel:
        data = dict(data)
        data["weights"] = tuple(tuple(w) for w in data["weights"])
        data["residual_mm"] = tuple(data["residual_mm"])
        # files fitted before the lags were stored used the first ones
        data["lags"] = tuple(data.get("lags", FIRST_LAGS))
        data.setdefault("bump_seconds", FIRST_BUMP_SECONDS)
        return cls(**data)


def fit_brows(timelines: list[SpeechTimeline], brows: list[np.ndarray], ridge: float = 5.0) -> BrowModel:
    """Ridge regression of each clip's tracked brows (its own median removed) on ``design``."""
    x = np.concatenate([design(t) for t in timelines])
    y = np.concatenate([b - np.median(b, axis=0) for b in brows]).astype(np.float64)
    penalty = ridge * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    weights = np.linalg.solve(x.T @ x + penalty, x.T @ y).T  # (2, F)
    fitted = x @ weights.T
    residual = (y - fitted).std(axis=0)
    r = float(np.corrcoef(fitted[:, 0], y[:, 0])[0, 1]) if fitted[:, 0].std() > 0 else 0.0
    return BrowModel(
        weights=tuple(tuple(float(v) for v in row) for row in weights),
        residual_mm=tuple(float(v) for v in residual),
        correlation=r,
        fitted_on={"frames": len(x), "clips": len(timelines)},
    )
