"""``steadytalk eval face``: the whole-face models on held-out real video against what was tracked.

Held-out clips (never in training, ``face_tracks.corpus``): the 10 GRID s1 validation clips
(style calm) and the end of each Obama address (style lively). Each clip's own speech drives
the models (``SEEDS`` seeds); the same numbers are taken on the tracked truth and on two
baselines: a still face, and a random process with the right average rate (blinks of the
model's shape at the natural rate but at random times; head noise of the model's smoothness at
the tracked std, deaf to the speech; brows as that noise).

- blinks: rate per minute, duration (median, Wasserstein distance to the real durations), and
  the share starting in a pause or within 0.5 s after one (what speech timing adds);
- head: per-axis std (degrees), Wasserstein distance between generated and real per-axis
  speed distributions (deg/s), beat-align score (Bailando/SadTalker: motion beats are local
  minima of head speed, each scored by exp(-d^2 / 2 sigma^2) to the nearest prosodic beat,
  sigma 0.1 s), diversity (std across seeds, degrees, mean over frames) and MSI of the face's
  keypoints moved by the head track (BRIEF definition; 2 is perfectly smooth);
- brows: Pearson r of the generated inner brow height with the tracked one (per clip, mean).
Plots: per clip, real against generated tracks (``tracks_<clip>.png``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.head import matrix_from_euler
from steadytalk_shared.msi import landmark_msi
from steadytalk_shared.smoothing import gaussian_smooth

from ..face.landmarks import MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT, NUM_MESH_POINTS
from ..performance.blinks import detect_blinks
from ..performance.head import TRACK_NOISE_FRAMES
from ..performance.model import FaceOptions, Performer, default_performer
from ..performance.train import TrainingClip
from .face_tracks import DEFAULT_CACHE, corpus

SEEDS = (0, 1, 2, 3, 4)
BEAT_SIGMA = 0.1
PIVOT = np.array([0.0, -0.09, -0.09])  # metres: the head turns about the neck, below and behind the face


@dataclass
class Tracks:
    """One version of a clip's upper face: real, generated or a baseline."""

    closure: np.ndarray  # (T, 2)
    head: np.ndarray  # (T, 3) radians
    brow: np.ndarray  # (T,) inner brow mm
    gaze: np.ndarray | None = None  # (T, 2) yaw, pitch radians (plots only)


def generated(performer: Performer, clip: TrainingClip, seed: int) -> Tracks:
    perf = performer.perform(clip.timeline, FaceOptions(seed=seed, style=clip.style))
    closure = np.stack([perf.channels["eyeBlinkLeft"], perf.channels["eyeBlinkRight"]], 1)
    return Tracks(closure, perf.head.astype(np.float64), perf.brows[:, 0], perf.gaze.astype(np.float64))


def still(clip: TrainingClip) -> Tracks:
    n = clip.timeline.num_frames
    return Tracks(np.zeros((n, 2)), np.zeros((n, 3)), np.zeros(n))


def random_process(performer: Performer, clip: TrainingClip, seed: int, head_std: np.ndarray) -> Tracks:
    """Right average rates, no speech: blinks uniform in time at the natural rate, head noise as
    smooth as the model's moves at ``head_std``, brows as smooth noise at the tracked residual size."""
    rng = np.random.default_rng(1000 + seed)
    t, fps = clip.timeline, clip.timeline.fps
    model = performer.blinks
    events, time = [], rng.exponential(60.0 / model.blinks_per_minute)
    while time < t.num_frames / fps:
        duration = float(np.clip(np.exp(rng.normal(model.duration_log_mean, model.duration_log_std)), 0.08, 0.5))
        events.append({"start": time, "duration": duration, "eyes": (1.0, 1.0)})
        time += duration + model.refractory + rng.exponential(60.0 / model.blinks_per_minute)
    head_model = performer.heads[clip.style]
    head = np.zeros((t.num_frames, 3))
    for axis in range(3):
        width = 0.5 * head_model.move_seconds * fps  # as smooth as the model's moves
        noise = gaussian_smooth(rng.normal(0, 1, (t.num_frames + int(8 * width), 1)), width)[:, 0]
        noise = noise[int(4 * width) : int(4 * width) + t.num_frames]
        head[:, axis] = noise / max(noise.std(), 1e-9) * head_std[axis]
    brow = gaussian_smooth(rng.normal(0, 1, (t.num_frames, 1)), 0.5 * fps)[:, 0]
    brow = brow / max(brow.std(), 1e-9) * performer.brows.residual_mm[0]
    return Tracks(model.curves(events, t.num_frames, fps), head, brow)


def real(clip: TrainingClip) -> Tracks:
    """The tracked truth; the head without the tracker's frame-to-frame noise (the same light
    smoothing the head model is fitted after), or its speeds would be the tracker's."""
    head = gaussian_smooth(clip.head.astype(np.float64), TRACK_NOISE_FRAMES).astype(np.float64)
    return Tracks(clip.closure, head, clip.brows[:, 0].astype(np.float64), clip.gaze.astype(np.float64))


