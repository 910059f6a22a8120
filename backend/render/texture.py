"""The avatar's own frames as a texture source for the renderer: retrieval (``retrieval.py``)
plus what a retrieved frame is drawn from (its crop and its posed mesh), so that training and
inference hand the conditioner the same thing.

The source frames are the avatar's training frames (never its held-back validation frames);
each is kept with its screen-space mesh (the avatar's rig, pose and tracked expression), the
``source`` side of the dense-correspondence warp."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .retrieval import Retrieval, RetrievalConfig, RetrievalIndex, RetrievalState, features


@dataclass
class RetrievedBatch:
    """k retrieved frames for each of N target frames."""

    frames: torch.Tensor  # (N, k, 3, S, S) in [0, 1]
    screens: torch.Tensor  # (N, k, V, 3) the source meshes in crop pixels
    weights: torch.Tensor  # (N, k) in [0, 1]


class TextureSource:
    def __init__(
        self,
        frames: np.ndarray,
        coefficients: np.ndarray,
        matrices: np.ndarray,
        screens: torch.Tensor,
        config: RetrievalConfig,
        fps: float,
    ) -> None:
        """frames (N, S, S, 3) uint8, coefficients (N, 33), matrices (N, 4, 4), screens (N, V, 3)."""
        self.frames, self.screens, self.config, self.fps = frames, screens, config, fps
        self.index = RetrievalIndex(features(coefficients, matrices, config), config)

    @classmethod
    def from_avatar(cls, data, screen, count: int, config: RetrievalConfig, device: torch.device) -> TextureSource:
        """The first ``count`` frames of ``data`` (an ``AvatarFrames`` with its crops loaded), with
        their meshes placed by ``screen`` (the avatar's ``Conditioner.screen``)."""
        coefficients, matrices = data.coefficients[:count], data.matrices[:count]
        with torch.no_grad():
            screens = torch.cat(
                [
                    screen(
                        torch.as_tensor(coefficients[i : i + 256], device=device),
                        torch.as_tensor(matrices[i : i + 256], device=device),
                    )
                    for i in range(0, count, 256)
                ]
            )
        return cls(data.frames[:count], coefficients, matrices, screens, config, data.fps)

    def __len__(self) -> int:
        return len(self.frames)

    def to_dict(self) -> dict:
        """What inference needs to rebuild it from the avatar folder (kept in the model's JSON)."""
        return {"config": asdict(self.config), "frames": len(self)}

    def retrieve_training(self, coefficients: np.ndarray, matrices: np.ndarray) -> Retrieval:
        """The choice for every frame of the training avatar (T >= the source frames, the first
        of which are the source itself) as a target, its own neighbourhood excluded."""
        positions = np.arange(len(coefficients))
        return self.index.retrieve(self.query(coefficients, matrices), positions, self.fps)

    def state(self) -> RetrievalState:
        """A fresh causal choice for a new sequence (inference)."""
        return RetrievalState(self.index)

    def query(self, coefficients: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        return features(coefficients, matrices, self.config)

    def gather(self, ids: np.ndarray, weights: np.ndarray, device: torch.device) -> RetrievedBatch:
        """(N, k) ids and weights -> the batch the conditioner warps."""
        ids = np.asarray(ids)
        frames = torch.as_tensor(self.frames[ids.reshape(-1)], device=device)
        frames = frames.permute(0, 3, 1, 2).float().div_(255.0)
        n, k = ids.shape
        return RetrievedBatch(
            frames.view(n, k, *frames.shape[1:]),
            self.screens[torch.as_tensor(ids, device=self.screens.device)].to(device),
            torch.as_tensor(np.asarray(weights), dtype=torch.float32, device=device),
        )
