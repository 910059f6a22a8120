"""``steadytalk eval tracking``: how well ``prepare`` tracked a video, in numbers.

- tracked share and reprojection error (fitted model vs mediapipe, over inter-ocular distance);
- stability: MSI (BRIEF definition) of the lip keypoints and of the jaw line, raw mediapipe
  track against the same track after the adaptive smoother (the per-frame kernel width
  predicted from the fitted coefficients, applied to the keypoints), a fixed Gaussian, and the
  fitted model's own keypoints with raw and smoothed coefficients; per clip where the video
  is a join of clips (a ``.clips.tsv`` beside it: cuts are not motion);
- prepare's throughput in frames/s, from the stage times in the manifest;
- with held-out clips: Pearson correlation of the fitted jawOpen with the lip-sync engine's
  jawOpen for the same audio (with and without the transcript).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from steadytalk_shared.curves import LipsyncResult
from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.msi import landmark_msi
from steadytalk_shared.schema import CHANNELS
from steadytalk_shared.smoothing import default_smoother, gaussian_smooth

from ..avatar.prepare import interpolate_missing
from ..face.landmarks import MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT, NUM_MESH_POINTS
from .lipsync import FIXED_SIGMA, find_clips

# mediapipe's lower face oval, ear to ear under the chin: the jaw variant of MSI.
JAW_LINE = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)
JAW_OPEN = CHANNELS.index("jawOpen")


def keypoint_sets(model: FaceModel) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    lips = np.concatenate([model.regions.lips_outer, model.regions.lips_inner])
    corners = (int(np.nonzero(lips == MOUTH_CORNER_LEFT)[0][0]), int(np.nonzero(lips == MOUTH_CORNER_RIGHT)[0][0]))
    jaw = np.array((*JAW_LINE, MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT))  # corners only set the scale
    return {"lips": (lips, corners), "jaw": (jaw, (len(jaw) - 2, len(jaw) - 1))}


def clip_ranges(manifest: dict) -> list[tuple[int, int]]:
    """Frame ranges of the clips a video joins (from ``<video>.clips.tsv``), else the whole video."""
    fps, frames = manifest["video"]["fps"], manifest["video"]["frames"]
    table = Path(manifest["source"]["path"]).with_suffix(".clips.tsv")
    if not table.exists():
        return [(0, frames)]
    ranges = []
    for line in table.read_text().splitlines()[1:]:
        start, end = (float(v) for v in line.split("\t")[2:4])
        ranges.append((int(round(start * fps)), min(frames, int(round(end * fps)))))
    return ranges


def model_keypoints(params: dict[str, np.ndarray], coefficients: np.ndarray, rig: FaceModel) -> np.ndarray:
    """(T, 468, 2) image positions of the fitted model with the given coefficients."""
    shapes = rig.pose(coefficients)[:, :NUM_MESH_POINTS].astype(np.float64)
    posed = params["scale"][:, None, None] * np.einsum("tij,tvj->tvi", params["rotation"], shapes)
    return (posed + params["translation"][:, None])[..., :2]


def stability(avatar: Path) -> dict:
    manifest = json.loads((avatar / "manifest.json").read_text())
    with np.load(avatar / "landmarks.npz") as data:
        # Frames without a face hold zeros; the fit used them interpolated, and so does this.
        track = interpolate_missing(data["points"][:, :NUM_MESH_POINTS, :2].astype(np.float64), data["found"])
    with np.load(avatar / "params.npz") as data:
        params = {k: data[k] for k in data.files}
    rig = FaceModel.load(avatar / "blender" / "rig.npz")
    smoother = default_smoother()
    sets = keypoint_sets(rig)
    rows: dict[str, dict[str, list[float]]] = {}
    for start, end in clip_ranges(manifest):
        if end - start < 24:
            continue
        raw = track[start:end]
        coefficients = params["coefficients"][start:end].astype(np.float64)
        sigma = smoother.predict_sigma(coefficients)
        sub = {k: v[start:end] for k, v in params.items() if k in ("scale", "rotation", "translation")}
        flat = raw.reshape(len(raw), -1)
        variants = {
            "mediapipe landmarks, raw": raw,
            "mediapipe landmarks, adaptive smoother": gaussian_smooth(flat, sigma).reshape(raw.shape),
            f"mediapipe landmarks, fixed Gaussian (sigma {FIXED_SIGMA})": gaussian_smooth(flat, FIXED_SIGMA).reshape(
                raw.shape
            ),
            "fitted model, raw coefficients": model_keypoints(sub, coefficients, rig),
            "fitted model, adaptively smoothed coefficients": model_keypoints(
                sub, smoother.smooth(coefficients)[0], rig
            ),
        }
        for name, points in variants.items():
            row = rows.setdefault(name, {"lips": [], "jaw": []})
            for part, (indices, corners) in sets.items():
                row[part].append(landmark_msi(points[:, indices], corners))
    return {name: {part: float(np.mean(v)) for part, v in row.items()} for name, row in rows.items()}


def throughput(manifest: dict) -> float:
    seconds = sum(stage.get("seconds", 0.0) for stage in manifest["stages"].values())
    return manifest["video"]["frames"] / seconds if seconds else float("nan")


def jaw_correlation(clips_dir: Path, work_dir: Path, log=print) -> dict:
    """Prepare every held-out clip and correlate its fitted jawOpen with the engine's."""
    from ..avatar.prepare import PrepareConfig, Preparer
    from ..lipsync.engine import LipsyncEngine

    engine = LipsyncEngine()
    fitted_all: list[np.ndarray] = []
    engine_all: dict[str, list[np.ndarray]] = {"with transcript": [], "without transcript": []}
    per_clip: dict[str, list[float]] = {"with transcript": [], "without transcript": []}
    for index, clip in enumerate(find_clips(clips_dir), start=1):
        video = clips_dir / f"{clip.name}.mpg"
        if not video.exists():
            continue
        out = work_dir / clip.name
        manifest = Preparer(video, out, PrepareConfig(sizes=(256,))).run()
        with np.load(out / "params.npz") as data:
            fitted = data["coefficients"][:, JAW_OPEN].astype(np.float64)
        fitted_all.append(fitted)
        for mode, transcript in (("with transcript", clip.transcript), ("without transcript", None)):
            if transcript is None:  # prepare already ran the engine without one, at the video's rate
                result = LipsyncResult.from_dict(json.loads((out / "lipsync.json").read_text()))
            else:
                result = engine.run(out / "audio.wav", transcript, fps=manifest.video["fps"])
            predicted = np.zeros_like(fitted)
            count = min(len(fitted), len(result.smoothed))
            predicted[:count] = result.smoothed[:count, JAW_OPEN]
            engine_all[mode].append(predicted)
            per_clip[mode].append(float(np.corrcoef(fitted, predicted)[0, 1]))
        log(f"  [{index}] {clip.name}")
    fitted_joined = np.concatenate(fitted_all)
    return {
        mode: {
            "pearson_all_frames": float(np.corrcoef(fitted_joined, np.concatenate(engine_all[mode]))[0, 1]),
            "pearson_mean_per_clip": float(np.mean(per_clip[mode])),
            "clips": len(per_clip[mode]),
        }
        for mode in engine_all
    }


