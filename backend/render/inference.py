"""Inference with a trained avatar: frames in, frames out, for the server and batch renders.

The renderer's per-frame parts (conditioning, encoder with audio fusion, decoder) run once per
frame; only its temporal module looks across frames, and it looks at most ``context`` frames
each side (banded attention, ``RendererConfig.context_frames``). So a sequence of any length is
rendered in windows of 12 output frames, each window's temporal module run over the window plus
``context`` frames of overlap on each side: every frame gets exactly what one long window over the
whole sequence would give it (no seams at window borders), while memory stays bounded.

``AvatarRenderer.stream`` does this on an iterator of frames and yields each output frame as
soon as its right-hand context has arrived: latency is bounded by ``chunk + context`` frames
(``chunk=1`` gives ``context`` frames, 0.24 s at 25 fps).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from steadytalk_shared.smoothing import AdaptiveSmoother

from ..device import autocast, pick_device
from .data import AvatarFrames, Conditioner, Conditioning, Normalizer, audio_windows, to_tensor, to_uint8
from .network import IMAGE_INPUTS, NeuralRenderer, composite, feather_mask, load_renderer
from .presets import MODEL_DIR
from .retrieval import RetrievalConfig, RetrievalState
from .s2a_person import S2AModel
from .texture import RetrievedBatch, TextureSource

WINDOW = 12


@dataclass
class FrameInput:
    """One frame to render: the wanted expression and pose, the background and its own mouth."""

    coefficients: np.ndarray  # (33,)
    matrix: np.ndarray  # (4, 4) model metres -> crop pixels
    background: np.ndarray  # (S, S, 3) uint8
    background_mouth: np.ndarray  # (S, S) bool
    audio: np.ndarray  # (2K + 1, D) normalized S2A features around the frame
    shape: np.ndarray | None = None  # (S, S, 3) uint8 shape pass drawn by the client, if any


@dataclass
class _Encoded:
    skips: list[torch.Tensor]  # each (1, C, h, w)
    background: torch.Tensor  # (1, 3, S, S)
    alpha: torch.Tensor  # (1, S, S)
    offset: torch.Tensor | None = None  # (2,) the mouth window's top-left at native resolution
    texture: torch.Tensor | None = None  # (1, 4k, h, w) retrieved planes a copying renderer blends in


class AvatarRenderer:
    """A trained avatar's renderer (and its smoother and audio-to-expression model when present)."""

    def __init__(self, avatar: Path, model_dir: Path | None = None, device: str | None = None) -> None:
        self.avatar = Path(avatar)
        self.model_dir = Path(model_dir) if model_dir else self.avatar / MODEL_DIR
        self.device = pick_device(device)
        weights = self.model_dir / "renderer.safetensors"
        if not weights.exists():
            from .data import AvatarError

            raise AvatarError(
                f"{self.avatar} has no trained renderer ({weights} is missing).",
                f"Train it first: steadytalk train {self.avatar} --preset tiny (CPU) or standard (GPU).",
            )
        meta = json.loads(weights.with_suffix(".json").read_text())
        self.net: NeuralRenderer = load_renderer(weights, self.device)
        self.config = self.net.config
        self.normalizer = Normalizer.from_dict(meta["normalizer"])
        self.fps = float(meta.get("fps", 25.0))
        self.data = AvatarFrames.load(self.avatar, self.config.size, frames=False)
        self.conditioner = self._conditioner(self.data.rig, meta.get("erase_eyes", True))
        # The person's own texture: the avatar's training frames, retrieved and warped per frame.
        self.texture: TextureSource | None = None
        self.retrieval: RetrievalState | None = None  # the choice along the current sequence
        if self.config.retrieved:
            texture = meta["texture"]
            frames = AvatarFrames.load(self.avatar, self.config.size, max_frames=texture["frames"])
            config = RetrievalConfig.from_dict(texture["config"])
            self.texture = TextureSource.from_avatar(
                frames, self.conditioner.screen, texture["frames"], config, self.device
            )
        smoother_path = self.model_dir / "smoother.safetensors"
        self.smoother = AdaptiveSmoother.load(smoother_path) if smoother_path.exists() else None
        s2a_path = self.model_dir / "s2a.safetensors"
        self.s2a = S2AModel.load(s2a_path) if s2a_path.exists() else None

    @property
    def context(self) -> int:
        return self.config.context_frames

    def audio_for(self, features: np.ndarray, frames: int, fps: float) -> np.ndarray:
        """(N, D) raw S2A features at 100 Hz -> (frames, 2K + 1, D) normalized windows."""
        return audio_windows(self.normalizer(features), np.arange(frames) / fps, self.config.audio_context)

    @torch.no_grad()
    def _encode(self, batch: list[FrameInput]) -> list[_Encoded]:
        dev = self.device
        coefficients = torch.as_tensor(np.stack([f.coefficients for f in batch]), dtype=torch.float32, device=dev)
        matrices = torch.as_tensor(np.stack([f.matrix for f in batch]), dtype=torch.float32, device=dev)
        background = to_tensor(np.stack([f.background for f in batch]), dev)
        mouth = torch.as_tensor(np.stack([f.background_mouth for f in batch]), device=dev)
        shapes = [f.shape for f in batch]
        if any(s is None for s in shapes) and any(s is not None for s in shapes):
            raise ValueError("a batch mixes client-drawn shape passes with frames that have none")
        cond = self.conditioner(
            coefficients,
            matrices,
            background,
            mouth,
            shape_images=None if shapes[0] is None else np.stack(shapes),
            retrieved=self._retrieve(batch),
        )
        audio = torch.as_tensor(np.stack([f.audio for f in batch]), dtype=torch.float32, device=dev)
        with autocast(dev):
            skips = self.net.encode(cond.inputs, audio if self.config.audio_fusion else None)
        alpha = feather_mask(cond.erased, self.config.feather)
        offsets = cond.offsets if cond.offsets is not None else [None] * len(batch)
        texture = cond.inputs[:, IMAGE_INPUTS:] if self.net.copies else None
        return [
            _Encoded(
                [s[i : i + 1] for s in skips],
                background[i : i + 1],
                alpha[i : i + 1],
                offsets[i],
                None if texture is None else texture[i : i + 1],
            )
            for i in range(len(batch))
        ]

    def _retrieve(self, batch: list[FrameInput]) -> RetrievedBatch | None:
        """The avatar's frames for these, chosen causally along the sequence (``retrieval``)."""
        if self.texture is None:
            return None
        if self.retrieval is None:
            self.retrieval = self.texture.state()
        queries = self.texture.query(np.stack([f.coefficients for f in batch]), np.stack([f.matrix for f in batch]))
        chosen = [self.retrieval.step(q, fps=self.fps) for q in queries]
        return self.texture.gather(np.stack([c[0] for c in chosen]), np.stack([c[1] for c in chosen]), self.device)

    @torch.no_grad()
    def _decode(self, encoded: list[_Encoded], first: int, count: int) -> np.ndarray:
        """Mix ``encoded`` (all of it: the window and its context) and decode frames
        ``first .. first + count`` of it."""
        bottleneck = torch.cat([e.skips[-1] for e in encoded])
        with autocast(self.device):
            mixed = self.net.mix(bottleneck, len(encoded))[first : first + count]
            chosen = encoded[first : first + count]
            skips = [torch.cat([e.skips[level] for e in chosen]) for level in range(len(chosen[0].skips) - 1)]
            texture = None if chosen[0].texture is None else torch.cat([e.texture for e in chosen])
            generated = self.net.decode([*skips, mixed], texture).float()
        background = torch.cat([e.background for e in chosen])
        alpha = torch.cat([e.alpha for e in chosen])
        offsets = None if chosen[0].offset is None else torch.stack([e.offset for e in chosen])
        generated = Conditioning(None, background, alpha, None, offsets).from_network(generated)
        return to_uint8(composite(generated, background, alpha))

    def stream(self, frames: Iterable[FrameInput], chunk: int = WINDOW) -> Iterator[np.ndarray]:
        """Render frames as they come: yields (S, S, 3) uint8 frames in order."""
        self.retrieval = None  # a new sequence: the texture's choice starts afresh
        context = self.context
        buffer: deque[_Encoded] = deque()  # frames from (next output - context) on
        pending: list[FrameInput] = []
        next_out = 0  # index of the next frame to yield
        buffer_start = 0  # sequence index of buffer[0]

        def flush(final: bool) -> Iterator[np.ndarray]:
            nonlocal next_out, buffer_start
            while True:
                available = buffer_start + len(buffer)
                count = min(chunk, available - next_out)
                if (
                    count <= 0
                    or (not final and available < next_out + count + context)
                    or (not final and count < chunk)
                ):
                    return
                lo = max(buffer_start, next_out - context)
                hi = min(available, next_out + count + context)
                window = list(buffer)[lo - buffer_start : hi - buffer_start]
                yield from self._decode(window, next_out - lo, count)
                next_out += count
                while buffer_start < next_out - context:
                    buffer.popleft()
                    buffer_start += 1

        for frame in frames:
            pending.append(frame)
            if len(pending) == WINDOW or chunk < WINDOW:
                buffer.extend(self._encode(pending))
                pending.clear()
                yield from flush(final=False)
        if pending:
            buffer.extend(self._encode(pending))
        yield from flush(final=True)

    def render_span(self, frames: list[FrameInput], first: int, count: int) -> np.ndarray:
        """Frames ``first .. first + count`` of ``frames``, the others serving as temporal
        context: a client sends a run of frames with up to ``context`` frames on each side,
        and gets exactly what one long window over the whole sequence gives them (with the
        person's texture, whose choice runs along the sequence, the span starts it afresh)."""
        self.retrieval = None
        encoded = []
        for i in range(0, len(frames), WINDOW):
            encoded += self._encode(frames[i : i + WINDOW])
        return self._decode(encoded, first, count)

    @torch.no_grad()
    def render_whole(self, frames: list[FrameInput]) -> np.ndarray:
        """One long window over the whole sequence (reference for the windowed path; memory
        grows with the length, so only for short sequences and tests)."""
        return self.render_span(frames, 0, len(frames))

    def smooth(self, coefficients: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """The avatar's jointly trained smoother (numpy, the same the add-on runs)."""
        if self.smoother is None or strength == 0:
            return coefficients
        return self.smoother.smooth(coefficients, strength)[0].astype(np.float32)

    def use_clip(self, clip: AvatarFrames) -> None:
        """Render over another video of the same person (a held-out clip): draw its shape passes
        with that clip's own fit of the identity."""
        self.conditioner = self._conditioner(clip.rig, self.conditioner.erase_eyes)

    def _conditioner(self, rig, erase_eyes: bool) -> Conditioner:
        config = self.config
        return Conditioner(
            rig,
            config.size,
            config.work_size,
            self.device,
            erase_eyes=erase_eyes,
            native_window=config.native_window,
            match_texture=config.texture_copy,
        )

    def frame_inputs(
        self,
        coefficients: np.ndarray,
        audio: np.ndarray,
        source: AvatarFrames,
        index: np.ndarray,
        matrices: np.ndarray | None = None,
    ) -> Iterator[FrameInput]:
        """Inputs for a sequence driven by ``coefficients`` (T, 33) over the frames ``index`` (T,)
        of ``source`` (an avatar or a prepared clip, frames loaded): its backgrounds, mouth regions
        and, unless ``matrices`` (T, 4, 4) is given, its head poses."""
        for t, i in enumerate(index):
            yield FrameInput(
                coefficients=coefficients[t],
                matrix=source.matrices[i] if matrices is None else matrices[t],
                background=source.frames[i],
                background_mouth=source.mouth[i],
                audio=audio[t],
            )
