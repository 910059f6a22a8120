"""The server's job queue: one FIFO per client, served round-robin, so one client streaming
thousands of frames cannot starve another."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable


class FairQueue:
    """Each client's jobs in their own FIFO; ``get`` takes from the clients in turn."""

    def __init__(self) -> None:
        self._queues: OrderedDict[bytes, deque[Callable[[], None]]] = OrderedDict()
        self._ready = threading.Condition()
        self._closed = False

    def put(self, client: bytes, job: Callable[[], None]) -> None:
        with self._ready:
            self._queues.setdefault(client, deque()).append(job)
            self._ready.notify()

    def get(self) -> Callable[[], None] | None:
        """The next job (round-robin over clients), or None once closed."""
        with self._ready:
            while not self._queues and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            client, jobs = self._queues.popitem(last=False)
            job = jobs.popleft()
            if jobs:
                self._queues[client] = jobs  # to the back of the line
            return job

    def pending(self) -> int:
        with self._ready:
            return sum(len(q) for q in self._queues.values())

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._queues.clear()
            self._ready.notify_all()
