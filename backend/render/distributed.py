"""Training across processes: ``torchrun --nproc_per_node N -m steadytalk_backend.cli train ...``.

torchrun starts N copies of the command and tells each its place in the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); :func:`start` joins them into one
process group (NCCL between CUDA GPUs, gloo on the CPU) and gives each process its device. The
trainer then keeps one process's semantics exactly:

- every rank draws the same window starts for the global batch (one seeded generator) and trains
  its contiguous share of them (:func:`shard`);
- the renderer, the smoother and the discriminator are wrapped in DistributedDataParallel
  (:func:`wrap`), which averages their gradients over the ranks;
- the losses' normalizers (pixels of the synthesized region) are the mean over the ranks
  (:func:`mean_over_ranks`), so the averaged gradient is the gradient of the global batch's loss,
  not a mean of per-rank ratios: N processes and one process at the same global batch give the
  same weights (up to float rounding; tests/test_distributed.py holds it);
- rank 0 alone writes the log, the checkpoints and the model (atomically, as one process does).

The augmented erosion's random draws are the one exception: each rank draws its own from a
generator seeded by (seed, rank, step), so N processes are statistically, not bitwise, the same
run as one. The renderer's GroupNorm and per-window attention make a frame independent of its
batch neighbours, so splitting a batch changes nothing else.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..device import pick_device
from ..errors import SteadyTalkError

# A rank waits this long for the others (rank 0 fits the audio-to-expression model alone first).
GROUP_TIMEOUT = datetime.timedelta(minutes=60)


class DistributedError(SteadyTalkError):
    code = "distributed"


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; the default is one process alone."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The world torchrun describes in the environment (one process alone without it)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def start(device_name: str | None = None) -> tuple[World, torch.device]:
    """Join torchrun's process group (if any) and pick this process's device.

    Under torchrun, ``cuda`` (or no ``--device`` on a CUDA machine) means the GPU of this process's
    local rank and the group uses NCCL; ``cpu`` uses gloo. Without torchrun this is
    :func:`~steadytalk_backend.device.pick_device` and a world of one."""
    world = world_from_env()
    device = pick_device(device_name)
    if not world.distributed:
        return world, device
    if device.type == "mps":
        raise DistributedError(
            "Training across processes is not supported on Apple MPS.", "Run steadytalk train without torchrun."
        )
    if device.type == "cuda":
        if device.index is not None:
            raise DistributedError(
                f"Under torchrun each process takes the GPU of its local rank; --device {device_name} names one.",
                "Pass --device cuda or leave --device out (CUDA_VISIBLE_DEVICES chooses the GPUs).",
            )
        count = torch.cuda.device_count()
        if world.local_rank >= count:
            raise DistributedError(
                f"torchrun started process {world.local_rank} on this machine, which has {count} GPU(s).",
                f"Use --nproc_per_node {count} (or fewer).",
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=GROUP_TIMEOUT)
    return world, device


def stop(world: World) -> None:
    """Wait for every rank (rank 0 may still be writing the model), then leave the group."""
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def leave(world: World) -> None:
    """Leave the group at once (this rank failed; waiting for the others could hang)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def wrap(module: nn.Module, world: World, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel when there are several ranks (itself otherwise). The
    wrapper shares the module's parameters: optimizers, checkpoints and inference use the module."""
    if not world.distributed:
        return module
    ids = [device.index] if device.type == "cuda" else None
    # Every rank starts from the same seeded weights; DDP broadcasts rank 0's once here anyway.
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def check_batch(windows_per_step: int, world: World) -> None:
    """The global batch must split evenly: every rank trains the same number of windows."""
    if windows_per_step < 1:
        raise DistributedError(
            f"A step needs at least one window, not {windows_per_step}.", "Use --windows-per-step 1 or more."
        )
    if windows_per_step % world.size:
        raise DistributedError(
            f"The global batch of {windows_per_step} windows does not split over {world.size} processes.",
            f"Use a --nproc_per_node that divides {windows_per_step}.",
        )


def shard(starts: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous share of the global batch's window starts (all ranks drew the same)."""
    share = len(starts) // world.size
    return starts[world.rank * share : (world.rank + 1) * share]


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over the ranks, out of the autograd graph (a loss normalizer)."""
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def denominator(world: World):
    """What the losses use for their normalizers: :func:`mean_over_ranks` across processes, else None
    (the process's own sum, as one process always had)."""
    return mean_over_ranks if world.distributed else None


def mean_values(values: dict[str, float], world: World) -> dict[str, float]:
    """Logged losses averaged over the ranks: with the shared normalizers, the global batch's."""
    if not world.distributed:
        return values
    names = sorted(values)
    stacked = torch.tensor([values[n] for n in names], dtype=torch.float64)
    dist.all_reduce(stacked)
    return {n: float(v) / world.size for n, v in zip(names, stacked, strict=True)}


def augmentation_generator(seed: int, world: World, step: int) -> torch.Generator:
    """Each rank's own stream for the augmented erosion, reproducible from (seed, rank, step)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + world.rank) * 1_000_003 + step)