def _blink_stats(clips: list[TrainingClip], versions: list[Tracks]) -> dict:
    events = [detect_blinks(v.closure, c.timeline.fps) for c, v in zip(clips, versions, strict=True)]
    minutes = sum(c.timeline.num_frames / c.timeline.fps for c in clips) / 60.0
    durations = np.array([e["duration"] for ev in events for e in ev])
    near = []
    for c, ev in zip(clips, events, strict=True):
        for e in ev:
            i = min(int(round(e["start"] * c.timeline.fps)), c.timeline.num_frames - 1)
            recent = c.timeline.since_speech[i] == np.inf or c.timeline.since_speech[i] < 0.5
            near.append(bool(recent or c.timeline.pause_length[i] > 0))
    return {
        "count": int(len(durations)),
        "per_minute": float(len(durations) / minutes),
        "durations": durations,
        "median_duration": float(np.median(durations)) if len(durations) else None,
        "near_pause": float(np.mean(near)) if near else None,
    }


def _wasserstein(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) == 0 or len(b) == 0:
        return None
    q = np.linspace(0.0, 1.0, 101)
    return float(np.mean(np.abs(np.quantile(a, q) - np.quantile(b, q))))


def beat_align(head: np.ndarray, beats: np.ndarray, fps: float) -> float | None:
    speed = np.linalg.norm(np.diff(head, axis=0), axis=1)
    if len(beats) == 0 or len(speed) < 3:
        return None
    minima = np.flatnonzero((speed[1:-1] < speed[:-2]) & (speed[1:-1] < speed[2:])) + 1
    if len(minima) == 0:
        return 0.0
    times = (minima + 0.5) / fps
    distance = np.min(np.abs(times[:, None] - beats[None, :]), axis=1)
    return float(np.mean(np.exp(-(distance**2) / (2 * BEAT_SIGMA**2))))


def head_msi(head: np.ndarray, model: FaceModel) -> float:
    points = model.vertices[:NUM_MESH_POINTS].astype(np.float64) - PIVOT
    moved = np.einsum("tij,kj->tki", matrix_from_euler(head), points)
    return landmark_msi(moved[:, :, :2], (MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT))


def _head_stats(clips: list[TrainingClip], versions: list[Tracks], model: FaceModel) -> dict:
    heads = np.concatenate([v.head for v in versions])
    speeds = [
        np.concatenate([np.abs(np.diff(v.head[:, a])) * c.timeline.fps for c, v in zip(clips, versions, strict=True)])
        for a in range(3)
    ]
    aligns = [beat_align(v.head, c.timeline.beats, c.timeline.fps) for c, v in zip(clips, versions, strict=True)]
    aligns = [a for a in aligns if a is not None]
    return {
        "std_deg": np.degrees(heads.std(axis=0)).round(3).tolist(),
        "speeds": [np.degrees(s) for s in speeds],
        "beat_align": float(np.mean(aligns)) if aligns else None,
        "msi": float(np.mean([head_msi(v.head, model) for v in versions])),
    }


def _brow_r(versions: list[Tracks], truth: list[Tracks]) -> float | None:
    rs = [
        np.corrcoef(v.brow, t.brow)[0, 1]
        for v, t in zip(versions, truth, strict=True)
        if v.brow.std() > 0 and t.brow.std() > 0
    ]
    return float(np.mean(rs)) if rs else None


def evaluate_face(
    data: Path, out: Path, cache: Path = DEFAULT_CACHE, performer: Performer | None = None, log=print
) -> dict:
    performer = performer or default_performer()
    _, held = corpus(data, cache, log=log, held_only=True)
    if not held:
        raise ValueError(f"no held-out clips found under {data / 'video'}")
    model = FaceModel.load()
    truth = [real(c) for c in held]
    per_seed = {name: [] for name in ("generated", "random")}
    real_head_std = {}
    for style in {c.style for c in held}:
        real_head_std[style] = np.concatenate(
            [t.head for c, t in zip(held, truth, strict=True) if c.style == style]
        ).std(axis=0)
    for seed in SEEDS:  # each clip its own seed (one seed for all would repeat the same draws)
        per_seed["generated"].append([generated(performer, c, 100 * seed + i) for i, c in enumerate(held)])
        per_seed["random"].append(
            [random_process(performer, c, 100 * seed + i, real_head_std[c.style]) for i, c in enumerate(held)]
        )
    report = {"clips": [c.name for c in held], "seeds": list(SEEDS), "rows": {}}
    real_blinks, real_head = _blink_stats(held, truth), _head_stats(held, truth, model)
    for name, runs in [
        ("real video", [truth]),
        ("generated", per_seed["generated"]),
        ("still face", [[still(c) for c in held]]),
        ("random process", per_seed["random"]),
    ]:
        rows = []
        for versions in runs:
            blinks, head = _blink_stats(held, versions), _head_stats(held, versions, model)
            rows.append(
                {
                    "blinks_per_minute": blinks["per_minute"],
                    "blink_median_s": blinks["median_duration"],
                    "blink_duration_w1_s": _wasserstein(blinks["durations"], real_blinks["durations"]),
                    "blinks_near_pause": blinks["near_pause"],
                    "head_std_deg": head["std_deg"],
                    "head_speed_w1_deg_s": [
                        _wasserstein(g, r) for g, r in zip(head["speeds"], real_head["speeds"], strict=True)
                    ],
                    "beat_align": head["beat_align"],
                    "head_msi": head["msi"],
                    "brow_r": _brow_r(versions, truth),
                }
            )
        report["rows"][name] = _mean_rows(rows)
    gens = np.stack([np.concatenate([v.head for v in versions]) for versions in per_seed["generated"]])
    report["rows"]["generated"]["diversity_deg"] = float(np.degrees(gens.std(axis=0)).mean())
    rand = np.stack([np.concatenate([v.head for v in versions]) for versions in per_seed["random"]])
    report["rows"]["random process"]["diversity_deg"] = float(np.degrees(rand.std(axis=0)).mean())
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = [str(p) for p in _plots(held, truth, per_seed["generated"][0], out)]
    (out / "face_report.json").write_text(json.dumps(report, indent=1))
    return report


