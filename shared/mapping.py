"""From the schema's ARKit curves to the shape keys of a user's rig.

A *preset* names the rig convention: ARKit itself (names matched with aliases and case, see
``schema.match_channel``), a viseme set (VRM, Meta/Oculus 15 visemes, Rhubarb, Preston
Blair) or a two-morph rig (``mouthOpen`` and ``mouthSmile``, derived by formula);
``choose_preset`` finds the convention of a rig from its shape keys (the "Auto" convention).
Viseme rigs have one shape per mouth shape instead of ARKit's muscles, so their
curves are *derived from the coefficient curves*: every frame's coefficients are explained as
a non-negative blend of the visemes' own coefficient shapes (non-negative least squares,
numpy only, batched over frames). Each viseme's shape is the mean of its phones' shapes in
the engine's table (``data/phone_shapes.json``), so the add-on and the engine agree on what
"PP" or "O" look like. A viseme set with a rest shape (sil, X, rest) gets what the others
leave: ``1 - sum(weights)``.

Everything here is plain Python + numpy: it runs inside Blender.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from .schema import CHANNEL_INDEX, CHANNELS, SCHEMA_VERSION, lip_aperture, match_rig
from .schema import MOUTH_CHANNELS as SCHEMA_MOUTH_CHANNELS

PHONE_SHAPES_PATH = Path(__file__).parent / "data" / "phone_shapes.json"

# Only mouth and jaw shapes are explained by visemes; the upper face (blinks, brows, gaze) is
# keyed by ARKit name or not at all: viseme conventions have no brows or eye look.
VISEME_CHANNELS: tuple[str, ...] = SCHEMA_MOUTH_CHANNELS
# What counts when judging how well a convention covers a rig's mouth: an ARKit rig is not a
# worse match for lacking brows or blinks, which lip-sync does not move.
MOUTH_CHANNELS: tuple[str, ...] = SCHEMA_MOUTH_CHANNELS


@dataclass(frozen=True)
class Viseme:
    name: str
    phones: tuple[str, ...]  # ARPAbet; empty for the rest shape
    aliases: tuple[str, ...] = ()  # other spellings seen on rigs


@dataclass(frozen=True)
class Preset:
    id: str
    label: str
    description: str
    visemes: tuple[Viseme, ...] = ()  # empty: the ARKit preset (or a derived one)
    # Prefixes rigs put before viseme names ("viseme_aa", "vrc.v_aa", "Fcl_MTH_A"), compared normalized.
    prefixes: tuple[str, ...] = ()
    # Shapes computed from the ARKit curves by a formula (``DERIVED_SHAPES``), for rigs with a
    # handful of morphs; their phones are empty.
    derived: tuple[Viseme, ...] = ()

    @property
    def is_arkit(self) -> bool:
        return not self.visemes and not self.derived

    @property
    def shapes(self) -> tuple[Viseme, ...]:
        """The named shapes of a viseme or derived preset (empty for ARKit)."""
        return self.visemes or self.derived

    @property
    def sources(self) -> tuple[str, ...]:
        """What this preset drives: ARKit channels, or viseme (or derived shape) names."""
        return CHANNELS if self.is_arkit else tuple(v.name for v in self.shapes)

    @property
    def mouth_sources(self) -> tuple[str, ...]:
        """The sources that make the mouth speak: how well a rig is covered is judged on these
        (a rig without the rest viseme or blinks is still fully covered)."""
        if self.is_arkit:
            return MOUTH_CHANNELS
        return tuple(v.name for v in self.shapes if v.phones or self.derived)


def _v(name: str, phones: str, aliases: str = "") -> Viseme:
    return Viseme(name, tuple(phones.split()), tuple(aliases.split()))


PRESETS: dict[str, Preset] = {
    p.id: p
    for p in (
        Preset("ARKIT", "ARKit", "ARKit blendshape names (52-shape rigs: Faceit, Ready Player Me, Audio2Face)"),
        Preset(
            "VRM",
            "VRM (A I U E O)",
            "VRM vowel expressions, VRM 0.x (A I U E O) and 1.0 (aa ih ou ee oh), VRoid Fcl_MTH_*",
            (
                _v("A", "AA AH AE", "aa あ"),
                _v("I", "IY IH", "ih い"),
                _v("U", "UW UH W", "ou う"),
                _v("E", "EH", "ee え"),
                _v("O", "AO ER", "oh お"),
            ),
            prefixes=("fclmth", "mth", "vrm"),
        ),
        Preset(
            "OCULUS",
            "Meta/Oculus visemes",
            "The 15 Oculus/Meta visemes (viseme_PP, vrc.v_pp, ...), as Ready Player Me and VRChat use them",
            (
                _v("sil", "", "rest"),
                _v("PP", "P B M"),
                _v("FF", "F V"),
                _v("TH", "TH DH"),
                _v("DD", "T D"),
                _v("kk", "K G NG"),
                _v("CH", "CH JH SH ZH"),
                _v("SS", "S Z"),
                _v("nn", "N L"),
                _v("RR", "R"),
                _v("aa", "AA AH"),
                _v("E", "EH AE"),
                # Ready Player Me spells the last three viseme_I, viseme_O, viseme_U.
                _v("ih", "IH IY Y", "I"),
                _v("oh", "AO ER", "O"),
                _v("ou", "UW UH W", "U"),
            ),
            prefixes=("viseme", "vrcv", "v"),
        ),
        Preset(
            "RHUBARB",
            "Rhubarb (A-H, X)",
            "Rhubarb Lip Sync's mouth shapes A-H and X (idle)",
            (
                _v("X", "", "idle rest"),
                _v("A", "P B M"),
                _v("B", "K G NG S Z T D N HH Y TH DH CH JH SH ZH R"),
                _v("C", "EH AE IH AH"),
                _v("D", "AA"),
                _v("E", "AO ER"),
                _v("F", "UW UH W"),
                _v("G", "F V"),
                _v("H", "L"),
            ),
            prefixes=("mouth", "rhubarb"),
        ),
        Preset(
            "PRESTON_BLAIR",
            "Preston Blair",
            "Preston Blair's classic phoneme set: AI E O U WQ MBP FV L etc rest",
            (
                _v("rest", "", "sil"),
                _v("MBP", "P B M"),
                _v("FV", "F V"),
                _v("L", "L TH DH"),
                _v("etc", "K G NG S Z T D N HH Y CH JH SH ZH R", "cdgknrsthyz"),
                _v("AI", "AA AE AH"),
                _v("E", "EH IH IY"),
                _v("O", "AO ER"),
                _v("U", "UH UW"),
                _v("WQ", "W"),
            ),
            prefixes=("mouth", "pb"),
        ),
        Preset(
            "TWO_MORPH",
            "Open / Smile",
            "Rigs with two mouth morphs: mouthOpen (the lip opening) and mouthSmile (the mouth's width)",
            derived=(_v("mouthOpen", "", "open"), _v("mouthSmile", "", "smile")),
            prefixes=("mouth",),
        ),
    )
}
AUTO = "AUTO"  # the default convention: ``choose_preset`` picks one from the rig's shape keys
DEFAULT_PRESET = AUTO
# Ties in coverage go to the richer convention: ARKit keeps every muscle, visemes blend.
DETECTION_ORDER = ("ARKIT", "OCULUS", "VRM", "PRESTON_BLAIR", "RHUBARB", "TWO_MORPH")


def _normalize(name: str) -> str:
    return re.sub(r"[\s_.\-]", "", name).lower()


def match_targets(preset: Preset, shape_key_names: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """``({source: shape key name}, unmatched sources)`` for a rig's shape keys.

    ARKit: by channel name with aliases and case (an exact spelling wins). Visemes: the name or
    an alias, optionally after one of the preset's prefixes, case and separators ignored; an
    exact spelling wins here too."""
    names = list(shape_key_names)
    if preset.is_arkit:
        return match_rig(names)
    lookup: dict[str, str] = {}
    for viseme in preset.shapes:
        for spelling in (viseme.name, *viseme.aliases):
            key = _normalize(spelling)
            for prefix in ("", *preset.prefixes):
                lookup.setdefault(prefix + key, viseme.name)
    mapping: dict[str, str] = {}
    for rig_name in names:
        source = lookup.get(_normalize(rig_name))
        if source is not None and (source not in mapping or rig_name == source):
            mapping[source] = rig_name
    return mapping, [source for source in preset.sources if source not in mapping]


@cache
def phone_shapes() -> dict[str, np.ndarray]:
    data = json.loads(PHONE_SHAPES_PATH.read_text())
    if data["schema_version"] != SCHEMA_VERSION or tuple(data["channels"]) != CHANNELS:
        raise ValueError(f"{PHONE_SHAPES_PATH} was written for another schema; regenerate it")
    return {phone: np.asarray(values, dtype=np.float64) for phone, values in data["phones"].items()}


def viseme_shapes(preset: Preset) -> np.ndarray:
    """(visemes with phones, VISEME_CHANNELS) coefficient shape of each non-rest viseme."""
    shapes = phone_shapes()
    columns = [CHANNEL_INDEX[name] for name in VISEME_CHANNELS]
    rows = [np.mean([shapes[p] for p in v.phones], axis=0)[columns] for v in preset.visemes if v.phones]
    return np.stack(rows)


def nonnegative_blend(targets: np.ndarray, shapes: np.ndarray, iterations: int = 150) -> np.ndarray:
    """Weights w >= 0 with sum(w) <= 1 minimizing ``|w @ shapes - target|`` for each target row.

    A viseme is a whole mouth shape, so a blend may not exceed one shape in all: two half-open
    visemes, not two full ones. Accelerated projected gradient (FISTA) on all frames at once:
    (T, K) weights for (T, C) targets and (K, C) shapes; ten minutes at 30 fps take well under
    a second."""
    targets = np.asarray(targets, dtype=np.float64)
    gram = shapes @ shapes.T  # (K, K)
    # A faint ridge makes the answer unique (some sets hold a viseme that is a blend of others,
    # e.g. Oculus nn of DD, TH and kk), so neighbouring frames get neighbouring weights.
    gram = gram + 1e-3 * float(np.linalg.eigvalsh(gram).max()) * np.eye(len(gram))
    linear = targets @ shapes.T  # (T, K)
    step = 1.0 / float(np.linalg.eigvalsh(gram).max())
    weights = np.zeros_like(linear)
    momentum_point = weights.copy()
    t = 1.0
    for _ in range(iterations):
        updated = _project_capped_simplex(momentum_point - step * (momentum_point @ gram - linear))
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        momentum_point = updated + ((t - 1.0) / t_next) * (updated - weights)
        weights, t = updated, t_next
    return weights


def _project_capped_simplex(points: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row onto {w >= 0, sum(w) <= 1}."""
    clipped = np.maximum(points, 0.0)
    over = clipped.sum(axis=1) > 1.0
    if not over.any():
        return clipped
    rows = points[over]
    ordered = -np.sort(-rows, axis=1)
    cumulative = np.cumsum(ordered, axis=1) - 1.0
    index = np.arange(1, rows.shape[1] + 1)
    count = np.count_nonzero(ordered - cumulative / index > 0, axis=1)
    threshold = cumulative[np.arange(len(rows)), count - 1] / count
    clipped[over] = np.maximum(rows - threshold[:, None], 0.0)
    return clipped


