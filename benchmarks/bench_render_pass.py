"""Figures of the photoreal pass: ZeroMQ overhead per frame, the headless render's and the
Blender pass's end-to-end frames/s, with a trained avatar.

    .venv/bin/python benchmarks/bench_render_pass.py --avatar AVATAR [--frames 100] [--device cpu]

- zmq: a 512x512 RGB frame to a ROUTER on loopback and a 512x512 frame back, through the
  protocol's encode/decode (what a render_frames request and its reply cost on the wire
  beyond the rendering itself); median of 200 round trips, per frame.
- headless: ``render_audio`` of the avatar's own first seconds of audio (lip-sync, person
  model, smoothing, renderer, paste-back, H.264 + AAC), frames/s after the avatar is loaded.
- blender: Load Avatar then Render Photoreal Pass for ``--frames`` frames in the ``bpy``
  module against a ``steadytalk serve`` process: frames/s from the click to the last PNG.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def bench_zmq(size: int = 512, trips: int = 200) -> float:
    from steadytalk_shared import protocol as wire

    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            if not router.poll(100):
                continue
            identity, *frames = router.recv_multipart(copy=True)
            request = wire.decode(frames)
            reply = request.reply(body={"count": 1}, buffers=[request.array(0)])
            router.send_multipart([identity, *wire.encode(reply)], copy=False)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    frame = np.random.default_rng(0).integers(0, 255, (1, size, size, 3), dtype=np.uint8)
    times = []
    for _ in range(trips + 10):
        started = time.perf_counter()
        dealer.send_multipart(
            wire.encode(wire.Message(wire.RENDER_FRAMES, body={"first": 0}, buffers=[frame])), copy=False
        )
        reply = wire.decode(dealer.recv_multipart())
        assert reply.array(0).shape == frame.shape
        times.append(time.perf_counter() - started)
    stop.set()
    thread.join()
    dealer.close()
    router.close()
    context.term()
    return float(np.median(times[10:]))


def bench_headless(avatar: Path, device: str | None) -> tuple[int, float, float]:
    from steadytalk_backend.render.inference import AvatarRenderer
    from steadytalk_backend.render.pipeline import Reference, render_audio

    started = time.perf_counter()
    renderer = AvatarRenderer(avatar, device=device)
    reference = Reference(avatar, renderer.config.size)
    loaded = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        import soundfile as sf

        samples, rate = sf.read(avatar / "audio.wav", dtype="float32", frames=16000 * 8)
        sf.write(Path(tmp) / "speech.wav", samples, rate)
        started = time.perf_counter()
        summary = render_audio(renderer, reference, Path(tmp) / "speech.wav", Path(tmp) / "out.mp4")
        seconds = time.perf_counter() - started
    return summary["frames"], seconds, loaded


def bench_blender(avatar: Path, frames: int, device: str | None) -> tuple[int, float]:
    import bpy
    from conftest import extension_module, register_addon, unused_loopback_port

    endpoint = f"tcp://127.0.0.1:{unused_loopback_port()}"
    argv = [sys.executable, "-m", "steadytalk_backend.cli", "serve", "--bind", endpoint, "--avatars", str(avatar)]
    if device:
        argv += ["--device", device]
    backend = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert "serving on" in backend.stdout.readline()
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        package = register_addon(endpoint, timeout=120.0)
        bpy.ops.steadytalk.load_avatar(directory=str(avatar))
        scene = bpy.context.scene
        scene.frame_start, scene.frame_end = 1, frames
        link = extension_module("backend_link")
        with tempfile.TemporaryDirectory() as tmp:
            scene.steadytalk.photoreal_dir = tmp
            # Warm-up: the backend loads the avatar on its first session.
            link.connect(link.Connection(endpoint, timeout=120.0))
            from steadytalk_shared.client import BackendClient

            with BackendClient(endpoint, timeout=300) as client:
                client.render_open(avatar.name, 1, 25.0)
            started = time.perf_counter()
            bpy.ops.steadytalk.render_photoreal()
            link.wait(3600)
            seconds = time.perf_counter() - started
            written = len(list(Path(tmp).glob("frame_*.png")))
            level, text = link.last_message
            if level != "INFO":
                raise SystemExit(f"pass failed: {text}")
            if os.environ.get("STEADYTALK_KEEP_FRAME"):
                import shutil

                shutil.copy(Path(tmp) / f"frame_{frames // 2:06d}.png", os.environ["STEADYTALK_KEEP_FRAME"])
        package.unregister()
    finally:
        backend.terminate()
        backend.wait()
    return written, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--avatar", type=Path, required=True, help="a trained avatar folder")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--device", default=None)
    parser.add_argument("--only", choices=("zmq", "headless", "blender"))
    args = parser.parse_args()
    avatar = args.avatar.resolve()
    if args.only in (None, "zmq"):
        per_frame = bench_zmq()
        print(f"zmq: 512x512 RGB frame there and back on loopback: {per_frame * 1000:.2f} ms per frame (median)")
    if args.only in (None, "headless"):
        count, seconds, loaded = bench_headless(avatar, args.device)
        print(
            f"headless: {count} frames in {seconds:.1f} s = {count / seconds:.1f} frames/s (avatar load {loaded:.1f} s)"
        )
    if args.only in (None, "blender"):
        count, seconds = bench_blender(avatar, args.frames, args.device)
        print(f"blender pass: {count} frames in {seconds:.1f} s = {count / seconds:.1f} frames/s (click to last PNG)")


if __name__ == "__main__":
    main()
