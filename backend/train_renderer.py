"""Training the avatar's neural renderer (and, in its last stage, the adaptive smoother with it).

StableFace's schedule: the renderer alone (100 epochs at lr 1e-4 by default), then renderer and
adaptive smoother together (20 epochs at lr 1e-6); the smoother's weights are then exported in
the numpy format of ``steadytalk_shared.smoothing`` so the Blender add-on smooths this avatar's
curves with them. An epoch is one pass over the training frames in windows of T = 12.

Losses (on the composited frame, over the synthesized region): L1, 1 - SSIM, the lip loss of
Diffused Heads (L1 again, weighted on the mouth region), a temporal term (frame-to-frame
differences match the real video's) and a least-squares adversarial term from a patch
discriminator trained from scratch.

Everything lives in ``AVATAR_DIR/model``: weights as safetensors with JSON configs, the
resumable training state (weights, optimizers, generator state; no pickle), ``train_log.tsv``
and ``losses.png``. Mixed precision (bf16) on CUDA; float32 on the CPU.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from steadytalk_shared.smoothing import DEFAULT_WEIGHTS, RADIUS_PER_SIGMA

from .atomic import atomic_output
from .augment import ErosionConfig
from .errors import SteadyTalkError
from .render_data import AvatarFrames, Conditioner, Normalizer, audio_windows, to_tensor
from .renderer import (
    NeuralRenderer,
    PatchDiscriminator,
    RendererConfig,
    composite,
    feather_mask,
    save_module,
    ssim,
)
from .smoother import gaussian_smooth, load_smoother, save_smoother

MODEL_DIR = "model"
LOG_COLUMNS = ("stage", "epoch", "step", "seconds", "l1", "ssim", "lip", "temporal", "adversarial", "total", "val_l1")


@dataclass(frozen=True)
class LossWeights:
    l1: float = 1.0
    ssim: float = 0.5
    lip: float = 1.0  # extra L1 on the mouth region (Diffused Heads' lip loss)
    temporal: float = 0.5
    adversarial: float = 0.01


@dataclass(frozen=True)
class TrainPreset:
    name: str
    renderer: RendererConfig
    epochs: int = 100  # renderer alone
    joint_epochs: int = 20  # renderer + adaptive smoother
    lr: float = 1e-4
    joint_lr: float = 1e-6
    window: int = 12  # frames per training window (the transformer's T)
    windows_per_step: int = 4
    max_seconds: float | None = None  # use only the first seconds of the avatar (CPU presets)
    validation_share: float = 0.05  # the last frames, never trained on
    augmented_erosion: bool = True
    erase_eyes: bool = True
    adversarial_from_epoch: int = 1
    losses: LossWeights = field(default_factory=LossWeights)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainPreset:
        data = dict(data)
        data["renderer"] = RendererConfig.from_dict(data["renderer"])
        data["losses"] = LossWeights(**data["losses"])
        return cls(**data)


PRESETS: dict[str, TrainPreset] = {
    # Finishes on a 2-core CPU in minutes: half resolution inside the network, one minute of video.
    "tiny": TrainPreset(
        "tiny",
        RendererConfig(work_size=128, channels=(16, 32, 64, 96, 128), audio_hidden=64, temporal_heads=4),
        epochs=8,
        joint_epochs=2,
        lr=4e-4,
        joint_lr=1e-6,
        windows_per_step=1,
        max_seconds=60.0,
    ),
    # One GPU: StableFace's schedule at 256x256.
    "standard": TrainPreset("standard", RendererConfig()),
    # 512x512 crops (prepare with --size 512).
    "high": TrainPreset(
        "high",
        RendererConfig(size=512, work_size=512, channels=(32, 64, 128, 192, 256, 384)),
        windows_per_step=2,
    ),
}


class TrainingError(SteadyTalkError):
    pass


# Components StableFace ablates that need their own training run (the smoother is ablated at
# inference: the same renderer driven by unsmoothed coefficients).
ABLATIONS: dict[str, dict] = {
    "full": {},  # the reference for the others when they are trained on a shorter schedule
    "no_erosion": {"augmented_erosion": False},
    "no_transformer": {"renderer": {"temporal": False}},
    "no_audio_fusion": {"renderer": {"audio_fusion": False}},
}


Progress = Callable[[str, int, int, dict], None]


def _flatten_optimizer(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"{prefix}.{index}.{key}"] = torch.as_tensor(value).detach().float().cpu().contiguous()
    return tensors, {"param_groups": state["param_groups"]}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, prefix: str, meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class RendererTrainer:
    """Trains one avatar with one preset; ``run`` resumes from the last finished epoch."""

    def __init__(
        self,
        avatar: Path,
        preset: TrainPreset,
        device: str | None = None,
        progress: Progress | None = None,
        log: Callable[[str], None] = print,
        frames: AvatarFrames | None = None,
        out: Path | None = None,
    ) -> None:
        self.avatar = Path(avatar)
        self.preset = preset
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.progress = progress or (lambda *args: None)
        self.log = log
        self.out = Path(out) if out is not None else self.avatar / MODEL_DIR
        config = preset.renderer
        if frames is None:
            probe = AvatarFrames.load(self.avatar, config.size, frames=False)
            limit = None if preset.max_seconds is None else int(round(preset.max_seconds * probe.fps))
            frames = AvatarFrames.load(self.avatar, config.size, max_frames=limit)
        self.data = frames
        total = self.data.num_frames
        self.smoother = load_smoother(DEFAULT_WEIGHTS).to(self.device)
        # Context each side of a window for the smoother: its widest kernel's reach.
        self.smoother_radius = int(math.ceil(RADIUS_PER_SIGMA * self.smoother.config.sigma_max))
        # At least one window is held back, however short the avatar.
        self.validation_start = min(int(total * (1 - preset.validation_share)), total - preset.window)
        needed = 3 * preset.window + 2 * self.smoother_radius  # a training window with context + a held-back one
        if total < needed:
            raise TrainingError(
                f"{self.avatar} has {total} frames; training needs at least {needed}.",
                "Prepare a longer video (a minute or more makes a useful avatar).",
            )
        self.normalizer = Normalizer.fit(self.data.features)
        self.features = self.normalizer(self.data.features)
        self.conditioner = Conditioner(
            self.data.rig,
            config.size,
            config.work_size,
            self.device,
            ErosionConfig(),
            erase_eyes=preset.erase_eyes,
        )
        torch.manual_seed(preset.seed)
        self.net = NeuralRenderer(config).to(self.device)
        self.disc = PatchDiscriminator(channels=32 if config.work_size <= 128 else 64).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=preset.lr, betas=(0.5, 0.999))
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=preset.lr, betas=(0.5, 0.999))
        self.opt_joint = torch.optim.Adam(
            [*self.net.parameters(), *self.smoother.parameters()], lr=preset.joint_lr, betas=(0.5, 0.999)
        )
        self.generator = torch.Generator().manual_seed(preset.seed)
        self.frames_gpu = None
        self.epoch = 0  # epochs finished, both stages counted
        self.step = 0
        self.seconds = 0.0

    # ----- data ---------------------------------------------------------------------------
    def _window_starts(self, count: int) -> torch.Tensor:
        low = self.smoother_radius
        high = self.validation_start - self.preset.window - self.smoother_radius
        return torch.randint(low, high + 1, (count,), generator=self.generator)

    def _batch(self, starts: torch.Tensor) -> dict[str, torch.Tensor]:
        t = self.preset.window
        index = (starts[:, None] + torch.arange(t)[None]).flatten().numpy()
        times = index / self.data.fps
        audio = audio_windows(self.features, times, self.preset.renderer.audio_context)
        return {
            "index": torch.as_tensor(index),
            "frames": to_tensor(self.data.frames[index], self.device),
            "coefficients": torch.as_tensor(self.data.coefficients[index], device=self.device),
            "matrices": torch.as_tensor(self.data.matrices[index], device=self.device),
            "mouth": torch.as_tensor(self.data.mouth[index], device=self.device),
            "audio": torch.as_tensor(audio, device=self.device),
        }

    def _smoothed(self, starts: torch.Tensor) -> torch.Tensor:
        """The joint stage: the window's coefficients through the adaptive smoother, with enough
        context on both sides that the window sees what a whole sequence would give."""
        r, t = self.smoother_radius, self.preset.window
        index = (starts[:, None] + torch.arange(-r, t + r)[None]).numpy()
        curves = torch.as_tensor(self.data.coefficients[index], device=self.device)  # (B, T + 2R, C)
        sigma = self.smoother(curves)
        return gaussian_smooth(curves, sigma, radius=r)[:, r : r + t].reshape(-1, curves.shape[-1])

    # ----- one step -----------------------------------------------------------------------
    def _forward(self, batch: dict, coefficients: torch.Tensor, augment: bool):
        config = self.preset.renderer
        cond = self.conditioner(
            coefficients, batch["matrices"], batch["frames"], batch["mouth"], augment=augment, generator=self.generator
        )
        target = batch["frames"]
        if config.work_size != config.size:
            target = F.interpolate(target, size=(config.work_size,) * 2, mode="area")
            erased = F.interpolate(cond.erased[:, None], size=(config.work_size,) * 2, mode="area")[:, 0]
            mouth = F.interpolate(batch["mouth"][:, None].float(), size=(config.work_size,) * 2, mode="area")[:, 0]
            shape = F.interpolate(cond.shape, size=(config.work_size,) * 2, mode="area")
        else:
            erased, mouth, shape = cond.erased, batch["mouth"].float(), cond.shape
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            generated = self.net(cond.inputs, batch["audio"] if config.audio_fusion else None, self.preset.window)
        generated = generated.float()
        scale = config.work_size / config.size
        alpha = feather_mask(erased, config.feather * scale)
        output = composite(generated, target, alpha)
        return output, target, alpha, mouth, shape

    def _losses(self, output, target, alpha, mouth, shape, adversarial: bool) -> dict[str, torch.Tensor]:
        w = self.preset.losses
        region = alpha.sum().clamp_min(1.0)
        error = (output - target).abs().mean(1)  # (N, H, W)
        losses = {
            "l1": (error * alpha).sum() / region,
            "lip": (error * mouth * alpha).sum() / (mouth * alpha).sum().clamp_min(1.0),
        }
        pad = 5  # the SSIM map is 10 px smaller (11 px window)
        inner = alpha[:, pad:-pad, pad:-pad]
        losses["ssim"] = ((1 - ssim(output, target)) * inner).sum() / inner.sum().clamp_min(1.0)
        t = self.preset.window
        seq = output.view(-1, t, *output.shape[1:])
        real = target.view(-1, t, *target.shape[1:])
        diff = ((seq[:, 1:] - seq[:, :-1]) - (real[:, 1:] - real[:, :-1])).abs().mean(2)
        band = torch.maximum(alpha.view(-1, t, *alpha.shape[1:])[:, 1:], alpha.view(-1, t, *alpha.shape[1:])[:, :-1])
        losses["temporal"] = (diff * band).sum() / band.sum().clamp_min(1.0)
        if adversarial:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                score = self.disc(output, shape).float()
            losses["adversarial"] = ((score - 1) ** 2).mean()
        else:
            losses["adversarial"] = torch.zeros((), device=output.device)
        losses["total"] = sum(
            getattr(w, name) * losses[name] for name in ("l1", "ssim", "lip", "temporal", "adversarial")
        )
        return losses

    def _discriminator_step(self, output, target, shape) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            shape = shape.detach()
            fake = self.disc(output.detach(), shape).float()
            real = self.disc(target, shape).float()
        loss = 0.5 * (((real - 1) ** 2).mean() + (fake**2).mean())
        self.opt_disc.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_disc.step()

    def train_step(self, joint: bool) -> dict[str, float]:
        self.net.train()
        starts = self._window_starts(self.preset.windows_per_step)
        batch = self._batch(starts)
        coefficients = self._smoothed(starts) if joint else batch["coefficients"]
        output, target, alpha, mouth, shape = self._forward(batch, coefficients, self.preset.augmented_erosion)
        adversarial = self.preset.losses.adversarial > 0 and self.epoch >= self.preset.adversarial_from_epoch
        losses = self._losses(output, target, alpha, mouth, shape, adversarial)
        optimizer = self.opt_joint if joint else self.opt
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        if adversarial:
            self._discriminator_step(output, target, shape)
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def validation_l1(self, windows: int = 4) -> float:
        """L1 over the synthesized region on the held-back frames, no augmentation."""
        self.net.eval()
        total = self.data.num_frames
        span = total - self.validation_start - self.preset.window
        starts = torch.linspace(self.validation_start, self.validation_start + max(span, 0), windows).long()
        values = []
        for start in starts:
            batch = self._batch(start[None])
            output, target, alpha, *_ = self._forward(batch, batch["coefficients"], augment=False)
            values.append(float(((output - target).abs().mean(1) * alpha).sum() / alpha.sum().clamp_min(1.0)))
        return float(np.mean(values))

    # ----- state --------------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        return self.preset.epochs + self.preset.joint_epochs

    def steps_per_epoch(self) -> int:
        frames = self.validation_start - 2 * self.smoother_radius
        return max(1, frames // (self.preset.window * self.preset.windows_per_step))

    def save_state(self) -> None:
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors |= {f"disc.{k}": v for k, v in self.disc.state_dict().items()}
        tensors |= {f"smoother.{k}": v for k, v in self.smoother.state_dict().items()}
        meta = {}
        for name, optimizer in (("opt", self.opt), ("opt_disc", self.opt_disc), ("opt_joint", self.opt_joint)):
            flat, groups = _flatten_optimizer(optimizer, name)
            tensors |= flat
            meta[name] = groups
        tensors["generator"] = self.generator.get_state()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        self.out.mkdir(parents=True, exist_ok=True)
        partial = self.out / "train_state.safetensors.partial"
        save_file(tensors, str(partial))
        state = {
            "preset": self.preset.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "seconds": self.seconds,
            "optimizers": meta,
        }
        json_partial = self.out / "train_state.json.partial"
        json_partial.write_text(json.dumps(state, indent=1) + "\n")
        partial.replace(self.out / "train_state.safetensors")
        json_partial.replace(self.out / "train_state.json")

    def load_state(self) -> bool:
        """Resume from ``model/train_state``; False when there is none. A state of another
        preset is an error (the user chooses: same preset, or --restart)."""
        path = self.out / "train_state.json"
        if not path.exists() or not (self.out / "train_state.safetensors").exists():
            return False
        state = json.loads(path.read_text())
        if state["preset"] != json.loads(json.dumps(self.preset.to_dict())):
            raise TrainingError(
                f"{self.out} holds a training run with other settings (preset {state['preset']['name']}). "
                "Run again with that preset to resume it, or pass --restart to start over."
            )
        tensors = load_file(str(self.out / "train_state.safetensors"))
        for prefix, module in (("net", self.net), ("disc", self.disc), ("smoother", self.smoother)):
            module.load_state_dict({k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
        for name, optimizer in (("opt", self.opt), ("opt_disc", self.opt_disc), ("opt_joint", self.opt_joint)):
            _restore_optimizer(optimizer, tensors, name, state["optimizers"][name])
        self.generator.set_state(tensors["generator"])
        self.epoch, self.step, self.seconds = state["epoch"], state["step"], state["seconds"]
        return True

    def export(self) -> None:
        """The products: renderer (+ normalizer and erosion settings in its JSON) and the avatar's
        smoother in the numpy format of ``steadytalk_shared.smoothing``."""
        extra = {
            "normalizer": self.normalizer.to_dict(),
            "erase_eyes": self.preset.erase_eyes,
            "fps": self.data.fps,
            "training": {
                "preset": self.preset.name,
                "epochs": self.epoch,
                "steps": self.step,
                "seconds": round(self.seconds, 1),
                "frames": int(self.validation_start),
                "device": str(self.device),
            },
        }
        save_module(
            self.net, self.out / "renderer.safetensors", "steadytalk.renderer", self.preset.renderer.to_dict(), extra
        )
        save_smoother(
            self.smoother.cpu(),
            self.out / "smoother.safetensors",
            {"jointly_with_renderer": True, "avatar": str(self.avatar), "joint_epochs": self.preset.joint_epochs},
        )
        self.smoother.to(self.device)

    # ----- the run ------------------------------------------------------------------------
    def _log_row(self, stage: str, means: dict[str, float], val: float) -> None:
        path = self.out / "train_log.tsv"
        if not path.exists():
            path.write_text("\t".join(LOG_COLUMNS) + "\n")
        row = {"stage": stage, "epoch": self.epoch, "step": self.step, "seconds": round(self.seconds, 1), "val_l1": val}
        row |= means
        with path.open("a") as handle:
            handle.write("\t".join(_fmt(row.get(c, "")) for c in LOG_COLUMNS) + "\n")

    def run(self, restart: bool = False) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        if restart:
            for name in ("train_state.safetensors", "train_state.json", "train_log.tsv"):
                (self.out / name).unlink(missing_ok=True)
        elif self.load_state():
            self.log(f"Resuming {self.preset.name} at epoch {self.epoch}/{self.total_epochs}.")
        steps = self.steps_per_epoch()
        total_steps = steps * self.total_epochs
        while self.epoch < self.total_epochs:
            joint = self.epoch >= self.preset.epochs
            stage = "joint" if joint else "renderer"
            sums: dict[str, float] = {}
            start = time.perf_counter()
            for i in range(steps):
                losses = self.train_step(joint)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                done = self.epoch * steps + i + 1
                self.progress(stage, done, total_steps, losses)
            self.seconds += time.perf_counter() - start
            self.epoch += 1
            val = self.validation_l1()
            self._log_row(stage, {k: v / steps for k, v in sums.items()}, val)
            self.save_state()
        self.export()
        plot_losses(self.out / "train_log.tsv", self.out / "losses.png")
        return {
            "epochs": self.epoch,
            "steps": self.step,
            "seconds": self.seconds,
            "frames_per_second": self.step
            * self.preset.window
            * self.preset.windows_per_step
            / max(self.seconds, 1e-9),
            "validation_l1": read_log(self.out / "train_log.tsv")[-1]["val_l1"],
        }


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def read_log(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=True))
        rows.append({k: (v if k == "stage" else float(v)) for k, v in row.items()})
    return rows


def plot_losses(log_path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("l1", "ssim", "lip", "temporal", "val_l1"):
        axes[0].plot(epochs, [r[name] for r in rows], label=name, marker="." if len(rows) < 30 else None)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_title("reconstruction losses (synthesized region)")
    axes[0].legend(fontsize=8)
    axes[1].plot(epochs, [r["adversarial"] for r in rows], label="adversarial (generator)")
    axes[1].plot(epochs, [r["total"] for r in rows], label="total")
    axes[1].set_xlabel("epoch")
    axes[1].legend(fontsize=8)
    joint = [r["epoch"] for r in rows if r["stage"] == "joint"]
    if joint:
        for ax in axes:
            ax.axvspan(min(joint) - 1, max(joint), color="0.9", label="joint with smoother")
    fig.tight_layout()
    with atomic_output(out) as partial:
        fig.savefig(partial, dpi=110, format="png")
    plt.close(fig)


def preset_with(name: str, **changes) -> TrainPreset:
    """A named preset with fields replaced (ablations, tests): ``renderer`` changes go in
    ``renderer={...}``."""
    preset = PRESETS[name]
    renderer_changes = changes.pop("renderer", None)
    if renderer_changes:
        changes["renderer"] = replace(preset.renderer, **renderer_changes)
    return replace(preset, **changes)
