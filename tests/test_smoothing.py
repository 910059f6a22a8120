"""The numpy smoother (shared/, used inside Blender) against the torch one (training)."""

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from steadytalk_backend.lipsync.phonetics import pronunciation_dictionary
from steadytalk_backend.lipsync.smoother import AdaptiveSmootherNet, load_smoother
from steadytalk_backend.lipsync.smoother import gaussian_smooth as torch_smooth
from steadytalk_backend.lipsync.train_smoother import TrainConfig, add_jitter, clean_sequence, train
from steadytalk_shared.msi import curve_msi
from steadytalk_shared.schema import CHANNELS, lip_aperture
from steadytalk_shared.smoothing import (
    DEFAULT_WEIGHTS,
    AdaptiveSmoother,
    SmootherConfig,
    config_path_for,
    default_smoother,
    gaussian_smooth,
    moving_average,
)


@pytest.fixture(scope="module")
def sequences():
    rng = np.random.default_rng(123)
    lexicon = pronunciation_dictionary()
    words = sorted(w for w in lexicon if w.isalpha() and 2 <= len(w) <= 9)
    clean = [clean_sequence(rng, words, lexicon) for _ in range(12)]
    noisy = [add_jitter(rng, c, TrainConfig(noise_min=0.03, noise_max=0.06)) for c in clean]
    return clean, noisy


def test_default_weights_are_small_and_self_describing():
    meta = json.loads(config_path_for(DEFAULT_WEIGHTS).read_text())
    assert meta["kind"] == "steadytalk.adaptive_smoother"
    assert 9_000 <= meta["num_parameters"] <= 13_000  # "about 11k parameters" (StableFace)
    assert DEFAULT_WEIGHTS.stat().st_size < 100_000
    net = load_smoother(DEFAULT_WEIGHTS)
    assert net.num_parameters() == meta["num_parameters"]


def test_numpy_inference_equals_torch_within_1e5(sequences):
    _, noisy = sequences
    net = load_smoother(DEFAULT_WEIGHTS).double()
    numpy_smoother = default_smoother()
    for curves in noisy[:4]:
        sigma_np = numpy_smoother.predict_sigma(curves)
        smoothed_np = gaussian_smooth(curves, sigma_np)
        with torch.no_grad():
            x = torch.from_numpy(curves.astype(np.float64))[None]
            sigma_t = net(x)
            smoothed_t = torch_smooth(x, sigma_t)[0].numpy()
        np.testing.assert_allclose(sigma_np, sigma_t[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(smoothed_np, smoothed_t, atol=1e-5)


def test_random_network_also_matches(sequences):
    """Not only the trained weights: any weights give the same numbers both ways."""
    torch.manual_seed(0)
    net = AdaptiveSmootherNet(SmootherConfig()).double()
    weights = {k: v.numpy().astype(np.float64) for k, v in net.state_dict().items()}
    numpy_smoother = AdaptiveSmoother(SmootherConfig(), weights)
    curves = sequences[1][5]
    with torch.no_grad():
        expected = net(torch.from_numpy(curves.astype(np.float64))[None])[0].numpy()
    np.testing.assert_allclose(numpy_smoother.predict_sigma(curves), expected, atol=1e-5)


def test_fixed_gaussian_matches_scipy_and_keeps_constants():
    rng = np.random.default_rng(1)
    curves = rng.random((80, len(CHANNELS)))
    ours = gaussian_smooth(curves, 2.0)
    reference = gaussian_filter1d(curves, 2.0, axis=0, mode="nearest", truncate=3.0)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    flat = np.full((30, len(CHANNELS)), 0.4)
    np.testing.assert_allclose(gaussian_smooth(flat, np.linspace(0.5, 4, 30)), flat, atol=1e-6)


def test_strength_zero_is_identity_and_strength_scales_sigma(sequences):
    _, noisy = sequences
    smoother = default_smoother()
    curves = noisy[0]
    unchanged, sigma0 = smoother.smooth(curves, strength=0.0)
    np.testing.assert_allclose(unchanged, curves, atol=1e-6)
    assert np.all(sigma0 == 0)
    _, sigma1 = smoother.smooth(curves, 1.0)
    _, sigma2 = smoother.smooth(curves, 2.0)
    np.testing.assert_allclose(sigma2, 2 * sigma1)


def test_moving_average_baseline():
    x = np.zeros((9, len(CHANNELS)))
    x[4, 0] = 5.0
    out = moving_average(x, 5)
    np.testing.assert_allclose(out[2:7, 0], 1.0)
    assert out[1, 0] == 0 and out[7, 0] == 0


def test_adaptive_smoother_removes_jitter_and_keeps_closures(sequences):
    """On held-out jittered sequences: closer to the clean curves than the jittered input and
    than a fixed Gaussian of similar stability, and the lip closures survive."""
    clean, noisy = sequences
    smoother = default_smoother()
    errors = {"input": [], "adaptive": [], "fixed": []}
    closure_kept = []
    for c, n in zip(clean, noisy, strict=True):
        adaptive, _ = smoother.smooth(n)
        fixed = gaussian_smooth(n, 2.0)
        errors["input"].append(np.mean((n - c) ** 2))
        errors["adaptive"].append(np.mean((adaptive - c) ** 2))
        errors["fixed"].append(np.mean((fixed - c) ** 2))
        assert curve_msi(adaptive) > curve_msi(n)
        closed = lip_aperture(c) < 0.02
        if closed.any():
            closure_kept.append(np.mean(lip_aperture(adaptive)[closed]) < np.mean(lip_aperture(fixed)[closed]))
    assert np.mean(errors["adaptive"]) < 0.6 * np.mean(errors["input"])
    assert np.mean(errors["adaptive"]) < np.mean(errors["fixed"])
    assert np.mean(closure_kept) >= 0.75


def test_training_is_reproducible():
    config = TrainConfig(steps=15, num_sequences=24, num_validation=4, batch_size=8)
    net_a, _ = train(config, SmootherConfig(), log=lambda *_: None)
    net_b, _ = train(config, SmootherConfig(), log=lambda *_: None)
    for (name, a), (_, b) in zip(net_a.state_dict().items(), net_b.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_long_sequences_smooth_blockwise_with_the_same_result():
    """Hours of curves are smoothed in blocks; the seams must not show (torch does it in one go)."""
    rng = np.random.default_rng(5)
    curves = rng.random((5000, len(CHANNELS)))
    sigma = rng.uniform(0.3, 4.0, 5000)
    expected = torch_smooth(torch.from_numpy(curves)[None], torch.from_numpy(sigma)[None])[0].numpy()
    np.testing.assert_allclose(gaussian_smooth(curves, sigma), expected, atol=1e-5)
