"""Viseme table and coarticulation on hand-made phone sequences."""

import numpy as np
import pytest

from steadytalk_backend.lipsync.prosody import PHONE_SET
from steadytalk_backend.lipsync.visemes import DIPHTHONGS, VISEMES, phones_to_curves
from steadytalk_shared.curves import Phone
from steadytalk_shared.schema import CHANNELS, lip_aperture

FPS = 100.0


def seq(*items, gap=0.0):
    """Phones from (name, duration) pairs, with 0.3 s of silence on both sides."""
    phones, t = [Phone("SIL", 0.0, 0.3)], 0.3
    for name, duration in items:
        phones.append(Phone(name, t, t + duration))
        t += duration
    phones.append(Phone("SIL", t, t + 0.3))
    return phones


def render(phones):
    n = int(phones[-1].end * FPS) + 1
    return phones_to_curves(phones, n, FPS)


def at(curves, phone, channel=None):
    mid = int(round(0.5 * (phone.start + phone.end) * FPS))
    return lip_aperture(curves[mid : mid + 1])[0] if channel is None else curves[mid, CHANNELS.index(channel)]


def test_every_recognized_phone_has_a_viseme():
    assert set(PHONE_SET) <= set(VISEMES) | set(DIPHTHONGS)


@pytest.mark.parametrize("stop", ["P", "B", "M"])
def test_short_bilabial_between_open_vowels_closes_the_lips(stop):
    phones = seq(("AA", 0.15), (stop, 0.05), ("AA", 0.15))
    curves = render(phones)
    assert at(curves, phones[1]) > 0.4
    assert at(curves, phones[2]) < 0.05  # sealed, although only 50 ms long
    assert at(curves, phones[2], "mouthClose") > 0.0
    assert at(curves, phones[2], "mouthPressLeft") > 0.15


def test_labiodental_rolls_the_lower_lip():
    phones = seq(("AA", 0.15), ("F", 0.08), ("AA", 0.15))
    curves = render(phones)
    assert at(curves, phones[2], "mouthRollLower") > 0.3
    assert at(curves, phones[2]) < 0.5 * at(curves, phones[1])


@pytest.mark.parametrize("rounded", ["W", "UW", "OW"])
def test_rounding(rounded):
    phones = seq(("IH", 0.1), (rounded, 0.15), ("IH", 0.1))
    curves = render(phones)
    target = phones[2] if rounded != "OW" else Phone("OW", phones[2].end - 0.03, phones[2].end)
    assert at(curves, target, "mouthPucker") > 0.3
    assert at(curves, phones[1], "mouthPucker") < at(curves, target, "mouthPucker")


@pytest.mark.parametrize(("phone", "minimum"), [("TH", 0.25), ("DH", 0.2), ("L", 0.05)])
def test_tongue(phone, minimum):
    phones = seq(("AH", 0.12), (phone, 0.1), ("AH", 0.12))
    assert at(render(phones), phones[2], "tongueOut") > minimum


def test_anticipation_rounds_before_the_vowel():
    phones = seq(("S", 0.1), ("UW", 0.2))
    curves = render(phones)
    s_mid = at(curves, phones[1], "mouthPucker")
    assert s_mid > 0.1  # lips already round during /s/ of "soon"


def test_silence_is_rest_pose():
    phones = [Phone("SIL", 0.0, 1.0)]
    assert np.all(render(phones) == 0)
    phones = seq(("AA", 0.2))
    curves = render(phones)
    assert np.all(curves[:5] < 1e-3) and np.all(curves[-5:] < 1e-3)


def test_energy_scales_the_jaw():
    phones = seq(("AA", 0.3))
    n = int(phones[-1].end * FPS) + 1
    speech = np.zeros(n, dtype=bool)
    speech[30:60] = True
    quiet, loud = np.full(n, -40.0), np.full(n, -40.0)
    loud[30:60] = np.linspace(-30, -10, 30)
    quiet[30:60] = np.linspace(-30, -10, 30)[::-1]
    jaw = CHANNELS.index("jawOpen")
    rising = phones_to_curves(phones, n, FPS, loud, speech)[:, jaw]
    falling = phones_to_curves(phones, n, FPS, quiet, speech)[:, jaw]
    assert rising[55] > rising[35] and falling[35] > falling[55]


def test_unknown_phone_is_treated_as_silence():
    curves = render([Phone("SIL", 0.0, 0.3), Phone("XX", 0.3, 0.5), Phone("SIL", 0.5, 0.8)])
    assert np.all(curves < 1e-6)
