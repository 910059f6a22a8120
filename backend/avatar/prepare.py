"""``steadytalk prepare VIDEO --out AVATAR_DIR``: a reference video -> an avatar folder.

Stages (each one writes its files atomically and is recorded in the manifest, so a rerun
skips what is done; the landmark stage also checkpoints every few hundred frames):

1. landmarks   decode at a constant frame rate, mediapipe face mesh (478 points) per frame
2. fit         identity (once, from rest frames), head pose and ARKit coefficients per frame;
               frames without a face get interpolated landmarks and are marked untracked
3. crops       a stable face-centred crop per output size (256, 512) as H.264, the crop
               window of every frame, the mouth-region masks; the full frame as the plate
4. audio       16 kHz mono WAV, the lip-sync engine's curves and its S2A feature sequence
5. blender     what the add-on needs to rebuild the person: rig (identity mesh with the
               schema's shape keys), camera, per-frame head pose, the plate's path
6. style       the person's blinks, gaze, brows and head motion (``person_style``)

Folder layout and array meanings are described in ``manifest.json`` itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from steadytalk_shared import render_contract as rc
from steadytalk_shared.face_model import FaceModel
from steadytalk_shared.schema import CHANNELS, SCHEMA_VERSION

from ..atomic import atomic_output, savez_atomic
from ..errors import SteadyTalkError
from ..face.fitting import Fitter
from ..face.landmarks import NUM_MESH_POINTS
from .manifest import AVATAR_VERSION, FILES, STAGES, Manifest, source_fingerprint
from .params import write_params
from .stages import DrawingStages, Progress
from .video import CfrReport, VideoError, constant_rate, frames_at_constant_rate, probe

log = logging.getLogger(__name__)


class PrepareError(SteadyTalkError):
    code = "bad_video"


@dataclass(frozen=True)
class PrepareConfig:
    sizes: tuple[int, ...] = (256,)
    fps: float | None = None  # None: the video's own rate (nearest common rate)
    min_seconds: float = 2.0  # the renderer sees 12-frame windows with context either side
    advised_seconds: float = 60.0  # shorter still works but makes a weak avatar
    # Frames with two or more faces beyond this share stop the run (a second face now and
    # then, e.g. a poster, is ignored: the largest face is the person).
    multi_face_share: float = 0.02
    min_tracked_share: float = 0.5
    # The crop's side, in face heights (forehead to chin): the face fills two thirds of it.
    crop_face_heights: float = 1.5
    # Crop centre smoothed over this many seconds (Gaussian sigma) so the crop does not shake.
    crop_smoothing_seconds: float = 0.5
    crf: int = 12
    checkpoint_frames: int = 500
    transcript: str | None = None

    def fingerprint(self) -> dict:
        """Settings that change the stages' results (a mismatch restarts from scratch)."""
        values = asdict(self)
        values.pop("checkpoint_frames")
        values["sizes"] = list(self.sizes)
        return values


