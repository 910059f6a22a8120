"""Person-specific audio-to-expression (Transformer-S2A, Chen et al. 2022), as a residual over
the rule engine.

Input per video frame: the engine's S2A features (phone posteriors, log-f0, voicing, energy,
log-mel; averaged over the frame) and the engine's own raw curves. A small transformer predicts
a correction to those curves, trained on the avatar's tracked coefficients. Because it starts
from the rule engine (the correction's output layer starts at zero), a few minutes of video
suffice to learn the person's manner: how wide they open, how much they round, their smile. The
eye channels are not audio-driven and pass through unchanged.

Attention is banded (each frame sees ``radius`` frames each side), so any length is processed in
overlapping chunks with exactly the result of one pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from steadytalk_shared.schema import V1_CHANNELS as CHANNELS  # the renderer's models are v1-wide

from ..avatar.params import load_coefficients
from .data import FEATURE_RATE, Normalizer
from .network import save_module

MOUTH = [i for i, name in enumerate(CHANNELS) if not name.startswith("eye")]


@dataclass(frozen=True)
class S2AConfig:
    features: int = 123
    width: int = 96
    layers: int = 3
    heads: int = 4
    radius: int = 12  # frames each side a frame attends to (about 0.5 s at 25 fps)
    dropout: float = 0.1

    @classmethod
    def from_dict(cls, data: dict) -> S2AConfig:
        return cls(**{k: v for k, v in data.items() if k in {f.name for f in fields(cls)}})


class PersonS2A(nn.Module):
    def __init__(self, config: S2AConfig) -> None:
        super().__init__()
        self.config = config
        channels = len(CHANNELS)
        self.inp = nn.Linear(config.features + channels, config.width)
        # A depthwise convolution gives each token its neighbourhood (relative position) cheaply.
        self.local = nn.Conv1d(config.width, config.width, 5, padding=2, groups=config.width)
        layer = nn.TransformerEncoderLayer(
            config.width, config.heads, 2 * config.width, config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.out = nn.Linear(config.width, len(MOUTH))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor, engine: torch.Tensor) -> torch.Tensor:
        """features (B, T, D) normalized, engine (B, T, 33) raw curves -> (B, T, 33) in [0, 1]."""
        x = self.inp(torch.cat([features, engine], -1))
        x = x + self.local(x.transpose(1, 2)).transpose(1, 2)
        t = x.shape[1]
        offset = torch.arange(t, device=x.device)[None] - torch.arange(t, device=x.device)[:, None]
        mask = offset.abs() > self.config.radius  # True = not attended
        x = self.encoder(x, mask=mask)
        delta = torch.zeros_like(engine)
        delta[..., MOUTH] = self.out(x)
        return (engine + delta).clamp(0.0, 1.0)


def frame_features(features: np.ndarray, frames: int, fps: float) -> np.ndarray:
    """(N, D) at 100 Hz -> (frames, D): the mean over each video frame's interval."""
    edges = np.round(np.arange(frames + 1) / fps * FEATURE_RATE).astype(np.int64).clip(0, len(features))
    csum = np.concatenate([np.zeros((1, features.shape[1])), np.cumsum(features, 0, dtype=np.float64)])
    lo, hi = edges[:-1], np.maximum(edges[1:], edges[:-1] + 1).clip(max=len(features))
    lo = np.minimum(lo, hi - 1)
    return ((csum[hi] - csum[lo]) / (hi - lo)[:, None]).astype(np.float32)


@dataclass
class S2AModel:
    """A trained person model with its feature normalizer; ``predict`` is numpy in, numpy out."""

    net: PersonS2A
    normalizer: Normalizer
    # How much of the learned correction is applied (chosen on held-back frames, see
    # ``choose_correction_scale``): the full correction fits the training frames and, on new
    # audio, partly cancels the engine's articulation (jawOpen shrunk toward its mean).
    correction_scale: float = 1.0

    @torch.no_grad()
    def predict(self, features: np.ndarray, engine_raw: np.ndarray, fps: float, chunk: int = 512) -> np.ndarray:
        """S2A features (N, D) at 100 Hz and the engine's raw curves (T, C) at ``fps`` -> (T, C).

        The model corrects the v1 columns; wider (schema v2) curves keep their upper face."""
        if engine_raw.shape[1] > len(CHANNELS):
            out = np.array(engine_raw, dtype=np.float32)
            out[:, : len(CHANNELS)] = self.predict(features, engine_raw[:, : len(CHANNELS)], fps, chunk)
            return out
        self.net.eval()
        frames = len(engine_raw)
        x = torch.as_tensor(self.normalizer(frame_features(features, frames, fps)))
        engine = torch.as_tensor(engine_raw, dtype=torch.float32)
        context = self.net.config.radius * self.net.config.layers + 2  # +2: the depthwise conv
        out = np.empty((frames, engine.shape[1]), dtype=np.float32)
        for start in range(0, frames, chunk):
            lo, hi = max(0, start - context), min(frames, start + chunk + context)
            y = self.net(x[None, lo:hi], engine[None, lo:hi])[0]
            out[start : min(start + chunk, frames)] = y[start - lo : start - lo + min(chunk, frames - start)].numpy()
        if self.correction_scale != 1.0:  # a convex blend with the engine stays in [0, 1]
            out = (engine_raw + self.correction_scale * (out - engine_raw)).astype(np.float32)
        return out

    def save(self, path: Path, training: dict) -> None:
        save_module(
            self.net,
            path,
            "steadytalk.person_s2a",
            asdict(self.net.config),
            {"normalizer": self.normalizer.to_dict(), "training": training, "correction_scale": self.correction_scale},
        )

    @classmethod
    def load(cls, path: Path) -> S2AModel:
        meta = json.loads(path.with_suffix(".json").read_text())
        if meta.get("kind") != "steadytalk.person_s2a":
            raise ValueError(f"{path} is not a person audio-to-expression model")
        net = PersonS2A(S2AConfig.from_dict(meta["architecture"]))
        net.load_state_dict(load_file(str(path)))
        return cls(net.eval(), Normalizer.from_dict(meta["normalizer"]), float(meta.get("correction_scale", 1.0)))


