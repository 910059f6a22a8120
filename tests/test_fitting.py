"""Fitting recovers pose, identity and coefficients from meshes the test poses itself."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from steadytalk_backend.face.fitting import Fitter, Pose
from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.schema import CHANNELS  # the face model's shapes: all 52

N = 468


@pytest.fixture(scope="module")
def fitter():
    return Fitter(FaceModel.load())


def synthetic_frame(fitter, coefficients, rotation_deg, identity, rng, noise=0.0):
    pose = Pose(
        scale=rng.uniform(1500, 2500),  # metres -> pixels: a face ~150-250 px wide
        rotation=Rotation.from_euler("xyz", rotation_deg, degrees=True).as_matrix(),
        translation=np.array([rng.uniform(100, 300), rng.uniform(100, 250), 0.0]),
    )
    points = pose.apply(fitter.shape(coefficients, identity))
    return points + rng.normal(0, noise, points.shape), pose


def coefficients(**values):
    c = np.zeros(len(CHANNELS))
    for name, value in values.items():
        c[CHANNELS.index(name)] = value
    return c


@pytest.mark.parametrize(
    "values",
    [
        {"jawOpen": 0.6},
        {"jawOpen": 0.3, "mouthClose": 0.25},
        {"mouthSmileLeft": 0.8, "eyeBlinkRight": 1.0},
        {"mouthPucker": 0.7},
        {"mouthStretchLeft": 0.5, "mouthStretchRight": 0.5, "jawOpen": 0.2},
        {"browInnerUp": 0.7, "jawOpen": 0.3},
        {"browOuterUpLeft": 0.6, "eyeSquintRight": 0.6},
        {"browDownLeft": 0.5, "browDownRight": 0.5, "noseSneerLeft": 0.6},
        {"eyeWideLeft": 0.7, "eyeWideRight": 0.7, "browInnerUp": 0.4},
        {},
    ],
)
def test_recovers_pose_and_main_coefficients(fitter, values):
    rng = np.random.default_rng(len(values))
    truth = coefficients(**values)
    observed, pose = synthetic_frame(fitter, truth, rng.uniform(-20, 20, 3), None, rng)
    fit = fitter.fit_frame(observed)
    angle = np.degrees(np.arccos(np.clip((np.trace(fit.pose.rotation.T @ pose.rotation) - 1) / 2, -1, 1)))
    assert angle < 0.5
    assert fit.pose.scale == pytest.approx(pose.scale, rel=0.01)
    for name, value in values.items():
        assert fit.coefficients[CHANNELS.index(name)] == pytest.approx(value, abs=0.08), name
    # and nothing big appears that was not there
    others = np.delete(fit.coefficients, [CHANNELS.index(n) for n in values])
    assert others.max(initial=0) < 0.15
    assert fit.error < 0.005


def test_coefficients_stay_in_bounds_under_noise(fitter):
    rng = np.random.default_rng(3)
    observed, _ = synthetic_frame(fitter, coefficients(jawOpen=1.0, mouthFunnel=1.0), (5, -10, 3), None, rng, noise=1.0)
    fit = fitter.fit_frame(observed)
    assert fit.coefficients.min() >= 0 and fit.coefficients.max() <= 1
    assert fit.coefficients[CHANNELS.index("jawOpen")] > 0.8


def test_identity_is_recovered_from_many_frames(fitter):
    rng = np.random.default_rng(7)
    identity = rng.normal(0, 0.002, (N, 3))
    identity -= identity.mean(axis=0)
    frames = []
    for _ in range(40):
        values = {"jawOpen": rng.uniform(0, 0.6), "mouthSmileLeft": rng.uniform(0, 0.4)}
        frames.append(synthetic_frame(fitter, coefficients(**values), rng.uniform(-15, 15, 3), identity, rng, 0.3)[0])
    estimated, fits = fitter.track(frames, identity_frames=40)
    # identity is recovered up to what the expression basis can also explain; compare residuals
    error_without = np.mean([fitter.fit_frame(f).error for f in frames[:10]])
    error_with = np.mean([fit.error for fit in fits[:10]])
    assert error_with < 0.5 * error_without
    assert np.corrcoef(estimated.ravel(), identity.ravel())[0, 1] > 0.7


def with_irises(fitter, mesh_model_points, pose, gaze):
    """(478, 3) pixel landmarks: the mesh plus an iris ring per eye turned by ``gaze`` [yaw, pitch]
    (the inverse of ``eyes.iris_gaze``)."""
    from steadytalk_backend.face.eyes import EYEBALL_RADIUS_WIDTHS, EYES

    irises = []
    for side in ("left", "right"):
        outer, inner = mesh_model_points[EYES[side]["outer"]], mesh_model_points[EYES[side]["inner"]]
        radius = EYEBALL_RADIUS_WIDTHS * np.linalg.norm(outer - inner)
        centre = 0.5 * (outer + inner) + radius * np.array([np.sin(gaze[0]), -np.sin(gaze[1]), 0.0])
        ring = [centre] + [centre + 0.005 * np.array([np.cos(a), np.sin(a), 0.0]) for a in (0, 1.57, 3.14, 4.71)]
        irises.append(np.array(ring))
    return pose.apply(np.concatenate([mesh_model_points, *irises]))


@pytest.mark.parametrize("gaze", [(0.2, 0.0), (-0.15, 0.1), (0.0, -0.2)])
def test_eye_look_comes_from_the_irises(fitter, gaze):
    from steadytalk_shared.upper_face import look_channels

    rng = np.random.default_rng(11)
    truth = coefficients(browInnerUp=0.3)
    for name, value in look_channels(np.array(gaze)).items():
        truth[CHANNELS.index(name)] = value
    _, pose = synthetic_frame(fitter, truth, rng.uniform(-15, 15, 3), None, rng)
    observed = with_irises(fitter, fitter.shape(truth), pose, gaze)
    fit = fitter.fit_frame(observed)
    np.testing.assert_allclose(fit.gaze, gaze, atol=0.01)
    for name in ("eyeLookOutLeft", "eyeLookInLeft", "eyeLookUpRight", "eyeLookDownLeft"):
        assert fit.coefficients[CHANNELS.index(name)] == pytest.approx(truth[CHANNELS.index(name)], abs=0.03), name
    # the lids' look motion is not read as a blink, squint or wide eye
    for name in ("eyeBlinkLeft", "eyeSquintLeft", "eyeWideLeft"):
        assert fit.coefficients[CHANNELS.index(name)] < 0.1, name
    assert fit.coefficients[CHANNELS.index("browInnerUp")] == pytest.approx(0.3, abs=0.08)
