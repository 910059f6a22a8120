"""Training the avatar's neural renderer (and, in its last stage, the adaptive smoother with it).

StableFace's schedule: the renderer alone (100 epochs at lr 1e-4 by default), then renderer and
adaptive smoother together (20 epochs at lr 1e-6); the smoother's weights are then exported in
the numpy format of ``steadytalk_shared.smoothing`` so the Blender add-on smooths this avatar's
curves with them. An epoch is one pass over the training frames in windows of T = 12.

The losses (``losses.py``) are taken on the composited frame over the synthesized region; the
adversarial term comes from a patch discriminator trained from scratch. Presets are in
``presets.py``, the log and its plot in ``train_log.py``.

Everything lives in ``AVATAR_DIR/model``: weights as safetensors with JSON configs, the
resumable training state (weights, optimizers, generator state; no pickle), ``train_log.tsv``
and ``losses.png``. Mixed precision (bf16) on CUDA; float32 on the CPU.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from steadytalk_shared.smoothing import DEFAULT_WEIGHTS, RADIUS_PER_SIGMA

from ..device import autocast, pick_device
from ..errors import SteadyTalkError
from ..lipsync.smoother import load_smoother, save_smoother, smooth_mouth
from . import distributed
from .augment import ErosionConfig
from .data import AvatarFrames, Conditioner, Normalizer, audio_windows, to_tensor
from .losses import discriminator_loss, renderer_losses
from .network import NeuralRenderer, PatchDiscriminator, composite, feather_mask, save_module
from .presets import MODEL_DIR, TrainPreset
from .retrieval import RetrievalConfig
from .texture import TextureSource
from .train_log import append_row, plot_losses, read_log


class TrainingError(SteadyTalkError):
    pass


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
        world: distributed.World | None = None,
    ) -> None:
        self.avatar = Path(avatar)
        self.preset = preset
        self.world = world or distributed.World()  # several under torchrun: see distributed.py
        distributed.check_batch(preset.windows_per_step, self.world)
        self.device = pick_device(device)
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
            native_window=config.native_window,
            match_texture=config.texture_copy,
        )
        self.texture, self.retrieval = None, None
        if config.retrieved:
            self.texture = TextureSource.from_avatar(
                self.data,
                self.conditioner.screen,
                self.validation_start,
                RetrievalConfig(k=config.retrieved),
                self.device,
            )
            self.retrieval = self.texture.retrieve_training(self.data.coefficients, self.data.matrices)
        torch.manual_seed(preset.seed)
        self.net = NeuralRenderer(config).to(self.device)
        self.disc = PatchDiscriminator(channels=32 if min(config.network_size) <= 128 else 64).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=preset.lr, betas=(0.5, 0.999))
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=preset.lr, betas=(0.5, 0.999))
        self.opt_joint = torch.optim.Adam(
            [*self.net.parameters(), *self.smoother.parameters()], lr=preset.joint_lr, betas=(0.5, 0.999)
        )
        self.generator = torch.Generator().manual_seed(preset.seed)  # the data order: the same on every rank
        self.augment_generator = self.generator
        if self.world.distributed:
            self.augment_generator = distributed.augmentation_generator(preset.seed, self.world, 0)
        # What a training step calls: DDP wrappers sharing the modules' parameters under torchrun.
        self.ddp_net, self.ddp_disc, self.ddp_smoother = (
            distributed.wrap(module, self.world, self.device) for module in (self.net, self.disc, self.smoother)
        )
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
        retrieved = None
        if self.texture is not None:
            retrieved = self.texture.gather(self.retrieval.ids[index], self.retrieval.weights[index], self.device)
        return {
            "retrieved": retrieved,
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
        sigma = self.ddp_smoother(curves)
        return smooth_mouth(curves, sigma, radius=r)[:, r : r + t].reshape(-1, curves.shape[-1])

    # ----- one step -----------------------------------------------------------------------
    def _forward(self, batch: dict, coefficients: torch.Tensor, augment: bool, net: torch.nn.Module | None = None):
        config = self.preset.renderer
        cond = self.conditioner(
            coefficients,
            batch["matrices"],
            batch["frames"],
            batch["mouth"],
            augment=augment,
            generator=self.augment_generator,
            retrieved=batch["retrieved"],
        )
        # The losses are taken where the network works: the whole crop at its work size, or
        # the mouth windows at full resolution (outside them the composite is the real frame).
        target = cond.to_network(batch["frames"])
        erased = cond.to_network(cond.erased[:, None])[:, 0]
        mouth = cond.to_network(batch["mouth"][:, None].float())[:, 0]
        shape = cond.to_network(cond.shape)
        with autocast(self.device):
            audio = batch["audio"] if config.audio_fusion else None
            generated = (net or self.net)(cond.inputs, audio, self.preset.window)
        generated = generated.float()
        scale = 1.0 if config.native else config.work_size / config.size
        alpha = feather_mask(erased, config.feather * scale)
        output = composite(generated, target, alpha)
        return output, target, alpha, mouth, shape

    def _losses(self, output, target, alpha, mouth, shape, adversarial: bool) -> dict[str, torch.Tensor]:
        score = None
        if adversarial:
            with autocast(self.device):
                score = self.disc(output, shape).float()
        denominator = distributed.denominator(self.world)
        return renderer_losses(output, target, alpha, mouth, self.preset.window, self.preset.losses, score, denominator)

    def _discriminator_step(self, output, target, shape) -> None:
        with autocast(self.device):
            shape = shape.detach()
            # One forward for both (DDP syncs one forward per backward); GroupNorm keeps them apart.
            fake, real = self.ddp_disc(torch.cat([output.detach(), target]), torch.cat([shape, shape])).float().chunk(2)
        loss = discriminator_loss(real, fake)
        self.opt_disc.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_disc.step()

    def train_step(self, joint: bool) -> dict[str, float]:
        self.net.train()
        starts = distributed.shard(self._window_starts(self.preset.windows_per_step), self.world)
        batch = self._batch(starts)
        coefficients = self._smoothed(starts) if joint else batch["coefficients"]
        augment = self.preset.augmented_erosion
        output, target, alpha, mouth, shape = self._forward(batch, coefficients, augment, self.ddp_net)
        adversarial = self.preset.losses.adversarial > 0 and self.epoch >= self.preset.adversarial_from_epoch
        losses = self._losses(output, target, alpha, mouth, shape, adversarial)
        optimizer = self.opt_joint if joint else self.opt
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        if adversarial:
            self._discriminator_step(output, target, shape)
        self.step += 1
        return distributed.mean_values({k: float(v.detach()) for k, v in losses.items()}, self.world)

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
        if self.world.distributed:
            self.augment_generator = distributed.augmentation_generator(self.preset.seed, self.world, self.step)
        return True

    def export(self) -> None:
        """The products: renderer (+ normalizer and erosion settings in its JSON) and the avatar's
        smoother in the numpy format of ``steadytalk_shared.smoothing``."""
        extra = {
            "normalizer": self.normalizer.to_dict(),
            "erase_eyes": self.preset.erase_eyes,
            "texture": self.texture.to_dict() if self.texture is not None else None,
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
        row = {"stage": stage, "epoch": self.epoch, "step": self.step, "seconds": round(self.seconds, 1), "val_l1": val}
        append_row(self.out / "train_log.tsv", row | means)

    def run(self, restart: bool = False) -> dict:
        """Trains to the end of the schedule. Under torchrun every rank runs this; rank 0 alone writes."""
        main = self.world.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        if restart and main:
            for name in ("train_state.safetensors", "train_state.json", "train_log.tsv"):
                (self.out / name).unlink(missing_ok=True)
        distributed.barrier(self.world)  # no rank reads a state rank 0 is clearing
        if not restart and self.load_state():
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
            if main:
                self._log_row(stage, {k: v / steps for k, v in sums.items()}, val)
                self.save_state()
        if main:
            self.export()
            plot_losses(self.out / "train_log.tsv", self.out / "losses.png")
        distributed.barrier(self.world)  # the model is on disk before any rank goes on
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