def _mean_rows(rows: list[dict]) -> dict:
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows if r[key] is not None]
        if not values:
            out[key] = None
        elif isinstance(values[0], list):
            out[key] = np.mean(np.array(values, dtype=float), axis=0).round(4).tolist()
        else:
            out[key] = round(float(np.mean(values)), 4)
    return out


def _plots(clips: list[TrainingClip], truth: list[Tracks], gen: list[Tracks], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    calm = [c.name for c in clips if c.style == "calm"][:2]  # two GRID clips and every Obama one
    for clip, t, g in zip(clips, truth, gen, strict=True):
        if clip.style == "calm" and clip.name not in calm:
            continue
        times = np.arange(clip.timeline.num_frames) / clip.timeline.fps
        fig, axes = plt.subplots(6, 1, figsize=(10, 10.5), sharex=True)
        rows = [
            ("eye closure (mean of both)", t.closure.mean(1), g.closure.mean(1), 1.0),
            ("head yaw (deg)", np.degrees(t.head[:, 0]), np.degrees(g.head[:, 0]), None),
            ("head pitch (deg, + chin down)", np.degrees(t.head[:, 1]), np.degrees(g.head[:, 1]), None),
            ("head roll (deg)", np.degrees(t.head[:, 2]), np.degrees(g.head[:, 2]), None),
            ("inner brow (mm from rest)", t.brow - np.median(t.brow), g.brow, None),
            ("gaze yaw (deg, + to its left)", np.degrees(t.gaze[:, 0]), np.degrees(g.gaze[:, 0]), None),
        ]
        for ax, (label, a, b, top) in zip(axes, rows, strict=True):
            for lo, hi in _spans(~clip.timeline.speech):
                ax.axvspan(lo / clip.timeline.fps, hi / clip.timeline.fps, color="0.92")
            ax.plot(times, a, color="k", lw=1.2, label="tracked (real)")
            ax.plot(times, b, color="tab:red", lw=1.2, label="generated (seed 0)")
            for beat in clip.timeline.beats:
                ax.axvline(beat, color="tab:blue", lw=0.5, alpha=0.4)
            ax.set_ylabel(label, fontsize=8)
            if top:
                ax.set_ylim(-0.05, top + 0.05)
        axes[0].legend(loc="upper right", fontsize=8)
        axes[0].set_title(f"{clip.name} ({clip.style}): grey = pause, blue = prosodic beats")
        axes[-1].set_xlabel("seconds")
        fig.tight_layout()
        path = out / f"tracks_{clip.name.replace('[', '_').replace(']', '').replace(':', '-')}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def format_face_report(report: dict) -> str:
    def f(value, digits=3):
        if value is None:
            return "-"
        if isinstance(value, list):
            return "/".join(f"{v:.{digits}f}" if v is not None else "-" for v in value)
        return f"{value:.{digits}f}"

    lines = [
        f"whole face on {len(report['clips'])} held-out clips, {len(report['seeds'])} seeds",
        "| | blinks/min | median blink s | duration W1 s | blinks near pause | head std deg (y/p/r) "
        "| speed W1 deg/s (y/p/r) | beat align | head MSI | brow r | diversity deg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["rows"].items():
        lines.append(
            f"| {name} | {f(row['blinks_per_minute'], 1)} | {f(row['blink_median_s'])} "
            f"| {f(row['blink_duration_w1_s'])} "
            f"| {f(row['blinks_near_pause'], 2)} | {f(row['head_std_deg'], 2)} | {f(row['head_speed_w1_deg_s'], 2)} "
            f"| {f(row['beat_align'])} | {f(row['head_msi'])} | {f(row['brow_r'])} | {f(row.get('diversity_deg'), 2)} |"
        )
    lines.append("plots: " + ", ".join(report["plots"]))
    return "\n".join(lines)
