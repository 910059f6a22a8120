"""Phones -> ARKit mouth curves with coarticulation.

Each phone has articulatory *targets* (jaw opening, lip closure, rounding, spreading, ...)
and a *dominance* per articulator. Following Cohen & Massaro (1993), the value of an
articulator at time t is the dominance-weighted mean of the targets of nearby phones::

    D_i(t) = alpha_i * exp(-theta * max(0, |t - c_i| - h_i))        (c_i: centre, h_i: plateau)
    F(t)   = sum_i D_i(t) T_i / sum_i D_i(t)

theta is smaller before a phone's centre (anticipation: lips round before /uw/) than after
(carry-over). Critical articulators have large alpha (lip closure on p/b/m, lower lip on
f/v, rounding on w/uw), so a 40 ms /b/ still seals the lips between two open vowels, while
/h/ has low dominance everywhere and takes the shape of its neighbours.

Lip closure is its own articulatory track (0..1) and becomes ``mouthClose = closure *
jawOpen`` (the ARKit convention: lips sealed against an open jaw), with lowerDown/upperUp
scaled by ``1 - closure``. The jaw is scaled by the frame energy (loud vowels open wider).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steadytalk_shared.curves import Phone, frame_times
from steadytalk_shared.schema import CHANNEL_INDEX, CHANNELS, NUM_CHANNELS, SCHEMA_VERSION

# Articulatory parameters the viseme table is written in; mapped to ARKit at the end.
ARTICULATORS = (
    "jaw",
    "closure",
    "funnel",
    "pucker",
    "stretch",
    "smile",
    "roll_lower",
    "roll_upper",
    "upper_up",
    "lower_down",
    "press",
    "tongue",
    "shrug_lower",
    "cheek_puff",
)
_A = {name: i for i, name in enumerate(ARTICULATORS)}


@dataclass(frozen=True)
class Viseme:
    targets: dict[str, float]
    # Dominance magnitude per articulator; unspecified ones use ``base``.
    dominance: dict[str, float]
    base: float = 1.0
    # Multiplies the decay rates: a large magnitude alone would also spread a phone far into
    # its neighbours, so brief, strong gestures (lip seal, lip-to-teeth) decay faster.
    sharpness: float = 1.0


def _v(
    targets: dict[str, float], dominance: dict[str, float] | None = None, base: float = 1.0, sharpness: float = 1.0
) -> Viseme:
    return Viseme(targets, dominance or {}, base, sharpness)


_BILABIAL_DOMINANCE = {"closure": 8.0, "jaw": 2.5, "press": 4.0, "lower_down": 4.0, "upper_up": 4.0}
_ROUND_DOMINANCE = {"funnel": 3.0, "pucker": 3.0}

# ARPAbet (CMU dictionary set, no stress) -> articulatory targets. Values were set by
# looking at ARKit reference captures of each sound: open vowels open the jaw 0.5-0.7,
# spread vowels stretch the corners, rounded vowels funnel and pucker.
VISEMES: dict[str, Viseme] = {
    "SIL": _v({}, {"closure": 0.5}, base=1.0),  # rest pose: every channel 0
    "AA": _v({"jaw": 0.70, "lower_down": 0.30, "upper_up": 0.10}),
    "AE": _v({"jaw": 0.60, "stretch": 0.25, "lower_down": 0.35, "upper_up": 0.20}),
    "AH": _v({"jaw": 0.50, "lower_down": 0.25, "upper_up": 0.05}),
    "AO": _v({"jaw": 0.55, "funnel": 0.35, "pucker": 0.10, "lower_down": 0.20}),
    "EH": _v({"jaw": 0.42, "stretch": 0.20, "lower_down": 0.25, "upper_up": 0.10}),
    "ER": _v({"jaw": 0.28, "funnel": 0.30, "pucker": 0.15}, _ROUND_DOMINANCE),
    "IH": _v({"jaw": 0.28, "stretch": 0.25, "smile": 0.10, "lower_down": 0.15}),
    "IY": _v({"jaw": 0.20, "stretch": 0.35, "smile": 0.20, "lower_down": 0.15, "upper_up": 0.10}),
    "UH": _v({"jaw": 0.30, "funnel": 0.30, "pucker": 0.30}, _ROUND_DOMINANCE),
    "UW": _v({"jaw": 0.20, "funnel": 0.35, "pucker": 0.65}, _ROUND_DOMINANCE),
    "B": _v({"jaw": 0.08, "closure": 1.0, "press": 0.30, "cheek_puff": 0.05}, _BILABIAL_DOMINANCE, sharpness=3.0),
    "P": _v({"jaw": 0.08, "closure": 1.0, "press": 0.45, "cheek_puff": 0.08}, _BILABIAL_DOMINANCE, sharpness=3.0),
    "M": _v({"jaw": 0.06, "closure": 1.0, "press": 0.25, "roll_lower": 0.05}, _BILABIAL_DOMINANCE, sharpness=3.0),
    "F": _v(
        {"jaw": 0.12, "roll_lower": 0.55, "upper_up": 0.25, "shrug_lower": 0.1},
        {"roll_lower": 5.0, "jaw": 2.0},
        sharpness=2.0,
    ),
    "V": _v(
        {"jaw": 0.12, "roll_lower": 0.50, "upper_up": 0.20, "shrug_lower": 0.1},
        {"roll_lower": 5.0, "jaw": 2.0},
        sharpness=2.0,
    ),
    "TH": _v({"jaw": 0.18, "tongue": 0.45, "lower_down": 0.10}, {"tongue": 4.0}),
    "DH": _v({"jaw": 0.16, "tongue": 0.35, "lower_down": 0.10}, {"tongue": 4.0}),
    "L": _v({"jaw": 0.25, "tongue": 0.15, "lower_down": 0.15}, {"tongue": 2.0}, base=0.8),
    "W": _v({"jaw": 0.10, "funnel": 0.40, "pucker": 0.80}, {"funnel": 4.0, "pucker": 4.0}),
    "R": _v({"jaw": 0.15, "funnel": 0.30, "pucker": 0.30}, _ROUND_DOMINANCE, base=0.8),
    "S": _v({"jaw": 0.08, "stretch": 0.30, "lower_down": 0.10, "upper_up": 0.10}, {"jaw": 2.0}),
    "Z": _v({"jaw": 0.08, "stretch": 0.25, "lower_down": 0.10, "upper_up": 0.10}, {"jaw": 2.0}),
    "SH": _v({"jaw": 0.12, "funnel": 0.45, "pucker": 0.25, "upper_up": 0.20, "lower_down": 0.20}, _ROUND_DOMINANCE),
    "ZH": _v({"jaw": 0.12, "funnel": 0.45, "pucker": 0.25, "upper_up": 0.20, "lower_down": 0.20}, _ROUND_DOMINANCE),
    "CH": _v({"jaw": 0.12, "funnel": 0.40, "pucker": 0.20, "upper_up": 0.20, "lower_down": 0.20}, _ROUND_DOMINANCE),
    "JH": _v({"jaw": 0.12, "funnel": 0.40, "pucker": 0.20, "upper_up": 0.20, "lower_down": 0.20}, _ROUND_DOMINANCE),
    "T": _v({"jaw": 0.15, "lower_down": 0.10}, base=0.7),
    "D": _v({"jaw": 0.15, "lower_down": 0.10}, base=0.7),
    "N": _v({"jaw": 0.15, "lower_down": 0.08}, base=0.7),
    "K": _v({"jaw": 0.20}, base=0.5),
    "G": _v({"jaw": 0.20}, base=0.5),
    "NG": _v({"jaw": 0.18}, base=0.5),
    "HH": _v({"jaw": 0.30}, base=0.2),
    "Y": _v({"jaw": 0.15, "stretch": 0.30, "smile": 0.10}, base=0.8),
}
# Diphthongs glide between two vowel targets: first 60% of the phone, then the rest.
DIPHTHONGS: dict[str, tuple[str, str]] = {
    "AY": ("AA", "IY"),
    "AW": ("AA", "UW"),
    "EY": ("EH", "IY"),
    "OW": ("AO", "UW"),
    "OY": ("AO", "IY"),
}
DIPHTHONG_SPLIT = 0.6


@dataclass(frozen=True)
class CoarticulationConfig:
    # Dominance decay rates in 1/s. 1/theta is how far a phone reaches into its neighbours:
    # ~70 ms of anticipation and ~50 ms of carry-over match measured lip-rounding spans.
    theta_anticipation: float = 15.0
    theta_carryover: float = 20.0
    # Fraction of a phone's half-duration held at full dominance (a plateau), so long vowels
    # hold their shape instead of peaking only at the centre.
    plateau: float = 0.6
    # Beyond this a phone has no influence (exp(-15 * 0.25) = 2% of its peak dominance), so
    # long silences are exactly the rest pose.
    reach_seconds: float = 0.25
    # Jaw gain from energy: quiet speech opens less, loud speech more (gain range).
    energy_gain_min: float = 0.55
    energy_gain_max: float = 1.15


def _expand_diphthongs(phones: list[Phone]) -> list[Phone]:
    out: list[Phone] = []
    for p in phones:
        if p.phone in DIPHTHONGS:
            first, second = DIPHTHONGS[p.phone]
            split = p.start + DIPHTHONG_SPLIT * (p.end - p.start)
            out += [Phone(first, p.start, split, p.word), Phone(second, split, p.end, p.word)]
        else:
            out.append(p)
    return out


def _table() -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    names = list(VISEMES)
    targets = np.zeros((len(names), len(ARTICULATORS)))
    dominance = np.zeros_like(targets)
    for row, name in enumerate(names):
        viseme = VISEMES[name]
        dominance[row, :] = viseme.base
        for art, value in viseme.targets.items():
            targets[row, _A[art]] = value
        for art, value in viseme.dominance.items():
            dominance[row, _A[art]] = value
    return {name: i for i, name in enumerate(names)}, targets, dominance


_ROW, _TARGETS, _DOMINANCE = _table()
_SHARPNESS = np.array([VISEMES[name].sharpness for name in _ROW])


def articulation(phones: list[Phone], times: np.ndarray, config: CoarticulationConfig) -> np.ndarray:
    """Articulatory tracks (len(times), len(ARTICULATORS)) by dominance blending."""
    numerator = np.zeros((len(times), len(ARTICULATORS)))
    # A faint rest-pose background keeps the blend defined where no phone reaches.
    denominator = np.full((len(times), len(ARTICULATORS)), 1e-3)
    for p in _expand_diphthongs(phones):
        row = _ROW.get(p.phone, _ROW["SIL"])
        lo, hi = np.searchsorted(times, [p.start - config.reach_seconds, p.end + config.reach_seconds])
        if hi <= lo:
            continue
        t = times[lo:hi]
        centre = 0.5 * (p.start + p.end)
        half = 0.5 * (p.end - p.start)
        distance = np.maximum(0.0, np.abs(t - centre) - config.plateau * half)
        theta = _SHARPNESS[row] * np.where(t < centre, config.theta_anticipation, config.theta_carryover)
        weight = np.exp(-theta * distance)[:, None] * _DOMINANCE[row]  # (t, A)
        numerator[lo:hi] += weight * _TARGETS[row]
        denominator[lo:hi] += weight
    return numerator / denominator


def energy_gain(energy_db: np.ndarray, speech_mask: np.ndarray, config: CoarticulationConfig) -> np.ndarray:
    """Per-frame jaw gain from frame energy (dB), normalised on this clip's speech frames."""
    if not np.any(speech_mask):
        return np.full_like(energy_db, config.energy_gain_min)
    low, high = np.percentile(energy_db[speech_mask], [10, 95])
    level = np.clip((energy_db - low) / max(high - low, 1e-6), 0.0, 1.0)
    return config.energy_gain_min + (config.energy_gain_max - config.energy_gain_min) * level


