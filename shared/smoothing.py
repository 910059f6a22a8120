"""Gaussian-based adaptive smoothing (StableFace, Ling et al. 2022, section 3.1), numpy only.

A small temporal CNN looks at the coefficient sequence and predicts, per frame, the width
sigma of a Gaussian kernel; frame t of the output is the sigma_t-Gaussian-weighted mean of
its neighbours. Fast articulations (a /b/ closure, a vowel onset) get a narrow kernel, steady
segments a wide one, so jitter is removed without merging neighbouring phones, which is what
moving averages and fixed Gaussians cannot do.

This module is the one place where smoothing is *applied*: the backend trains the network in
torch (``steadytalk_backend.lipsync.smoother``) and exports weights that this module runs, so the
Blender add-on can re-smooth with a strength slider without torch. The two agree within 1e-5.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .schema import NUM_MOUTH_CHANNELS

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "smoother_default.safetensors"

# Kernel radius in multiples of sigma: beyond 3 sigma a Gaussian weighs < 1.1%.
RADIUS_PER_SIGMA = 3.0
SMOOTH_BLOCK_FRAMES = 2048
# Below this width the kernel is a delta (no smoothing); avoids 0/0 at strength 0.
MIN_SIGMA = 1e-3


@dataclass(frozen=True)
class SmootherConfig:
    """Architecture of the sigma-predicting network; stored as JSON beside the weights."""

    in_channels: int = 33
    hidden: tuple[int, ...] = (28, 24, 24)
    kernel_sizes: tuple[int, ...] = (5, 5, 5)
    # Dilations 1, 2, 4 give a receptive field of 29 frames (about 1 s at 30 fps): enough to
    # tell a held vowel from a burst of articulation.
    dilations: tuple[int, ...] = (1, 2, 4)
    out_kernel: int = 3
    # Sigma range in frames: 0.3 is effectively no smoothing, 4 frames spans a held vowel.
    sigma_min: float = 0.3
    sigma_max: float = 4.0

    @classmethod
    def from_dict(cls, data: dict) -> SmootherConfig:
        fields = dict(data)
        for key in ("hidden", "kernel_sizes", "dilations"):
            fields[key] = tuple(fields[key])
        return cls(**fields)

    def to_dict(self) -> dict:
        return asdict(self)

    def layer_specs(self) -> list[tuple[int, int, int, int]]:
        """(in, out, kernel, dilation) per conv layer, the last one predicting sigma."""
        sizes = [self.in_channels, *self.hidden]
        specs = [(sizes[i], sizes[i + 1], self.kernel_sizes[i], self.dilations[i]) for i in range(len(self.hidden))]
        return [*specs, (sizes[-1], 1, self.out_kernel, 1)]


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read a safetensors file with numpy alone (the format: u64 header length, JSON header,
    raw little-endian tensors). Only F32/F64 are needed here; never unpickles anything."""
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = memoryview(data)[8 + header_len :]
    dtypes = {"F32": "<f4", "F64": "<f8"}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in dtypes:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype=dtypes[info["dtype"]])
        tensors[name] = array.reshape(info["shape"]).astype(np.float64)
    return tensors


def config_path_for(weights_path: str | Path) -> Path:
    return Path(weights_path).with_suffix(".json")


