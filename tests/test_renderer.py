"""The neural renderer, its training, windowed inference and the person audio-to-expression model,
on a real prepared GRID clip (skipped without ../shared/data). Tiny networks keep it fast."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_preset

from steadytalk_backend.cli import main
from steadytalk_backend.lipsync.smoother import load_smoother, smooth_mouth
from steadytalk_backend.render.data import AvatarFrames
from steadytalk_backend.render.inference import AvatarRenderer
from steadytalk_backend.render.network import NeuralRenderer, load_renderer, save_module
from steadytalk_backend.render.presets import LossWeights
from steadytalk_backend.render.s2a_person import S2AModel, train_s2a
from steadytalk_backend.render.train import RendererTrainer
from steadytalk_backend.render.train_log import read_log
from steadytalk_shared.smoothing import AdaptiveSmoother


@pytest.fixture(scope="module")
def clip_frames(grid_avatar) -> AvatarFrames:
    return AvatarFrames.load(grid_avatar, 256)


def _randomize_temporal(net: NeuralRenderer, seed: int = 3) -> None:
    """The temporal module starts as the identity (zero output projection): give it weights so
    the tests see it mix frames."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in net.temporal:
            block.proj.weight.copy_(torch.randn(block.proj.weight.shape, generator=generator) * 0.2)
            block.bias.copy_(torch.randn(block.bias.shape, generator=generator))


def test_tiny_model_overfits_a_few_frames(grid_avatar, clip_frames, tmp_path):
    # 42 frames: training windows start in frames 12-18 only, so 13 frames are ever seen.
    preset = tiny_preset(augmented_erosion=False, losses=LossWeights(adversarial=0.0))
    frames = AvatarFrames.load(grid_avatar, 256, max_frames=42)
    trainer = RendererTrainer(
        grid_avatar, preset, device="cpu", frames=frames, out=tmp_path / "model", log=lambda s: None
    )
    history = [trainer.train_step(joint=False)["l1"] for _ in range(80)]
    start, end = np.mean(history[:5]), np.mean(history[-5:])
    assert end < 0.4 * start, (start, end)


