"""MSI pinned on sequences whose acceleration variance is known in closed form."""

import numpy as np
import pytest

from steadytalk_shared.msi import curve_msi, landmark_msi
from steadytalk_shared.schema import CHANNELS


def track_with_acceleration(accel: np.ndarray, start: float = 0.0) -> np.ndarray:
    """Positions whose second difference is exactly ``accel``."""
    velocity = np.concatenate([[0.0], np.cumsum(accel)])
    return start + np.concatenate([[0.0], np.cumsum(velocity)])


def lips(frames: int, accel_x: np.ndarray | None = None, accel_y: np.ndarray | None = None) -> np.ndarray:
    """Two mouth corners 64 units apart plus two moving points."""
    points = np.zeros((frames, 4, 2))
    points[:, 1, 0] = 64.0  # right corner: the scale factor is exactly 1
    for k in (2, 3):
        if accel_x is not None:
            points[:, k, 0] = track_with_acceleration(accel_x)
        if accel_y is not None:
            points[:, k, 1] = track_with_acceleration(accel_y)
    return points


def alternating(n: int, amplitude: float) -> np.ndarray:
    """+a, -a, +a, ...: in every 12-frame window the mean is 0 and the variance is a^2."""
    return amplitude * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)


def test_still_and_constant_velocity_tracks_score_two():
    frames = 50
    assert landmark_msi(lips(frames), (0, 1)) == pytest.approx(2.0)
    moving = lips(frames)
    moving[:, 2:, 0] += 3.0 * np.arange(frames)[:, None]  # constant velocity: zero acceleration
    assert landmark_msi(moving, (0, 1)) == pytest.approx(2.0)


def test_known_variance_gives_reciprocal_formula():
    frames = 62  # 60 accelerations -> windows at 0, 6, ..., 48
    a = 1.5
    x_only = lips(frames, accel_x=alternating(frames - 2, a))
    # keypoints: 2 still corners (1/0.5 = 2) and 2 moving points (1/(a^2 + 0.5)); y axis all still
    expected_x = np.mean([2.0, 2.0, 1 / (a**2 + 0.5), 1 / (a**2 + 0.5)])
    assert landmark_msi(x_only, (0, 1)) == pytest.approx((expected_x + 2.0) / 2)

    b = 0.5
    both = lips(frames, accel_x=alternating(frames - 2, a), accel_y=alternating(frames - 2, b))
    expected_y = np.mean([2.0, 2.0, 1 / (b**2 + 0.5), 1 / (b**2 + 0.5)])
    assert landmark_msi(both, (0, 1)) == pytest.approx((expected_x + expected_y) / 2)


def test_scale_normalisation_makes_msi_unit_free():
    frames = 40
    track = lips(frames, accel_x=alternating(frames - 2, 0.8))
    assert landmark_msi(track * 7.3, (0, 1)) == pytest.approx(landmark_msi(track, (0, 1)))


def test_windows_use_stride_six_and_average_over_windows():
    # First 12 accelerations jittery, the rest still: windows starting at 0 and 6 see jitter
    # (variance a^2 and a^2 / 2 over a half-jittery window), the later ones none.
    frames = 38  # 36 accelerations: windows at 0, 6, 12, 18, 24
    a = 2.0
    accel = np.zeros(frames - 2)
    accel[:12] = alternating(12, a)
    track = lips(frames, accel_x=accel)
    var_first, var_second = a**2, np.var(np.concatenate([alternating(6, a), np.zeros(6)]))
    per_window = [1 / (var_first + 0.5), 1 / (var_second + 0.5), 2.0, 2.0, 2.0]
    expected_x = np.mean([2.0, 2.0, np.mean(per_window), np.mean(per_window)])
    assert landmark_msi(track, (0, 1)) == pytest.approx((expected_x + 2.0) / 2)


def test_too_short_and_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="at least 14 frames"):
        landmark_msi(lips(13), (0, 1))
    with pytest.raises(ValueError, match="shape"):
        landmark_msi(np.zeros((20, 4)), (0, 1))


def test_curve_msi_known_variance():
    frames = 62
    curves = np.zeros((frames, len(CHANNELS)))
    a = 1.0 / 64  # one 64-unit mouth width is a full 0..1 swing, so this is an acceleration of 1 unit
    curves[:, CHANNELS.index("jawOpen")] = 0.3 + track_with_acceleration(alternating(frames - 2, a))
    n_channels = 14  # the articulation channels
    expected = ((n_channels - 1) * 2.0 + 1 / (1.0 + 0.5)) / n_channels
    assert curve_msi(curves) == pytest.approx(expected)
    assert curve_msi(np.zeros((frames, len(CHANNELS)))) == pytest.approx(2.0)