@dataclass
class AdaptiveSmoother:
    """The sigma network in numpy, with weights named as the torch module names them."""

    config: SmootherConfig
    weights: dict[str, np.ndarray]

    @classmethod
    def load(cls, weights_path: str | Path = DEFAULT_WEIGHTS) -> AdaptiveSmoother:
        meta = json.loads(config_path_for(weights_path).read_text())
        return cls(SmootherConfig.from_dict(meta["architecture"]), read_safetensors(weights_path))

    def predict_sigma(self, curves: np.ndarray) -> np.ndarray:
        """Per-frame kernel width in frames, shape (T,), for ``curves`` (T, C) in [0, 1].

        The network reads the mouth channels (the first ``in_channels`` columns with everything
        after the mouth at rest, as in its training), so blinks and brows do not move its kernel."""
        x = np.zeros((len(curves), self.config.in_channels))
        mouth = min(NUM_MOUTH_CHANNELS, self.config.in_channels)
        x[:, :mouth] = np.asarray(curves, dtype=np.float64)[:, :mouth]
        specs = self.config.layer_specs()
        for i, (_, _, kernel, dilation) in enumerate(specs):
            weight = self.weights[f"layers.{i}.weight"]  # (out, in, k)
            bias = self.weights[f"layers.{i}.bias"]
            pad = dilation * (kernel - 1) // 2
            padded = np.pad(x, ((pad, pad), (0, 0)), mode="edge")
            length = x.shape[0]
            y = np.broadcast_to(bias, (length, bias.shape[0])).copy()
            for tap in range(kernel):
                y += padded[tap * dilation : tap * dilation + length] @ weight[:, :, tap].T
            x = np.maximum(y, 0.0) if i < len(specs) - 1 else y
        logits = x[:, 0]
        span = self.config.sigma_max - self.config.sigma_min
        return self.config.sigma_min + span / (1.0 + np.exp(-logits))

    def smooth(self, curves: np.ndarray, strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Adaptively smoothed curves and the per-frame sigma used (already times ``strength``).

        Only the mouth channels (``schema.MOUTH_CHANNELS``) are smoothed; blinks, brows and
        gaze pass through as the performance models made them (already smooth, and a lip
        kernel of 4 frames would flatten a 150 ms blink)."""
        sigma = self.predict_sigma(curves) * float(strength)
        out = np.array(curves, dtype=np.float32)
        out[:, :NUM_MOUTH_CHANNELS] = gaussian_smooth(out[:, :NUM_MOUTH_CHANNELS], sigma)
        return out, sigma


def gaussian_smooth(curves: np.ndarray, sigma: np.ndarray | float) -> np.ndarray:
    """Smooth (T, C) ``curves`` with a Gaussian whose width in frames varies per output frame.

    ``y[t] = sum_k w_t(k) x[t+k] / sum_k w_t(k)``, ``w_t(k) = exp(-k^2 / (2 sigma_t^2))``, edges
    replicated. A scalar sigma gives the fixed-Gaussian baseline.
    """
    x = np.asarray(curves, dtype=np.float64)
    length = x.shape[0]
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (length,))
    sigma = np.maximum(sigma, MIN_SIGMA)
    radius = int(np.ceil(RADIUS_PER_SIGMA * sigma.max())) if length else 0
    if radius == 0 or length == 0:
        return x.astype(np.float32)
    padded = np.pad(x, ((radius, radius), (0, 0)), mode="edge")
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    out = np.empty(x.shape, dtype=np.float32)
    # Blocks of frames bound the (frames, channels, kernel) product to a few MB, so hours of
    # curves smooth in constant memory.
    for start in range(0, length, SMOOTH_BLOCK_FRAMES):
        stop = min(start + SMOOTH_BLOCK_FRAMES, length)
        kernel = np.exp(-0.5 * (offsets[None, :] / sigma[start:stop, None]) ** 2)  # (t, 2R+1)
        kernel /= kernel.sum(axis=1, keepdims=True)
        block = padded[start : stop + 2 * radius]
        windows = np.lib.stride_tricks.sliding_window_view(block, 2 * radius + 1, axis=0)  # (t, C, 2R+1)
        out[start:stop] = np.einsum("tck,tk->tc", windows, kernel)
    return out


def moving_average(curves: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` frames (odd), edges replicated: a baseline."""
    x = np.asarray(curves, dtype=np.float64)
    half = max(int(width) // 2, 0)
    if half == 0:
        return x.astype(np.float32)
    padded = np.pad(x, ((half, half), (0, 0)), mode="edge")
    cumulative = np.cumsum(np.pad(padded, ((1, 0), (0, 0))), axis=0)
    return ((cumulative[2 * half + 1 :] - cumulative[: -2 * half - 1]) / (2 * half + 1)).astype(np.float32)


_DEFAULT: AdaptiveSmoother | None = None


def default_smoother() -> AdaptiveSmoother:
    """The committed default weights, loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = AdaptiveSmoother.load(DEFAULT_WEIGHTS)
    return _DEFAULT