# Scales tried for the correction, and how much worse than the best mouth RMSE a scale may be
# when it gives a better jawOpen correlation.
CORRECTION_SCALES = tuple(np.round(np.arange(0.0, 1.01, 0.1), 2))
RMSE_SLACK = 1.05


def choose_correction_scale(full: np.ndarray, engine: np.ndarray, tracked: np.ndarray) -> float:
    """The share of the correction to apply, from held-back frames: ``full`` the person model's
    curves with its whole correction, ``engine`` the rule engine's, ``tracked`` the truth (T, 33).
    The best jawOpen correlation among the scales whose mouth RMSE is within ``RMSE_SLACK`` of
    the best one."""
    scored = [
        (scale, compare_to_tracked(engine + scale * (full - engine), engine, tracked)["person"])
        for scale in CORRECTION_SCALES
    ]
    best_rmse = min(score["rmse_mouth"] for _, score in scored)
    limit = RMSE_SLACK * best_rmse
    eligible = [(score["pearson_jaw_open"], scale) for scale, score in scored if score["rmse_mouth"] <= limit]
    return float(max(eligible)[1])


def load_avatar_sequences(avatar: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(features at 100 Hz, engine raw curves, tracked coefficients, fps) of an avatar folder."""
    result = json.loads((avatar / "lipsync.json").read_text())
    with np.load(avatar / "features.npz") as data:
        features = data["values"].astype(np.float32)
    tracked = load_coefficients(avatar, CHANNELS)  # by name: v2 avatars store all 52
    engine = np.asarray(result["raw"], dtype=np.float32).reshape(-1, len(result["channels"]))
    engine = engine[:, : len(CHANNELS)]  # the model's v1 columns (a v2 lipsync.json has 52)
    frames = min(len(engine), len(tracked))
    return features, engine[:frames], tracked[:frames], float(result["fps"])


def train_s2a(
    avatar: Path,
    steps: int = 600,
    window: int = 128,
    batch: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    validation_share: float = 0.05,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[S2AModel, dict]:
    """Fit the residual on the avatar's first 95% of frames; report on the rest against the engine."""
    features, engine, tracked, fps = load_avatar_sequences(avatar)
    normalizer = Normalizer.fit(features)
    x = torch.as_tensor(normalizer(frame_features(features, len(engine), fps)))
    e, y = torch.as_tensor(engine), torch.as_tensor(tracked)
    split = int(len(engine) * (1 - validation_share))
    if split < window + 1:
        raise ValueError(f"{avatar} is too short for the audio-to-expression model ({len(engine)} frames)")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = PersonS2A(S2AConfig(features=features.shape[1]))
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        net.train()
        starts = torch.randint(0, split - window, (batch,), generator=generator)
        index = starts[:, None] + torch.arange(window)[None]
        pred = net(x[index], e[index])
        target = y[index]
        loss = F.mse_loss(pred[..., MOUTH], target[..., MOUTH])
        # Velocity term: the person's articulation speed, not only the poses.
        velocity = F.l1_loss(torch.diff(pred[..., MOUTH], dim=1), torch.diff(target[..., MOUTH], dim=1))
        optimizer.zero_grad(set_to_none=True)
        (loss + 0.5 * velocity).backward()
        optimizer.step()
        schedule.step()
        if progress:
            progress(step + 1, steps, float(loss))
    model = S2AModel(net.eval(), normalizer)
    held = slice(split, len(engine))
    full = model.predict(features, engine, fps)[held]
    model.correction_scale = choose_correction_scale(full, engine[held], tracked[held])
    predicted = model.predict(features, engine, fps)[held]
    report = {
        "frames_trained": split,
        "frames_validated": len(engine) - split,
        "correction_scale": model.correction_scale,
        "validation": compare_to_tracked(predicted, engine[held], tracked[held]),
        "validation_full_correction": compare_to_tracked(full, engine[held], tracked[held]),
    }
    return model, report


def compare_to_tracked(predicted: np.ndarray, engine: np.ndarray, tracked: np.ndarray) -> dict:
    """RMSE over the mouth channels and jawOpen Pearson r, person model vs rule engine."""
    jaw = CHANNELS.index("jawOpen")

    def scores(curves: np.ndarray) -> dict:
        rmse = float(np.sqrt(np.mean((curves[:, MOUTH] - tracked[:, MOUTH]) ** 2)))
        r = np.corrcoef(curves[:, jaw], tracked[:, jaw])[0, 1]
        return {"rmse_mouth": rmse, "pearson_jaw_open": float(r) if math.isfinite(r) else 0.0}

    return {"person": scores(predicted), "engine": scores(engine)}
