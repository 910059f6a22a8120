import numpy as np
import pytest

from steadytalk_shared import schema
from steadytalk_shared.schema import CHANNELS, lip_aperture, match_channel, match_rig

# Apple's ARKit blendshape names (ARFaceAnchor.BlendShapeLocation), all 52.
ARKIT_52 = set(
    """eyeBlinkLeft eyeLookDownLeft eyeLookInLeft eyeLookOutLeft eyeLookUpLeft eyeSquintLeft eyeWideLeft
    eyeBlinkRight eyeLookDownRight eyeLookInRight eyeLookOutRight eyeLookUpRight eyeSquintRight eyeWideRight
    jawForward jawLeft jawRight jawOpen mouthClose mouthFunnel mouthPucker mouthLeft mouthRight
    mouthSmileLeft mouthSmileRight mouthFrownLeft mouthFrownRight mouthDimpleLeft mouthDimpleRight
    mouthStretchLeft mouthStretchRight mouthRollLower mouthRollUpper mouthShrugLower mouthShrugUpper
    mouthPressLeft mouthPressRight mouthLowerDownLeft mouthLowerDownRight mouthUpperUpLeft mouthUpperUpRight
    browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff cheekSquintLeft
    cheekSquintRight noseSneerLeft noseSneerRight tongueOut""".split()
)


def test_channel_set_and_order_are_the_brief_contract():
    assert len(CHANNELS) == 52 == len(set(CHANNELS))
    assert set(CHANNELS) == ARKIT_52
    assert schema.SCHEMA_VERSION == 2
    # v1's 33 first, in v1's order, so a v1 array is a prefix of a v2 one
    assert len(schema.V1_CHANNELS) == 33 and CHANNELS[:33] == schema.V1_CHANNELS
    assert CHANNELS[0] == "jawOpen"
    assert CHANNELS[31:33] == ("eyeBlinkLeft", "eyeBlinkRight")
    assert CHANNELS[33] == "browDownLeft" and CHANNELS[-1] == "noseSneerRight"
    assert schema.MOUTH_CHANNELS + schema.UPPER_FACE_CHANNELS == CHANNELS
    assert not any(n.startswith(("eye", "brow", "nose")) for n in schema.MOUTH_CHANNELS)
    assert schema.HEAD_AXES == ("yaw", "pitch", "roll")


def test_v1_curves_upgrade_with_the_new_channels_at_rest():
    v1 = np.random.default_rng(0).random((5, 33)).astype(np.float32)
    v2 = schema.upgrade_curves(v1, 1)
    assert v2.shape == (5, 52)
    np.testing.assert_array_equal(v2[:, :33], v1)
    assert not v2[:, 33:].any()
    np.testing.assert_array_equal(schema.upgrade_curves(v2, 2), v2)
    with pytest.raises(ValueError, match="33 channels"):
        schema.upgrade_curves(v2, 1)
    with pytest.raises(ValueError, match="version 7"):
        schema.upgrade_curves(v1, 7)


@pytest.mark.parametrize(
    ("rig_name", "expected"),
    [
        ("jawOpen", "jawOpen"),
        ("JawOpen", "jawOpen"),
        ("jaw_open", "jawOpen"),
        ("mouthSmile_L", "mouthSmileLeft"),
        ("mouthSmile_R", "mouthSmileRight"),
        ("MouthSmile.L", "mouthSmileLeft"),
        ("mouthSmileL", "mouthSmileLeft"),
        ("mouth_press_r", "mouthPressRight"),
        ("eyeBlink_L", "eyeBlinkLeft"),
        ("EYEBLINKRIGHT", "eyeBlinkRight"),
        ("mouthRollLower", "mouthRollLower"),
        ("browInnerUp", "browInnerUp"),
        ("browOuterUp_L", "browOuterUpLeft"),
        ("EyeLookInRight", "eyeLookInRight"),
        ("noseSneer.R", "noseSneerRight"),
        ("browRaise", None),
        ("Basis", None),
        ("mouthLeft", "mouthLeft"),
        ("jawLeft", "jawLeft"),
    ],
)
def test_alias_matching(rig_name, expected):
    assert match_channel(rig_name) == expected


def test_match_rig_prefers_exact_names_and_lists_missing():
    mapping, unmatched = match_rig(["Basis", "JawOpen", "jawOpen", "mouthClose_L", "mouthSmile_L"])
    assert mapping["jawOpen"] == "jawOpen"
    assert mapping["mouthSmileLeft"] == "mouthSmile_L"
    assert "mouthClose" not in mapping  # mouthClose has no sides; "_L" does not make it match
    assert "mouthFunnel" in unmatched and "jawOpen" not in unmatched


def frame(**values):
    row = np.zeros((1, len(CHANNELS)))
    for name, value in values.items():
        row[0, CHANNELS.index(name)] = value
    return row


def test_lip_aperture_follows_arkit_closure_convention():
    assert lip_aperture(frame())[0] == 0.0
    assert lip_aperture(frame(jawOpen=0.6))[0] == pytest.approx(0.6)
    # mouthClose equal to jawOpen seals the lips against the open jaw
    assert lip_aperture(frame(jawOpen=0.4, mouthClose=0.4))[0] == pytest.approx(0.0)
    assert lip_aperture(frame(jawOpen=0.4, mouthClose=0.5))[0] == 0.0  # never negative
    # lips parted without the jaw
    parted = lip_aperture(frame(mouthLowerDownLeft=0.5, mouthLowerDownRight=0.5, mouthUpperUpLeft=0.4))[0]
    assert 0.15 < parted < 0.3
    # pressing the lips shuts whatever the jaw does
    assert lip_aperture(frame(jawOpen=0.5, mouthPressLeft=1.0, mouthPressRight=1.0))[0] == pytest.approx(0.0)


def test_lip_aperture_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        lip_aperture(np.zeros((4, 5)))
