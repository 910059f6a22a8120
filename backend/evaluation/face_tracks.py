"""Real video as the whole-face models see it: the tracked upper face and head per frame, and
the speech of its soundtrack (phones, energy, pitch).

One pass per video: mediapipe's face mesh on every frame (``face.landmarks``), the measures of
``face.upper`` and the lip-sync engine's phones for the soundtrack. Results are cached in
``build/face_tracks`` (keyed by the file's size and modification time), so ``performance train``
and ``eval face`` share one tracking run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steadytalk_shared.curves import Phone

from ..avatar.video import probe, read_frames
from ..face.landmarks import FaceLandmarker, LandmarkerConfig
from ..face.upper import UpperFaceTrack, measure
from ..lipsync.audio import load_audio
from ..lipsync.prosody import frame_energy_db, pitch_hz
from ..performance.features import speech_timeline
from ..performance.train import TrainingClip

# Of the measures (v2: the 52-shape face model's rigid points) and phones; the landmarks have their own.
CACHE_VERSION = 2
LANDMARK_CACHE_VERSION = 1
DEFAULT_CACHE = Path("build") / "face_tracks"


@dataclass
class VideoTrack:
    name: str
    face: UpperFaceTrack
    energy_db: np.ndarray  # (N,) at 100 Hz
    f0: np.ndarray  # (N,) Hz at 100 Hz, 0 unvoiced
    phones: list[Phone]

    @property
    def num_frames(self) -> int:
        return len(self.face.found)

    def segment(self, start: float, end: float, name: str) -> VideoTrack:
        """The part between ``start`` and ``end`` seconds, its own clock starting at 0."""
        fps = self.face.fps
        lo, hi = int(round(start * fps)), min(int(round(end * fps)), self.num_frames)
        face = UpperFaceTrack.from_arrays(
            {k: v[lo:hi] for k, v in self.face.to_arrays().items() if k != "fps"} | {"fps": fps}
        )
        a, b = int(round(start * 100)), int(round(end * 100))
        phones = [
            Phone(p.phone, max(p.start, start) - start, min(p.end, end) - start, p.word)
            for p in self.phones
            if p.end > start and p.start < end
        ]
        return VideoTrack(name, face, self.energy_db[a:b], self.f0[a:b], phones)


def _cache_key(path: Path, version: int = CACHE_VERSION) -> str:
    stat = path.stat()
    return hashlib.sha1(f"{version}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def tracked_landmarks(path: Path, cache: Path = DEFAULT_CACHE, log=print) -> list[np.ndarray | None]:
    """mediapipe's (478, 3) pixel landmarks per frame of ``path`` (None: no face), cached on
    their own: the slow part, which a change of the measures or the face model does not redo."""
    cached = cache / "landmarks" / f"{path.stem}-{_cache_key(path, LANDMARK_CACHE_VERSION)}.npz"
    if cached.exists():
        with np.load(cached, allow_pickle=False) as data:
            return [p.astype(np.float64) if f else None for p, f in zip(data["points"], data["found"], strict=True)]
    info = probe(path)
    log(f"tracking {path.name} ({info.duration:.0f} s, {info.width}x{info.height})")
    points = []
    with FaceLandmarker(LandmarkerConfig(max_faces=1)) as landmarker:
        for rgb in read_frames(path):
            faces = landmarker.detect(rgb)
            points.append(faces[0] if faces and len(faces[0]) >= 478 else None)
    found = np.array([p is not None for p in points])
    stack = np.zeros((len(points), 478, 3), np.float32)
    for index, p in enumerate(points):
        if p is not None:
            stack[index] = p[:478]
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    with open(partial, "wb") as handle:
        np.savez_compressed(handle, points=stack, found=found)
    partial.replace(cached)
    return points


def track_video(path: Path, cache: Path = DEFAULT_CACHE, engine=None, log=print) -> VideoTrack:
    """Track ``path`` (or read it from ``cache``)."""
    path = Path(path)
    cached = cache / f"{path.stem}-{_cache_key(path)}.npz"
    if cached.exists():
        with np.load(cached, allow_pickle=False) as data:
            phones = [Phone(p[0], float(p[1]), float(p[2]), p[3]) for p in json.loads(str(data["phones"]))]
            face = UpperFaceTrack.from_arrays(
                {k.removeprefix("face_"): data[k] for k in data.files if k.startswith("face_")}
            )
            return VideoTrack(path.stem, face, data["energy_db"], data["f0"], phones)
    info = probe(path)
    points = tracked_landmarks(path, cache, log)
    face = measure(points, info.fps)
    samples = load_audio(path)
    energy = frame_energy_db(samples)
    f0, _ = pitch_hz(samples)
    if engine is None:
        from ..lipsync.engine import LipsyncEngine

        engine = LipsyncEngine()
    phones = engine.run(path, fps=info.fps, whole_face=False).phones
    n = min(len(energy), len(f0))
    track = VideoTrack(path.stem, face, energy[:n].astype(np.float32), f0[:n].astype(np.float32), phones)
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {f"face_{k}": v for k, v in face.to_arrays().items()}
    phones_json = json.dumps([[p.phone, p.start, p.end, p.word] for p in phones])
    partial = cached.with_suffix(".partial")
    with open(partial, "wb") as handle:
        np.savez_compressed(handle, energy_db=track.energy_db, f0=track.f0, phones=np.array(phones_json), **arrays)
    partial.replace(cached)
    return track


# Held out of all training: the GRID validation clips and the last part of each Obama address.
OBAMA = {"obama_address_oilspill_20s.mp4": 14.0, "obama_weekly_address_10s.mp4": 7.0}  # training ends here
CALM, LIVELY = "calm", "lively"


def training_clip(track: VideoTrack, style: str) -> TrainingClip:
    f = track.face
    timeline = speech_timeline(track.phones, track.energy_db, track.f0, track.num_frames, f.fps)
    return TrainingClip(track.name, style, timeline, f.closure, f.gaze, f.brows, f.head)


def corpus(
    data: Path, cache: Path = DEFAULT_CACHE, log=print, held_only: bool = False
) -> tuple[list[TrainingClip], list[TrainingClip]]:
    """(training clips, held-out clips) of ``data/video``: GRID s1's 300 s cut into its 100
    sentences (cuts are not motion) and the first part of each Obama address for training;
    the 10 GRID validation clips and the rest of each address held out. ``held_only``: skip
    the GRID training video (evaluation needs only what was held out)."""
    video = Path(data) / "video"
    train, held = [], []
    grid = video / "grid_s1_train_300s.mp4"
    clips_tsv = video / "grid_s1_train_300s.clips.tsv"
    if grid.exists() and clips_tsv.exists() and not held_only:
        whole = track_video(grid, cache, log=log)
        for line in clips_tsv.read_text().splitlines()[1:]:
            index, grid_id, start, end, _ = line.split("\t")
            train.append(training_clip(whole.segment(float(start), float(end), grid_id), CALM))
    for name, split in OBAMA.items():
        if (video / name).exists():
            whole = track_video(video / name, cache, log=log)
            end = whole.num_frames / whole.face.fps
            if not held_only:
                train.append(training_clip(whole.segment(0.0, split, f"{whole.name}[0:{split:g}]"), LIVELY))
            held.append(training_clip(whole.segment(split, end, f"{whole.name}[{split:g}:]"), LIVELY))
    for path in sorted((video / "grid_s1_val").glob("*.mpg")):
        held.append(training_clip(track_video(path, cache, log=log), CALM))
    return train, held
