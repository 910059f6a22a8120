"""A trained avatar's whole per-frame render path, frames/s: conditioning (the shape pass),
the person's texture (retrieval and warps) where the model has it, the network over windows
of 12 with their context, pasting back and compositing. Video decoding and writing are not
included (``bench_render_pass.py`` times those end to end).

    .venv/bin/python benchmarks/bench_avatar_render.py --avatar AVATAR [--model NAME=DIR ...] [--frames 120]

Without ``--model`` it times ``AVATAR/model``. Frames/s is given by the wall clock and by the
process CPU time (user + sys of all threads), which other work on a shared machine does not
inflate: ``cpu f/s`` x threads is what an idle machine of that many cores would reach.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steadytalk_backend.render.data import AvatarFrames  # noqa: E402
from steadytalk_backend.render.inference import AvatarRenderer  # noqa: E402
from steadytalk_backend.render.presets import MODEL_DIR  # noqa: E402


def bench(avatar: Path, model_dir: Path, frames: int, device: str) -> dict:
    renderer = AvatarRenderer(avatar, model_dir, device=device)
    clip = AvatarFrames.load(avatar, renderer.config.size, max_frames=frames)
    audio = renderer.audio_for(clip.features, clip.num_frames, clip.fps)
    index = np.arange(clip.num_frames)

    def run() -> int:
        return sum(1 for _ in renderer.stream(renderer.frame_inputs(clip.coefficients, audio, clip, index)))

    run()  # warm-up (allocations, first-call costs)
    wall, cpu = time.perf_counter(), time.process_time()
    count = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"frames": count, "wall_fps": count / wall, "cpu_fps": count / cpu, "texture": renderer.texture is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--avatar", type=Path, required=True)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.model) or {"model": str(args.avatar / MODEL_DIR)}
    print(f"device: {args.device}, {torch.get_num_threads()} threads; {args.frames} frames of {args.avatar}")
    print(f"{'model':16s} {'texture':>7s} {'wall f/s':>9s} {'cpu f/s':>9s}")
    for name, folder in models.items():
        r = bench(args.avatar, Path(folder), args.frames, args.device)
        print(f"{name:16s} {'yes' if r['texture'] else 'no':>7s} {r['wall_fps']:9.1f} {r['cpu_fps']:9.1f}")


if __name__ == "__main__":
    main()
