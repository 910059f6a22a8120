"""StableFace's neural renderer: eroded background + face-shape pass (+ eye map) -> photoreal frame.

Per frame the network sees the real frame with its mouth (and eye) region erased, the face-shape
pass of the wanted expression and pose, the erased region itself and an eye attention map
(FACIAL: the eye regions weighted by the blink coefficient). It predicts the whole frame; only
the erased region (feathered by a few pixels) replaces the background, so everything else passes
through untouched and there is no seam to see.

Inside: a U-Net (convolution + GroupNorm, no BatchNorm, so a frame's output never depends on its
batch neighbours) with two removable modules at the bottleneck, as StableFace has them:

- the **audio fusion module** (AFM): the S2A audio features of a window around each frame (the
  motion audio embedding of Diffused Heads: audio before and after the frame) are encoded by a
  small temporal CNN and modulate the image features (FiLM: per-channel scale and shift), which
  is where teeth and tongue, absent from the 3D face, can come from;
- the **transformer dependency module**: self-attention across frames at every bottleneck
  location. Attention is banded (frame i sees frames j with |i - j| <= ``temporal_radius``,
  T = 2 * radius frames around it, 12 by default) with a learned relative-position bias, so the
  module is shift-invariant: a long sequence can be rendered in windows with overlap and give
  exactly what one long window gives (``inference.py`` relies on this).

Configs are dataclasses stored as JSON beside safetensors weights; nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_output

# Input planes: eroded background RGB, erased region, shape pass RGB, eye attention map.
IMAGE_INPUTS = 8
RETRIEVED_PLANES = 4  # per retrieved frame: warped RGB, validity times the retrieval weight


@dataclass(frozen=True)
class RendererConfig:
    size: int = 256  # the avatar crop the renderer reads and writes
    work_size: int = 256  # network resolution (lower: faster, blurrier; upsampled to ``size``)
    channels: tuple[int, ...] = (32, 64, 128, 192, 256)  # per level; len - 1 downsamplings
    groups: int = 8  # GroupNorm groups
    audio_fusion: bool = True
    audio_features: int = 123  # S2A feature size (phones, pitch, energy, mel)
    audio_context: int = 20  # feature frames (100 Hz) each side of the frame: 0.2 s
    audio_hidden: int = 128
    temporal: bool = True
    temporal_radius: int = 6  # frames each side: a window of T = 12 around each frame
    temporal_layers: int = 1
    temporal_heads: int = 4
    feather: float = 1.5  # px (at ``size``) of the blend outside the erased region
    # The person's own texture: this many of the avatar's frames, retrieved by mouth expression
    # and pose and warped into the frame (``retrieval.py``, ``warp.py``), as 4 more input planes
    # each (RGB, validity x weight). 0: none (the models trained before it).
    retrieved: int = 0
    # Native resolution where it matters: (height, width) > 0 synthesizes a mouth-centred window
    # of that many pixels at the crop's own resolution (``work_size`` unused) while the rest
    # passes through. (0, 0): the whole crop at ``work_size``.
    native_window: tuple[int, int] = (0, 0)
    # Copy the retrieved pixels instead of redrawing them: the head predicts, per pixel, a
    # softmax over its own colour and each warped frame (``blend_texture``), so real teeth and
    # lip texture reach the output untouched; the warped frames are first colour-matched to the
    # target's lighting (``Conditioner.texture_planes``). False: they are only input planes.
    texture_copy: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> RendererConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["channels"] = tuple(values.get("channels", cls.channels))
        values["native_window"] = tuple(values.get("native_window", cls.native_window))
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def input_planes(self) -> int:
        return IMAGE_INPUTS + RETRIEVED_PLANES * self.retrieved

    @property
    def native(self) -> bool:
        return self.native_window[0] > 0

    @property
    def network_size(self) -> tuple[int, int]:
        """(height, width) of the images the network sees."""
        return tuple(self.native_window) if self.native else (self.work_size, self.work_size)

    @property
    def context_frames(self) -> int:
        """Frames each side that an output frame depends on through the transformer."""
        return self.temporal_radius * self.temporal_layers if self.temporal else 0


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with a residual path."""

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm1 = _norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm2 = _norm(c_out, groups)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.silu(h + self.skip(x))


