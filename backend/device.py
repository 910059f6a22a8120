"""Device and precision, chosen once at the edge and passed in: which device (CUDA, Apple MPS or
the CPU), checked against what this machine has, and the one autocast helper (bf16 on CUDA, full
precision elsewhere). The command line resolves ``--device`` here before any work starts; the
library takes the ``torch.device`` it is given."""

from __future__ import annotations

import contextlib

import torch

from .errors import SteadyTalkError

KINDS = ("cpu", "cuda", "mps")


class DeviceError(SteadyTalkError):
    code = "bad_device"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """What ``--device`` may name on this machine, best first: ``cuda:0`` .. ``cuda:N-1``, ``mps``, ``cpu``."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        names.append("mps")
    return [*names, "cpu"]


def default_device() -> torch.device:
    """CUDA when there is one, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps") if _mps_available() else torch.device("cpu")


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """``name`` (cpu, cuda, cuda:N, mps, or a ``torch.device``) checked against this machine, or
    :func:`default_device` when None. A device this machine lacks is a :class:`DeviceError` naming
    the ones it has."""
    if name is None or name == "":
        return default_device()
    if isinstance(name, torch.device):
        device = name
    else:
        try:
            device = torch.device(name.strip().lower())
        except (RuntimeError, ValueError):
            device = None
        if device is None or device.type not in KINDS:
            raise DeviceError(
                f"Unknown device {name!r}.", f"Use one of: {', '.join(available_devices())} (or leave --device out)."
            )
    here = available_devices()
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            built = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise DeviceError(f"CUDA was asked for but {built}.", f"Use one of: {', '.join(here)}.")
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"There is no {device}: this machine has {count} CUDA GPU(s).",
                f"Use one of: {', '.join(here)}.",
            )
    elif device.type == "mps" and not _mps_available():
        raise DeviceError("Apple MPS was asked for but is not available here.", f"Use one of: {', '.join(here)}.")
    return device


def describe(device: torch.device) -> dict:
    """What ``ping`` reports: the device, the GPU's name where there is one, torch's version."""
    gpu = None
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device.index or 0)
    elif device.type == "mps":
        gpu = "Apple GPU (MPS)"
    return {"device": str(device), "gpu": gpu, "torch": torch.__version__}


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision where it pays: bf16 on CUDA; a no-op on other devices (MPS and the CPU run
    in float32: bf16 there is slower or unsupported for our kernels)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
