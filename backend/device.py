"""Device and precision, chosen once at the edge and passed in: the default device, and the one
autocast helper (bf16 on CUDA, full precision elsewhere)."""

from __future__ import annotations

import contextlib

import torch


def pick_device(name: str | None = None) -> torch.device:
    """``name`` as given (cpu, cuda, cuda:N), or CUDA when there is one, else the CPU."""
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision where it pays: bf16 on CUDA; a no-op on other devices."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
