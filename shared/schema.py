"""Expression parameters: the 52 ARKit blendshapes and the head rotation, in a fixed order.

This module is the one place that owns the channel names, their order and the schema
version (BRIEF section 4). Curves on the wire, in files and on a rig are always in
``CHANNELS`` order; a change of names or order bumps ``SCHEMA_VERSION``.

Values are in [0, 1]. Left/right are named from the character's point of view, as ARKit does.

Schema history: v1 had the 33 mouth, jaw, cheek, tongue and blink channels (``V1_CHANNELS``);
v2 appends the other 19 ARKit shapes (brows, eye look, squint, wide, sneer) after them, in
that order, so a v1 array is the first 33 columns of a v2 one (``upgrade_curves`` pads zeros),
and adds the head rotation track (``HEAD_AXES``).

Head rotation, per frame ``[yaw, pitch, roll]`` in radians relative to the rest pose, as
right-handed rotations about the face model's axes (X to the character's left, Y up, Z out
of the face), applied as ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)``. From the character's point
of view: yaw > 0 turns the face to its left, pitch > 0 tips the chin down (a nod), roll > 0
tilts the head towards its right shoulder (the left ear rises).
"""

from __future__ import annotations

import re

import numpy as np

SCHEMA_VERSION = 2

CHANNELS: tuple[str, ...] = (
    "jawOpen",
    "jawForward",
    "jawLeft",
    "jawRight",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthLeft",
    "mouthRight",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "tongueOut",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    # v2: the rest of ARKit's 52 (the upper face).
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeWideLeft",
    "eyeWideRight",
    "noseSneerLeft",
    "noseSneerRight",
)

NUM_CHANNELS = len(CHANNELS)
NUM_V1_CHANNELS = 33
V1_CHANNELS: tuple[str, ...] = CHANNELS[:NUM_V1_CHANNELS]
# The channels the lip-sync's phone model and adaptive smoother own (mouth, jaw, cheeks,
# tongue); the rest (blinks, brows, gaze) come from the performance models, which make them
# smooth themselves: a lip kernel would blunt a 150 ms blink.
MOUTH_CHANNELS: tuple[str, ...] = CHANNELS[:31]
NUM_MOUTH_CHANNELS = len(MOUTH_CHANNELS)
UPPER_FACE_CHANNELS: tuple[str, ...] = CHANNELS[NUM_MOUTH_CHANNELS:]

HEAD_AXES: tuple[str, ...] = ("yaw", "pitch", "roll")

# Columns per schema version, for reading results and caches of older releases.
CHANNELS_BY_VERSION: dict[int, tuple[str, ...]] = {1: V1_CHANNELS, 2: CHANNELS}
CHANNEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(CHANNELS)}


def upgrade_curves(values: np.ndarray, version: int) -> np.ndarray:
    """(T, C) curves of schema ``version`` as (T, NUM_CHANNELS) of this one: the channels a
    version lacked are at rest (zero). ValueError for an unknown version or a wrong width."""
    if version not in CHANNELS_BY_VERSION:
        raise ValueError(f"curves use schema version {version}; this build reads versions 1 to {SCHEMA_VERSION}")
    width = len(CHANNELS_BY_VERSION[version])
    array = np.asarray(values, dtype=np.float32)
    if array.size == 0:
        array = array.reshape(0, width)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"schema version {version} curves have {width} channels, got shape {array.shape}")
    return np.pad(array, ((0, 0), (0, NUM_CHANNELS - width)))


def index(name: str) -> int:
    """Position of a canonical channel name in ``CHANNELS`` (KeyError for anything else)."""
    return CHANNEL_INDEX[name]


def _normalize(name: str) -> str:
    """Reduce a rig's shape-key name to a comparable key.

    Accepts ``jawOpen``, ``JawOpen``, ``jaw_open``, ``mouthSmile_L``, ``mouthSmileL``,
    ``MouthSmile.L`` and ``mouthSmile-Left``: case, separators and the short side
    suffixes are all rig conventions seen in the wild (Faceit, VRoid, Ready Player Me).
    """
    key = name.strip()
    side = _SIDE_SUFFIX.search(key)
    if side:
        letter = (side.group("separated") or side.group("glued")).upper()
        key = key[: side.start()] + ("Left" if letter == "L" else "Right")
    return re.sub(r"[\s_.\-]", "", key).lower()