class AudioFusion(nn.Module):
    """AFM: audio window (N, 2K+1, D) -> FiLM scale and shift for the image features."""

    def __init__(self, config: RendererConfig, channels: int) -> None:
        super().__init__()
        hidden = config.audio_hidden
        self.encoder = nn.Sequential(
            nn.Conv1d(config.audio_features, hidden, 5, padding=2),
            nn.SiLU(),
            nn.Conv1d(hidden, hidden, 5, stride=2, padding=2),
            nn.SiLU(),
            nn.Conv1d(hidden, hidden, 5, stride=2, padding=2),
            nn.SiLU(),
        )
        self.film = nn.Linear(hidden, 2 * channels)
        # Start as the identity, so the renderer trains first on what the images explain.
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, features: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        embedding = self.encoder(audio.transpose(1, 2)).mean(-1)  # (N, hidden)
        scale, shift = self.film(embedding).chunk(2, dim=-1)
        return features * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


class TemporalBlock(nn.Module):
    """Pre-norm transformer layer across frames at every spatial location, banded attention."""

    def __init__(self, channels: int, heads: int, radius: int) -> None:
        super().__init__()
        self.heads, self.radius = heads, radius
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels))
        self.bias = nn.Parameter(torch.zeros(heads, 2 * radius + 1))  # per head, per frame offset
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, T, C) tokens of S locations over T frames."""
        s, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(s, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        offset = torch.arange(t, device=x.device)[None, :] - torch.arange(t, device=x.device)[:, None]
        inside = offset.abs() <= self.radius
        bias = self.bias[:, (offset.clamp(-self.radius, self.radius) + self.radius)]  # (H, T, T)
        bias = bias.masked_fill(~inside, float("-inf")).to(q.dtype)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])
        x = x + self.proj(attended.transpose(1, 2).reshape(s, t, c))
        return x + self.mlp(self.norm2(x))


class NeuralRenderer(nn.Module):
    def __init__(self, config: RendererConfig) -> None:
        super().__init__()
        self.config = config
        ch, groups = config.channels, config.groups
        # Space-to-depth in and depth-to-space out: the full-resolution level works on 2x2 pixel
        # cells, a quarter of the cost of full-resolution convolutions for the same receptive field.
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), ConvBlock(4 * config.input_planes, ch[0], groups))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch[i], ch[i + 1], 4, stride=2, padding=1), ConvBlock(ch[i + 1], ch[i + 1], groups))
            for i in range(len(ch) - 1)
        )
        self.fusion = AudioFusion(config, ch[-1]) if config.audio_fusion else None
        self.temporal = (
            nn.ModuleList(
                TemporalBlock(ch[-1], config.temporal_heads, config.temporal_radius)
                for _ in range(config.temporal_layers)
            )
            if config.temporal
            else None
        )
        self.up = nn.ModuleList(ConvBlock(ch[i + 1] + ch[i], ch[i], groups) for i in reversed(range(len(ch) - 1)))
        # Per output pixel: RGB, and with ``texture_copy`` one blend logit for that RGB and one
        # per retrieved frame.
        self.copies = config.retrieved if config.texture_copy else 0
        outputs = 3 + (1 + self.copies if self.copies else 0)
        self.head = nn.Sequential(nn.Conv2d(ch[0], 4 * outputs, 3, padding=1), nn.PixelShuffle(2))

    # The three stages are public so that windowed inference can run the per-frame parts once
    # per frame and only the temporal module over overlapping windows.
    def encode(self, inputs: torch.Tensor, audio: torch.Tensor | None) -> list[torch.Tensor]:
        """inputs (N, planes, S, S) at ``network_size``; audio (N, 2K+1, D) -> skips, bottleneck last."""
        skips = [self.stem(inputs)]
        for down in self.down:
            skips.append(down(skips[-1]))
        if self.fusion is not None:
            skips[-1] = self.fusion(skips[-1], audio)
        return skips

    def mix(self, bottleneck: torch.Tensor, frames: int) -> torch.Tensor:
        """Temporal module over (B * frames, C, h, w) consecutive frames of B sequences."""
        if self.temporal is None:
            return bottleneck
        n, c, h, w = bottleneck.shape
        tokens = bottleneck.view(n // frames, frames, c, h * w).permute(0, 3, 1, 2).reshape(-1, frames, c)
        for block in self.temporal:
            tokens = block(tokens)
        return tokens.view(n // frames, h * w, frames, c).permute(0, 2, 3, 1).reshape(n, c, h, w)

    def decode(self, skips: list[torch.Tensor], texture: torch.Tensor | None = None) -> torch.Tensor:
        """Skips -> RGB in [0, 1]; ``texture`` (N, 4k, S, S): the input's retrieved planes, which
        a ``texture_copy`` renderer blends into its output."""
        x = skips[-1]
        for up, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = up(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], dim=1))
        out = self.head(x)
        if not self.copies:
            return torch.sigmoid(out)
        if texture is None:
            raise ValueError("this renderer copies retrieved texture: decode needs the texture planes")
        return blend_texture(torch.sigmoid(out[:, :3]), out[:, 3:], texture.to(out.dtype))

    def forward(self, inputs: torch.Tensor, audio: torch.Tensor | None, frames: int) -> torch.Tensor:
        """(B * frames, planes, S, S) -> (B * frames, 3, S, S) RGB in [0, 1] at ``network_size``."""
        skips = self.encode(inputs, audio)
        skips[-1] = self.mix(skips[-1], frames)
        return self.decode(skips, inputs[:, IMAGE_INPUTS:] if self.copies else None)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def blend_texture(colour: torch.Tensor, logits: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
    """Per pixel, a softmax mix of the network's ``colour`` (N, 3, H, W) and the k warped frames
    of ``texture`` (N, 4k, H, W: RGB and validity x retrieval weight per frame), by ``logits``
    (N, 1 + k, H, W). A frame's logit is offset by the log of its validity x weight: an invalid
    pixel (weight 0) is never copied, whatever the logits, and a source fading in after a retrieval jump (its
    weight ramping up) gains its share gradually instead of popping."""
    k = texture.shape[1] // 4
    frames = texture.view(len(texture), k, 4, *texture.shape[-2:])
    weight = frames[:, :, 3]  # (N, k, H, W)
    copies = torch.where(weight > 0, logits[:, 1:] + torch.log(weight.clamp_min(1e-6)), float("-inf"))
    weights = torch.softmax(torch.cat([logits[:, :1], copies], dim=1), dim=1)
    return weights[:, :1] * colour + (weights[:, 1:, None] * frames[:, :, :3]).sum(1)


def feather_mask(erased: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, H, W) erased region -> blend weight: 1 inside, a Gaussian fall-off just outside."""
    if sigma <= 0:
        return erased.float()
    radius = max(1, int(round(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=erased.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(erased.dtype if erased.is_floating_point() else torch.float32)
    x = erased.float()[:, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return torch.maximum(x[:, 0], erased.float())


def composite(generated: torch.Tensor, background: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Blend (N, 3, H, W) generated frames into the real ones with (N, H, W) weights."""
    a = alpha[:, None].to(generated.dtype)
    return a * generated + (1 - a) * background


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN (pix2pix): frame + shape pass -> a realism score per 70 px patch."""

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(6, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = channels
        for _ in range(1, layers):
            blocks += [nn.Conv2d(c, c * 2, 4, stride=2, padding=1), _norm(c * 2, 8), nn.LeakyReLU(0.2)]
            c *= 2
        blocks += [nn.Conv2d(c, 1, 4, padding=1)]
        self.net = nn.Sequential(*blocks)

    def forward(self, frames: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([frames * 2 - 1, shape * 2 - 1], dim=1))


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM map (N, H, W) of (N, C, H, W) images in [0, 1] (Wang et al. 2004, Gaussian
    window, mean over channels); valid-region convolution, so the map is window - 1 smaller."""
    offsets = torch.arange(window, dtype=x.dtype, device=x.device) - window // 2
    g = torch.exp(-0.5 * (offsets / sigma) ** 2)
    g = g / g.sum()
    channels = x.shape[1]
    kx = g.view(1, 1, 1, -1).expand(channels, 1, 1, window)
    ky = g.view(1, 1, -1, 1).expand(channels, 1, window, 1)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, kx, groups=channels), ky, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    value = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return value.mean(1)


def save_module(module: nn.Module, path: Path, kind: str, config: dict, extra: dict | None = None) -> None:
    """Weights to ``path`` (.safetensors) and the JSON config that rebuilds the module beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().float().cpu().contiguous() for name, t in module.state_dict().items()}
    with atomic_output(path) as partial:
        save_file(tensors, str(partial), metadata={"format": kind})
    meta = {"kind": kind, "architecture": config, **(extra or {})}
    with atomic_output(path.with_suffix(".json")) as partial:
        partial.write_text(json.dumps(meta, indent=2) + "\n")


def load_renderer(path: Path, device: str | torch.device = "cpu") -> NeuralRenderer:
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("kind") != "steadytalk.renderer":
        raise ValueError(f"{path} is not a Steady Talk renderer ({meta.get('kind')})")
    net = NeuralRenderer(RendererConfig.from_dict(meta["architecture"]))
    net.load_state_dict(load_file(str(path)))
    return net.to(device).eval()
