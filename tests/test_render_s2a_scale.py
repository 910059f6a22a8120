"""The person audio-to-expression model's correction scale, chosen on held-back frames."""

from __future__ import annotations

import numpy as np

from steadytalk_backend.render.s2a_person import MOUTH, choose_correction_scale


def test_the_scale_that_explains_the_held_back_frames_is_chosen():
    rng = np.random.default_rng(0)
    frames, channels = 400, 33
    engine = np.clip(rng.uniform(0, 0.6, (frames, channels)), 0, 1).astype(np.float32)
    correction = np.zeros_like(engine)
    correction[:, MOUTH] = rng.normal(0, 0.1, (frames, len(MOUTH)))
    # The truth moved 60% of the way the model says: the full correction overshoots.
    tracked = engine + 0.6 * correction + rng.normal(0, 0.01, engine.shape).astype(np.float32)
    assert choose_correction_scale(engine + correction, engine, tracked) == 0.6
    # A model that is right gets its whole correction; one that is noise gets none.
    assert choose_correction_scale(engine + correction, engine, engine + correction) == 1.0
    noise = np.zeros_like(engine)
    noise[:, MOUTH] = rng.normal(0, 0.2, (frames, len(MOUTH)))
    assert choose_correction_scale(engine + noise, engine, engine) == 0.0
