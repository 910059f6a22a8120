"""Write-then-rename for every file the backend produces: an interrupted run (Ctrl+C, a full
disk, a crash) never leaves a truncated file where a finished one is expected."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield ``<path>.partial`` to write; it replaces ``path`` when the block succeeds and is
    removed when it fails. Writers that pick a format from the file name must be told it."""
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_output(path) as partial:
        partial.write_text(text, encoding="utf-8")


def savez_atomic(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` through a handle (numpy would add ``.npz`` to the partial's name)."""
    with atomic_output(path) as partial, open(partial, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def save_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_output(path) as partial, open(partial, "wb") as handle:
        np.save(handle, array)