def evaluate_tracking(avatar: Path, clips_dir: Path | None, work_dir: Path, log=print) -> dict:
    manifest = json.loads((avatar / "manifest.json").read_text())
    report = {
        "avatar": str(avatar),
        "frames": manifest["video"]["frames"],
        "resolution": [manifest["video"]["width"], manifest["video"]["height"]],
        "tracked_share": manifest["report"]["tracked_share"],
        "reprojection_error_iod": manifest["report"]["reprojection_error_iod"],
        "prepare_frames_per_second": throughput(manifest),
        "stage_seconds": {k: v["seconds"] for k, v in manifest["stages"].items()},
        "msi": stability(avatar),
    }
    if clips_dir is not None:
        report["jaw_open_correlation"] = jaw_correlation(clips_dir, work_dir, log)
    return report


def format_tracking_report(report: dict) -> str:
    error = report["reprojection_error_iod"]
    width, height = report["resolution"]
    lines = [
        f"Tracking of {report['avatar']} ({report['frames']} frames, {width}x{height})",
        f"  tracked frames       {report['tracked_share']:.2%}",
        f"  reprojection error   mean {error['mean']:.2%}, 95th percentile {error['p95']:.2%} of the eye distance",
        f"  prepare throughput   {report['prepare_frames_per_second']:.1f} frames/s "
        f"({', '.join(f'{k} {v:.1f} s' for k, v in report['stage_seconds'].items())})",
        "",
        f"{'MSI (higher is steadier)':52s}{'lips':>8s}{'jaw':>8s}",
    ]
    for name, row in report["msi"].items():
        lines.append(f"{name:52s}{row['lips']:>8.3f}{row['jaw']:>8.3f}")
    if "jaw_open_correlation" in report:
        lines += ["", "jawOpen, fitted vs lip-sync engine (Pearson r)"]
        for mode, row in report["jaw_open_correlation"].items():
            lines.append(
                f"  {mode:20s} all frames {row['pearson_all_frames']:.3f}, "
                f"mean per clip {row['pearson_mean_per_clip']:.3f} ({row['clips']} clips)"
            )
    return "\n".join(lines)
