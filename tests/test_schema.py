import numpy as np
import pytest

from steadytalk_shared import schema
from steadytalk_shared.schema import CHANNELS, lip_aperture, match_channel, match_rig


def test_channel_set_and_order_are_the_brief_contract():
    assert len(CHANNELS) == 33 == len(set(CHANNELS))
    assert CHANNELS[0] == "jawOpen"
    assert CHANNELS[-2:] == ("eyeBlinkLeft", "eyeBlinkRight")
    for name in ("mouthClose", "mouthFunnel", "mouthPucker", "tongueOut", "cheekPuff", "mouthRollLower"):
        assert name in CHANNELS
    assert isinstance(schema.SCHEMA_VERSION, int)


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
        ("browInnerUp", None),
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
