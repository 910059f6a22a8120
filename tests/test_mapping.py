"""Rig conventions: name matching, visemes derived from coefficient curves, custom targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import nnls

from steadytalk_shared import mapping
from steadytalk_shared.curves import Phone
from steadytalk_shared.schema import CHANNELS


def test_phone_shapes_file_is_the_engines_table():
    from steadytalk_backend.lipsync.visemes import phone_shapes

    stored = json.loads(mapping.PHONE_SHAPES_PATH.read_text())
    assert stored["channels"] == list(CHANNELS)
    assert stored["phones"] == phone_shapes(), "regenerate with steadytalk_backend.lipsync.visemes.write_phone_shapes"


@pytest.mark.parametrize(
    ("preset", "rig", "expected"),
    [
        # schema v2: ARKit's brows and gaze are channels too
        ("ARKIT", ["Basis", "JawOpen", "mouthSmile_L", "mouth_smile_right", "browInnerUp", "eyeLookUp_L"], {
            "jawOpen": "JawOpen", "mouthSmileLeft": "mouthSmile_L", "mouthSmileRight": "mouth_smile_right",
            "browInnerUp": "browInnerUp", "eyeLookUpLeft": "eyeLookUp_L"}),
        ("VRM", ["Fcl_MTH_A", "Fcl_MTH_I", "ou", "ee", "お"], {"A": "Fcl_MTH_A", "I": "Fcl_MTH_I", "U": "ou",
                                                             "E": "ee", "O": "お"}),
        ("OCULUS", ["viseme_sil", "viseme_PP", "vrc.v_aa", "viseme_ou", "viseme_oh"], {
            "sil": "viseme_sil", "PP": "viseme_PP", "aa": "vrc.v_aa", "ou": "viseme_ou", "oh": "viseme_oh"}),
        # Ready Player Me spells ih, oh, ou as I, O, U
        ("OCULUS", ["viseme_aa", "viseme_E", "viseme_I", "viseme_O", "viseme_U"], {
            "aa": "viseme_aa", "E": "viseme_E", "ih": "viseme_I", "oh": "viseme_O", "ou": "viseme_U"}),
        ("TWO_MORPH", ["mouthOpen", "MouthSmile", "browUp"], {"mouthOpen": "mouthOpen", "mouthSmile": "MouthSmile"}),
        ("RHUBARB", ["Mouth_A", "B", "mouth-X"], {"A": "Mouth_A", "B": "B", "X": "mouth-X"}),
        ("PRESTON_BLAIR", ["AI", "E", "MBP", "WQ", "etc", "rest"], {
            "AI": "AI", "E": "E", "MBP": "MBP", "WQ": "WQ", "etc": "etc", "rest": "rest"}),
    ],
)  # fmt: skip
def test_rig_names_match_their_convention(preset, rig, expected):
    found, unmatched = mapping.match_targets(mapping.PRESETS[preset], rig)
    assert {k: v for k, v in found.items() if k in expected} == expected
    assert set(unmatched) == set(mapping.PRESETS[preset].sources) - set(found)
    # names of no convention stay unmatched, not guessed (viseme conventions have no brows)
    assert "browUp" not in found.values()
    if preset != "ARKIT":
        assert "browInnerUp" not in found.values()


def test_exact_spelling_wins_over_an_alias():
    found, _ = mapping.match_targets(mapping.PRESETS["ARKIT"], ["jaw_open", "jawOpen"])
    assert found["jawOpen"] == "jawOpen"


def test_blend_recovers_mixtures_of_distinct_visemes():
    shapes = mapping.viseme_shapes(mapping.PRESETS["VRM"])
    truth = np.array([[0.6, 0.0, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0], [0.0] * 5])
    weights = mapping.nonnegative_blend(truth @ shapes, shapes)
    np.testing.assert_allclose(weights, truth, atol=0.03)  # the faint ridge costs a little exactness


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_blend_is_a_capped_nonnegative_least_squares(seed):
    rng = np.random.default_rng(seed)
    shapes = mapping.viseme_shapes(mapping.PRESETS["RHUBARB"])
    targets = rng.uniform(0, 0.6, size=(6, shapes.shape[1])) * (rng.uniform(size=shapes.shape[1]) < 0.4)
    weights = mapping.nonnegative_blend(targets, shapes)
    assert (weights >= 0).all() and (weights.sum(axis=1) <= 1 + 1e-9).all()
    for target, w in zip(targets, weights, strict=True):
        reference, _ = nnls(shapes.T, target)
        if reference.sum() <= 1:  # the cap is inactive: the answer is plain NNLS (up to the faint ridge)
            ours = np.linalg.norm(w @ shapes - target)
            assert ours <= np.linalg.norm(reference @ shapes - target) + 0.01


def curves_for(phones: list[tuple[str, float, float]], fps: float = 50.0) -> np.ndarray:
    from steadytalk_backend.lipsync.visemes import phones_to_curves

    sequence = [Phone(p, a, b, "w") for p, a, b in phones]
    return phones_to_curves(sequence, int(phones[-1][2] * fps) + 1, fps)


@pytest.mark.parametrize(
    ("preset", "phone", "viseme"),
    [("VRM", "AA", "A"), ("VRM", "UW", "U"), ("VRM", "IY", "I"), ("OCULUS", "M", "PP"), ("OCULUS", "F", "FF"),
     ("OCULUS", "AA", "aa"), ("OCULUS", "UW", "ou"), ("RHUBARB", "P", "A"), ("RHUBARB", "AA", "D"),
     ("RHUBARB", "V", "G"), ("RHUBARB", "W", "F"), ("PRESTON_BLAIR", "B", "MBP"), ("PRESTON_BLAIR", "AE", "AI")],
)  # fmt: skip
def test_a_held_phone_becomes_its_viseme(preset, phone, viseme):
    fps = 50.0
    curves = curves_for([("SIL", 0.0, 0.3), (phone, 0.3, 0.7), ("SIL", 0.7, 1.2)], fps)
    visemes = mapping.viseme_curves(mapping.PRESETS[preset], curves)
    centre = int(0.5 * fps)
    assert max(visemes, key=lambda name: visemes[name][centre]) == viseme
    rest = [v.name for v in mapping.PRESETS[preset].visemes if not v.phones]
    for name in rest:  # silence is the rest shape
        assert visemes[name][int(1.1 * fps)] == pytest.approx(1.0, abs=1e-3)


def test_rig_curves_add_sources_scale_and_clip():
    sources = {"jawOpen": np.array([0.2, 0.8], np.float32), "mouthClose": np.array([0.5, 0.5], np.float32)}
    out = mapping.rig_curves(
        sources,
        [("jawOpen", "Open", 1.0), ("mouthClose", "Open", 1.0), ("jawOpen", "Half", 0.5), ("tongueOut", "T", 1)],
    )
    np.testing.assert_allclose(out["Open"], [0.7, 1.0])
    np.testing.assert_allclose(out["Half"], [0.1, 0.4])
    assert "T" not in out


ARKIT_NAMES = list(CHANNELS)
OCULUS_RPM = [f"viseme_{n}" for n in "sil PP FF TH DD kk CH SS nn RR aa E I O U".split()]


@pytest.mark.parametrize(
    ("moving", "empty", "preset", "says"),
    [
        (ARKIT_NAMES, [], "ARKIT", "31 of 31"),
        (ARKIT_NAMES + OCULUS_RPM, [], "ARKIT", "ARKit"),  # Ready Player Me has both: ARKit keeps every muscle
        (OCULUS_RPM, [], "OCULUS", "14 of 14"),
        # VRoid: ARKit names whose shapes are empty, working Fcl_MTH visemes
        (["Fcl_MTH_A", "Fcl_MTH_I", "Fcl_MTH_U", "Fcl_MTH_E", "Fcl_MTH_O", *ARKIT_NAMES[16:]], ARKIT_NAMES[:16], "VRM",
         "not ARKit (jawOpen moves no vertex)"),
        (["mouthOpen", "mouthSmile"], [], "TWO_MORPH", "2 of 2"),
        (list("ABCDEFGHX"), [], "RHUBARB", "8 of 8"),
        ("AI E O U WQ MBP FV L etc rest".split(), [], "PRESTON_BLAIR", "9 of 9"),
        (["aa", "ih", "ou", "ee", "oh"], [], "VRM", "5 of 5"),  # VRM 1.0 names are not half an Oculus set
        (["mouthSmileLeft"], ["jawOpen"], "ARKIT", "; jawOpen moves no vertex"),  # nothing opens the mouth: said so
    ],
)  # fmt: skip
def test_auto_convention_follows_the_working_shape_keys(moving, empty, preset, says):
    detection = mapping.choose_preset(moving, empty)
    assert detection.preset.id == preset, detection.reason
    assert says in detection.reason
    assert detection.speaks == (not says.startswith(";"))


def test_no_convention_matches_unrelated_names():
    assert mapping.choose_preset(["target_0", "target_1", "Basis"]) is None


def test_opening_sources_are_the_open_vowels():
    assert mapping.opening_sources(mapping.PRESETS["ARKIT"]) == ("jawOpen",)
    assert "aa" in mapping.opening_sources(mapping.PRESETS["OCULUS"])
    assert "PP" not in mapping.opening_sources(mapping.PRESETS["OCULUS"])
    assert "D" in mapping.opening_sources(mapping.PRESETS["RHUBARB"])  # Rhubarb's wide-open AA
    assert "A" not in mapping.opening_sources(mapping.PRESETS["RHUBARB"])  # its closed M/B/P


def test_two_morph_curves_open_on_vowels_and_close_on_bilabials():
    curves = curves_for([("SIL", 0.0, 0.3), ("AA", 0.3, 0.6), ("M", 0.6, 0.75), ("IY", 0.75, 1.0), ("SIL", 1.0, 1.3)])
    sources = mapping.source_curves(mapping.PRESETS["TWO_MORPH"], curves)
    opened, smile = sources["mouthOpen"], sources["mouthSmile"]
    fps = 50
    assert opened[int(0.45 * fps)] > 0.3 and opened[int(0.68 * fps)] < 0.5 * opened[int(0.45 * fps)]
    assert opened[int(1.25 * fps)] < 0.05  # rest
    assert smile[int(0.88 * fps)] > smile[int(0.45 * fps)]  # "ee" is wider than "ah"
    assert (opened >= 0).all() and (opened <= 1).all()
    assert np.array_equal(sources["jawOpen"], curves[:, CHANNELS.index("jawOpen")])  # ARKit sources are kept


def test_dominant_shapes_hold_each_shape_a_minimum_of_frames():
    weights = np.zeros((12, 3))
    strongest = [0, 0, 1, 0, 0, 0, 2, 2, 2, 1, 0, 0]
    weights[np.arange(12), strongest] = 1.0
    assert mapping.dominant_shapes(weights, 1).tolist() == strongest
    held = mapping.dominant_shapes(weights, 3).tolist()
    runs = np.diff(np.flatnonzero(np.diff(held, prepend=-1, append=-1) != 0))
    assert (runs[:-1] >= 3).all()  # every shape but the last is held 3 frames at least
    assert held[6:9] == [2, 2, 2]  # the long shape is shown when it comes


def test_stepped_curves_show_one_viseme_at_a_time():
    curves = curves_for([("SIL", 0.0, 0.2), ("B", 0.2, 0.3), ("AA", 0.3, 0.6), ("SIL", 0.6, 0.9)])
    preset = mapping.PRESETS["OCULUS"]
    stepped = mapping.stepped_curves(preset, mapping.source_curves(preset, curves), 2)
    shown = np.stack([stepped[v.name] for v in preset.visemes], axis=1)
    assert set(np.unique(shown)) <= {0.0, 1.0} and (shown.sum(axis=1) == 1).all()
    assert stepped["PP"].max() == 1.0 and stepped["aa"].max() == 1.0
    arkit = mapping.stepped_curves(mapping.PRESETS["ARKIT"], mapping.source_curves(mapping.PRESETS["ARKIT"], curves), 2)
    jaw = arkit["jawOpen"]
    assert (jaw[1::2] == jaw[0::2][: len(jaw[1::2])]).all()  # held on twos
