"""Does fitting track the upper face? The fitted brow and eye-look coefficients of real video
against the landmark measures the performance models learn from (``face.upper``).

    python benchmarks/bench_upper_tracking.py [--data ../shared/data] [--cache build/face_tracks]

Per held-out clip (the 10 GRID s1 validation clips, the held-out end of each Obama address):
the face model fitted to every frame (``Fitter.track``, as ``prepare`` does), brow heights from
the fitted brow coefficients (``upper_face.brows_from_channels``) correlated with the measured
brow heights (landmarks above the eye corners), the gaze from the fitted ``eyeLook*``
(``gaze_from_channels``) against the measured iris gaze, and how active squint, wide and sneer
are. Landmarks come from the ``eval face`` cache (tracked once).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from steadytalk_backend.avatar.video import probe
from steadytalk_backend.evaluation.face_tracks import OBAMA, tracked_landmarks
from steadytalk_backend.face.fitting import Fitter
from steadytalk_backend.face.upper import measure
from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.schema import CHANNEL_INDEX
from steadytalk_shared.upper_face import brows_from_channels, gaze_from_channels

OTHERS = ("eyeSquintLeft", "eyeWideLeft", "noseSneerLeft", "browDownLeft", "browInnerUp", "browOuterUpLeft")


def clips(data: Path) -> list[tuple[Path, float]]:
    video = data / "video"
    held = [(p, 0.0) for p in sorted((video / "grid_s1_val").glob("*.mpg"))]
    return held + [(video / name, start) for name, start in OBAMA.items() if (video / name).exists()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache", type=Path, default=Path("build/face_tracks"))
    args = parser.parse_args()
    model = FaceModel.load()
    rows, started = [], time.process_time()
    for path, start in clips(args.data):
        fps = probe(path).fps
        points = tracked_landmarks(path, args.cache)
        first = int(round(start * fps))
        measured = measure(points, fps, model)
        fitter = Fitter(model)
        filled = [p for p in points if p is not None]
        found = np.array([p is not None for p in points])
        _, fits = fitter.track(filled)
        coefficients = np.zeros((len(points), len(model.shape_names)))
        coefficients[found] = np.stack([f.coefficients for f in fits])
        keep = found & (np.arange(len(points)) >= first) & (measured.closure.max(axis=1) < 0.3)
        brows = brows_from_channels(coefficients)[keep]
        gaze = gaze_from_channels(coefficients)[keep]
        truth_brows, truth_gaze = measured.brows[keep], measured.gaze[keep]
        r_inner = np.corrcoef(brows[:, 0], truth_brows[:, 0])[0, 1]
        r_outer = np.corrcoef(brows[:, 1], truth_brows[:, 1])[0, 1]
        centred = gaze - np.median(gaze, axis=0)  # both measured from their own rest
        r_gaze = [np.corrcoef(centred[:, k], truth_gaze[:, k])[0, 1] for k in range(2)]
        error = np.degrees(np.abs(centred - truth_gaze).mean(axis=0))
        active = {n: float(np.percentile(coefficients[keep, CHANNEL_INDEX[n]], 95)) for n in OTHERS}
        rows.append((path.stem, r_inner, r_outer, *r_gaze, *error, active))
        print(
            f"{path.stem:32s} brow r inner {r_inner:.2f} outer {r_outer:.2f} | gaze r yaw {r_gaze[0]:.2f} "
            f"pitch {r_gaze[1]:.2f}, |error| {error[0]:.2f}/{error[1]:.2f} deg | p95 "
            + " ".join(f"{n.replace('Left', '')} {v:.2f}" for n, v in active.items())
        )
    table = np.array([r[1:7] for r in rows], dtype=float)
    mean = np.nanmean(table, axis=0)
    print(
        f"mean over {len(rows)} clips: brow r inner {mean[0]:.3f} outer {mean[1]:.3f}; gaze r yaw {mean[2]:.3f} "
        f"pitch {mean[3]:.3f}, mean |error| {mean[4]:.2f}/{mean[5]:.2f} deg; {time.process_time() - started:.0f} s CPU"
    )


if __name__ == "__main__":
    main()
