"""Talking portraits over ZeroMQ: what the wire adds to ``portrait`` and ``portrait_rig``.

    python benchmarks/bench_portrait_wire.py [--image PICTURE ...] [--audio SPEECH] [--size 512] [--repeats 3]

A real server on a random loopback port in this process (one worker), the client in this
thread. For each picture (default: the GRID frame in ../shared/data/images), the median of
``--repeats``: ``render_portrait_bytes`` called directly against the ``portrait`` request (the
JFK clip, 276 frames at 25 fps), and ``portrait_rig`` + PNG encoding against the
``portrait_rig`` request at a 1024 texture, with the reply's size. The add-on's time to build
the rig is Blender's (``tests/test_blender_portrait.py``).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

from steadytalk_backend.portrait.pipeline import PortraitOptions, render_portrait_bytes
from steadytalk_backend.portrait.rig import portrait_rig
from steadytalk_backend.service.server import LipsyncServer, ServerConfig
from steadytalk_shared.client import BackendClient
from steadytalk_shared.png import encode_png

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPEECH = DATA / "audio" / "jfk_inaugural_1961_11s.flac"
TRANSCRIPT = (
    "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
)


def _median(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(client: BackendClient, image: Path, audio: bytes, transcript: str | None, size: int, repeats: int) -> dict:
    picture = image.read_bytes()
    options = PortraitOptions(size=size)
    render_portrait_bytes(picture, audio, transcript, options)  # warm: mediapipe, the engine
    direct = _median(lambda: render_portrait_bytes(picture, audio, transcript, options), repeats)
    wire = _median(lambda: client.portrait(picture, audio, transcript, size=size), repeats)

    def rig_direct() -> None:
        rig, _, _ = portrait_rig(picture, PortraitOptions(size=1024))
        encode_png(rig.texture)

    rig_local = _median(rig_direct, repeats)
    rig_wire = _median(lambda: client.portrait_rig(picture, size=1024), repeats)
    rig = client.portrait_rig(picture, size=1024)
    arrays = (rig.vertices, rig.triangles, rig.uvs, rig.deltas, rig.matrix, rig.card)
    return {
        "direct": direct,
        "wire": wire,
        "rig_direct": rig_local,
        "rig_wire": rig_wire,
        "rig_mb": (sum(a.nbytes for a in arrays) + len(rig.texture_png)) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", type=Path, action="append", help="default: the GRID frame of ../shared/data")
    parser.add_argument("--audio", type=Path, default=SPEECH)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = args.image or [DATA / "images" / "grid_s1_frame_bbaf2n.png"]
    if not all(p.exists() for p in [*images, args.audio]):
        raise SystemExit("pictures or audio missing: pass --image and --audio (../shared/data is absent)")
    transcript = TRANSCRIPT if args.audio == SPEECH else None
    server = LipsyncServer(ServerConfig(bind="tcp://127.0.0.1:*", workers=1, poll_ms=20))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    audio = args.audio.read_bytes()
    print(f"{'picture':34s} {'direct':>8s} {'wire':>8s} {'added':>7s} {'rig direct':>10s} {'rig wire':>9s} {'MB':>6s}")
    try:
        with BackendClient(server.endpoint, timeout=300, retries=0) as client:
            for image in images:
                r = bench(client, image, audio, transcript, args.size, args.repeats)
                added = 100 * (r["wire"] / r["direct"] - 1)
                print(
                    f"{image.name:34s} {r['direct']:7.2f}s {r['wire']:7.2f}s {added:+6.1f}% "
                    f"{r['rig_direct']:9.2f}s {r['rig_wire']:8.2f}s {r['rig_mb']:6.2f}"
                )
    finally:
        server.stop()
        thread.join(timeout=60)


if __name__ == "__main__":
    main()
