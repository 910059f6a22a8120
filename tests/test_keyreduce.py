"""Key reduction: sparse Hermite/Bezier keys within tolerance of dense curves."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steadytalk_shared.keyreduce import hermite, reduce_keys


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.002, 0.01, 0.05]), st.integers(8, 400))
def test_every_frame_is_within_tolerance(seed, tolerance, length):
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.05, length) * (rng.uniform(size=length) < 0.3)
    values = np.clip(np.convolve(np.cumsum(steps), np.ones(5) / 5, mode="same") + 0.3, 0, 1)
    keys = reduce_keys(values, tolerance)
    assert keys.frames[0] == 0 and keys.frames[-1] == length - 1
    assert (np.diff(keys.frames) > 0).all()
    assert np.abs(hermite(keys, length) - values).max() <= tolerance + 1e-9


def test_flat_and_straight_curves_need_two_keys():
    assert len(reduce_keys(np.zeros(500)).frames) == 2
    assert len(reduce_keys(np.linspace(0.1, 0.9, 300)).frames) == 2


def test_peaks_are_keys_and_handles_sit_at_a_third():
    t = np.arange(200)
    values = 0.5 + 0.4 * np.sin(t / 9.0)
    keys = reduce_keys(values, 0.01)
    peak = int(np.argmax(values))
    assert peak in keys.frames
    left, right = keys.handles()
    gaps = np.diff(keys.frames)
    np.testing.assert_allclose(right[:-1, 0] - keys.frames[:-1], gaps / 3)
    np.testing.assert_allclose(keys.frames[1:] - left[1:, 0], gaps / 3)


def test_empty_curve_is_refused():
    with pytest.raises(ValueError, match="empty"):
        reduce_keys(np.zeros(0))
