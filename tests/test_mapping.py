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
        ("ARKIT", ["Basis", "JawOpen", "mouthSmile_L", "mouth_smile_right", "browInnerUp"], {
            "jawOpen": "JawOpen", "mouthSmileLeft": "mouthSmile_L", "mouthSmileRight": "mouth_smile_right"}),
        ("VRM", ["Fcl_MTH_A", "Fcl_MTH_I", "ou", "ee", "お"], {"A": "Fcl_MTH_A", "I": "Fcl_MTH_I", "U": "ou",
                                                             "E": "ee", "O": "お"}),
        ("OCULUS", ["viseme_sil", "viseme_PP", "vrc.v_aa", "viseme_ou", "viseme_O"], {
            "sil": "viseme_sil", "PP": "viseme_PP", "aa": "vrc.v_aa", "ou": "viseme_ou"}),
        ("RHUBARB", ["Mouth_A", "B", "mouth-X"], {"A": "Mouth_A", "B": "B", "X": "mouth-X"}),
        ("PRESTON_BLAIR", ["AI", "E", "MBP", "WQ", "etc", "rest"], {
            "AI": "AI", "E": "E", "MBP": "MBP", "WQ": "WQ", "etc": "etc", "rest": "rest"}),
    ],
)  # fmt: skip
def test_rig_names_match_their_convention(preset, rig, expected):
    found, unmatched = mapping.match_targets(mapping.PRESETS[preset], rig)
    assert {k: v for k, v in found.items() if k in expected} == expected
    assert set(unmatched) == set(mapping.PRESETS[preset].sources) - set(found)
    # viseme_O is not an Oculus viseme ("oh" is): it must stay unmatched, not be guessed
    assert "viseme_O" not in found.values()


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
