"""The renderer with the person's own texture at native resolution (presets tiny-native and
tiny-retrieval, scaled down): it trains and renders end to end on a real prepared GRID clip,
the mouth window is pasted back without touching anything else, the texture's causal choice
gives the same frames whether rendered in one window, in windows or frame by frame, and the
copying head takes real pixels only where the warp is valid, colour-matched to the target."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_preset

from steadytalk_backend.render.data import AvatarFrames, match_colour
from steadytalk_backend.render.inference import AvatarRenderer
from steadytalk_backend.render.network import RendererConfig, blend_texture
from steadytalk_backend.render.presets import PRESETS
from steadytalk_backend.render.train import RendererTrainer

WINDOW = (64, 96)  # rows, columns at the 256 crop: the test network's mouth window


@pytest.fixture(scope="module")
def textured(grid_avatar, tmp_path_factory):
    frames = AvatarFrames.load(grid_avatar, 256)
    renderer = RendererConfig(
        work_size=64,
        channels=(8, 16, 32),
        groups=4,
        audio_hidden=16,
        temporal_radius=3,
        temporal_heads=2,
        native_window=WINDOW,
        retrieved=2,
        texture_copy=True,
    )
    out = tmp_path_factory.mktemp("textured") / "model"
    trainer = RendererTrainer(
        grid_avatar,
        tiny_preset(renderer=renderer, erase_eyes=False),
        device="cpu",
        frames=frames,
        out=out,
        log=lambda s: None,
    )
    summary = trainer.run()
    return trainer, out, summary, frames


def test_the_textured_renderer_trains_and_exports_what_inference_needs(textured):
    trainer, out, summary, frames = textured
    assert summary["epochs"] == 2 and np.isfinite(summary["validation_l1"])
    meta = json.loads((out / "renderer.json").read_text())
    assert meta["architecture"]["retrieved"] == 2 and meta["architecture"]["native_window"] == list(WINDOW)
    assert meta["texture"]["frames"] == trainer.validation_start  # never the held-back frames
    # Training never retrieved a frame from the second around its target.
    ids = trainer.retrieval.ids
    assert np.abs(ids - np.arange(len(ids))[:, None]).min() > round(trainer.texture.config.exclude_seconds * frames.fps)
    assert ids.max() < trainer.validation_start
    # The network sees 8 planes + 4 per retrieved frame, at the window's size.
    batch = trainer._batch(trainer._window_starts(1))
    cond = trainer.conditioner(batch["coefficients"], batch["matrices"], batch["frames"], batch["mouth"],
                               retrieved=batch["retrieved"])  # fmt: skip
    assert tuple(cond.inputs.shape[1:]) == (16, *WINDOW)
    # The warped texture is real pixels where valid: inside the window, in [0, 1], not empty.
    valid = cond.inputs[:, 11]
    assert valid.max() > 0 and float(valid.gt(0).float().mean()) > 0.2


def test_textured_render_is_the_same_in_windows_and_leaves_the_rest_untouched(textured, grid_avatar):
    _, out, _, frames = textured
    renderer = AvatarRenderer(grid_avatar, out, device="cpu")
    assert (
        renderer.texture is not None
        and len(renderer.texture) == json.loads((out / "renderer.json").read_text())["texture"]["frames"]
    )
    count = 30
    audio = renderer.audio_for(frames.features, count, frames.fps)
    inputs = list(renderer.frame_inputs(frames.coefficients, audio, frames, np.arange(count)))
    whole = renderer.render_whole(inputs)
    windowed = np.stack(list(renderer.stream(iter(inputs))))
    streamed = np.stack(list(renderer.stream(iter(inputs), chunk=1)))
    assert whole.shape == (count, 256, 256, 3)
    assert np.abs(windowed.astype(int) - whole).max() <= 1
    assert np.abs(streamed.astype(int) - whole).max() <= 1
    # Only the mouth window can change, and inside it only the (feathered) erased region.
    encoded = renderer._encode(inputs[:count])
    for t in (0, count // 2, count - 1):
        alpha = encoded[t].alpha[0].numpy()
        r, c = encoded[t].offset.tolist()
        inside = np.zeros(alpha.shape, bool)
        inside[r : r + WINDOW[0], c : c + WINDOW[1]] = True
        keep = (alpha == 0) | ~inside
        assert np.array_equal(whole[t][keep], frames.frames[t][keep])
        assert np.abs(whole[t][~keep].astype(int) - frames.frames[t][~keep]).mean() > 0.5  # it did render
    # The eyes pass through from the plate in this preset (nothing there is erased).
    assert not renderer.conditioner.erase_eyes


def test_the_cpu_presets_are_registered_and_old_models_still_load():
    for name in ("tiny-native", "tiny-retrieval"):
        config = PRESETS[name].renderer
        assert config.native and config.network_size == (128, 192)
    assert PRESETS["tiny-retrieval"].renderer.retrieved == 2 and PRESETS["tiny-retrieval"].renderer.texture_copy
    # A model JSON written before these fields existed rebuilds the old network.
    old = {k: v for k, v in PRESETS["tiny"].renderer.to_dict().items() if k not in ("retrieved", "native_window")}
    config = RendererConfig.from_dict(old)
    assert config.retrieved == 0 and not config.native and config.input_planes == 8 and not config.texture_copy


def test_the_copying_head_takes_a_warped_pixel_only_where_it_is_valid():
    generator = torch.Generator().manual_seed(0)
    colour = torch.rand(1, 3, 8, 8, generator=generator)
    warped = torch.rand(1, 3, 8, 8, generator=generator)
    weight = torch.zeros(1, 1, 8, 8)
    weight[..., :4] = 1.0  # the left half valid, the right half not
    texture = torch.cat([warped, weight, torch.zeros(1, 4, 8, 8)], dim=1)  # k = 2, the second all invalid
    copy = torch.tensor([-30.0, 30.0, 30.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8)  # wants the frames
    out = blend_texture(colour, copy, texture)
    assert torch.allclose(out[..., :4], warped[..., :4], atol=1e-4)
    assert torch.allclose(out[..., 4:], colour[..., 4:], atol=1e-4)  # invalid: never copied, whatever the logits
    # Even logits: a frame's share grows with its retrieval weight (a source fading in).
    even = torch.zeros(1, 3, 8, 8)
    half = blend_texture(colour, even, torch.cat([warped, weight * 0.5, torch.zeros(1, 4, 8, 8)], dim=1))
    full = blend_texture(colour, even, texture)
    share = lambda out: ((out - colour) / (warped - colour))[..., :4].median()  # noqa: E731
    assert 0.3 < float(share(half)) < float(share(full)) < 0.55


def test_colour_matching_removes_a_lighting_offset_measured_around_the_erased_region():
    background = torch.full((1, 3, 64, 64), 0.5)
    background[:, 0] = 0.6
    erased = torch.zeros(1, 64, 64)
    erased[:, 24:40, 24:40] = 1.0
    valid = torch.ones(1, 64, 64)
    valid[:, :, :8] = 0.0
    warped = (background - torch.tensor([0.1, -0.05, 0.02]).view(1, 3, 1, 1)) * valid[:, None]
    matched = match_colour(warped, valid, background, erased, band=8)
    assert torch.allclose(matched[..., 8:], background[..., 8:], atol=1e-5)
    assert matched[..., :8].abs().max() == 0  # invalid pixels stay empty
    # No known pixels around the region: nothing to measure, the frame is left as it is.
    assert torch.equal(match_colour(warped, valid * 0, background, erased, band=8), warped * 0)


def test_the_separable_dilation_is_the_square_max_pool():
    import torch.nn.functional as F

    from steadytalk_backend.render.data import dilate

    mask = (torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(1)) > 0.97).float()
    for radius in (1, 5, 16):
        assert torch.equal(dilate(mask, radius), F.max_pool2d(mask[:, None], 2 * radius + 1, 1, radius)[:, 0])
