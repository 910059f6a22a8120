"""Batch photoreal renders: many audio files through one avatar, resumable, failures isolated.

The list is a text file, one job per line: the audio path (relative paths are relative to the
list), optionally a tab and the transcript. Blank lines and lines starting with ``#`` are
skipped. Each job writes ``OUT_DIR/<audio stem>.mp4`` (atomically: a finished file is never
half written), so a rerun skips the jobs already done. A failing job is reported and the rest
go on; ``OUT_DIR/batch_report.json`` lists every job's outcome.

Locally the jobs run one after another on one device (the avatar is loaded once). With Ray
(``--ray``, the optional ``[scale]`` extra), one actor per GPU of the cluster loads the avatar and
takes jobs from a shared pool: the same command scales to several GPUs or machines. Without an
address a local Ray is started for the batch and stopped after it (one that is already running in
this process is used as it is).
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_output
from ..errors import SteadyTalkError

Log = Callable[[str], None]
Device = object  # a torch.device, a name for steadytalk_backend.device.pick_device, or None (the default)


class BatchError(SteadyTalkError):
    code = "batch"


@dataclass(frozen=True)
class BatchJob:
    audio: str
    out: str
    transcript: str | None = None
    line: int = 0


@dataclass
class JobOutcome:
    audio: str
    out: str
    status: str  # "done", "skipped" (already there) or "failed"
    seconds: float = 0.0
    frames: int = 0
    error: str = ""
    worker: str = ""  # host:pid of the process that rendered it (a Ray actor's with --ray)


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def read_list(path: Path, out_dir: Path) -> list[BatchJob]:
    """Parse a batch list; refuses a missing file and two jobs that would write one output."""
    path = Path(path)
    if not path.is_file():
        raise BatchError(f"The batch list {path} does not exist.", "Give a text file with one audio path per line.")
    jobs: list[BatchJob] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        audio, _, transcript = line.partition("\t")
        audio_path = Path(audio.strip())
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        out = Path(out_dir) / f"{audio_path.stem}.mp4"
        if out.name in seen:
            raise BatchError(
                f"{path}:{number} and line {seen[out.name]} would both write {out.name}.",
                "Rename one of the audio files or split the list.",
            )
        seen[out.name] = number
        jobs.append(BatchJob(str(audio_path), str(out), transcript.strip() or None, number))
    if not jobs:
        raise BatchError(f"The batch list {path} names no audio files.")
    return jobs


class LocalRenderer:
    """Loads the avatar once; renders one job at a time. Also the body of a Ray actor."""

    def __init__(self, avatar: str, device: Device = None, full_frame: bool = True) -> None:
        from ..render.inference import AvatarRenderer
        from ..render.pipeline import Reference, RenderConfig

        self.renderer = AvatarRenderer(Path(avatar), device=device)
        self.reference = Reference(Path(avatar), self.renderer.config.size)
        self.config = RenderConfig(full_frame=full_frame)

    def render(self, job: BatchJob, progress=None) -> JobOutcome:
        from ..render.pipeline import render_audio

        start = time.monotonic()
        try:
            summary = render_audio(
                self.renderer, self.reference, Path(job.audio), Path(job.out), job.transcript, self.config, progress
            )
        except SteadyTalkError as exc:
            return JobOutcome(job.audio, job.out, "failed", time.monotonic() - start, error=str(exc), worker=_worker())
        except Exception as exc:  # one bad file must not stop a night's batch; keep the trace
            trace = traceback.format_exc(limit=4)
            error = f"{exc!r}\n{trace}"
            return JobOutcome(job.audio, job.out, "failed", time.monotonic() - start, error=error, worker=_worker())
        return JobOutcome(job.audio, job.out, "done", time.monotonic() - start, summary["frames"], worker=_worker())


def run_batch(
    avatar: Path,
    jobs: list[BatchJob],
    out_dir: Path,
    device: Device = None,
    full_frame: bool = True,
    ray_address: str | None = None,
    log: Log = print,
) -> list[JobOutcome]:
    """Renders the jobs not done yet, here or on Ray (``ray_address``: "" for a local Ray)."""
    if ray_address is not None:
        _import_ray()  # before any work: a missing extra is one line, not a failed night
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = [JobOutcome(j.audio, j.out, "skipped") for j in jobs if Path(j.out).exists()]
    todo = [j for j in jobs if not Path(j.out).exists()]
    if outcomes:
        log(f"{len(outcomes)} of {len(jobs)} already rendered (skipped)")
    runner = _run_ray(avatar, todo, device, full_frame, ray_address) if ray_address is not None else None
    if runner is None:
        runner = _run_local(avatar, todo, device, full_frame)
    for done, outcome in enumerate(runner, start=1):
        outcomes.append(outcome)
        tail = f"{outcome.frames} frames in {outcome.seconds:.1f} s" if outcome.status == "done" else outcome.error
        log(f"[{done}/{len(todo)}] {outcome.status}: {Path(outcome.audio).name} -> {Path(outcome.out).name}: {tail}")
    with atomic_output(out_dir / "batch_report.json") as partial:
        partial.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    return outcomes


def _run_local(avatar: Path, jobs: list[BatchJob], device: Device, full_frame: bool) -> Iterator[JobOutcome]:
    if not jobs:
        return
    worker = LocalRenderer(str(avatar), device, full_frame)
    for job in jobs:
        yield worker.render(job)


def _import_ray():
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise BatchError(
            "--ray needs Ray, the optional [scale] extra, which is not installed in the backend's environment.",
            "Install it with pip install '.[scale]' in the Steady Talk folder, or leave out --ray to render here.",
        ) from None
    return ray, ActorPool


def _run_ray(
    avatar: Path, jobs: list[BatchJob], device: Device, full_frame: bool, address: str
) -> Iterator[JobOutcome]:
    """One actor per GPU (or one on the CPU when the cluster has none), fed from a pool."""
    ray, ActorPool = _import_ray()
    if not jobs:
        return
    started_here = not ray.is_initialized()
    if started_here:
        local = {} if address else {"include_dashboard": False}
        ray.init(address=address or None, log_to_driver=False, **local)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        actor = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1)(LocalRenderer)
        workers = [actor.remote(str(avatar), device, full_frame) for _ in range(max(1, gpus))]
        pool = ActorPool(workers)
        try:
            yield from pool.map_unordered(lambda worker, job: worker.render.remote(job), jobs)
        except ray.exceptions.RayActorError as exc:  # the avatar or device failed on a worker
            cause = str(exc.__cause__ or exc).strip().splitlines()
            raise BatchError(f"A Ray worker could not start: {cause[-1] if cause else exc!r}") from None
    finally:
        if started_here:
            ray.shutdown()