def interpolate_missing(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a face linearly between the nearest found frames (held at the ends)."""
    if found.all():
        return points
    index = np.arange(len(points))
    good = np.nonzero(found)[0]
    flat = points.reshape(len(points), -1)
    filled = np.stack([np.interp(index, good, flat[good, j]) for j in range(flat.shape[1])], axis=1)
    return filled.reshape(points.shape)


class Preparer(DrawingStages):
    def __init__(self, video: Path, out: Path, config: PrepareConfig | None = None, force=False, device=None) -> None:
        self.video = Path(video)
        self.device = device  # torch.device or name, for the shape pass (mouth masks); not in the fingerprint
        self.out = Path(out)
        self.config = config or PrepareConfig()
        self.force = force
        self.model = FaceModel.load()
        self.fitter = Fitter(self.model)

    # -- checks -------------------------------------------------------------------------
    def _check(self):
        for size in self.config.sizes:
            if size not in (256, 512):
                raise PrepareError(f"Crop size {size} is not supported.", "Use --size 256 and/or --size 512.")
        info = probe(self.video)
        if not info.has_audio:
            raise PrepareError(
                f"{self.video.name} has no audio track.",
                "An avatar learns from speech and face together: use a video recorded with sound.",
            )
        if info.duration < self.config.min_seconds:
            raise PrepareError(
                f"{self.video.name} is {info.duration:.1f} s long; prepare needs at least "
                f"{self.config.min_seconds:g} s.",
                f"Use a longer recording (a good avatar wants {self.config.advised_seconds:g} s or more).",
            )
        if self.out.exists() and not self.out.is_dir():
            raise PrepareError(f"{self.out} exists and is not a folder.", "Choose another --out.")
        return info

    def _open_manifest(self, info) -> Manifest:
        path = self.out / "manifest.json"
        fps = self.config.fps or constant_rate(info.fps)
        source = source_fingerprint(self.video)
        settings = self.config.fingerprint() | {"fps": fps}
        if path.exists():
            try:
                manifest = Manifest.load(path)
            except (ValueError, TypeError) as exc:
                raise PrepareError(f"{path} is damaged ({exc}).", "Use --force to rebuild the avatar.") from None
            same = manifest.version == AVATAR_VERSION and manifest.source == source and manifest.settings == settings
            if same:
                return manifest
            if not self.force:
                raise PrepareError(
                    f"{self.out} holds an avatar of another video or other settings.",
                    "Choose another --out, or pass --force to rebuild it there.",
                )
            log.warning("rebuilding %s (--force)", self.out)
        elif self.out.exists() and any(self.out.iterdir()) and not self.force:
            raise PrepareError(
                f"{self.out} is not empty and is not an avatar folder.",
                "Choose an empty or new folder, or pass --force to write into it.",
            )
        self.out.mkdir(parents=True, exist_ok=True)
        num_frames = int(round(info.duration * fps))
        manifest = Manifest(
            source=source,
            settings=settings,
            video={
                "width": info.width,
                "height": info.height,
                "source_fps": info.fps,
                "fps": fps,
                "frames": num_frames,
                "duration": num_frames / fps,
                "codec": info.codec,
                # mediapipe's depth is on the x scale, so a weak-perspective camera fits it exactly.
                "camera": "scaled orthographic: source_pixels = scale * rotation @ model_metres + translation",
            },
            schema={
                "version": SCHEMA_VERSION,  # of the coefficients tracked here (all 52 channels)
                "channels": list(CHANNELS),
                "render_contract": rc.RENDER_CONTRACT_VERSION,
            },
        )
        manifest.files = {
            name.replace("{size}", str(size)): text
            for name, text in FILES.items()
            for size in (self.config.sizes if "{size}" in name else (0,))
        }
        manifest.save(path)
        return manifest

    # -- the run ------------------------------------------------------------------------
    def run(self, progress: Progress | None = None) -> Manifest:
        report = progress or (lambda stage, done, total: None)
        info = self._check()
        manifest = self._open_manifest(info)
        if info.duration < self.config.advised_seconds:
            log.warning(
                "%s is %.0f s long; %g s or more makes a better avatar",
                self.video.name,
                info.duration,
                self.config.advised_seconds,
            )
        steps = {
            "landmarks": self._landmarks,
            "fit": self._fit,
            "crops": self._crops,
            "audio": self._audio,
            "blender": self._blender,
            "style": self._style,
        }
        for stage in STAGES:
            if stage in manifest.stages:
                report(stage, 1, 1)
                continue
            started = time.perf_counter()
            details = steps[stage](manifest, report) or {}
            manifest.stages[stage] = {"seconds": round(time.perf_counter() - started, 2), **details}
            manifest.save(self.out / "manifest.json")
        return manifest

    def _landmarks(self, manifest: Manifest, report: Progress) -> dict:
        from ..face.landmarks import FaceLandmarker

        total, fps = manifest.video["frames"], manifest.video["fps"]
        checkpoint = self.out / "landmarks.partial.npz"
        points = np.zeros((total, 478, 3), dtype=np.float32)
        found = np.zeros(total, dtype=bool)
        faces = np.zeros(total, dtype=np.int8)
        start = 0
        if checkpoint.exists():
            with np.load(checkpoint) as data:
                start = int(data["done"])
                points[:start], found[:start], faces[:start] = data["points"], data["found"], data["faces"]
            log.info("resuming landmarks at frame %d of %d", start, total)
        cfr = CfrReport()
        with FaceLandmarker() as landmarker:
            for index, rgb in frames_at_constant_rate(self.video, fps, total, cfr, start=start):
                detected = landmarker.detect(rgb)
                faces[index] = len(detected)
                if detected:
                    # Several faces: the largest (nearest) is the person.
                    widest = max(detected, key=lambda p: np.ptp(p[:NUM_MESH_POINTS, 0]))
                    points[index, : len(widest)] = widest
                    found[index] = True
                if (index + 1) % self.config.checkpoint_frames == 0:
                    savez_atomic(
                        checkpoint,
                        done=np.array(index + 1),
                        points=points[: index + 1],
                        found=found[: index + 1],
                        faces=faces[: index + 1],
                    )
                report("landmarks", index + 1, total)
        self._check_faces(found, faces, fps)
        savez_atomic(self.out / "landmarks.npz", points=points, found=found, faces=faces)
        checkpoint.unlink(missing_ok=True)
        return {"cfr": cfr.describe(), "variable_frame_rate": cfr.variable, "resumed_at": start}

    def _check_faces(self, found: np.ndarray, faces: np.ndarray, fps: float) -> None:
        if not found.any():
            raise PrepareError(
                f"No face was found in {self.video.name}.",
                "Use a video where one face is clearly visible, frontal, and well lit.",
            )
        if found.mean() < self.config.min_tracked_share:
            raise PrepareError(
                f"A face was found in only {found.mean():.0%} of the frames of {self.video.name}.",
                "Trim the video to the part where the face is visible.",
            )
        several = faces > 1
        if several.mean() > self.config.multi_face_share:
            first = int(np.argmax(several)) / fps
            raise PrepareError(
                f"More than one face in {several.sum()} frames of {self.video.name} (first at "
                f"{int(first // 60)}:{first % 60:04.1f}).",
                "An avatar is one person: crop or trim the video so that only they are in view.",
            )

    def _fit(self, manifest: Manifest, report: Progress) -> dict:
        with np.load(self.out / "landmarks.npz") as data:
            points, found = data["points"].astype(np.float64), data["found"]
        filled = interpolate_missing(points, found)
        identity, fits = self.fitter.track(list(filled), progress=lambda done, total: report("fit", done, total))
        errors = write_params(self.out / "params.npz", fits, found, identity)
        tracked = found.mean()
        manifest.report.update(
            {
                "tracked_share": round(float(tracked), 4),
                "interpolated_frames": int((~found).sum()),
                "reprojection_error_iod": {
                    "mean": round(float(errors[found].mean()), 5),
                    "p95": round(float(np.quantile(errors[found], 0.95)), 5),
                },
            }
        )
        if (~found).any():
            log.warning("no face in %d frames: filled by interpolation", int((~found).sum()))
        return {}

    def _audio(self, manifest: Manifest, report: Progress) -> dict:
        import soundfile as sf

        from ..lipsync.audio import load_audio
        from ..lipsync.engine import LipsyncEngine
        from ..lipsync.prosody import s2a_features

        report("audio", 0, 3)
        try:
            samples = load_audio(self.video)
        except SteadyTalkError as exc:
            raise PrepareError(f"The audio track of {self.video.name} could not be used: {exc}") from None
        with atomic_output(self.out / "audio.wav") as partial:
            sf.write(partial, samples, 16000, subtype="PCM_16", format="WAV")
        report("audio", 1, 3)
        result = LipsyncEngine().run(self.out / "audio.wav", self.config.transcript, fps=manifest.video["fps"])
        with atomic_output(self.out / "lipsync.json") as partial:
            result.write_json(partial)
        report("audio", 2, 3)
        features = s2a_features(samples, result.phones)
        savez_atomic(
            self.out / "features.npz",
            values=features.values,
            rate=np.array(features.rate),
            n_mels=np.array(features.n_mels),
        )
        report("audio", 3, 3)
        return {"mode": result.mode, "warnings": list(result.warnings)}

    def _style(self, manifest: Manifest, report: Progress) -> dict:
        from .person_style import learn_style

        report("style", 0, 1)
        measured = learn_style(self.out)
        report("style", 1, 1)
        return {"measured": measured}


def prepare(video: Path, out: Path, config: PrepareConfig | None = None, force=False, progress=None, device=None):
    try:
        return Preparer(video, out, config, force, device).run(progress)
    except VideoError as exc:
        raise PrepareError(exc.message, exc.hint) from None