def viseme_curves(preset: Preset, curves: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame weight in [0, 1] of each of the preset's visemes for (T, CHANNELS) curves."""
    columns = [CHANNEL_INDEX[name] for name in VISEME_CHANNELS]
    weights = nonnegative_blend(np.asarray(curves)[:, columns], viseme_shapes(preset))
    weights = np.clip(weights, 0.0, 1.0)
    spoken = [v.name for v in preset.visemes if v.phones]  # the columns of ``weights``, in order
    out = {name: weights[:, i].astype(np.float32) for i, name in enumerate(spoken)}
    rest = np.clip(1.0 - weights.sum(axis=1), 0.0, 1.0).astype(np.float32)  # what the spoken visemes leave
    return {v.name: out.get(v.name, rest) for v in preset.visemes}


def _mouth_width(curves: np.ndarray) -> np.ndarray:
    """A smile morph is the mouth's width: the smile, and half of the stretch of "ee"."""
    c = np.asarray(curves, dtype=np.float64)
    smile = 0.5 * (c[:, CHANNEL_INDEX["mouthSmileLeft"]] + c[:, CHANNEL_INDEX["mouthSmileRight"]])
    stretch = 0.5 * (c[:, CHANNEL_INDEX["mouthStretchLeft"]] + c[:, CHANNEL_INDEX["mouthStretchRight"]])
    return smile + 0.5 * stretch


# The two-morph rig: "open" is the lip aperture (a closure is 0 even with the jaw down).
DERIVED_SHAPES = {"mouthOpen": lip_aperture, "mouthSmile": _mouth_width}


def source_curves(preset: Preset, curves: np.ndarray) -> dict[str, np.ndarray]:
    """Source curves ({name: values}) from (T, CHANNELS) curves: every ARKit channel, plus the
    preset's visemes or derived shapes (a custom mapping may use both)."""
    curves = np.asarray(curves, dtype=np.float32)
    out = {name: curves[:, i] for i, name in enumerate(CHANNELS)}
    if preset.derived:
        for shape in preset.derived:
            out[shape.name] = np.clip(DERIVED_SHAPES[shape.name](curves), 0.0, 1.0).astype(np.float32)
    elif preset.visemes:
        out.update(viseme_curves(preset, curves))
    return out


def rig_curves(sources: Mapping[str, np.ndarray], targets: Iterable[tuple[str, str, float]]) -> dict[str, np.ndarray]:
    """{shape key: values} from source curves and (source, shape key, scale) targets.

    Several sources on one shape key add up (clipped to [0, 1]), so a custom mapping can drive
    one "wide open" key from jawOpen and mouthLowerDown alike."""
    out: dict[str, np.ndarray] = {}
    for source, shape_key, scale in targets:
        if source not in sources or not shape_key:
            continue
        values = sources[source] * np.float32(scale)
        out[shape_key] = values if shape_key not in out else out[shape_key] + values
    return {name: np.clip(values, 0.0, 1.0).astype(np.float32) for name, values in out.items()}


def opening_sources(preset: Preset) -> tuple[str, ...]:
    """The sources that open the lips (ARKit jawOpen, the open vowels of a viseme set): when all
    of them are missing or move no vertex, the convention cannot make the mouth speak."""
    if preset.is_arkit:
        return ("jawOpen",)
    if preset.derived:
        return ("mouthOpen",)
    spoken = [v for v in preset.visemes if v.phones]
    full = np.zeros((len(spoken), len(CHANNELS)))
    full[:, [CHANNEL_INDEX[name] for name in VISEME_CHANNELS]] = viseme_shapes(preset)
    aperture = lip_aperture(full)
    return tuple(v.name for v, a in zip(spoken, aperture, strict=True) if a >= 0.5 * aperture.max())


@dataclass(frozen=True)
class Detection:
    """The convention chosen for a rig, and why (one line for the panel)."""

    preset: Preset
    reason: str
    coverage: float  # share of the preset's mouth sources found on shape keys that move
    speaks: bool  # one of its opening sources moves: the mouth will open


def choose_preset(moving: Iterable[str], empty: Iterable[str] = ()) -> Detection | None:
    """The convention of a rig from its shape keys: ``moving`` move vertices, ``empty`` do not.

    The convention whose mouth sources the moving keys cover best wins among those that can
    open the mouth (ties go to ``DETECTION_ORDER``); keys that move nothing count for nothing,
    so a rig with empty ARKit keys and working VRM visemes gets VRM. None: no convention
    matches any shape key."""
    moving, empty = list(moving), list(empty)
    moves = set(moving)
    found_by: dict[str, tuple[dict[str, str], set[str]]] = {}
    for preset_id in DETECTION_ORDER:
        preset = PRESETS[preset_id]
        found, _ = match_targets(preset, moving + empty)
        found_by[preset_id] = (found, {source for source, key in found.items() if key in moves})
    ranked = []
    for index, preset_id in enumerate(DETECTION_ORDER):
        preset = PRESETS[preset_id]
        found, working = found_by[preset_id]
        if not found:
            continue
        mouth = preset.mouth_sources
        coverage = len(working & set(mouth)) / len(mouth)
        speaks = bool(working & set(opening_sources(preset)))
        ranked.append((not speaks, -round(coverage, 6), index, preset, coverage, speaks))
    if not ranked:
        return None
    _, _, _, preset, coverage, speaks = min(ranked)
    found, working = found_by[preset.id]
    mouth = [s for s in preset.mouth_sources if s in working]
    reason = f"{preset.label}: {len(mouth)} of {len(preset.mouth_sources)} mouth shapes"

    def blank_openers(preset_id: str) -> str:
        """'jawOpen moves' / 'aa, oh move': opening sources found on the rig whose keys move nothing."""
        found, working = found_by[preset_id]
        blank = [s for s in opening_sources(PRESETS[preset_id]) if s in found and s not in working]
        return f"{', '.join(blank)} {'moves' if len(blank) == 1 else 'move'}" if blank else ""

    if not speaks:
        blank = blank_openers(preset.id)
        reason += f"; {blank} no vertex" if blank else "; it has no shape that opens the mouth"
        return Detection(preset, reason, coverage, speaks)
    passed = [
        f"{PRESETS[p].label} ({blank_openers(p)} no vertex)"
        for p in DETECTION_ORDER
        if p != preset.id and blank_openers(p) and not found_by[p][1] & set(opening_sources(PRESETS[p]))
    ]
    if passed:
        reason += f"; not {', '.join(passed)}"
    return Detection(preset, reason, coverage, speaks)


def dominant_shapes(weights: np.ndarray, min_hold: int = 1) -> np.ndarray:
    """Per frame, the index of the one shape shown, from (T, K) weights: the strongest, held
    at least ``min_hold`` frames (sprite mouths; a short closure is held longer, not dropped,
    unless it falls inside the previous shape's hold)."""
    strongest = np.argmax(np.asarray(weights), axis=1)
    if min_hold <= 1 or len(strongest) == 0:
        return strongest
    out = np.empty_like(strongest)
    shown, since = strongest[0], 0
    for t, wanted in enumerate(strongest):
        if wanted != shown and t - since >= min_hold:
            shown, since = wanted, t
        out[t] = shown
    return out


def stepped_curves(preset: Preset, sources: Mapping[str, np.ndarray], min_hold: int) -> dict[str, np.ndarray]:
    """Source curves as a stepped (Constant-key) mouth: a viseme set shows one viseme at a time
    at full weight; ARKit and derived curves are held ``min_hold`` frames each ("on twos")."""
    hold = max(1, int(min_hold))
    out = dict(sources)
    if preset.visemes:
        names = [v.name for v in preset.visemes]
        shown = dominant_shapes(np.stack([sources[n] for n in names], axis=1), hold)
        out.update({name: (shown == i).astype(np.float32) for i, name in enumerate(names)})
        return out
    for name, values in sources.items():
        held = np.asarray(values)[(np.arange(len(values)) // hold) * hold]
        out[name] = held.astype(np.float32)
    return out