def test_training_resumes_exactly_and_checkpoints_round_trip(grid_avatar, clip_frames, tmp_path):
    out = tmp_path / "model"
    first = RendererTrainer(grid_avatar, tiny_preset(), device="cpu", frames=clip_frames, out=out, log=lambda s: None)
    for _ in range(2):
        first.train_step(joint=False)
    first.epoch = 1
    first.save_state()
    expected = [first.train_step(joint=True) for _ in range(2)]

    second = RendererTrainer(grid_avatar, tiny_preset(), device="cpu", frames=clip_frames, out=out, log=lambda s: None)
    assert second.load_state()
    resumed = [second.train_step(joint=True) for _ in range(2)]
    for a, b in zip(expected, resumed, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)

    # Weights + JSON config alone rebuild the same network (no pickle anywhere).
    path = tmp_path / "r.safetensors"
    _randomize_temporal(second.net)
    save_module(second.net, path, "steadytalk.renderer", second.net.config.to_dict())
    loaded = load_renderer(path)
    second.net.eval()
    inputs = torch.rand(12, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    audio = torch.randn(12, 41, 123, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(second.net(inputs, audio, 6), loaded(inputs, audio, 6))
    assert "pickle" not in path.with_suffix(".json").read_text()

    # A state of other settings is refused with a message, not silently mixed.
    other = RendererTrainer(grid_avatar, tiny_preset(lr=1e-3), device="cpu", frames=clip_frames, out=out, log=print)
    with pytest.raises(Exception, match="other settings"):
        other.load_state()


@pytest.fixture(scope="module")
def trained(grid_avatar, clip_frames, tmp_path_factory):
    """A full (short) run through both stages, with the export."""
    out = tmp_path_factory.mktemp("trained") / "model"
    trainer = RendererTrainer(grid_avatar, tiny_preset(), device="cpu", frames=clip_frames, out=out, log=lambda s: None)
    summary = trainer.run()
    return trainer, out, summary


def test_run_writes_products_log_and_plot(trained):
    trainer, out, summary = trained
    for name in ("renderer.safetensors", "renderer.json", "smoother.safetensors", "smoother.json", "losses.png"):
        assert (out / name).stat().st_size > 0, name
    rows = read_log(out / "train_log.tsv")
    assert [r["stage"] for r in rows] == ["renderer", "joint"]
    assert all(np.isfinite(r["val_l1"]) for r in rows)
    meta = json.loads((out / "renderer.json").read_text())
    assert meta["architecture"]["channels"] == [8, 16, 32] and len(meta["normalizer"]["mean"]) == 123
    assert summary["epochs"] == 2


def test_exported_smoother_matches_torch(trained):
    trainer, out, _ = trained
    numpy_smoother = AdaptiveSmoother.load(out / "smoother.safetensors")
    torch_smoother = load_smoother(out / "smoother.safetensors")
    curves = trainer.data.coefficients
    smoothed, sigma = numpy_smoother.smooth(curves)
    with torch.no_grad():
        t_sigma = torch_smoother(torch.as_tensor(curves)[None])
        t_smoothed = smooth_mouth(torch.as_tensor(curves)[None], t_sigma)[0].numpy()
    np.testing.assert_allclose(sigma, t_sigma[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(smoothed, t_smoothed, atol=1e-5)


def test_windows_stitch_without_seams(trained, grid_avatar, clip_frames, tmp_path):
    trainer, out, _ = trained
    _randomize_temporal(trainer.net)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("renderer.json", "smoother.json", "smoother.safetensors"):
        (model_dir / name).write_bytes((out / name).read_bytes())
    save_module(
        trainer.net,
        model_dir / "renderer.safetensors",
        "steadytalk.renderer",
        trainer.net.config.to_dict(),
        {k: v for k, v in json.loads((out / "renderer.json").read_text()).items() if k not in ("kind", "architecture")},
    )
    renderer = AvatarRenderer(grid_avatar, model_dir, device="cpu")
    assert renderer.context == 3
    count = 40  # windows of 12 plus 3 frames of context on each side: four windows, borders at 12, 24, 36
    audio = renderer.audio_for(clip_frames.features, count, clip_frames.fps)
    index = np.arange(count)
    inputs = list(renderer.frame_inputs(clip_frames.coefficients, audio, clip_frames, index))
    whole = renderer.render_whole(inputs)
    windowed = np.stack(list(renderer.stream(iter(inputs))))
    streamed = np.stack(list(renderer.stream(iter(inputs), chunk=1)))
    assert windowed.shape == whole.shape == (count, 256, 256, 3)
    assert np.abs(windowed.astype(int) - whole).max() <= 1
    assert np.abs(streamed.astype(int) - whole).max() <= 1
    # The temporal module does mix frames: change frame 20's expression and frames 17-23 change,
    # frames outside the band do not.
    changed = list(inputs)
    coefficients = clip_frames.coefficients[20].copy()
    coefficients[0] = 1.0 - coefficients[0]
    changed[20] = type(inputs[20])(**{**inputs[20].__dict__, "coefficients": coefficients})
    other = renderer.render_whole(changed)
    moved = [t for t in range(count) if np.abs(other[t].astype(int) - whole[t]).max() > 1]
    assert 20 in moved and len(moved) > 1, moved  # the frame itself and at least one neighbour
    assert all(17 <= t <= 23 for t in moved), moved
    # Outside the erased region the background passes through untouched.
    cond_alpha = renderer._encode(inputs[:1])[0].alpha[0].numpy()
    outside = cond_alpha == 0
    assert np.array_equal(windowed[0][outside], clip_frames.frames[0][outside])


def test_person_s2a_is_residual_and_chunks_exactly(grid_avatar, tmp_path):
    model, report = train_s2a(grid_avatar, steps=30, window=32, batch=4)
    assert set(report["validation"]) == {"person", "engine"}
    model.save(tmp_path / "s2a.safetensors", report)
    loaded = S2AModel.load(tmp_path / "s2a.safetensors")
    from steadytalk_backend.render.s2a_person import load_avatar_sequences

    features, engine, tracked, fps = load_avatar_sequences(grid_avatar)
    full = loaded.predict(features, engine, fps, chunk=len(engine))
    chunked = loaded.predict(features, engine, fps, chunk=16)
    np.testing.assert_allclose(chunked, full, atol=1e-5)
    np.testing.assert_allclose(model.predict(features, engine, fps), full, atol=1e-6)
    # Eye channels are not audio-driven: they stay the engine's.
    from steadytalk_shared.schema import V1_CHANNELS  # the person model is v1-wide

    eyes = [i for i, n in enumerate(V1_CHANNELS) if n.startswith("eye")]
    np.testing.assert_array_equal(full[:, eyes], np.clip(engine[:, eyes], 0, 1))


def test_cli_errors_are_one_line(tmp_path, capsys, grid_avatar):
    assert main(["train", str(tmp_path), "--preset", "tiny", "--quiet"]) == 2
    assert "is not an avatar folder" in capsys.readouterr().err
    assert main(["eval", "render", str(grid_avatar), "--clips", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no trained renderer" in err and "steadytalk train" in err
