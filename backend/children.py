"""A Python child process for work that must not share our process: a fresh interpreter
(``python -m MODULE``), never a fork (forking a process that runs threads can copy a held
lock), with two pipes speaking ``multiprocessing.connection`` (pickled objects)."""

from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing.connection import Connection


def start_child(module: str, new_session: bool = False) -> tuple[subprocess.Popen, Connection, Connection]:
    """Run ``python -m module READ_FD WRITE_FD``; returns the process and the connections to it
    and from it. ``new_session``: its own process group, so killing the group ends what it starts.
    The module reads its end with ``child_ends()``."""
    down_read, down_write = os.pipe()
    up_read, up_write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, str(down_read), str(up_write)],
        pass_fds=(down_read, up_write),
        stdin=subprocess.DEVNULL,
        start_new_session=new_session,
    )
    os.close(down_read)
    os.close(up_write)
    return proc, Connection(down_write, readable=False), Connection(up_read, writable=False)


def child_ends() -> tuple[Connection, Connection]:
    """In the child: the connection from the parent and the one back to it (from ``sys.argv``)."""
    return Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False)
