"""Keying speed in Blender (the ``bpy`` module): minutes of curves onto the face rig's shape keys.

    python benchmarks/bench_keying.py [--minutes 10] [--fps 30]

Target (the Blender extension issue): 10 minutes at 30 fps on 25+ channels keyed in at most 2 s
of Blender time after the curves arrive.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import extension_module  # noqa: E402  (the extension's own import path)

from steadytalk_shared.face_model import FaceModel  # noqa: E402
from steadytalk_shared.schema import CHANNELS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()
    frames = int(args.minutes * 60 * args.fps)
    rng = np.random.default_rng(0)
    curves = {name: np.clip(np.cumsum(rng.normal(0, 0.02, frames)), 0, 1) for name in CHANNELS}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    obj = extension_module("rig").create_face_rig(scene.collection, FaceModel.load())
    keying = extension_module("keying")
    times = []
    for _ in range(3):
        started = time.perf_counter()
        keying.key_curves(obj, curves, start_frame=1, frame_step=1.0, action_name="bench")
        times.append(time.perf_counter() - started)
    keys = frames * len(curves)
    print(f"bpy {bpy.app.version_string}: {args.minutes:g} min at {args.fps:g} fps, {len(curves)} channels")
    print(f"{keys} keys in {np.median(times):.2f} s (median of 3 runs, {keys / np.median(times) / 1e6:.2f} M keys/s)")


if __name__ == "__main__":
    main()
