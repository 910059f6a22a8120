"""Write-then-rename for every file the backend produces: an interrupted run (Ctrl+C, a full
disk, a crash) never leaves a truncated file where a finished one is expected."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


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
