"""Retrieval of the person's own frames (``render/retrieval.py``) on a real tracked GRID clip:
the excluded window around a training target is never returned, and the choice is stable."""

from __future__ import annotations

import numpy as np

from steadytalk_backend.render.data import AvatarFrames
from steadytalk_backend.render.retrieval import RetrievalConfig, RetrievalIndex, features


def test_training_retrieval_never_returns_the_window_around_the_target(grid_avatar):
    clip = AvatarFrames.load(grid_avatar, 256, frames=False)
    config = RetrievalConfig(k=2, exclude_seconds=0.4, spread_frames=4)
    keys = features(clip.coefficients, clip.matrices, config)
    index = RetrievalIndex(keys, config)
    positions = np.arange(clip.num_frames)
    radius = round(config.exclude_seconds * clip.fps)  # 10 frames at 25 fps
    chosen = index.retrieve(keys, positions, clip.fps)
    assert chosen.ids.shape == (clip.num_frames, 2)
    gap = np.abs(chosen.ids - positions[:, None])
    assert gap.min() > radius, gap.min()
    # Without the exclusion a frame finds itself first (distance 0): the exclusion is what
    # kept it out above, not an accident of the features.
    free = index.retrieve(keys[:1])
    assert free.ids[0, 0] == 0 and free.weights[0, 0] == 1.0
    # The two slots show different moments.
    assert np.all(np.abs(chosen.ids[:, 0] - chosen.ids[:, 1]) > config.spread_frames)
    assert np.all((chosen.weights >= 0) & (chosen.weights <= 1))


def test_the_choice_holds_and_new_sources_fade_in(grid_avatar):
    clip = AvatarFrames.load(grid_avatar, 256, frames=False)
    config = RetrievalConfig(k=1, exclude_seconds=0.4)
    keys = features(clip.coefficients, clip.matrices, config)
    index = RetrievalIndex(keys, config)
    positions = np.arange(clip.num_frames)
    chosen = index.retrieve(keys, positions, clip.fps)
    # Nearest neighbour frame by frame, the same exclusion: the crude paste of the issue.
    radius = round(config.exclude_seconds * clip.fps)
    nearest = []
    for t in positions:
        d = index.distances(keys[t])
        d[max(0, t - radius) : t + radius + 1] = np.inf
        nearest.append(int(np.argmin(d)))
    nearest = np.asarray(nearest)
    step = chosen.ids[1:, 0] - chosen.ids[:-1, 0]
    jumped = np.nonzero((step != 0) & (step != 1))[0] + 1  # neither played on nor held
    naive = np.diff(nearest)
    naive_jumps = np.count_nonzero((naive != 0) & (naive != 1))
    assert len(jumped) < 0.7 * naive_jumps, (len(jumped), naive_jumps)
    # A jump starts its slot low (the new source fades in), never a pop to full weight.
    assert np.all(chosen.weights[jumped, 0] <= 1.0 / config.ramp_frames + 1e-6)
    assert np.diff(chosen.weights[:, 0]).max() < 0.5  # a third of the fade plus the change in closeness
