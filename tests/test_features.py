"""Transformer-S2A feature sequence: layout, phones, pitch and energy on real audio."""

import numpy as np

from steadytalk_backend.lipsync.audio import SAMPLE_RATE, load_audio
from steadytalk_backend.lipsync.prosody import PHONE_INDEX, PHONE_SET, frame_energy_db, pitch_hz, s2a_features
from steadytalk_shared.curves import Phone


def test_pitch_of_a_tone_and_unvoiced_silence():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = np.concatenate([0.3 * np.sin(2 * np.pi * 140.0 * t), np.zeros(SAMPLE_RATE // 2)]).astype(np.float32)
    f0, voiced = pitch_hz(tone)
    assert abs(np.median(f0[10:90]) - 140.0) < 3.0
    assert not voiced[-20:].any()


def test_energy_follows_loudness():
    quiet = 0.01 * np.ones(SAMPLE_RATE, dtype=np.float32)
    energy = frame_energy_db(np.concatenate([quiet, 10 * quiet]))
    assert abs((energy[150] - energy[50]) - 20.0) < 0.1


def test_feature_layout_on_speech(demo_wav, engine, demo_transcript):
    samples = load_audio(demo_wav)
    result = engine.run(demo_wav, demo_transcript)
    features = s2a_features(samples, result.phones)
    values = features.values
    assert features.rate == 100.0
    assert abs(values.shape[0] - len(samples) / 160) <= 2
    assert values.shape[1] == len(PHONE_SET) + 3 + 80
    one_hot = values[:, features.phone_slice]
    np.testing.assert_array_equal(one_hot.sum(axis=1), 1.0)
    # frames inside an aligned /b/ are labelled B
    b = next(p for p in result.phones if p.phone == "B")
    assert one_hot[int(b.start * 100) + 1, PHONE_INDEX["B"]] == 1.0
    voiced = values[:, features.pitch_slice][:, 1]
    assert 0.2 < voiced.mean() < 0.8  # speech with pauses
    assert np.isfinite(values).all()


def test_one_hot_of_manual_phones():
    from steadytalk_backend.lipsync.prosody import one_hot_phones

    grid = one_hot_phones([Phone("AA", 0.1, 0.2)], 30, 100.0)
    assert grid[15, PHONE_INDEX["AA"]] == 1 and grid[5, PHONE_INDEX["SIL"]] == 1
