"""Prosody (energy, pitch) and the Transformer-S2A style feature sequence.

Transformer-S2A (Chen et al., ICASSP 2022) drives expression from phonetic posteriorgrams
plus pitch and energy; we add a log-mel spectrogram for the person-specific model. The
phonetic part here is one-hot phones (pocketsphinx exposes no posteriors), which the
paper's ablations show carries most of the lip information.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from steadytalk_shared.curves import Phone

from .audio import SAMPLE_RATE

HOP_SECONDS = 0.01  # 100 feature frames per second, pocketsphinx's rate
HOP = int(SAMPLE_RATE * HOP_SECONDS)
WINDOW = 400  # 25 ms analysis window
ENERGY_FLOOR_DB = -100.0

# The phone inventory of the one-hot block: CMU ARPAbet without stress, plus silence.
PHONE_SET: tuple[str, ...] = (
    "SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW",
    "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
PHONE_INDEX = {p: i for i, p in enumerate(PHONE_SET)}


def frame_energy_db(samples: np.ndarray) -> np.ndarray:
    """RMS energy in dBFS per 10 ms frame (25 ms window, centred, zero-padded), shape (N // 160 + 1,).

    Cumulative sums instead of librosa's framed RMS: same values, no numba compile on first use.
    """
    x = np.asarray(samples, dtype=np.float64)
    padded = np.pad(x, (WINDOW // 2, WINDOW // 2))
    cumulative = np.concatenate([[0.0], np.cumsum(padded**2)])
    starts = np.arange(len(x) // HOP + 1) * HOP
    ends = np.minimum(starts + WINDOW, len(padded))
    rms = np.sqrt(np.maximum(cumulative[ends] - cumulative[starts], 0.0) / WINDOW)
    return np.maximum(20.0 * np.log10(np.maximum(rms, 1e-10)), ENERGY_FLOOR_DB)


def pitch_hz(samples: np.ndarray, fmin: float = 65.0, fmax: float = 400.0) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental frequency per 10 ms frame (YIN) and a voiced flag.

    Frames whose YIN aperiodicity is high, or whose energy is 35 dB below the loudest frame,
    are unvoiced (f0 = 0). YIN is used rather than pYIN because it is ~20x faster, which
    keeps the whole front-end well above real time.
    """
    n = len(samples)
    frame_length = 1024
    if n < frame_length:
        samples = np.pad(samples, (0, frame_length - n))
    f0 = librosa.yin(samples, fmin=fmin, fmax=fmax, sr=SAMPLE_RATE, frame_length=frame_length, hop_length=HOP)
    energy = frame_energy_db(samples)[: len(f0)]
    voiced = (energy > energy.max() - 35.0) & (f0 > fmin * 1.05) & (f0 < fmax * 0.95)
    return np.where(voiced, f0, 0.0).astype(np.float32), voiced


def one_hot_phones(phones: list[Phone], num_frames: int, rate: float) -> np.ndarray:
    """(num_frames, len(PHONE_SET)) one-hot phone identity at ``rate`` frames/s."""
    out = np.zeros((num_frames, len(PHONE_SET)), dtype=np.float32)
    out[:, PHONE_INDEX["SIL"]] = 1.0
    for p in phones:
        lo, hi = int(round(p.start * rate)), int(round(p.end * rate))
        lo, hi = max(lo, 0), min(hi, num_frames)
        if hi > lo:
            out[lo:hi] = 0.0
            out[lo:hi, PHONE_INDEX.get(p.phone, PHONE_INDEX["SIL"])] = 1.0
    return out


@dataclass
class S2AFeatures:
    """Frame-synchronous features at ``rate`` frames/s; ``values``: (T, D) float32.

    Layout of D: one-hot phones (40) | log-f0 (1, 0 when unvoiced) | voiced (1) |
    energy (1, dBFS / 100) | log-mel (n_mels, natural log, floored at 1e-5).
    """

    values: np.ndarray
    rate: float
    n_mels: int

    @property
    def phone_slice(self) -> slice:
        return slice(0, len(PHONE_SET))

    @property
    def pitch_slice(self) -> slice:
        return slice(len(PHONE_SET), len(PHONE_SET) + 2)

    @property
    def energy_index(self) -> int:
        return len(PHONE_SET) + 2

    @property
    def mel_slice(self) -> slice:
        start = len(PHONE_SET) + 3
        return slice(start, start + self.n_mels)


def s2a_features(samples: np.ndarray, phones: list[Phone], n_mels: int = 80) -> S2AFeatures:
    """Build the Transformer-S2A feature sequence of 16 kHz ``samples`` at 100 frames/s."""
    mel = librosa.feature.melspectrogram(
        y=samples, sr=SAMPLE_RATE, n_fft=512, win_length=WINDOW, hop_length=HOP, n_mels=n_mels, center=True
    )
    num_frames = mel.shape[1]
    log_mel = np.log(np.maximum(mel, 1e-5)).T
    f0, voiced = pitch_hz(samples)
    f0 = _fit(f0, num_frames)
    voiced = _fit(voiced.astype(np.float32), num_frames)
    log_f0 = np.where(f0 > 0, np.log(np.maximum(f0, 1.0)), 0.0)
    energy = _fit(frame_energy_db(samples), num_frames) / 100.0
    values = np.concatenate(
        [
            one_hot_phones(phones, num_frames, 1.0 / HOP_SECONDS),
            log_f0[:, None],
            voiced[:, None],
            energy[:, None],
            log_mel,
        ],
        axis=1,
    ).astype(np.float32)
    return S2AFeatures(values=values, rate=1.0 / HOP_SECONDS, n_mels=n_mels)


def _fit(values: np.ndarray, length: int) -> np.ndarray:
    """Trim or edge-pad a per-frame array to ``length`` (analysis frame counts differ by one)."""
    if len(values) >= length:
        return values[:length]
    return np.pad(values, (0, length - len(values)), mode="edge")
