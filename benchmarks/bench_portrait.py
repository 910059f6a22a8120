"""Talking-portrait speed: frames/s at 512 on this CPU, by stage.

    python benchmarks/bench_portrait.py [--image PICTURE ...] [--audio SPEECH] [--size 512] [--repeats 3]

By default every picture in ../shared/data/images, driven by the JFK clip in ../shared/data/audio
(11 s, 276 frames at 25 fps). For each picture: the set-up (read, find the face, fit, build the
mesh), the lip-sync, the frames alone, the frames with H.264 encoding, and the whole
``render_portrait`` call (what ``steadytalk portrait`` does, minus the process start), the
median of ``--repeats``, with the CPU time of the whole call (all threads: on a shared machine
the wall time also counts other people's work). Target: >= 25 frames/s at 512, end to end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from steadytalk_backend.avatar.video import VideoWriter
from steadytalk_backend.portrait.pipeline import PortraitOptions, animate, perform, prepare_portrait, render_portrait

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPEECH = DATA / "audio" / "jfk_inaugural_1961_11s.flac"
TRANSCRIPT = (
    "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
)


def _median_seconds(run, repeats: int, cpu: list | None = None) -> float:
    """Median wall time of ``run``; its median process CPU time (all threads) goes to ``cpu``."""
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    if cpu is not None:
        cpu.append(statistics.median(cpu_times))
    return statistics.median(times)


def bench(image: Path, audio: Path, transcript: str | None, size: int, repeats: int) -> dict:
    options = PortraitOptions(size=size)
    start = time.perf_counter()
    portrait = prepare_portrait(image, options)
    animator = portrait.animator()
    setup = time.perf_counter() - start
    lipsync = _median_seconds(lambda: perform(audio, transcript, options), repeats)
    performance = perform(audio, transcript, options)
    frames = performance.num_frames
    synth = _median_seconds(lambda: [None for _ in animate(animator, performance)], repeats)
    height, width = portrait.video.shape[:2]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench.mp4"

        def encode() -> None:
            settings = {"crf": options.crf, "audio_rate": 16000, "pix_fmt": "yuv420p"}
            with VideoWriter(out, width, height, options.fps, **settings) as w:
                for frame in animate(animator, performance):
                    w.write(frame)
                w.add_audio(performance.samples)

        encoded = _median_seconds(encode, repeats)
        whole_cpu: list[float] = []
        whole = _median_seconds(lambda: render_portrait(image, audio, out, transcript, options), repeats, whole_cpu)
    opened = np.max(performance.curves[:, 0])
    return {
        "image": image.name,
        "size": f"{width}x{height}",
        "frames": frames,
        "setup_s": setup,
        "lipsync_s": lipsync,
        "frames_fps": frames / synth,
        "encoded_fps": frames / encoded,
        "whole_s": whole,
        "whole_fps": frames / whole,
        "whole_cpu_s": whole_cpu[0],
        "widest_jaw": float(opened),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", type=Path, action="append", help="a picture (default: ../shared/data/images/*)")
    parser.add_argument("--audio", type=Path, default=SPEECH)
    parser.add_argument("--transcript", default=None, help="default: the JFK clip's words when it is the audio")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = args.image or sorted((DATA / "images").glob("*"))
    if not images or not args.audio.exists():
        raise SystemExit("no pictures or no audio: pass --image and --audio (../shared/data is absent)")
    transcript = args.transcript or (TRANSCRIPT if args.audio == SPEECH else None)
    print(f"{'picture':36s} {'video':>9s} {'frames':>6s} {'set-up':>7s} {'lip-sync':>8s} "
          f"{'frames/s':>9s} {'+H.264':>8s} {'whole':>7s} {'whole/s':>8s} {'CPU s':>6s}")  # fmt: skip
    for image in images:
        r = bench(image, args.audio, transcript, args.size, args.repeats)
        print(
            f"{r['image']:36s} {r['size']:>9s} {r['frames']:6d} {r['setup_s']:6.2f}s {r['lipsync_s']:7.2f}s "
            f"{r['frames_fps']:9.1f} {r['encoded_fps']:8.1f} {r['whole_s']:6.2f}s {r['whole_fps']:8.1f} "
            f"{r['whole_cpu_s']:6.2f}"
        )


if __name__ == "__main__":
    main()
