"""Face-shape pass throughput: frames/s of the backend rasterizer at 256 and 512, by batch size.

    python benchmarks/bench_shape_pass.py [--avatar AVATAR_DIR] [--seconds 3]

Poses come from a prepared avatar (real head motion and expressions, its own crop windows)
or, without one, from random plausible poses with the face filling two thirds of the crop.
Runs on the CPU, and on CUDA too when torch sees a GPU. Target: >= 200 frames/s at 256x256
on the CPU of the development machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from steadytalk_backend.face.fitting import identity_model
from steadytalk_backend.face.shape_pass import ShapePassRenderer
from steadytalk_shared import render_contract as rc
from steadytalk_shared.face_model import FaceModel

FRAMES = 256


def screens_from_avatar(avatar: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(avatar / "params.npz") as data:
        params = {k: data[k][:FRAMES] for k in data.files}
    windows = np.load(avatar / "crop_256" / "crop.npy")[:FRAMES]
    rig = identity_model(FaceModel.load(), np.load(avatar / "params.npz")["identity"])
    screens, centres = [], []
    for i in range(len(windows)):
        scale, ox, oy = windows[i] * np.array([size / 256, size / 256, size / 256])
        matrix = rc.model_matrix(
            params["scale"][i], params["rotation"][i], params["translation"][i], rc.Crop(scale, ox, oy, size, size)
        )
        vertices = rig.pose(params["coefficients"][i])
        screens.append(rc.project(matrix, vertices))
        centres.append(matrix[2, 3])
    return np.stack(screens).astype(np.float32), np.array(centres)


def random_screens(model: FaceModel, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    screens, centres = [], []
    face_height = float(np.ptp(model.vertices[:468, 1]))
    for _ in range(FRAMES):
        turn = Rotation.from_euler("xyz", rng.uniform(-15, 15, 3), degrees=True).as_matrix()
        rotation = np.diag([1.0, -1.0, -1.0]) @ turn  # image y down, depth away from the camera
        crop = rc.Crop.around(0.0, 0.0, 1.5 * face_height, size)
        matrix = rc.model_matrix(1.0, rotation, np.zeros(3), crop)
        vertices = model.pose(rng.uniform(0, 0.4, len(model.shape_names)))
        screens.append(rc.project(matrix, vertices))
        centres.append(matrix[2, 3])
    return np.stack(screens).astype(np.float32), np.array(centres)


def measure(renderer: ShapePassRenderer, screens: np.ndarray, centres: np.ndarray, batch: int, seconds: float) -> float:
    screens_t = torch.as_tensor(screens, device=renderer.device)
    centres_t = torch.as_tensor(centres, dtype=torch.float32, device=renderer.device)
    renderer.render(screens_t[:batch], centres_t[:batch])  # warm-up
    done, start, offset = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        if offset + batch > len(screens):
            offset = 0
        # The full contract: the encoded image, coverage, depth and mouth region.
        image = renderer.render(screens_t[offset : offset + batch], centres_t[offset : offset + batch]).color
        if renderer.device.type == "cuda":
            torch.cuda.synchronize()
        assert image.shape[0] == batch
        done, offset = done + batch, offset + batch
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--avatar", type=Path)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    model = FaceModel.load()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; poses: {args.avatar or 'random'}")
    print(f"{'device':8s}{'size':>6s}{'batch':>7s}{'frames/s':>10s}")
    for device in devices:
        for size in (256, 512):
            screens, centres = screens_from_avatar(args.avatar, size) if args.avatar else random_screens(model, size)
            renderer = ShapePassRenderer(model, size, size, device)
            for batch in (1, 8, 32, 128):
                fps = measure(renderer, screens, centres, batch, args.seconds)
                print(f"{device:8s}{size:>6d}{batch:>7d}{fps:>10.1f}")


if __name__ == "__main__":
    main()
