"""Training presets of the neural renderer (tiny for a CPU, standard for one GPU, high for 512 px
crops), their loss weights and the ablations StableFace trains separately."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .network import RendererConfig

MODEL_DIR = "model"


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


# Finishes on a 2-core CPU in minutes: half resolution inside the network, one minute of video.
_TINY = TrainPreset(
    "tiny",
    RendererConfig(work_size=128, channels=(16, 32, 64, 96, 128), audio_hidden=64, temporal_heads=4),
    epochs=8,
    joint_epochs=2,
    lr=4e-4,
    joint_lr=1e-6,
    windows_per_step=1,
    max_seconds=60.0,
)
# Native resolution where it matters: the same network on a 128 x 192 mouth window at the
# crop's own pixels (the lower face fits with the erosion margin); the eyes pass through
# from the plate (they are not synthesized, so they are not blurred). A step costs 1.13x
# tiny's on a CPU, so 7 + 2 epochs take tiny's 8 + 2 epochs' time (equal-budget comparison).
_TINY_NATIVE = replace(
    _TINY,
    name="tiny-native",
    renderer=replace(_TINY.renderer, work_size=256, native_window=(128, 192)),
    epochs=7,
    erase_eyes=False,
)

PRESETS: dict[str, TrainPreset] = {
    "tiny": _TINY,
    "tiny-native": _TINY_NATIVE,
    # The same with the person's own texture: 2 of the avatar's frames retrieved by mouth
    # expression and pose, warped into the frame and colour-matched, which the network copies
    # per pixel or redraws (``texture_copy``). A step costs 1.5x tiny's (the warps), so 5 + 2
    # epochs: about tiny's time.
    "tiny-retrieval": replace(
        _TINY_NATIVE,
        name="tiny-retrieval",
        renderer=replace(_TINY_NATIVE.renderer, retrieved=2, texture_copy=True),
        epochs=5,
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


# Components StableFace ablates that need their own training run (the smoother is ablated at
# inference: the same renderer driven by unsmoothed coefficients).
ABLATIONS: dict[str, dict] = {
    "full": {},  # the reference for the others when they are trained on a shorter schedule
    "no_erosion": {"augmented_erosion": False},
    "no_transformer": {"renderer": {"temporal": False}},
    "no_audio_fusion": {"renderer": {"audio_fusion": False}},
}


def preset_with(name: str, **changes) -> TrainPreset:
    """A named preset with fields replaced (ablations, tests): ``renderer`` changes go in
    ``renderer={...}``."""
    preset = PRESETS[name]
    renderer_changes = changes.pop("renderer", None)
    if renderer_changes:
        changes["renderer"] = replace(preset.renderer, **renderer_changes)
    return replace(preset, **changes)
