"""The adaptive smoothing network in torch (training side) and its export.

Mirrors ``steadytalk_shared.smoothing`` exactly: same layers, same padding, same sigma range,
same Gaussian application, so the exported weights give the same result in numpy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from steadytalk_shared.schema import NUM_MOUTH_CHANNELS
from steadytalk_shared.smoothing import (
    MIN_SIGMA,
    RADIUS_PER_SIGMA,
    SmootherConfig,
    config_path_for,
    read_safetensors,
)


class AdaptiveSmootherNet(nn.Module):
    """Temporal CNN: (B, T, C) coefficients -> (B, T) Gaussian width in frames."""

    def __init__(self, config: SmootherConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(
            nn.Conv1d(
                c_in, c_out, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2, padding_mode="replicate"
            )
            for c_in, c_out, kernel, dilation in config.layer_specs()
        )

    def forward(self, curves: torch.Tensor) -> torch.Tensor:
        # The mouth channels only, the rest at zero (as the numpy path reads them): blinks and
        # brows must not widen or narrow the lip kernel.
        x = torch.zeros((*curves.shape[:2], self.config.in_channels), dtype=curves.dtype, device=curves.device)
        mouth = min(NUM_MOUTH_CHANNELS, self.config.in_channels)
        x[..., :mouth] = curves[..., :mouth]
        x = x.transpose(1, 2)  # (B, C, T)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        span = self.config.sigma_max - self.config.sigma_min
        return self.config.sigma_min + span * torch.sigmoid(x[:, 0])  # (B, T)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def gaussian_smooth(curves: torch.Tensor, sigma: torch.Tensor, radius: int | None = None) -> torch.Tensor:
    """Differentiable per-frame Gaussian smoothing. curves (B, T, C), sigma (B, T) in frames."""
    sigma = sigma.clamp_min(MIN_SIGMA)
    if radius is None:
        radius = int(math.ceil(RADIUS_PER_SIGMA * float(sigma.max())))
    if radius == 0:
        return curves
    offsets = torch.arange(-radius, radius + 1, dtype=curves.dtype, device=curves.device)
    kernel = torch.exp(-0.5 * (offsets / sigma[..., None]) ** 2)  # (B, T, K)
    kernel = kernel / kernel.sum(-1, keepdim=True)
    padded = torch.cat(
        [curves[:, :1].expand(-1, radius, -1), curves, curves[:, -1:].expand(-1, radius, -1)], dim=1
    )  # (B, T + 2R, C)
    windows = padded.unfold(1, 2 * radius + 1, 1)  # (B, T, C, K)
    return torch.einsum("btck,btk->btc", windows, kernel)


def smooth_mouth(curves: torch.Tensor, sigma: torch.Tensor, radius: int | None = None) -> torch.Tensor:
    """What the numpy ``AdaptiveSmoother.smooth`` applies: the mouth channels smoothed, blinks,
    brows and gaze passed through (``schema.MOUTH_CHANNELS``). curves (B, T, C)."""
    mouth = gaussian_smooth(curves[..., :NUM_MOUTH_CHANNELS], sigma, radius)
    return torch.cat([mouth, curves[..., NUM_MOUTH_CHANNELS:]], dim=-1)


def save_smoother(net: AdaptiveSmootherNet, path: str | Path, training: dict) -> None:
    """Write ``path`` (.safetensors) and its JSON config (architecture + how it was trained)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().float().cpu().contiguous() for name, t in net.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "steadytalk-smoother"})
    meta = {
        "kind": "steadytalk.adaptive_smoother",
        "architecture": net.config.to_dict(),
        "num_parameters": net.num_parameters(),
        "training": training,
    }
    config_path_for(path).write_text(json.dumps(meta, indent=2) + "\n")


def load_smoother(path: str | Path) -> AdaptiveSmootherNet:
    meta = json.loads(config_path_for(path).read_text())
    net = AdaptiveSmootherNet(SmootherConfig.from_dict(meta["architecture"]))
    state = {k: torch.from_numpy(v).float() for k, v in read_safetensors(path).items()}
    net.load_state_dict(state)
    return net