def to_arkit(tracks: np.ndarray, jaw_gain: np.ndarray) -> np.ndarray:
    """Articulatory tracks -> (T, NUM_CHANNELS) ARKit coefficients in [0, 1]."""

    def a(name: str) -> np.ndarray:
        return tracks[:, _A[name]]

    out = np.zeros((tracks.shape[0], NUM_CHANNELS), dtype=np.float64)

    def put(channel: str, values: np.ndarray) -> None:
        out[:, CHANNEL_INDEX[channel]] = values

    closure = np.clip(a("closure"), 0.0, 1.0)
    jaw = np.clip(a("jaw") * jaw_gain, 0.0, 1.0)
    put("jawOpen", jaw)
    put("mouthClose", closure * jaw)
    put("mouthFunnel", a("funnel"))
    put("mouthPucker", a("pucker"))
    for side in ("Left", "Right"):
        put(f"mouthStretch{side}", a("stretch") * (1.0 - closure))
        put(f"mouthSmile{side}", a("smile"))
        put(f"mouthPress{side}", a("press"))
        put(f"mouthLowerDown{side}", a("lower_down") * (1.0 - closure))
        put(f"mouthUpperUp{side}", a("upper_up") * (1.0 - closure))
    put("mouthRollLower", a("roll_lower"))
    put("mouthRollUpper", a("roll_upper"))
    put("mouthShrugLower", a("shrug_lower"))
    put("cheekPuff", a("cheek_puff"))
    put("tongueOut", a("tongue"))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def phones_to_curves(
    phones: list[Phone],
    num_frames: int,
    fps: float,
    energy_db: np.ndarray | None = None,
    speech_mask: np.ndarray | None = None,
    config: CoarticulationConfig | None = None,
) -> np.ndarray:
    """Per-frame ARKit curves (num_frames, NUM_CHANNELS) for ``phones`` at ``fps``.

    ``energy_db``/``speech_mask``: per output frame; without them the jaw gain is 1.
    """
    config = config or CoarticulationConfig()
    times = frame_times(num_frames, fps)
    tracks = articulation(phones, times, config)
    gain = np.ones(num_frames) if energy_db is None else energy_gain(energy_db, speech_mask, config)
    return to_arkit(tracks, gain)


def phone_shapes() -> dict[str, list[float]]:
    """The ARKit coefficients each phone's targets give on their own (jaw gain 1), rounded.

    Written to ``shared/data/phone_shapes.json`` (``write_phone_shapes``) so that the add-on can
    turn coefficient curves into viseme weights (``steadytalk_shared.mapping``) from the same
    table the engine draws its curves with; a test keeps the file equal to this table."""
    shapes = to_arkit(_TARGETS, np.ones(len(_TARGETS)))
    return {name: [round(float(v), 4) for v in shapes[row]] for name, row in _ROW.items()}


def write_phone_shapes(path) -> None:
    import json

    payload = {"schema_version": SCHEMA_VERSION, "channels": list(CHANNELS), "phones": phone_shapes()}
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")