# "_L", ".l", " R", "-r" after a separator, or a capital L/R glued to a lowercase letter ("mouthSmileL").
_SIDE_SUFFIX = re.compile(r"(?:[\s_.\-](?P<separated>[LlRr])|(?<=[a-z])(?P<glued>[LR]))$")


_NORMALIZED: dict[str, str] = {_normalize(name): name for name in CHANNELS}


def match_channel(name: str) -> str | None:
    """Canonical ARKit channel for a rig's shape-key ``name``, or None when nothing matches."""
    return _NORMALIZED.get(_normalize(name))


def match_rig(shape_key_names: list[str]) -> tuple[dict[str, str], list[str]]:
    """Map canonical channels to the rig's shape keys.

    Returns ``(mapping, unmatched_channels)``: mapping is ``{canonical: rig_name}``; an exact
    canonical spelling wins over an alias when a rig has both.
    """
    mapping: dict[str, str] = {}
    for rig_name in shape_key_names:
        canonical = match_channel(rig_name)
        if canonical is None:
            continue
        if canonical not in mapping or rig_name == canonical:
            mapping[canonical] = rig_name
    unmatched = [name for name in CHANNELS if name not in mapping]
    return mapping, unmatched


def rest_pose(num_frames: int) -> np.ndarray:
    """All-zero coefficients (the ARKit neutral face), shape (num_frames, NUM_CHANNELS)."""
    return np.zeros((num_frames, NUM_CHANNELS), dtype=np.float32)


# Weights of the lip-aperture model. Units: "jaw-open equivalents", so a fully open jaw with
# nothing else is 1.0. LowerDown/UpperUp part the lips without the jaw; the funnel opens a
# small round hole; press and roll pull the lips together over whatever the jaw does.
APERTURE_LOWER_DOWN = 0.35
APERTURE_UPPER_UP = 0.25
APERTURE_FUNNEL = 0.15
APERTURE_ROLL = 0.5

_J = CHANNEL_INDEX


def lip_aperture(coefficients: np.ndarray) -> np.ndarray:
    """Vertical lip opening implied by ARKit coefficients, per frame, >= 0.

    ``coefficients``: (T, NUM_CHANNELS) in schema order. Follows the ARKit convention that
    ``mouthClose`` closes the lips *against* an open jaw, so lips are shut when
    ``jawOpen - mouthClose`` is near zero and lowerDown/upperUp are small::

        open = max(0, jawOpen - mouthClose)
             + 0.35 * mean(mouthLowerDownLeft/Right)
             + 0.25 * mean(mouthUpperUpLeft/Right)
             + 0.15 * mouthFunnel
        aperture = open * (1 - mean(mouthPressLeft/Right)) * (1 - 0.5 * max(mouthRollLower, mouthRollUpper))

    Used by evaluation (closure and open-vowel rates) and by curve MSI.
    """
    c = np.asarray(coefficients, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] not in (NUM_CHANNELS, NUM_V1_CHANNELS):
        raise ValueError(f"coefficients must have shape (T, {NUM_CHANNELS}), got {c.shape}")
    jaw_gap = np.maximum(0.0, c[:, _J["jawOpen"]] - c[:, _J["mouthClose"]])
    lower = 0.5 * (c[:, _J["mouthLowerDownLeft"]] + c[:, _J["mouthLowerDownRight"]])
    upper = 0.5 * (c[:, _J["mouthUpperUpLeft"]] + c[:, _J["mouthUpperUpRight"]])
    opening = (
        jaw_gap + APERTURE_LOWER_DOWN * lower + APERTURE_UPPER_UP * upper + APERTURE_FUNNEL * c[:, _J["mouthFunnel"]]
    )
    press = 0.5 * (c[:, _J["mouthPressLeft"]] + c[:, _J["mouthPressRight"]])
    roll = np.maximum(c[:, _J["mouthRollLower"]], c[:, _J["mouthRollUpper"]])
    return np.maximum(0.0, opening * (1.0 - press) * (1.0 - APERTURE_ROLL * roll))
