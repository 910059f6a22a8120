"""A photoreal pass through the backend, client side: which frames to send, in what requests,
with how many in flight, and what to do with each frame that comes back.

The renderer's temporal module looks ``context`` frames each side, so a run of frames is sent
with up to ``context`` neighbours on each side (clipped to the pass); the backend returns the
run's frames exactly as one long window over the whole pass would render them. Requests are
therefore independent: the missing frames of a pass (after a cancel or a backend crash) are
rendered on their own and match the ones already written.

Needs numpy and pyzmq (no bpy, no torch): used by the Blender add-on, tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .client import BackendClient
from .messages import render_frames_message

ShapeOf = Callable[[int], tuple[np.ndarray, np.ndarray]]  # frame -> (shape pass (S,S,3) u8, coefficients)


@dataclass(frozen=True)
class PassPlan:
    frames: int  # length of the pass
    context: int  # the renderer's temporal reach, from render_open
    max_request: int  # most frames one request may hold, from render_open

    @property
    def chunk(self) -> int:
        return max(1, self.max_request - 2 * self.context)

    def runs(self, missing: Sequence[int]) -> list[tuple[int, int]]:
        """Missing frame numbers -> (first, count) runs of consecutive frames, each <= chunk."""
        runs: list[tuple[int, int]] = []
        for frame in sorted(set(int(f) for f in missing)):
            if runs and runs[-1][0] + runs[-1][1] == frame and runs[-1][1] < self.chunk:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((frame, 1))
        return runs

    def span(self, first: int, count: int) -> tuple[int, int]:
        """Frames [lo, hi) to send for the run: the run and its context, inside the pass."""
        return max(0, first - self.context), min(self.frames, first + count + self.context)

    def needed(self, missing: Sequence[int]) -> list[int]:
        """Every frame whose shape pass the requests for ``missing`` will need."""
        out: set[int] = set()
        for first, count in self.runs(missing):
            out.update(range(*self.span(first, count)))
        return sorted(out)


def render_pass(
    client: BackendClient,
    session: dict,
    plan: PassPlan,
    missing: Sequence[int],
    shape_of: ShapeOf,
    reference_of: Callable[[int], int],
    write: Callable[[int, np.ndarray], None],
    in_flight: int = 3,
    cancelled: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Render ``missing`` frames of an open session; ``write(frame, rgb)`` gets each as it
    arrives. Returns how many were written. Raises the client's errors (the frames written so
    far stay written)."""

    def requests() -> Iterator:
        for first, count in plan.runs(missing):
            lo, hi = plan.span(first, count)
            shapes, coefficients = zip(*(shape_of(f) for f in range(lo, hi)), strict=True)
            yield render_frames_message(
                session["session"],
                first,
                first - lo,
                count,
                [reference_of(f) for f in range(lo, hi)],
                np.stack(shapes),
                np.stack(coefficients),
            )

    written, total = 0, len(set(missing))
    for request, reply in client.pipeline(requests(), in_flight=in_flight, cancelled=cancelled):
        frames = reply.array(0)
        first = int(request.body["first"])
        if len(frames) != request.body["count"]:
            raise ValueError(f"the backend sent {len(frames)} frames for a run of {request.body['count']}")
        for k, rgb in enumerate(frames):
            write(first + k, rgb)
        written += len(frames)
        if progress is not None:
            progress(written, total)
    return written
