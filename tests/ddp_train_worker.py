"""Trains the DDP test's tiny renderer: run under a real torchrun by tests/test_distributed.py
(each rank a process, gloo on the CPU), and called in-process for the one-process reference.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_train_worker.py AVATAR OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import tiny_preset

from steadytalk_backend.render import distributed
from steadytalk_backend.render.data import AvatarFrames
from steadytalk_backend.render.presets import LossWeights
from steadytalk_backend.render.train import RendererTrainer

# Windows of 6 frames, a global batch of 4 windows (2 per rank on two ranks), two steps (one of the
# renderer alone, one joint with the smoother), the discriminator on from the first step:
# every module DDP syncs is exercised. No augmented
# erosion: its random draws are each rank's own (see distributed.py), so only without it are
# N processes and one bitwise the same run.
GLOBAL_BATCH = 4


def ddp_preset():
    return tiny_preset(windows_per_step=GLOBAL_BATCH, augmented_erosion=False, losses=LossWeights(adversarial=0.05))


def train(avatar: Path, out: Path, world: distributed.World, device) -> dict:
    frames = AvatarFrames.load(avatar, 256)
    preset = ddp_preset()
    trainer = RendererTrainer(avatar, preset, device=device, frames=frames, out=out, log=lambda s: None, world=world)
    return trainer.run()


def main(avatar: str, out: str) -> int:
    world, device = distributed.start("cpu")
    try:
        summary = train(Path(avatar), Path(out), world, device)
        print(f"rank {world.rank}/{world.size}: {summary['steps']} steps", flush=True)
    finally:
        distributed.stop(world)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
