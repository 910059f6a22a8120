"""Retrieval of the person's own texture: for each frame to render, the avatar's frames whose
mouth expression and head pose are closest (k of them), chosen so that nothing flickers.

The avatar's video holds thousands of real views of this mouth (teeth, lip texture, stubble);
the renderer gets k of them, warped into the target frame (``warp.py``), and blends and corrects
real pixels instead of inventing them (retrieval-based video rewriting; DINet's reference
frames). Two things keep the choice stable over time, as StableFace's smoothing keeps the
curves stable:

- **Hysteresis on the choice**: each of the k slots keeps playing its source video forwards
  (frame j, then j + 1, or j held) while that continuation stays within ``switch_margin`` of the best
  candidate; only then does it jump. A real video segment played in order is itself smooth.
- **Smooth weights**: a slot's weight is a Gaussian of its distance, and after a jump it ramps
  up from 1 / ``ramp_frames`` over ``ramp_frames``, so a new source fades in instead of popping.

The choice is causal (each frame depends only on the frames before it), so streaming inference
and training make it the same way. During training the target frame's own neighbourhood
(``exclude_seconds`` each side) is never a candidate: the renderer must learn to use *other*
views of the mouth, as at inference where the target frame is not in the video at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steadytalk_shared.schema import V1_CHANNELS as CHANNELS

# The mouth and jaw channels: what retrieval matches (blinks are the eyes' business).
MOUTH_CHANNELS = np.array([i for i, name in enumerate(CHANNELS) if not name.startswith("eye")])


@dataclass(frozen=True)
class RetrievalConfig:
    k: int = 2  # slots: retrieved frames per output frame
    pose_weight: float = 1.0  # rotation-matrix entries against mouth coefficients (1 rad ~ 1.4)
    switch_margin: float = 0.15  # a slot jumps only when a candidate beats its continuation by this
    ramp_frames: int = 3  # a new source fades in over this many frames
    width: float = 0.35  # Gaussian width of the weight over the feature distance
    exclude_seconds: float = 1.0  # training: no candidate this close to the target frame
    spread_frames: int = 12  # slots show different moments of the video, not neighbours

    @classmethod
    def from_dict(cls, data: dict) -> RetrievalConfig:
        return cls(**data)


def features(coefficients: np.ndarray, matrices: np.ndarray, config: RetrievalConfig) -> np.ndarray:
    """(T, 33) coefficients, (T, 4, 4) model matrices -> (T, F) retrieval features: the mouth
    coefficients and the head's rotation (the matrix's linear part without its scale)."""
    linear = np.asarray(matrices, dtype=np.float64)[:, :3, :3]
    scale = np.cbrt(np.abs(np.linalg.det(linear)))[:, None, None]
    rotation = (linear / scale).reshape(len(linear), 9)
    mouth = np.asarray(coefficients, dtype=np.float64)[:, MOUTH_CHANNELS]
    return np.concatenate([mouth, config.pose_weight * rotation], axis=1).astype(np.float32)


@dataclass
class Retrieval:
    ids: np.ndarray  # (T, k) int, index frames chosen per target frame
    weights: np.ndarray  # (T, k) float in [0, 1]


class RetrievalIndex:
    """The avatar's frames, searchable by mouth expression and head pose."""

    def __init__(self, keys: np.ndarray, config: RetrievalConfig) -> None:
        self.keys = np.asarray(keys, dtype=np.float32)  # (N, F)
        self.config = config
        self._norms = (self.keys.astype(np.float64) ** 2).sum(1)

    def __len__(self) -> int:
        return len(self.keys)

    def distances(self, query: np.ndarray) -> np.ndarray:
        """(F,) -> (N,) Euclidean distances to every indexed frame."""
        q = query.astype(np.float64)
        squared = self._norms - 2 * self.keys.astype(np.float64) @ q + q @ q
        return np.sqrt(np.maximum(squared, 0.0))

    def retrieve(self, queries: np.ndarray, positions: np.ndarray | None = None, fps: float = 25.0) -> Retrieval:
        """(T, F) queries of consecutive frames -> k slots per frame.

        ``positions`` (T,) int: where each query frame sits in the index itself (training);
        frames within ``exclude_seconds`` of it are never chosen. None: the queries come from
        elsewhere (inference), nothing is excluded."""
        return RetrievalState(self).run(queries, positions, fps)


class RetrievalState:
    """The causal choice, frame after frame (hysteresis per slot); ``step`` for streaming."""

    def __init__(self, index: RetrievalIndex) -> None:
        self.index = index
        k = index.config.k
        self.current = np.full(k, -1, dtype=np.int64)  # source frame per slot, -1: none yet
        self.ramp = np.zeros(k)

    def step(self, query: np.ndarray, position: int | None = None, fps: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
        config, n = self.index.config, len(self.index)
        distance = self.index.distances(query)
        if position is not None:
            radius = int(round(config.exclude_seconds * fps))
            distance[max(0, position - radius) : position + radius + 1] = np.inf
        order = np.argsort(distance, kind="stable")
        order = order[np.isfinite(distance[order])]  # the excluded frames are no candidates
        ids, weights = np.empty(len(self.current), np.int64), np.zeros(len(self.current))
        for slot in range(len(self.current)):
            taken = ids[:slot]
            # The best candidate not too near another slot's source.
            best = next((int(j) for j in order if np.all(np.abs(taken - j) > config.spread_frames)), int(order[0]))
            # Continuing the source: its next frame, or the same one held (a mouth at rest).
            follow = -1
            if self.current[slot] >= 0:
                options = [j for j in (self.current[slot] + 1, self.current[slot]) if j < n]
                follow = min(options, key=lambda j: distance[j])
            keeps = (
                follow >= 0
                and np.isfinite(distance[follow])
                and np.all(np.abs(taken - follow) > config.spread_frames)
                and distance[follow] <= distance[best] + config.switch_margin
            )
            if keeps:
                chosen = follow
                self.ramp[slot] = min(1.0, self.ramp[slot] + 1.0 / config.ramp_frames)
            else:
                chosen = best
                # The first choice needs no fade; a jump starts low and ramps up.
                self.ramp[slot] = 1.0 / config.ramp_frames if self.current[slot] >= 0 else 1.0
            self.current[slot] = chosen
            ids[slot] = chosen
            closeness = np.exp(-0.5 * (distance[chosen] / config.width) ** 2) if np.isfinite(distance[chosen]) else 0.0
            weights[slot] = closeness * self.ramp[slot]
        return ids, weights

    def run(self, queries: np.ndarray, positions: np.ndarray | None, fps: float) -> Retrieval:
        ids = np.empty((len(queries), len(self.current)), np.int64)
        weights = np.empty((len(queries), len(self.current)), np.float32)
        for t, query in enumerate(queries):
            ids[t], weights[t] = self.step(query, None if positions is None else int(positions[t]), fps)
        return Retrieval(ids, weights)
